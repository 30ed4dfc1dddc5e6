//! Inputs, what a complete output looks like, our temporary names, and the kill loop.

use crate::common::*;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use onnx_protobuf::ModelProto;
use protobuf::Message;

pub fn ecapa() -> PathBuf {
    root().join("fixtures/models/ecapa_distil.json")
}

pub fn run(args: &[OsString]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxq"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("voxq runs")
}

pub fn ok(args: &[OsString]) -> Duration {
    let t = Instant::now();
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    t.elapsed()
}

/// An audio root with two short utterances and a calibration list and trial list over them.
pub struct Inputs {
    pub dir: tempfile::TempDir,
}

impl Inputs {
    pub fn new() -> Inputs {
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

    pub fn audio(&self) -> PathBuf {
        self.dir.path().join("audio")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

// ---------------------------------------------------------------------------------------------
// What a complete output looks like

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Onnx,
    Json,
    Png,
    /// Text lines (score files, TensorRT caches): as many lines as a complete run's, the
    /// last one ended.
    Lines,
    EngineDir,
}

/// Why the output at `p` is not complete and valid, if it is not.
pub fn invalid(p: &Path, kind: Kind, reference: &Path) -> Option<String> {
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
pub fn is_temp_of(file: &str, name: &str) -> bool {
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
pub struct Writer {
    pub name: &'static str,
    pub args: Vec<OsString>,
    pub outputs: Vec<(PathBuf, Kind)>,
}

/// Entries of `dir` that are neither final outputs nor our temporary names.
pub fn foreign(dir: &Path, w: &Writer) -> (Vec<String>, Vec<String>) {
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
pub struct Rng(pub u64);

impl Rng {
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Copies a file, or a folder of files.
pub fn copy_out(from: &Path, to: &Path) {
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

pub fn remove_out(p: &Path) {
    if p.is_dir() {
        std::fs::remove_dir_all(p).unwrap();
    } else if p.exists() {
        std::fs::remove_file(p).unwrap();
    }
}

/// Kills `w` at 5 random moments and once mid-write, alternately with no earlier outputs and
/// with complete ones in place; checks the outputs after each kill.
pub fn kill_test(w: &Writer, out_dir: &Path, refs: &Path, rng: &mut Rng) -> Vec<String> {
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
