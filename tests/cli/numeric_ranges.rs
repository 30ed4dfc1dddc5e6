//! The numbers a user types, the errors and the help: every numeric option of every command has
//! a documented range that the argument parser enforces (a bad value gets one `voxq: error:`
//! line naming the option and its range, exit status 1, before any file is read or model
//! loaded); the range's boundaries are accepted; errors carry their whole cause chain and no
//! Rust debug dump; every option and argument has help text and every command shows examples.

use crate::common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A run that is killed after `limit`: (exit status, stdout, stderr, wall time). `None` as the
/// status when it had to be killed.
fn run_bounded(args: &[String], limit: Duration) -> (Option<i32>, String, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxq"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("voxq runs");
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    (code, read(&out), read(&err), t0.elapsed())
}

/// The range check happens while parsing: well under this, no model is opened.
const PARSE_LIMIT: Duration = Duration::from_secs(5);

/// Most ONNX Runtime threads the binary accepts on this machine (4 per CPU core).
fn max_threads() -> usize {
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One numeric option of one command.
struct Case {
    /// The command line without the option: the command and its required arguments.
    base: Vec<String>,
    option: &'static str,
    /// Integer (else a real number).
    int: bool,
    /// The documented range in interval notation, e.g. `[1, 16]`, `(0, 1)`.
    range: String,
    /// A comma-separated list: each element is checked.
    list: bool,
}

/// The command name of a case (`bench embed`, `serve`).
fn command(base: &[String]) -> String {
    if base[0] == "bench" {
        format!("bench {}", base[1])
    } else {
        base[0].clone()
    }
}

/// Every numeric option of every command, with the required arguments pointing at committed
/// fixtures (or paths in `tmp`) so that nothing but the option's range can fail.
fn cases(tmp: &Path) -> Vec<Case> {
    let t = |name: &str| tmp.join(name).display().to_string();
    let model = "fixtures/models/campplus.json".to_string();
    let onnx = "fixtures/models/campplus.onnx".to_string();
    let wav = "fixtures/audio/speech_16k.wav".to_string();
    let trials = "fixtures/trials/trials.txt".to_string();
    let calib = "fixtures/trials/calib.txt".to_string();
    let root = "fixtures/audio".to_string();
    let whisper = "fixtures/whisper-tiny-test".to_string();
    let llm = "fixtures/audio-llm-tiny-test/audio_llm.json".to_string();
    let threads = format!("[0, {}]", max_threads());
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let store = |cmd: &str| {
        v(&[
            cmd,
            "--model",
            &model,
            "--store",
            &t("s.db"),
            "--speaker",
            "alice",
            &wav,
        ])
    };
    let sens = |cmd: &str| {
        v(&[
            cmd,
            &model,
            "--calib",
            &calib,
            "--trials",
            &trials,
            "--audio-root",
            &root,
            "--out",
            &t("report"),
        ])
    };
    let mut c = Vec::new();
    let mut add = |base: &[String], option: &'static str, int: bool, range: &str| {
        c.push(Case {
            base: base.to_vec(),
            option,
            int,
            range: range.to_string(),
            list: false,
        })
    };
    let embed = v(&["embed", "--model", &model, &wav]);
    add(&embed, "--threads", true, &threads);
    add(&store("enroll"), "--threads", true, &threads);
    add(&store("verify"), "--threads", true, &threads);
    add(&store("verify"), "--threshold", false, "[-1, 1]");
    let identify = v(&["identify", "--model", &model, "--store", &t("s.db"), &wav]);
    add(&identify, "--threads", true, &threads);
    add(&identify, "--top", true, "[1, 1000]");
    add(&store("enroll"), "--min-speech-s", false, "[0, 60]");
    add(&store("verify"), "--min-speech-s", false, "[0, 60]");
    add(&identify, "--min-speech-s", false, "[0, 60]");
    let eval = v(&[
        "eval",
        "--model",
        &model,
        "--trials",
        &trials,
        "--audio-root",
        &root,
    ]);
    add(&eval, "--threads", true, &threads);
    add(&eval, "--p-target", false, "(0, 1)");
    let calibrate = v(&[
        "calibrate",
        "--model",
        &model,
        "--calib",
        &calib,
        "--audio-root",
        &root,
        "--out",
        &t("t.json"),
    ]);
    add(&calibrate, "--threads", true, &threads);
    add(&calibrate, "--bins", true, "[128, 65536]");
    add(&calibrate, "--min-channels", true, "[0, 65536]");
    let quantize = v(&[
        "quantize",
        &onnx,
        "--table",
        &t("t.json"),
        "--out",
        &t("q.onnx"),
    ]);
    add(&quantize, "--min-channels", true, "[0, 65536]");
    let build = v(&["build", &onnx, "--out", &t("engine")]);
    add(&build, "--opt-level", true, "[0, 3]");
    add(&build, "--threads", true, &threads);
    let triton = v(&["export-triton", &t("engine"), "--repo", &t("repo")]);
    add(&triton, "--max-batch-size", true, "[0, 1024]");
    add(&triton, "--instances", true, "[1, 64]");
    add(&triton, "--max-queue-delay-us", true, "[0, 10000000]");
    for cmd in ["sensitivity", "autoquant"] {
        add(&sens(cmd), "--min-channels", true, "[0, 65536]");
        add(&sens(cmd), "--threads", true, &threads);
        add(&sens(cmd), "--max-new-tokens", true, "[1, 4096]");
    }
    add(&sens("autoquant"), "--max-increase", false, "[0, 100]");
    add(&sens("autoquant"), "--min-sqnr", false, "[0, 200]");
    add(&sens("autoquant"), "--latency-frames", true, "[1, 30000]");
    add(&sens("autoquant"), "--latency-runs", true, "[1, 1000]");
    let bench_embed = v(&["bench", "embed", "--model", &model, "--audio", &wav]);
    add(&bench_embed, "--iterations", true, "[1, 10000]");
    add(&bench_embed, "--warmup", true, "[0, 1000]");
    let bench_engines = v(&["bench", "engines", &t("engine")]);
    add(&bench_engines, "--seconds", false, "(0, 600]");
    let bench_llm = v(&["bench", "llm", "--model", &whisper, "--audio", &wav]);
    add(&bench_llm, "--max-new-tokens", true, "[1, 4096]");
    add(&bench_llm, "--runs", true, "[1, 1000]");
    add(&bench_llm, "--threads", true, &threads);
    let bench_whisper = v(&["bench", "whisper", "--model", &whisper, "--audio", &wav]);
    add(&bench_whisper, "--max-new-tokens", true, "[1, 4096]");
    add(&bench_whisper, "--runs", true, "[1, 1000]");
    add(&bench_whisper, "--threads", true, &threads);
    let bench_lm = v(&["bench", "lm", "--model", "fixtures/audio-llm-tiny-test"]);
    add(&bench_lm, "--max-new-tokens", true, "[1, 4096]");
    add(&bench_lm, "--runs", true, "[1, 1000]");
    add(&bench_lm, "--threads", true, &threads);
    let transcribe = v(&["transcribe", "--model", &whisper, &wav]);
    add(&transcribe, "--beams", true, "[1, 16]");
    add(&transcribe, "--max-new-tokens", true, "[1, 4096]");
    add(&transcribe, "--threads", true, &threads);
    let eval_asr = v(&["eval-asr", "--model", &whisper, "--list", &t("list.tsv")]);
    add(&eval_asr, "--max-new-tokens", true, "[1, 4096]");
    add(&eval_asr, "--threads", true, &threads);
    for base in [&transcribe, &eval_asr] {
        add(base, "--compression-ratio-threshold", false, "(0, 100]");
        add(base, "--logprob-threshold", false, "[-100, 0]");
        add(base, "--no-speech-threshold", false, "[0, 1]");
    }
    let generate = v(&["generate", "--model", &llm, &wav]);
    add(&generate, "--beams", true, "[1, 16]");
    add(&generate, "--temperature", false, "[0, 2]");
    add(&generate, "--top-k", true, "[0, 1000000]");
    add(&generate, "--top-p", false, "(0, 1]");
    add(&generate, "--seed", true, "[0, 18446744073709551615]");
    add(&generate, "--repetition-penalty", false, "(0, 10]");
    add(&generate, "--max-new-tokens", true, "[1, 4096]");
    add(&generate, "--threads", true, &threads);
    let qw = v(&[
        "quantize-whisper",
        "--model",
        &whisper,
        "--calib",
        "fixtures/whisper/calib.txt",
        "--audio-root",
        &root,
        "--out",
        &t("int8"),
    ]);
    add(&qw, "--bins", true, "[128, 65536]");
    add(&qw, "--threads", true, &threads);
    // no model: on a build without the range check a run would start serving (loopback, any
    // port) until it is killed
    let serve = v(&["serve", "--store", &t("s.db"), "--host", "127.0.0.1"]);
    add(&serve, "--port", true, "[0, 65535]");
    let serve = [serve, v(&["--port", "0"])].concat();
    for (o, int, r) in [
        ("--max-upload-mb", false, "(0, 1024]"),
        ("--max-audio-s", false, "(0, 600]"),
        ("--timeout-s", false, "(0, 3600]"),
        ("--max-concurrent", true, "[1, 256]"),
        ("--max-queue", true, "[0, 10000]"),
        ("--max-batch", true, "[1, 256]"),
        ("--batch-delay-ms", true, "[0, 1000]"),
        ("--batch-bucket-frames", true, "[0, 3000]"),
        ("--threshold", false, "[-1, 1]"),
        ("--top", true, "[1, 1000]"),
        ("--min-speech-s", false, "[0, 60]"),
        ("--header-timeout-s", false, "(0, 3600]"),
        ("--body-timeout-s", false, "(0, 3600]"),
    ] {
        add(&serve, o, int, r);
    }
    add(&serve, "--threads", true, &threads);
    // comma-separated lists
    for (base, option, int, range) in [
        (
            bench_embed.clone(),
            "--seconds",
            false,
            "(0, 300]".to_string(),
        ),
        (bench_embed, "--threads", true, threads.clone()),
        (
            bench_engines.clone(),
            "--batches",
            true,
            "[1, 1024]".to_string(),
        ),
        (
            bench_engines.clone(),
            "--frames",
            true,
            "[1, 30000]".to_string(),
        ),
        (bench_engines, "--threads", true, threads.clone()),
        (bench_llm, "--seconds", false, "(0, 30]".to_string()),
        (bench_whisper, "--seconds", false, "(0, 30]".to_string()),
        (bench_lm, "--context", true, "[1, 8192]".to_string()),
        (
            transcribe.clone(),
            "--temperatures",
            false,
            "[0, 2]".to_string(),
        ),
        (
            eval_asr.clone(),
            "--temperatures",
            false,
            "[0, 2]".to_string(),
        ),
    ] {
        c.push(Case {
            base,
            option,
            int,
            range,
            list: true,
        });
    }
    c
}

