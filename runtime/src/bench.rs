//! Benchmarks: speaker-embedding latency (p50/p95), real-time factor, peak RSS, threads.
//!
//! These are measurements for reports (`voxq bench embed`), not pass/fail tests: compare
//! ratios measured in one run, since the machine may be shared.

use std::path::Path;
use std::time::Instant;

use engines::ort::CpuOptions;
use serde::Serialize;

use crate::audio::wav::Audio;
use crate::error::Result;
use crate::speaker::config::SpeakerModel;
use crate::speaker::embed::Embedder;

/// One (threads, input length) measurement.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedBenchRow {
    pub model: String,
    pub threads: usize,
    pub audio_seconds: f64,
    pub iterations: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub mean_ms: f64,
    /// Share of the p50 spent in the front end (resample + fbank).
    pub frontend_p50_ms: f64,
    /// p50 latency divided by the audio duration.
    pub rtf: f64,
}

/// A whole `bench embed` run.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedBench {
    /// (name, ONNX path) of each model measured.
    pub models: Vec<(String, String)>,
    pub audio: String,
    pub rows: Vec<EmbedBenchRow>,
    pub peak_rss_mb: f64,
}

/// The audio the benchmark feeds: `seconds` of `source` repeated end to end.
pub fn tile(source: &Audio, seconds: f64) -> Audio {
    let n = (seconds * source.sample_rate as f64).round() as usize;
    let samples = source.samples.iter().copied().cycle().take(n).collect();
    Audio {
        samples,
        sample_rate: source.sample_rate,
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), NaN elsewhere.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Times the whole embedding path (front end + inference) of each model on each input length
/// and thread count. Models are interleaved per (threads, length) so that their ratios come
/// from the same stretch of time on a shared machine.
pub fn bench_embed(
    models: &[SpeakerModel],
    source: &Audio,
    source_name: &Path,
    durations: &[f64],
    threads: &[usize],
    iterations: usize,
    warmup: usize,
) -> Result<EmbedBench> {
    let mut rows = Vec::new();
    for &th in threads {
        let opts = CpuOptions {
            intra_threads: th,
            ..CpuOptions::default()
        };
        let embedders = models
            .iter()
            .map(|m| Embedder::open(m.clone(), &opts))
            .collect::<Result<Vec<_>>>()?;
        for &secs in durations {
            let audio = tile(source, secs);
            for emb in &embedders {
                rows.push(time_one(
                    emb,
                    &audio,
                    source_name,
                    th,
                    secs,
                    iterations,
                    warmup,
                )?);
            }
        }
    }
    Ok(EmbedBench {
        models: models
            .iter()
            .map(|m| (m.config.name.clone(), m.onnx_path.display().to_string()))
            .collect(),
        audio: source_name.display().to_string(),
        rows,
        peak_rss_mb: peak_rss_mb(),
    })
}

fn time_one(
    emb: &Embedder,
    audio: &Audio,
    name: &Path,
    threads: usize,
    secs: f64,
    iterations: usize,
    warmup: usize,
) -> Result<EmbedBenchRow> {
    for _ in 0..warmup {
        emb.embed_audio(name, audio)?;
    }
    let mut total = Vec::with_capacity(iterations);
    let mut front = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t0 = Instant::now();
        let feats = emb.features(name, audio)?;
        let t1 = Instant::now();
        emb.embed_features(&feats)?;
        let t2 = Instant::now();
        total.push((t2 - t0).as_secs_f64() * 1e3);
        front.push((t1 - t0).as_secs_f64() * 1e3);
    }
    let mean = total.iter().sum::<f64>() / total.len().max(1) as f64;
    total.sort_by(f64::total_cmp);
    front.sort_by(f64::total_cmp);
    let p50 = percentile(&total, 0.5);
    Ok(EmbedBenchRow {
        model: emb.model().config.name.clone(),
        threads,
        audio_seconds: secs,
        iterations,
        p50_ms: p50,
        p95_ms: percentile(&total, 0.95),
        mean_ms: mean,
        frontend_p50_ms: percentile(&front, 0.5),
        rtf: p50 / 1e3 / secs,
    })
}

impl EmbedBench {
    /// A Markdown table for people.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "audio `{}` (tiled to each length), peak RSS {:.0} MiB\n\n| model | threads | input (s) | p50 (ms) | p95 (ms) | front end p50 (ms) | RTF | p50 vs first model |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
            self.audio, self.peak_rss_mb
        );
        for r in &self.rows {
            let base = self
                .rows
                .iter()
                .find(|b| b.threads == r.threads && b.audio_seconds == r.audio_seconds)
                .map_or(f64::NAN, |b| r.p50_ms / b.p50_ms);
            s.push_str(&format!(
                "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.4} | {:.2}x |\n",
                r.model,
                r.threads,
                r.audio_seconds,
                r.p50_ms,
                r.p95_ms,
                r.frontend_p50_ms,
                r.rtf,
                base
            ));
        }
        s
    }
}

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

