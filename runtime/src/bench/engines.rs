//! Engine-folder latency per batch size, input length and thread count: CPU engines (ONNX
//! Runtime), OpenVINO engines and `tensorrt-ort` engines through the [`Engine`] interface,
//! `tensorrt` plans through `trtexec --loadEngine`; speed-up against the first engine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use engines::engine::{Engine, F32Tensor, OrtEngine};
use engines::manifest::Manifest;
use engines::ort::CpuOptions;
use serde::Serialize;

use super::percentile;
use crate::error::Result;

/// Latency of one engine folder at one batch size, length and thread count.
#[derive(Debug, Clone, Serialize)]
pub struct EngineLatency {
    /// The engine folder as given.
    pub engine: String,
    /// What ran it: `onnxruntime CPUExecutionProvider fp32`, `openvino CPU int8 (float parts
    /// fp32)`, `onnxruntime TensorrtExecutionProvider …` or `trtexec`.
    pub runner: String,
    pub target: String,
    /// What the engine computes in: the model's precision, or the backend's (OpenVINO bf16).
    pub precision: String,
    pub batch: i64,
    pub frames: i64,
    /// Threads the engine ran with (0 = the engine's own setting).
    pub threads: usize,
    pub runs: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
    /// Batch items per second at the median latency (trtexec: its measured throughput).
    pub items_per_s: f64,
}

/// What to measure: every combination of batch, frames and threads, each engine timed for
/// about `seconds` in turns with the others.
#[derive(Debug, Clone)]
pub struct EnginesBench {
    pub batches: Vec<i64>,
    pub frames: Vec<i64>,
    /// Intra-op threads; 0 keeps each engine's manifest setting.
    pub threads: Vec<usize>,
    pub seconds: f64,
}

enum Runner {
    Engine(Box<dyn Engine>),
    Trtexec(engines::tensorrt::TrtExec, PathBuf),
}

