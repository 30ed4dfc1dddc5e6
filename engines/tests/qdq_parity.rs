//! QDQ passes against ONNX Runtime on the real CAM++ fixture: exposing activations leaves the
//! outputs bit-identical; CAM++ quantized with a max-calibrated table (ranges from real forward
//! passes on deterministic speech-like features) keeps its embedding (cosine to fp32 printed);
//! no Q/DQ sits on a Conv→Add edge in the TensorRT placement; the QLinearConv count in ORT's
//! optimised model tells whether the `ort-cpu` placement makes ONNX Runtime fuse; the float16
//! variant runs (or the reason it cannot is printed). Weight-only int8 (per-channel int8 weights
//! behind DequantizeLinear, float activations, no table) of the tiny audio-LLM projector and
//! the tiny Whisper encoder stays within 2% relative L2 of their fp32 outputs.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use calibration::{CalibrationTable, TensorRange};
use engines::ort::{cpu_session, cpu_session_from_bytes, CpuOptions};
use engines::tensor::{HostTensor, HostValue};
use exporter::graph::GraphIndex;
use exporter::model::{self, to_bytes, ModelProto, SaveOptions};
use exporter::passes::{expose_activations, insert_qdq, to_float16};
use exporter::pipeline::quantize_with;
use exporter::policy::{plan, QuantMode, QuantPolicy, Target};
use exporter::size::deployable_size;
use ort::session::Session;
use ort::value::DynValue;

fn campplus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/campplus.onnx")
}

fn opts() -> CpuOptions {
    CpuOptions {
        intra_threads: 1,
        ..CpuOptions::default()
    }
}

/// Deterministic speech-like log-mel features [1, frames, 80]: a smooth spectral envelope that
/// drifts over time plus noise, then each bin mean-normalised over the utterance (the CAM++
/// front end subtracts the per-utterance mean).
fn features(frames: usize, seed: u32) -> HostTensor {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s as f32 / u32::MAX as f32) - 0.5
    };
    let bins = 80;
    let phase = rnd() * 6.0;
    let mut x = vec![0f32; frames * bins];
    for t in 0..frames {
        let energy = 2.0 * ((t as f32 * 0.07 + phase).sin() + 0.3 * (t as f32 * 0.31).sin());
        for b in 0..bins {
            let formant = 3.0
                * (-(b as f32 - 20.0 - 8.0 * (t as f32 * 0.05 + phase).sin()).powi(2) / 60.0).exp();
            let tilt = -0.04 * b as f32;
            x[t * bins + b] = energy + formant + tilt + 1.5 * rnd();
        }
    }
    for b in 0..bins {
        let mean = (0..frames).map(|t| x[t * bins + b]).sum::<f32>() / frames as f32;
        for t in 0..frames {
            x[t * bins + b] -= mean;
        }
    }
    HostTensor::from_f32("feats", &[1, frames as i64, bins as i64], &x)
}

fn run(session: &mut Session, input: &HostTensor) -> BTreeMap<String, Vec<f32>> {
    let feed: Vec<(String, DynValue)> = vec![(input.name.clone(), input.to_ort().unwrap())];
    let out = session.run(feed).unwrap();
    out.iter()
        .map(|(n, v)| {
            let t = match HostValue::from_ort(n, &v).unwrap() {
                HostValue::Tensor(t) => t,
                other => panic!("output {n} is not a tensor: {other:?}"),
            };
            (n.to_string(), t.to_f32().unwrap())
        })
        .collect()
}

