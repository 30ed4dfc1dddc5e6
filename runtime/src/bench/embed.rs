//! Speaker-embedding latency: the whole path (front end + inference) per model, thread count
//! and input length; p50/p95, the front end's share, real-time factor.

use std::path::Path;
use std::time::Instant;

use engines::ort::CpuOptions;
use serde::Serialize;

use super::{peak_rss_mb, percentile, tile};
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
