//! `trtexec`, TensorRT's command-line interface: finding it and its version, the exact command
//! line of a plan build (fp32, fp16, int8 QDQ), running a build with its log kept, inference
//! on given inputs (`--loadInputs` / `--exportOutput`) and timing runs with their performance
//! summary parsed. TensorRT is never linked: `trtexec` is the documented interface to it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::build::TrtPrecision;
use super::profile::{shape_list, shape_text};
use crate::manifest::ShapeProfile;
use crate::EngineError;

/// Where NVIDIA's Debian/Ubuntu packages (and the NGC containers) put `trtexec`: the
/// `tensorrt` samples package builds it into `/usr/src/tensorrt/bin`, which is not on PATH
/// (NVIDIA forum, "Where is TensorRT located in an Ubuntu dpkg installation":
/// <https://forums.developer.nvidia.com/t/where-is-tensorrt-located-in-an-ubuntu-16-04-dpkg-installation/69042>;
/// NVIDIA/TensorRT `samples/README.md` uses `/usr/src/tensorrt` as the containers' root).
pub const DEBIAN_TRTEXEC_DIR: &str = "/usr/src/tensorrt/bin";

/// The folders `trtexec` is looked for in, in order: every PATH entry, `$TENSORRT_ROOT/bin`
/// (a tar install), then [`DEBIAN_TRTEXEC_DIR`] (a Debian package install).
pub fn trtexec_search_dirs(
    path: Option<&std::ffi::OsStr>,
    tensorrt_root: Option<&std::ffi::OsStr>,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    if let Some(root) = tensorrt_root.filter(|r| !r.is_empty()) {
        dirs.push(Path::new(root).join("bin"));
    }
    dirs.push(PathBuf::from(DEBIAN_TRTEXEC_DIR));
    dirs
}

/// The first `trtexec` file in `dirs`.
pub fn find_trtexec_in(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join("trtexec")).find(|p| p.is_file())
}

/// `trtexec` on PATH, else `$TENSORRT_ROOT/bin/trtexec`, else `/usr/src/tensorrt/bin/trtexec`.
pub fn find_trtexec() -> Option<PathBuf> {
    let path = std::env::var_os("PATH");
    let root = std::env::var_os("TENSORRT_ROOT");
    find_trtexec_in(&trtexec_search_dirs(path.as_deref(), root.as_deref()))
}

/// The one-line error when no `trtexec` is found: the places searched and what to do.
pub fn not_found_message(tensorrt_root: Option<&std::ffi::OsStr>) -> String {
    let root = match tensorrt_root.filter(|r| !r.is_empty()) {
        Some(r) => format!("{}/bin ($TENSORRT_ROOT/bin)", Path::new(r).display()),
        None => "$TENSORRT_ROOT/bin (TENSORRT_ROOT is not set)".to_string(),
    };
    format!(
        "TensorRT not found: no trtexec on PATH, in {root} or in {DEBIAN_TRTEXEC_DIR} (install TensorRT, put trtexec on PATH or set TENSORRT_ROOT, or build with --target cpu)"
    )
}

