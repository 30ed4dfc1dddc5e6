//! `voxq bench whisper` (per-stage time and steps/s of Whisper transcription by audio length)
//! and `voxq bench lm` (tokens/s of a decoder-only LLM folder by context length).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use runtime::audio::read_audio;

use super::bench::report;
use crate::args::{int, max_new_tokens, real_gt, session_options, threads, threads_help, Device};
use crate::outputs::{self, Input, Output};

/// Shown after `voxq bench whisper --help`.
pub(crate) const WHISPER_EXAMPLES: &str = "Examples:\n  voxq bench whisper --model .cache/whisper/tiny.en/onnx --audio a.wav --audio b.wav --seconds 10,30 --threads 1\n  voxq bench whisper --model FP32_DIR --model INT8_DIR --audio a.wav --runs 5 --json whisper.json";
/// Shown after `voxq bench lm --help`.
pub(crate) const LM_EXAMPLES: &str = "Examples:\n  voxq bench lm --model .cache/llm/smollm2/onnx --context 32,128,512 --threads 1\n  voxq bench lm --model LLM_DIR --context 128 --max-new-tokens 32 --runs 5 --json lm.json";

#[derive(Args)]
pub(crate) struct BenchWhisperArgs {
    /// Whisper model folders; repeat to compare in one run (interleaved).
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Real speech; repeat to join several files end to end (then tiled to each length).
    #[arg(long, required = true)]
    audio: Vec<PathBuf>,
    /// Input lengths in seconds, comma-separated; each at most one 30 s window
    /// [range: (0, 30]].
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',', default_values_t = [10.0, 30.0],
        value_parser = real_gt(0.0, 30.0))]
    seconds: Vec<f64>,
    /// Most tokens generated per run (Whisper's own cap is half its text context)
    /// [range: [1, 4096]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 224, value_parser = max_new_tokens())]
    max_new_tokens: usize,
    /// Timed runs per model and length, after one warm-up [range: [1, 1000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 3, value_parser = int(1usize, 1000))]
    runs: usize,
    /// Audio contexts to compare, comma-separated (each model runs with each; see
    /// `voxq transcribe --help`): full, auto or a number of encoder positions.
    #[arg(long, value_delimiter = ',', default_value = "full")]
    audio_ctx: Vec<runtime::whisper::AudioCtx>,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("ONNX Runtime intra-op threads (0 = ONNX Runtime's default)"))]
    threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU), cpu, cuda, tensorrt.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct BenchLmArgs {
    /// LLM folders (llm.json, decoder, embeddings, tokenizer); repeat to compare (interleaved).
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Prompt lengths in tokens, comma-separated [range: [1, 8192]].
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',', default_values_t = [32usize, 128, 512],
        value_parser = int(1usize, 8192))]
    context: Vec<usize>,
    /// New tokens per run, all generated (stop tokens ignored) [range: [1, 4096]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 64, value_parser = max_new_tokens())]
    max_new_tokens: usize,
    /// Timed runs per model and context, after one warm-up [range: [1, 1000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 3, value_parser = int(1usize, 1000))]
    runs: usize,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("ONNX Runtime intra-op threads (0 = ONNX Runtime's default)"))]
    threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU), cpu, cuda, tensorrt.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(crate) fn whisper(a: &BenchWhisperArgs) -> Result<()> {
    let mut inputs = Vec::new();
    for m in &a.model {
        inputs.extend(outputs::whisper_model(m));
    }
    inputs.extend(outputs::audio(&a.audio));
    let json: Vec<Output> = outputs::stream("--json", &a.json).into_iter().collect();
    outputs::check(&inputs, &json)?;
    let opts = session_options(a.threads, a.device);
    let mut models = Vec::new();
    for m in &a.model {
        for &ctx in &a.audio_ctx {
            let mut w = runtime::whisper::Whisper::open(m, &opts)?;
            w.set_audio_ctx(ctx)?;
            let label = match (a.audio_ctx.len(), ctx) {
                (1, runtime::whisper::AudioCtx::Full) => m.display().to_string(),
                _ => format!("{} [audio-ctx {ctx}]", m.display()),
            };
            models.push((label, w));
        }
    }
    let mut samples = Vec::new();
    for p in &a.audio {
        let x = read_audio(p)?;
        samples.extend(runtime::audio::logmel::to_16k(
            p,
            &x.samples,
            x.sample_rate,
        )?);
    }
    let audio = runtime::audio::wav::Audio {
        samples,
        sample_rate: runtime::audio::logmel::SAMPLE_RATE,
    };
    let rows = runtime::bench::bench_whisper(&models, &audio, &a.seconds, a.max_new_tokens, a.runs)
        .context("bench whisper")?;
    report(
        &json,
        a.json.as_deref(),
        &runtime::bench::whisper_markdown(&rows),
        &rows,
    )?;
    Ok(())
}

pub(crate) fn lm(a: &BenchLmArgs) -> Result<()> {
    let mut inputs = Vec::new();
    for m in &a.model {
        inputs.push(Input::new("an input LLM folder", m));
    }
    let json: Vec<Output> = outputs::stream("--json", &a.json).into_iter().collect();
    outputs::check(&inputs, &json)?;
    let opts = session_options(a.threads, a.device);
    let mut models = Vec::new();
    for m in &a.model {
        models.push((m.display().to_string(), runtime::llm::Llm::open(m, &opts)?));
    }
    let rows = runtime::bench::bench_lm(&models, &a.context, a.max_new_tokens, a.runs)
        .context("bench lm")?;
    report(
        &json,
        a.json.as_deref(),
        &runtime::bench::lm_markdown(&rows),
        &rows,
    )?;
    Ok(())
}
