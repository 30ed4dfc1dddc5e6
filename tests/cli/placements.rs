//! The `openvino` and `ort-cpu` QDQ placements on the real models, calibrated on real speech and
//! run by real ONNX Runtime: where the Q/DQ pairs go, what ONNX Runtime fuses, and embeddings
//! close to fp32. (OpenVINO itself is checked by `tools/ov_parity.py` until voxq has its engine.)

use crate::common;

use common::{calib_list, cosine, embeddings, root, s, speech, stderr, voxq};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engines::ort::{cpu_session, CpuOptions};
use exporter::model::{elem, load};

/// `voxq calibrate` on the first `n` calibration utterances, one method, into `dir`.
fn calibrate(config: &Path, dir: &Path, n: usize, method: &str) -> PathBuf {
    let list = calib_list(dir, n);
    let table = dir.join("table.json");
    let o = voxq(&[
        "calibrate",
        "--model",
        s(config),
        "--calib",
        s(&list),
        "--audio-root",
        s(&speech()),
        "--method",
        method,
        "--out",
        s(&table),
        "--quiet",
    ]);
    assert!(o.status.success(), "calibrate: {}", stderr(&o));
    table
}

fn quantize(onnx: &str, table: &Path, target: &str, out: &Path) {
    let o = voxq(&[
        "quantize",
        onnx,
        "--table",
        s(table),
        "--target",
        target,
        "--out",
        s(out),
    ]);
    assert!(
        o.status.success(),
        "quantize --target {target}: {}",
        stderr(&o)
    );
}

/// Embeddings of the first `n` utterances of the trial list (real speech) by `voxq embed`.
fn embed(model: &Path, dir: &Path, tag: &str, n: usize) -> BTreeMap<String, Vec<f64>> {
    let trials = std::fs::read_to_string(root().join("fixtures/trials/trials.txt")).unwrap();
    let mut utts: Vec<&str> = trials
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    utts.sort_unstable();
    utts.dedup();
    let step = (utts.len() / n).max(1);
    let sp = speech();
    let paths: Vec<String> = utts
        .iter()
        .step_by(step)
        .take(n)
        .map(|u| sp.join(u).display().to_string())
        .collect();
    let out = dir.join(format!("{tag}.tsv"));
    let mut args = vec!["embed", "--model", s(model), "--out", s(&out)];
    args.extend(paths.iter().map(String::as_str));
    let o = voxq(&args);
    assert!(o.status.success(), "embed {tag}: {}", stderr(&o));
    embeddings(&out)
}

/// (mean, min) cosine of `q` to `f` over the same utterances.
fn cosines(f: &BTreeMap<String, Vec<f64>>, q: &BTreeMap<String, Vec<f64>>) -> (f64, f64) {
    assert_eq!(f.len(), q.len());
    let c: Vec<f64> = q.iter().map(|(k, v)| cosine(v, &f[k])).collect();
    let mean = c.iter().sum::<f64>() / c.len() as f64;
    (mean, c.iter().cloned().fold(f64::INFINITY, f64::min))
}

/// The op that produces input `k` of the node named `name`.
fn producer_of<'a>(m: &'a onnx_protobuf::ModelProto, name: &str, k: usize) -> &'a str {
    let n = m
        .graph
        .node
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"));
    let t = &n.input[k];
    m.graph
        .node
        .iter()
        .find(|p| p.output.contains(t))
        .map_or("(graph input or initializer)", |p| p.op_type.as_str())
}

