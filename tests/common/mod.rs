//! Shared helpers for the end-to-end tests of the `voxq` binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn speech() -> PathBuf {
    let p = root().join(".cache/speech");
    assert!(
        p.join("MANIFEST.tsv").is_file(),
        "real-speech corpus missing at {}: run `make setup` (tools/setup_speech.sh)",
        p.display()
    );
    p
}

/// The CAM++ ONNX export the JSON config `campplus()` points at.
pub fn campplus_onnx() -> PathBuf {
    root().join("fixtures/models/campplus.onnx")
}

pub fn campplus() -> PathBuf {
    root().join("fixtures/models/campplus.json")
}

pub fn voxq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxq"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("voxq runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The run failed with exactly one `voxq: error: …` line that contains every `needle`.
pub fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "exit status; stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(lines[0].starts_with("voxq: error: "), "{err}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "error line {:?} lacks {n:?}",
            lines[0]
        );
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// A command line of mixed strings and paths, as the `OsString`s `Command::args` takes.
pub fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<std::ffi::OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The first `n` lines of a committed list of corpus paths, resolved under the corpus.
pub fn list(file: &str, n: usize) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(root().join(file)).expect("list file");
    let sp = speech();
    text.lines().take(n).map(|l| sp.join(l.trim())).collect()
}

/// Reads an embeddings file (`name<TAB>v1 v2 ...` per line, as `voxq eval --embeddings` and
/// `tools/reference_eval.py` write it).
pub fn embeddings(p: &Path) -> BTreeMap<String, Vec<f64>> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, vals) = l.split_once('\t').expect("name<TAB>values");
            (
                name.to_string(),
                vals.split(' ').map(|v| v.parse().unwrap()).collect(),
            )
        })
        .collect()
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let ab: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let aa: f64 = a.iter().map(|x| x * x).sum();
    let bb: f64 = b.iter().map(|x| x * x).sum();
    ab / (aa * bb).sqrt()
}

/// A calibration list file in `dir` holding the first `n` committed calibration utterances.
pub fn calib_list(dir: &Path, n: usize) -> PathBuf {
    let text =
        std::fs::read_to_string(root().join("fixtures/trials/calib.txt")).expect("calib.txt");
    let p = dir.join("calib.txt");
    let lines: Vec<&str> = text.lines().take(n).collect();
    std::fs::write(&p, lines.join("\n") + "\n").expect("write calib list");
    p
}

/// Writes 16 kHz mono 16-bit PCM (no samples: an empty WAV).
#[allow(dead_code)]
pub fn write_wav16(path: &Path, samples: impl IntoIterator<Item = i16>) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Writes two short real utterances into `dir`: `a.wav` (the 16 kHz fixture) and `b.wav` (its
/// second half, twice as loud: a different "utterance" for trial lists and calibration).
pub fn two_utterances(dir: &Path) {
    let speech = root().join("fixtures/audio/speech_16k.wav");
    std::fs::copy(&speech, dir.join("a.wav")).unwrap();
    let samples: Vec<i16> = hound::WavReader::open(&speech)
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect();
    write_wav16(
        &dir.join("b.wav"),
        samples[samples.len() / 2..]
            .iter()
            .map(|s| s.saturating_mul(2)),
    );
}

/// A calibration table (JSON) that `voxq quantize` accepts for `model`: every node output and
/// the `feats` input with range ±1.
pub fn unit_range_table(model: &Path) -> String {
    use protobuf::Message;
    let m = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(model).unwrap()).unwrap();
    let entry = serde_json::json!({"amax": 1.0f32, "scale": 1.0f32 / 127.0});
    let mut tensors = serde_json::Map::new();
    for o in m.graph.node.iter().flat_map(|n| n.output.iter()) {
        tensors.insert(o.clone(), entry.clone());
    }
    tensors.insert("feats".into(), entry);
    serde_json::json!({"format": "voxq-calibration/1", "method": "max", "tensors": tensors})
        .to_string()
}

/// The tiny Whisper fixture's clips with their expected texts (its `expected.json`), written
/// as an ASR list (`wav<TAB>text`) in `dir`: fp32 scores 0% on it.
pub fn tiny_whisper_asr_list(dir: &Path) -> PathBuf {
    let p = root().join("fixtures/whisper-tiny-test/expected.json");
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let mut text = String::new();
    for c in exp["clips"].as_array().unwrap() {
        text.push_str(&format!(
            "{}\t{}\n",
            c["wav"].as_str().unwrap(),
            c["text"].as_str().unwrap().trim()
        ));
    }
    let list = dir.join("asr.tsv");
    std::fs::write(&list, text).unwrap();
    list
}
