//! `voxq bench embed|engines|llm|whisper|lm`: speaker-embedding, engine and generation
//! benchmarks (`whisper` and `lm`: [`super::bench_decode`]).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use runtime::audio::read_audio;
use runtime::bench::bench_embed;
use runtime::fsutil::write_atomic;
use runtime::speaker::config::SpeakerModel;

use crate::args::{int, max_new_tokens, real_gt, session_options, threads, threads_help, Device};
use crate::outputs::{self, Input, Output};

/// Largest batch x frames of `bench engines` (e.g. 32 x 3000): one input of 100000 frames of 80
/// features is 32 MB, and a model's activations are many times that.
const MAX_BATCH_FRAMES: i64 = 100_000;

/// Shown after `voxq bench embed --help`.
const EMBED_EXAMPLES: &str = "Examples:\n  voxq bench embed --model out/demo/engines/fp32 --model out/demo/engines/autoquant --audio a.wav --seconds 3 --threads 1\n  voxq bench embed --model fixtures/models/campplus.json --audio a.wav --seconds 3,10 --threads 1,2 --iterations 30 --json latency.json";
/// Shown after `voxq bench engines --help`.
const ENGINES_EXAMPLES: &str = "Examples:\n  voxq bench engines out/engines/campplus/cpu-fp32 out/engines/campplus/cpu-int8 --batches 1,8 --seconds 3\n  voxq bench engines engines/trt-int8 engines/trt-fp16 --batches 1,8,32 --frames 300 --json engines.json";
/// Shown after `voxq bench llm --help`.
const LLM_EXAMPLES: &str = "Examples:\n  voxq bench llm --model WHISPER_DIR --model INT8_DIR --audio a.wav --seconds 10,30\n  voxq bench llm --model audio_llm.json --audio a.wav --seconds 10 --max-new-tokens 32 --runs 3";
/// Shown after `voxq bench --help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq bench embed --model fixtures/models/campplus.json --audio a.wav --seconds 3\n  voxq bench engines out/engines/campplus/cpu-fp32 out/engines/campplus/cpu-int8 --batches 1,8\n  voxq bench llm --model WHISPER_DIR --audio a.wav --seconds 10,30";

#[derive(Subcommand)]
pub(crate) enum BenchCmd {
    /// Speaker-embedding latency, real-time factor, peak RSS.
    #[command(after_help = EMBED_EXAMPLES)]
    Embed(BenchEmbedArgs),
    /// Engine latency by batch size (CPU engines through ONNX Runtime, TensorRT plans through
    /// trtexec), e.g. cpu-fp32 vs cpu-int8, or trt-int8 vs trt-fp16 vs trt-fp32.
    #[command(after_help = ENGINES_EXAMPLES)]
    Engines(BenchEnginesArgs),
    /// Generation: time to first token, tokens/s, end-to-end latency, peak RSS for Whisper
    /// folders and audio-LLM configs (e.g. fp32 vs int8) on real speech tiled to each length.
    #[command(after_help = LLM_EXAMPLES)]
    Llm(BenchLlmArgs),
    /// Whisper transcription time per stage (front end, encoder, first decoder step, later
    /// steps) and decoder steps/s by audio length.
    #[command(after_help = super::bench_decode::WHISPER_EXAMPLES)]
    Whisper(super::bench_decode::BenchWhisperArgs),
    /// A decoder-only LLM folder's prompt-step time and tokens/s by context length.
    #[command(after_help = super::bench_decode::LM_EXAMPLES)]
    Lm(super::bench_decode::BenchLmArgs),
}

#[derive(Args)]
pub(crate) struct BenchLlmArgs {
    /// Whisper model folders or audio_llm.json files; repeat to compare in one run.
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Real speech to feed (tiled to each length).
    #[arg(long)]
    audio: PathBuf,
    /// Input lengths in seconds, comma-separated; each at most one 30 s window
    /// [range: (0, 30]].
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',', default_values_t = [10.0, 30.0],
        value_parser = real_gt(0.0, 30.0))]
    seconds: Vec<f64>,
    /// Most tokens generated per run [range: [1, 4096]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 64, value_parser = max_new_tokens())]
    max_new_tokens: usize,
    /// Timed runs per model and length [range: [1, 1000]].
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