/// Deterministic inputs with values in [-1, 1) (latency does not depend on them).
fn filler(n: usize) -> Vec<f32> {
    let mut x: u32 = 0x2545_f491;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn open_runner(dir: &Path, m: &Manifest, threads: usize) -> Result<(Runner, String)> {
    use engines::ort::{cpu_session, Device};
    if m.target == "tensorrt" {
        return Ok((
            Runner::Trtexec(
                engines::tensorrt::TrtExec::detect()?,
                dir.join(&m.engine_file),
            ),
            "trtexec".into(),
        ));
    }
    let engine: Box<dyn Engine> = match m.target.as_str() {
        "cpu" | "openvino" => {
            let opts = CpuOptions {
                intra_threads: threads,
                ..CpuOptions::default()
            };
            engines::engine::open_folder(dir, &opts)?
        }
        _ => {
            let opts = CpuOptions {
                device: Device::Tensorrt,
                ..CpuOptions::default()
            };
            let ctx = dir.join(engines::tensorrt::epcontext::CTX_FILE);
            let label = ctx.display().to_string();
            Box::new(OrtEngine::new(
                &label,
                cpu_session(&ctx, &opts)?,
                "TensorrtExecutionProvider",
                &m.precision,
            ))
        }
    };
    let name = engine.served().to_string();
    Ok((Runner::Engine(engine), name))
}

/// Feeds for every input of `m` at `batch` x `frames`.
fn feeds(m: &Manifest, batch: i64, frames: i64) -> Vec<F32Tensor> {
    m.inputs
        .iter()
        .map(|spec| {
            let dims = spec.concrete(batch, frames);
            let n: i64 = dims.iter().product();
            F32Tensor {
                name: spec.name.clone(),
                dims,
                data: filler(n.max(0) as usize),
            }
        })
        .collect()
}

/// Refuses shapes outside an engine's profile.
fn check_profiles(d: &Path, m: &Manifest, cfg: &EnginesBench) -> Result<()> {
    for spec in &m.inputs {
        let Some(p) = &spec.profile else { continue };
        for &b in &cfg.batches {
            for &f in &cfg.frames {
                let s = spec.concrete(b, f);
                if s.iter()
                    .zip(&p.min)
                    .zip(&p.max)
                    .any(|((v, lo), hi)| v < lo || v > hi)
                {
                    return Err(crate::error::RuntimeError::Config {
                        path: d.join(engines::manifest::MANIFEST_FILE),
                        reason: format!(
                            "input '{}' shape {s:?} is outside the engine's profile {:?}..{:?}",
                            spec.name, p.min, p.max
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

struct Opened {
    label: String,
    manifest: Manifest,
    runner: Runner,
    name: String,
    /// What it computes in (`bf16` for an OpenVINO bf16 engine of an fp32 model).
    precision: String,
}

/// Latency of each engine folder at each batch size, length (`frames` for the dynamic axes
/// after the batch) and thread count. Engines run through the [`Engine`] interface are timed
/// in turns, one run each, after two warm-up runs each, until every one has run for about
/// `seconds` (at least 5 runs), so that their ratios come from the same stretch of time on a
/// shared machine; `tensorrt` plans are timed by `trtexec --loadEngine` (host latency). Shapes
/// outside an engine's profile are refused before anything runs.
pub fn bench_engines(dirs: &[PathBuf], cfg: &EnginesBench) -> Result<Vec<EngineLatency>> {
    let mut manifests = Vec::new();
    for d in dirs {
        let m = Manifest::read(d)?;
        let host = engines::manifest::Host::for_manifest(&m)?;
        m.check(d, None, &host)?;
        check_profiles(d, &m, cfg)?;
        manifests.push((d, m));
    }
    let mut rows = Vec::new();
    for &threads in &cfg.threads {
        let mut open = Vec::new();
        for (d, m) in &manifests {
            let (runner, name) = open_runner(d, m, threads)?;
            let precision = match &runner {
                Runner::Engine(e) => e.served().precision.clone(),
                Runner::Trtexec(..) => m.precision.clone(),
            };
            open.push(Opened {
                label: d.display().to_string(),
                manifest: m.clone(),
                runner,
                name,
                precision,
            });
        }
        for &batch in &cfg.batches {
            for &frames in &cfg.frames {
                rows.extend(time_round(&mut open, batch, frames, threads, cfg.seconds)?);
            }
        }
    }
    Ok(rows)
}

/// One batch/length/threads setting: engines in turns, then trtexec plans.
fn time_round(
    open: &mut [Opened],
    batch: i64,
    frames: i64,
    threads: usize,
    seconds: f64,
) -> Result<Vec<EngineLatency>> {
    let inputs: Vec<Vec<F32Tensor>> = open
        .iter()
        .map(|o| feeds(&o.manifest, batch, frames))
        .collect();
    let outs: Vec<Vec<String>> = open
        .iter()
        .map(|o| o.manifest.outputs.iter().map(|s| s.name.clone()).collect())
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); open.len()];
    let mut spent = vec![0.0f64; open.len()];
    let mut round = 0usize;
    loop {
        let mut busy = false;
        for (k, o) in open.iter_mut().enumerate() {
            let Runner::Engine(e) = &mut o.runner else {
                continue;
            };
            if round >= 2 && times[k].len() >= 5 && (spent[k] >= seconds || times[k].len() >= 2000)
            {
                continue;
            }
            busy = true;
            let names: Vec<&str> = outs[k].iter().map(String::as_str).collect();
            let t0 = Instant::now();
            e.run_f32(&inputs[k], &names)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if round >= 2 {
                times[k].push(ms);
                spent[k] += ms / 1e3;
            }
        }
        round += 1;
        if !busy {
            break;
        }
    }
    let mut rows = Vec::new();
    for (k, o) in open.iter_mut().enumerate() {
        let (runs, median, p95, items) = match &mut o.runner {
            Runner::Engine(_) => {
                let t = &mut times[k];
                t.sort_by(|a, b| a.total_cmp(b));
                let med = percentile(t, 0.5);
                (
                    t.len(),
                    med,
                    percentile(t, 0.95),
                    batch as f64 / (med / 1e3),
                )
            }
            Runner::Trtexec(tool, plan) => {
                let shapes: Vec<(String, Vec<i64>)> = o
                    .manifest
                    .inputs
                    .iter()
                    .map(|s| (s.name.clone(), s.concrete(batch, frames)))
                    .collect();
                let p = tool.time(plan, &shapes, seconds.ceil().max(1.0) as u32)?;
                (
                    (p.throughput_qps * seconds) as usize,
                    p.latency.median,
                    p.latency.p95.or(p.latency.p99).unwrap_or(f64::NAN),
                    p.throughput_qps * batch as f64,
                )
            }
        };
        rows.push(EngineLatency {
            engine: o.label.clone(),
            runner: o.name.clone(),
            target: o.manifest.target.clone(),
            precision: o.precision.clone(),
            batch,
            frames,
            threads,
            runs,
            median_ms: median,
            p95_ms: p95,
            items_per_s: items,
        });
    }
    Ok(rows)
}

/// The engine latency table in Markdown; speed-up against the first engine at the same batch,
/// length and threads.
pub fn engines_markdown(rows: &[EngineLatency]) -> String {
    let mut s = String::from(
        "| engine | runner | precision | batch | frames | threads | runs | median (ms) | p95 (ms) | items/s | speed-up vs first |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let base = rows
            .iter()
            .find(|b| b.batch == r.batch && b.frames == r.frames && b.threads == r.threads)
            .map_or(f64::NAN, |b| b.median_ms / r.median_ms);
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {:.2}x |\n",
            r.engine,
            r.runner,
            r.precision,
            r.batch,
            r.frames,
            if r.threads == 0 {
                "engine's".to_string()
            } else {
                r.threads.to_string()
            },
            r.runs,
            r.median_ms,
            r.p95_ms,
            r.items_per_s,
            base
        ));
    }
    s
}
