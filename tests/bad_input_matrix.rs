//! Bad-input matrix (issue 8): each command × each kind of input file it reads, with malformed,
//! truncated, empty, oversized, wrong-type and adversarial files.
//!
//! Every bad case must end with exit status 1 and exactly one `voxq: error: ` line on standard
//! error that names the file (no panic, no second line), within [`TIME_LIMIT`], with the child
//! under an address-space limit of [`AS_LIMIT`] (so an attempt to allocate 10 GB fails instead
//! of taking the machine) and a peak resident size under [`MAX_RSS`]; outputs the command would
//! have written must not exist afterwards. Each kind also runs good input under the same
//! limits, which must succeed: the limits do not fail normal runs.
//!
//! "Oversized" files are sparse ([`HUGE`] bytes, past protobuf's 2 GiB limit and every text
//! input's size cap), so they cost no disk and must be refused without being read.

mod common;
use common::*;

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onnx_protobuf::{ModelProto, NodeProto, StringStringEntryProto};
use protobuf::Message;

/// Address-space limit of every child (ONNX Runtime's own reservations fit well inside).
const AS_LIMIT: u64 = 4 << 30;
/// Peak resident size allowed to a failing run.
const MAX_RSS: u64 = 1 << 30;
/// Wall-clock limit of one run; the child is killed past it.
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// Length of the sparse "oversized" files.
const HUGE: u64 = (2 << 30) + 4096;

// ---------------------------------------------------------------------------------------------
// Running a case

struct Run {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    secs: f64,
    max_rss: u64,
    timed_out: bool,
}

/// Runs `voxq args` under the address-space limit, killing it after [`TIME_LIMIT`].
// The child is reaped with wait4 (for its peak RSS), not Child::wait.
#[allow(clippy::zombie_processes)]
fn run_limited(args: &[OsString]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxq"));
    cmd.args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let as_limit = libc::rlimit {
                rlim_cur: AS_LIMIT as libc::rlim_t,
                rlim_max: AS_LIMIT as libc::rlim_t,
            };
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &as_limit) != 0
                || libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("voxq starts");
    let pid = child.id() as libc::pid_t;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let mut status = 0;
    // SAFETY: plain C structs and calls on our own child's pid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if start.elapsed() > TIME_LIMIT {
            timed_out = true;
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut ru);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = out.join();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Run {
        code,
        signal,
        stderr,
        secs,
        max_rss: ru.ru_maxrss as u64 * 1024,
        timed_out,
    }
}

/// One bad input: the command line and what its error line must contain.
struct Case {
    /// `command/kind/case`.
    label: String,
    args: Vec<OsString>,
    /// The error line must contain each of these (the file's path first).
    needles: Vec<String>,
}

impl Case {
    /// A case whose error line must name `file` (and nothing more).
    fn naming(label: String, args: Vec<OsString>, file: &Path) -> Case {
        Case {
            label,
            args,
            needles: vec![s(file).to_string()],
        }
    }
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.len() <= 400 {
        return s.to_string();
    }
    let mut cut = 400;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &s[..cut], s.len())
}

/// Why a finished bad case does not pass, if it does not.
fn verdict(c: &Case, r: &Run, out_dir: &Path) -> Result<(), String> {
    if r.timed_out {
        return Err(format!("still running after {TIME_LIMIT:?}: killed"));
    }
    if let Some(sig) = r.signal {
        return Err(format!(
            "killed by signal {sig}; stderr: {}",
            short(&r.stderr)
        ));
    }
    if r.code != Some(1) {
        return Err(format!(
            "exit status {:?} (want 1); stderr: {}",
            r.code,
            short(&r.stderr)
        ));
    }
    if r.stderr.contains("panicked") {
        return Err(format!("panic: {}", short(&r.stderr)));
    }
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        return Err(format!(
            "{} stderr lines (want 1): {}",
            lines.len(),
            short(&r.stderr)
        ));
    }
    if !lines[0].starts_with("voxq: error: ") {
        return Err(format!("not a voxq error line: {}", short(lines[0])));
    }
    for n in &c.needles {
        if !lines[0].contains(n.as_str()) {
            return Err(format!("error line lacks {n:?}: {}", short(lines[0])));
        }
    }
    if r.max_rss > MAX_RSS {
        return Err(format!(
            "peak RSS {} MiB over {} MiB",
            r.max_rss >> 20,
            MAX_RSS >> 20
        ));
    }
    let left: Vec<_> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    if !left.is_empty() {
        return Err(format!("left behind in the output folder: {left:?}"));
    }
    Ok(())
}

