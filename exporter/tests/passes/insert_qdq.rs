//! The insert-QDQ pass: counts, snapshots, placement (Conv→Add edge, skip input), int8 weights,
//! shared weights, table errors and node-order independence.

use std::collections::BTreeSet;

use exporter::graph::dump;
use exporter::model::{elem, to_bytes};
use exporter::onnx::builders::{model, node, tensor_f32, value_info};
use exporter::passes::{f32_data, insert_qdq, quantize_weight, ZERO_CHANNEL_SCALE};
use exporter::policy::{plan, QuantPolicy, Target};
use exporter::ExportError;
use onnx_protobuf::{GraphProto, ModelProto};

use super::fixtures::*;
use super::support::floats;

#[test]
fn insert_qdq_fires_expected_counts() {
    let m = residual_model();
    let (_, q, r) = quantize(&m, &policy(Target::Tensorrt));
    assert_eq!(r.quantized_nodes, 2);
    assert_eq!(r.skipped, 1);
    assert_eq!(r.weights, 2);
    assert_eq!(r.activations, 2);
    assert_eq!(r.q_nodes, 2);
    assert_eq!(r.dq_nodes, 4, "2 weights + 2 activations");
    assert_eq!(count_op(&q, "QuantizeLinear"), 2);
    assert_eq!(count_op(&q, "DequantizeLinear"), 4);
    assert_eq!(r.rewired_inputs, 5, "2 weights, conv1.x, conv2.r, add.r");
    assert_eq!(r.weights_int8_bytes, 32 * 16 * 3 + 32 * 32 * 3);
    assert_eq!(
        r.weights_float_bytes_removed,
        4 * (32 * 16 * 3 + 32 * 32 * 3)
    );
    assert_eq!((r.opset_from, r.opset_to), (17, 17));
    assert_topological(&q);

    let (_, q, r) = quantize(&m, &policy(Target::OrtCpu));
    assert_eq!((r.q_nodes, r.dq_nodes), (4, 6));
    assert_eq!(count_op(&q, "QuantizeLinear"), 4);
    assert_topological(&q);
}

#[test]
fn insert_qdq_snapshots() {
    let m = residual_model();
    let (_, q, _) = quantize(&m, &policy(Target::Tensorrt));
    snapshot("qdq_residual_tensorrt.txt", &dump(&q.graph));
    let (_, q, _) = quantize(&m, &policy(Target::OrtCpu));
    snapshot("qdq_residual_ort_cpu.txt", &dump(&q.graph));
    let pt = QuantPolicy {
        per_channel: false,
        ..QuantPolicy::default()
    };
    let (_, q, _) = quantize(&m, &pt);
    snapshot("qdq_residual_per_tensor.txt", &dump(&q.graph));
}

#[test]
fn conv_add_edge_has_no_qdq_but_skip_input_does() {
    let m = residual_model();
    let (_, q, _) = quantize(&m, &policy(Target::Tensorrt));
    let add = node_by_name(&q, "add");
    assert_eq!(
        add.input,
        ["c", "r_dq"],
        "Conv→Add edge stays float; skip gets DQ"
    );
    // conv2 and the Add share one Q/DQ pair on r; relu1 output keeps its float consumers.
    assert_eq!(node_by_name(&q, "conv2").input, ["r_dq", "w2_dq", "b2"]);
    assert_eq!(node_by_name(&q, "r_q").input[0], "r");
    // ort-cpu: the Conv output is quantized too (DQ→Conv→Q unit), so the Add reads c_dq.
    let (_, q, _) = quantize(&m, &policy(Target::OrtCpu));
    assert_eq!(node_by_name(&q, "add").input, ["c_dq", "r_dq"]);
    assert_eq!(node_by_name(&q, "relu1").input, ["a_dq"]);
}

#[test]
fn float_ops_and_small_convs_are_untouched() {
    let m = residual_model();
    for t in [Target::Tensorrt, Target::OrtCpu] {
        let (_, q, _) = quantize(&m, &policy(t));
        for name in ["conv_small", "transpose", "layernorm", "softmax", "relu2"] {
            assert_eq!(
                node_by_name(&q, name),
                node_by_name(&m, name),
                "{name} ({t})"
            );
        }
        assert!(init(&q, "w3").is_some_and(|w| w.data_type == elem::FLOAT));
        assert!(init(&q, "w3_quantized").is_none());
        assert!(
            init(&q, "b1").is_some_and(|w| w.data_type == elem::FLOAT),
            "bias stays float"
        );
        assert_eq!(q.graph.output, m.graph.output);
        assert_eq!(q.graph.input, m.graph.input);
    }
}

