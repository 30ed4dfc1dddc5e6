//! Output paths (issue 18): what stands at an output path is never replaced unless it is a
//! regular file (FIFOs and device nodes are written through, symbolic links followed, `-` is
//! standard output); no output may be an input or another output; two engine folders may not
//! share a Triton name; output locations are checked before any model loads; when one of
//! several outputs cannot be written, none is. Device nodes, FIFOs and links are made inside a
//! temporary folder: no test touches the machine's own devices.

use crate::common::*;

use std::ffi::{CString, OsString};
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The longest a refused command may take: the check runs before any model loads.
const QUICK: Duration = Duration::from_secs(3);

fn run_in(dir: &Path, args: &[OsString]) -> (Output, Duration) {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_voxq"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("voxq runs");
    (o, t.elapsed())
}

fn ok_in(dir: &Path, args: &[OsString]) -> Output {
    let (o, _) = run_in(dir, args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// A working folder: `audio/{a,b}.wav`, lists over them, a copy of the distilled ECAPA model
/// as `m.onnx` + `m.json`, a calibration table for it, and a copy of the tiny Whisper folder.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("audio")).unwrap();
        two_utterances(&d.join("audio"));
        std::fs::write(d.join("calib.txt"), "a.wav\nb.wav\n").unwrap();
        std::fs::write(
            d.join("trials.txt"),
            "1 a.wav a.wav\n0 a.wav b.wav\n1 b.wav b.wav\n",
        )
        .unwrap();
        let models = root().join("fixtures/models");
        std::fs::copy(models.join("ecapa_distil.onnx"), d.join("m.onnx")).unwrap();
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(models.join("ecapa_distil.json")).unwrap())
                .unwrap();
        cfg["onnx"] = "m.onnx".into();
        std::fs::write(d.join("m.json"), cfg.to_string()).unwrap();
        std::fs::write(d.join("table.json"), unit_range_table(&d.join("m.onnx"))).unwrap();
        std::fs::create_dir(d.join("w")).unwrap();
        for e in std::fs::read_dir(root().join("fixtures/whisper-tiny-test")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.join("w").join(e.file_name())).unwrap();
        }
        Work { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A stand-in engine folder (a manifest is all the output checks look at).
    fn fake_engine(&self, rel: &str) -> PathBuf {
        let e = self.p(rel);
        std::fs::create_dir_all(&e).unwrap();
        std::fs::write(e.join("manifest.json"), b"{}").unwrap();
        std::fs::write(e.join("model.onnx"), b"engine model").unwrap();
        e
    }

    fn embed_args(&self, out: &Path) -> Vec<OsString> {
        os(&[
            &"embed",
            &"--model",
            &self.p("m.json"),
            &"--out",
            &out,
            &self.p("audio/a.wav"),
            &self.p("audio/b.wav"),
        ])
    }
}

/// The embedding lines `voxq embed` prints for the work folder's two utterances.
fn expected_embeddings(w: &Work) -> String {
    let o = ok_in(
        w.dir.path(),
        &os(&[
            &"embed",
            &"--model",
            &w.p("m.json"),
            &w.p("audio/a.wav"),
            &w.p("audio/b.wav"),
        ]),
    );
    let mut lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines.len(), 2);
    lines.join("\n") + "\n"
}

fn sorted(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines.join("\n") + "\n"
}

