//! SmoothQuant scale migration ([`smooth_quant`]): fires once per LayerNorm whose output only
//! feeds MatMul/Gemm nodes with their own constant weights (and Shape), with one scale per
//! channel shared by every consumer (q/k/v); snapshot of the text dump; does not fire where
//! the LayerNorm output reaches anything else, a weight is computed or shared, a consumer is
//! outside the selection, or there are no per-channel statistics. Smooth int8 through the
//! pipeline rescales the table's range, and a plan may mix modes per node. ORT parity (the
//! smoothed float model computes the same outputs) is in `engines/tests/smooth_parity.rs`.

use std::collections::{BTreeMap, BTreeSet};

use calibration::{CalibrationTable, TensorRange, TensorStats};
use exporter::graph::dump;
use exporter::model::elem;
use exporter::onnx::builders::{model, node, value_info};
use exporter::passes::smooth::SMOOTHED_SUFFIX;
use exporter::passes::{f32_data, smooth_quant, SmoothOptions};
use exporter::pipeline::quantize_with;
use exporter::policy::{plan, QuantMode, QuantPolicy, Target};
use onnx_protobuf::{GraphProto, ModelProto, TensorProto};

use super::fixtures::*;

/// x[4,8] → six LayerNorms:
/// - ln_a → q (MatMul), k (MatMul), v (Gemm transB=1) and a Shape: smoothed;
/// - ln_d (no bias) → MatMul: smoothed;
/// - ln_b → MatMul and a Relu: not (a non-MatMul reader);
/// - ln_c → MatMul with a weight computed at run time: not;
/// - ln_e → MatMul whose weight another MatMul shares: not;
/// - ln_f → MatMul, no statistics: not.
pub(crate) fn norm_model() -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "norms".into();
    g.input.push(value_info("x", elem::FLOAT, &[4, 8]));
    for o in ["q", "k", "v", "yd", "yb", "rb", "yc", "ye", "ys", "yf"] {
        g.output.push(value_info(o, elem::FLOAT, &[4, 6]));
    }
    g.output.push(value_info("sa", elem::INT64, &[2]));
    let mut seed = 30;
    let mut w = |g: &mut GraphProto, name: &str, dims: &[i64]| {
        seed += 1;
        weight(g, name, dims, seed);
    };
    for ln in ["a", "b", "c", "d", "e", "f"] {
        w(&mut g, &format!("g_{ln}"), &[8]);
        if ln != "d" {
            w(&mut g, &format!("b_{ln}"), &[8]);
        }
    }
    for name in ["w_q", "w_k", "w_d", "w_b", "w_s", "w_f"] {
        w(&mut g, name, &[8, 6]);
    }
    w(&mut g, "w_v", &[6, 8]);
    w(&mut g, "b_v", &[6]);
    w(&mut g, "wflat", &[48]);
    g.initializer.push(TensorProto {
        name: "wshape".into(),
        data_type: elem::INT64,
        dims: vec![2],
        raw_data: [8i64, 6].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    });
    let mut n = |op: &str, i: &[&str], o: &[&str], name: &str| {
        g.node.push(named(node(op, i, o), name));
    };
    n("LayerNormalization", &["x", "g_a", "b_a"], &["a"], "ln_a");
    n("MatMul", &["a", "w_q"], &["q"], "mm_q");
    n("MatMul", &["a", "w_k"], &["k"], "mm_k");
    n("Gemm", &["a", "w_v", "b_v"], &["v"], "gemm_v");
    n("Shape", &["a"], &["sa"], "shape_a");
    n("LayerNormalization", &["x", "g_d"], &["d"], "ln_d");
    n("MatMul", &["d", "w_d"], &["yd"], "mm_d");
    n("LayerNormalization", &["x", "g_b", "b_b"], &["b"], "ln_b");
    n("MatMul", &["b", "w_b"], &["yb"], "mm_b");
    n("Relu", &["b"], &["rb"], "relu_b");
    n("LayerNormalization", &["x", "g_c", "b_c"], &["c"], "ln_c");
    n("Reshape", &["wflat", "wshape"], &["wdyn"], "reshape");
    n("MatMul", &["c", "wdyn"], &["yc"], "mm_c");
    n("LayerNormalization", &["x", "g_e", "b_e"], &["e"], "ln_e");
    n("MatMul", &["e", "w_s"], &["ye"], "mm_e");
    n("MatMul", &["x", "w_s"], &["ys"], "mm_s");
    n("LayerNormalization", &["x", "g_f", "b_f"], &["f"], "ln_f");
    n("MatMul", &["f", "w_f"], &["yf"], "mm_f");
    let mut m = model(g, 17);
    let gemm = m
        .graph
        .mut_or_insert_default()
        .node
        .iter_mut()
        .find(|n| n.name == "gemm_v")
        .unwrap();
    gemm.attribute.push(int("transB", 1));
    m
}

