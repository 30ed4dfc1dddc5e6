//! voxq against an independent Python pipeline (onnxruntime + kaldi-native-fbank,
//! `tools/reference_eval.py`) on the committed trials: same EER (within 0.05 points) and
//! per-utterance embedding cosine >= 0.9999.

use crate::common;
use common::*;
use std::process::{Command, Stdio};

#[test]
fn campplus_matches_python_reference_on_committed_trials() {
    let py = root().join(".cache/pyref/bin/python");
    assert!(
        py.is_file(),
        "Python reference environment missing: run `make setup` (tools/setup_pyref.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (ref_emb, our_emb, our_json) = (
        dir.path().join("ref.tsv"),
        dir.path().join("ours.tsv"),
        dir.path().join("ours.json"),
    );
    let speech = speech();
    let model = campplus();
    let trials = root().join("fixtures/trials/trials.txt");
    // Run both pipelines side by side, one thread each.
    let reference = Command::new(&py)
        .args([
            "tools/reference_eval.py",
            "--threads",
            "1",
            "--model",
            s(&model),
            "--trials",
            s(&trials),
        ])
        .args(["--audio-root", s(&speech), "--embeddings-out", s(&ref_emb)])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = voxq(&[
        "eval",
        "--model",
        s(&model),
        "--trials",
        s(&trials),
        "--audio-root",
        s(&speech),
        "--threads",
        "1",
        "--quiet",
        "--json",
        s(&our_json),
        "--embeddings",
        s(&our_emb),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = reference.wait_with_output().unwrap();
    let ref_out = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(
        r.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );

    let ref_eer: f64 = ref_out
        .split("EER=")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no EER in reference output: {ref_out}"));
    let ours: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&our_json).unwrap()).unwrap();
    let our_eer = ours["all"]["eer"].as_f64().unwrap() * 100.0;
    println!("EER voxq {our_eer:.4}%  reference {ref_eer:.4}%");
    assert!(
        (our_eer - ref_eer).abs() <= 0.05,
        "EER voxq {our_eer}% vs reference {ref_eer}%"
    );

    let a = embeddings(&our_emb);
    let b = embeddings(&ref_emb);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a.len() > 500, "{} utterances", a.len());
    let (worst_name, worst) = a
        .iter()
        .map(|(k, v)| (k, cosine(v, &b[k])))
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap();
    println!(
        "per-utterance cosine voxq vs reference: min {worst:.10} ({worst_name}) over {}",
        a.len()
    );
    assert!(worst >= 0.9999, "{worst_name}: cosine {worst}");
}