/// The ends of an interval: (lo, lo included, hi, hi included).
fn ends(range: &str) -> (f64, bool, f64, bool) {
    let inner = &range[1..range.len() - 1];
    let (lo, hi) = inner.split_once(", ").expect("interval");
    (
        lo.parse().unwrap(),
        range.starts_with('['),
        hi.parse().unwrap(),
        range.ends_with(']'),
    )
}

/// Values outside `range` (and not numbers at all).
fn bad_values(c: &Case) -> Vec<String> {
    let (lo, lo_in, hi, hi_in) = ends(&c.range);
    let mut v: Vec<String> = vec!["NaN".into(), "inf".into(), "-inf".into(), "1e300".into()];
    if c.int {
        let (lo, hi) = {
            let inner = &c.range[1..c.range.len() - 1];
            let (a, b) = inner.split_once(", ").unwrap();
            (a.parse::<i128>().unwrap(), b.parse::<i128>().unwrap())
        };
        v.push((lo - 1).to_string());
        v.push((hi + 1).to_string());
        v.push("1.5".into());
        v.push("100000000000000000000000".into());
    } else {
        v.push(if lo_in { lo - 1.0 } else { lo }.to_string());
        v.push(if hi_in { hi + 1.0 } else { hi }.to_string());
    }
    if c.list {
        let good = good_values(c).remove(0);
        v = v.into_iter().map(|b| format!("{good},{b}")).collect();
    }
    v
}

