//! Running `trtexec`: its version, a build with its log kept, inference on given inputs
//! (`--loadInputs` / `--exportOutput`) and timing runs with their performance summary parsed.
//! TensorRT is never linked: `trtexec` is the documented command-line interface to it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::trt::find_trtexec;
use crate::EngineError;

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
    /// Finds `trtexec` (PATH, then `TENSORRT_ROOT/bin`) and asks it for its version.
    pub fn detect() -> Result<TrtExec, EngineError> {
        let path = find_trtexec().ok_or_else(|| {
            EngineError::Device(
                "TensorRT not found: no trtexec on PATH or under $TENSORRT_ROOT/bin (install TensorRT, or build with --target cpu)".into(),
            )
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
        let version = crate::trt::parse_trtexec_version(&text)
            .or_else(crate::gpu::tensorrt_version)
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
            shapes.push(format!("{name}:{}", dims(shape)));
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
                .map(|(n, d)| format!("{n}:{}", dims(d)))
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

fn dims(d: &[i64]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("x")
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

/// Parses `--exportOutput` JSON: `[{"name": ..., "dimensions": "1x192", "values": [...]}]`.
pub fn parse_outputs(path: &Path, text: &str) -> Result<Vec<OutputTensor>, EngineError> {
    let bad = |r: String| err(path, r);
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not trtexec output JSON: {e}")))?;
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
                .map(|x| x.as_f64().map(|f| f as f32))
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
