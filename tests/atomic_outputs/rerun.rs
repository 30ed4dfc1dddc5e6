//! A failed rerun keeps the earlier output.

use crate::common::*;
use crate::support::*;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// A failed rerun keeps the earlier output

/// Every file under `p` (a file or a folder), by relative path, with its bytes.
fn snapshot(p: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    if p.is_file() {
        return vec![(PathBuf::new(), std::fs::read(p).unwrap())];
    }
    let mut v: Vec<_> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                PathBuf::from(e.file_name()),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_failed_rerun_keeps_the_earlier_output() {
    let inp = Inputs::new();
    let out = tempfile::tempdir().unwrap();
    let o = |n: &str| out.path().join(n);
    // A calibration list whose second entry is corrupt audio: the rerun fails after it has
    // processed the first utterance.
    let bad_wav = inp.audio().join("bad.wav");
    std::fs::write(&bad_wav, b"RIFF\x10\x00\x00\x00WAVEjunkjunk").unwrap();
    std::fs::write(inp.path("bad_calib.txt"), "a.wav\nbad.wav\n").unwrap();
    std::fs::write(
        inp.path("bad_trials.txt"),
        "1 a.wav a.wav\n0 a.wav bad.wav\n",
    )
    .unwrap();
    std::fs::write(
        inp.path("bad_table.json"),
        "{\"format\": \"voxq-calibration/1\", ",
    )
    .unwrap();
    std::fs::write(inp.path("bad.onnx"), b"not a model").unwrap();
    let calibrate = |list: &str| {
        os(&[
            &"calibrate",
            &"--model",
            &ecapa(),
            &"--calib",
            &inp.path(list),
            &"--audio-root",
            &inp.audio(),
            &"--method",
            &"max",
            &"--out",
            &o("t.json"),
            &"--trt-cache",
            &o("t.cache"),
            &"--quiet",
        ])
    };
    let quantize = |table: &str| {
        os(&[
            &"quantize",
            &campplus_onnx(),
            &"--table",
            &inp.path(table),
            &"--out",
            &o("q.onnx"),
        ])
    };
    let build = |model: &Path| {
        os(&[
            &"build",
            &model,
            &"--target",
            &"cpu",
            &"--out",
            &o("engine"),
        ])
    };
    let eval = |trials: &str| {
        os(&[
            &"eval",
            &"--model",
            &ecapa(),
            &"--trials",
            &inp.path(trials),
            &"--audio-root",
            &inp.audio(),
            &"--scores",
            &o("scores.txt"),
            &"--det",
            &o("det.png"),
            &"--quiet",
        ])
    };
    // (what, good run, failing rerun, its outputs, the file the error names)
    type Rerun<'a> = (&'a str, Vec<OsString>, Vec<OsString>, Vec<PathBuf>, PathBuf);
    let cases: Vec<Rerun> = vec![
        (
            "calibrate (corrupt 2nd utterance)",
            calibrate("calib.txt"),
            calibrate("bad_calib.txt"),
            vec![o("t.json"), o("t.cache")],
            bad_wav.clone(),
        ),
        (
            "quantize (malformed table)",
            quantize("table.json"),
            quantize("bad_table.json"),
            vec![o("q.onnx")],
            inp.path("bad_table.json"),
        ),
        (
            "build (not a model)",
            build(&root().join("fixtures/models/ecapa_distil.onnx")),
            build(&inp.path("bad.onnx")),
            vec![o("engine")],
            inp.path("bad.onnx"),
        ),
        (
            "eval (corrupt audio in a trial)",
            eval("trials.txt"),
            eval("bad_trials.txt"),
            vec![o("scores.txt"), o("det.png")],
            bad_wav.clone(),
        ),
    ];
    for (what, good, bad, outputs, culprit) in &cases {
        ok(good);
        let before: Vec<_> = outputs.iter().map(|p| snapshot(p)).collect();
        let r = run(bad);
        assert_one_line_error(&r, &[s(culprit)]);
        eprintln!("{what}: {}", stderr(&r).trim());
        for (p, b) in outputs.iter().zip(&before) {
            assert_eq!(&snapshot(p), b, "{what}: {} changed", p.display());
        }
        let temps: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|f| f.to_str().unwrap().starts_with('.'))
            .collect();
        assert!(temps.is_empty(), "{what}: left behind: {temps:?}");
    }
}
