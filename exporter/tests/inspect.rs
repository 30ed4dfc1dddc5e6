//! Inspection: per-group inventory, and the TensorRT QDQ rules on tiny graphs and on a QDQ
//! model made by ONNX Runtime's own quantizer (tools/make_ort_qdq_fixture.py).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use exporter::groups::{preset, GroupSpec, LayerGroups};
use exporter::inspect::{check_qdq, inventory, qdq_report, Rule, Violation};
use exporter::model::elem;
use exporter::onnx::builders::{model, node, tensor_f32, value_info};
use onnx_protobuf::{attribute_proto::AttributeType, AttributeProto, GraphProto, NodeProto};
use onnx_protobuf::{ModelProto, TensorProto};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i: v,
        ..Default::default()
    }
}

fn named(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    let mut n = node(op, inputs, outputs);
    n.name = name.into();
    n
}

fn tensor_i8(name: &str, dims: &[i64], data: &[i8]) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: elem::INT8,
        dims: dims.to_vec(),
        raw_data: data.iter().map(|&x| x as u8).collect(),
        ..Default::default()
    }
}

fn tensor_u8(name: &str, dims: &[i64], data: &[u8]) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: elem::UINT8,
        dims: dims.to_vec(),
        raw_data: data.to_vec(),
        ..Default::default()
    }
}

fn init_mut<'a>(g: &'a mut GraphProto, name: &str) -> &'a mut TensorProto {
    g.initializer
        .iter_mut()
        .find(|t| t.name == name)
        .expect("initializer")
}

fn node_mut<'a>(g: &'a mut GraphProto, name: &str) -> &'a mut NodeProto {
    g.node.iter_mut().find(|n| n.name == name).expect("node")
}

/// A QDQ graph that follows every TensorRT rule:
///
/// x → Q/DQ → Conv(W int8 per-channel axis 0 → DQ) → Add(·, DQ(Q(skip))) → Relu → Q/DQ →
/// Gemm(transB=1, float G → Q → DQ per-channel axis 0) → Q/DQ → MatMul(M int8 → DQ axis 1)
fn clean_graph() -> GraphProto {
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[1, 2, 10]));
    g.input.push(value_info("skip", elem::FLOAT, &[1, 4, 8]));
    g.output.push(value_info("y", elem::FLOAT, &[1, 2]));
    let f = |name: &str, dims: &[i64], v: &[f32]| tensor_f32(name, dims, v);
    g.initializer.push(f("sx", &[], &[0.05]));
    g.initializer.push(tensor_i8("zx", &[], &[0]));
    g.initializer.push(f("s_skip", &[], &[0.05]));
    g.initializer.push(tensor_i8("z_skip", &[], &[0]));
    g.initializer
        .push(tensor_i8("W", &[4, 2, 3], &[1, -2, 3, -4, 5, -6].repeat(4)));
    g.initializer
        .push(f("W_scale", &[4], &[0.01, 0.02, 0.03, 0.04]));
    g.initializer.push(tensor_i8("W_zp", &[4], &[0; 4]));
    g.initializer.push(f("B", &[4], &[0.0; 4]));
    g.initializer.push(f("s_r", &[], &[0.1]));
    g.initializer.push(tensor_i8("z_r", &[], &[0]));
    g.initializer.push(f("G", &[4, 32], &[0.5; 128]));
    g.initializer.push(f("G_scale", &[4], &[0.004; 4]));
    g.initializer.push(tensor_i8("G_zp", &[4], &[0; 4]));
    g.initializer.push(f("s_g", &[], &[0.2]));
    g.initializer.push(tensor_i8("z_g", &[], &[0]));
    g.initializer.push(tensor_i8("M", &[4, 2], &[1; 8]));
    g.initializer.push(f("M_scale", &[2], &[0.01, 0.02]));
    g.initializer.push(tensor_i8("M_zp", &[2], &[0; 2]));
    g.initializer.push(TensorProto {
        name: "unused_shape".into(),
        data_type: elem::INT64,
        dims: vec![2],
        raw_data: [1i64, 32].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    });
    g.initializer.push(TensorProto {
        name: "flat".into(),
        data_type: elem::INT64,
        dims: vec![2],
        raw_data: [1i64, 32].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    });

    let mut dq_w = named(
        "DequantizeLinear",
        "W_dq",
        &["W", "W_scale", "W_zp"],
        &["W_d"],
    );
    dq_w.attribute.push(int_attr("axis", 0));
    let mut q_g = named(
        "QuantizeLinear",
        "G_q",
        &["G", "G_scale", "G_zp"],
        &["G_qt"],
    );
    q_g.attribute.push(int_attr("axis", 0));
    let mut dq_g = named(
        "DequantizeLinear",
        "G_dq",
        &["G_qt", "G_scale", "G_zp"],
        &["G_d"],
    );
    dq_g.attribute.push(int_attr("axis", 0));
    let mut gemm = named("Gemm", "gemm", &["r_d", "G_d"], &["gm"]);
    gemm.attribute.push(int_attr("transB", 1));
    let mut dq_m = named(
        "DequantizeLinear",
        "M_dq",
        &["M", "M_scale", "M_zp"],
        &["M_d"],
    );
    dq_m.attribute.push(int_attr("axis", 1));

    g.node.extend([
        named("QuantizeLinear", "x_q", &["x", "sx", "zx"], &["x_qt"]),
        named("DequantizeLinear", "x_dq", &["x_qt", "sx", "zx"], &["x_d"]),
        dq_w,
        named("Conv", "conv", &["x_d", "W_d", "B"], &["c"]),
        named(
            "QuantizeLinear",
            "skip_q",
            &["skip", "s_skip", "z_skip"],
            &["skip_qt"],
        ),
        named(
            "DequantizeLinear",
            "skip_dq",
            &["skip_qt", "s_skip", "z_skip"],
            &["skip_d"],
        ),
        named("Add", "add", &["c", "skip_d"], &["a"]),
        named("Relu", "relu", &["a"], &["r0"]),
        named("Reshape", "flatten", &["r0", "flat"], &["r"]),
        named("QuantizeLinear", "r_q", &["r", "s_r", "z_r"], &["r_qt"]),
        named(
            "DequantizeLinear",
            "r_dq",
            &["r_qt", "s_r", "z_r"],
            &["r_d"],
        ),
        q_g,
        dq_g,
        gemm,
        named(
            "QuantizeLinear",
            "gm_in_q",
            &["gm_id", "s_g", "z_g"],
            &["g_qt"],
        ),
        named(
            "DequantizeLinear",
            "gm_in_dq",
            &["g_qt", "s_g", "z_g"],
            &["g_d"],
        ),
        dq_m,
        named("MatMul", "matmul", &["g_d", "M_d"], &["y"]),
    ]);
    // The Gemm output goes through an Identity before its Q (a Q straight on it breaks rule 4).
    let pos = g.node.iter().position(|n| n.name == "gemm").expect("gemm") + 1;
    g.node
        .insert(pos, named("Identity", "gm_id_node", &["gm"], &["gm_id"]));
    g
}

