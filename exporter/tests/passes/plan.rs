//! The quantization policy's plan: which weighted nodes, residual Adds and tensors it picks
//! (and which it leaves in float, with the reason).

use std::collections::BTreeMap;

use exporter::model::elem;
use exporter::onnx::builders::{model, node, tensor_f32, value_info};
use exporter::passes::insert_qdq;
use exporter::policy::{plan, QuantPolicy, Target};
use exporter::ExportError;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, GraphProto};

use super::fixtures::*;
use super::support::floats;

#[test]
fn plan_fires_on_weighted_convs_and_residual_skip() {
    let m = residual_model();
    let p = plan(&m, &policy(Target::Tensorrt)).unwrap();
    let q: Vec<&str> = p.quantized.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(q, ["conv1", "conv2"]);
    assert_eq!(p.quantized[0].weight, "w1");
    assert_eq!(p.quantized[0].weight_axis, 0);
    assert_eq!(
        p.quantized[0].inputs,
        ["x"],
        "graph input feeding a quantized op"
    );
    assert!(p.quantized.iter().all(|n| n.outputs.is_empty()));
    assert_eq!(p.skipped.len(), 1);
    assert_eq!(p.skipped[0].node, "conv_small");
    assert!(
        p.skipped[0].reason.contains("8 output channels") && p.skipped[0].reason.contains("16"),
        "{}",
        p.skipped[0].reason
    );
    assert_eq!(p.residual_adds.len(), 1);
    assert_eq!(p.residual_adds[0].fused, "c");
    assert_eq!(p.residual_adds[0].skip, "r");
    let acts: Vec<&str> = p.activations.iter().map(String::as_str).collect();
    assert_eq!(acts, ["r", "x"]);
}

#[test]
fn plan_ort_cpu_adds_outputs_but_not_graph_outputs() {
    let m = residual_model();
    let p = plan(&m, &policy(Target::OrtCpu)).unwrap();
    assert_eq!(p.quantized[0].outputs, ["a"]);
    assert_eq!(p.quantized[1].outputs, ["c"]);
    let acts: Vec<&str> = p.activations.iter().map(String::as_str).collect();
    assert_eq!(acts, ["a", "c", "r", "x"]);

    // A quantized op whose output is the graph output gets no output Q/DQ.
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[2, 32]));
    g.output.push(value_info("y", elem::FLOAT, &[2, 16]));
    weight(&mut g, "w", &[32, 16], 1);
    g.node
        .push(named(node("MatMul", &["x", "w"], &["y"]), "mm"));
    let p = plan(&model(g, 17), &policy(Target::OrtCpu)).unwrap();
    assert_eq!(p.quantized.len(), 1);
    assert!(p.quantized[0].outputs.is_empty());
    assert_eq!(p.activations.len(), 1);
}

#[test]
fn plan_min_channels_is_configurable() {
    let m = residual_model();
    let p = plan(
        &m,
        &QuantPolicy {
            min_channels: 8,
            ..QuantPolicy::default()
        },
    )
    .unwrap();
    assert_eq!(p.quantized.len(), 3);
    assert!(p.skipped.is_empty());
    let p = plan(
        &m,
        &QuantPolicy {
            min_channels: 64,
            ..QuantPolicy::default()
        },
    )
    .unwrap();
    assert!(p.quantized.is_empty());
    assert_eq!(p.skipped.len(), 3);
    assert!(p.residual_adds.is_empty() && p.activations.is_empty());
}