/// Values inside `range`: its included ends, else a point inside.
fn good_values(c: &Case) -> Vec<String> {
    if c.int {
        let inner = &c.range[1..c.range.len() - 1];
        let (a, b) = inner.split_once(", ").unwrap();
        return vec![a.to_string(), b.to_string()];
    }
    let (lo, lo_in, hi, hi_in) = ends(&c.range);
    let mid = (lo + hi) / 2.0;
    vec![
        if lo_in { lo } else { mid }.to_string(),
        if hi_in { hi } else { mid }.to_string(),
    ]
}

/// Help text by command (`bench embed`), fetched once.
fn help_of(cache: &mut BTreeMap<String, String>, cmd: &str) -> String {
    cache
        .entry(cmd.to_string())
        .or_insert_with(|| {
            let mut args: Vec<String> = cmd.split(' ').map(String::from).collect();
            args.push("--help".into());
            let (code, out, err, _) = run_bounded(&args, PARSE_LIMIT);
            assert_eq!(code, Some(0), "voxq {cmd} --help: {err}");
            out
        })
        .clone()
}

#[test]
fn every_numeric_option_refuses_values_outside_its_documented_range() {
    let tmp = tempfile::tempdir().unwrap();
    let mut helps = BTreeMap::new();
    let mut failures = Vec::new();
    let mut runs = 0;
    for c in cases(tmp.path()) {
        let cmd = command(&c.base);
        let help = help_of(&mut helps, &cmd);
        let doc = format!("[range: {}", c.range);
        if !options_of(&help)
            .get(c.option)
            .is_some_and(|text| text.contains(&doc))
        {
            failures.push(format!("voxq {cmd} --help: {} lacks {doc}]", c.option));
        }
        for bad in bad_values(&c) {
            let mut args = c.base.clone();
            args.extend([c.option.to_string(), bad.clone()]);
            let (code, _, err, took) = run_bounded(&args, PARSE_LIMIT);
            runs += 1;
            let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
            let ok = code == Some(1)
                && lines.len() == 1
                && lines[0].starts_with("voxq: error: ")
                && lines[0].contains(c.option)
                && lines[0].contains(&c.range)
                && took < PARSE_LIMIT;
            if !ok {
                failures.push(format!(
                    "voxq {cmd} {} {bad}: exit {code:?} after {took:.1?}, stderr {err:?}",
                    c.option
                ));
            }
        }
        // the range's own ends are taken: the run goes on to the unknown argument after them
        for good in good_values(&c) {
            let mut args = c.base.clone();
            args.extend([c.option.to_string(), good.clone(), "--zz-unknown".into()]);
            let (code, _, err, _) = run_bounded(&args, PARSE_LIMIT);
            runs += 1;
            if code != Some(1) || !err.contains("'--zz-unknown'") || err.contains("invalid value") {
                failures.push(format!(
                    "voxq {cmd} {} {good} (inside the range): exit {code:?}, stderr {err:?}",
                    c.option
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The command's options and arguments (`--threads`, `<AUDIO>...`) with their whole help
/// entry (description, `[default: ..]`, `[range: ..]`), from `voxq CMD --help`.
fn options_of(help: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut in_list = false;
    let mut current: Option<String> = None;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            // a section header: `Options:`, `Arguments:`, `Commands:`, `Examples:`
            in_list = line == "Options:" || line == "Arguments:";
            current = None;
            continue;
        }
        if !in_list || line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let body = line.trim();
        if indent <= 6 && (body.starts_with('-') || body.starts_with('<')) {
            // `-h, --help  Print help`, `--threads <THREADS>`, `<AUDIO>...  Audio files`
            let (sig, rest) = body.split_once("  ").unwrap_or((body, ""));
            let name = sig
                .split([',', ' '])
                .map(str::trim)
                .find(|w| w.starts_with("--") || w.starts_with('<'))
                .unwrap_or(sig)
                .to_string();
            out.insert(name.clone(), rest.trim().to_string());
            current = Some(name);
        } else if let Some(name) = &current {
            let e = out.get_mut(name).unwrap();
            e.push(' ');
            e.push_str(body);
        }
    }
    out
}

/// A help entry's description: the entry without clap's `[default: ..]`, `[possible values:
/// ..]`, `[env: ..]`, `[aliases: ..]` notes.
fn description(entry: &str) -> String {
    let mut d = entry.to_string();
    for note in ["[default: ", "[possible values: ", "[env: ", "[aliases: "] {
        while let Some(i) = d.find(note) {
            let j = d[i..].find(']').map_or(d.len(), |j| i + j + 1);
            d.replace_range(i..j, "");
        }
    }
    d.trim().to_string()
}

/// Every command and `bench` subcommand, from the top-level help.
fn commands() -> Vec<String> {
    let list = |args: &[&str]| -> Vec<String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (code, out, err, _) = run_bounded(&args, PARSE_LIMIT);
        assert_eq!(code, Some(0), "{err}");
        let mut in_cmds = false;
        let mut names = Vec::new();
        for line in out.lines() {
            if !line.starts_with(' ') && !line.is_empty() {
                in_cmds = line == "Commands:";
                continue;
            }
            if let Some(name) = line.split_whitespace().next().filter(|_| in_cmds) {
                if name != "help" {
                    names.push(name.to_string());
                }
            }
        }
        names
    };
    let mut all = Vec::new();
    for c in list(&["--help"]) {
        if c == "bench" {
            all.extend(
                list(&["bench", "--help"])
                    .into_iter()
                    .map(|s| format!("bench {s}")),
            );
        }
        all.push(c);
    }
    all
}

#[test]
fn every_option_has_help_and_every_command_shows_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let cmds = commands();
    assert!(cmds.len() >= 20, "commands found: {cmds:?}");
    let mut cache = BTreeMap::new();
    let mut failures = Vec::new();
    let mut ranged = BTreeSet::new();
    for cmd in &cmds {
        let help = help_of(&mut cache, cmd);
        match help.split_once("Examples:\n") {
            Some((_, ex)) if ex.trim_start().starts_with(&format!("voxq {cmd}")) => {}
            _ => failures.push(format!("voxq {cmd} --help: no `Examples:` of `voxq {cmd}`")),
        }
        let opts = options_of(&help);
        if cmd != "bench" {
            assert!(
                !opts.is_empty(),
                "voxq {cmd} --help: no options parsed:\n{help}"
            );
        }
        for (name, entry) in &opts {
            if description(entry).is_empty() {
                failures.push(format!("voxq {cmd}: {name} has no description"));
            }
            // a number as default marks a numeric option: it must show its range
            let numeric_default = entry.split("[default: ").nth(1).is_some_and(|d| {
                d.split([']', ','])
                    .next()
                    .is_some_and(|v| v.trim().parse::<f64>().is_ok())
            });
            if numeric_default && !entry.contains("[range: ") {
                failures.push(format!(
                    "voxq {cmd}: {name} has a number default but no range"
                ));
            }
            if entry.contains("[range: ") {
                ranged.insert((cmd.clone(), name.clone()));
            }
        }
    }
    // the range table covers every option that shows a range
    let tested: BTreeSet<(String, String)> = cases(tmp.path())
        .iter()
        .map(|c| (command(&c.base), c.option.to_string()))
        .collect();
    for (cmd, name) in ranged.difference(&tested) {
        failures.push(format!(
            "voxq {cmd} {name}: has a range but no row in the range test"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_carry_the_whole_chain_and_no_debug_dumps() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |name: &str| tmp.path().join(name).display().to_string();
    two_utterances(tmp.path());
    std::fs::write(tmp.path().join("not-audio.wav"), "hello, not audio\n").unwrap();
    std::fs::write(
        tmp.path().join("trials.txt"),
        "1 a.wav a.wav\n0 a.wav b.wav\n1 b.wav b.wav\n0 b.wav a.wav\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("calib.txt"), "missing.wav\n").unwrap();
    let model = "fixtures/models/campplus.json";
    let wav = "fixtures/audio/speech_16k.wav";
    let cmds: Vec<Vec<String>> = [
        vec!["embed", "--model", model, &t("missing.wav")],
        vec!["embed", "--model", model, &t("not-audio.wav")],
        vec!["embed", "--model", &t("missing.json"), wav],
        vec![
            "bench",
            "embed",
            "--model",
            model,
            "--audio",
            wav,
            "--seconds",
            "0",
        ],
        vec![
            "bench",
            "embed",
            "--model",
            model,
            "--audio",
            &t("missing.wav"),
        ],
        vec!["bench", "engines", &t("no-engine")],
        vec![
            "eval",
            "--model",
            model,
            "--trials",
            &t("missing.txt"),
            "--audio-root",
            &t(""),
        ],
        // the DET plot into a folder that does not exist (a plotters debug dump before)
        vec![
            "eval",
            "--model",
            model,
            "--trials",
            &t("trials.txt"),
            "--audio-root",
            &t(""),
            "--det",
            &t("missing/det.png"),
            "--quiet",
        ],
        vec![
            "eval",
            "--model",
            model,
            "--trials",
            &t("trials.txt"),
            "--audio-root",
            &t(""),
            "--p-target",
            "NaN",
        ],
        vec![
            "quantize",
            "fixtures/models/campplus.onnx",
            "--table",
            &t("missing.json"),
            "--out",
            &t("q.onnx"),
        ],
        vec!["inspect", "fixtures/trials/trials.txt"],
        vec!["build", &t("missing.onnx"), "--out", &t("engine")],
        vec!["store-check", &t("missing.db")],
        vec!["transcribe", "--model", &t("no-whisper"), wav],
        vec![
            "generate",
            "--model",
            "fixtures/audio-llm-tiny-test/audio_llm.json",
            "--temperature",
            "NaN",
            wav,
        ],
        vec![
            "calibrate",
            "--model",
            model,
            "--calib",
            &t("calib.txt"),
            "--audio-root",
            &t(""),
            "--out",
            &t("t.json"),
            "--quiet",
        ],
        vec![
            "autoquant",
            model,
            "--calib",
            &t("calib.txt"),
            "--audio-root",
            &t(""),
            "--max-increase",
            "NaN",
            "--out",
            &t("r"),
        ],
        vec!["embed", "--model", model, "--thread", "2", wav],
    ]
    .into_iter()
    .map(|a| a.into_iter().map(String::from).collect())
    .collect();
    let mut failures = Vec::new();
    for args in &cmds {
        let (code, _, err, took) = run_bounded(args, Duration::from_secs(120));
        let cmd = command(args);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let msg = lines
            .last()
            .and_then(|l| l.strip_prefix("voxq: error: "))
            .unwrap_or("");
        let bad = code != Some(1)
            || lines.len() != 1
            || msg.is_empty()
            || msg.trim() == cmd
            || msg.trim_end_matches(':') == cmd
            || !msg.contains(": ")
            || err.contains("{ ")
            || err.contains(" }")
            || err.contains("Os {")
            || err.contains("panicked");
        if bad {
            failures.push(format!(
                "voxq {}: exit {code:?} after {took:.1?}, stderr {err:?}",
                args.join(" ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