#[test]
fn non_regular_output_targets_are_written_through_not_replaced() {
    let w = Work::new();
    let want = expected_embeddings(&w);

    // A FIFO, its reader open (non-blocking, so a writer that never comes cannot hang the
    // test; the output fits the pipe buffer): it gets the lines and is still a FIFO afterwards.
    let fifo = w.p("fifo");
    assert_eq!(unsafe { libc::mkfifo(c_path(&fifo).as_ptr(), 0o644) }, 0);
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let (o, _) = run_in(w.dir.path(), &w.embed_args(&fifo));
    assert!(o.status.success(), "FIFO: {}", stderr(&o));
    let mut got = String::new();
    reader.read_to_string(&mut got).unwrap();
    assert_eq!(sorted(&got), want, "FIFO content");
    let t = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(t.is_fifo(), "the FIFO was replaced: {t:?}");

    // A character device node made here (1,3: the null device): still a device afterwards.
    let null = w.p("null");
    let made = unsafe {
        libc::mknod(
            c_path(&null).as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 3),
        )
    };
    assert_eq!(made, 0, "mknod (tests run as root)");
    let (o, _) = run_in(w.dir.path(), &w.embed_args(&null));
    assert!(o.status.success(), "device: {}", stderr(&o));
    let t = std::fs::symlink_metadata(&null).unwrap().file_type();
    assert!(t.is_char_device(), "the device node was replaced: {t:?}");

    // A symbolic link to a file: the file gets the output, the link stays a link.
    std::fs::write(w.p("real.tsv"), b"old\n").unwrap();
    std::os::unix::fs::symlink(w.p("real.tsv"), w.p("link.tsv")).unwrap();
    ok_in(w.dir.path(), &w.embed_args(&w.p("link.tsv")));
    assert!(std::fs::symlink_metadata(w.p("link.tsv"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        sorted(&std::fs::read_to_string(w.p("real.tsv")).unwrap()),
        want
    );
    // A dangling (relative) link: its target is created.
    std::os::unix::fs::symlink("new.tsv", w.p("dangling.tsv")).unwrap();
    ok_in(w.dir.path(), &w.embed_args(&w.p("dangling.tsv")));
    assert!(std::fs::symlink_metadata(w.p("dangling.tsv"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        sorted(&std::fs::read_to_string(w.p("new.tsv")).unwrap()),
        want
    );

    // `-` is standard output, and no file named `-` appears.
    let o = ok_in(w.dir.path(), &w.embed_args(Path::new("-")));
    assert_eq!(sorted(&stdout(&o)), want);
    assert!(!w.p("-").exists(), "a file named '-' was written");
    // eval --scores -: the scores on standard output, the summary moves to standard error.
    let o = ok_in(
        w.dir.path(),
        &os(&[
            &"eval",
            &"--model",
            &w.p("m.json"),
            &"--trials",
            &w.p("trials.txt"),
            &"--audio-root",
            &w.p("audio"),
            &"--scores",
            &"-",
            &"--quiet",
        ]),
    );
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().all(|l| l.contains("target")), "{out}");
    assert!(stderr(&o).contains("EER"), "{}", stderr(&o));
    assert!(!w.p("-").exists());
    // A model output cannot go to standard output.
    let (o, _) = run_in(
        w.dir.path(),
        &os(&[
            &"quantize",
            &w.p("m.onnx"),
            &"--table",
            &w.p("table.json"),
            &"--out",
            &"-",
        ]),
    );
    assert_one_line_error(&o, &["--out -", "standard output"]);
}

/// A refused case: the command fails quickly with one line holding every needle, and every
/// `keep` file is unchanged.
struct Case {
    what: &'static str,
    cwd: Option<PathBuf>,
    args: Vec<OsString>,
    needles: Vec<String>,
    keep: Vec<PathBuf>,
}

fn refused(w: &Work, cases: Vec<Case>) {
    for c in cases {
        let before: Vec<Vec<u8>> = c.keep.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let (o, took) = run_in(c.cwd.as_deref().unwrap_or(w.dir.path()), &c.args);
        eprintln!("{}: {}", c.what, stderr(&o).trim());
        let needles: Vec<&str> = c.needles.iter().map(String::as_str).collect();
        assert_one_line_error(&o, &needles);
        assert!(took < QUICK, "{}: took {took:?}", c.what);
        for (p, b) in c.keep.iter().zip(&before) {
            assert_eq!(
                &std::fs::read(p).unwrap(),
                b,
                "{}: {} changed",
                c.what,
                p.display()
            );
        }
    }
}

fn case(what: &'static str, args: Vec<OsString>, needles: &[&str], keep: &[&Path]) -> Case {
    Case {
        what,
        cwd: None,
        args,
        needles: needles.iter().map(|s| s.to_string()).collect(),
        keep: keep.iter().map(|p| p.to_path_buf()).collect(),
    }
}

#[test]
fn an_output_equal_to_an_input_or_another_output_is_refused_by_every_writing_command() {
    let w = Work::new();
    let (m_onnx, m_json, a_wav) = (w.p("m.onnx"), w.p("m.json"), w.p("audio/a.wav"));
    let (calib, trials, table, audio) = (
        w.p("calib.txt"),
        w.p("trials.txt"),
        w.p("table.json"),
        w.p("audio"),
    );
    std::os::unix::fs::symlink(&m_onnx, w.p("link.onnx")).unwrap();
    // An engine-looking folder holding the model it is rebuilt from.
    let eng = w.fake_engine("eng");
    std::fs::copy(&m_onnx, eng.join("src.onnx")).unwrap();
    let report = w.p("report");
    std::fs::create_dir(&report).unwrap();
    std::fs::copy(&table, report.join("autoquant.json")).unwrap();
    std::fs::copy(&table, report.join("sensitivity.json")).unwrap();
    let cpu = w.fake_engine("cpu");
    let quant = |rest: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut v = os(&[&"quantize", &m_onnx, &"--table", &table]);
        v.extend(os(rest));
        v
    };
    let sens = |cmd: &str, rest: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut v = os(&[
            &cmd,
            &m_json,
            &"--calib",
            &calib,
            &"--audio-root",
            &audio,
            &"--trials",
            &trials,
            &"--quiet",
        ]);
        v.extend(os(rest));
        v
    };
    let eval = |rest: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut v = os(&[
            &"eval",
            &"--model",
            &m_json,
            &"--trials",
            &trials,
            &"--audio-root",
            &audio,
            &"--quiet",
        ]);
        v.extend(os(rest));
        v
    };
    let calibrate = |rest: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut v = os(&[
            &"calibrate",
            &"--model",
            &m_json,
            &"--calib",
            &calib,
            &"--audio-root",
            &audio,
            &"--method",
            &"max",
            &"--quiet",
        ]);
        v.extend(os(rest));
        v
    };
    let mut cases = vec![
        case(
            "embed --out a.wav",
            os(&[&"embed", &"--model", &m_json, &"--out", &a_wav, &a_wav]),
            &["--out", "is an input audio file"],
            &[&a_wav],
        ),
        case(
            "enroll --store a.wav",
            os(&[
                &"enroll",
                &"--model",
                &m_json,
                &"--store",
                &a_wav,
                &"--speaker",
                &"x",
                &a_wav,
            ]),
            &["--store", "is an input audio file"],
            &[&a_wav],
        ),
        case(
            "enroll --store m.json",
            os(&[
                &"enroll",
                &"--model",
                &m_json,
                &"--store",
                &m_json,
                &"--speaker",
                &"x",
                &a_wav,
            ]),
            &["--store", "is the input model's config"],
            &[&m_json],
        ),
        case(
            "eval --scores trials.txt",
            eval(&[&"--scores", &trials]),
            &["--scores", "is the trial list"],
            &[&trials],
        ),
        case(
            "eval --json through a link to the model",
            eval(&[&"--json", &w.p("link.onnx")]),
            &["--json", "is the input model"],
            &[&m_onnx],
        ),
        case(
            "eval --embeddings a.wav",
            eval(&[&"--embeddings", &a_wav]),
            &["--embeddings", "is an audio file of the trial list"],
            &[&a_wav],
        ),
        case(
            "eval --scores = --json",
            eval(&[&"--scores", &w.p("s.txt"), &"--json", &w.p("s.txt")]),
            &["--scores", "is also --json"],
            &[],
        ),
        case(
            "calibrate --out m.onnx",
            calibrate(&[&"--out", &m_onnx]),
            &["--out", "is the input model"],
            &[&m_onnx],
        ),
        case(
            "calibrate --out calib.txt",
            calibrate(&[&"--out", &calib]),
            &["--out", "is the calibration list"],
            &[&calib],
        ),
        case(
            "calibrate --trt-cache a.wav",
            calibrate(&[&"--out", &w.p("t.json"), &"--trt-cache", &a_wav]),
            &["--trt-cache", "is an audio file of the calibration list"],
            &[&a_wav],
        ),
        case(
            "quantize m.onnx --out m.onnx",
            quant(&[&"--out", &m_onnx]),
            &["--out", "is the input model"],
            &[&m_onnx, &m_json],
        ),
        case(
            "quantize --out m.json (the input's config)",
            quant(&[&"--out", &m_json]),
            &["--out", "is the input model's config"],
            &[&m_json],
        ),
        case(
            "quantize --out x.json (model, then its config over it)",
            quant(&[&"--out", &w.p("x.json")]),
            &["--out", "is also the config written beside --out"],
            &[],
        ),
        case(
            "quantize --report = --out",
            quant(&[&"--out", &w.p("q.onnx"), &"--report", &w.p("q.onnx")]),
            &["--out", "is also --report"],
            &[],
        ),
        case(
            "quantize --report = --table",
            quant(&[&"--out", &w.p("q.onnx"), &"--report", &table]),
            &["--report", "is the calibration table"],
            &[&table],
        ),
        case(
            "sensitivity --out holding --table",
            sens(
                "sensitivity",
                &[
                    &"--table",
                    &report.join("sensitivity.json"),
                    &"--out",
                    &report,
                ],
            ),
            &["sensitivity.json", "is the calibration table"],
            &[&report.join("sensitivity.json")],
        ),
        case(
            "autoquant --out holding --table",
            sens(
                "autoquant",
                &[
                    &"--table",
                    &report.join("autoquant.json"),
                    &"--max-increase",
                    &"0.1",
                    &"--out",
                    &report,
                ],
            ),
            &["autoquant.json", "is the calibration table"],
            &[&report.join("autoquant.json")],
        ),
        case(
            "build --out the engine folder holding the model",
            os(&[&"build", &eng.join("src.onnx"), &"--out", &eng]),
            &["--out", "holding the input model"],
            &[&eng.join("src.onnx")],
        ),
        case(
            "transcribe --out a.wav",
            os(&[
                &"transcribe",
                &"--model",
                &w.p("w"),
                &"--out",
                &a_wav,
                &a_wav,
            ]),
            &["--out", "is an input audio file"],
            &[&a_wav],
        ),
        case(
            "transcribe --out a file of the model",
            os(&[
                &"transcribe",
                &"--model",
                &w.p("w"),
                &"--out",
                &w.p("w/tokenizer.json"),
                &a_wav,
            ]),
            &["--out", "is a file of the Whisper model"],
            &[&w.p("w/tokenizer.json")],
        ),
        case(
            "quantize-whisper --out the model folder",
            os(&[
                &"quantize-whisper",
                &"--model",
                &w.p("w"),
                &"--calib",
                &calib,
                &"--audio-root",
                &audio,
                &"--out",
                &w.p("w"),
            ]),
            &["--out", "is the Whisper model folder"],
            &[&w.p("w/encoder.onnx")],
        ),
        case(
            "bench embed --json a.wav",
            os(&[
                &"bench", &"embed", &"--model", &m_json, &"--audio", &a_wav, &"--json", &a_wav,
            ]),
            &["--json", "is an input audio file"],
            &[&a_wav],
        ),
        case(
            "bench engines --json a file of the engine",
            os(&[
                &"bench",
                &"engines",
                &cpu,
                &"--json",
                &cpu.join("manifest.json"),
            ]),
            &["--json", "is a file of an input engine folder"],
            &[&cpu.join("manifest.json")],
        ),
    ];
    // export-triton: a bare engine folder name whose entry in `--repo .` is the folder itself.
    cases.push(Case {
        what: "export-triton entry = engine folder",
        cwd: Some(w.dir.path().to_path_buf()),
        args: os(&[&"export-triton", &"cpu", &"--repo", &"."]),
        needles: vec!["is an input engine folder".into()],
        keep: vec![cpu.join("manifest.json"), cpu.join("model.onnx")],
    });
    refused(&w, cases);
    assert!(!w.p("s.txt").exists() && !w.p("x.json").exists() && !w.p("q.onnx").exists());
}

