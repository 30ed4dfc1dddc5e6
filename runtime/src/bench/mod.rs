//! Benchmarks, one file per thing measured: [`embed`] (speaker-embedding latency p50/p95,
//! real-time factor, threads), [`engines`] (engine folders per batch size: ONNX Runtime or
//! trtexec) and [`llm`] (Whisper and audio-LLM generation: first token, tokens/s).
//!
//! These are measurements for reports (`voxq bench …`), not pass/fail tests: compare ratios
//! measured in one run, since the machine may be shared.

pub mod embed;
pub mod engines;
pub mod llm;

use crate::audio::wav::Audio;

pub use self::engines::{bench_engines, engines_markdown, EngineLatency, EnginesBench};
pub use embed::{bench_embed, EmbedBench, EmbedBenchRow};
pub use llm::{bench_llm, llm_markdown, GenModel, LlmBenchRow};

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