/// TensorRT version from trtexec's banner: `[TensorRT v100300]` → `10.3.0`,
/// `[TensorRT v8501]` → `8.5.1`.
pub fn parse_trtexec_version(banner: &str) -> Option<String> {
    let i = banner.find("[TensorRT v")? + "[TensorRT v".len();
    let digits: String = banner[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some(super::gpu::decode_trt_version(digits.parse().ok()?))
}

fn shapes_arg(
    flag: &str,
    profiles: &[(String, ShapeProfile)],
    pick: fn(&ShapeProfile) -> &Vec<i64>,
) -> String {
    format!("--{flag}={}", shape_list(profiles, pick))
}

/// Files a TensorRT build writes into its engine folder.
pub const PLAN_FILE: &str = "model.plan";
pub const TIMING_CACHE_FILE: &str = "timing.cache";
pub const LAYER_INFO_FILE: &str = "layers.json";

/// The `trtexec` arguments for building `model` into `dir` (see the module docs of each flag):
///
/// - int8 QDQ: `--stronglyTyped` on TensorRT 10 (precision from the Q/DQ nodes and the
///   model's types; no `--int8`/`--fp16`); TensorRT 11 builds strongly typed networks by
///   default, so no flag; before 10, `--int8 --fp16` (explicit quantization honours the Q/DQ
///   nodes, fp16 for the float rest);
/// - fp16: `--fp16` before TensorRT 11; TensorRT 11 has no `--fp16` (weak typing is gone, a
///   network runs in its model's types), so no flag is added and `model` must already be a
///   float16 model: [`super::build`] casts it first (see `BuildPlan`);
/// - fp32: no precision flag;
/// - shape profiles for the dynamic inputs, a timing cache, and detailed layer information
///   exported beside the plan.
pub fn trtexec_args(
    model: &Path,
    dir: &Path,
    precision: TrtPrecision,
    profiles: &[(String, ShapeProfile)],
    trt_major: u32,
) -> Vec<String> {
    let mut a = vec![
        format!("--onnx={}", model.display()),
        format!("--saveEngine={}", dir.join(PLAN_FILE).display()),
    ];
    match precision {
        TrtPrecision::Int8Qdq if trt_major == 10 => a.push("--stronglyTyped".into()),
        TrtPrecision::Int8Qdq if trt_major >= 11 => {}
        TrtPrecision::Int8Qdq => {
            a.push("--int8".into());
            a.push("--fp16".into());
        }
        TrtPrecision::Fp16 if trt_major < 11 => a.push("--fp16".into()),
        TrtPrecision::Fp16 | TrtPrecision::Fp32 => {}
    }
    if !profiles.is_empty() {
        a.push(shapes_arg("minShapes", profiles, |p| &p.min));
        a.push(shapes_arg("optShapes", profiles, |p| &p.opt));
        a.push(shapes_arg("maxShapes", profiles, |p| &p.max));
    }
    a.push(format!(
        "--timingCacheFile={}",
        dir.join(TIMING_CACHE_FILE).display()
    ));
    a.push("--profilingVerbosity=detailed".into());
    a.push(format!(
        "--exportLayerInfo={}",
        dir.join(LAYER_INFO_FILE).display()
    ));
    a
}

/// A `trtexec` found on this machine and the TensorRT version it reports.
#[derive(Debug, Clone)]
pub struct TrtExec {
    pub path: PathBuf,
    pub version: String,
}

fn err(path: &Path, reason: String) -> EngineError {
    EngineError::Build {
        path: path.to_path_buf(),
        reason,
    }
}

impl TrtExec {
    /// Finds `trtexec` ([`find_trtexec`]) and asks it for its version.
    pub fn detect() -> Result<TrtExec, EngineError> {
        let path = find_trtexec().ok_or_else(|| {
            EngineError::Device(not_found_message(
                std::env::var_os("TENSORRT_ROOT").as_deref(),
            ))
        })?;
        let out = Command::new(&path)
            .arg("--help")
            .output()
            .map_err(|e| err(&path, format!("cannot run: {e}")))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let version = parse_trtexec_version(&text)
            .or_else(super::gpu::tensorrt_version)
            .ok_or_else(|| {
                err(
                    &path,
                    "cannot tell the TensorRT version (no '[TensorRT vNNNN]' banner, no libnvinfer)"
                        .into(),
                )
            })?;
        Ok(TrtExec { path, version })
    }

    /// Major version number (`10` for `10.13.0`).
    pub fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    /// Runs `trtexec` with `args`; stdout and stderr are kept in `log` when given. A failure
    /// is one line: the last `[E]` line trtexec printed, or its last line.
    pub fn run(&self, args: &[String], log: Option<&Path>) -> Result<String, EngineError> {
        let out = Command::new(&self.path)
            .args(args)
            .output()
            .map_err(|e| err(&self.path, format!("cannot run: {e}")))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(l) = log {
            exporter::atomic::write_atomic(l, text.as_bytes())
                .map_err(|e| err(l, e.to_string()))?;
        }
        if !out.status.success() {
            return Err(err(&self.path, failure_line(&text, out.status.code())));
        }
        Ok(text)
    }

    /// Runs a plan once on the given float32 inputs (raw files under `scratch`) and returns
    /// its outputs.
    pub fn infer(
        &self,
        plan: &Path,
        inputs: &[(String, Vec<i64>, Vec<f32>)],
        scratch: &Path,
    ) -> Result<Vec<OutputTensor>, EngineError> {
        let mut load = Vec::new();
        let mut shapes = Vec::new();
        for (i, (name, shape, data)) in inputs.iter().enumerate() {
            let f = scratch.join(format!("input{i}.bin"));
            let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            std::fs::write(&f, bytes).map_err(|e| err(&f, e.to_string()))?;
            load.push(format!("{name}:{}", f.display()));
            shapes.push(format!("{name}:{}", shape_text(shape)));
        }
        let out = scratch.join("outputs.json");
        let args = vec![
            format!("--loadEngine={}", plan.display()),
            format!("--shapes={}", shapes.join(",")),
            format!("--loadInputs={}", load.join(",")),
            format!("--exportOutput={}", out.display()),
            "--iterations=1".into(),
            "--warmUp=0".into(),
            "--duration=0".into(),
        ];
        self.run(&args, None)?;
        let text = std::fs::read_to_string(&out).map_err(|e| err(&out, e.to_string()))?;
        parse_outputs(&out, &text)
    }

    /// Times a plan at the given input shapes (`--warmUp`, `--duration` seconds) and parses
    /// trtexec's performance summary.
    pub fn time(
        &self,
        plan: &Path,
        shapes: &[(String, Vec<i64>)],
        seconds: u32,
    ) -> Result<Perf, EngineError> {
        let mut args = vec![format!("--loadEngine={}", plan.display())];
        if !shapes.is_empty() {
            let s: Vec<String> = shapes
                .iter()
                .map(|(n, d)| format!("{n}:{}", shape_text(d)))
                .collect();
            args.push(format!("--shapes={}", s.join(",")));
        }
        args.push("--warmUp=500".into());
        args.push(format!("--duration={seconds}"));
        let text = self.run(&args, None)?;
        parse_perf(&text).ok_or_else(|| {
            err(
                plan,
                "trtexec printed no performance summary (Throughput / Latency lines)".into(),
            )
        })
    }
}

/// The line that explains a trtexec failure.
pub fn failure_line(text: &str, code: Option<i32>) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("[E]"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim();
    let code = code.map_or("killed by a signal".to_string(), |c| format!("exit {c}"));
    if line.is_empty() {
        format!("trtexec failed ({code}) without output")
    } else {
        format!("trtexec failed ({code}): {line}")
    }
}

/// One output tensor of `--exportOutput`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    pub name: String,
    pub dims: Vec<i64>,
    pub values: Vec<f32>,
}