#[test]
fn plan_node_selection_leaves_other_nodes_alone() {
    let m = residual_model();
    let pol = QuantPolicy {
        nodes: Some(["conv1".to_string()].into()),
        ..QuantPolicy::default()
    };
    let p = plan(&m, &pol).unwrap();
    assert_eq!(p.quantized.len(), 1);
    let conv2 = p.skipped.iter().find(|s| s.node == "conv2").unwrap();
    assert_eq!(conv2.reason, "not in the node selection");
    assert!(
        p.residual_adds.is_empty(),
        "conv2 is float: no residual rule"
    );
    let (q, r) = insert_qdq(&m, &p, &table(&p.activations, 0.05)).unwrap();
    assert_eq!(r.quantized_nodes, 1);
    assert_eq!(node_by_name(&q, "conv2").input, ["r", "w2", "b2"]);
    assert_eq!(node_by_name(&q, "add").input, ["c", "r"]);
    assert!(init(&q, "w2").is_some_and(|t| t.data_type == elem::FLOAT));

    let bad = QuantPolicy {
        nodes: Some(["nope".to_string()].into()),
        ..QuantPolicy::default()
    };
    let e = plan(&m, &bad).unwrap_err().to_string();
    assert!(e.contains("'nope'"), "{e}");
    let bad_op = QuantPolicy {
        ops: ["Relu".to_string()].into(),
        ..QuantPolicy::default()
    };
    assert!(matches!(plan(&m, &bad_op), Err(ExportError::Policy(_))));
}

#[test]
fn plan_weight_axes_per_op_and_target() {
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[1, 32, 8]));
    g.input.push(value_info("v", elem::FLOAT, &[4, 32]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 16, 15]));
    g.output.push(value_info("g0", elem::FLOAT, &[4, 24]));
    g.output.push(value_info("g1", elem::FLOAT, &[4, 24]));
    g.output.push(value_info("mm", elem::FLOAT, &[4, 40]));
    g.output.push(value_info("cw", elem::FLOAT, &[4, 24]));
    weight(&mut g, "wt", &[32, 16, 2], 1); // ConvTranspose [C_in, C_out/g, k]
    weight(&mut g, "gb_t", &[24, 32], 2); // Gemm transB=1
    weight(&mut g, "gb", &[32, 24], 3); // Gemm transB=0
    weight(&mut g, "mw", &[32, 40], 4); // MatMul
    let mut ct = named(node("ConvTranspose", &["x", "wt"], &["y"]), "deconv");
    ct.attribute.push(ints("strides", &[2]));
    g.node.push(ct);
    let mut gm = named(node("Gemm", &["v", "gb_t"], &["g0"]), "gemm_t");
    gm.attribute.push(int("transB", 1));
    g.node.push(gm);
    g.node
        .push(named(node("Gemm", &["v", "gb"], &["g1"]), "gemm"));
    g.node
        .push(named(node("MatMul", &["v", "mw"], &["mm"]), "matmul"));
    // A weight computed by a Constant node stays float.
    let mut c = named(node("Constant", &[], &["cwt"]), "const");
    c.attribute.push(AttributeProto {
        name: "value".into(),
        type_: AttributeType::TENSOR.into(),
        t: Some(tensor_f32("", &[32, 24], &floats(32 * 24, 9))).into(),
        ..Default::default()
    });
    g.node.push(c);
    g.node.push(named(
        node("MatMul", &["v", "cwt"], &["cw"]),
        "matmul_const",
    ));
    let m = model(g, 17);
    let axes = |t: Target| -> BTreeMap<String, usize> {
        plan(&m, &policy(t))
            .unwrap()
            .quantized
            .into_iter()
            .map(|p| (p.node, p.weight_axis))
            .collect()
    };
    let trt = axes(Target::Tensorrt);
    // issue 19: TensorRT ConvTranspose weights are per tensor (the axis is disputed; see
    // exporter::policy), planned along the output channels should that change
    assert_eq!(trt["deconv"], 1);
    let p = plan(&m, &policy(Target::Tensorrt)).unwrap();
    let deconv = p.quantized.iter().find(|n| n.node == "deconv").unwrap();
    assert!(!deconv.per_channel, "TensorRT: ConvTranspose per tensor");
    assert_eq!(trt["gemm_t"], 0);
    assert_eq!(trt["gemm"], 1);
    assert_eq!(trt["matmul"], 1);
    assert_eq!(axes(Target::OrtCpu)["deconv"], 1, "ORT: per output channel");
    let p = plan(&m, &policy(Target::Tensorrt)).unwrap();
    let s = p.skipped.iter().find(|s| s.node == "matmul_const").unwrap();
    assert!(s.reason.contains("Constant node"), "{}", s.reason);
}
