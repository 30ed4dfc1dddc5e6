//! The TensorRT placement fixes of issue 19: ConvTranspose weights are quantized per tensor
//! on the `tensorrt` target (the per-channel axis is disputed between TensorRT versions and
//! NVIDIA's tools), and a residual Add whose input reaches a quantized Conv through a
//! BatchNormalization/ReLU chain counts as fused, so its skip input gets the Q/DQ; the
//! TensorRT rule check follows the same chains.

use exporter::inspect::{qdq_report, Rule};
use exporter::model::elem;
use exporter::onnx::builders::{model, node, value_info};
use exporter::policy::{plan, QuantPolicy, ResidualAdd, Target};
use onnx_protobuf::{GraphProto, ModelProto};

use super::fixtures::*;

/// x[1,32,8] → ConvTranspose(w [32, 16, 2], stride 2) → y[1,16,16].
pub(crate) fn conv_transpose_model() -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "deconv".into();
    g.input.push(value_info("x", elem::FLOAT, &[1, 32, 8]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 16, 16]));
    weight(&mut g, "wt", &[32, 16, 2], 1);
    weight(&mut g, "bt", &[16], 2);
    let mut ct = named(node("ConvTranspose", &["x", "wt", "bt"], &["y"]), "deconv");
    ct.attribute.push(ints("strides", &[2]));
    ct.attribute.push(ints("kernel_shape", &[2]));
    g.node.push(ct);
    model(g, 17)
}

#[test]
fn conv_transpose_weights_are_per_tensor_on_tensorrt() {
    let m = conv_transpose_model();
    let p = plan(&m, &policy(Target::Tensorrt)).unwrap();
    assert_eq!(p.quantized.len(), 1);
    assert!(
        !p.quantized[0].per_channel,
        "one scale for the ConvTranspose weight"
    );
    let (_, q, _) = quantize(&m, &policy(Target::Tensorrt));
    let dq = q
        .graph
        .node
        .iter()
        .find(|n| {
            n.op_type == "DequantizeLinear" && n.output[0] == node_by_name(&q, "deconv").input[1]
        })
        .expect("weight DQ");
    let scale = init(&q, &dq.input[1]).expect("weight scale");
    assert!(
        scale.dims.is_empty(),
        "scalar scale, got dims {:?}",
        scale.dims
    );
    assert!(dq.attribute.iter().all(|a| a.name != "axis"), "{dq:?}");
    // TensorRT's rules hold (the old axis-0 per-channel weight broke `weight-axis`)
    let r = qdq_report(&q);
    assert!(r.violations.is_empty(), "{}", r.markdown(10));
    assert_eq!(r.summary.quantized_weighted_ops, 1);

    // ONNX Runtime keeps per output channel (axis 1, 16 scales) for ConvTranspose
    let p = plan(&m, &policy(Target::OrtCpu)).unwrap();
    assert!(p.quantized[0].per_channel);
    assert_eq!(p.quantized[0].weight_axis, 1);
    let (_, q, _) = quantize(&m, &policy(Target::OrtCpu));
    let w_dq = node_by_name(&q, "deconv").input[1].clone();
    let dq = q.graph.node.iter().find(|n| n.output[0] == w_dq).unwrap();
    assert_eq!(init(&q, &dq.input[1]).unwrap().dims, [16]);
}