/// trtexec writes each value with C++ `operator<<` (NVIDIA/TensorRT
/// `samples/common/sampleUtils.cpp`, `dumpBuffer`), so a NaN or infinite output comes out as
/// the bare words `nan`, `-nan`, `inf` or `-inf`, which JSON does not allow. This quotes such
/// words outside strings (`"nan"`, `"inf"`, `"-inf"`) so the file parses and
/// [`parse_outputs`] can read them back as non-finite values.
fn quote_non_finite(text: &str) -> std::borrow::Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    if !(lower.contains("nan") || lower.contains("inf")) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.char_indices().peekable();
    let mut in_str = false;
    while let Some((i, c)) = chars.next() {
        if in_str {
            out.push(c);
            if c == '\\' {
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        let word_start = c.is_ascii_alphabetic()
            || (c == '-' && chars.peek().is_some_and(|(_, n)| n.is_ascii_alphabetic()));
        if !word_start {
            in_str = c == '"';
            out.push(c);
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, n)) = chars.peek() {
            if !n.is_ascii_alphabetic() {
                break;
            }
            end = j + n.len_utf8();
            chars.next();
        }
        let word = &text[i..end];
        let (neg, w) = match word.strip_prefix('-') {
            Some(w) => (true, w.to_ascii_lowercase()),
            None => (false, word.to_ascii_lowercase()),
        };
        match w.as_str() {
            "nan" => out.push_str("\"nan\""),
            "inf" | "infinity" if neg => out.push_str("\"-inf\""),
            "inf" | "infinity" => out.push_str("\"inf\""),
            _ => out.push_str(word),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One value of an output: a number, or a non-finite word quoted by [`quote_non_finite`].
fn output_value(x: &serde_json::Value) -> Option<f32> {
    match x {
        serde_json::Value::Number(n) => n.as_f64().map(|f| f as f32),
        serde_json::Value::String(s) => match s.as_str() {
            "nan" => Some(f32::NAN),
            "inf" => Some(f32::INFINITY),
            "-inf" => Some(f32::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Parses `--exportOutput` JSON: `[{"name": ..., "dimensions": "1x192", "values": [...]}]`.
/// NaN and infinite values (written by trtexec as bare `nan`/`inf`, invalid JSON) are read
/// as such; [`non_finite`] reports them.
pub fn parse_outputs(path: &Path, text: &str) -> Result<Vec<OutputTensor>, EngineError> {
    let bad = |r: String| err(path, r);
    let text = quote_non_finite(text);
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not trtexec output JSON: {e}")))?;
    let arr = v
        .as_array()
        .ok_or_else(|| bad("not trtexec output JSON: expected an array".into()))?;
    arr.iter()
        .map(|o| {
            let name = o
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| bad("an output without a name".into()))?
                .to_string();
            let dims = o
                .get("dimensions")
                .and_then(|d| d.as_str())
                .unwrap_or("")
                .split('x')
                .filter(|s| !s.is_empty())
                .map(|s| s.trim().parse::<i64>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("output '{name}': bad dimensions: {e}")))?;
            let values = o
                .get("values")
                .and_then(|v| v.as_array())
                .ok_or_else(|| bad(format!("output '{name}' has no values")))?
                .iter()
                .map(output_value)
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| bad(format!("output '{name}': a value is not a number")))?;
            // Dimensions come from a file: a negative one or a product past usize is no match.
            let n = dims.iter().try_fold(1usize, |acc, &d| {
                usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            });
            if n != Some(values.len()) {
                return Err(bad(format!(
                    "output '{name}': {} values for dimensions {dims:?}",
                    values.len()
                )));
            }
            Ok(OutputTensor { name, dims, values })
        })
        .collect()
}

/// `None` when every output value is finite, else one line naming each output with NaN or
/// infinite values and how many (`output 'embedding': 192 of 192 values are NaN/Inf`).
pub fn non_finite(outputs: &[OutputTensor]) -> Option<String> {
    let bad: Vec<String> = outputs
        .iter()
        .filter_map(|t| {
            let n = t.values.iter().filter(|v| !v.is_finite()).count();
            (n > 0).then(|| {
                format!(
                    "output '{}': {n} of {} values are NaN/Inf",
                    t.name,
                    t.values.len()
                )
            })
        })
        .collect();
    (!bad.is_empty()).then(|| format!("non-finite output ({})", bad.join("; ")))
}

/// min / mean / median / p95 / p99 of one timing line, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub min: f64,
    pub mean: f64,
    pub median: f64,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// trtexec's performance summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Perf {
    /// Inferences per second (each at the given batch).
    pub throughput_qps: f64,
    /// Host latency (H2D + compute + D2H).
    pub latency: Stats,
    pub gpu_compute: Stats,
}

fn field(line: &str, key: &str) -> Option<f64> {
    let i = line.find(&format!("{key} = "))? + key.len() + 3;
    line[i..].split([' ', ',']).next()?.parse().ok()
}

/// A log line without its `[date] [I] ` prefixes.
fn body(line: &str) -> &str {
    let mut l = line.trim_start();
    while let Some(rest) = l.strip_prefix('[') {
        match rest.find(']') {
            Some(i) => l = rest[i + 1..].trim_start(),
            None => break,
        }
    }
    l
}

fn stats(text: &str, label: &str) -> Option<Stats> {
    let want = format!("{label}: min = ");
    let line = text.lines().map(body).find(|l| l.starts_with(&want))?;
    Some(Stats {
        min: field(line, "min")?,
        mean: field(line, "mean")?,
        median: field(line, "median")?,
        p95: field(line, "percentile(95%)"),
        p99: field(line, "percentile(99%)"),
    })
}

/// Parses the `=== Performance summary ===` lines (`Throughput: N qps`, `Latency: min = ...`,
/// `GPU Compute Time: min = ...`).
pub fn parse_perf(text: &str) -> Option<Perf> {
    let t = text.lines().map(body).find_map(|l| {
        l.strip_prefix("Throughput: ")?
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
    })?;
    Some(Perf {
        throughput_qps: t,
        latency: stats(text, "Latency")?,
        gpu_compute: stats(text, "GPU Compute Time")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::TensorSpec;
    use crate::tensorrt::profile::tests::feats;
    use crate::tensorrt::profile::{parse_profile, profiles};

    #[test]
    fn golden_qdq_tensorrt10_dynamic() {
        let p = profiles(&feats(), &[]).unwrap();
        let a = trtexec_args(
            Path::new("m/campplus.qdq.onnx"),
            Path::new("e/trt-int8"),
            TrtPrecision::Int8Qdq,
            &p,
            10,
        );
        assert_eq!(
            a,
            [
                "--onnx=m/campplus.qdq.onnx",
                "--saveEngine=e/trt-int8/model.plan",
                "--stronglyTyped",
                "--minShapes=feats:1x100x80",
                "--optShapes=feats:8x300x80",
                "--maxShapes=feats:32x3000x80",
                "--timingCacheFile=e/trt-int8/timing.cache",
                "--profilingVerbosity=detailed",
                "--exportLayerInfo=e/trt-int8/layers.json",
            ]
        );
    }

    #[test]
    fn golden_float_builds() {
        let given = vec![parse_profile("feats:1x200x80:4x400x80:16x1000x80").unwrap()];
        let p = profiles(&feats(), &given).unwrap();
        let a = trtexec_args(
            Path::new("m.onnx"),
            Path::new("e"),
            TrtPrecision::Fp16,
            &p,
            10,
        );
        assert_eq!(
            a,
            [
                "--onnx=m.onnx",
                "--saveEngine=e/model.plan",
                "--fp16",
                "--minShapes=feats:1x200x80",
                "--optShapes=feats:4x400x80",
                "--maxShapes=feats:16x1000x80",
                "--timingCacheFile=e/timing.cache",
                "--profilingVerbosity=detailed",
                "--exportLayerInfo=e/layers.json",
            ]
        );
        // fp32 on a static model: no precision flag, no shapes
        let fixed = vec![TensorSpec {
            shape: vec![1, 300, 80],
            dim_names: vec![String::new(); 3],
            ..feats()[0].clone()
        }];
        let p = profiles(&fixed, &[]).unwrap();
        assert!(p.is_empty());
        let a = trtexec_args(
            Path::new("m.onnx"),
            Path::new("e"),
            TrtPrecision::Fp32,
            &p,
            10,
        );
        assert_eq!(
            a,
            [
                "--onnx=m.onnx",
                "--saveEngine=e/model.plan",
                "--timingCacheFile=e/timing.cache",
                "--profilingVerbosity=detailed",
                "--exportLayerInfo=e/layers.json",
            ]
        );
    }

    #[test]
    fn qdq_flags_follow_the_tensorrt_version() {
        let p = profiles(&feats(), &[]).unwrap();
        let flags = |v| {
            trtexec_args(Path::new("m"), Path::new("e"), TrtPrecision::Int8Qdq, &p, v)
                .into_iter()
                .filter(|a| matches!(a.as_str(), "--stronglyTyped" | "--int8" | "--fp16"))
                .collect::<Vec<_>>()
        };
        assert_eq!(flags(8), ["--int8", "--fp16"]);
        assert_eq!(flags(10), ["--stronglyTyped"]);
        assert!(flags(11).is_empty());
    }

    #[test]
    fn versions_from_the_banner() {
        assert_eq!(
            parse_trtexec_version(
                "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=m.onnx"
            )
            .as_deref(),
            Some("10.3.0")
        );
        assert_eq!(
            parse_trtexec_version("[TensorRT v8501] # trtexec").as_deref(),
            Some("8.5.1")
        );
        assert_eq!(parse_trtexec_version("no banner"), None);
    }

    #[test]
    fn performance_summary() {
        let log = "[11/21/2026-10:00:00] [I] === Performance summary ===\n\
[11/21/2026-10:00:00] [I] Throughput: 1523.7 qps\n\
[11/21/2026-10:00:00] [I] Latency: min = 0.61 ms, max = 1.2 ms, mean = 0.655 ms, median = 0.65 ms, percentile(90%) = 0.67 ms, percentile(95%) = 0.68 ms, percentile(99%) = 0.71 ms\n\
[11/21/2026-10:00:00] [I] Enqueue Time: min = 0.01 ms, max = 0.1 ms, mean = 0.02 ms, median = 0.02 ms, percentile(99%) = 0.05 ms\n\
[11/21/2026-10:00:00] [I] H2D Latency: min = 0.05 ms, max = 0.1 ms, mean = 0.06 ms, median = 0.06 ms, percentile(99%) = 0.08 ms\n\
[11/21/2026-10:00:00] [I] GPU Compute Time: min = 0.5 ms, max = 1.0 ms, mean = 0.56 ms, median = 0.55 ms, percentile(90%) = 0.57 ms, percentile(95%) = 0.58 ms, percentile(99%) = 0.6 ms\n";
        let p = parse_perf(log).unwrap();
        assert_eq!(p.throughput_qps, 1523.7);
        assert_eq!(p.latency.median, 0.65);
        assert_eq!(p.latency.p99, Some(0.71));
        assert_eq!(p.latency.p95, Some(0.68));
        assert_eq!(p.gpu_compute.min, 0.5);
        assert_eq!(p.gpu_compute.mean, 0.56);
        assert!(parse_perf("[I] Throughput: 5 qps\n").is_none());
    }

    #[test]
    fn exported_outputs() {
        let text = "[\n  { \"name\" : \"embedding\"\n  , \"dimensions\" : \"2x3\"\n  , \"values\" : [ 0.5, -1, 2, 3, 4, 5e-3 ]\n  }\n]\n";
        let o = parse_outputs(Path::new("o.json"), text).unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].dims, [2, 3]);
        assert_eq!(o[0].values[5], 5e-3);
        let short = "[{\"name\": \"e\", \"dimensions\": \"2x3\", \"values\": [1]}]";
        let e = parse_outputs(Path::new("o.json"), short).unwrap_err();
        assert!(
            e.to_string().contains("1 values for dimensions [2, 3]"),
            "{e}"
        );
        assert!(parse_outputs(Path::new("o.json"), "{").is_err());
    }

    /// Found while writing the `trt_reports` fuzz target: dimensions whose product overflows
    /// i64 panicked (overflow check) or wrapped to a count that could match the values.
    #[test]
    fn exported_outputs_with_overflowing_or_negative_dimensions() {
        for dims in [
            "4294967296x4294967296",
            "9223372036854775807x2",
            "-1x-1",
            "-1",
        ] {
            let text =
                format!("[{{\"name\": \"e\", \"dimensions\": \"{dims}\", \"values\": [1]}}]");
            let e = parse_outputs(Path::new("o.json"), &text).unwrap_err();
            assert!(
                e.to_string().contains("1 values for dimensions"),
                "{dims}: {e}"
            );
        }
    }

    /// trtexec prints values with C++ `operator<<`: a NaN or Inf output makes the file
    /// invalid JSON, which used to be reported as "not trtexec output JSON".
    #[test]
    fn non_finite_outputs_are_read_and_named() {
        let text = "[\n  { \"name\" : \"embedding\"\n  , \"dimensions\" : \"1x6\"\n  , \"values\" : [ 0.5, nan, -nan, inf, -inf, 1e-3 ]\n  }\n, { \"name\" : \"nan inf\"\n  , \"dimensions\" : \"2\"\n  , \"values\" : [ 1, 2 ]\n  }\n]\n";
        let o = parse_outputs(Path::new("o.json"), text).unwrap();
        let v = &o[0].values;
        assert_eq!((v[0], v[5]), (0.5, 1e-3));
        assert!(v[1].is_nan() && v[2].is_nan());
        assert_eq!((v[3], v[4]), (f32::INFINITY, f32::NEG_INFINITY));
        assert_eq!(o[1].name, "nan inf", "words inside strings are left alone");
        assert_eq!(
            non_finite(&o).as_deref(),
            Some("non-finite output (output 'embedding': 4 of 6 values are NaN/Inf)")
        );
        assert_eq!(non_finite(&o[1..]), None);
        // other bare words are still not JSON
        let e = parse_outputs(
            Path::new("o.json"),
            "[{\"name\": \"e\", \"values\": [nope]}]",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not trtexec output JSON"), "{e}");
    }

    /// Debian packages put trtexec in /usr/src/tensorrt/bin, which is not on PATH.
    #[test]
    fn trtexec_is_searched_in_the_debian_folder_too() {
        let path = std::env::join_paths(["/opt/a", "/opt/b"]).unwrap();
        let dirs = trtexec_search_dirs(Some(&path), Some(std::ffi::OsStr::new("/opt/TensorRT-11")));
        let want: Vec<PathBuf> = [
            "/opt/a",
            "/opt/b",
            "/opt/TensorRT-11/bin",
            DEBIAN_TRTEXEC_DIR,
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, want);
        assert_eq!(
            trtexec_search_dirs(None, None),
            [PathBuf::from("/usr/src/tensorrt/bin")]
        );
        // found there when it is the only place that has it
        let tmp = std::env::temp_dir().join(format!("voxq-trtexec-{}", std::process::id()));
        let bin = tmp.join("src/tensorrt/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("trtexec"), b"").unwrap();
        let found = find_trtexec_in(&[tmp.join("empty"), bin.clone()]);
        let _ = std::fs::remove_dir_all(&tmp);
        assert_eq!(found, Some(bin.join("trtexec")));
        let m = not_found_message(None);
        assert!(
            m.contains("PATH")
                && m.contains("$TENSORRT_ROOT/bin")
                && m.contains("/usr/src/tensorrt/bin"),
            "{m}"
        );
        assert!(not_found_message(Some(std::ffi::OsStr::new("/opt/T"))).contains("/opt/T/bin"));
    }

    #[test]
    fn failures_are_one_line() {
        let log = "&&&& RUNNING TensorRT.trtexec [TensorRT v101300]\n[I] parsing\n[E] Error[4]: ITensor::getDimensions: Error Code 4: shape mismatch\n[E] Engine could not be created\n&&&& FAILED TensorRT.trtexec\n";
        assert_eq!(
            failure_line(log, Some(1)),
            "trtexec failed (exit 1): [E] Engine could not be created"
        );
        assert_eq!(
            failure_line("", None),
            "trtexec failed (killed by a signal) without output"
        );
    }
}
