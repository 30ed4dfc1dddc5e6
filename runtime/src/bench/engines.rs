//! Engine-folder latency per batch size: CPU and `tensorrt-ort` engines through ONNX Runtime,
//! `tensorrt` plans through `trtexec --loadEngine`; speed-up against the first engine.

use std::path::Path;
use std::time::Instant;

use engines::ort::CpuOptions;
use serde::Serialize;

use super::percentile;
use crate::error::Result;

/// Latency of one engine folder at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct EngineLatency {
    /// The engine folder as given.
    pub engine: String,
    /// What ran it: `onnxruntime-cpu`, `onnxruntime-tensorrt` or `trtexec`.
    pub runner: String,
    pub target: String,
    pub precision: String,
    pub batch: i64,
    pub frames: i64,
    pub runs: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
    /// Batch items per second at the median latency (trtexec: its measured throughput).
    pub items_per_s: f64,
}

enum Runner {
    Ort(ort::session::Session, Vec<engines::manifest::TensorSpec>),
    Trtexec(engines::tensorrt::TrtExec, std::path::PathBuf),
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

fn open_runner(dir: &Path, m: &engines::manifest::Manifest) -> Result<(Runner, String)> {
    use engines::ort::{cpu_session, Device};
    Ok(match m.target.as_str() {
        "cpu" => {
            let opts = engines::ort::session_options(m);
            (
                Runner::Ort(
                    cpu_session(&dir.join(&m.engine_file), &opts)?,
                    m.inputs.clone(),
                ),
                "onnxruntime-cpu".into(),
            )
        }
        "tensorrt" => (
            Runner::Trtexec(
                engines::tensorrt::TrtExec::detect()?,
                dir.join(&m.engine_file),
            ),
            "trtexec".into(),
        ),
        _ => {
            let opts = CpuOptions {
                device: Device::Tensorrt,
                ..CpuOptions::default()
            };
            let ctx = dir.join(engines::tensorrt::epcontext::CTX_FILE);
            (
                Runner::Ort(cpu_session(&ctx, &opts)?, m.inputs.clone()),
                "onnxruntime-tensorrt".into(),
            )
        }
    })
}

fn time_ort(
    session: &mut ort::session::Session,
    specs: &[engines::manifest::TensorSpec],
    batch: i64,
    frames: i64,
    seconds: f64,
    name: &str,
) -> Result<Vec<f64>> {
    let mut feeds = Vec::new();
    for spec in specs {
        let shape = spec.concrete(batch, frames);
        let n: i64 = shape.iter().product();
        let t = ort::value::Tensor::<f32>::from_array((shape, filler(n.max(0) as usize))).map_err(
            |e| engines::EngineError::Input {
                model: name.into(),
                input: spec.name.clone(),
                reason: e.to_string(),
            },
        )?;
        feeds.push((spec.name.clone(), t));
    }
    let mut times = Vec::new();
    let start = Instant::now();
    for i in 0.. {
        let t0 = Instant::now();
        session
            .run(
                feeds
                    .iter()
                    .map(|(n, t)| (n.as_str(), t.view().into_dyn()))
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| engines::EngineError::Run {
                model: name.into(),
                reason: engines::ort::first_line(&e.to_string()),
            })?;
        if i >= 2 {
            // two warm-up runs first
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        if (times.len() >= 5 && start.elapsed().as_secs_f64() >= seconds) || times.len() >= 2000 {
            break;
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times)
}

/// Latency of each engine folder at each batch size (`frames` for the other dynamic axes):
/// CPU engines and `tensorrt-ort` engines timed through ONNX Runtime for about `seconds`
/// each after two warm-up runs, `tensorrt` plans through `trtexec --loadEngine` (host
/// latency, H2D + compute + D2H). Engines are interleaved per batch size so that ratios come
/// from the same stretch of time. Shapes outside an engine's profile are refused.
pub fn bench_engines(
    dirs: &[std::path::PathBuf],
    batches: &[i64],
    frames: i64,
    seconds: f64,
) -> Result<Vec<EngineLatency>> {
    let mut engines_ = Vec::new();
    for d in dirs {
        let m = engines::manifest::Manifest::read(d)?;
        let host = engines::manifest::Host::for_manifest(&m)?;
        m.check(d, None, &host)?;
        for spec in &m.inputs {
            if let Some(p) = &spec.profile {
                for &b in batches {
                    let s = spec.concrete(b, frames);
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
        let (runner, name) = open_runner(d, &m)?;
        engines_.push((d.display().to_string(), m, runner, name));
    }
    let mut rows = Vec::new();
    for &batch in batches {
        for (label, m, runner, runner_name) in engines_.iter_mut() {
            let (runs, median, p95, items) = match runner {
                Runner::Ort(session, specs) => {
                    let t = time_ort(session, specs, batch, frames, seconds, label)?;
                    let med = percentile(&t, 0.5);
                    (
                        t.len(),
                        med,
                        percentile(&t, 0.95),
                        batch as f64 / (med / 1e3),
                    )
                }
                Runner::Trtexec(tool, plan) => {
                    let shapes: Vec<(String, Vec<i64>)> = m
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
                engine: label.clone(),
                runner: runner_name.clone(),
                target: m.target.clone(),
                precision: m.precision.clone(),
                batch,
                frames,
                runs,
                median_ms: median,
                p95_ms: p95,
                items_per_s: items,
            });
        }
    }
    Ok(rows)
}

/// The engine latency table in Markdown; speed-up against the first engine at each batch.
pub fn engines_markdown(rows: &[EngineLatency]) -> String {
    let mut s = String::from(
        "| engine | runner | precision | batch | frames | runs | median (ms) | p95 (ms) | items/s | speed-up vs first |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let base = rows
            .iter()
            .find(|b| b.batch == r.batch)
            .map_or(f64::NAN, |b| b.median_ms / r.median_ms);
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {:.2}x |\n",
            r.engine,
            r.runner,
            r.precision,
            r.batch,
            r.frames,
            r.runs,
            r.median_ms,
            r.p95_ms,
            r.items_per_s,
            base
        ));
    }
    s
}