#[test]
fn export_triton_refuses_two_engines_with_one_name() {
    let w = Work::new();
    let a = w.fake_engine("a/campplus/cpu");
    let b = w.fake_engine("b/campplus/cpu");
    let repo = w.p("repo");
    let (o, took) = run_in(
        w.dir.path(),
        &os(&[&"export-triton", &a, &b, &"--repo", &repo]),
    );
    assert_one_line_error(&o, &["campplus_cpu", s(&a), s(&b)]);
    assert!(took < QUICK);
    assert!(!repo.exists(), "nothing may be written");
}

#[test]
fn output_locations_are_checked_before_any_model_loads() {
    let w = Work::new();
    // A model that cannot load: an error about it means the output check came too late.
    std::fs::write(w.p("bad.onnx"), b"not a model").unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.p("m.json")).unwrap()).unwrap();
    cfg["onnx"] = "bad.onnx".into();
    std::fs::write(w.p("bad.json"), cfg.to_string()).unwrap();
    std::fs::write(w.p("file"), b"a file").unwrap();
    let (bad, audio, calib, trials) = (
        w.p("bad.json"),
        w.p("audio"),
        w.p("calib.txt"),
        w.p("trials.txt"),
    );
    let eval = os(&[
        &"eval",
        &"--model",
        &bad,
        &"--trials",
        &trials,
        &"--audio-root",
        &audio,
        &"--scores",
        &w.p("s.txt"),
        &"--det",
        &w.p("missing/x.png"),
    ]);
    let cases = vec![
        case(
            "eval --det missing/x.png",
            eval,
            &["--det", "missing", "does not exist"],
            &[],
        ),
        case(
            "calibrate --out under a file",
            os(&[
                &"calibrate",
                &"--model",
                &bad,
                &"--calib",
                &calib,
                &"--audio-root",
                &audio,
                &"--out",
                &w.p("file/t.json"),
            ]),
            &["--out", "is not a folder"],
            &[],
        ),
        case(
            "autoquant --out is a file",
            os(&[
                &"autoquant",
                &w.p("bad.onnx"),
                &"--calib",
                &calib,
                &"--audio-root",
                &audio,
                &"--metric",
                &"sqnr",
                &"--min-sqnr",
                &"20",
                &"--out",
                &w.p("file"),
            ]),
            &["--out", "not a folder"],
            &[&w.p("file")],
        ),
        case(
            "build --out a folder of other files",
            os(&[&"build", &w.p("bad.onnx"), &"--out", &audio]),
            &["--out", "exists and is not an engine folder"],
            &[&w.p("audio/a.wav")],
        ),
        case(
            "quantize --out in a missing folder",
            os(&[
                &"quantize",
                &w.p("bad.onnx"),
                &"--table",
                &w.p("table.json"),
                &"--out",
                &w.p("no/q.onnx"),
            ]),
            &["--out", "does not exist"],
            &[],
        ),
        case(
            "transcribe --out a folder",
            os(&[
                &"transcribe",
                &"--model",
                &w.p("missing-model"),
                &"--out",
                &audio,
                &w.p("audio/a.wav"),
            ]),
            &["--out", "is a folder"],
            &[],
        ),
    ];
    refused(&w, cases);
    assert!(!w.p("s.txt").exists(), "no output may be written");
}