fn violations(g: &GraphProto) -> Vec<Violation> {
    check_qdq(&model(g.clone(), 21))
}

fn by_rule(v: &[Violation]) -> BTreeMap<Rule, usize> {
    let mut m = BTreeMap::new();
    for x in v {
        *m.entry(x.rule).or_default() += 1;
    }
    m
}

/// Exactly the rules in `want` fire, with these counts.
fn assert_rules(g: &GraphProto, want: &[(Rule, usize)]) -> Vec<Violation> {
    let v = violations(g);
    let want: BTreeMap<Rule, usize> = want.iter().copied().collect();
    assert_eq!(by_rule(&v), want, "violations: {v:#?}");
    v
}

#[test]
fn clean_graph_breaks_no_rule() {
    let g = clean_graph();
    assert_rules(&g, &[]);
    let r = qdq_report(&model(g, 21));
    assert_eq!(r.summary.quantize_linear, 5);
    assert_eq!(r.summary.dequantize_linear, 7);
    assert_eq!(r.summary.weighted_ops, 3);
    assert_eq!(r.summary.quantized_weighted_ops, 3);
    assert!(r.markdown(10).contains("No TensorRT rule is broken"));
}

#[test]
fn no_qdq() {
    let mut g = GraphProto::new();
    g.initializer.push(tensor_f32("w", &[2, 2], &[1.0; 4]));
    g.node.push(named("MatMul", "mm", &["x", "w"], &["y"]));
    let v = assert_rules(&g, &[(Rule::NoQdq, 1)]);
    assert!(v[0].detail.contains("no QuantizeLinear"));
}

