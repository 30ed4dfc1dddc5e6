//! CAM++ fully int8 by voxq, entropy and percentile (99.999) calibration on real speech disjoint from the
//! trials: ONNX Runtime runs it, `voxq inspect --qdq` finds no TensorRT rule violations,
//! `onnx.checker` accepts it, embeddings stay close to fp32 and EER rises by at most 0.3 points.

use crate::common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Runs `voxq eval` and returns (EER in %, embeddings).
fn eval(model: &Path, dir: &Path, tag: &str) -> (f64, BTreeMap<String, Vec<f64>>) {
    let json = dir.join(format!("{tag}.json"));
    let emb = dir.join(format!("{tag}.tsv"));
    let trials = root().join("fixtures/trials/trials.txt");
    let o = voxq(&[
        "eval",
        "--model",
        s(model),
        "--trials",
        s(&trials),
        "--audio-root",
        s(&speech()),
        "--quiet",
        "--json",
        s(&json),
        "--embeddings",
        s(&emb),
    ]);
    assert!(o.status.success(), "{tag}: {}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (v["all"]["eer"].as_f64().unwrap() * 100.0, embeddings(&emb))
}

#[test]
fn campplus_int8_entropy_and_percentile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tables = d.join("tables");
    let o = voxq(&[
        "calibrate",
        "--model",
        s(&campplus()),
        "--calib",
        "fixtures/trials/calib.txt",
        "--audio-root",
        s(&speech()),
        "--method",
        "entropy,percentile:99.999",
        "--out",
        s(&tables),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    println!("{}", stdout(&o));
    // The calibration list is disjoint from the trials.
    let trials = std::fs::read_to_string(root().join("fixtures/trials/trials.txt")).unwrap();
    let calib = std::fs::read_to_string(root().join("fixtures/trials/calib.txt")).unwrap();
    assert!(calib.lines().count() >= 100);
    for u in calib.lines() {
        assert!(!trials.contains(u), "{u} is in the trials");
    }

    let (fp32_eer, fp32_emb) = eval(&campplus(), d, "fp32");
    let py = root().join(".cache/pyref/bin/python");
    for method in ["entropy", "percentile-99.999"] {
        let out = d.join(format!("campplus.{method}.qdq.onnx"));
        let o = voxq(&[
            "quantize",
            "fixtures/models/campplus.onnx",
            "--table",
            s(&tables.join(format!("{method}.json"))),
            "--out",
            s(&out),
        ]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        println!("{method}: {}", stdout(&o));
        let o = voxq(&["inspect", s(&out), "--qdq", "--groups", "preset:campplus"]);
        assert!(
            o.status.success(),
            "{method}: inspect --qdq: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(stdout(&o).contains("0 violation(s)"));
        let chk = Command::new(&py)
            .args(["-c", "import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True); print('onnx.checker ok')", s(&out)])
            .output()
            .unwrap();
        assert!(
            chk.status.success(),
            "onnx.checker: {}",
            String::from_utf8_lossy(&chk.stderr)
        );

        let (eer, emb) = eval(&out.with_extension("json"), d, method);
        let cos: Vec<f64> = emb.iter().map(|(k, v)| cosine(v, &fp32_emb[k])).collect();
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        let min = cos.iter().cloned().fold(f64::INFINITY, f64::min);
        println!("{method}: EER fp32 {fp32_eer:.3}% -> int8 {eer:.3}%; embedding cosine to fp32 mean {mean:.5} min {min:.5}");
        assert!(mean >= 0.99, "{method}: mean cosine {mean}");
        assert!(eer - fp32_eer <= 0.3, "{method}: EER {fp32_eer} -> {eer}");
    }
}