fn session(m: &ModelProto, name: &str) -> Session {
    let bytes = to_bytes(m).unwrap();
    cpu_session_from_bytes(name, &bytes, &opts()).unwrap_or_else(|e| panic!("{e}"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Every tensor either placement may quantize.
fn all_activations(m: &ModelProto) -> BTreeSet<String> {
    let mut t = BTreeSet::new();
    for target in [Target::Tensorrt, Target::OrtCpu] {
        t.extend(plan(m, &policy(target)).unwrap().activations);
    }
    t
}

fn policy(target: Target) -> QuantPolicy {
    QuantPolicy {
        target,
        ..QuantPolicy::default()
    }
}

/// A max-calibrated table from forward passes on a few inputs.
fn max_table(m: &ModelProto, tensors: &BTreeSet<String>) -> CalibrationTable {
    let exposed = expose_activations(m, tensors).unwrap();
    let mut s = session(&exposed, "campplus (exposed)");
    let mut amax: BTreeMap<String, f32> = BTreeMap::new();
    for seed in [11, 12, 13] {
        let out = run(&mut s, &features(200, seed));
        for t in tensors {
            let v = out.get(t).unwrap_or_else(|| panic!("no output {t}"));
            let a = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            let e = amax.entry(t.clone()).or_insert(0.0);
            *e = e.max(a);
        }
    }
    CalibrationTable {
        format: "voxq-calibration/1".into(),
        method: "max".into(),
        tensors: amax
            .into_iter()
            .map(|(t, a)| {
                let a = if a > 0.0 { a } else { 1e-6 };
                (
                    t,
                    TensorRange {
                        amax: a,
                        scale: a / 127.0,
                        fallback: None,
                        stats: None,
                    },
                )
            })
            .collect(),
    }
}

#[test]
fn expose_activations_keeps_outputs_bit_identical() {
    let m = model::load(campplus()).unwrap();
    let tensors = all_activations(&m);
    let exposed = expose_activations(&m, &tensors).unwrap();
    assert_eq!(
        exposed.graph.output.len(),
        m.graph.output.len() + tensors.len()
    );
    // ORT's layout optimisations (level 3, NCHWc) are placed differently once intermediate
    // tensors are graph outputs; up to level 2 (all fusions) the outputs are bit-identical.
    let o = CpuOptions {
        opt_level: 2,
        ..opts()
    };
    let bytes = to_bytes(&exposed).unwrap();
    let mut a = cpu_session(&campplus(), &o).unwrap();
    let mut b = cpu_session_from_bytes("campplus (exposed)", &bytes, &o).unwrap();
    let mut a3 = cpu_session(&campplus(), &opts()).unwrap();
    let mut b3 = session(&exposed, "campplus (exposed)");
    for seed in [1, 2] {
        let x = features(200, seed);
        let ra = run(&mut a, &x);
        let rb = run(&mut b, &x);
        let (ea, eb) = (&ra["embedding"], &rb["embedding"]);
        assert_eq!(ea.len(), 192);
        let same = ea.iter().zip(eb).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(
            same,
            "embedding differs once activations are exposed (cosine {})",
            cosine(ea, eb)
        );
        assert_eq!(rb.len(), 1 + tensors.len());
        let (e3a, e3b) = (
            &run(&mut a3, &x)["embedding"],
            &run(&mut b3, &x)["embedding"],
        );
        let diff = e3a
            .iter()
            .zip(e3b)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        println!(
            "expose_activations: {} tensors exposed; embedding bit-identical at ORT level 2, max |diff| {diff:e} at level 3",
            tensors.len()
        );
        assert!(diff < 1e-4);
    }
}

/// Op-type counts of ORT's optimised version of a model (saved by the session).
fn optimised_ops(m: &ModelProto, dir: &Path, name: &str) -> BTreeMap<String, usize> {
    let src = dir.join(format!("{name}.onnx"));
    model::save(m, &src, &SaveOptions::inline()).unwrap();
    let dst = dir.join(format!("{name}.opt.onnx"));
    let o = CpuOptions {
        optimized_model_path: Some(dst.clone()),
        ..opts()
    };
    drop(cpu_session(&src, &o).unwrap_or_else(|e| panic!("{e}")));
    model::summary(&model::load(&dst).unwrap()).op_types
}

fn count(ops: &BTreeMap<String, usize>, suffix: &str) -> usize {
    ops.iter()
        .filter(|(k, _)| *k == suffix || k.ends_with(&format!(":{suffix}")))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn campplus_quantized_keeps_embedding_and_ort_fuses_ort_cpu_placement() {
    let m = model::load(campplus()).unwrap();
    let tensors = all_activations(&m);
    let table = max_table(&m, &tensors);
    let mut fp32 = cpu_session(&campplus(), &opts()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fp32_ops = optimised_ops(&m, dir.path(), "fp32");
    println!(
        "fp32 optimised: Conv {} (FusedConv {}), QLinearConv {}",
        count(&fp32_ops, "Conv"),
        count(&fp32_ops, "FusedConv"),
        count(&fp32_ops, "QLinearConv")
    );
    let inputs: Vec<HostTensor> = [21, 22, 23].iter().map(|&s| features(200, s)).collect();
    let want: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| run(&mut fp32, x)["embedding"].clone())
        .collect();

    for target in [Target::Tensorrt, Target::OrtCpu] {
        let p = plan(&m, &policy(target)).unwrap();
        let (q, report) = insert_qdq(&m, &p, &table).unwrap();
        println!(
            "{target}: {} Conv/Gemm/MatMul quantized, {} skipped, {} residual Adds, {} Q / {} DQ nodes",
            p.quantized.len(),
            p.skipped.len(),
            p.residual_adds.len(),
            report.q_nodes,
            report.dq_nodes
        );
        for s in &p.skipped {
            println!("  skipped {} ({}): {}", s.node, s.op, s.reason);
        }
        assert!(
            p.quantized.len() >= 200,
            "most of the 225 Convs are quantized"
        );

        // TensorRT placement: no Q/DQ on the fused Conv→Add edge of any residual Add; the skip
        // input carries it. Where both Add inputs come from Convs (CAM++'s downsampling blocks:
        // main branch + shortcut Conv), input 1 (the shortcut) is the quantized skip, as in
        // NVIDIA's quantized ResNet reference (residual quantizer on the downsample output).
        if target == Target::Tensorrt {
            let ix = GraphIndex::new(&q.graph);
            for r in &p.residual_adds {
                let add = q.graph.node.iter().find(|n| n.name == r.node).unwrap();
                assert!(
                    add.input.contains(&r.fused),
                    "{}: fused edge rewired",
                    r.node
                );
                assert_eq!(ix.producer_op(&r.fused), Some("Conv"));
                assert!(add.input.contains(&format!("{}_dq", r.skip)), "{}", r.node);
            }
            let mut plain = 0;
            let mut quantized_conv_edges = 0;
            for n in q.graph.node.iter().filter(|n| n.op_type == "Add") {
                for i in &n.input {
                    match ix.producer_op(i) {
                        Some("Conv") => plain += 1,
                        Some("DequantizeLinear") => {
                            let dq = ix.node(ix.producer(i).unwrap());
                            let qn = ix.producer(&dq.input[0]).map(|k| ix.node(k));
                            if qn.and_then(|qn| ix.producer_op(&qn.input[0])) == Some("Conv") {
                                quantized_conv_edges += 1;
                            }
                        }
                        _ => {}
                    }
                }
            }
            let both = count_both_conv(&m);
            println!(
                "  Conv→Add edges: {plain} without Q/DQ (fused), {quantized_conv_edges} with Q/DQ (shortcut Conv of the {both} Adds fed by two Convs)"
            );
            assert_eq!(plain, p.residual_adds.len());
            assert_eq!(quantized_conv_edges, both);
        }

        let mut s = session(&q, &format!("campplus {target}"));
        let mut worst = 1.0f64;
        for (x, w) in inputs.iter().zip(&want) {
            let got = &run(&mut s, x)["embedding"];
            worst = worst.min(cosine(got, w));
        }
        let size = deployable_size(&q, None);
        let fsize = deployable_size(&m, None);
        println!(
            "  embedding cosine to fp32 (worst of {}): {worst:.5}; deployable {:.2} MiB -> {:.2} MiB, ONNX {:.2} -> {:.2} MiB",
            inputs.len(),
            fsize.deployable_bytes as f64 / 1048576.0,
            size.deployable_bytes as f64 / 1048576.0,
            fsize.onnx_bytes as f64 / 1048576.0,
            size.onnx_bytes as f64 / 1048576.0
        );
        assert!(worst > 0.9, "{target}: cosine {worst}");

        let ops = optimised_ops(&q, dir.path(), target.name());
        println!(
            "  ORT optimised {target}: QLinearConv {}, ConvInteger {}, MatMulInteger {}, float Conv {} (FusedConv {}), QuantizeLinear {}, DequantizeLinear {}",
            count(&ops, "QLinearConv"),
            count(&ops, "ConvInteger"),
            count(&ops, "MatMulInteger"),
            count(&ops, "Conv"),
            count(&ops, "FusedConv"),
            count(&ops, "QuantizeLinear"),
            count(&ops, "DequantizeLinear"),
        );
        if target == Target::OrtCpu {
            assert!(
                count(&ops, "QLinearConv") > p.quantized.len() / 2,
                "ORT fused only {} of {} quantized Convs into QLinearConv",
                count(&ops, "QLinearConv"),
                p.quantized.len()
            );
        }
    }
}

/// Adds whose two inputs both come straight from a Conv (both edges count above).
fn count_both_conv(m: &ModelProto) -> usize {
    let ix = GraphIndex::new(&m.graph);
    m.graph
        .node
        .iter()
        .filter(|n| n.op_type == "Add" && n.input.len() == 2)
        .filter(|n| n.input.iter().all(|i| ix.producer_op(i) == Some("Conv")))
        .count()
}

/// Runs a model in memory with some ORT graph transformers disabled.
fn session_without(m: &ModelProto, disabled: &str) -> Session {
    let env = engines::ort::environment().unwrap();
    Session::builder(env)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .with_disabled_optimizers(disabled)
        .unwrap()
        .commit_from_memory(&to_bytes(m).unwrap())
        .unwrap()
}

#[test]
fn campplus_float16_qdq_runs_in_ort() {
    let m = model::load(campplus()).unwrap();
    let p = plan(&m, &policy(Target::Tensorrt)).unwrap();
    let table = max_table(&m, &p.activations);
    let (q, _) = insert_qdq(&m, &p, &table).unwrap();
    let h = to_float16(&q).unwrap();
    assert_eq!(h.graph.input, m.graph.input);
    assert_eq!(h.graph.output, m.graph.output);
    assert_eq!(exporter::passes::default_opset(&h), Some(19));
    let x = features(200, 31);
    let mut fp32 = cpu_session(&campplus(), &opts()).unwrap();
    let want = run(&mut fp32, &x)["embedding"].clone();

    // float16 alone (no Q/DQ): a sanity check of the cast pass.
    let f16 = to_float16(&m).unwrap();
    let c16 = cosine(
        &run(&mut session(&f16, "campplus fp16"), &x)["embedding"],
        &want,
    );
    println!("float16 (no int8) in ORT CPU: embedding cosine to fp32 {c16:.5}");
    assert!(c16 > 0.999, "float16 cosine {c16}");

    // ORT's WeightBiasQuantization (level 1) turns float Conv biases into int32 with a scale
    // x_scale·w_scale computed in the scales' type; with float16 scales that loses the bias.
    // TensorRT does not do this; on ORT CPU the transformer must be disabled for fp16 QDQ.
    let c_default = cosine(
        &run(&mut session(&h, "campplus qdq fp16"), &x)["embedding"],
        &want,
    );
    let c = cosine(
        &run(&mut session_without(&h, "WeightBiasQuantization"), &x)["embedding"],
        &want,
    );
    println!(
        "float16 + int8 (tensorrt placement) in ORT CPU: embedding cosine to fp32 {c:.5} with WeightBiasQuantization disabled, {c_default:.5} with ORT defaults"
    );
    assert!(c > 0.95, "cosine {c}");
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

/// Relative L2 error of `b` against `a`.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// A real tiny model with one float input, and its weighted nodes.
struct Tiny {
    file: &'static str,
    input: &'static str,
    dims: Vec<i64>,
    output: &'static str,
    /// MatMuls with a constant weight, and Convs.
    matmuls: usize,
    convs: usize,
}

/// The tiny audio-LLM projector and the tiny Whisper encoder (2 Convs + 2 blocks × q, k, v,
/// out, fc1, fc2).
fn tiny_models() -> [Tiny; 2] {
    [
        Tiny {
            file: "fixtures/audio-llm-tiny-test/projector.onnx",
            input: "encoder_states",
            dims: vec![1, 1500, 16],
            output: "audio_embeds",
            matmuls: 2,
            convs: 0,
        },
        Tiny {
            file: "fixtures/whisper-tiny-test/encoder.onnx",
            input: "input_features",
            dims: vec![1, 80, 3000],
            output: "last_hidden_state",
            matmuls: 12,
            convs: 2,
        },
    ]
}

impl Tiny {
    fn load(&self) -> ModelProto {
        model::load(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(self.file),
        )
        .unwrap()
    }

    /// Relative L2 error of `q`'s output against fp32 `m`'s on one fixed random input.
    fn error(&self, m: &ModelProto, q: &ModelProto, label: &str) -> f64 {
        let n: i64 = self.dims.iter().product();
        let x = HostTensor::from_f32(self.input, &self.dims, &uniform(n as usize, 7));
        let f = run(&mut session(m, "fp32"), &x)[self.output].clone();
        let y = run(&mut session(q, label), &x)[self.output].clone();
        rel_l2(&f, &y)
    }
}

/// Weight-only int8 of two real tiny models against ONNX Runtime's fp32 run: every weighted
/// node with a constant weight is quantized (no QuantizeLinear at all), the output moves (the
/// weights really changed) but stays within 2% relative L2 of fp32.
#[test]
fn weight_only_int8_stays_close_to_fp32() {
    for t in tiny_models() {
        let (file, nodes) = (t.file, t.matmuls + t.convs);
        let m = t.load();
        let policy = QuantPolicy {
            mode: QuantMode::WeightOnly,
            target: Target::OrtCpu,
            ..QuantPolicy::default()
        };
        let q = quantize_with(&m, None, &policy, false).unwrap();
        assert_eq!(q.report.quantized_nodes, nodes, "{file}");
        let qdq = |op: &str| {
            q.model
                .graph
                .node
                .iter()
                .filter(|n| n.op_type == op)
                .count()
        };
        assert_eq!((qdq("QuantizeLinear"), qdq("DequantizeLinear")), (0, nodes));
        let e = t.error(&m, &q.model, "weight-only");
        let size = (deployable_size(&m, None), deployable_size(&q.model, None));
        println!(
            "{file}: weight-only int8 relative L2 error {e:.5}; deployable {} -> {} bytes",
            size.0.deployable_bytes, size.1.deployable_bytes
        );
        assert!(e > 0.0 && e < 0.02, "{file}: relative L2 error {e}");
        assert!(size.1.deployable_bytes < size.0.deployable_bytes);
    }
}

/// Dynamic int8 of the same two tiny models: every MatMul with a constant weight runs as
/// `DynamicQuantizeLinear → MatMulInteger` (the Convs keep weight-only int8 weights), ONNX
/// Runtime fuses each into one integer kernel (`DynamicQuantizeMatMul`, or
/// `MatMulIntegerToFloat` behind a shared quantize: the reason for the mode), and
/// the output stays within 3% relative L2 of fp32 while differing from it.
#[test]
fn dynamic_int8_fuses_in_ort_and_stays_close_to_fp32() {
    let dir = tempfile::tempdir().unwrap();
    for t in tiny_models() {
        let (file, matmuls, convs) = (t.file, t.matmuls, t.convs);
        let m = t.load();
        let policy = QuantPolicy {
            mode: QuantMode::Dynamic,
            target: Target::OrtCpu,
            ..QuantPolicy::default()
        };
        let q = quantize_with(&m, None, &policy, false).unwrap();
        let d = q.dynamic.as_ref().unwrap();
        assert_eq!(d.converted.len(), matmuls, "{file}: {:?}", d.skipped);
        let ops = model::summary(&q.model).op_types;
        let n = |op: &str| ops.get(op).copied().unwrap_or(0);
        assert_eq!(n("MatMulInteger"), matmuls, "{file}");
        assert_eq!(n("QuantizeLinear"), 0, "{file}");
        assert_eq!(n("DequantizeLinear"), convs, "{file}: the Convs' weights");
        assert_eq!(n("DynamicQuantizeLinear"), d.activations, "{file}");
        let name = file.replace('/', "_");
        let opt = optimised_ops(&q.model, dir.path(), &name);
        // one kernel per MatMul: DynamicQuantizeMatMul, or MatMulIntegerToFloat where one
        // DynamicQuantizeLinear serves several (q, k, v)
        assert_eq!(
            count(&opt, "DynamicQuantizeMatMul") + count(&opt, "MatMulIntegerToFloat"),
            matmuls,
            "{file}: ORT did not fuse every dynamic MatMul: {opt:?}"
        );
        assert_eq!(count(&opt, "MatMulInteger"), 0, "{file}: {opt:?}");
        let e = t.error(&m, &q.model, "dynamic");
        println!("{file}: dynamic int8 relative L2 error {e:.5}");
        assert!(e > 0.0 && e < 0.03, "{file}: relative L2 error {e}");
    }
}
