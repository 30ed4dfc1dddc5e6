//! Weight-only int8 ([`QuantMode::WeightOnly`]): the selected MatMul/Gemm/Conv nodes read int8
//! per-channel weights through a DequantizeLinear and nothing else changes (no activation,
//! residual or output Q/DQ on any target), so no calibration table is needed. Fires once per
//! weighted node with a constant weight (snapshot of the text dump); not on nodes outside the
//! selection, on an activation × activation MatMul, or on a weight computed at run time.
//! MatMul weights `[K, N]` get one scale per output column (axis 1). ORT parity is in
//! `engines/tests/qdq_parity.rs` (this crate does not link ONNX Runtime).

use std::collections::BTreeSet;

use exporter::graph::dump;
use exporter::model::elem;
use exporter::onnx::builders::{model, node, value_info};
use exporter::passes::{f32_data, insert_qdq};
use exporter::pipeline::quantize_with;
use exporter::policy::{plan, QuantMode, QuantPolicy, Target};
use exporter::ExportError;
use onnx_protobuf::{GraphProto, ModelProto, TensorProto};

use super::fixtures::*;

/// x[2,8] → mm1 (MatMul, W [8,16]) → relu → gemm (Gemm, transB=1, W [12,16]) → g;
/// g → mm_out (MatMul, W [12,6]) → y; attn = MatMul(g, Transpose(g)) → s (no constant weight);
/// dyn = MatMul(x, Reshape(wflat)) (a weight computed at run time) → d;
/// z[1,16,10] → conv (16→16, k3) → c.
pub(crate) fn linear_model() -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "linear".into();
    g.input.push(value_info("x", elem::FLOAT, &[2, 8]));
    g.input.push(value_info("z", elem::FLOAT, &[1, 16, 10]));
    for (o, d) in [
        ("y", vec![2, 6]),
        ("s", vec![2, 2]),
        ("d", vec![2, 4]),
        ("c", vec![1, 16, 10]),
    ] {
        g.output.push(value_info(o, elem::FLOAT, &d));
    }
    weight(&mut g, "w1", &[8, 16], 11);
    weight(&mut g, "w2", &[12, 16], 12);
    weight(&mut g, "b2", &[12], 13);
    weight(&mut g, "w3", &[12, 6], 14);
    weight(&mut g, "wflat", &[32], 15);
    g.initializer.push(TensorProto {
        name: "wshape".into(),
        data_type: elem::INT64,
        dims: vec![2],
        raw_data: [8i64, 4].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    });
    weight(&mut g, "wc", &[16, 16, 3], 16);
    weight(&mut g, "bc", &[16], 17);
    g.node
        .push(named(node("MatMul", &["x", "w1"], &["a"]), "mm1"));
    g.node.push(named(node("Relu", &["a"], &["r"]), "relu"));
    let mut gemm = named(node("Gemm", &["r", "w2", "b2"], &["g"]), "gemm");
    gemm.attribute.push(int("transB", 1));
    g.node.push(gemm);
    g.node
        .push(named(node("MatMul", &["g", "w3"], &["y"]), "mm_out"));
    g.node.push(named(node("Transpose", &["g"], &["gt"]), "gt"));
    g.node
        .push(named(node("MatMul", &["g", "gt"], &["s"]), "attn"));
    g.node.push(named(
        node("Reshape", &["wflat", "wshape"], &["wdyn"]),
        "reshape",
    ));
    g.node
        .push(named(node("MatMul", &["x", "wdyn"], &["d"]), "dyn"));
    g.node.push(conv("conv", "z", "wc", "bc", "c", 3));
    model(g, 17)
}

pub(crate) fn weight_only(target: Target, nodes: Option<&[&str]>) -> QuantPolicy {
    QuantPolicy {
        target,
        mode: QuantMode::WeightOnly,
        nodes: nodes.map(|n| n.iter().map(|s| s.to_string()).collect()),
        ..QuantPolicy::default()
    }
}

#[test]
fn weight_only_fires_once_per_constant_weight_and_needs_no_table() {
    let m = linear_model();
    for target in [Target::Tensorrt, Target::OrtCpu, Target::Openvino] {
        let q = quantize_with(&m, None, &weight_only(target, None), false).unwrap();
        let r = &q.report;
        let planned: Vec<(&str, usize)> = q
            .plan
            .quantized
            .iter()
            .map(|p| (p.node.as_str(), p.weight_axis))
            .collect();
        // MatMul W [K, N] → axis 1 (per output column); Gemm transB=1 W [N, K] → 0; Conv → 0
        assert_eq!(
            planned,
            [("mm1", 1), ("gemm", 0), ("mm_out", 1), ("conv", 0)],
            "{target}"
        );
        assert!(q
            .plan
            .quantized
            .iter()
            .all(|p| p.per_channel && p.inputs.is_empty() && p.outputs.is_empty()));
        assert!(q.plan.activations.is_empty() && q.plan.residual_adds.is_empty());
        assert_eq!((r.quantized_nodes, r.weights), (4, 4), "{target}");
        assert_eq!(
            (r.q_nodes, r.dq_nodes, r.activations),
            (0, 4, 0),
            "{target}"
        );
        assert_eq!(count_op(&q.model, "QuantizeLinear"), 0);
        assert_eq!(count_op(&q.model, "DequantizeLinear"), 4);
        assert_eq!(r.rewired_inputs, 4);
        let skipped: Vec<&str> = q.plan.skipped.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(skipped, ["attn", "dyn"]);
        assert_topological(&q.model);
        // activations untouched: every weighted node still reads its float input
        assert_eq!(node_by_name(&q.model, "mm1").input, ["x", "w1_dq"]);
        assert_eq!(node_by_name(&q.model, "gemm").input, ["r", "w2_dq", "b2"]);
        assert_eq!(node_by_name(&q.model, "conv").input, ["z", "wc_dq", "bc"]);
        assert_eq!(node_by_name(&q.model, "attn").input, ["g", "gt"]);
        assert_eq!(node_by_name(&q.model, "dyn").input, ["x", "wdyn"]);
    }
    let q = quantize_with(&m, None, &weight_only(Target::OrtCpu, None), false).unwrap();
    snapshot("weight_only_linear.txt", &dump(&q.model.graph));
}

