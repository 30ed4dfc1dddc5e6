//! Deployable size of quantized models, the graph index over Q/DQ pairs, and the quantize
//! pipeline with an unknown op.

use exporter::graph::GraphIndex;
use exporter::model::{elem, to_bytes};
use exporter::onnx::builders::{model, node, tensor_f32, value_info};
use exporter::policy::Target;
use exporter::size::deployable_size;
use onnx_protobuf::GraphProto;

use super::fixtures::*;

#[test]
fn deployable_size_counts_int8_scales_and_float_rest() {
    let m = residual_model();
    let f = deployable_size(&m, None);
    let all: u64 = m
        .graph
        .initializer
        .iter()
        .map(|t| t.raw_data.len() as u64)
        .sum();
    assert_eq!(f.float_weight_bytes, all);
    assert_eq!(f.int8_weight_bytes, 0);
    assert_eq!(f.deployable_bytes, all);
    assert_eq!(f.onnx_bytes, to_bytes(&m).unwrap().len() as u64);

    let (_, q, r) = quantize(&m, &policy(Target::Tensorrt));
    let s = deployable_size(&q, Some(12345));
    assert_eq!(s.onnx_bytes, 12345);
    assert_eq!(s.int8_weight_bytes, r.weights_int8_bytes);
    assert_eq!(s.int8_weights, 2);
    assert_eq!(s.scale_bytes, r.scale_bytes);
    assert_eq!(s.float_weight_bytes, all - r.weights_float_bytes_removed);
    assert!(s.deployable_bytes < f.deployable_bytes);
    assert!(s.markdown().contains("| **deployable** |"));

    // Float weight behind a Q→DQ pair (fake-quant export): 1 byte per element.
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[2, 8]));
    g.output.push(value_info("y", elem::FLOAT, &[2, 4]));
    weight(&mut g, "w", &[8, 4], 1);
    g.initializer.push(tensor_f32("s", &[], &[0.01]));
    let mut zp = tensor_f32("z", &[], &[0.0]);
    zp.data_type = elem::INT8;
    zp.raw_data = vec![0];
    g.initializer.push(zp);
    g.node
        .push(node("QuantizeLinear", &["w", "s", "z"], &["wq"]));
    g.node
        .push(node("DequantizeLinear", &["wq", "s", "z"], &["wd"]));
    g.node.push(node("MatMul", &["x", "wd"], &["y"]));
    let s = deployable_size(&model(g, 13), None);
    assert_eq!((s.int8_weight_bytes, s.fake_quant_weights), (32, 1));
    assert_eq!(s.scale_bytes, 5);
    assert_eq!(s.float_weight_bytes, 0);
}

#[test]
fn graph_index_sees_qdq_pairs() {
    let m = residual_model();
    let (_, q, _) = quantize(&m, &policy(Target::OrtCpu));
    let ix = GraphIndex::new(&q.graph);
    assert_eq!(ix.producer_op("c_dq"), Some("DequantizeLinear"));
    assert_eq!(ix.consumers("c").len(), 1, "only c_q reads the Conv output");
}

/// An op voxq does not know (a custom domain) passes through untouched and is reported; the
/// weighted ops around it are still quantized.
#[test]
fn unknown_op_passes_through_and_is_reported() {
    let mut m = residual_model();
    let g = m.graph.as_mut().expect("graph");
    let pos = g
        .node
        .iter()
        .position(|n| n.name == "relu2")
        .expect("relu2");
    let mut custom = named(node("Frobnicate", &["s"], &["s2"]), "frob");
    custom.domain = "com.example".into();
    custom.attribute.push(int("strength", 3));
    g.node[pos] = custom.clone();
    m.opset_import.push(onnx_protobuf::OperatorSetIdProto {
        domain: "com.example".into(),
        version: 1,
        ..Default::default()
    });
    let p = exporter::policy::plan(&m, &policy(Target::Tensorrt)).unwrap();
    let q = exporter::pipeline::quantize(
        &m,
        &table(&p.activations, 0.05),
        &policy(Target::Tensorrt),
        false,
    )
    .unwrap();
    assert_eq!(
        q.unknown_ops,
        vec![("frob".to_string(), "com.example::Frobnicate".to_string())]
    );
    let after = node_by_name(&q.model, "frob");
    assert_eq!(
        after, &custom,
        "the unknown node must be left exactly as it was"
    );
    assert_eq!(
        q.plan.quantized.len(),
        2,
        "conv1 and conv2 (conv_small has 8 channels)"
    );
}
