//! The QDQ passes on tiny graphs: plan (policy), expose activations, insert QDQ, float16 and
//! deployable size. Each pass fires the expected number of times, its text dump matches a
//! snapshot in `tests/snapshots/` (`UPDATE_SNAPSHOTS=1` rewrites them), and it leaves alone
//! what it must not touch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[path = "support/mod.rs"]
mod support;
use support::floats;

use calibration::{CalibrationTable, TensorRange};
use exporter::build::{model, node, tensor_f32, value_info};
use exporter::graph::{dump, GraphIndex};
use exporter::model::{elem, to_bytes};
use exporter::onnx::f16_bits_to_f32;
use exporter::policy::{plan, QdqPlan, QuantPolicy, Target};
use exporter::qdq::{
    expose_activations, f32_data, insert_qdq, quantize_weight, raise_opset, to_float16,
    ZERO_CHANNEL_SCALE,
};
use exporter::size::deployable_size;
use exporter::ExportError;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

// ---------------------------------------------------------------------------------------------
// Helpers

fn named(mut n: NodeProto, name: &str) -> NodeProto {
    n.name = name.into();
    n
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i: v,
        ..Default::default()
    }
}

fn conv(name: &str, x: &str, w: &str, b: &str, y: &str, k: i64) -> NodeProto {
    let mut n = named(node("Conv", &[x, w, b], &[y]), name);
    n.attribute.push(ints("kernel_shape", &[k]));
    n.attribute.push(ints("pads", &[k / 2, k / 2]));
    n
}

fn weight(g: &mut GraphProto, name: &str, dims: &[i64], seed: u32) {
    let n: i64 = dims.iter().product();
    g.initializer
        .push(tensor_f32(name, dims, &floats(n as usize, seed)));
}

/// x[1,16,10] → conv1 (16→32, k3) → relu1 → r → conv2 (32→32, k3) → c;
/// add(c, r) → relu2 → conv_small (32→8, k1) → transpose → LayerNormalization → Softmax → y.
fn residual_model() -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "residual".into();
    g.input.push(value_info("x", elem::FLOAT, &[1, 16, 10]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 10, 8]));
    weight(&mut g, "w1", &[32, 16, 3], 1);
    weight(&mut g, "b1", &[32], 2);
    weight(&mut g, "w2", &[32, 32, 3], 3);
    weight(&mut g, "b2", &[32], 4);
    weight(&mut g, "w3", &[8, 32, 1], 5);
    weight(&mut g, "b3", &[8], 6);
    weight(&mut g, "ln_scale", &[8], 7);
    weight(&mut g, "ln_bias", &[8], 8);
    g.node.push(conv("conv1", "x", "w1", "b1", "a", 3));
    g.node.push(named(node("Relu", &["a"], &["r"]), "relu1"));
    g.node.push(conv("conv2", "r", "w2", "b2", "c", 3));
    g.node.push(named(node("Add", &["c", "r"], &["s"]), "add"));
    g.node.push(named(node("Relu", &["s"], &["s2"]), "relu2"));
    g.node
        .push(conv("conv_small", "s2", "w3", "b3", "small", 1));
    let mut t = named(node("Transpose", &["small"], &["t"]), "transpose");
    t.attribute.push(ints("perm", &[0, 2, 1]));
    g.node.push(t);
    let mut ln = named(
        node("LayerNormalization", &["t", "ln_scale", "ln_bias"], &["ln"]),
        "layernorm",
    );
    ln.attribute.push(int("axis", -1));
    g.node.push(ln);
    let mut sm = named(node("Softmax", &["ln"], &["y"]), "softmax");
    sm.attribute.push(int("axis", -1));
    g.node.push(sm);
    model(g, 17)
}

fn table(tensors: &BTreeSet<String>, scale: f32) -> CalibrationTable {
    CalibrationTable {
        format: "voxq-calibration/1".into(),
        method: "max".into(),
        tensors: tensors
            .iter()
            .map(|t| {
                (
                    t.clone(),
                    TensorRange {
                        amax: scale * 127.0,
                        scale,
                        fallback: None,
                        stats: None,
                    },
                )
            })
            .collect(),
    }
}

fn policy(target: Target) -> QuantPolicy {
    QuantPolicy {
        target,
        ..QuantPolicy::default()
    }
}