#[test]
fn matmul_scales_are_per_output_column() {
    let m = linear_model();
    let q = quantize_with(&m, None, &weight_only(Target::Tensorrt, None), false).unwrap();
    let dq = node_by_name(&q.model, "w1_dq");
    let axis = dq.attribute.iter().find(|a| a.name == "axis").map(|a| a.i);
    assert_eq!(axis, Some(1));
    let scale = f32_data(init(&q.model, &dq.input[1]).unwrap()).unwrap();
    assert_eq!(
        scale.len(),
        16,
        "one scale per output column N of W [8, 16]"
    );
    // each column's scale is that column's max |w| / 127, and the int8 weights round-trip
    let w = f32_data(init(&m, "w1").unwrap()).unwrap();
    let wq = init(&q.model, &dq.input[0]).unwrap();
    assert_eq!(wq.data_type, elem::INT8);
    let wq: Vec<i8> = wq.raw_data.iter().map(|&b| b as i8).collect();
    for n in 0..16 {
        let amax = (0..8).map(|k| w[k * 16 + n].abs()).fold(0f32, f32::max);
        assert!(
            (scale[n] - amax / 127.0).abs() <= 1e-7 * amax.max(1.0),
            "column {n}"
        );
        for k in 0..8 {
            let back = wq[k * 16 + n] as f32 * scale[n];
            assert!((back - w[k * 16 + n]).abs() <= scale[n] / 2.0 + 1e-7);
        }
    }
    assert!(
        init(&q.model, "w1").is_none(),
        "the float weight is dropped"
    );
}

#[test]
fn weight_only_leaves_unselected_nodes_and_residual_adds_alone() {
    let m = linear_model();
    let sel = ["mm1", "attn", "dyn"];
    let q = quantize_with(&m, None, &weight_only(Target::OrtCpu, Some(&sel)), false).unwrap();
    assert_eq!(q.report.quantized_nodes, 1);
    assert_eq!(count_op(&q.model, "DequantizeLinear"), 1);
    assert_eq!(node_by_name(&q.model, "mm_out").input, ["g", "w3"]);
    assert_eq!(node_by_name(&q.model, "gemm").input, ["r", "w2", "b2"]);
    assert_eq!(node_by_name(&q.model, "conv").input, ["z", "wc", "bc"]);
    let why: Vec<(&str, &str)> = q
        .plan
        .skipped
        .iter()
        .map(|s| (s.node.as_str(), s.reason.as_str()))
        .collect();
    assert!(
        why.contains(&("mm_out", "not in the node selection")),
        "{why:?}"
    );
    assert!(
        why.iter()
            .any(|(n, r)| *n == "attn" && r.contains("not a constant initializer")),
        "{why:?}"
    );
    assert!(
        why.iter()
            .any(|(n, r)| *n == "dyn" && r.contains("not a constant initializer")),
        "{why:?}"
    );

    // the residual model's Conv→Add: full int8 puts Q/DQ on the skip input, weight-only none
    let res = residual_model();
    for target in [Target::Tensorrt, Target::OrtCpu, Target::Openvino] {
        let q = quantize_with(&res, None, &weight_only(target, None), false).unwrap();
        assert_eq!((q.report.q_nodes, q.report.dq_nodes), (0, 2), "{target}");
        assert_eq!(q.report.residual_adds, 0);
        assert_eq!(node_by_name(&q.model, "add").input, ["c", "r"]);
        assert_eq!(
            node_by_name(&q.model, "conv_small").input,
            ["s2", "w3", "b3"]
        );
    }
}

#[test]
fn full_int8_without_a_table_is_refused_and_the_mode_changes_only_activations() {
    let m = linear_model();
    let full = QuantPolicy {
        target: Target::OrtCpu,
        ..QuantPolicy::default()
    };
    let e = quantize_with(&m, None, &full, false).err().unwrap();
    assert!(matches!(e, ExportError::Table { .. }), "{e}");
    assert!(
        e.to_string().contains("no calibration table was given"),
        "{e}"
    );
    // the same weights either way: full int8's weight initializers equal weight-only's
    let pf = plan(&m, &full).unwrap();
    let (fq, _) = insert_qdq(&m, &pf, &table(&pf.activations, 0.02)).unwrap();
    let wo = quantize_with(&m, None, &weight_only(Target::OrtCpu, None), false).unwrap();
    let ints = |m: &ModelProto| -> BTreeSet<(String, Vec<u8>)> {
        m.graph
            .initializer
            .iter()
            .filter(|t| t.data_type == elem::INT8 && t.dims.len() > 1)
            .map(|t| (t.name.clone(), t.raw_data.clone()))
            .collect()
    };
    assert_eq!(ints(&fq), ints(&wo.model));
    assert!(count_op(&fq, "QuantizeLinear") > 0);
}