#[test]
fn weights_are_int8_per_channel_with_positive_scales() {
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[1, 16, 4]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 16, 4]));
    // channel 0: known values; channel 1: all zeros; the rest random.
    let mut w = floats(16 * 16, 3);
    w[..16].copy_from_slice(&[
        1.0, -0.5, 0.25, -1.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, -0.9, 0.0,
    ]);
    w[16..32].fill(0.0);
    g.initializer.push(tensor_f32("w", &[16, 16, 1], &w));
    let mut c = named(node("Conv", &["x", "w"], &["y"]), "conv");
    c.attribute.push(ints("kernel_shape", &[1]));
    g.node.push(c);
    let m = model(g, 17);
    let (_, q, _) = quantize(&m, &policy(Target::Tensorrt));
    let wq = init(&q, "w_quantized").unwrap();
    assert_eq!(wq.data_type, elem::INT8);
    assert_eq!(wq.dims, [16, 16, 1]);
    let vals: Vec<i8> = wq.raw_data.iter().map(|&b| b as i8).collect();
    // -0.5·127 = -63.5 rounds half to even → -64; 0.25·127 = 31.75 → 32
    assert_eq!(&vals[..4], &[127, -64, 32, -127]);
    assert!(vals[16..32].iter().all(|&v| v == 0));
    let s = f32_data(init(&q, "w_scale").unwrap()).unwrap();
    assert_eq!(s.len(), 16);
    assert!((s[0] - 1.0 / 127.0).abs() < 1e-9);
    assert_eq!(s[1], ZERO_CHANNEL_SCALE);
    assert!(s.iter().all(|&x| x > 0.0));
    let zp = init(&q, "w_zero_point").unwrap();
    assert_eq!(
        (zp.data_type, zp.dims.as_slice()),
        (elem::INT8, &[16i64][..])
    );
    assert!(zp.raw_data.iter().all(|&b| b == 0));
    let dq = node_by_name(&q, "w_dq");
    assert_eq!(
        dq.attribute.iter().find(|a| a.name == "axis").map(|a| a.i),
        Some(0)
    );
    assert!(init(&q, "w").is_none(), "float weight removed");
    // Reconstruction error ≤ half a step per channel.
    let data = f32_data(init(&m, "w").unwrap()).unwrap();
    for (k, (&v, &orig)) in vals.iter().zip(&data).enumerate() {
        let c = k / 16;
        assert!(
            (v as f32 * s[c] - orig).abs() <= s[c] * 0.5 + 1e-7,
            "element {k}"
        );
    }
    // The file shrinks.
    assert!(to_bytes(&q).unwrap().len() < to_bytes(&m).unwrap().len());
    // Per-tensor: one scalar scale, no axis.
    let (q, s1) = quantize_weight("w", &data, &[16, 16, 1], None).unwrap();
    assert_eq!(s1.len(), 1);
    assert_eq!(q.len(), 256);
}

#[test]
fn weight_shared_with_a_float_consumer_is_kept() {
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[2, 32]));
    g.output.push(value_info("y", elem::FLOAT, &[2, 32]));
    g.output.push(value_info("z", elem::FLOAT, &[32, 32]));
    weight(&mut g, "w", &[32, 32], 1);
    g.node
        .push(named(node("MatMul", &["x", "w"], &["y"]), "mm"));
    g.node.push(named(node("Relu", &["w"], &["z"]), "relu_w"));
    let (_, q, r) = quantize(&model(g, 17), &policy(Target::Tensorrt));
    assert!(init(&q, "w").is_some());
    assert_eq!(r.weights_float_bytes_removed, 0);
    assert_eq!(node_by_name(&q, "relu_w").input, ["w"]);
    assert_eq!(node_by_name(&q, "mm").input, ["x_dq", "w_dq"]);
}

#[test]
fn table_errors_name_the_tensor() {
    let m = residual_model();
    let p = plan(&m, &policy(Target::Tensorrt)).unwrap();
    let mut t = table(&p.activations, 0.02);
    t.tensors.remove("r");
    match insert_qdq(&m, &p, &t) {
        Err(ExportError::Table { tensor, reason }) => {
            assert_eq!(tensor, "r");
            assert!(reason.contains("no range"), "{reason}");
        }
        other => panic!("expected a table error, got {other:?}"),
    }
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let mut t = table(&p.activations, 0.02);
        t.tensors.get_mut("x").unwrap().scale = bad;
        match insert_qdq(&m, &p, &t) {
            Err(ExportError::Table { tensor, .. }) => assert_eq!(tensor, "x"),
            other => panic!("scale {bad}: expected a table error, got {other:?}"),
        }
    }
    // Quantizing twice is refused, not renamed.
    let (q, _) = insert_qdq(&m, &p, &table(&p.activations, 0.02)).unwrap();
    let p2 = plan(&q, &policy(Target::Tensorrt)).unwrap();
    assert!(
        p2.quantized.is_empty(),
        "int8 weights are not float initializers"
    );
}

#[test]
fn names_do_not_depend_on_node_order() {
    // Two independent branches on the same input; swapping them changes only the order.
    let build = |swap: bool| {
        let mut g = GraphProto::new();
        g.input.push(value_info("x", elem::FLOAT, &[1, 16, 6]));
        g.output.push(value_info("ya", elem::FLOAT, &[1, 16, 6]));
        g.output.push(value_info("yb", elem::FLOAT, &[1, 16, 6]));
        weight(&mut g, "wa", &[16, 16, 1], 1);
        weight(&mut g, "wb", &[16, 16, 1], 2);
        let mut a = vec![
            named(node("Relu", &["x"], &["xa"]), "ra"),
            named(node("Conv", &["xa", "wa"], &["ya"]), "ca"),
        ];
        let mut b = vec![
            named(node("Sigmoid", &["x"], &["xb"]), "sb"),
            named(node("Conv", &["xb", "wb"], &["yb"]), "cb"),
        ];
        if swap {
            std::mem::swap(&mut a, &mut b);
            g.initializer.reverse();
        }
        g.node.extend(a);
        g.node.extend(b);
        model(g, 17)
    };
    let names = |m: &ModelProto| {
        let (_, q, _) = quantize(m, &policy(Target::OrtCpu));
        assert_topological(&q);
        let nodes: BTreeSet<(String, Vec<String>)> = q
            .graph
            .node
            .iter()
            .map(|n| (n.name.clone(), n.input.clone()))
            .collect();
        let inits: BTreeSet<String> = q.graph.initializer.iter().map(|t| t.name.clone()).collect();
        (nodes, inits)
    };
    assert_eq!(names(&build(false)), names(&build(true)));
}
