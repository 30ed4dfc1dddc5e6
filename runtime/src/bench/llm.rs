//! Generation latency of Whisper folders and audio LLMs: time to the first token, decode
//! tokens/s, end to end, peak RSS; greedy, models interleaved per audio length.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::{peak_rss_mb, percentile, tile};
use crate::audio::wav::Audio;
use crate::error::Result;

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
    AudioLlm(Box<crate::audio_llm::AudioLlm>),
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
    let o = crate::generation::GenerateOptions {
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
