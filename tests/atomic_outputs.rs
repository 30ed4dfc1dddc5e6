//! Atomic outputs (issue 8): models, engine folders, tables, reports, plots and score files are
//! written to a temporary name beside the destination and renamed, so an interrupted or failed
//! run never leaves a partial file under the final name.
//!
//! - killed: each writer is SIGKILLed at random moments (10–90% of its measured duration) and
//!   once the moment a temporary name appears (mid-write); afterwards every final name is
//!   absent or holds a complete, valid output; leftovers are only recognisable temporary
//!   names, and the next complete run removes them.
//! - failing: a destination whose rename must fail (an existing non-empty folder under the
//!   final name) gives a one-line error, leaves that folder untouched and no temp file behind.
//! - rerun: an existing good output survives, byte for byte, a rerun that fails midway.

mod common;
use common::*;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use onnx_protobuf::ModelProto;
use protobuf::Message;

fn ecapa() -> PathBuf {
    root().join("fixtures/models/ecapa_distil.json")
}

fn run(args: &[OsString]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxq"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("voxq runs")
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn ok(args: &[OsString]) -> Duration {
    let t = Instant::now();
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    t.elapsed()
}

/// An audio root with two short utterances and a calibration list and trial list over them.
struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Inputs {
        let dir = tempfile::tempdir().unwrap();
        let audio = dir.path().join("audio");
        std::fs::create_dir(&audio).unwrap();
        two_utterances(&audio);
        std::fs::write(dir.path().join("calib.txt"), "a.wav\nb.wav\n").unwrap();
        std::fs::write(
            dir.path().join("trials.txt"),
            "1 a.wav a.wav\n0 a.wav b.wav\n1 b.wav b.wav\n",
        )
        .unwrap();
        // A table for quantize: every CAM++ activation with range ±1.
        std::fs::write(
            dir.path().join("table.json"),
            unit_range_table(&campplus_onnx()),
        )
        .unwrap();
        Inputs { dir }
    }

    fn audio(&self) -> PathBuf {
        self.dir.path().join("audio")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

// ---------------------------------------------------------------------------------------------
// What a complete output looks like

#[derive(Clone, Copy, Debug)]
enum Kind {
    Onnx,
    Json,
    Png,
    /// Text lines (score files, TensorRT caches): as many lines as a complete run's, the
    /// last one ended.
    Lines,
    EngineDir,
}

/// Why the output at `p` is not complete and valid, if it is not.
fn invalid(p: &Path, kind: Kind, reference: &Path) -> Option<String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let check = || -> Result<(), String> {
        match kind {
            Kind::Onnx => {
                let b = read(p)?;
                let m = ModelProto::parse_from_bytes(&b).map_err(|e| e.to_string())?;
                if m.graph.node.is_empty() {
                    return Err("no nodes".into());
                }
                if b != read(reference)? {
                    return Err("differs from a complete run's output".into());
                }
            }
            Kind::Json => {
                serde_json::from_slice::<serde_json::Value>(&read(p)?)
                    .map_err(|e| e.to_string())?;
            }
            Kind::Png => {
                let b = read(p)?;
                let iend = b"IEND\xaeB`\x82";
                if !b.starts_with(b"\x89PNG\r\n\x1a\n") || !b.ends_with(iend) {
                    return Err(format!("not a whole PNG ({} bytes)", b.len()));
                }
            }
            Kind::Lines => {
                let (b, r) = (read(p)?, read(reference)?);
                let lines = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count();
                if lines(&b) != lines(&r) || !b.ends_with(b"\n") {
                    return Err(format!(
                        "{} lines, a complete run has {}",
                        lines(&b),
                        lines(&r)
                    ));
                }
            }
            Kind::EngineDir => {
                let m: serde_json::Value = serde_json::from_slice(&read(&p.join("manifest.json"))?)
                    .map_err(|e| format!("manifest: {e}"))?;
                let engine = p.join(m["engine_file"].as_str().ok_or("no engine_file")?);
                ModelProto::parse_from_bytes(&read(&engine)?)
                    .map_err(|e| format!("{}: {e}", engine.display()))?;
                if read(&engine)? != read(&reference.join("model.onnx"))? {
                    return Err("engine model differs from a complete build's".into());
                }
                serde_json::from_slice::<serde_json::Value>(&read(&p.join("model.json"))?)
                    .map_err(|e| format!("model.json: {e}"))?;
            }
        }
        Ok(())
    };
    check().err()
}

/// One of our temporary names for `name` (see `exporter::atomic`): `.NAME.tmp-PID-N`,
/// `.NAME.partial-PID`, `.NAME.old-PID`, `.NAME.PID.tmp.png`.
fn is_temp_of(file: &str, name: &str) -> bool {
    let Some(rest) = file
        .strip_prefix('.')
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix('.'))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(r) = rest.strip_prefix("tmp-") {
        return r
            .split_once('-')
            .is_some_and(|(a, b)| digits(a) && digits(b));
    }
    rest.strip_prefix("partial-")
        .or_else(|| rest.strip_prefix("old-"))
        .or_else(|| rest.strip_suffix(".tmp.png"))
        .is_some_and(digits)
}