/// Runs every case, then fails listing all that did not pass. With `VOXQ_MATRIX_SHOW=1` in
/// the environment every case's error line is printed (`cargo test -- --nocapture`).
fn run_matrix(kind: &str, cases: &[Case], out_dir: &Path) {
    let show = std::env::var_os("VOXQ_MATRIX_SHOW").is_some();
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let (mut slowest, mut slowest_label) = (0.0f64, String::new());
    let mut max_rss = 0u64;
    for c in cases {
        let r = run_limited(&c.args);
        if show {
            eprintln!("{} [{:.2} s]: {}", c.label, r.secs, short(&r.stderr));
        }
        if let Err(why) = verdict(c, &r, out_dir) {
            failures.push(format!("{}: {why}", c.label));
            // Leave the output folder empty for the next case.
            for e in std::fs::read_dir(out_dir).unwrap() {
                let p = e.unwrap().path();
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
        if r.secs > slowest {
            slowest = r.secs;
            slowest_label = c.label.clone();
        }
        max_rss = max_rss.max(r.max_rss);
    }
    eprintln!(
        "{kind}: {} bad cases in {:.1} s, {} failed; slowest {:.2} s ({slowest_label}); peak RSS {} MiB",
        cases.len(),
        t0.elapsed().as_secs_f64(),
        failures.len(),
        slowest,
        max_rss >> 20
    );
    assert!(
        failures.is_empty(),
        "{kind}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Runs good input under the same limits; it must succeed.
fn must_succeed(args: &[OsString]) {
    let r = run_limited(args);
    assert!(
        r.code == Some(0) && !r.timed_out,
        "good run {:?} failed under the limits (status {:?}, signal {:?}): {}",
        args,
        r.code,
        r.signal,
        short(&r.stderr)
    );
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Files

/// A scratch folder with an `out/` folder that failing runs must leave empty.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn out(&self) -> PathBuf {
        self.path("out")
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// `head`, then zeros up to [`HUGE`] bytes without writing them (a sparse file).
    fn sparse(&self, name: &str, head: &[u8], len: u64) -> PathBuf {
        let p = self.write(name, head);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len)
            .unwrap();
        p
    }

    fn folder(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

/// Deterministic noise bytes.
fn garbage(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

/// The first bytes of a real PNG (signature, IHDR) and some noise.
fn png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x02\xd0\0\0\x02\xd0\x08\x02\0\0\0".to_vec();
    v.extend(garbage(2000, 7));
    v
}

/// JSON nested `depth` arrays deep.
fn deep_json(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

fn half(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len() / 2]
}

/// Malformed / truncated / empty / oversized / wrong-type files of one kind, named `stem.ext`
/// variants in `env`: (case name, path). `good` is a valid file of the kind, `malformed` an
/// invalid one that is not truncated.
fn generic_cases(
    env: &Env,
    ext: &str,
    good: &[u8],
    malformed: &[u8],
) -> Vec<(&'static str, PathBuf)> {
    vec![
        (
            "malformed",
            env.write(&format!("malformed.{ext}"), malformed),
        ),
        (
            "truncated",
            env.write(&format!("truncated.{ext}"), half(good)),
        ),
        ("empty", env.write(&format!("empty.{ext}"), b"")),
        (
            "oversized",
            env.sparse(
                &format!("oversized.{ext}"),
                &good[..good.len().min(65536)],
                HUGE,
            ),
        ),
        ("wrong-type-png", env.write(&format!("png.{ext}"), png())),
        ("wrong-type-folder", env.folder(&format!("folder.{ext}"))),
    ]
}

// ---------------------------------------------------------------------------------------------
// ONNX models

fn campplus_proto() -> ModelProto {
    ModelProto::parse_from_bytes(&std::fs::read(campplus_onnx()).unwrap()).unwrap()
}

fn to_bytes(m: &ModelProto) -> Vec<u8> {
    m.write_to_bytes().unwrap()
}

/// Index of the first Conv node whose first input is produced by another node.
fn inner_conv(m: &ModelProto) -> usize {
    let g = &m.graph;
    g.node
        .iter()
        .enumerate()
        .position(|(i, n)| {
            n.op_type == "Conv"
                && g.node[..i]
                    .iter()
                    .any(|p| p.output.iter().any(|o| *o == n.input[0]))
        })
        .expect("an inner Conv")
}

/// CAM++ with a 2-node cycle: a Conv now reads the output of its own consumer.
fn onnx_cycle() -> Vec<u8> {
    let mut m = campplus_proto();
    let k = inner_conv(&m);
    let out = m.graph.node[k].output[0].clone();
    let c = m
        .graph
        .node
        .iter()
        .position(|n| n.input.contains(&out))
        .unwrap();
    let back = m.graph.node[c].output[0].clone();
    m.graph.as_mut().unwrap().node[k].input[0] = back;
    to_bytes(&m)
}

/// CAM++ with a Conv reading a tensor nothing produces.
fn onnx_missing_input() -> Vec<u8> {
    let mut m = campplus_proto();
    let k = inner_conv(&m);
    m.graph.as_mut().unwrap().node[k].input[0] = "no_such_tensor".into();
    to_bytes(&m)
}

/// CAM++ with a second node producing an existing tensor.
fn onnx_duplicate_output() -> Vec<u8> {
    let mut m = campplus_proto();
    let k = inner_conv(&m);
    let out = m.graph.node[k].output[0].clone();
    let g = m.graph.as_mut().unwrap();
    g.node.push(NodeProto {
        name: "dup".into(),
        op_type: "Identity".into(),
        input: vec![g.node[k].input[0].clone()],
        output: vec![out],
        ..Default::default()
    });
    to_bytes(&m)
}

/// CAM++ whose first Conv weight claims 10^10 × the rest of its shape elements (40+ GB of
/// float32) and holds no data.
fn onnx_tensor_claims_10gb() -> Vec<u8> {
    let mut m = campplus_proto();
    let k = inner_conv(&m);
    let w = m.graph.node[k].input[1].clone();
    let g = m.graph.as_mut().unwrap();
    let t = g.initializer.iter_mut().find(|t| t.name == w).unwrap();
    t.dims[0] = 10_000_000_000;
    t.raw_data.clear();
    t.float_data.clear();
    to_bytes(&m)
}

/// CAM++ whose first Conv weight lives in an external file with the given entries.
fn onnx_external(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut m = campplus_proto();
    let k = inner_conv(&m);
    let w = m.graph.node[k].input[1].clone();
    let g = m.graph.as_mut().unwrap();
    let t = g.initializer.iter_mut().find(|t| t.name == w).unwrap();
    t.raw_data.clear();
    t.float_data.clear();
    t.data_location = onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into();
    t.external_data = entries
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: k.to_string(),
            value: v.to_string(),
            ..Default::default()
        })
        .collect();
    to_bytes(&m)
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A length-delimited protobuf field.
fn pb_bytes(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(buf, field << 3 | 2);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn pb_varint(buf: &mut Vec<u8>, field: u64, v: u64) {
    varint(buf, field << 3);
    varint(buf, v);
}

/// A ModelProto (IR 8, opset 17) around serialised graph bytes.
fn pb_model(graph: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    pb_varint(&mut m, 1, 8);
    let mut opset = Vec::new();
    pb_varint(&mut opset, 2, 17);
    pb_bytes(&mut m, 8, &opset);
    pb_bytes(&mut m, 7, graph);
    m
}

/// Hand-written protobuf: every enclosing length is right, but the initializer's raw_data
/// length prefix claims 10 GB and 16 bytes follow.
fn onnx_raw_data_claims_10gb() -> Vec<u8> {
    let mut tensor = Vec::new();
    pb_varint(&mut tensor, 1, 2_500_000_000); // dims
    pb_varint(&mut tensor, 2, 1); // float
    pb_bytes(&mut tensor, 8, b"w");
    varint(&mut tensor, 9 << 3 | 2); // raw_data
    varint(&mut tensor, 10_000_000_000);
    tensor.extend_from_slice(&[0u8; 16]);
    let mut vi = Vec::new();
    pb_bytes(&mut vi, 1, b"w");
    let mut graph = Vec::new();
    pb_bytes(&mut graph, 2, b"g");
    pb_bytes(&mut graph, 12, &vi); // output
    pb_bytes(&mut graph, 5, &tensor); // initializer
    pb_model(&graph)
}

/// A graph whose `If` node's then-branch holds an `If` node … `depth` levels deep.
fn onnx_nested(depth: usize) -> Vec<u8> {
    let mut vi = Vec::new();
    pb_bytes(&mut vi, 1, b"y");
    let mut graph = Vec::new();
    pb_bytes(&mut graph, 2, b"g");
    pb_bytes(&mut graph, 12, &vi);
    for _ in 0..depth {
        let mut attr = Vec::new();
        pb_bytes(&mut attr, 1, b"then_branch");
        pb_bytes(&mut attr, 6, &graph);
        pb_varint(&mut attr, 20, 5);
        let mut node = Vec::new();
        pb_bytes(&mut node, 1, b"c");
        pb_bytes(&mut node, 2, b"y");
        pb_bytes(&mut node, 4, b"If");
        pb_bytes(&mut node, 5, &attr);
        let mut g = Vec::new();
        pb_bytes(&mut g, 1, &node);
        pb_bytes(&mut g, 2, b"g");
        pb_bytes(&mut g, 12, &vi);
        graph = g;
    }
    pb_model(&graph)
}

/// The speaker model of the audio, trial-list, store and calibration-list matrices: the small
/// distilled ECAPA loads in a fifth of CAM++'s time and reads its inputs through the same code.
fn speaker() -> PathBuf {
    root().join("fixtures/models/ecapa_distil.json")
}

/// The CAM++ config pointing at `onnx` (a file name beside it).
fn speaker_config(onnx: &str) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(campplus()).unwrap()).unwrap();
    v["onnx"] = onnx.into();
    v
}

/// An audio root with two short real utterances, `a.wav` and `b.wav`.
fn audio_root(env: &Env) -> PathBuf {
    let r = env.folder("audio");
    two_utterances(&r);
    r
}

#[test]
fn onnx_models() {
    let env = Env::new();
    let out = env.out();
    let good = std::fs::read(campplus_onnx()).unwrap();
    let audio = audio_root(&env);
    let calib = env.write("calib.txt", "a.wav\n");
    let table = env.write("table.json", unit_range_table(&campplus_onnx()));
    let wav = audio.join("a.wav");

    let mut files = generic_cases(&env, "onnx", &good, &garbage(4096, 1));
    files.push((
        "wrong-type-text",
        env.write("text.onnx", "this is a text file\n"),
    ));
    files.push((
        "wrong-type-wav",
        env.write("wav.onnx", std::fs::read(&wav).unwrap()),
    ));
    files.push(("adversarial-cycle", env.write("cycle.onnx", onnx_cycle())));
    files.push((
        "adversarial-missing-input",
        env.write("missing.onnx", onnx_missing_input()),
    ));
    files.push((
        "adversarial-duplicate-output",
        env.write("dup.onnx", onnx_duplicate_output()),
    ));
    files.push((
        "adversarial-tensor-claims-10gb",
        env.write("claims10g.onnx", onnx_tensor_claims_10gb()),
    ));
    files.push((
        "adversarial-raw-data-prefix-10gb",
        env.write("rawprefix.onnx", onnx_raw_data_claims_10gb()),
    ));
    files.push((
        "adversarial-nested-2000-deep",
        env.write("nested.onnx", onnx_nested(2000)),
    ));
    files.push((
        "adversarial-external-escapes",
        env.write(
            "escape.onnx",
            onnx_external(&[("location", "../../../../../../../../etc/passwd")]),
        ),
    ));
    env.write("w.bin", [0u8; 64]);
    files.push((
        "adversarial-external-claims-10gb",
        env.write(
            "ext10g.onnx",
            onnx_external(&[("location", "w.bin"), ("length", "10000000000")]),
        ),
    ));
    // embed and calibrate take the ONNX file with `<stem>.json` beside it.
    for (_, p) in &files {
        let name = p.file_name().unwrap().to_str().unwrap();
        let cfg = speaker_config(name);
        std::fs::write(p.with_extension("json"), cfg.to_string()).unwrap();
    }

    let mut cases = Vec::new();
    for (case, p) in &files {
        let f = s(p);
        let cmds: Vec<(&str, Vec<OsString>)> = vec![
            ("embed", os(&[&"embed", &"--model", &f, &wav])),
            ("inspect", os(&[&"inspect", &f])),
            (
                "calibrate",
                os(&[
                    &"calibrate",
                    &"--model",
                    &f,
                    &"--calib",
                    &calib,
                    &"--audio-root",
                    &audio,
                    &"--out",
                    &out.join("t.json"),
                    &"--quiet",
                ]),
            ),
            (
                "quantize",
                os(&[
                    &"quantize",
                    &f,
                    &"--table",
                    &table,
                    &"--out",
                    &out.join("q.onnx"),
                ]),
            ),
            (
                "build",
                os(&[
                    &"build",
                    &f,
                    &"--target",
                    &"cpu",
                    &"--out",
                    &out.join("engine"),
                ]),
            ),
        ];
        for (cmd, args) in cmds {
            cases.push(Case {
                label: format!("{cmd}/onnx/{case}"),
                args,
                needles: vec![f.to_string()],
            });
        }
    }
    // Good input under the same limits.
    must_succeed(&os(&[&"inspect", &campplus_onnx()]));
    must_succeed(&os(&[
        &"quantize",
        &campplus_onnx(),
        &"--table",
        &table,
        &"--out",
        &env.path("q.onnx"),
    ]));
    run_matrix("onnx", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// WAV audio

/// A WAV file with every header field given: format tag (1 PCM, 3 float), channels, rate,
/// bits, the data size the header claims, and the data bytes that follow.
fn wav_bytes(tag: u16, channels: u16, rate: u32, bits: u16, claim: u32, data: &[u8]) -> Vec<u8> {
    let align = channels.wrapping_mul(bits.div_ceil(8));
    let mut v = b"RIFF".to_vec();
    v.extend(
        (36u64 + u64::from(claim))
            .min(u64::from(u32::MAX))
            .to_le_bytes()[..4]
            .iter(),
    );
    v.extend(b"WAVEfmt ");
    v.extend(16u32.to_le_bytes());
    v.extend(tag.to_le_bytes());
    v.extend(channels.to_le_bytes());
    v.extend(rate.to_le_bytes());
    v.extend(rate.wrapping_mul(u32::from(align)).to_le_bytes());
    v.extend(align.to_le_bytes());
    v.extend(bits.to_le_bytes());
    v.extend(b"data");
    v.extend(claim.to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn pcm16(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    wav_bytes(1, 1, rate, 16, data.len() as u32, &data)
}

fn float32(rate: u32, samples: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    wav_bytes(3, 1, rate, 32, data.len() as u32, &data)
}

/// 0.5 s of real speech as float samples.
fn speech_f32() -> Vec<f32> {
    hound::WavReader::open(root().join("fixtures/audio/speech_16k.wav"))
        .unwrap()
        .samples::<i16>()
        .take(8000)
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect()
}

#[test]
fn wav_audio() {
    let env = Env::new();
    let out = env.out();
    let audio = audio_root(&env);
    let good = std::fs::read(audio.join("a.wav")).unwrap();
    let speech = speech_f32();
    let speech16: Vec<i16> = speech.iter().map(|x| (x * 32767.0) as i16).collect();
    let w = |name: &str, bytes: Vec<u8>| {
        let p = audio.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut riff_junk = b"RIFF\x00\x10\x00\x00WAVE".to_vec();
    riff_junk.extend(garbage(4096, 3));

    // (case, path, on every command or only on embed and transcribe)
    let mut files: Vec<(&str, PathBuf, bool)> = vec![
        ("malformed", w("garbage.wav", garbage(4096, 2)), true),
        ("malformed-riff", w("riffjunk.wav", riff_junk), false),
        ("truncated", w("truncated.wav", half(&good).to_vec()), true),
        (
            "truncated-header",
            w("cuthead.wav", good[..30].to_vec()),
            false,
        ),
        ("empty", w("empty.wav", Vec::new()), true),
        ("empty-audio", w("nosamples.wav", pcm16(16000, &[])), false),
        ("wrong-type-png", w("png.wav", png()), true),
        (
            "wrong-type-text",
            w("text.wav", b"RIFF? no: text\n".to_vec()),
            false,
        ),
        (
            "wrong-type-flac",
            w(
                "flac.wav",
                std::fs::read(root().join("fixtures/audio/speech_16k.flac")).unwrap(),
            ),
            false,
        ),
        (
            "adversarial-claims-2^31-samples",
            w(
                "claims2g.wav",
                wav_bytes(1, 1, 16000, 8, 1 << 31, &garbage(1000, 4)),
            ),
            false,
        ),
        (
            "adversarial-rate-0",
            w("rate0.wav", pcm16(0, &speech16)),
            false,
        ),
        (
            "adversarial-rate-1hz",
            w("rate1.wav", pcm16(1, &speech16)),
            false,
        ),
        (
            "adversarial-rate-4ghz",
            w("rate4g.wav", pcm16(u32::MAX, &speech16)),
            false,
        ),
        (
            "adversarial-nan",
            w("nan.wav", {
                let mut v = speech.clone();
                v[4000] = f32::NAN;
                float32(16000, &v)
            }),
            true,
        ),
        (
            "adversarial-inf",
            w("inf.wav", {
                let mut v = speech.clone();
                v[100] = f32::NEG_INFINITY;
                float32(16000, &v)
            }),
            false,
        ),
        (
            "adversarial-huge-floats",
            w(
                "huge.wav",
                float32(16000, &speech.iter().map(|x| x * 3e38).collect::<Vec<_>>()),
            ),
            false,
        ),
        (
            "adversarial-0-channels",
            w("ch0.wav", wav_bytes(1, 0, 16000, 16, 16000, &[0u8; 16000])),
            false,
        ),
        (
            "adversarial-12-bit",
            w(
                "bits12.wav",
                wav_bytes(1, 1, 16000, 12, 16000, &[0u8; 16000]),
            ),
            false,
        ),
    ];
    // One sample is too short for a speaker model's first frame; Whisper pads any audio to
    // 30 s, so for transcribe it is valid input (not a case).
    let one = w("one.wav", pcm16(16000, &[1000]));
    // Oversized: a real header claiming ~4 GiB of 16-bit samples (37 hours), all present as a
    // sparse file.
    let claim = u32::MAX - 15;
    let head = wav_bytes(1, 1, 16000, 16, claim, &[]);
    let huge = audio.join("oversized.wav");
    std::fs::write(&huge, &head).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(head.len() as u64 + u64::from(claim))
        .unwrap();
    files.push(("oversized", huge, true));
    files.push(("wrong-type-folder", env.folder("audio/folder.wav"), true));

    // A store with speaker x enrolled, for verify.
    let store = env.path("store.json");
    let model = speaker();
    must_succeed(&os(&[
        &"enroll",
        &"--model",
        &model,
        &"--store",
        &store,
        &"--speaker",
        &"x",
        &audio.join("a.wav"),
    ]));
    let good_wav = audio.join("a.wav");
    must_succeed(&os(&[&"embed", &"--model", &model, &good_wav]));
    let whisper = root().join("fixtures/whisper-tiny-test");
    must_succeed(&os(&[
        &"transcribe",
        &"--model",
        &whisper,
        &"--max-new-tokens",
        &"4",
        &good_wav,
    ]));
    let store_bytes = std::fs::read(&store).unwrap();

    let mut cases = Vec::new();
    for (i, (case, p, all)) in files.iter().enumerate() {
        let f = s(p);
        let name = p.file_name().unwrap().to_str().unwrap();
        let trials = env.write(
            &format!("trials{i}.txt"),
            format!("1 a.wav {name}\n0 b.wav {name}\n"),
        );
        let mut cmds: Vec<(&str, Vec<OsString>)> = vec![
            ("embed", os(&[&"embed", &"--model", &model, &f])),
            (
                "transcribe",
                os(&[
                    &"transcribe",
                    &"--model",
                    &whisper,
                    &"--max-new-tokens",
                    &"4",
                    &f,
                ]),
            ),
        ];
        if *all {
            cmds.push((
                "enroll",
                os(&[
                    &"enroll",
                    &"--model",
                    &model,
                    &"--store",
                    &out.join("new.json"),
                    &"--speaker",
                    &"y",
                    &good_wav,
                    &f,
                ]),
            ));
            cmds.push((
                "verify",
                os(&[
                    &"verify",
                    &"--model",
                    &model,
                    &"--store",
                    &store,
                    &"--speaker",
                    &"x",
                    &f,
                ]),
            ));
            cmds.push((
                "eval",
                os(&[
                    &"eval",
                    &"--model",
                    &model,
                    &"--trials",
                    &trials,
                    &"--audio-root",
                    &audio,
                    &"--scores",
                    &out.join("scores.txt"),
                    &"--quiet",
                ]),
            ));
        }
        for (cmd, args) in cmds {
            cases.push(Case {
                label: format!("{cmd}/wav/{case}"),
                args,
                needles: vec![f.to_string()],
            });
        }
    }
    cases.push(Case {
        label: "embed/wav/adversarial-one-sample".into(),
        args: os(&[&"embed", &"--model", &model, &one]),
        needles: vec![s(&one).to_string(), "too short".into()],
    });
    run_matrix("wav", &cases, &out);
    assert_eq!(std::fs::read(&store).unwrap(), store_bytes, "store changed");
}

// ---------------------------------------------------------------------------------------------
// Calibration tables: voxq JSON and TensorRT calibration caches (`quantize --table`)

#[test]
fn calibration_tables() {
    let env = Env::new();
    let out = env.out();
    let good = unit_range_table(&campplus_onnx());
    let entry = |amax: &str, scale: &str| {
        format!(
            r#"{{"format": "voxq-calibration/1", "method": "max", "tensors": {{"feats": {{"amax": {amax}, "scale": {scale}}}}}}}"#
        )
    };
    let mut files = generic_cases(&env, "json", good.as_bytes(), b"{ \"format\": not json");
    files.push((
        "wrong-type-onnx",
        env.write("onnx.json", std::fs::read(campplus_onnx()).unwrap()),
    ));
    let json_adv: Vec<(&str, String)> = vec![
        ("adversarial-nan-scale", entry("1.0", "\"NaN\"")),
        ("adversarial-negative-scale", entry("-1.0", "-0.007874016")),
        ("adversarial-zero-scale", entry("0.0", "0.0")),
        ("adversarial-inf-amax", entry("1e39", "1e37")),
        (
            "adversarial-overflow-exponent",
            entry("1e99999999999", "1.0"),
        ),
        ("adversarial-subnormal-scale", entry("1.0e-43", "1.0e-45")),
        ("adversarial-scale-mismatch", entry("1.0", "0.5")),
        ("adversarial-deep-nesting", deep_json(100_000)),
        (
            "adversarial-million-char-name",
            format!(
                r#"{{"format": "voxq-calibration/1", "method": "max", "tensors": {{"{}": {{"amax": 1.0, "scale": 0.007874016}}}}}}"#,
                "n".repeat(1_000_000)
            ),
        ),
        (
            "adversarial-future-format",
            r#"{"format": "voxq-calibration/999", "method": "max", "tensors": {}}"#.into(),
        ),
    ];
    for (i, (case, text)) in json_adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.json"), text)));
    }
    // TensorRT calibration caches.
    let header = "TRT-8601-EntropyCalibration2\n";
    let cache = |line: &str| format!("{header}{line}\n");
    let good_cache = format!("{header}feats: 3c010204\n");
    files.push((
        "cache-malformed",
        env.write("malformed.cache", "hello world\nx y z\n"),
    ));
    files.push((
        "cache-truncated",
        env.write("truncated.cache", &good_cache[..good_cache.len() - 6]),
    ));
    files.push(("cache-empty", env.write("empty.cache", "")));
    files.push((
        "cache-oversized",
        env.sparse("oversized.cache", good_cache.as_bytes(), HUGE),
    ));
    files.push(("cache-wrong-type-png", env.write("png.cache", png())));
    let cache_adv: Vec<(&str, String)> = vec![
        ("cache-adversarial-nan", cache("feats: 7fc00000")),
        ("cache-adversarial-inf", cache("feats: 7f800000")),
        ("cache-adversarial-negative", cache("feats: bf800000")),
        ("cache-adversarial-zero", cache("feats: 00000000")),
        ("cache-adversarial-subnormal", cache("feats: 00000001")),
        ("cache-adversarial-not-hex", cache("feats: zzzzzzzz")),
        (
            "cache-adversarial-million-char-line",
            cache(&format!("{}: 3c010204", "n".repeat(1_000_000))),
        ),
        (
            "cache-adversarial-duplicate",
            cache("feats: 3c010204\nfeats: 3c010204"),
        ),
    ];
    for (i, (case, text)) in cache_adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.cache"), text)));
    }
    let table = env.write("good.json", &good);
    must_succeed(&os(&[
        &"quantize",
        &campplus_onnx(),
        &"--table",
        &table,
        &"--out",
        &env.path("q.onnx"),
    ]));
    let cases: Vec<Case> = files
        .iter()
        .map(|(case, p)| {
            Case::naming(
                format!("quantize/table/{case}"),
                os(&[
                    &"quantize",
                    &campplus_onnx(),
                    &"--table",
                    p,
                    &"--out",
                    &out.join("q.onnx"),
                    &"--report",
                    &out.join("report.json"),
                ]),
                p,
            )
        })
        .collect();
    run_matrix("table", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// Trial lists (`eval --trials`)

#[test]
fn trial_lists() {
    let env = Env::new();
    let out = env.out();
    let audio = audio_root(&env);
    let good = "1 a.wav a.wav\n0 a.wav b.wav\n";
    let mut files = generic_cases(&env, "txt", good.as_bytes(), b"2 a.wav b.wav\n");
    files[1].1 = env.write("truncated.txt", &good[..good.len() - 8]); // "0 a.wa"
    files.push((
        "wrong-type-onnx",
        env.write("onnx.txt", std::fs::read(campplus_onnx()).unwrap()),
    ));
    let adv: Vec<(&str, String)> = vec![
        ("adversarial-two-fields", "1 a.wav\n".into()),
        (
            "adversarial-million-char-line",
            format!("1 a.wav {}\n0 a.wav b.wav\n", "x".repeat(1_000_000)),
        ),
        (
            "adversarial-million-fields",
            format!("1 a.wav b.wav{}\n", " x".repeat(500_000)),
        ),
        (
            "adversarial-nul-in-path",
            "1 a.wav a\0.wav\n0 a.wav b.wav\n".into(),
        ),
        (
            "adversarial-only-targets",
            "1 a.wav a.wav\n1 b.wav b.wav\n".into(),
        ),
        ("adversarial-only-comments", "# nothing\n\n# here\n".into()),
    ];
    for (i, (case, text)) in adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.txt"), text)));
    }
    let model = speaker();
    let eval = |t: &Path| {
        os(&[
            &"eval",
            &"--model",
            &model,
            &"--trials",
            &t,
            &"--audio-root",
            &audio,
            &"--scores",
            &out.join("scores.txt"),
            &"--json",
            &out.join("eval.json"),
            &"--quiet",
        ])
    };
    must_succeed(&eval(&env.write("good.txt", good))[..]);
    for e in std::fs::read_dir(&out).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let cases: Vec<Case> = files
        .iter()
        .map(|(case, p)| Case::naming(format!("eval/trials/{case}"), eval(p), p))
        .collect();
    run_matrix("trials", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// Layer-group specs (`--groups FILE` of quantize, inspect, sensitivity)

#[test]
fn group_specs() {
    let env = Env::new();
    let out = env.out();
    let audio = audio_root(&env);
    let calib = env.write("calib.txt", "a.wav\n");
    let table = env.write("table.json", unit_range_table(&campplus_onnx()));
    let good = r#"{"name": "two", "groups": [{"name": "head", "patterns": ["^/head"]}, {"name": "rest", "patterns": ["."]}]}"#;
    let mut files = generic_cases(
        &env,
        "json",
        good.as_bytes(),
        b"{\"groups\": [{\"name\": 3}",
    );
    let spec = |patterns: &str| {
        format!(r#"{{"name": "x", "groups": [{{"name": "g", "patterns": [{patterns}]}}]}}"#)
    };
    let adv: Vec<(&str, String)> =
        vec![
        ("adversarial-bad-regex", spec(r#""(""#)),
        ("adversarial-huge-regex", spec(r#""(?:a{1000}){1000}""#)),
        ("adversarial-no-groups", r#"{"name": "x", "groups": []}"#.into()),
        (
            "adversarial-duplicate-group",
            r#"{"groups": [{"name": "g", "patterns": ["a"]}, {"name": "g", "patterns": ["b"]}]}"#
                .into(),
        ),
        ("adversarial-unknown-field", r#"{"groups": [], "evil": 1}"#.into()),
        ("adversarial-deep-nesting", deep_json(100_000)),
    ];
    for (i, (case, text)) in adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.json"), text)));
    }
    let good_spec = env.write("good.json", good);
    must_succeed(&os(&[
        &"inspect",
        &campplus_onnx(),
        &"--groups",
        &good_spec,
    ]));
    let mut cases = Vec::new();
    for (case, p) in &files {
        let cmds: Vec<(&str, Vec<OsString>)> = vec![
            (
                "inspect",
                os(&[&"inspect", &campplus_onnx(), &"--groups", p]),
            ),
            (
                "quantize",
                os(&[
                    &"quantize",
                    &campplus_onnx(),
                    &"--table",
                    &table,
                    &"--groups",
                    p,
                    &"--out",
                    &out.join("q.onnx"),
                ]),
            ),
            (
                "sensitivity",
                os(&[
                    &"sensitivity",
                    &campplus(),
                    &"--calib",
                    &calib,
                    &"--audio-root",
                    &audio,
                    &"--groups",
                    p,
                    &"--out",
                    &out.join("sens"),
                    &"--no-cache",
                    &"--quiet",
                ]),
            ),
        ];
        for (cmd, args) in cmds {
            cases.push(Case {
                label: format!("{cmd}/groups/{case}"),
                args,
                needles: vec![s(p).to_string()],
            });
        }
    }
    run_matrix("groups", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// Engine folders with a corrupt manifest (`embed --model DIR`)

#[test]
fn engine_manifests() {
    let env = Env::new();
    let out = env.out();
    let engine = env.path("engine");
    must_succeed(&os(&[
        &"build",
        &campplus_onnx(),
        &"--target",
        &"cpu",
        &"--out",
        &engine,
    ]));
    let wav = root().join("fixtures/audio/speech_16k.wav");
    must_succeed(&os(&[&"embed", &"--model", &engine, &wav]));
    let manifest = std::fs::read_to_string(engine.join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let with = |key: &str, val: serde_json::Value| {
        let mut m = v.clone();
        m[key] = val;
        m.to_string()
    };
    let mut builder = v.clone();
    builder["builder"]["version"] = "0.0.1-another".into();

    /// A copy of the engine folder (model hard-linked) whose manifest is `f(dir)`.
    fn copy_engine(env: &Env, engine: &Path, name: &str) -> PathBuf {
        let d = env.folder(name);
        for e in std::fs::read_dir(engine).unwrap() {
            let e = e.unwrap();
            if e.file_name() == "manifest.json" {
                continue;
            }
            std::fs::hard_link(e.path(), d.join(e.file_name())).unwrap();
        }
        d
    }
    let text_cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{\"format\": 1, \"target\": ".to_vec()),
        ("truncated", half(manifest.as_bytes()).to_vec()),
        ("empty", Vec::new()),
        ("wrong-type-png", png()),
        (
            "adversarial-future-format",
            with("format", 999.into()).into_bytes(),
        ),
        (
            "adversarial-unknown-target",
            with("target", "quantum".into()).into_bytes(),
        ),
        (
            "adversarial-engine-file-escapes",
            with("engine_file", "../../../../../../etc/passwd".into()).into_bytes(),
        ),
        (
            "adversarial-config-file-escapes",
            with("config_file", "/etc/passwd".into()).into_bytes(),
        ),
        (
            "adversarial-config-file-missing",
            with("config_file", "nope.json".into()).into_bytes(),
        ),
        (
            "adversarial-other-builder",
            builder.to_string().into_bytes(),
        ),
        ("adversarial-deep-nesting", deep_json(100_000).into_bytes()),
    ];
    let mut dirs = Vec::new();
    for (i, (case, bytes)) in text_cases.into_iter().enumerate() {
        let d = copy_engine(&env, &engine, &format!("e{i}"));
        std::fs::write(d.join("manifest.json"), bytes).unwrap();
        dirs.push((case, d));
    }
    let d = copy_engine(&env, &engine, "eoversized");
    let f = std::fs::File::create(d.join("manifest.json")).unwrap();
    f.set_len(HUGE).unwrap();
    dirs.push(("oversized", d));
    let d = copy_engine(&env, &engine, "efolder");
    std::fs::create_dir(d.join("manifest.json")).unwrap();
    dirs.push(("wrong-type-folder", d));
    dirs.push((
        "wrong-type-no-manifest",
        copy_engine(&env, &engine, "enone"),
    ));
    let cases: Vec<Case> = dirs
        .iter()
        .map(|(case, d)| {
            Case::naming(
                format!("embed/manifest/{case}"),
                os(&[&"embed", &"--model", d, &wav]),
                d,
            )
        })
        .collect();
    run_matrix("manifest", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// Model configs: speaker model JSON (embed, calibrate) and whisper.json (transcribe)

#[test]
fn model_configs() {
    let env = Env::new();
    let out = env.out();
    let audio = audio_root(&env);
    let calib = env.write("calib.txt", "a.wav\n");
    let wav = audio.join("a.wav");
    std::fs::hard_link(campplus_onnx(), env.path("campplus.onnx")).unwrap();
    let good = speaker_config("campplus.onnx");
    let good_text = serde_json::to_string_pretty(&good).unwrap();
    let with = |path: &[&str], val: serde_json::Value| {
        let mut v = good.clone();
        let mut at = &mut v;
        for k in path {
            at = &mut at[*k];
        }
        *at = val;
        v.to_string()
    };
    let mut files = generic_cases(&env, "json", good_text.as_bytes(), b"{\"name\": 3, ");
    let adv: Vec<(&str, String)> = vec![
        (
            "adversarial-mel-bins-1e9",
            with(&["fbank", "num_mel_bins"], 1_000_000_000.into()),
        ),
        (
            "adversarial-mel-bins-0",
            with(&["fbank", "num_mel_bins"], 0.into()),
        ),
        (
            "adversarial-frame-1e9-ms",
            with(&["fbank", "frame_length_ms"], 1e9.into()),
        ),
        (
            "adversarial-shift-0",
            with(&["fbank", "frame_shift_ms"], 0.0.into()),
        ),
        (
            "adversarial-rate-0",
            with(&["fbank", "sample_rate"], 0.into()),
        ),
        (
            "adversarial-rate-4ghz",
            with(&["fbank", "sample_rate"], u32::MAX.into()),
        ),
        (
            "adversarial-dim-1e12",
            with(&["embedding_dim"], 1_000_000_000_000u64.into()),
        ),
        (
            "adversarial-wrong-input",
            with(&["input"], "no_such_input".into()),
        ),
        (
            "adversarial-onnx-missing",
            with(&["onnx"], "missing.onnx".into()),
        ),
        (
            "adversarial-onnx-is-text",
            with(&["onnx"], "calib.txt".into()),
        ),
        ("adversarial-task", with(&["task"], "asr".into())),
        ("adversarial-deep-nesting", deep_json(100_000)),
    ];
    for (i, (case, text)) in adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.json"), text)));
    }
    let good_cfg = env.write("good.json", &good_text);
    must_succeed(&os(&[&"embed", &"--model", &good_cfg, &wav]));
    let mut cases = Vec::new();
    let text_model = env.path("calib.txt");
    for (case, p) in &files {
        // A config pointing at a text file as its model: the error names that file.
        let f = s(p);
        let bad = if *case == "adversarial-onnx-is-text" {
            s(&text_model)
        } else {
            f
        };
        cases.push(Case {
            label: format!("embed/config/{case}"),
            args: os(&[&"embed", &"--model", &f, &wav]),
            needles: vec![bad.to_string()],
        });
        cases.push(Case {
            label: format!("calibrate/config/{case}"),
            args: os(&[
                &"calibrate",
                &"--model",
                &f,
                &"--calib",
                &calib,
                &"--audio-root",
                &audio,
                &"--out",
                &out.join("t.json"),
                &"--quiet",
            ]),
            needles: vec![bad.to_string()],
        });
    }
    // whisper.json of a Whisper model folder (model files hard-linked).
    let whisper = root().join("fixtures/whisper-tiny-test");
    let wtext = std::fs::read_to_string(whisper.join("whisper.json")).unwrap();
    let wv: serde_json::Value = serde_json::from_str(&wtext).unwrap();
    let wwith = |key: &str, val: serde_json::Value| {
        let mut v = wv.clone();
        v[key] = val;
        v.to_string().into_bytes()
    };
    let wcases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{\"model\": ".to_vec()),
        ("truncated", half(wtext.as_bytes()).to_vec()),
        ("empty", Vec::new()),
        ("wrong-type-png", png()),
        ("adversarial-hop-0", wwith("hop_length", 0.into())),
        ("adversarial-n-fft-0", wwith("n_fft", 0.into())),
        (
            "adversarial-n-mels-1e9",
            wwith("n_mels", 1_000_000_000.into()),
        ),
        ("adversarial-n-mels-0", wwith("n_mels", 0.into())),
        ("adversarial-rate-0", wwith("sample_rate", 0.into())),
        ("adversarial-chunk-0", wwith("chunk_length_s", 0.into())),
        (
            "adversarial-n-samples-1e12",
            wwith("n_samples", 1_000_000_000_000u64.into()),
        ),
        ("adversarial-text-ctx-0", wwith("n_text_ctx", 0.into())),
        ("adversarial-heads-overflow", {
            let mut v = wv.clone();
            v["n_heads"] = (1u64 << 32).into();
            v["head_dim"] = (1u64 << 32).into();
            v["d_model"] = 0.into();
            v.to_string().into_bytes()
        }),
        (
            "adversarial-encoder-escapes",
            wwith("encoder_file", "../../../../etc/passwd".into()),
        ),
        ("adversarial-deep-nesting", deep_json(100_000).into_bytes()),
    ];
    let link_whisper = |name: &str| {
        let d = env.folder(name);
        for f in ["encoder.onnx", "decoder.onnx", "tokenizer.json"] {
            std::fs::hard_link(whisper.join(f), d.join(f)).unwrap();
        }
        d
    };
    let mut wdirs = Vec::new();
    for (i, (case, bytes)) in wcases.into_iter().enumerate() {
        let d = link_whisper(&format!("w{i}"));
        std::fs::write(d.join("whisper.json"), bytes).unwrap();
        wdirs.push((case, d));
    }
    let d = link_whisper("woversized");
    std::fs::File::create(d.join("whisper.json"))
        .unwrap()
        .set_len(HUGE)
        .unwrap();
    wdirs.push(("oversized", d));
    let d = link_whisper("wfolder");
    std::fs::create_dir(d.join("whisper.json")).unwrap();
    wdirs.push(("wrong-type-folder", d));
    for (case, d) in &wdirs {
        cases.push(Case::naming(
            format!("transcribe/whisper-config/{case}"),
            os(&[
                &"transcribe",
                &"--model",
                d,
                &"--max-new-tokens",
                &"4",
                &wav,
            ]),
            d,
        ));
    }
    run_matrix("config", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// Calibration lists (`calibrate --calib`, `sensitivity --calib`)

#[test]
fn calibration_lists() {
    let env = Env::new();
    let out = env.out();
    let audio = audio_root(&env);
    let good = "a.wav\nb.wav\n";
    let mut files = generic_cases(&env, "txt", good.as_bytes(), &garbage(4096, 5));
    std::fs::write(audio.join("nan.wav"), float32(16000, &[f32::NAN; 16000])).unwrap();
    let adv: Vec<(&str, String)> = vec![
        ("adversarial-only-comments", "# a.wav\n\n   \n".into()),
        (
            "adversarial-million-char-line",
            format!("{}\n", "x".repeat(1_000_000)),
        ),
        ("adversarial-nul-in-path", "a\0.wav\n".into()),
    ];
    for (i, (case, text)) in adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.txt"), text)));
    }
    // Half of a list is a shorter valid list; "truncated" is cut inside a path instead (below,
    // where the error names the entry).
    files.retain(|(c, _)| *c != "truncated");
    let table = env.path("good.json");
    must_succeed(&os(&[
        &"calibrate",
        &"--model",
        &speaker(),
        &"--calib",
        &env.write("good.txt", "a.wav\n"),
        &"--audio-root",
        &audio,
        &"--out",
        &table,
        &"--method",
        &"max",
        &"--single-pass",
        &"--quiet",
    ]));
    let mut cases = Vec::new();
    let calibrate = |list: &Path| {
        os(&[
            &"calibrate",
            &"--model",
            &speaker(),
            &"--calib",
            &list,
            &"--audio-root",
            &audio,
            &"--out",
            &out.join("t.json"),
            &"--trt-cache",
            &out.join("t.cache"),
            &"--quiet",
        ])
    };
    for (case, p) in &files {
        cases.push(Case::naming(
            format!("calibrate/calib-list/{case}"),
            calibrate(p),
            p,
        ));
        cases.push(Case::naming(
            format!("sensitivity/calib-list/{case}"),
            os(&[
                &"sensitivity",
                &speaker(),
                &"--calib",
                p,
                &"--audio-root",
                &audio,
                &"--metric",
                &"sqnr",
                &"--out",
                &out.join("sens"),
                &"--no-cache",
                &"--quiet",
            ]),
            p,
        ));
    }
    // Lists whose entries are bad: the error names the entry.
    for (case, line, bad) in [
        ("truncated", "b.w", audio.join("b.w")),
        ("adversarial-entry-is-folder", ".", audio.join(".")),
        (
            "adversarial-entry-nan-audio",
            "nan.wav",
            audio.join("nan.wav"),
        ),
    ] {
        let p = env.write(&format!("{case}.txt"), format!("a.wav\n{line}\n"));
        cases.push(Case::naming(
            format!("calibrate/calib-list/{case}"),
            calibrate(&p),
            &bad,
        ));
    }
    run_matrix("calib-list", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// Enrollment stores (`--store X.db` / `X.json` of enroll, verify, identify; `store-check`)

#[test]
fn enrollment_stores() {
    let env = Env::new();
    let out = env.out();
    let wav = root().join("fixtures/audio/speech_16k.wav");
    let model = speaker();
    let db = env.path("good.db");
    must_succeed(&os(&[
        &"enroll",
        &"--model",
        &model,
        &"--store",
        &db,
        &"--speaker",
        &"x",
        &wav,
    ]));
    must_succeed(&os(&[
        &"verify",
        &"--model",
        &model,
        &"--store",
        &db,
        &"--speaker",
        &"x",
        &wav,
    ]));
    must_succeed(&os(&[&"store-check", &db]));
    let good = std::fs::read(&db).unwrap();
    assert!(good.len() >= 8192, "a SQLite file of at least two pages");
    let mut files = generic_cases(&env, "db", &good, &garbage(8192, 6));
    // Oversized: 2 GiB of zeros. (A real database followed by 2 GiB of zeros is a valid
    // store: SQLite reads only the pages its header counts, so that is no error case.)
    files[3].1 = env.sparse("zeros.db", b"", HUGE);
    files.push((
        "wrong-type-text",
        env.write("text.db", "speaker x: 0.1 0.2\n"),
    ));
    let mut sqlite_junk = b"SQLite format 3\0".to_vec();
    sqlite_junk.extend(garbage(8192, 8));
    files.push((
        "adversarial-sqlite-header-junk",
        env.write("junk.db", sqlite_junk),
    ));
    let mut bad_page = good.clone();
    bad_page[16] = 0x03; // page size 0x0300: not a power of two
    bad_page[17] = 0x00;
    files.push((
        "adversarial-bad-page-size",
        env.write("pagesize.db", bad_page),
    ));
    let mut cases = Vec::new();
    for (case, p) in &files {
        let f = s(p);
        let cmds: Vec<(&str, Vec<OsString>)> = vec![
            (
                "verify",
                os(&[
                    &"verify",
                    &"--model",
                    &model,
                    &"--store",
                    &f,
                    &"--speaker",
                    &"x",
                    &wav,
                ]),
            ),
            (
                "identify",
                os(&[&"identify", &"--model", &model, &"--store", &f, &wav]),
            ),
            ("store-check", os(&[&"store-check", &f])),
        ];
        for (cmd, args) in cmds {
            cases.push(Case {
                label: format!("{cmd}/store-db/{case}"),
                args,
                needles: vec![f.to_string()],
            });
        }
    }
    // enroll writes to the store: each case gets its own copy. An empty file is SQLite's
    // empty database, which enroll initialises (valid input, not a case).
    for (case, p) in files.iter().filter(|(c, _)| *c != "empty") {
        let copy = env.path(&format!(
            "enroll-{}",
            p.file_name().unwrap().to_str().unwrap()
        ));
        if p.is_dir() {
            std::fs::create_dir(&copy).unwrap();
        } else if *case == "oversized" {
            env.sparse(copy.file_name().unwrap().to_str().unwrap(), b"", HUGE);
        } else {
            std::fs::copy(p, &copy).unwrap();
        }
        cases.push(Case::naming(
            format!("enroll/store-db/{case}"),
            os(&[
                &"enroll",
                &"--model",
                &model,
                &"--store",
                &copy,
                &"--speaker",
                &"y",
                &wav,
            ]),
            &copy,
        ));
    }
    // JSON stores.
    let js = env.path("good.json");
    must_succeed(&os(&[
        &"enroll",
        &"--model",
        &model,
        &"--store",
        &js,
        &"--speaker",
        &"x",
        &wav,
    ]));
    let good_json = std::fs::read_to_string(&js).unwrap();
    let jv: serde_json::Value = serde_json::from_str(&good_json).unwrap();
    let mut jfiles = generic_cases(&env, "json", good_json.as_bytes(), b"{\"format\": ");
    let mut short_mean = jv.clone();
    short_mean["speakers"]["x"]["mean"] = serde_json::json!([0.5, 0.5]);
    let mut big_dim = jv.clone();
    big_dim["embedding_dim"] = 1_000_000_000_000u64.into();
    for (case, text) in [
        ("adversarial-short-embedding", short_mean.to_string()),
        ("adversarial-dim-1e12", big_dim.to_string()),
        ("adversarial-deep-nesting", deep_json(100_000)),
    ] {
        jfiles.push((case, env.write(&format!("{case}.json"), text)));
    }
    for (case, p) in &jfiles {
        let f = s(p);
        cases.push(Case {
            label: format!("verify/store-json/{case}"),
            args: os(&[
                &"verify",
                &"--model",
                &model,
                &"--store",
                &f,
                &"--speaker",
                &"x",
                &wav,
            ]),
            needles: vec![f.to_string()],
        });
    }
    run_matrix("store", &cases, &out);
    // No bad case changed the good stores.
    assert_eq!(std::fs::read(&db).unwrap(), good);
}
