//! Bad input to the speaker commands: one-line errors naming the file, exit 1, no panic,
//! and no output file left behind.

use crate::common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn real_wav() -> PathBuf {
    list("fixtures/trials/demo_enroll_june.txt", 1).remove(0)
}

fn write_pcm16(path: &Path, samples: &[i16], rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
}

/// Runs `voxq embed --out` on `bad` (after a good file) and checks the error and that no output
/// file, final or temporary, was left.
fn embed_fails(bad: &Path, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("emb.tsv");
    let good = real_wav();
    let model = campplus();
    let o = voxq(&[
        "embed",
        "--model",
        s(&model),
        "--out",
        s(&out),
        s(&good),
        s(bad),
    ]);
    let mut all = vec![s(bad)];
    all.extend_from_slice(needles);
    assert_one_line_error(&o, &all);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn truncated_wav() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(real_wav()).unwrap();
    let p = dir.path().join("truncated.wav");
    std::fs::write(&p, &bytes[..bytes.len() / 2 + 1]).unwrap();
    embed_fails(&p, &["WAV"]);
}

#[test]
fn garbage_wav() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("garbage.wav");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&p, bytes).unwrap();
    embed_fails(&p, &["WAV"]);
}

#[test]
fn zero_length_audio() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.wav");
    write_pcm16(&p, &[], 16000);
    embed_fails(&p, &["empty"]);
}

#[test]
fn audio_shorter_than_one_frame() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("short.wav");
    write_pcm16(&p, &[100; 200], 16000); // 12.5 ms < one 25 ms frame
    embed_fails(&p, &["too short"]);
}

#[test]
fn missing_audio_file() {
    let dir = tempfile::tempdir().unwrap();
    embed_fails(&dir.path().join("nope.wav"), &[]);
}

/// A copy of the CAM++ config in `dir` that points at `onnx` with the given tensor names.
fn config_for(dir: &Path, onnx: &str, input: &str, output: &str) -> PathBuf {
    let text = std::fs::read_to_string(campplus()).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["onnx"] = onnx.into();
    v["input"] = input.into();
    v["output"] = output.into();
    let p = dir.join("model.json");
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    p
}

#[test]
fn non_onnx_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("notamodel.onnx");
    std::fs::write(&onnx, "this is a text file, not ONNX\n").unwrap();
    let cfg = config_for(dir.path(), "notamodel.onnx", "feats", "embedding");
    let o = voxq(&["embed", "--model", s(&cfg), s(&real_wav())]);
    assert_one_line_error(&o, &[s(&onnx)]);
    // Given as the ONNX file itself, with the config beside it under the same stem.
    std::fs::copy(&cfg, dir.path().join("notamodel.json")).unwrap();
    let o = voxq(&["embed", "--model", s(&onnx), s(&real_wav())]);
    assert_one_line_error(&o, &[s(&onnx)]);
}

#[test]
fn model_with_wrong_input_rank() {
    // A real third-party model (ONNX's own Softmax test case) whose input is rank 2.
    let case = root().join(".cache/onnx-node-tests/test_softmax_example/model.onnx");
    assert!(
        case.is_file(),
        "run `make setup` (tools/setup_onnx_tests.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("softmax.onnx");
    std::fs::copy(&case, &onnx).unwrap();
    let cfg = config_for(dir.path(), "softmax.onnx", "x", "y");
    let o = voxq(&["embed", "--model", s(&cfg), s(&real_wav())]);
    assert_one_line_error(&o, &[s(&onnx), "rank 3"]);
}

#[test]
fn model_config_missing_or_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("lonely.onnx");
    std::fs::copy(root().join("fixtures/models/campplus.onnx"), &onnx).unwrap();
    let o = voxq(&["embed", "--model", s(&onnx), s(&real_wav())]);
    assert_one_line_error(&o, &[s(&onnx), "no model config"]);
    let cfg = dir.path().join("lonely.json");
    std::fs::write(&cfg, "{\"name\": 3}").unwrap();
    let o = voxq(&["embed", "--model", s(&cfg), s(&real_wav())]);
    assert_one_line_error(&o, &[s(&cfg), "invalid model config"]);
}

#[test]
fn missing_onnx_runtime_library() {
    let o = Command::new(env!("CARGO_BIN_EXE_voxq"))
        .args(["embed", "--model", s(&campplus()), s(&real_wav())])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert_one_line_error(
        &o,
        &[
            "ONNX Runtime library not found",
            "/nonexistent/libonnxruntime.so",
            "make setup",
        ],
    );
}

/// `voxq eval` of CAM++ on the trial list `t` over the real-speech corpus.
fn eval_trials(t: &Path) -> std::process::Output {
    voxq(&[
        "eval",
        "--model",
        s(&campplus()),
        "--trials",
        s(t),
        "--audio-root",
        s(&speech()),
        "--quiet",
    ])
}

#[test]
fn trial_list_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("trials.txt");
    std::fs::write(&t, "1 allison/en/agent-user.wav\n").unwrap();
    let o = eval_trials(&t);
    assert_one_line_error(&o, &[s(&t), "line 1"]);
    std::fs::write(
        &t,
        "1 allison/en/agent-user.wav does/not/exist.wav\n0 a.wav b.wav\n",
    )
    .unwrap();
    let o = eval_trials(&t);
    assert_one_line_error(&o, &["a.wav"]);
}