#[test]
fn nonzero_zero_point() {
    let mut g = clean_graph();
    init_mut(&mut g, "zx").raw_data = vec![3];
    let v = assert_rules(&g, &[(Rule::NonzeroZeroPoint, 2)]);
    assert_eq!((v[0].node.as_str(), v[0].tensor.as_str()), ("x_q", "zx"));
    assert_eq!(v[1].node, "x_dq");
    assert_eq!(v[0].detail, "activation zero point is 3");
    assert_eq!(
        v[0].to_string(),
        "nonzero-zero-point: node 'x_q', tensor 'zx': activation zero point is 3"
    );

    let mut g = clean_graph();
    init_mut(&mut g, "W_zp").raw_data = vec![0, 0, 1, 0];
    let v = assert_rules(&g, &[(Rule::NonzeroZeroPoint, 1)]);
    assert_eq!(v[0].detail, "1 of 4 weight zero points are non-zero");

    // A zero point that is computed, not constant.
    let mut g = clean_graph();
    node_mut(&mut g, "skip_q").input[2] = "zp_dyn".into();
    g.node
        .insert(0, named("Identity", "zp_id", &["z_skip"], &["zp_dyn"]));
    let v = violations(&g);
    assert!(v
        .iter()
        .any(|x| x.rule == Rule::NonzeroZeroPoint && x.detail.contains("not a constant")));
}

#[test]
fn bad_scale() {
    for bad in [0.0f32, -0.5, f32::NAN, f32::INFINITY] {
        let mut g = clean_graph();
        *init_mut(&mut g, "s_r") = tensor_f32("s_r", &[], &[bad]);
        let v = assert_rules(&g, &[(Rule::BadScale, 2)]);
        assert_eq!((v[0].node.as_str(), v[0].tensor.as_str()), ("r_q", "s_r"));
    }
    let mut g = clean_graph();
    *init_mut(&mut g, "W_scale") = tensor_f32("W_scale", &[4], &[0.01, 0.0, 0.03, -1.0]);
    let v = assert_rules(&g, &[(Rule::BadScale, 1)]);
    assert!(
        v[0].detail.starts_with("2 of 4 scale values"),
        "{}",
        v[0].detail
    );

    // A float16 scale is read too.
    let mut g = clean_graph();
    *init_mut(&mut g, "s_skip") = TensorProto {
        name: "s_skip".into(),
        data_type: elem::FLOAT16,
        raw_data: vec![0x00, 0xbc], // -1.0
        ..Default::default()
    };
    assert_rules(&g, &[(Rule::BadScale, 2)]);
}

#[test]
fn per_axis_activation() {
    let mut g = clean_graph();
    *init_mut(&mut g, "s_skip") = tensor_f32("s_skip", &[2], &[0.05, 0.06]);
    *init_mut(&mut g, "z_skip") = tensor_i8("z_skip", &[2], &[0, 0]);
    let v = assert_rules(&g, &[(Rule::PerAxisActivation, 1)]);
    assert_eq!(
        (v[0].node.as_str(), v[0].tensor.as_str()),
        ("skip_q", "skip")
    );
}

#[test]
fn qdq_on_weighted_output() {
    let mut g = clean_graph();
    // Q straight on the Gemm output.
    node_mut(&mut g, "gm_in_q").input[0] = "gm".into();
    let v = assert_rules(&g, &[(Rule::QdqOnWeightedOutput, 1)]);
    assert_eq!(
        (v[0].node.as_str(), v[0].tensor.as_str()),
        ("gm_in_q", "gm")
    );
    assert!(v[0].detail.contains("Gemm 'gemm'"));
}

#[test]
fn missing_weight_quantization() {
    let mut g = clean_graph();
    g.initializer.push(tensor_f32("Wf", &[4, 2, 3], &[0.1; 24]));
    node_mut(&mut g, "conv").input[1] = "Wf".into();
    let v = assert_rules(&g, &[(Rule::MissingWeightQuantization, 1)]);
    assert_eq!((v[0].node.as_str(), v[0].tensor.as_str()), ("conv", "Wf"));
    let r = qdq_report(&model(g, 21));
    assert_eq!(r.summary.quantized_weighted_ops, 2);

    // A float op with float weights is not flagged: nothing says it should be int8.
    let mut g = clean_graph();
    g.initializer.push(tensor_f32("Wf", &[4, 2, 3], &[0.1; 24]));
    node_mut(&mut g, "conv").input = vec!["x".into(), "Wf".into(), "B".into()];
    assert_rules(&g, &[]);
}

