//! The broadcast-only `Tile` → `Expand` rewrite: fires on PyTorch's export of
//! `x.repeat(1, 1, T)` of a pooled statistic (snapshot), and leaves a `Tile` alone where a
//! repeated axis is not provably of size 1. Numerical parity on a real model (ECAPA-TDNN's
//! pooling) is checked end to end in `tests/cli/engines_openvino.rs`.

use exporter::graph::dump;
use exporter::model::elem;
use exporter::onnx::builders::{model, node, value_info};
use exporter::passes::dims::Dims;
use exporter::passes::tile_to_expand;
use onnx_protobuf::{GraphProto, ModelProto, TensorProto};

use super::fixtures::*;

fn i64s(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: elem::INT64,
        dims: vec![v.len() as i64],
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// `mean = ReduceMean(x, axis 2)`, then `mean.unsqueeze(2).repeat(1, 1, T)` as PyTorch exports
/// it: the repeats built from `Shape(x)[2]`, an `Expand` by ones of their length, a `Tile`,
/// and the result concatenated with `x` (ECAPA's global context). `tile_x_itself` tiles `x`
/// instead (the negative case).
fn repeat_model(tile_x_itself: bool) -> ModelProto {
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[1, 4, -1]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 8, -1]));
    g.initializer.push(i64s("one", &[1]));
    g.initializer.push(i64s("axis2", &[2]));
    g.initializer.push(i64s("axis0", &[0]));
    let mut idx = i64s("two", &[2]);
    idx.dims.clear(); // a scalar index
    g.initializer.push(idx);
    let mut mean = named(node("ReduceMean", &["x"], &["m"]), "mean");
    mean.attribute.push(ints("axes", &[2]));
    mean.attribute.push(int("keepdims", 0));
    g.node.push(mean);
    g.node
        .push(named(node("Unsqueeze", &["m", "axis2"], &["mu"]), "unsq"));
    g.node
        .push(named(node("Shape", &["x"], &["sx"]), "shape_x"));
    g.node
        .push(named(node("Gather", &["sx", "two"], &["t"]), "gather_t"));
    g.node
        .push(named(node("Unsqueeze", &["t", "axis0"], &["tu"]), "unsq_t"));
    let mut reps = named(node("Concat", &["one", "one", "tu"], &["reps"]), "reps");
    reps.attribute.push(int("axis", 0));
    g.node.push(reps);
    g.node
        .push(named(node("Shape", &["reps"], &["sr"]), "shape_reps"));
    let mut ones = named(node("ConstantOfShape", &["sr"], &["ones"]), "ones");
    let v = i64s("", &[1]);
    ones.attribute.push(onnx_protobuf::AttributeProto {
        name: "value".into(),
        type_: onnx_protobuf::attribute_proto::AttributeType::TENSOR.into(),
        t: Some(v).into(),
        ..Default::default()
    });
    g.node.push(ones);
    g.node
        .push(named(node("Expand", &["mu", "ones"], &["me"]), "expand"));
    let tiled = if tile_x_itself { "x" } else { "me" };
    g.node
        .push(named(node("Tile", &[tiled, "reps"], &["mt"]), "tile"));
    let mut cat = named(node("Concat", &["x", "mt"], &["y"]), "cat");
    cat.attribute.push(int("axis", 1));
    g.node.push(cat);
    model(g, 17)
}

#[test]
fn dims_follow_pytorch_shape_arithmetic() {
    let m = repeat_model(false);
    let d = Dims::infer(m.graph.as_ref().unwrap());
    assert_eq!(d.shape("mu"), Some(&[Some(1), Some(4), Some(1)][..]));
    assert_eq!(d.int_values("reps"), Some(&[Some(1), Some(1), None][..]));
    assert_eq!(d.int_values("ones"), Some(&[Some(1), Some(1), Some(1)][..]));
    assert_eq!(d.shape("me"), Some(&[Some(1), Some(4), Some(1)][..]));
    assert_eq!(d.rank("t"), Some(0));
}

#[test]
fn a_tile_of_size_one_axes_becomes_expand() {
    let m = repeat_model(false);
    let (out, report) = tile_to_expand(&m);
    assert_eq!(report.rewritten, ["tile"]);
    assert_eq!(count_op(&out, "Tile"), 0);
    let n = node_by_name(&out, "tile");
    assert_eq!(n.op_type, "Expand");
    assert_eq!(n.input, ["me", "reps"], "same inputs and outputs");
    assert_eq!(n.output, ["mt"]);
    assert_topological(&out);
    snapshot(
        "tile_to_expand_repeat.txt",
        &dump(out.graph.as_ref().unwrap()),
    );
}

#[test]
fn a_tile_that_repeats_a_real_axis_is_kept() {
    // Tile(x, [1, 1, T]) with x's time axis dynamic: Tile gives T·T frames, Expand would not.
    let m = repeat_model(true);
    let (out, report) = tile_to_expand(&m);
    assert!(report.rewritten.is_empty());
    assert_eq!(count_op(&out, "Tile"), 1);
    // a constant repeat other than 1 on a size-4 axis: kept too
    let mut m = repeat_model(false);
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(i64s("reps2", &[1, 2, 1]));
    g.node.iter_mut().for_each(|n| {
        if n.name == "tile" {
            n.input[1] = "reps2".into();
        }
    });
    let (_, report) = tile_to_expand(&m);
    assert!(report.rewritten.is_empty());
}
