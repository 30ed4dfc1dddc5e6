//! A failing rename leaves the old content and no temporary file.

use crate::common::*;
use crate::support::*;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Failing renames

/// Makes `p` a non-empty folder (the final name a rename cannot replace).
fn squat(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::write(p.join("keep.txt"), b"not yours").unwrap();
}

#[test]
fn a_failing_rename_leaves_the_old_content_and_no_temp_file() {
    let inp = Inputs::new();
    let out = tempfile::tempdir().unwrap();
    let o = |n: &str| out.path().join(n);
    let wav = inp.audio().join("a.wav");
    let cases: Vec<(&str, PathBuf, Vec<OsString>)> = vec![
        (
            "quantize model",
            o("q.onnx"),
            os(&[
                &"quantize",
                &campplus_onnx(),
                &"--table",
                &inp.path("table.json"),
                &"--out",
                &o("q.onnx"),
            ]),
        ),
        (
            "quantize report",
            o("report.json"),
            os(&[
                &"quantize",
                &campplus_onnx(),
                &"--table",
                &inp.path("table.json"),
                &"--out",
                &o("q2.onnx"),
                &"--report",
                &o("report.json"),
            ]),
        ),
        (
            "build engine folder",
            o("engine"),
            os(&[
                &"build",
                &root().join("fixtures/models/ecapa_distil.onnx"),
                &"--target",
                &"cpu",
                &"--out",
                &o("engine"),
            ]),
        ),
        (
            "calibrate table",
            o("t.json"),
            os(&[
                &"calibrate",
                &"--model",
                &ecapa(),
                &"--calib",
                &inp.path("calib.txt"),
                &"--audio-root",
                &inp.audio(),
                &"--method",
                &"max",
                &"--single-pass",
                &"--out",
                &o("t.json"),
                &"--quiet",
            ]),
        ),
        (
            "eval DET plot",
            o("det.png"),
            os(&[
                &"eval",
                &"--model",
                &ecapa(),
                &"--trials",
                &inp.path("trials.txt"),
                &"--audio-root",
                &inp.audio(),
                &"--det",
                &o("det.png"),
                &"--quiet",
            ]),
        ),
        (
            "eval scores",
            o("scores.txt"),
            os(&[
                &"eval",
                &"--model",
                &ecapa(),
                &"--trials",
                &inp.path("trials.txt"),
                &"--audio-root",
                &inp.audio(),
                &"--scores",
                &o("scores.txt"),
                &"--quiet",
            ]),
        ),
        (
            "embed embeddings",
            o("emb.tsv"),
            os(&[
                &"embed",
                &"--model",
                &ecapa(),
                &"--out",
                &o("emb.tsv"),
                &wav,
            ]),
        ),
        (
            "enroll JSON store",
            o("store.json"),
            os(&[
                &"enroll",
                &"--model",
                &ecapa(),
                &"--store",
                &o("store.json"),
                &"--speaker",
                &"x",
                &wav,
            ]),
        ),
    ];
    for (what, dest, args) in &cases {
        squat(dest);
        let before: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let r = run(args);
        assert_one_line_error(&r, &[s(dest)]);
        eprintln!("{what}: {}", stderr(&r).trim());
        assert_eq!(
            std::fs::read(dest.join("keep.txt")).unwrap(),
            b"not yours",
            "{what}"
        );
        assert_eq!(std::fs::read_dir(dest).unwrap().count(), 1, "{what}");
        let mut after: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        after.retain(|f| !before.contains(f));
        // Outputs before the failing one (the quantized model before its report) may be there;
        // nothing else, and no temp name.
        let temps: Vec<_> = after
            .iter()
            .filter(|f| f.to_str().unwrap().starts_with('.'))
            .collect();
        assert!(temps.is_empty(), "{what}: left behind: {temps:?}");
    }

    // export-triton: an entry name taken by a folder of other files.
    let engine = o("eng/cpu");
    ok(&os(&[
        &"build",
        &root().join("fixtures/models/ecapa_distil.onnx"),
        &"--target",
        &"cpu",
        &"--out",
        &engine,
    ]));
    let repo = o("repo");
    squat(&repo.join("eng_cpu"));
    let r = run(&os(&[&"export-triton", &engine, &"--repo", &repo]));
    assert_one_line_error(&r, &[s(&repo.join("eng_cpu")), "not replacing it"]);
    eprintln!("export-triton entry: {}", stderr(&r).trim());
    assert_eq!(std::fs::read_dir(&repo).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(repo.join("eng_cpu")).unwrap().count(), 1);
}