#[test]
fn conv_add_edge_quantized() {
    let mut g = clean_graph();
    // Q/DQ on the Conv → Add edge (and, as ORT does it, none on the skip input).
    g.initializer.push(tensor_f32("s_c", &[], &[0.1]));
    g.initializer.push(tensor_i8("z_c", &[], &[0]));
    let pos = g.node.iter().position(|n| n.name == "add").expect("add");
    g.node.insert(
        pos,
        named("QuantizeLinear", "c_q", &["c", "s_c", "z_c"], &["c_qt"]),
    );
    g.node.insert(
        pos + 1,
        named(
            "DequantizeLinear",
            "c_dq",
            &["c_qt", "s_c", "z_c"],
            &["c_d"],
        ),
    );
    node_mut(&mut g, "add").input = vec!["c_d".into(), "skip".into()];
    let v = assert_rules(
        &g,
        &[
            (Rule::QdqOnWeightedOutput, 1),
            (Rule::ConvAddEdgeQuantized, 1),
        ],
    );
    let edge = v
        .iter()
        .find(|x| x.rule == Rule::ConvAddEdgeQuantized)
        .expect("edge");
    assert_eq!((edge.node.as_str(), edge.tensor.as_str()), ("add", "c_d"));
    assert!(edge.detail.contains("Conv 'conv'"));

    // The same edge from a float Conv (not quantized) is only rule 4.
    node_mut(&mut g, "conv").input[0] = "x".into();
    node_mut(&mut g, "conv").input[1] = "W_f".into();
    g.initializer
        .push(tensor_f32("W_f", &[4, 2, 3], &[0.1; 24]));
    assert_rules(&g, &[(Rule::QdqOnWeightedOutput, 1)]);
}

#[test]
fn residual_add_of_two_convs() {
    // The Add's skip input is itself a quantized Conv's output: Q/DQ on that edge and a clean
    // edge from the other Conv is TensorRT's fusable placement (NVIDIA's quantized ResNet).
    let mut g = clean_graph();
    let pos = g
        .node
        .iter()
        .position(|n| n.name == "skip_q")
        .expect("skip_q");
    g.node
        .insert(pos, named("Conv", "conv2", &["x_d", "W_d", "B"], &["c2"]));
    node_mut(&mut g, "skip_q").input[0] = "c2".into();
    assert_rules(&g, &[]);

    // Quantizing the other edge too leaves no fusable edge: both are reported.
    g.initializer.push(tensor_f32("s_c", &[], &[0.1]));
    g.initializer.push(tensor_i8("z_c", &[], &[0]));
    let pos = g.node.iter().position(|n| n.name == "add").expect("add");
    g.node.insert(
        pos,
        named("QuantizeLinear", "c_q", &["c", "s_c", "z_c"], &["c_qt"]),
    );
    g.node.insert(
        pos + 1,
        named(
            "DequantizeLinear",
            "c_dq",
            &["c_qt", "s_c", "z_c"],
            &["c_d"],
        ),
    );
    node_mut(&mut g, "add").input[0] = "c_d".into();
    assert_rules(
        &g,
        &[
            (Rule::QdqOnWeightedOutput, 2),
            (Rule::ConvAddEdgeQuantized, 2),
        ],
    );
}

#[test]
fn weight_axis() {
    let set_axis = |g: &mut GraphProto, n: &str, axis: i64| {
        node_mut(g, n).attribute = vec![int_attr("axis", axis)];
    };
    // Conv weight quantized along axis 1 (its default when the attribute is missing).
    let mut g = clean_graph();
    node_mut(&mut g, "W_dq").attribute.clear();
    let v = assert_rules(&g, &[(Rule::WeightAxis, 1)]);
    assert_eq!((v[0].node.as_str(), v[0].tensor.as_str()), ("conv", "W_d"));
    assert!(v[0].detail.contains("axis 1") && v[0].detail.contains("axis 0"));
    // Negative axes are normalised: -3 of a rank-3 weight is 0.
    let mut g = clean_graph();
    set_axis(&mut g, "W_dq", -3);
    assert_rules(&g, &[]);

    // Gemm with transB=0 wants axis 1.
    let mut g = clean_graph();
    node_mut(&mut g, "gemm").attribute = vec![int_attr("transB", 0)];
    assert_rules(&g, &[(Rule::WeightAxis, 1)]);
    set_axis(&mut g, "G_dq", 1);
    assert_rules(&g, &[]);

    // MatMul wants the last axis.
    let mut g = clean_graph();
    set_axis(&mut g, "M_dq", 0);
    let v = assert_rules(&g, &[(Rule::WeightAxis, 1)]);
    assert_eq!(v[0].node, "matmul");
    set_axis(&mut g, "M_dq", -1);
    assert_rules(&g, &[]);

    // ConvTranspose wants axis 1.
    let mut g = clean_graph();
    node_mut(&mut g, "conv").op_type = "ConvTranspose".into();
    assert_rules(&g, &[(Rule::WeightAxis, 1)]);
    set_axis(&mut g, "W_dq", 1);
    assert_rules(&g, &[]);
}

