//! Whisper decoding speed by stage: front end (log-mel), encoder, the first decoder step (the
//! prompt) and the later steps (steps/s, ms per step at the start and at the end of the
//! output), per audio length; greedy, with Whisper's token rules. The per-stage breakdown of
//! where a transcription's time goes, and how a step's cost grows with the output length.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::{interleaved_medians, mean, tile, Timed};
use crate::audio::wav::Audio;
use crate::error::Result;
use crate::generation::{generate, GenerateOptions};
use crate::whisper::{Whisper, WhisperCache};

/// Steps averaged at the start and at the end of an output.
const EDGE: usize = 10;

/// One (model, audio length) measurement; times are medians over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct WhisperBenchRow {
    pub model: String,
    /// The backend that runs it (`onnxruntime`, `openvino`).
    pub backend: String,
    pub audio_seconds: f64,
    pub runs: usize,
    /// New tokens (stop token excluded).
    pub tokens: usize,
    /// Log-mel features of the 30 s window.
    pub front_end_ms: f64,
    pub encoder_ms: f64,
    /// The decoder step over the prompt (computes the cross-attention KV).
    pub first_step_ms: f64,
    /// All later decoder steps together.
    pub steps_ms: f64,
    /// Later decoder steps per second (one token each).
    pub steps_per_s: f64,
    /// Mean time of the first and of the last (up to 10) later steps.
    pub step_ms_start: f64,
    pub step_ms_end: f64,
    pub total_ms: f64,
}

/// Times greedy transcription for each model on `source` tiled to each length (at most one
/// 30 s window): `runs` runs after one warm-up, models interleaved run by run.
pub fn bench_whisper(
    models: &[(String, Whisper)],
    source: &Audio,
    seconds: &[f64],
    max_new: usize,
    runs: usize,
) -> Result<Vec<WhisperBenchRow>> {
    let name = Path::new("bench");
    let mut rows = Vec::new();
    for &secs in seconds {
        let a = tile(source, secs);
        let samples = crate::audio::logmel::to_16k(name, &a.samples, a.sample_rate)?;
        let medians =
            interleaved_medians(models, runs, |(_, w)| run_once(w, name, &samples, max_new))?;
        for ((label, w), med) in models.iter().zip(medians) {
            let med = |k: usize| med[k];
            let steps_ms = med(4);
            let tokens = med(0) as usize;
            let n_steps = med(7);
            rows.push(WhisperBenchRow {
                model: label.clone(),
                backend: w.backend().into(),
                audio_seconds: secs,
                runs,
                tokens,
                front_end_ms: med(1),
                encoder_ms: med(2),
                first_step_ms: med(3),
                steps_ms,
                steps_per_s: n_steps / (steps_ms / 1e3).max(1e-9),
                step_ms_start: med(5),
                step_ms_end: med(6),
                total_ms: med(1) + med(2) + med(3) + steps_ms,
            });
        }
    }
    Ok(rows)
}

/// One transcription: tokens, front end, encoder, first step, later steps (ms), mean ms of
/// the first and last later steps, number of later steps.
fn run_once(w: &Whisper, name: &Path, samples: &[f32], max_new: usize) -> Result<[f64; 8]> {
    let c = &w.config;
    let t = Instant::now();
    let mel = w.features(name, samples)?;
    let front = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let enc = w.encode_features(mel)?;
    let encoder = t.elapsed().as_secs_f64() * 1e3;
    let step = w.step_decoder();
    let dec = Timed::new(&step);
    let o = GenerateOptions {
        max_new_tokens: max_new.min(c.n_text_ctx / 2),
        stop_tokens: vec![c.eot],
        ..Default::default()
    };
    // Whisper's token rules, as `Whisper::transcribe_window` applies them
    let rule = |step: usize, l: &mut [f32]| {
        let begin = if step == 0 {
            &c.begin_suppress_tokens[..]
        } else {
            &[]
        };
        for &t in c.suppress_tokens.iter().chain(begin) {
            if let Some(x) = l.get_mut(t as usize) {
                *x = f32::NEG_INFINITY;
            }
        }
    };
    let cache = WhisperCache::new(c.n_layers, enc);
    let ids = generate(&dec, cache, &c.prompt_notimestamps, &o, &rule, &mut |_| {
        true
    })?;
    let ms = dec.into_ms();
    let first = ms.first().copied().unwrap_or(0.0);
    let later = ms.get(1..).unwrap_or(&[]);
    let k = later.len().min(EDGE);
    Ok([
        ids.len() as f64,
        front,
        encoder,
        first,
        later.iter().sum(),
        mean(&later[..k]),
        mean(&later[later.len() - k..]),
        later.len() as f64,
    ])
}

/// The Whisper benchmark as a Markdown table.
pub fn whisper_markdown(rows: &[WhisperBenchRow]) -> String {
    let mut s = String::from(
        "| model | backend | audio (s) | runs | new tokens | front end (ms) | encoder (ms) | first step (ms) | later steps (ms) | steps/s | ms/step, first 10 | ms/step, last 10 | total (ms) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| `{}` | {} | {:.0} | {} | {} | {:.0} | {:.0} | {:.1} | {:.0} | {:.1} | {:.2} | {:.2} | {:.0} |\n",
            r.model,
            r.backend,
            r.audio_seconds,
            r.runs,
            r.tokens,
            r.front_end_ms,
            r.encoder_ms,
            r.first_step_ms,
            r.steps_ms,
            r.steps_per_s,
            r.step_ms_start,
            r.step_ms_end,
            r.total_ms
        ));
    }
    s
}
