//! The opset-raising pass: raised when the ops allow it, refused naming the node that blocks it,
//! attribute-to-input moves.

use exporter::graph::dump;
use exporter::model::elem;
use exporter::onnx::builders::{model, node, value_info};
use exporter::passes::{insert_qdq, raise_opset};
use exporter::policy::{plan, Target};
use exporter::ExportError;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, GraphProto};

use super::fixtures::*;

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

/// Opset 11 → 19 over every attribute-to-input move (Unsqueeze axes and Split split at 13,
/// ReduceMean axes at 18, Dropout ratio at 12) next to ops that change compatibly and a custom
/// op left alone; the dump matches a snapshot. Raising to an opset the model has already
/// reached changes nothing.
#[test]
fn raise_opset_snapshot_and_no_op_when_new_enough() {
    let mut g = GraphProto::new();
    g.name = "raise".into();
    g.input.push(value_info("x", elem::FLOAT, &[1, 4, 6]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 4, 1]));
    g.output.push(value_info("s0", elem::FLOAT, &[2, 4, 6]));
    g.output.push(value_info("s1", elem::FLOAT, &[2, 4, 6]));
    g.output.push(value_info("z", elem::FLOAT, &[1, 4, 6]));
    g.output.push(value_info("c", elem::FLOAT, &[1, 4, 6]));
    g.node.push(named(node("Relu", &["x"], &["r"]), "relu"));
    let mut d = named(node("Dropout", &["r"], &["d"]), "dropout");
    d.attribute.push(AttributeProto {
        name: "ratio".into(),
        type_: AttributeType::FLOAT.into(),
        f: 0.25,
        ..Default::default()
    });
    g.node.push(d);
    let mut mean = named(node("ReduceMean", &["d"], &["y"]), "mean");
    mean.attribute.push(ints("axes", &[-1]));
    g.node.push(mean);
    let mut un = named(node("Unsqueeze", &["d"], &["u"]), "unsq");
    un.attribute.push(ints("axes", &[0]));
    g.node.push(un);
    let mut cat = named(node("Concat", &["u", "u"], &["uu"]), "concat");
    cat.attribute.push(int("axis", 0));
    g.node.push(cat);
    let mut split = named(node("Split", &["uu"], &["s0", "s1"]), "split");
    split.attribute.push(ints("split", &[1, 1]));
    g.node.push(split);
    let mut sm = named(node("Softmax", &["d"], &["z"]), "softmax");
    sm.attribute.push(int("axis", -1));
    g.node.push(sm);
    let mut custom = named(node("Frobnicate", &["d"], &["c"]), "frob");
    custom.domain = "com.example".into();
    g.node.push(custom);
    let mut m = model(g, 11);
    assert_eq!(raise_opset(&mut m, 19).unwrap(), 11);
    assert_eq!(m.opset_import[0].version, 19);
    assert_eq!(node_by_name(&m, "split").input, ["uu", "s0_split"]);
    assert_eq!(node_by_name(&m, "mean").input, ["d", "y_axes"]);
    assert_eq!(node_by_name(&m, "dropout").input, ["r", "d_ratio"]);
    snapshot("opset_raise_11_to_19.txt", &dump(&m.graph));

    let before = m.clone();
    assert_eq!(raise_opset(&mut m, 19).unwrap(), 19);
    assert_eq!(raise_opset(&mut m, 13).unwrap(), 19);
    assert_eq!(m, before, "nothing to raise: the model is unchanged");
}