#[test]
fn unsigned_activation() {
    // uint8 zero point (0, so only the type is wrong).
    let mut g = clean_graph();
    *init_mut(&mut g, "z_r") = tensor_u8("z_r", &[], &[0]);
    let v = assert_rules(&g, &[(Rule::UnsignedActivation, 2)]);
    assert_eq!((v[0].node.as_str(), v[0].tensor.as_str()), ("r_q", "z_r"));
    assert!(v[0].detail.starts_with("uint8 activation"));

    // No zero point: ONNX's default output type is uint8. The DQ reads that type from the Q.
    let mut g = clean_graph();
    node_mut(&mut g, "r_q").input.truncate(2);
    node_mut(&mut g, "r_dq").input.truncate(2);
    assert_rules(&g, &[(Rule::UnsignedActivation, 2)]);
    // ... unless the Q says otherwise (opset 21 output_dtype).
    node_mut(&mut g, "r_q")
        .attribute
        .push(int_attr("output_dtype", elem::INT8 as i64));
    assert_rules(&g, &[]);

    // A stored uint8 weight with zero point 128: two rules on one node.
    let mut g = clean_graph();
    *init_mut(&mut g, "M") = tensor_u8("M", &[4, 2], &[130; 8]);
    *init_mut(&mut g, "M_zp") = tensor_u8("M_zp", &[2], &[128, 128]);
    let v = assert_rules(
        &g,
        &[(Rule::NonzeroZeroPoint, 1), (Rule::UnsignedActivation, 1)],
    );
    assert!(v[1].detail.starts_with("uint8 weight"), "{}", v[1].detail);
}

#[test]
fn scales_from_constant_nodes() {
    let mut g = clean_graph();
    // The skip scale comes from a Constant node (value_float) instead of an initializer.
    g.initializer.retain(|t| t.name != "s_skip");
    let mut c = named("Constant", "s_skip_const", &[], &["s_skip"]);
    c.attribute.push(AttributeProto {
        name: "value_float".into(),
        type_: AttributeType::FLOAT.into(),
        f: 0.05,
        ..Default::default()
    });
    g.node.insert(0, c);
    assert_rules(&g, &[]);
    node_mut(&mut g, "s_skip_const").attribute[0].f = -1.0;
    assert_rules(&g, &[(Rule::BadScale, 2)]);
}

#[test]
fn inventory_counts_params_once() -> Result<()> {
    let mut g = clean_graph();
    for n in &mut g.node {
        n.name = match n.name.as_str() {
            "x_q" | "x_dq" | "W_dq" | "conv" | "skip_q" | "skip_dq" | "add" => {
                format!("/block1/{}", n.name)
            }
            other => format!("/head/{other}"),
        };
    }
    let groups = LayerGroups::from_depth(&g, 1);
    let m: ModelProto = model(g, 21);
    let inv = inventory(&m, &groups);
    let names: Vec<&str> = inv.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["block1", "head"]);
    let b1 = &inv.groups[0];
    assert_eq!(b1.nodes, 7);
    assert_eq!(b1.ops["QuantizeLinear"], 2);
    // sx zx s_skip z_skip W W_scale W_zp B
    assert_eq!(b1.params.initializers, 8);
    assert_eq!(b1.params.params, 1 + 1 + 1 + 1 + 24 + 4 + 4 + 4);
    assert_eq!(b1.params.bytes, 4 + 1 + 4 + 1 + 24 + 16 + 4 + 16);
    assert_eq!(inv.total.nodes, 19);
    assert_eq!(inv.unused.initializers, 1); // "unused_shape"
    assert_eq!(
        inv.total.params.initializers + inv.unused.initializers,
        m.graph.as_ref().map_or(0, |g| g.initializer.len())
    );
    let md = inv.markdown();
    println!("{md}");
    assert!(md.contains("| block1 | 7 | 40 | 70 B |"), "{md}");
    assert!(md.contains("| **total** | 19 |"), "{md}");
    let json = serde_json::to_value(&inv)?;
    assert_eq!(json["groups"][0]["params"], 40);
    assert_eq!(json["groups"][0]["ops"]["Conv"], 1);

    // Groups of another graph: its nodes show up as (ungrouped).
    let other = LayerGroups::from_depth(&GraphProto::new(), 1);
    let inv = inventory(&m, &other);
    assert_eq!(inv.groups.len(), 1);
    assert_eq!(inv.groups[0].name, "(ungrouped)");
    Ok(())
}

