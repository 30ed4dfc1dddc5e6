//! The `openvino` placement around Concats and the `ort-cpu` uint8 activations, on tiny graphs:
//! which tensors get Q/DQ, which weighted ops read float activations with int8 weights, and the
//! zero-point type and scale of each activation.

use exporter::model::elem;
use exporter::onnx::builders::{model, node, value_info};
use exporter::passes::f32_data;
use exporter::policy::{plan, ActivationType, Target};
use onnx_protobuf::{GraphProto, ModelProto, TensorProto};

use super::fixtures::*;

/// x[1,16,10] → c1 (16→16, k1) → a; cat = Concat(a, x) → Pad (zero pads) → p → c2 (32→16) → y;
/// x → c3 (16→16) → b; add = Add(b, y) → out. A Concat read through a layout op, a weighted op
/// whose output a Concat reads, and a residual Add.
fn concat_model() -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "concat".into();
    g.input.push(value_info("x", elem::FLOAT, &[1, 16, 10]));
    g.output.push(value_info("out", elem::FLOAT, &[1, 16, 10]));
    weight(&mut g, "w1", &[16, 16, 1], 11);
    weight(&mut g, "b1", &[16], 12);
    weight(&mut g, "w2", &[16, 32, 1], 13);
    weight(&mut g, "b2", &[16], 14);
    weight(&mut g, "w3", &[16, 16, 1], 15);
    weight(&mut g, "b3", &[16], 16);
    g.initializer.push(TensorProto {
        name: "pads".into(),
        data_type: elem::INT64,
        dims: vec![6],
        raw_data: vec![0; 48],
        ..Default::default()
    });
    g.node.push(conv("c1", "x", "w1", "b1", "a", 1));
    let mut cat = named(node("Concat", &["a", "x"], &["cat"]), "cat");
    cat.attribute.push(int("axis", 1));
    g.node.push(cat);
    g.node
        .push(named(node("Pad", &["cat", "pads"], &["p"]), "pad"));
    g.node.push(conv("c2", "p", "w2", "b2", "y", 1));
    g.node.push(conv("c3", "x", "w3", "b3", "b", 1));
    g.node
        .push(named(node("Add", &["b", "y"], &["out"]), "add"));
    model(g, 17)
}

fn planned<'a>(p: &'a exporter::policy::QdqPlan, node: &str) -> &'a exporter::policy::PlannedNode {
    p.quantized
        .iter()
        .find(|q| q.node == node)
        .unwrap_or_else(|| panic!("{node} is not quantized"))
}

#[test]
fn openvino_placement_around_concats() {
    let m = concat_model();
    assert_eq!("openvino".parse::<Target>().unwrap(), Target::Openvino);
    let trt = plan(&m, &policy(Target::Tensorrt)).unwrap();
    let ov = plan(&m, &policy(Target::Openvino)).unwrap();
    // TensorRT: Q/DQ on every weighted-op input, none on outputs, the residual Add's skip input.
    assert_eq!(planned(&trt, "c2").inputs, ["p"]);
    assert!(planned(&trt, "c1").outputs.is_empty());
    assert_eq!(trt.residual_adds.len(), 1);
    // OpenVINO: c2 reads a Concat through Pad → its pair is uint8 (zero point 128); c1's output
    // is read by the Concat → its output gets a pair; no residual-Add rule.
    assert_eq!(ov.quantized.len(), 3);
    assert_eq!(planned(&ov, "c2").inputs, ["p"]);
    assert_eq!(planned(&ov, "c1").inputs, ["x"]);
    assert_eq!(planned(&ov, "c1").outputs, ["a"]);
    assert_eq!(planned(&ov, "c3").inputs, ["x"]);
    assert!(planned(&ov, "c3").outputs.is_empty());
    assert!(ov.residual_adds.is_empty());
    let types: Vec<(&str, ActivationType)> = ov
        .activations
        .iter()
        .map(|t| (t.as_str(), ov.activation_type(t)))
        .collect();
    assert_eq!(
        types,
        [
            ("a", ActivationType::Int8),
            ("p", ActivationType::Uint8Centered),
            ("x", ActivationType::Int8),
        ]
    );

    let (_, q, r) = quantize(&m, &policy(Target::Openvino));
    assert_eq!(r.weights, 3);
    assert_eq!((r.q_nodes, r.dq_nodes), (3, 6), "3 activations, 3 weights");
    assert_eq!(node_by_name(&q, "c2").input, ["p_dq", "w2_dq", "b2"]);
    assert_eq!(node_by_name(&q, "cat").input, ["a_dq", "x"]);
    assert_eq!(node_by_name(&q, "add").input, ["b", "y"]);
    for (t, ty, zp) in [
        ("x", elem::INT8, 0u8),
        ("a", elem::INT8, 0),
        ("p", elem::UINT8, 128),
    ] {
        let z = init(&q, &format!("{t}_zero_point")).unwrap();
        assert_eq!((z.data_type, z.raw_data.as_slice()), (ty, &[zp][..]), "{t}");
        let s = f32_data(init(&q, &format!("{t}_scale")).unwrap()).unwrap();
        assert_eq!(s, [0.02], "{t}: the int8 grid");
    }
    assert_topological(&q);
}

#[test]
fn openvino_conv_transpose_weights_per_output_channel() {
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[1, 16, 10]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 32, 10]));
    weight(&mut g, "w", &[16, 32, 1], 21);
    g.node
        .push(named(node("ConvTranspose", &["x", "w"], &["y"]), "deconv"));
    let m = model(g, 17);
    assert_eq!(
        planned(&plan(&m, &policy(Target::Openvino)).unwrap(), "deconv").weight_axis,
        1
    );
}

#[test]
fn ort_cpu_activations_are_uint8() {
    // residual_model: x → conv1 → a → relu1 → r → conv2 → c; add(c, r).
    let m = residual_model();
    let (p, q, _) = quantize(&m, &policy(Target::OrtCpu));
    let types: Vec<(&str, ActivationType)> = p
        .activations
        .iter()
        .map(|t| (t.as_str(), p.activation_type(t)))
        .collect();
    assert_eq!(
        types,
        [
            ("a", ActivationType::Uint8Centered),
            ("c", ActivationType::Uint8Centered),
            ("r", ActivationType::Uint8NonNegative),
            ("x", ActivationType::Uint8Centered),
        ]
    );
    // The table's scale is 0.02 (amax 2.54) for every tensor.
    for (t, zp, scale) in [
        ("x", 128u8, 0.02f32),
        ("a", 128, 0.02),
        ("r", 0, 0.02 * 127.0 / 255.0),
    ] {
        let z = init(&q, &format!("{t}_zero_point")).unwrap();
        assert_eq!(z.data_type, elem::UINT8, "{t}");
        assert_eq!(z.raw_data, [zp], "{t}");
        let s = f32_data(init(&q, &format!("{t}_scale")).unwrap()).unwrap();
        assert!((s[0] - scale).abs() < 1e-9, "{t}: {s:?}");
    }
    // weights stay int8 (U8S8)
    assert_eq!(init(&q, "w1_quantized").unwrap().data_type, elem::INT8);
    assert_eq!(init(&q, "w1_zero_point").unwrap().data_type, elem::INT8);
    // TensorRT keeps int8 activations with zero point 0.
    let (_, q, _) = quantize(&m, &policy(Target::Tensorrt));
    let z = init(&q, "x_zero_point").unwrap();
    assert_eq!(
        (z.data_type, z.raw_data.as_slice()),
        (elem::INT8, &[0u8][..])
    );
}
