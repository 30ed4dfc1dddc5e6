//! Dynamic int8 ([`QuantMode::Dynamic`], `passes::dynamic`): a MatMul with a constant 2-D
//! weight becomes `DynamicQuantizeLinear → MatMulInteger → Cast → Mul(x_scale·w_scale)` over the
//! weight-only int8 weight (snapshot of the text dump); one DynamicQuantizeLinear per
//! activation; Gemm and Conv keep weight-only int8; nothing without a constant weight, outside
//! the selection, on a per-row weight or below opset 11; TensorRT refused. ORT parity and the
//! `DynamicQuantizeMatMul` fusion are in `engines/tests/qdq_parity.rs`.

use std::collections::BTreeSet;

use exporter::graph::dump;
use exporter::model::elem;
use exporter::onnx::builders::int_attr;
use exporter::passes::dynamic_int8;
use exporter::pipeline::{check_quantizable, quantize_with};
use exporter::policy::{QuantMode, QuantPolicy, Target};
use exporter::ExportError;
use onnx_protobuf::ModelProto;

use super::fixtures::*;
use super::weight_only::{linear_model, weight_only};

fn dynamic(target: Target, nodes: Option<&[&str]>) -> QuantPolicy {
    QuantPolicy {
        mode: QuantMode::Dynamic,
        ..weight_only(target, nodes)
    }
}

fn inputs(m: &ModelProto, name: &str) -> Vec<String> {
    node_by_name(m, name).input.to_vec()
}

#[test]
fn dynamic_fires_on_constant_weight_matmuls_and_shares_one_dynamic_quantize() {
    let mut m = linear_model();
    // a second MatMul reading x: one DynamicQuantizeLinear serves both
    weight(m.graph.mut_or_insert_default(), "w4", &[8, 5], 21);
    m.graph.mut_or_insert_default().node.push(named(
        exporter::onnx::builders::node("MatMul", &["x", "w4"], &["e"]),
        "mm_x2",
    ));
    m.graph
        .mut_or_insert_default()
        .output
        .push(exporter::onnx::builders::value_info(
            "e",
            elem::FLOAT,
            &[2, 5],
        ));
    for target in [Target::OrtCpu, Target::Openvino] {
        let q = quantize_with(&m, None, &dynamic(target, None), false).unwrap();
        let d = q.dynamic.as_ref().unwrap();
        assert_eq!(d.converted, ["a", "y", "e"], "{target}");
        let skipped: Vec<&str> = d.skipped.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(
            skipped,
            ["g", "c"],
            "Gemm and Conv stay weight-only: {:?}",
            d.skipped
        );
        assert_eq!((d.activations, d.removed_dq), (2, 3));
        assert_eq!(count_op(&q.model, "DynamicQuantizeLinear"), 2);
        assert_eq!(count_op(&q.model, "MatMulInteger"), 3);
        assert_eq!(count_op(&q.model, "QuantizeLinear"), 0);
        // Gemm and Conv keep their weight-only DequantizeLinear
        assert_eq!(count_op(&q.model, "DequantizeLinear"), 2);
        assert_eq!(inputs(&q.model, "gemm"), ["r", "w2_dq", "b2"]);
        assert_eq!(inputs(&q.model, "conv"), ["z", "wc_dq", "bc"]);
        assert_eq!(
            inputs(&q.model, "a_int"),
            [
                "x_dynq",
                "w1_quantized",
                "x_dynq_zero_point",
                "w1_zero_point"
            ]
        );
        assert_eq!(inputs(&q.model, "a_scale"), ["x_dynq_scale", "w1_scale"]);
        // the last Mul keeps the MatMul's name and output
        let mm1 = node_by_name(&q.model, "mm1");
        assert_eq!(
            (mm1.op_type.as_str(), mm1.output.to_vec()),
            ("Mul", vec!["a".to_string()])
        );
        assert_eq!(inputs(&q.model, "mm1"), ["a_int_float", "a_scale"]);
        assert_eq!(inputs(&q.model, "e_int")[0], "x_dynq");
        assert_eq!(inputs(&q.model, "attn"), ["g", "gt"]);
        assert_eq!(inputs(&q.model, "dyn"), ["x", "wdyn"]);
        assert!(init(&q.model, "w1_quantized").is_some());
        assert_topological(&q.model);
    }
    let q = quantize_with(&linear_model(), None, &dynamic(Target::OrtCpu, None), false).unwrap();
    snapshot("dynamic_linear.txt", &dump(&q.model.graph));
}

