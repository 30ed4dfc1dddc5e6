//! Test support shared by the exporter and engines tests: a synthetic model exercising external
//! data (initializers in the main graph and in If branches, a Constant value, typed and raw
//! tensors of several element types).
#![allow(dead_code)]

use exporter::model::elem;
use exporter::onnx::builders::{model, node, tensor_f32 as raw_f32, value_info};
use onnx_protobuf::{
    attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, TensorProto,
};

/// A deterministic pseudo-random float sequence.
pub fn floats(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

/// Y = X·W + B + C (C from a Constant node); Z = If(cond, then: Y + T, else: Y − E) where T and
/// E are initializers of the branches; plus small tensors that must stay inline.
pub fn synthetic_model() -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "synthetic".into();
    g.input.push(value_info("X", elem::FLOAT, &[1, 16]));
    g.input.push(value_info("cond", elem::BOOL, &[]));
    g.output.push(value_info("Y", elem::FLOAT, &[1, 512]));
    g.output.push(value_info("Z", elem::FLOAT, &[1, 512]));
    g.initializer
        .push(raw_f32("W", &[16, 512], &floats(16 * 512, 1)));
    g.initializer.push(raw_f32("B", &[512], &floats(512, 2)));
    let mut small = TensorProto::new();
    small.name = "typed_small".into();
    small.data_type = elem::FLOAT;
    small.dims = vec![2];
    small.float_data = vec![1.5, -2.0];
    g.initializer.push(small);
    let mut shape = TensorProto::new();
    shape.name = "i64_raw".into();
    shape.data_type = elem::INT64;
    shape.dims = vec![2];
    shape.raw_data = [1i64, 512].iter().flat_map(|x| x.to_le_bytes()).collect();
    g.initializer.push(shape);
    let mut h = TensorProto::new();
    h.name = "f16_raw".into();
    h.data_type = elem::FLOAT16;
    h.dims = vec![700];
    h.raw_data = (0..700u16)
        .flat_map(|x| (0x3c00 + x).to_le_bytes())
        .collect();
    g.initializer.push(h);

    let mut constant = node("Constant", &[], &["C"]);
    constant.attribute.push(AttributeProto {
        name: "value".into(),
        type_: AttributeType::TENSOR.into(),
        t: Some(raw_f32("C_value", &[512], &floats(512, 3))).into(),
        ..Default::default()
    });
    g.node.push(node("MatMul", &["X", "W"], &["XW"]));
    g.node.push(node("Add", &["XW", "B"], &["Y0"]));
    g.node.push(constant);
    g.node.push(node("Add", &["Y0", "C"], &["Y"]));

    let branch = |name: &str, op: &str, init: &str, seed: u32| {
        let mut b = GraphProto::new();
        b.name = name.into();
        b.initializer
            .push(raw_f32(init, &[512], &floats(512, seed)));
        b.node
            .push(node(op, &["Y", init], &[&format!("{name}_out")]));
        b.output
            .push(value_info(&format!("{name}_out"), elem::FLOAT, &[1, 512]));
        b
    };
    let mut iff = node("If", &["cond"], &["Z"]);
    for (attr, g) in [
        ("then_branch", branch("then", "Add", "T", 4)),
        ("else_branch", branch("else", "Sub", "E", 5)),
    ] {
        iff.attribute.push(AttributeProto {
            name: attr.into(),
            type_: AttributeType::GRAPH.into(),
            g: Some(g).into(),
            ..Default::default()
        });
    }
    g.node.push(iff);

    let mut m = model(g, 17);
    m.producer_name = "voxq-test".into();
    m
}
