//! Benchmarks, one file per thing measured: [`embed`] (speaker-embedding latency p50/p95,
//! real-time factor, threads), [`engines`] (engine folders per batch size: ONNX Runtime or
//! trtexec), [`llm`] (Whisper and audio-LLM generation: first token, tokens/s), [`whisper`]
//! (Whisper's time per stage and per decoder step by audio length) and [`lm`] (an LLM
//! folder's tokens/s by context length).
//!
//! These are measurements for reports (`voxq bench …`), not pass/fail tests: compare ratios
//! measured in one run, since the machine may be shared.

pub mod embed;
pub mod engines;
pub mod llm;
pub mod lm;
pub mod whisper;

use std::cell::RefCell;
use std::time::Instant;

use crate::audio::wav::Audio;
use crate::error::Result;
use crate::generation::StepDecoder;

pub use self::engines::{bench_engines, engines_markdown, EngineLatency, EnginesBench};
pub use embed::{bench_embed, EmbedBench, EmbedBenchRow};
pub use llm::{bench_llm, llm_markdown, GenModel, LlmBenchRow};
pub use lm::{bench_lm, lm_markdown, LmBenchRow};
pub use whisper::{bench_whisper, whisper_markdown, WhisperBenchRow};

/// The audio the benchmark feeds: `seconds` of `source` repeated end to end.
pub fn tile(source: &Audio, seconds: f64) -> Audio {
    let n = (seconds * source.sample_rate as f64).round() as usize;
    let samples = source.samples.iter().copied().cycle().take(n).collect();
    Audio {
        samples,
        sample_rate: source.sample_rate,
    }
}

/// Linear-interpolated quantile `q` of sorted values (NaN when empty).
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
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

/// A decoder step that records how long each call takes (ms), for the decode benchmarks.
pub(crate) struct Timed<'a, D> {
    inner: &'a D,
    ms: RefCell<Vec<f64>>,
}

impl<'a, D: StepDecoder> Timed<'a, D> {
    pub(crate) fn new(inner: &'a D) -> Self {
        Timed {
            inner,
            ms: RefCell::new(Vec::new()),
        }
    }

    /// The time of each step, in order.
    pub(crate) fn into_ms(self) -> Vec<f64> {
        self.ms.into_inner()
    }
}

impl<D: StepDecoder> StepDecoder for Timed<'_, D> {
    type State = D::State;
    fn step(&self, st: &mut D::State, new: &[u32]) -> Result<Vec<f32>> {
        let t = Instant::now();
        let r = self.inner.step(st, new);
        self.ms.borrow_mut().push(t.elapsed().as_secs_f64() * 1e3);
        r
    }
}

/// Mean of values (0 when empty).
/// Interleaved timing: one warm-up round, then `runs` rounds that each run every model once;
/// per model, the median over the rounds of each of the `N` quantities `once` returns.
pub(crate) fn interleaved_medians<M, const N: usize>(
    models: &[M],
    runs: usize,
    mut once: impl FnMut(&M) -> Result<[f64; N]>,
) -> Result<Vec<[f64; N]>> {
    let mut m: Vec<[Vec<f64>; N]> = (0..models.len())
        .map(|_| std::array::from_fn(|_| Vec::new()))
        .collect();
    for r in 0..=runs {
        for (i, model) in models.iter().enumerate() {
            let x = once(model)?;
            if r > 0 {
                for (v, x) in m[i].iter_mut().zip(x) {
                    v.push(x);
                }
            }
        }
    }
    Ok(m.into_iter()
        .map(|mut v| {
            std::array::from_fn(|k| {
                v[k].sort_by(|a, b| a.total_cmp(b));
                percentile(&v[k], 0.5)
            })
        })
        .collect())
}

pub(crate) fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}