#[derive(Args)]
pub(crate) struct BenchEnginesArgs {
    /// Engine folders (`voxq build`); the first is the speed-up baseline.
    #[arg(required = true)]
    engines: Vec<PathBuf>,
    /// Batch sizes, comma-separated [range: [1, 1024]]; batch x frames is at most
    /// 100000 (e.g. 32 x 3000).
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',', default_values_t = [1i64, 8, 32],
        value_parser = int(1i64, 1024))]
    batches: Vec<i64>,
    /// Lengths of the other dynamic axes, comma-separated (frames at 10 ms: 300 = 3 s)
    /// [range: [1, 30000]].
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',', default_values_t = [300i64],
        value_parser = int(1i64, 30000))]
    frames: Vec<i64>,
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',', default_values_t = [0usize],
        value_parser = threads(),
        help = threads_help("Threads per engine, comma-separated (0 = the engine's own setting)"))]
    threads: Vec<usize>,
    /// Seconds of timing per engine and setting; engines run in turns [range: (0, 600]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 3.0, value_parser = real_gt(0.0, 600.0))]
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
    /// Input lengths in seconds, comma-separated [range: (0, 300]].
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',', default_values_t = [3.0, 10.0],
        value_parser = real_gt(0.0, 300.0))]
    seconds: Vec<f64>,
    #[arg(long, allow_hyphen_values = true, value_delimiter = ',', default_values_t = [1usize, 2], value_parser = threads(),
        help = threads_help("Thread counts to measure, comma-separated (0 = ONNX Runtime's default)"))]
    threads: Vec<usize>,
    /// Timed runs per model, length and thread count [range: [1, 10000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 30, value_parser = int(1usize, 10000))]
    iterations: usize,
    /// Untimed runs before them [range: [0, 1000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 3, value_parser = int(0usize, 1000))]
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
        BenchCmd::Whisper(a) => super::bench_decode::whisper(a),
        BenchCmd::Lm(a) => super::bench_decode::lm(a),
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
    let audio = read_audio(&a.audio)?;
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
    report(&json, a.json.as_deref(), &r.markdown(), &r)?;
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
    let audio = read_audio(&a.audio)?;
    let rows = runtime::bench::bench_llm(&models, &audio, &a.seconds, a.max_new_tokens, a.runs)?;
    report(
        &json,
        a.json.as_deref(),
        &runtime::bench::llm_markdown(&rows),
        &rows,
    )?;
    Ok(())
}

fn engines(a: &BenchEnginesArgs) -> Result<()> {
    let frames = a.frames.iter().max().copied().unwrap_or(1);
    if let Some(b) = a.batches.iter().find(|&&b| b * frames > MAX_BATCH_FRAMES) {
        bail!("--batches {b} with --frames {frames}: batch x frames must be at most {MAX_BATCH_FRAMES}");
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
    let cfg = runtime::bench::EnginesBench {
        batches: a.batches.clone(),
        frames: a.frames.clone(),
        threads: a.threads.clone(),
        seconds: a.seconds,
    };
    let rows = runtime::bench::bench_engines(&a.engines, &cfg)?;
    report(
        &json,
        a.json.as_deref(),
        &runtime::bench::engines_markdown(&rows),
        &rows,
    )?;
    Ok(())
}

/// A benchmark's result: the Markdown table on standard output (or standard error when the
/// JSON goes to standard output), the rows as JSON to `--json` when given.
pub(crate) fn report<T: serde::Serialize>(
    json_out: &[Output],
    json: Option<&std::path::Path>,
    markdown: &str,
    rows: &T,
) -> Result<()> {
    write!(outputs::summary(json_out), "{markdown}")?;
    if let Some(p) = json {
        write_atomic(p, serde_json::to_string_pretty(rows)?.as_bytes())?;
    }
    Ok(())
}