fn quantize(m: &ModelProto, p: &QuantPolicy) -> (QdqPlan, ModelProto, exporter::qdq::QdqReport) {
    let pl = plan(m, p).unwrap();
    let (q, r) = insert_qdq(m, &pl, &table(&pl.activations, 0.02)).unwrap();
    (pl, q, r)
}

fn node_by_name<'a>(m: &'a ModelProto, name: &str) -> &'a NodeProto {
    m.graph
        .node
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

fn count_op(m: &ModelProto, op: &str) -> usize {
    m.graph.node.iter().filter(|n| n.op_type == op).count()
}

fn init<'a>(m: &'a ModelProto, name: &str) -> Option<&'a TensorProto> {
    m.graph.initializer.iter().find(|t| t.name == name)
}

/// Every node input is a graph input, an initializer or the output of an earlier node.
fn assert_topological(m: &ModelProto) {
    let g = &m.graph;
    let mut known: BTreeSet<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
    known.extend(g.initializer.iter().map(|t| t.name.as_str()));
    for n in &g.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            assert!(
                known.contains(i.as_str()),
                "node {} reads {i} before it is produced",
                n.name
            );
        }
        known.extend(n.output.iter().map(String::as_str));
    }
    for o in &g.output {
        assert!(
            known.contains(o.name.as_str()),
            "output {} not produced",
            o.name
        );
    }
}