/// One (model, input length) measurement of generation.
#[derive(Debug, Clone, Serialize)]
pub struct LlmBenchRow {
    pub model: String,
    /// `whisper` (ASR) or `audio-llm`.
    pub kind: String,
    pub audio_seconds: f64,
    pub runs: usize,
    /// Median time from the audio to the first new token (front end, encoder, projector,
    /// prompt prefill, first step).
    pub ttft_ms: f64,
    /// Median number of new tokens.
    pub tokens: usize,
    /// Median decode speed after the first token.
    pub tokens_per_s: f64,
    pub end_to_end_ms: f64,
    /// Peak RSS of the benchmark process when the row was measured (MiB; monotone).
    pub peak_rss_mb: f64,
}

/// A model `voxq bench llm` can time: a Whisper folder or an audio-LLM config.
pub enum GenModel {
    Whisper(Box<crate::whisper::Whisper>),
    AudioLlm(Box<crate::llm::AudioLlm>),
}

/// Times generation for each model on `source` tiled to each length: `runs` runs after one
/// warm-up, models interleaved per length; greedy, at most `max_new` new tokens.
pub fn bench_llm(
    models: &[(String, GenModel)],
    source: &Audio,
    seconds: &[f64],
    max_new: usize,
    runs: usize,
) -> Result<Vec<LlmBenchRow>> {
    let o = crate::generate::GenerateOptions {
        max_new_tokens: max_new,
        ..Default::default()
    };
    let mut rows = Vec::new();
    for &secs in seconds {
        let a = tile(source, secs);
        let name = Path::new("bench");
        for (label, m) in models {
            let mut ttft = Vec::new();
            let mut tps = Vec::new();
            let mut e2e = Vec::new();
            let mut ntok = Vec::new();
            for r in 0..=runs {
                let t0 = Instant::now();
                let mut first: Option<f64> = None;
                let mut n = 0usize;
                let mut cb = |_t: u32| {
                    n += 1;
                    if first.is_none() {
                        first = Some(t0.elapsed().as_secs_f64());
                    }
                    true
                };
                match m {
                    GenModel::Whisper(w) => {
                        let samples =
                            crate::audio::logmel::to_16k(name, &a.samples, a.sample_rate)?;
                        w.transcribe_window(name, &samples, &o, &mut cb)?;
                    }
                    GenModel::AudioLlm(l) => {
                        let user = l.user_turn("asr", None, None)?;
                        l.generate(name, &a.samples, a.sample_rate, &user, &o, &mut cb)?;
                    }
                }
                let total = t0.elapsed().as_secs_f64();
                if r == 0 {
                    continue; // warm-up
                }
                let f = first.unwrap_or(total);
                ttft.push(f * 1e3);
                e2e.push(total * 1e3);
                ntok.push(n as f64);
                tps.push(if n > 1 {
                    (n - 1) as f64 / (total - f).max(1e-9)
                } else {
                    0.0
                });
            }
            let med = |v: &mut Vec<f64>| {
                v.sort_by(|a, b| a.total_cmp(b));
                percentile(v, 0.5)
            };
            rows.push(LlmBenchRow {
                model: label.clone(),
                kind: match m {
                    GenModel::Whisper(_) => "whisper".into(),
                    GenModel::AudioLlm(_) => "audio-llm".into(),
                },
                audio_seconds: secs,
                runs,
                ttft_ms: med(&mut ttft),
                tokens: med(&mut ntok) as usize,
                tokens_per_s: med(&mut tps),
                end_to_end_ms: med(&mut e2e),
                peak_rss_mb: peak_rss_mb(),
            });
        }
    }
    Ok(rows)
}

/// The generation benchmark as a Markdown table.
pub fn llm_markdown(rows: &[LlmBenchRow]) -> String {
    let mut s = String::from(
        "| model | kind | audio (s) | runs | first token (ms) | new tokens | tokens/s | end to end (ms) | peak RSS (MiB) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| `{}` | {} | {:.0} | {} | {:.0} | {} | {:.1} | {:.0} | {:.0} |\n",
            r.model,
            r.kind,
            r.audio_seconds,
            r.runs,
            r.ttft_ms,
            r.tokens,
            r.tokens_per_s,
            r.end_to_end_ms,
            r.peak_rss_mb
        ));
    }
    s
}
