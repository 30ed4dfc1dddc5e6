//! `voxq bench embed|engines|llm`: speaker-embedding, engine and generation benchmarks.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use runtime::audio::wav::read_wav;
use runtime::bench::bench_embed;
use runtime::fsutil::write_atomic;
use runtime::speaker::config::SpeakerModel;

use crate::args::{session_options, Device};
use crate::outputs::{self, Input, Output};

#[derive(Subcommand)]
pub(crate) enum BenchCmd {
    /// Speaker-embedding latency, real-time factor, peak RSS.
    Embed(BenchEmbedArgs),
    /// Engine latency by batch size (CPU engines through ONNX Runtime, TensorRT plans through
    /// trtexec), e.g. cpu-fp32 vs cpu-int8, or trt-int8 vs trt-fp16 vs trt-fp32.
    Engines(BenchEnginesArgs),
    /// Generation: time to first token, tokens/s, end-to-end latency, peak RSS for Whisper
    /// folders and audio-LLM configs (e.g. fp32 vs int8) on real speech tiled to each length.
    Llm(BenchLlmArgs),
}

#[derive(Args)]
pub(crate) struct BenchLlmArgs {
    /// Whisper model folders or audio_llm.json files; repeat to compare in one run.
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Real speech to feed (tiled to each length).
    #[arg(long)]
    audio: PathBuf,
    #[arg(long, value_delimiter = ',', default_values_t = [10.0, 30.0])]
    seconds: Vec<f64>,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU), cpu, cuda, tensorrt.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct BenchEnginesArgs {
    /// Engine folders (`voxq build`); the first is the speed-up baseline.
    #[arg(required = true)]
    engines: Vec<PathBuf>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_values_t = [1i64, 8, 32])]
    batches: Vec<i64>,
    /// Length of the other dynamic axes (frames at 10 ms: 300 = 3 s).
    #[arg(long, default_value_t = 300)]
    frames: i64,
    /// Seconds of timing per engine and batch size.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct BenchEmbedArgs {
    /// Speaker model(s) (JSON config or ONNX file); repeat to compare them in one run.
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Real speech to feed (repeated to each length).
    #[arg(long)]
    audio: PathBuf,
    /// Input lengths in seconds.
    #[arg(long, value_delimiter = ',', default_values_t = [3.0, 10.0])]
    seconds: Vec<f64>,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    threads: Vec<usize>,
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(crate) fn run(b: &BenchCmd) -> Result<()> {
    match b {
        BenchCmd::Embed(a) => embed(a),
        BenchCmd::Llm(a) => llm(a),
        BenchCmd::Engines(a) => engines(a),
    }
}

fn embed(a: &BenchEmbedArgs) -> Result<()> {
    let mut inputs = Vec::new();
    for m in &a.model {
        inputs.extend(outputs::speaker_model(m));
    }
    inputs.extend(outputs::audio([&a.audio]));
    let json: Vec<Output> = outputs::stream("--json", &a.json).into_iter().collect();
    outputs::check(&inputs, &json)?;
    let models = a
        .model
        .iter()
        .map(|m| SpeakerModel::locate(m))
        .collect::<Result<Vec<_>, _>>()?;
    let audio = read_wav(&a.audio)?;
    if a.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let r = bench_embed(
        &models,
        &audio,
        &a.audio,
        &a.seconds,
        &a.threads,
        a.iterations,
        a.warmup,
    )
    .context("bench embed")?;
    write!(outputs::summary(&json), "{}", r.markdown())?;
    if let Some(p) = &a.json {
        write_atomic(p, serde_json::to_string_pretty(&r)?.as_bytes())?;
    }
    Ok(())
}

fn llm(a: &BenchLlmArgs) -> Result<()> {
    if a.runs == 0 || a.max_new_tokens == 0 {
        bail!("--runs and --max-new-tokens must be at least 1");
    }
    if a.seconds.iter().any(|s| !(*s > 0.0 && *s <= 30.0)) {
        bail!("--seconds: each length must be more than 0 and at most 30 (one window)");
    }
    let mut inputs = Vec::new();
    for m in &a.model {
        inputs.push(Input::new("an input model", m));
        if m.is_dir() {
            inputs.extend(outputs::whisper_model(m));
        }
    }
    inputs.extend(outputs::audio([&a.audio]));
    let json: Vec<Output> = outputs::stream("--json", &a.json).into_iter().collect();
    outputs::check(&inputs, &json)?;
    let opts = session_options(a.threads, a.device);
    let mut models = Vec::new();
    for m in &a.model {
        let label = m.display().to_string();
        let is_llm = m.extension().is_some_and(|e| e == "json")
            && !m.ends_with(runtime::whisper::CONFIG_FILE)
            || m.join("audio_llm.json").is_file();
        models.push((
            label,
            if is_llm {
                runtime::bench::GenModel::AudioLlm(Box::new(runtime::audio_llm::AudioLlm::open(
                    m, &opts,
                )?))
            } else {
                runtime::bench::GenModel::Whisper(Box::new(runtime::whisper::Whisper::open(
                    m, &opts,
                )?))
            },
        ));
    }
    let audio = read_wav(&a.audio)?;
    let rows = runtime::bench::bench_llm(&models, &audio, &a.seconds, a.max_new_tokens, a.runs)?;
    write!(
        outputs::summary(&json),
        "{}",
        runtime::bench::llm_markdown(&rows)
    )?;
    if let Some(p) = &a.json {
        write_atomic(p, serde_json::to_string_pretty(&rows)?.as_bytes())?;
    }
    Ok(())
}

fn engines(a: &BenchEnginesArgs) -> Result<()> {
    if a.batches.iter().any(|b| *b < 1) || a.frames < 1 {
        bail!("--batches and --frames must be at least 1");
    }
    if !(a.seconds > 0.0 && a.seconds <= 600.0) {
        bail!(
            "--seconds {}: expected more than 0 and at most 600",
            a.seconds
        );
    }
    let mut inputs = Vec::new();
    for e in &a.engines {
        inputs.extend(outputs::model_folder("an input engine folder", e));
    }
    let json: Vec<Output> = outputs::stream("--json", &a.json).into_iter().collect();
    outputs::check(&inputs, &json)?;
    let rows = runtime::bench::bench_engines(&a.engines, &a.batches, a.frames, a.seconds)?;
    write!(
        outputs::summary(&json),
        "{}",
        runtime::bench::engines_markdown(&rows)
    )?;
    if let Some(p) = &a.json {
        write_atomic(p, serde_json::to_string_pretty(&rows)?.as_bytes())?;
    }
    Ok(())
}