/// Compares `text` with `tests/snapshots/{name}`; `UPDATE_SNAPSHOTS=1` (or a missing file
/// under that variable) rewrites it.
fn snapshot(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_SNAPSHOTS=1 to create it)",
            path.display()
        )
    });
    if want != text {
        let diff: Vec<String> = want
            .lines()
            .zip(text.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  want {a}\n  got  {b}", i + 1))
            .collect();
        panic!(
            "{} differs ({} vs {} lines):\n{}\n(UPDATE_SNAPSHOTS=1 rewrites it)",
            path.display(),
            want.lines().count(),
            text.lines().count(),
            diff.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Policy / plan

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
    assert_eq!(
        trt["deconv"], 0,
        "TensorRT: ConvTranspose per input channel"
    );
    assert_eq!(trt["gemm_t"], 0);
    assert_eq!(trt["gemm"], 1);
    assert_eq!(trt["matmul"], 1);
    assert_eq!(axes(Target::OrtCpu)["deconv"], 1, "ORT: per output channel");
    let p = plan(&m, &policy(Target::Tensorrt)).unwrap();
    let s = p.skipped.iter().find(|s| s.node == "matmul_const").unwrap();
    assert!(s.reason.contains("Constant node"), "{}", s.reason);
}

// ---------------------------------------------------------------------------------------------
// Insert QDQ

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

// ---------------------------------------------------------------------------------------------
// Opset

#[test]
fn opset_is_raised_to_13_when_ops_allow_it() {
    let mut m = residual_model();
    // An opset-11 variant: no LayerNormalization (opset 17), Softmax with axis=-1 (the only
    // form whose meaning did not change at 13), an Unsqueeze whose axes attribute moves.
    let g = m.graph.mut_or_insert_default();
    g.node.retain(|n| n.name != "layernorm");
    g.node.iter_mut().for_each(|n| {
        if n.name == "softmax" {
            n.input[0] = "t".into();
        }
    });
    let mut un = named(node("Unsqueeze", &["s2"], &["s3"]), "unsq");
    un.attribute.push(ints("axes", &[0]));
    g.node.push(un);
    g.output
        .push(value_info("s3", elem::FLOAT, &[1, 1, 32, 10]));
    m.opset_import[0].version = 11;
    let (pl, q, r) = quantize(&m, &policy(Target::Tensorrt));
    assert_eq!((r.opset_from, r.opset_to), (11, 13));
    assert_eq!(q.opset_import[0].version, 13);
    assert!(q.ir_version >= 7);
    let un = node_by_name(&q, "unsq");
    assert_eq!(
        un.input,
        ["s2", "s3_axes"],
        "axes attribute became an input at 13"
    );
    assert!(un.attribute.is_empty());
    assert_eq!(pl.quantized.len(), 2);
    assert_topological(&q);

    // Softmax without axis=-1 changed meaning at 13: refused, naming the node and op.
    m.graph
        .mut_or_insert_default()
        .node
        .iter_mut()
        .for_each(|n| {
            if n.name == "softmax" {
                n.attribute.clear();
            }
        });
    let p = plan(&m, &policy(Target::Tensorrt)).unwrap();
    let e = insert_qdq(&m, &p, &table(&p.activations, 0.1)).unwrap_err();
    match e {
        ExportError::Graph { node, reason } => {
            assert_eq!(node, "softmax");
            assert!(
                reason.contains("Softmax") && reason.contains("13"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn raise_opset_moves_reduce_axes_at_18() {
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[1, 4, 6]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 4, 1]));
    let mut r = named(node("ReduceMean", &["x"], &["y"]), "mean");
    r.attribute.push(ints("axes", &[-1]));
    r.attribute.push(int("keepdims", 1));
    g.node.push(r);
    let mut m = model(g, 17);
    assert_eq!(raise_opset(&mut m, 19).unwrap(), 17);
    assert_eq!(m.opset_import[0].version, 19);
    assert_eq!(m.ir_version, 9);
    let n = &m.graph.node[0];
    assert_eq!(n.input, ["x", "y_axes"]);
    assert_eq!(n.attribute.len(), 1);
    let axes = init(&m, "y_axes").unwrap();
    assert_eq!(axes.data_type, elem::INT64);
    assert_eq!(axes.raw_data, (-1i64).to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Expose activations

#[test]
fn expose_activations_appends_float_outputs() {
    let m = residual_model();
    let want: BTreeSet<String> = ["r", "x", "s2", "y"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let e = expose_activations(&m, &want).unwrap();
    let outs: Vec<&str> = e.graph.output.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        outs,
        ["y", "r", "s2", "x"],
        "originals first, no duplicate 'y'"
    );
    assert_eq!(e.graph.node, m.graph.node);
    snapshot("expose_residual.txt", &dump(&e.graph));

    let missing: BTreeSet<String> = ["nope".to_string()].into();
    let err = expose_activations(&m, &missing).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    let constant: BTreeSet<String> = ["w1".to_string()].into();
    let err = expose_activations(&m, &constant).unwrap_err().to_string();
    assert!(err.contains("initializer"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// float16

#[test]
fn float16_keeps_io_float32_and_casts_the_rest() {
    let m = residual_model();
    let (_, q, _) = quantize(&m, &policy(Target::Tensorrt));
    let h = to_float16(&q).unwrap();
    assert_eq!(
        h.opset_import[0].version, 19,
        "float16 scales need opset 19"
    );
    assert_eq!(h.graph.input, m.graph.input);
    assert_eq!(h.graph.output, m.graph.output);
    assert_topological(&h);
    snapshot("qdq_residual_tensorrt_fp16.txt", &dump(&h.graph));
    for t in &h.graph.initializer {
        let want = if t.name.ends_with("_quantized") || t.name.ends_with("_zero_point") {
            elem::INT8
        } else {
            elem::FLOAT16
        };
        assert_eq!(t.data_type, want, "{}", t.name);
    }
    assert_eq!(
        count_op(&h, "Cast"),
        2,
        "one at the input, one at the output"
    );
    // Requantized weights reconstruct the original within one step (two roundings).
    let w = f32_data(init(&m, "w1").unwrap()).unwrap();
    let q8: Vec<i8> = init(&h, "w1_quantized")
        .unwrap()
        .raw_data
        .iter()
        .map(|&b| b as i8)
        .collect();
    let s: Vec<f32> = init(&h, "w1_scale")
        .unwrap()
        .raw_data
        .chunks(2)
        .map(|c| f16_bits_to_f32(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    for (k, (&v, &orig)) in q8.iter().zip(&w).enumerate() {
        let c = k / (16 * 3);
        assert!(
            (v as f32 * s[c] - orig).abs() <= s[c] * 1.001,
            "element {k}"
        );
    }
    // A model without Q/DQ keeps its opset.
    let h = to_float16(&m).unwrap();
    assert_eq!(h.opset_import[0].version, 17);
    assert_topological(&h);
}

// ---------------------------------------------------------------------------------------------
// Deployable size

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