#[test]
fn dynamic_leaves_unselected_and_per_row_weights_and_old_opsets_alone() {
    let m = linear_model();
    // per node: mm1 dynamic, mm_out weight-only
    let mut p = weight_only(Target::OrtCpu, Some(&["mm1", "mm_out"]));
    p.node_modes.insert("mm1".into(), QuantMode::Dynamic);
    let q = quantize_with(&m, None, &p, false).unwrap();
    assert_eq!(q.dynamic.as_ref().unwrap().converted, ["a"]);
    assert_eq!(inputs(&q.model, "mm_out"), ["g", "w3_dq"]);
    assert_eq!(node_by_name(&q.model, "mm_out").op_type, "MatMul");
    // no dynamic node: no pass, no report
    let wo = quantize_with(&m, None, &weight_only(Target::OrtCpu, None), false).unwrap();
    assert!(wo.dynamic.is_none());
    assert_eq!(count_op(&wo.model, "MatMulInteger"), 0);

    let outs: BTreeSet<String> = ["a", "y", "g", "s"].iter().map(|s| s.to_string()).collect();
    // a weight quantized per row (axis 0) is not per output column: left weight-only
    let mut rows = wo.model.clone();
    for n in &mut rows.graph.mut_or_insert_default().node {
        if n.name == "w1_dq" {
            n.attribute.retain(|a| a.name != "axis");
            n.attribute.push(int_attr("axis", 0));
        }
    }
    let (r, rep) = dynamic_int8(&rows, &outs).unwrap();
    let why = |o: &str| {
        rep.skipped
            .iter()
            .find(|(n, _)| n == o)
            .map(|(_, w)| w.clone())
            .unwrap_or_default()
    };
    assert!(
        why("a").contains("scale has dims") || why("a").contains("per row"),
        "{rep:?}"
    );
    assert!(why("g").contains("not a MatMul"), "{rep:?}");
    assert!(why("s").contains("from a Transpose node"), "{rep:?}");
    assert_eq!(rep.converted, ["y"]);
    assert_eq!(inputs(&r, "mm1"), ["x", "w1_dq"]);
    // below opset 11 nothing is converted
    let mut old = wo.model.clone();
    for o in &mut old.opset_import {
        if o.domain.is_empty() {
            o.version = 10;
        }
    }
    let (same, rep) = dynamic_int8(&old, &outs).unwrap();
    assert!(
        rep.converted.is_empty() && rep.skipped.len() == 4,
        "{rep:?}"
    );
    assert_eq!(same.graph.node.len(), old.graph.node.len());
}

#[test]
fn dynamic_for_tensorrt_is_refused_before_any_work() {
    let m = linear_model();
    let p = dynamic(Target::Tensorrt, None);
    for e in [
        check_quantizable(&m, &p).err().unwrap(),
        quantize_with(&m, None, &p, false).err().unwrap(),
    ] {
        assert!(matches!(e, ExportError::Policy(_)), "{e}");
        assert!(
            e.to_string().contains("TensorRT has no MatMulInteger"),
            "{e}"
        );
    }
    assert_eq!("dynamic".parse::<QuantMode>().unwrap(), QuantMode::Dynamic);
    assert!(!QuantMode::Dynamic.needs_table());
}