#[test]
fn openvino_placement_on_the_distilled_ecapa() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = root().join("fixtures/models/ecapa_distil.json");
    let table = calibrate(&config, d, 24, "percentile:99.999");
    let out = d.join("ecapa.openvino.onnx");
    quantize(
        "fixtures/models/ecapa_distil.onnx",
        &table,
        "openvino",
        &out,
    );

    let m = load(&out).unwrap();
    // Every Conv reads int8 weights and a DequantizeLinear; the five that read a Concat through
    // SpeechBrain's reflect Pad read a uint8 pair (zero point 128), the others int8 (zero point 0).
    let from_concat = [
        "/blocks.1/tdnn2/conv/conv/Conv",
        "/blocks.2/tdnn2/conv/conv/Conv",
        "/blocks.3/tdnn2/conv/conv/Conv",
        "/mfa/conv/conv/Conv",
        "/asp/tdnn/conv/conv/Conv",
    ];
    let convs: Vec<&str> = m
        .graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(convs.len(), 38);
    for c in &convs {
        assert_eq!(
            producer_of(&m, c, 1),
            "DequantizeLinear",
            "{c}: int8 weight"
        );
        assert_eq!(
            producer_of(&m, c, 0),
            "DequantizeLinear",
            "{c}: quantized input"
        );
        let conv = m.graph.node.iter().find(|n| n.name == *c).unwrap();
        let dq = m
            .graph
            .node
            .iter()
            .find(|n| n.output[0] == conv.input[0])
            .unwrap();
        let z = m
            .graph
            .initializer
            .iter()
            .find(|t| t.name == dq.input[2])
            .unwrap();
        let want = if from_concat.contains(c) {
            (elem::UINT8, 128u8)
        } else {
            (elem::INT8, 0)
        };
        assert_eq!(
            (z.data_type, z.raw_data.as_slice()),
            (want.0, &[want.1][..]),
            "{c}"
        );
    }
    let q = m
        .graph
        .node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear")
        .count();
    assert_eq!(
        q, 38,
        "one pair per Conv input; no Concat reads a Conv output here"
    );

    // ONNX Runtime runs it, close to fp32 on real speech.
    let f = embed(&config, d, "fp32", 12);
    let i8 = embed(&out.with_extension("json"), d, "openvino", 12);
    let (mean, min) = cosines(&f, &i8);
    println!("ecapa_distil openvino placement: cosine to fp32 mean {mean:.5} min {min:.5}");
    assert!(mean >= 0.999 && min >= 0.998, "mean {mean} min {min}");
}

#[test]
fn ort_cpu_uint8_placement_fuses_every_quantized_conv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let table = calibrate(&common::campplus(), d, 32, "entropy");
    let out = d.join("campplus.ort.onnx");
    quantize("fixtures/models/campplus.onnx", &table, "ort-cpu", &out);

    let m = load(&out).unwrap();
    let zps: Vec<&onnx_protobuf::TensorProto> = m
        .graph
        .node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear")
        .map(|n| {
            m.graph
                .initializer
                .iter()
                .find(|t| t.name == n.input[2])
                .unwrap()
        })
        .collect();
    assert_eq!(zps.len(), 446);
    assert!(
        zps.iter().all(|z| z.data_type == elem::UINT8),
        "uint8 activations"
    );
    let relu_out = zps.iter().filter(|z| z.raw_data == [0]).count();
    assert_eq!(
        relu_out + zps.iter().filter(|z| z.raw_data == [128]).count(),
        446
    );
    assert!(relu_out >= 100, "Relu outputs: zero point 0 ({relu_out})");

    // ONNX Runtime's own optimised graph: every quantized Conv became a QLinearConv (int8 Q/DQ
    // activations left 8 of them as float Conv behind DequantizeLinear), only the 1-channel stem
    // Conv is float.
    let opt = d.join("optimised.onnx");
    let opts = CpuOptions {
        intra_threads: 1,
        opt_level: 2,
        optimized_model_path: Some(opt.clone()),
        ..CpuOptions::default()
    };
    drop(cpu_session(&out, &opts).unwrap());
    let o = load(&opt).unwrap();
    let count = |op: &str| o.graph.node.iter().filter(|n| n.op_type == op).count();
    println!(
        "ONNX Runtime optimised: QLinearConv {}, Conv {}, FusedConv {}",
        count("QLinearConv"),
        count("Conv"),
        count("FusedConv")
    );
    assert_eq!(count("QLinearConv"), 224);
    assert_eq!(count("Conv") + count("FusedConv"), 1);

    let f = embed(&common::campplus(), d, "fp32", 12);
    let q = embed(&out.with_extension("json"), d, "ort", 12);
    let (mean, min) = cosines(&f, &q);
    println!("campplus ort-cpu uint8: cosine to fp32 mean {mean:.5} min {min:.5}");
    assert!(mean >= 0.99 && min >= 0.97, "mean {mean} min {min}");
}