#[test]
fn when_one_output_cannot_be_written_none_is() {
    let w = Work::new();
    let (m, audio, trials) = (w.p("m.json"), w.p("audio"), w.p("trials.txt"));
    let (o, _) = run_in(
        w.dir.path(),
        &os(&[
            &"eval",
            &"--model",
            &m,
            &"--trials",
            &trials,
            &"--audio-root",
            &audio,
            &"--scores",
            &w.p("s.txt"),
            &"--json",
            &w.p("j.json"),
            &"--embeddings",
            &w.p("e.tsv"),
            &"--det",
            &w.p("missing/x.png"),
            &"--quiet",
        ]),
    );
    assert_one_line_error(&o, &["--det", "does not exist"]);
    assert!(!stderr(&o).contains("{ "), "{}", stderr(&o));
    for f in ["s.txt", "j.json", "e.tsv"] {
        assert!(!w.p(f).exists(), "{f} was written");
    }
    // calibrate: two tables and a TensorRT cache whose folder is missing.
    let (o, _) = run_in(
        w.dir.path(),
        &os(&[
            &"calibrate",
            &"--model",
            &m,
            &"--calib",
            &w.p("calib.txt"),
            &"--audio-root",
            &audio,
            &"--method",
            &"max,mse",
            &"--single-pass",
            &"--out",
            &w.p("tables"),
            &"--trt-cache",
            &w.p("missing/c.cache"),
            &"--quiet",
        ]),
    );
    assert_one_line_error(&o, &["--trt-cache", "does not exist"]);
    assert!(!w.p("tables").exists(), "tables were written");
    // --out tables/ with one method is the folder form, as in the README.
    ok_in(
        w.dir.path(),
        &os(&[
            &"calibrate",
            &"--model",
            &m,
            &"--calib",
            &w.p("calib.txt"),
            &"--audio-root",
            &audio,
            &"--method",
            &"max",
            &"--single-pass",
            &"--out",
            &format!("{}/", w.p("tables").display()),
            &"--quiet",
        ]),
    );
    assert!(w.p("tables/max.json").is_file());
}