/// x[1,32,10] → conv1 → BatchNormalization → Relu → r; add(r, x) → s → conv2 → y. The Add's
/// input `r` is conv1's output through BN and ReLU, which TensorRT fuses into conv1; `x` is
/// the skip input.
pub(crate) fn bn_relu_residual_model() -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "bn_residual".into();
    g.input.push(value_info("x", elem::FLOAT, &[1, 32, 10]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 32, 10]));
    weight(&mut g, "w1", &[32, 32, 3], 1);
    weight(&mut g, "b1", &[32], 2);
    weight(&mut g, "w2", &[32, 32, 3], 3);
    weight(&mut g, "b2", &[32], 4);
    weight(&mut g, "bn_scale", &[32], 5);
    weight(&mut g, "bn_bias", &[32], 6);
    weight(&mut g, "bn_mean", &[32], 7);
    // a variance must be positive
    let var: Vec<f32> = (0..32).map(|i| 0.5 + i as f32 / 32.0).collect();
    g.initializer
        .push(exporter::onnx::builders::tensor_f32("bn_var", &[32], &var));
    g.node.push(conv("conv1", "x", "w1", "b1", "c1", 3));
    g.node.push(named(
        node(
            "BatchNormalization",
            &["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
            &["n1"],
        ),
        "bn1",
    ));
    g.node.push(named(node("Relu", &["n1"], &["r"]), "relu1"));
    g.node.push(named(node("Add", &["r", "x"], &["s"]), "add"));
    g.node.push(conv("conv2", "s", "w2", "b2", "y", 3));
    model(g, 17)
}

#[test]
fn residual_add_through_bn_and_relu_quantizes_the_skip_input() {
    let m = bn_relu_residual_model();
    let p = plan(&m, &policy(Target::Tensorrt)).unwrap();
    assert_eq!(p.residual_adds.len(), 1, "{:?}", p.residual_adds);
    assert_eq!(
        (
            p.residual_adds[0].fused.as_str(),
            p.residual_adds[0].skip.as_str()
        ),
        ("r", "x")
    );
    let (_, q, _) = quantize(&m, &policy(Target::Tensorrt));
    let add = node_by_name(&q, "add");
    assert_eq!(add.input[0], "r", "the fused chain edge stays float");
    assert_eq!(add.input[1], "x_dq", "the skip input reads the DQ");
    let r = qdq_report(&q);
    assert!(r.violations.is_empty(), "{}", r.markdown(10));

    // the ORT CPU placement is not changed by this rule
    let p = plan(&m, &policy(Target::OrtCpu)).unwrap();
    assert!(p.residual_adds.is_empty());

    // a chain whose tensor is read elsewhere cannot be fused: no residual rule
    let mut shared = m.clone();
    let g = shared.graph.as_mut().unwrap();
    g.output.push(value_info("n1", elem::FLOAT, &[1, 32, 10]));
    g.node
        .push(named(node("Identity", &["n1"], &["n1_copy"]), "copy"));
    g.output
        .push(value_info("n1_copy", elem::FLOAT, &[1, 32, 10]));
    assert!(plan(&shared, &policy(Target::Tensorrt))
        .unwrap()
        .residual_adds
        .is_empty());
}

#[test]
fn rule_check_follows_bn_relu_chains() {
    // Q/DQ on the chain → Add edge and none on the skip input: the wrong way round
    let m = bn_relu_residual_model();
    let pl = QuantPolicy {
        target: Target::Tensorrt,
        ..QuantPolicy::default()
    };
    let mut p = plan(&m, &pl).unwrap();
    p.residual_adds = vec![ResidualAdd {
        node: "add".into(),
        fused: "x".into(),
        skip: "r".into(),
    }];
    p.activations.insert("r".into());
    let (q, _) = exporter::passes::insert_qdq(&m, &p, &table(&p.activations, 0.02)).unwrap();
    assert_eq!(node_by_name(&q, "add").input[0], "r_dq");
    let r = qdq_report(&q);
    let edge: Vec<_> = r
        .violations
        .iter()
        .filter(|v| v.rule == Rule::ConvAddEdgeQuantized)
        .collect();
    assert_eq!(edge.len(), 1, "{}", r.markdown(10));
    assert_eq!(
        (edge[0].node.as_str(), edge[0].tensor.as_str()),
        ("add", "r_dq")
    );
    assert!(
        edge[0].detail.contains("Conv 'conv1'") && edge[0].detail.contains("chain"),
        "{}",
        edge[0].detail
    );
}