/// A writer: its command line and its outputs (final path, kind, complete reference copy).
struct Writer {
    name: &'static str,
    args: Vec<OsString>,
    outputs: Vec<(PathBuf, Kind)>,
}

/// Entries of `dir` that are neither final outputs nor our temporary names.
fn foreign(dir: &Path, w: &Writer) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = w
        .outputs
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    let (mut temps, mut other) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(dir).unwrap() {
        let f = e.unwrap().file_name().to_str().unwrap().to_string();
        if names.contains(&f) {
            continue;
        }
        if names.iter().any(|n| is_temp_of(&f, n)) {
            temps.push(f);
        } else {
            other.push(f);
        }
    }
    (temps, other)
}

/// A small deterministic generator (xorshift) for the kill moments.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Copies a file, or a folder of files.
fn copy_out(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

fn remove_out(p: &Path) {
    if p.is_dir() {
        std::fs::remove_dir_all(p).unwrap();
    } else if p.exists() {
        std::fs::remove_file(p).unwrap();
    }
}

/// Kills `w` at 5 random moments and once mid-write, alternately with no earlier outputs and
/// with complete ones in place; checks the outputs after each kill.
fn kill_test(w: &Writer, out_dir: &Path, refs: &Path, rng: &mut Rng) -> Vec<String> {
    // A complete run: its duration and reference outputs.
    let d = ok(&w.args);
    for (p, _) in &w.outputs {
        copy_out(p, &refs.join(p.file_name().unwrap()));
    }
    let mut log = Vec::new();
    let mut leftovers = std::collections::BTreeSet::new();
    for k in 0..6 {
        let earlier = k % 2 == 1;
        for (p, _) in &w.outputs {
            remove_out(p);
            if earlier {
                copy_out(&refs.join(p.file_name().unwrap()), p);
            }
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_voxq"))
            .args(&w.args)
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let when = if k < 5 {
            let at = d.mul_f64(0.1 + 0.8 * rng.unit());
            std::thread::sleep(at);
            format!(
                "at {:.0}% ({} ms)",
                100.0 * at.as_secs_f64() / d.as_secs_f64(),
                at.as_millis()
            )
        } else {
            // the moment a temporary name of this process shows up: the write is under way
            let pid = child.id().to_string();
            loop {
                let mine = foreign(out_dir, w).0.iter().any(|t| t.contains(&pid));
                if mine || t0.elapsed() > d * 3 {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            format!(
                "when a temp name appeared ({} ms)",
                t0.elapsed().as_millis()
            )
        };
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
        }
        let status = child.wait().unwrap();
        let (temps, other) = foreign(out_dir, w);
        assert!(other.is_empty(), "{}: unexpected files {other:?}", w.name);
        let mut finals = Vec::new();
        for (p, kind) in &w.outputs {
            if !p.exists() {
                finals.push(format!(
                    "{} absent",
                    p.file_name().unwrap().to_str().unwrap()
                ));
                continue;
            }
            let r = refs.join(p.file_name().unwrap());
            if let Some(why) = invalid(p, *kind, &r) {
                panic!(
                    "{}: after a kill {when}, {} is not complete: {why}",
                    w.name,
                    p.display()
                );
            }
            finals.push(format!(
                "{} complete",
                p.file_name().unwrap().to_str().unwrap()
            ));
        }
        log.push(format!(
            "{} kill {when}, {} ({}): {}; temp names left: {temps:?}",
            w.name,
            if earlier {
                "earlier outputs in place"
            } else {
                "no earlier outputs"
            },
            if status.success() {
                "had finished"
            } else {
                "killed"
            },
            finals.join(", ")
        ));
        leftovers.extend(temps);
    }
    // The next complete run removes what the killed ones left.
    ok(&w.args);
    let (temps, other) = foreign(out_dir, w);
    assert!(
        other.is_empty() && temps.is_empty(),
        "{}: after a complete run: {temps:?} {other:?}",
        w.name
    );
    for (p, kind) in &w.outputs {
        let r = refs.join(p.file_name().unwrap());
        assert_eq!(invalid(p, *kind, &r), None, "{}", p.display());
    }
    log.push(format!(
        "{}: {} temp name(s) left over by the kills, all removed by the next complete run",
        w.name,
        leftovers.len()
    ));
    log
}

#[test]
fn killed_writers_leave_complete_outputs_or_none() {
    let inp = Inputs::new();
    let seed = std::env::var("VOXQ_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill moments: VOXQ_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let mut log = Vec::new();
    let out = tempfile::tempdir().unwrap();
    // Each writer writes into its own folder: out/<writer>/.
    let o = |n: &str| {
        let (w, f) = n.split_once('/').unwrap();
        std::fs::create_dir_all(out.path().join(w)).unwrap();
        out.path().join(w).join(f)
    };
    let writers = vec![
        Writer {
            name: "quantize",
            args: os(&[
                &"quantize",
                &campplus_onnx(),
                &"--table",
                &inp.path("table.json"),
                &"--out",
                &o("quantize/q.onnx"),
                &"--report",
                &o("quantize/report.json"),
            ]),
            outputs: vec![
                (o("quantize/q.onnx"), Kind::Onnx),
                (o("quantize/q.json"), Kind::Json),
                (o("quantize/report.json"), Kind::Json),
            ],
        },
        Writer {
            name: "build",
            args: os(&[
                &"build",
                &root().join("fixtures/models/ecapa_distil.onnx"),
                &"--target",
                &"cpu",
                &"--out",
                &o("build/engine"),
            ]),
            outputs: vec![(o("build/engine"), Kind::EngineDir)],
        },
        Writer {
            name: "calibrate",
            args: os(&[
                &"calibrate",
                &"--model",
                &ecapa(),
                &"--calib",
                &inp.path("calib.txt"),
                &"--audio-root",
                &inp.audio(),
                &"--method",
                &"max",
                &"--out",
                &o("calibrate/table.json"),
                &"--trt-cache",
                &o("calibrate/table.cache"),
                &"--quiet",
            ]),
            outputs: vec![
                (o("calibrate/table.json"), Kind::Json),
                (o("calibrate/table.cache"), Kind::Lines),
            ],
        },
        Writer {
            name: "eval",
            args: os(&[
                &"eval",
                &"--model",
                &ecapa(),
                &"--trials",
                &inp.path("trials.txt"),
                &"--audio-root",
                &inp.audio(),
                &"--scores",
                &o("eval/scores.txt"),
                &"--json",
                &o("eval/eval.json"),
                &"--det",
                &o("eval/det.png"),
                &"--quiet",
            ]),
            outputs: vec![
                (o("eval/scores.txt"), Kind::Lines),
                (o("eval/eval.json"), Kind::Json),
                (o("eval/det.png"), Kind::Png),
            ],
        },
    ];
    let mut writers = writers;
    writers.push(Writer {
        name: "enroll (JSON store)",
        args: os(&[
            &"enroll",
            &"--model",
            &ecapa(),
            &"--store",
            &o("enroll/store.json"),
            &"--speaker",
            &"x",
            &inp.audio().join("a.wav"),
            &inp.audio().join("b.wav"),
        ]),
        outputs: vec![(o("enroll/store.json"), Kind::Json)],
    });
    for w in &writers {
        let dir = w.outputs[0].0.parent().unwrap().to_path_buf();
        let refs = tempfile::tempdir().unwrap();
        log.extend(kill_test(w, &dir, refs.path(), &mut rng));
    }
    eprintln!("{}", log.join("\n"));
}

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
