//! SmoothQuant scale migration (`exporter::passes::smooth`) against ONNX Runtime: the smoothed
//! float model computes the same outputs as the original (it only moves a per-channel scale
//! from each LayerNorm into the weights that read it), on a tiny graph and on Whisper encoders
//! (the committed tiny test encoder; the real tiny.en encoder in an ignored test), with the
//! per-channel maxima taken from a real forward pass of the float model. Smooth int8
//! ([`QuantMode::Smooth`]) of the tiny Whisper encoder runs and stays close to fp32.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use calibration::Calibrator;
use engines::ort::{cpu_session_from_bytes, CpuOptions};
use engines::tensor::{HostTensor, HostValue};
use exporter::model::{self, elem, to_bytes, ModelProto};
use exporter::onnx::builders::{model as build_model, node, tensor_f32, value_info};
use exporter::passes::{expose_activations, smooth_quant, SmoothOptions};
use exporter::pipeline::quantize_with;
use exporter::policy::{QuantMode, QuantPolicy, Target};
use onnx_protobuf::GraphProto;
use ort::value::DynValue;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `m` on `input`; every output as floats with its dims.
fn run(m: &ModelProto, input: &HostTensor) -> BTreeMap<String, (Vec<i64>, Vec<f32>)> {
    let opts = CpuOptions {
        intra_threads: 1,
        ..CpuOptions::default()
    };
    let mut s = cpu_session_from_bytes("smooth", &to_bytes(m).unwrap(), &opts).unwrap();
    let feed: Vec<(String, DynValue)> = vec![(input.name.clone(), input.to_ort().unwrap())];
    let out = s.run(feed).unwrap();
    out.iter()
        .filter_map(|(n, v)| match HostValue::from_ort(n, &v).unwrap() {
            HostValue::Tensor(t) if t.to_f32().is_ok() => {
                Some((n.to_string(), (t.dims.clone(), t.to_f32().unwrap())))
            }
            _ => None,
        })
        .collect()
}

/// Outputs of every LayerNormalization of `m`.
fn norm_outputs(m: &ModelProto) -> BTreeSet<String> {
    m.graph
        .node
        .iter()
        .filter(|n| n.op_type == "LayerNormalization")
        .map(|n| n.output[0].clone())
        .filter(|o| !m.graph.output.iter().any(|v| &v.name == o))
        .collect()
}

/// Per-channel |x| maxima of every LayerNorm output over one real forward pass (the
/// calibration statistics a Whisper calibration keeps).
fn channel_maxima(m: &ModelProto, input: &HostTensor) -> BTreeMap<String, Vec<f32>> {
    let names = norm_outputs(m);
    let x = expose_activations(m, &names).unwrap();
    let out = run(&x, input);
    let mut cal = Calibrator::new(128).unwrap();
    for n in &names {
        let (dims, data) = &out[n];
        cal.observe_channels(n, data, *dims.last().unwrap() as usize)
            .unwrap();
    }
    names
        .iter()
        .map(|n| (n.clone(), cal.stats(n).unwrap().channel_abs_max.clone()))
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Deterministic values in [-1, 1).
fn uniform(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            2.0 * (s as f32 / u32::MAX as f32) - 1.0
        })
        .collect()
}

/// x[4,8] → LayerNorm (scale with outlier channels) → q/k (MatMul) + v (Gemm transB=1) and a
/// Shape; a second LayerNorm without bias → MatMul.
fn tiny() -> ModelProto {
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem::FLOAT, &[4, 8]));
    for o in ["q", "k", "v", "yd"] {
        g.output.push(value_info(o, elem::FLOAT, &[4, 6]));
    }
    g.output.push(value_info("sa", elem::INT64, &[2]));
    let mut gamma = uniform(8, 1);
    gamma[2] = 25.0; // an outlier channel
    gamma[5] = -12.0;
    g.initializer.push(tensor_f32("g_a", &[8], &gamma));
    g.initializer.push(tensor_f32("b_a", &[8], &uniform(8, 2)));
    g.initializer.push(tensor_f32("g_d", &[8], &uniform(8, 3)));
    for (w, dims, seed) in [
        ("w_q", [8, 6], 4),
        ("w_k", [8, 6], 5),
        ("w_v", [6, 8], 6),
        ("w_d", [8, 6], 7),
    ] {
        g.initializer.push(tensor_f32(w, &dims, &uniform(48, seed)));
    }
    g.initializer.push(tensor_f32("b_v", &[6], &uniform(6, 8)));
    let mut n = |op: &str, i: &[&str], o: &[&str], name: &str| {
        let mut x = node(op, i, o);
        x.name = name.into();
        g.node.push(x);
    };
    n("LayerNormalization", &["x", "g_a", "b_a"], &["a"], "ln_a");
    n("MatMul", &["a", "w_q"], &["q"], "mm_q");
    n("MatMul", &["a", "w_k"], &["k"], "mm_k");
    n("Gemm", &["a", "w_v", "b_v"], &["v"], "gemm_v");
    n("Shape", &["a"], &["sa"], "shape_a");
    n("LayerNormalization", &["x", "g_d"], &["d"], "ln_d");
    n("MatMul", &["d", "w_d"], &["yd"], "mm_d");
    let mut m = build_model(g, 17);
    let gemm = m
        .graph
        .mut_or_insert_default()
        .node
        .iter_mut()
        .find(|n| n.name == "gemm_v")
        .unwrap();
    gemm.attribute
        .push(exporter::onnx::builders::int_attr("transB", 1));
    m
}