/// Per-channel maxima with an outlier channel (2) for every LayerNorm output but ln_f's.
fn stats() -> BTreeMap<String, Vec<f32>> {
    ["a", "b", "c", "d", "e"]
        .iter()
        .map(|t| {
            let mut v = vec![0.5, 1.0, 40.0, 0.8, 1.5, 0.0, 2.0, 1.0];
            if *t == "d" {
                v[5] = 3.0;
            }
            (t.to_string(), v)
        })
        .collect()
}

fn values(m: &ModelProto, name: &str) -> Vec<f32> {
    f32_data(init(m, name).unwrap_or_else(|| panic!("no initializer {name}"))).unwrap()
}

#[test]
fn smooth_fires_on_layernorms_read_only_by_matmuls_and_snapshot() {
    let m = norm_model();
    let (s, r) = smooth_quant(&m, &stats(), &SmoothOptions::default()).unwrap();
    let fired: Vec<(&str, &str, Vec<&str>)> = r
        .smoothed
        .iter()
        .map(|n| {
            (
                n.norm.as_str(),
                n.tensor.as_str(),
                n.consumers.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        fired,
        [
            ("ln_a", "a", vec!["mm_q", "mm_k", "gemm_v"]),
            ("ln_d", "d", vec!["mm_d"])
        ]
    );
    let why: BTreeMap<&str, &str> = r
        .skipped
        .iter()
        .map(|s| (s.norm.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(why.len(), 4, "{why:?}");
    assert!(
        why["ln_b"].contains("also read by 'relu_b' (Relu)"),
        "{why:?}"
    );
    assert!(
        why["ln_c"].contains("not a constant initializer"),
        "{why:?}"
    );
    assert!(why["ln_e"].contains("shared"), "{why:?}");
    assert!(why["ln_f"].contains("no per-channel statistics"), "{why:?}");
    // every rewritten initializer is renamed, every other one untouched
    for name in ["g_a", "b_a", "w_q", "w_k", "w_v", "g_d", "w_d"] {
        assert!(init(&s, name).is_none(), "{name}");
        assert!(init(&s, &format!("{name}{SMOOTHED_SUFFIX}")).is_some());
    }
    for name in ["g_b", "b_b", "w_b", "w_s", "g_f", "w_f", "b_v"] {
        assert_eq!(values(&s, name), values(&m, name), "{name}");
    }
    assert_eq!(node_by_name(&s, "mm_q").input, ["a", "w_q_smoothed"]);
    assert_eq!(
        node_by_name(&s, "gemm_v").input,
        ["a", "w_v_smoothed", "b_v"]
    );
    assert_topological(&s);
    snapshot("smooth_norms.txt", &dump(&s.graph));
}

#[test]
fn smooth_scales_are_shared_by_the_consumers_and_exact() {
    let m = norm_model();
    let st = stats();
    let (s, r) = smooth_quant(&m, &st, &SmoothOptions::default()).unwrap();
    let sa = &r.smoothed[0].scales;
    let (wq, wk, wv) = (values(&m, "w_q"), values(&m, "w_k"), values(&m, "w_v"));
    for j in 0..8 {
        // max |W_j| over q/k rows (`[8, 6]`) and v columns (Gemm transB=1, `[6, 8]`)
        let wmax = (0..6)
            .flat_map(|n| [wq[j * 6 + n], wk[j * 6 + n], wv[n * 8 + j]])
            .fold(0f32, |a, x| a.max(x.abs()));
        let x = st["a"][j];
        let want = if x > 0.0 {
            (x.sqrt() / wmax.sqrt()).clamp(1e-2, 1e2)
        } else {
            1.0 // zero statistic: left as it is
        };
        assert!(
            (sa[j] - want).abs() <= 1e-5 * want,
            "channel {j}: {} vs {want}",
            sa[j]
        );
    }
    assert_eq!(sa[5], 1.0);
    assert!(
        sa[2] > 3.0,
        "the outlier channel gets a large scale: {sa:?}"
    );
    // LayerNorm scale and bias divided, weight rows (v: columns) multiplied
    let (g0, g1) = (values(&m, "g_a"), values(&s, "g_a_smoothed"));
    let (b0, b1) = (values(&m, "b_a"), values(&s, "b_a_smoothed"));
    let (q1, v1) = (values(&s, "w_q_smoothed"), values(&s, "w_v_smoothed"));
    for j in 0..8 {
        assert!((g1[j] * sa[j] - g0[j]).abs() <= 1e-5 * g0[j].abs().max(1.0));
        assert!((b1[j] * sa[j] - b0[j]).abs() <= 1e-5 * b0[j].abs().max(1.0));
        for n in 0..6 {
            assert!((q1[j * 6 + n] - wq[j * 6 + n] * sa[j]).abs() <= 1e-6);
            assert!((v1[n * 8 + j] - wv[n * 8 + j] * sa[j]).abs() <= 1e-6);
        }
    }
    // a smoothed model is never smoothed twice
    let (again, r2) = smooth_quant(&s, &st, &SmoothOptions::default()).unwrap();
    assert!(r2.smoothed.is_empty());
    assert!(r2
        .skipped
        .iter()
        .any(|x| x.norm == "ln_a" && x.reason.contains("already smoothed")));
    assert_eq!(again, s);
}

#[test]
fn smooth_does_not_fire_outside_the_selection_or_with_bad_options() {
    let m = norm_model();
    // mm_k outside the selection: ln_a keeps its scale (q and v would see a changed input)
    let sel: BTreeSet<String> = ["mm_q", "gemm_v", "mm_d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let opts = SmoothOptions {
        nodes: Some(sel),
        ..SmoothOptions::default()
    };
    let (s, r) = smooth_quant(&m, &stats(), &opts).unwrap();
    let fired: Vec<&str> = r.smoothed.iter().map(|n| n.norm.as_str()).collect();
    assert_eq!(fired, ["ln_d"]);
    let a = r.skipped.iter().find(|s| s.norm == "ln_a").unwrap();
    assert!(
        a.reason.contains("'mm_k' is not in the node selection"),
        "{}",
        a.reason
    );
    assert_eq!(values(&s, "g_a"), values(&m, "g_a"));
    // statistics of the wrong width, and an alpha out of range
    let mut bad = stats();
    bad.insert("d".into(), vec![1.0; 7]);
    let (_, r) = smooth_quant(&m, &bad, &SmoothOptions::default()).unwrap();
    assert!(r
        .skipped
        .iter()
        .any(|s| s.norm == "ln_d" && s.reason.contains("7 channels")));
    let e = smooth_quant(
        &m,
        &stats(),
        &SmoothOptions {
            alpha: 1.5,
            ..SmoothOptions::default()
        },
    );
    assert!(e.is_err());
}

/// A table for the full placement of `m`, with per-channel maxima for the LayerNorm outputs.
fn table_with_channels(m: &ModelProto, target: Target) -> CalibrationTable {
    let p = plan(m, &policy(target)).unwrap();
    let mut t = table(&p.activations, 0.02);
    for (name, ch) in stats() {
        if let Some(r) = t.tensors.get_mut(&name) {
            let amax = ch.iter().fold(0f32, |a, x| a.max(*x));
            let mut st = TensorStats::from_slice(&[-amax, amax]);
            st.channel_abs_max = ch;
            *r = TensorRange {
                amax,
                scale: amax / 127.0,
                fallback: None,
                stats: Some(st),
            };
        }
    }
    t
}

#[test]
fn smooth_mode_rescales_the_range_and_modes_mix_per_node() {
    let m = norm_model();
    let t = table_with_channels(&m, Target::OrtCpu);
    let smooth = QuantPolicy {
        target: Target::OrtCpu,
        mode: QuantMode::Smooth,
        ..QuantPolicy::default()
    };
    let q = quantize_with(&m, Some(&t), &smooth, false).unwrap();
    let sr = q.smooth.as_ref().unwrap();
    assert_eq!(sr.smoothed.len(), 2);
    // the same placement as full int8 (smoothing changes values, not the plan)
    let full = plan(&m, &policy(Target::OrtCpu)).unwrap();
    assert_eq!(q.plan.activations, full.activations);
    // the activation 'a' is quantized with its range shrunk to max_j(x_j / s_j)
    let want = stats()["a"]
        .iter()
        .zip(&sr.smoothed[0].scales)
        .map(|(x, s)| x / s)
        .fold(0f32, f32::max);
    let sc = values(&q.model, "a_scale");
    assert!(
        (sc[0] - want / 127.0).abs() <= 1e-6 * want,
        "{} vs {}",
        sc[0],
        want / 127.0
    );
    assert!(want < 40.0 / 2.0, "the outlier range shrank: {want}");
    // a table without per-channel maxima is refused for smooth int8
    let plain = table(&full.activations, 0.02);
    let e = quantize_with(&m, Some(&plain), &smooth, false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no per-channel maxima"), "{e}");

    // a mode per node: mm_b weight-only, mm_q/mm_k/gemm_v smooth, the rest full
    let mut node_modes = BTreeMap::new();
    node_modes.insert("mm_b".to_string(), QuantMode::WeightOnly);
    for n in ["mm_q", "mm_k", "gemm_v"] {
        node_modes.insert(n.to_string(), QuantMode::Smooth);
    }
    let mixed = QuantPolicy {
        target: Target::OrtCpu,
        node_modes,
        ..QuantPolicy::default()
    };
    let q = quantize_with(&m, Some(&t), &mixed, false).unwrap();
    let fired: Vec<&str> = q
        .smooth
        .as_ref()
        .unwrap()
        .smoothed
        .iter()
        .map(|n| n.norm.as_str())
        .collect();
    assert_eq!(fired, ["ln_a"], "ln_d's reader mm_d is in full mode");
    let mm_b = q.plan.quantized.iter().find(|p| p.node == "mm_b").unwrap();
    assert!(
        mm_b.inputs.is_empty() && mm_b.outputs.is_empty(),
        "{mm_b:?}"
    );
    let mm_d = q.plan.quantized.iter().find(|p| p.node == "mm_d").unwrap();
    assert_eq!(mm_d.inputs, ["d"]);
    assert!(!q.plan.activations.contains("b"));
    assert_eq!(node_by_name(&q.model, "mm_b").input, ["b", "w_b_dq"]);
}

/// Exporters deduplicate equal initializers (all-ones LayerNorm scales): one LayerNorm reads
/// the shared scale directly, another through an Identity. Both are smoothed, each with a new
/// scale initializer of its own; the shared one stays for its other readers.
#[test]
fn smooth_gives_a_shared_layernorm_scale_a_copy() {
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[4, 8]));
    for o in ["y1", "y2"] {
        g.output.push(value_info(o, elem::FLOAT, &[4, 6]));
    }
    weight(&mut g, "ones", &[8], 50);
    weight(&mut g, "w1", &[8, 6], 51);
    weight(&mut g, "w2", &[8, 6], 52);
    let mut n = |op: &str, i: &[&str], o: &[&str], name: &str| {
        g.node.push(named(node(op, i, o), name));
    };
    n("Identity", &["ones"], &["ones_1"], "id");
    n("LayerNormalization", &["x", "ones"], &["a"], "ln1");
    n("MatMul", &["a", "w1"], &["y1"], "mm1");
    n("LayerNormalization", &["x", "ones_1"], &["b"], "ln2");
    n("MatMul", &["b", "w2"], &["y2"], "mm2");
    let m = model(g, 17);
    let st: BTreeMap<String, Vec<f32>> = [("a", 3.0), ("b", 5.0)]
        .iter()
        .map(|(t, v)| (t.to_string(), vec![*v; 8]))
        .collect();
    let (s, r) = smooth_quant(&m, &st, &SmoothOptions::default()).unwrap();
    assert_eq!(r.smoothed.len(), 2, "{:?}", r.skipped);
    assert_eq!(node_by_name(&s, "ln1").input, ["x", "ones_smoothed"]);
    assert_eq!(node_by_name(&s, "ln2").input, ["x", "ones_1_smoothed"]);
    assert_eq!(node_by_name(&s, "id").input, ["ones"]);
    assert_eq!(values(&s, "ones"), values(&m, "ones"));
    let (g1, s1) = (values(&s, "ones_smoothed"), &r.smoothed[0].scales);
    for j in 0..8 {
        assert!((g1[j] * s1[j] - values(&m, "ones")[j]).abs() < 1e-5);
    }
    assert_topological(&s);
}