#[test]
fn inventory_of_real_models() -> Result<()> {
    for (model_file, preset_name) in [
        ("campplus.onnx", "campplus"),
        ("ecapa_auralis.onnx", "ecapa-speechbrain"),
    ] {
        let m = exporter::model::load(repo_root().join("fixtures/models").join(model_file))?;
        let graph = m.graph.as_ref().expect("graph");
        let spec: GroupSpec = preset(preset_name).expect("preset");
        let groups = LayerGroups::from_spec(graph, &spec);
        let inv = inventory(&m, &groups);
        println!("{model_file}\n{}", inv.markdown());
        assert_eq!(inv.total.nodes, graph.node.len());
        let convs: usize = inv
            .groups
            .iter()
            .map(|g| g.ops.get("Conv").copied().unwrap_or(0))
            .sum();
        assert_eq!(convs, if preset_name == "campplus" { 225 } else { 16 });
        let init_bytes: u64 = graph
            .initializer
            .iter()
            .map(|t| t.raw_data.len() as u64)
            .sum();
        assert_eq!(inv.total.params.bytes + inv.unused.bytes, init_bytes);
        if preset_name == "campplus" {
            // 6.93 M parameters plus BatchNorm running statistics.
            assert!((6_900_000..7_100_000).contains(&inv.total.params.params));
        }
    }
    Ok(())
}

/// ONNX Runtime 1.31.1 `quantize_static` on the ECAPA fixture (QDQ, uint8 asymmetric
/// activations, int8 symmetric per-tensor weights, int32 biases). Counts checked against the
/// model with the onnx Python package: 88 QuantizeLinear, 146 DequantizeLinear (88 after a Q,
/// 58 on initializers); all 176 Q/DQ on activations are uint8, 122 of them (61 Q/DQ pairs) with
/// a non-zero zero point; each of the 16 Convs has a Q on its output (ORT removed the ReLUs
/// that followed them: the uint8 Q with zero point 0 clamps instead). No Conv feeds an Add
/// directly (ECAPA's residual Adds read BatchNorm, Slice and SE Mul outputs).
#[test]
fn ort_quantized_ecapa() -> Result<()> {
    let path = repo_root().join("fixtures/models/ecapa_auralis.ort_qdq.onnx");
    let m = exporter::model::load(&path)?;
    let r = qdq_report(&m);
    println!("{}", r.markdown(12));
    for rule in Rule::ALL {
        println!(
            "{rule:28} {}",
            r.summary
                .violations
                .get(rule.as_str())
                .copied()
                .unwrap_or(0)
        );
    }
    assert_eq!(r.summary.quantize_linear, 88);
    assert_eq!(r.summary.dequantize_linear, 146);
    assert_eq!(r.summary.weighted_ops, 16);
    assert_eq!(r.summary.quantized_weighted_ops, 16);
    let counts: BTreeMap<Rule, usize> = by_rule(&r.violations);
    let want: BTreeMap<Rule, usize> = [
        (Rule::NonzeroZeroPoint, 122),
        (Rule::QdqOnWeightedOutput, 16),
        (Rule::UnsignedActivation, 176),
    ]
    .into();
    assert_eq!(counts, want);
    assert!(r
        .violations
        .iter()
        .filter(|v| v.rule == Rule::UnsignedActivation)
        .all(|v| v.detail.starts_with("uint8 activation")));
    let conv_out = r
        .violations
        .iter()
        .find(|v| v.rule == Rule::QdqOnWeightedOutput)
        .expect("rule 4");
    // ORT deleted the ReLU after each Conv (its uint8 Q with zero point 0 clamps at 0 instead),
    // so the Conv writes the old ReLU output tensor.
    assert_eq!(
        conv_out.node,
        "/blocks.0/activation/Relu_output_0_QuantizeLinear"
    );
    assert_eq!(conv_out.tensor, "/blocks.0/activation/Relu_output_0");
    assert!(conv_out.detail.contains("Conv '/blocks.0/conv/conv/Conv'"));
    let json = serde_json::to_value(&r)?;
    assert_eq!(json["violations"][0]["rule"], "nonzero-zero-point");
    Ok(())
}