#[test]
fn smoothing_a_tiny_graph_keeps_its_outputs() {
    let m = tiny();
    let x = HostTensor::from_f32("x", &[4, 8], &uniform(32, 9));
    let stats = channel_maxima(&m, &x);
    assert!(stats["a"][2] > 5.0 * stats["a"][0], "{:?}", stats["a"]);
    let (s, r) = smooth_quant(&m, &stats, &SmoothOptions::default()).unwrap();
    assert_eq!(r.smoothed.len(), 2, "{r:?}");
    // the scales really move something (outlier channel 2 gets the largest)
    let sa = &r.smoothed[0].scales;
    assert!(sa.iter().any(|v| (v - 1.0).abs() > 0.1));
    assert!(sa[2] > sa[0] && sa[2] > sa[1], "{sa:?}");
    let (a, b) = (run(&m, &x), run(&s, &x));
    for o in ["q", "k", "v", "yd"] {
        let d = max_abs_diff(&a[o].1, &b[o].1);
        let scale = a[o].1.iter().fold(0f32, |m, v| m.max(v.abs()));
        println!("tiny graph: output {o}: max |diff| {d:e} (max |y| {scale})");
        assert!(d <= 1e-5 * scale.max(1.0), "{o}: {d}");
    }
    // and the smoothed activation is evened out: its largest channel shrank
    let s_stats = channel_maxima(&s, &x);
    let spread = |v: &[f32]| {
        v.iter().fold(0f32, |m, x| m.max(*x)) / v.iter().fold(f32::MAX, |m, x| m.min(*x))
    };
    assert!(spread(&s_stats["a"]) < spread(&stats["a"]) / 2.0);
}

/// Smooths every LayerNorm of a Whisper encoder with its real per-channel maxima; returns
/// (LayerNorms smoothed, max |diff| of last_hidden_state, max |y|).
fn encoder_parity(path: &Path) -> (usize, f32, f32) {
    let m = model::load(path).unwrap();
    let x = HostTensor::from_f32("input_features", &[1, 80, 3000], &uniform(80 * 3000, 11));
    let stats = channel_maxima(&m, &x);
    let (s, r) = smooth_quant(&m, &stats, &SmoothOptions::default()).unwrap();
    let (a, b) = (run(&m, &x), run(&s, &x));
    let o = "last_hidden_state";
    let d = max_abs_diff(&a[o].1, &b[o].1);
    let scale = a[o].1.iter().fold(0f32, |m, v| m.max(v.abs()));
    let moved = r
        .smoothed
        .iter()
        .flat_map(|n| &n.scales)
        .fold(0f32, |m, v| m.max((v.ln()).abs()));
    println!(
        "{}: {} LayerNorms smoothed ({} left alone), largest |ln s| {moved:.2}; last_hidden_state max |diff| {d:e} (max |y| {scale})",
        path.display(),
        r.smoothed.len(),
        r.skipped.len()
    );
    assert!(moved > 0.5, "the scales must move something");
    (r.smoothed.len(), d, scale)
}

#[test]
fn smoothing_the_tiny_whisper_encoder_keeps_its_output() {
    let (n, d, scale) = encoder_parity(&root().join("fixtures/whisper-tiny-test/encoder.onnx"));
    // 2 blocks × (self-attention LN → q/k/v, final LN → fc1); the last LN is the output
    assert_eq!(n, 4);
    assert!(d <= 1e-4 * scale.max(1.0), "max |diff| {d}");
}

#[test]
#[ignore = "needs the real Whisper tiny.en export in .cache/whisper/tiny.en/onnx (tools/whisper_ct2.py)"]
fn smoothing_the_real_whisper_tiny_en_encoder_keeps_its_output() {
    let (n, d, scale) = encoder_parity(&root().join(".cache/whisper/tiny.en/onnx/encoder.onnx"));
    assert_eq!(n, 8);
    assert!(d <= 1e-4 * scale.max(1.0), "max |diff| {d}");
}

/// Smooth int8 of the tiny Whisper encoder: every weighted node quantized with per-tensor
/// activations after the migration; it runs and stays near fp32.
#[test]
fn smooth_int8_of_the_tiny_whisper_encoder_runs() {
    let m = model::load(root().join("fixtures/whisper-tiny-test/encoder.onnx")).unwrap();
    let x = HostTensor::from_f32("input_features", &[1, 80, 3000], &uniform(80 * 3000, 11));
    let full = QuantPolicy {
        target: Target::OrtCpu,
        ..QuantPolicy::default()
    };
    let plan = exporter::policy::plan(&m, &full).unwrap();
    let xm = expose_activations(&m, &plan.activations).unwrap();
    let out = run(&xm, &x);
    let mut cal = Calibrator::new(2048).unwrap();
    for t in &plan.activations {
        let (dims, data) = &out[t];
        cal.observe_channels(t, data, *dims.last().unwrap() as usize)
            .unwrap();
    }
    let table = cal.compute(calibration::Method::Max).unwrap();
    let smooth = QuantPolicy {
        mode: QuantMode::Smooth,
        ..full.clone()
    };
    let q = quantize_with(&m, Some(&table), &smooth, false).unwrap();
    let sr = q.smooth.as_ref().unwrap();
    assert_eq!(sr.smoothed.len(), 4);
    assert_eq!(q.plan.activations, plan.activations);
    let f = run(&m, &x)["last_hidden_state"].1.clone();
    let y = run(&q.model, &x)["last_hidden_state"].1.clone();
    let num: f64 = f
        .iter()
        .zip(&y)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = f.iter().map(|a| (*a as f64).powi(2)).sum();
    let e = (num / den).sqrt();
    println!("tiny Whisper encoder, smooth int8 (ort-cpu): relative L2 error {e:.4}");
    assert!(e > 0.0 && e < 0.2, "relative L2 {e}");
}
