//! voxq command line: argument types, calls into the libraries, exit codes.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use engines::ort::CpuOptions;
use runtime::audio::wav::read_wav;
use runtime::bench::bench_embed;
use runtime::fsutil::write_atomic;
use runtime::speaker::config::SpeakerModel;
use runtime::speaker::embed::Embedder;
use runtime::speaker::eval::{embedding_line, evaluate, write_embeddings, write_scores};
use runtime::speaker::metrics::{operating_points, DcfParams};
use runtime::speaker::plot::{det_png, DetCurve};
use runtime::speaker::store::Store;
use runtime::speaker::trials::read_trials;

mod quant;
mod sensitivity;
mod serve;

#[derive(Parser)]
#[command(
    name = "voxq",
    version,
    about = "Quantize audio models to int8, build engines, serve them"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compute speaker embeddings of WAV files.
    Embed(EmbedArgs),
    /// Enroll a speaker from one or more WAV files (mean of L2-normalised embeddings).
    Enroll(EnrollArgs),
    /// Score a WAV file against an enrolled speaker and decide accept/reject.
    Verify(VerifyArgs),
    /// Rank enrolled speakers by similarity to a WAV file.
    Identify(IdentifyArgs),
    /// Evaluate a model on a trial list: EER, minDCF, score file, DET curve.
    Eval(EvalArgs),
    /// Collect activation ranges from real audio into calibration table(s).
    Calibrate(CalibrateArgs),
    /// Insert int8 QuantizeLinear/DequantizeLinear nodes from a calibration table.
    Quantize(QuantizeArgs),
    /// List a model's layer groups, ops and sizes; with --qdq check it against TensorRT's rules.
    Inspect(InspectArgs),
    /// Build a deployable engine folder (model + manifest) from an fp32 or QDQ ONNX model.
    Build(BuildArgs),
    /// Write a Triton Inference Server model repository from engine folders.
    ExportTriton(ExportTritonArgs),
    /// Quantize one layer group at a time and measure the metric and size of each.
    Sensitivity(SensitivityArgs),
    /// Choose the groups to quantize: the smallest model within a metric budget.
    Autoquant(AutoquantArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Speech to text with a Whisper model folder (whisper.json, encoder.onnx, decoder.onnx
    /// with KV cache, tokenizer.json); audio over 30 s is cut into 30 s windows.
    Transcribe(TranscribeArgs),
    /// Audio LLM (Whisper encoder -> projector -> LLM): answer a task about the audio, tokens
    /// streamed to standard output as they are generated.
    Generate(GenerateArgs),
    /// Whisper int8: calibrate encoder and decoder on real audio (greedy decoding with the KV
    /// cache), insert Q/DQ with per-channel weights, write a new model folder.
    QuantizeWhisper(QuantizeWhisperArgs),
    /// HTTP server: speaker verification, transcription and audio-LLM chat (docs/server.md).
    Serve(serve::ServeArgs),
    /// Check an enrollment store (SQLite `PRAGMA integrity_check`); prints `ok`.
    StoreCheck(serve::StoreCheckArgs),
}

#[derive(Args)]
pub(crate) struct CalibrateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Calibration list: one audio path per line, relative to --audio-root.
    #[arg(long)]
    calib: PathBuf,
    #[arg(long)]
    audio_root: PathBuf,
    /// Calibration method(s): max, percentile[:P], entropy, mse (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_values_t = ["entropy".to_string()])]
    method: Vec<String>,
    /// Output table (one method), or a folder that gets `<method>.json` per method.
    #[arg(long)]
    out: PathBuf,
    /// Also write the first method's table as a TensorRT calibration cache.
    #[arg(long)]
    trt_cache: Option<PathBuf>,
    /// Histogram bins per tensor.
    #[arg(long, default_value_t = 2048)]
    bins: usize,
    /// One pass instead of two (abs-max, then histograms at that range): half the time,
    /// coarser histograms for entropy/MSE/percentile.
    #[arg(long)]
    single_pass: bool,
    /// Convs with fewer input or output channels are left in float.
    #[arg(long, default_value_t = 16)]
    min_channels: usize,
    #[arg(long)]
    quiet: bool,
}

/// Which layer groups and nodes to quantize.
#[derive(Args)]
pub(crate) struct SelectArgs {
    /// Layer groups: preset:NAME, depth=N, or a group spec JSON file.
    #[arg(long, default_value = "depth=2")]
    groups: String,
    /// Quantize only these: group:NAME, node:REGEX, op:TYPE (repeatable).
    #[arg(long)]
    include: Vec<String>,
    /// Leave these in float: group:NAME, node:REGEX, op:TYPE (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
}

#[derive(Args)]
pub(crate) struct QuantizeArgs {
    /// fp32 ONNX model (a JSON config beside it is copied for the output).
    model: PathBuf,
    /// Calibration table (JSON) from `voxq calibrate`, or a TensorRT calibration cache.
    #[arg(long)]
    table: PathBuf,
    /// Output QDQ model.
    #[arg(long)]
    out: PathBuf,
    /// QDQ placement: tensorrt (Q/DQ on weighted-op inputs) or ort-cpu (also on their outputs).
    #[arg(long, default_value = "tensorrt")]
    target: String,
    #[command(flatten)]
    select: SelectArgs,
    #[arg(long, default_value_t = 16)]
    min_channels: usize,
    /// Cast the parts left in float to float16 (TensorRT strongly typed builds).
    #[arg(long)]
    float16: bool,
    /// Write a JSON report (quantized/skipped nodes, Q/DQ counts, fp32 and int8 sizes) here.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct SensitivityArgs {
    /// Speaker model: its JSON config, or its ONNX file with a JSON config beside it.
    model: PathBuf,
    /// Calibration list (audio paths relative to --audio-root): calibrates the table (unless
    /// --table) and feeds the label-free SQNR metric.
    #[arg(long)]
    calib: PathBuf,
    /// Trial list for the EER metric (`<1|0> <enroll> <test> [xlang]`).
    #[arg(long)]
    trials: Option<PathBuf>,
    /// Folder the calibration and trial lists are relative to.
    #[arg(long)]
    audio_root: PathBuf,
    /// eer (needs --trials), sqnr (output SQNR and cosine vs fp32 on the calibration audio),
    /// or auto (eer when --trials is given).
    #[arg(long, default_value = "auto")]
    metric: String,
    /// Layer groups: preset:NAME, depth=N, or a group spec JSON file.
    #[arg(long, default_value = "depth=2")]
    groups: String,
    /// Calibration method when the table is computed here: max, percentile[:P], entropy, mse.
    #[arg(long, default_value = "entropy")]
    method: String,
    /// Use this calibration table instead of calibrating.
    #[arg(long)]
    table: Option<PathBuf>,
    /// QDQ placement: tensorrt or ort-cpu.
    #[arg(long, default_value = "tensorrt")]
    target: String,
    #[arg(long, default_value_t = 16)]
    min_channels: usize,
    /// Cast the parts left in float to float16.
    #[arg(long)]
    float16: bool,
    /// Folder of cached measurements and tables (default .voxq-cache/sensitivity).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Measure everything again (the cache is neither read nor written).
    #[arg(long)]
    no_cache: bool,
    /// Report folder: sensitivity.{md,json,png} (autoquant adds its model and report).
    #[arg(long)]
    out: PathBuf,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct AutoquantArgs {
    #[command(flatten)]
    common: SensitivityArgs,
    /// Largest allowed EER increase in percentage points (0.10 = +0.10% absolute).
    #[arg(long)]
    max_increase: Option<f64>,
    /// Smallest allowed output SQNR in dB (with --metric sqnr).
    #[arg(long)]
    min_sqnr: Option<f64>,
}

#[derive(Args)]
struct BuildArgs {
    /// fp32 or int8 QDQ ONNX model (a JSON config beside it is copied into the engine).
    model: PathBuf,
    /// Engine kind. cpu: ONNX Runtime CPU (optimised model, manifest, warm-up run);
    /// tensorrt: a trtexec plan (strongly typed for QDQ models), its layer report and an
    /// EPContext model; tensorrt-ort: ONNX Runtime's TensorRT execution provider (engine cache
    /// and EPContext model).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "tensorrt", "tensorrt-ort"])]
    target: String,
    /// TensorRT shape profile name:MIN:OPT:MAX, e.g. feats:1x100x80:8x300x80:32x3000x80
    /// (repeatable; dynamic inputs not named get batch 1/8/32 and frames 100/300/3000).
    #[arg(long)]
    profile: Vec<String>,
    /// TensorRT precision: auto (int8 for a QDQ model, fp16 for a float one), fp16, fp32.
    #[arg(long, default_value = "auto", value_parser = ["auto", "fp16", "fp32"])]
    precision: String,
    /// Engine folder to create (replaced only when the build succeeds).
    #[arg(long)]
    out: PathBuf,
    /// Graph optimisation level the engine is loaded with (0-3).
    #[arg(long, default_value_t = 3)]
    opt_level: u8,
    /// Intra-op threads recorded for the engine (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Args)]
struct ExportTritonArgs {
    /// Engine folders (`voxq build`); each becomes a repository entry named after its
    /// parent and folder, e.g. out/engines/campplus/cpu-int8 -> campplus_cpu-int8.
    #[arg(required = true)]
    engines: Vec<PathBuf>,
    /// Repository folder to write into.
    #[arg(long)]
    repo: PathBuf,
    /// Largest batch Triton forms (0: no batching; the model's batch axis is then explicit).
    #[arg(long, default_value_t = 32)]
    max_batch_size: u32,
    /// Model instances per device.
    #[arg(long, default_value_t = 1)]
    instances: u32,
    /// Serve ONNX engines on GPUs (QDQ models get TensorRT INT8 acceleration).
    #[arg(long)]
    gpu: bool,
    /// Dynamic batching queue delay.
    #[arg(long, default_value_t = 1000)]
    max_queue_delay_us: u64,
}

#[derive(Args)]
pub(crate) struct InspectArgs {
    model: PathBuf,
    /// Layer groups: preset:NAME, depth=N, or a group spec JSON file.
    #[arg(long, default_value = "depth=2")]
    groups: String,
    /// Check Q/DQ placement against TensorRT's explicit-quantization rules (exit 1 on violations).
    #[arg(long)]
    qdq: bool,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct ModelArgs {
    /// Speaker model: its JSON config, or its ONNX file with a JSON config beside it.
    #[arg(long)]
    model: PathBuf,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU; the choice is logged with
    /// RUST_LOG=info), cpu, cuda, tensorrt (an explicit one that is missing is an error).
    #[arg(long, default_value = "auto", value_parser = ["auto", "cpu", "cuda", "tensorrt"])]
    device: String,
}

/// ONNX Runtime session options from `--threads` and `--device`.
fn session_options(threads: usize, device: &str) -> Result<CpuOptions> {
    Ok(CpuOptions {
        intra_threads: threads,
        device: device.parse()?,
        ..CpuOptions::default()
    })
}

impl ModelArgs {
    fn open(&self) -> Result<Embedder> {
        let model = SpeakerModel::locate(&self.model)?;
        Ok(Embedder::open(
            model,
            &session_options(self.threads, &self.device)?,
        )?)
    }
}

#[derive(Args)]
struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Write `path<TAB>values` lines here (atomically) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// WAV files.
    #[arg(required = true)]
    audio: Vec<PathBuf>,
}

/// A model and the enrollment store made with it.
#[derive(Args)]
struct StoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Enrollment store: a SQLite database (.db / .sqlite: durable, WAL, one transaction per
    /// enrollment) or a JSON file; `enroll` creates it if missing.
    #[arg(long)]
    store: PathBuf,
}

#[derive(Args)]
struct EnrollArgs {
    #[command(flatten)]
    at: StoreArgs,
    /// Speaker name.
    #[arg(long)]
    speaker: String,
    #[arg(required = true)]
    audio: Vec<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    at: StoreArgs,
    #[arg(long)]
    speaker: String,
    /// Decision threshold on the cosine score (default: the model config's `threshold`).
    #[arg(long)]
    threshold: Option<f64>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    audio: PathBuf,
}

#[derive(Args)]
struct IdentifyArgs {
    #[command(flatten)]
    at: StoreArgs,
    /// How many candidates to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[arg(long)]
    json: bool,
    audio: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Trial list: `<1|0> <enroll> <test> [xlang]` per line.
    #[arg(long)]
    trials: PathBuf,
    /// Folder the trial list's paths are relative to.
    #[arg(long)]
    audio_root: PathBuf,
    /// Write a score file here.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Write a DET-curve PNG here.
    #[arg(long)]
    det: Option<PathBuf>,
    /// Write the metrics as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write per-utterance embeddings (`name<TAB>values`) here.
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// Target prior for minDCF.
    #[arg(long, default_value_t = 0.01)]
    p_target: f64,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct GenerateArgs {
    /// Audio-LLM config (audio_llm.json) or its folder.
    #[arg(long)]
    model: PathBuf,
    /// asr, caption or qa (qa needs --question).
    #[arg(long, default_value = "asr")]
    task: String,
    /// A custom user prompt holding <SpeechHere> exactly once (instead of the task's).
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long)]
    question: Option<String>,
    /// Beam search with this many beams (1 = greedy or sampling).
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU), cpu, cuda, tensorrt.
    #[arg(long, default_value = "auto", value_parser = ["auto", "cpu", "cuda", "tensorrt"])]
    device: String,
    /// WAV file (at most 30 s).
    audio: PathBuf,
}

fn cmd_generate(a: &GenerateArgs) -> Result<()> {
    let o = runtime::generation::GenerateOptions::from_choices(
        &runtime::generation::GenerationChoices {
            beams: a.beams,
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            seed: a.seed,
            repetition_penalty: a.repetition_penalty,
            max_new_tokens: a.max_new_tokens,
        },
    )?;
    let m = runtime::audio_llm::AudioLlm::open(&a.model, &session_options(a.threads, &a.device)?)?;
    let user = m.user_turn(&a.task, a.prompt.as_deref(), a.question.as_deref())?;
    let audio = runtime::audio::wav::read_wav(&a.audio)?;
    use std::io::Write;
    let mut shown = String::new();
    let mut so_far = Vec::new();
    let mut failed = None;
    let ids = m.generate(
        &a.audio,
        &audio.samples,
        audio.sample_rate,
        &user,
        &o,
        &mut |t| {
            so_far.push(t);
            match m.llm.decode(&so_far) {
                Ok(text) => {
                    if let Some(rest) = text.strip_prefix(&shown) {
                        print!("{rest}");
                        let _ = std::io::stdout().flush();
                    }
                    shown = text;
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    println!();
    log::info!("{} new tokens: {ids:?}", ids.len());
    Ok(())
}

#[derive(Args)]
struct TranscribeArgs {
    /// Whisper model folder.
    #[arg(long)]
    model: PathBuf,
    /// Beam search with this many beams (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// Most tokens per 30 s window (capped at half the text context).
    #[arg(long, default_value_t = 224)]
    max_new_tokens: usize,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU), cpu, cuda, tensorrt.
    #[arg(long, default_value = "auto", value_parser = ["auto", "cpu", "cuda", "tensorrt"])]
    device: String,
    /// Write `path<TAB>text` lines here (atomically) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// WAV files.
    #[arg(required = true)]
    audio: Vec<PathBuf>,
}

fn cmd_transcribe(a: &TranscribeArgs) -> Result<()> {
    let o = runtime::generation::GenerateOptions::from_choices(
        &runtime::generation::GenerationChoices {
            beams: a.beams,
            max_new_tokens: a.max_new_tokens,
            ..Default::default()
        },
    )?;
    let w = runtime::whisper::Whisper::open(&a.model, &session_options(a.threads, &a.device)?)?;
    let mut lines = String::new();
    for p in &a.audio {
        let text = w.transcribe_file(p, &o)?;
        lines.push_str(&format!("{}\t{}\n", p.display(), text));
    }
    match &a.out {
        Some(f) => write_atomic(f, lines.as_bytes())?,
        None => print!("{lines}"),
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct QuantizeWhisperArgs {
    /// Whisper model folder (float).
    #[arg(long)]
    model: PathBuf,
    /// Calibration audio list (one path per line, relative to --audio-root).
    #[arg(long)]
    calib: PathBuf,
    #[arg(long, default_value = ".cache/speech")]
    audio_root: PathBuf,
    /// Calibration method (max, percentile:P, entropy, mse).
    #[arg(long, default_value = "entropy")]
    method: String,
    /// QDQ placement: ort-cpu (ONNX Runtime CPU kernels) or tensorrt.
    #[arg(long, default_value = "ort-cpu")]
    target: String,
    #[arg(long, default_value_t = 2048)]
    bins: usize,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Encoder nodes to quantize: node:REGEX, op:TYPE (repeatable; default all weighted nodes).
    #[arg(long)]
    encoder_include: Vec<String>,
    /// Decoder nodes to quantize (repeatable). The default keeps the self-attention and MLP
    /// projections in float: with per-tensor int8 activations their LayerNorm/GELU inputs
    /// (outlier channels) wreck the transcripts of tiny.en (measured: see README).
    #[arg(long, default_values_t = ["node:encoder_attn".to_string(), "node:proj_out".to_string()])]
    decoder_include: Vec<String>,
    /// Output model folder (created only when everything succeeded).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum BenchCmd {
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
struct BenchLlmArgs {
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
    #[arg(long, default_value = "auto", value_parser = ["auto", "cpu", "cuda", "tensorrt"])]
    device: String,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct BenchEnginesArgs {
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
struct BenchEmbedArgs {
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

fn cmd_embed(a: &EmbedArgs) -> Result<()> {
    let emb = a.model.open()?;
    let mut all = std::collections::BTreeMap::new();
    let mut order = Vec::new();
    for p in &a.audio {
        let name = p.display().to_string();
        all.insert(name.clone(), emb.embed_file(p)?);
        order.push(name);
    }
    match &a.out {
        Some(path) => write_embeddings(path, &all)?,
        None => {
            let mut out = std::io::stdout().lock();
            for name in order {
                writeln!(out, "{}", embedding_line(&name, &all[&name]))?;
            }
        }
    }
    Ok(())
}

/// `--store`: a SQLite database (`.db`, `.sqlite`: durable, WAL) or a JSON file.
fn is_db(p: &std::path::Path) -> bool {
    p.extension()
        .is_some_and(|e| e == "db" || e == "sqlite" || e == "sqlite3")
}

fn cmd_enroll(a: &EnrollArgs) -> Result<()> {
    let emb = a.at.model.open()?;
    let cfg = &emb.model().config;
    // Embed everything first: a bad file leaves the store untouched.
    let embs = a
        .audio
        .iter()
        .map(|p| emb.embed_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    let total = if is_db(&a.at.store) {
        let db = runtime::speaker::db::SpeakerDb::open(&a.at.store)?;
        db.enroll(&a.speaker, &cfg.name, emb.model_sha256()?, &embs)?
            .utterances as usize
    } else {
        let mut store = Store::open_or_new(
            &a.at.store,
            &cfg.name,
            emb.model_sha256()?,
            cfg.embedding_dim,
        )?;
        let n = store.enroll(&a.speaker, &embs)?.utterances;
        store.save()?;
        n
    };
    println!(
        "enrolled '{}': {} utterance(s) in total, store {}",
        a.speaker,
        total,
        a.at.store.display()
    );
    Ok(())
}

/// An opened enrollment store of either kind.
enum AnyStore {
    Json(Store),
    Db(runtime::speaker::db::SpeakerDb),
}

impl StoreArgs {
    /// Opens the model and the existing store, refusing a store made with another model.
    fn open(&self) -> Result<(Embedder, AnyStore)> {
        let emb = self.model.open()?;
        if is_db(&self.store) {
            return Ok((
                emb,
                AnyStore::Db(runtime::speaker::db::SpeakerDb::open_existing(&self.store)?),
            ));
        }
        let store = Store::open(&self.store)?;
        store.check_model(emb.model_sha256()?)?;
        Ok((emb, AnyStore::Json(store)))
    }
}

fn cmd_verify(a: &VerifyArgs) -> Result<()> {
    let (emb, store) = a.at.open()?;
    let threshold = match a.threshold.or(emb.model().config.threshold) {
        Some(t) => t,
        None => bail!(
            "{}: the model config has no calibrated `threshold`; pass --threshold",
            emb.model().config_path.display()
        ),
    };
    let e = emb.embed_file(&a.audio)?;
    let score = match &store {
        AnyStore::Json(s) => s.score(&a.speaker, &e)?,
        AnyStore::Db(db) => db.score(&a.speaker, emb.model_sha256()?, &e)?,
    };
    let accept = score >= threshold;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"speaker": a.speaker, "score": score, "threshold": threshold,
                "decision": if accept {"accept"} else {"reject"}})
        );
    } else {
        println!(
            "speaker={} score={score:.4} threshold={threshold:.4} decision={}",
            a.speaker,
            if accept { "accept" } else { "reject" }
        );
    }
    Ok(())
}

fn cmd_identify(a: &IdentifyArgs) -> Result<()> {
    let (emb, store) = a.at.open()?;
    let e = emb.embed_file(&a.audio)?;
    let top = match &store {
        AnyStore::Json(s) => s.identify(&e, a.top.max(1)),
        AnyStore::Db(db) => db.identify(emb.model_sha256()?, &e, a.top.max(1))?,
    };
    if top.is_empty() {
        bail!(
            "{}: no speakers enrolled with this model",
            a.at.store.display()
        );
    }
    if a.json {
        println!("{}", serde_json::to_string(&top)?);
    } else {
        for (i, c) in top.iter().enumerate() {
            println!("{}. {} {:.4}", i + 1, c.speaker, c.score);
        }
    }
    Ok(())
}

fn cmd_eval(a: &EvalArgs) -> Result<()> {
    let emb = a.model.open()?;
    let trials = read_trials(&a.trials)?;
    if !a.audio_root.is_dir() {
        bail!("{}: audio root is not a folder", a.audio_root.display());
    }
    let dcf = DcfParams {
        p_target: a.p_target,
        ..DcfParams::default()
    };
    let ev = evaluate(&emb, &trials, &a.audio_root, dcf, !a.quiet)?;
    println!(
        "model {}: {} trials ({} target, {} non-target) over {} utterances",
        ev.model, ev.trials, ev.all.targets, ev.all.nontargets, ev.utterances
    );
    println!(
        "EER = {:.3}%  minDCF(p={}) = {:.4}  EER threshold = {:.4}",
        ev.all.eer * 100.0,
        a.p_target,
        ev.all.min_dcf,
        ev.all.eer_threshold
    );
    if let Some(x) = &ev.cross_language {
        println!(
            "cross-language targets ({}): EER = {:.3}%  minDCF = {:.4}",
            x.targets,
            x.eer * 100.0,
            x.min_dcf
        );
    }
    if let Some(p) = &a.scores {
        write_scores(p, &trials, &ev.scores)?;
    }
    if let Some(p) = &a.json {
        write_atomic(p, serde_json::to_string_pretty(&ev)?.as_bytes())?;
    }
    if let Some(p) = &a.embeddings {
        write_embeddings(p, &ev.embeddings)?;
    }
    if let Some(p) = &a.det {
        let (mut tar, mut non) = (Vec::new(), Vec::new());
        for (t, s) in trials.iter().zip(&ev.scores) {
            if t.target {
                tar.push(*s)
            } else {
                non.push(*s)
            }
        }
        let pts = operating_points(&tar, &non)?;
        det_png(
            p,
            &format!("DET: {}", ev.model),
            &[DetCurve {
                label: ev.model.clone(),
                points: &pts,
                eer: ev.all.eer,
            }],
        )?;
    }
    Ok(())
}

fn cmd_build(a: &BuildArgs) -> Result<()> {
    if a.opt_level > 3 {
        bail!("--opt-level {}: expected 0-3", a.opt_level);
    }
    let cfg = a.model.with_extension("json");
    let cfg = cfg.is_file().then_some(cfg.as_path());
    let trt = || -> Result<engines::tensorrt::TrtBuildOptions> {
        Ok(engines::tensorrt::TrtBuildOptions {
            precision: match a.precision.as_str() {
                "fp16" => Some(engines::tensorrt::TrtPrecision::Fp16),
                "fp32" => Some(engines::tensorrt::TrtPrecision::Fp32),
                _ => None,
            },
            profiles: a
                .profile
                .iter()
                .map(|p| engines::tensorrt::parse_profile(p))
                .collect::<Result<Vec<_>, _>>()?,
        })
    };
    let m = match a.target.as_str() {
        "tensorrt" => {
            let (m, report) = engines::tensorrt::build_tensorrt(&a.model, cfg, &a.out, &trt()?)?;
            println!("layers: {}", report.summary());
            for l in &report.float_compute {
                println!("  not int8: {} ({}, {} in)", l.name, l.layer_type, l.input);
            }
            m
        }
        "tensorrt-ort" => engines::tensorrt::build_tensorrt_ort(&a.model, cfg, &a.out, &trt()?)?,
        _ => {
            if !a.profile.is_empty() || a.precision != "auto" {
                bail!("--profile and --precision apply to TensorRT targets, not --target cpu");
            }
            let opts = CpuOptions {
                intra_threads: a.threads,
                opt_level: a.opt_level,
                optimized_model_path: None,
                device: engines::ort::Device::Cpu,
            };
            engines::ort::build_cpu(&a.model, cfg, &a.out, &opts)?
        }
    };
    println!(
        "built {} engine ({}, {} {}{}) at {}: source sha256 {}…, inputs {}",
        m.target,
        m.precision,
        m.builder.name,
        m.builder.version,
        m.gpu
            .as_ref()
            .map(|g| format!(", {} sm {}", g.name, g.compute_capability))
            .unwrap_or_default(),
        a.out.display(),
        &m.source_model.sha256[..12],
        m.inputs
            .iter()
            .map(|i| format!("{} {:?}", i.name, i.shape))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn cmd_export_triton(a: &ExportTritonArgs) -> Result<()> {
    let o = engines::triton::TritonOptions {
        max_batch_size: a.max_batch_size,
        instances: a.instances,
        gpu: a.gpu,
        max_queue_delay_us: a.max_queue_delay_us,
    };
    for dir in &a.engines {
        let leaf = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = dir
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let name: String = match parent {
            Some(p) if !p.is_empty() => format!("{p}_{leaf}"),
            _ => leaf,
        }
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
        let entry = engines::triton::export(dir, &name, &a.repo, &o)?;
        println!("wrote {}", entry.display());
    }
    Ok(())
}

fn cmd_bench(b: &BenchCmd) -> Result<()> {
    match b {
        BenchCmd::Embed(a) => {
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
            print!("{}", r.markdown());
            if let Some(p) = &a.json {
                write_atomic(p, serde_json::to_string_pretty(&r)?.as_bytes())?;
            }
            Ok(())
        }
        BenchCmd::Llm(a) => {
            if a.runs == 0 || a.max_new_tokens == 0 {
                bail!("--runs and --max-new-tokens must be at least 1");
            }
            if a.seconds.iter().any(|s| !(*s > 0.0 && *s <= 30.0)) {
                bail!("--seconds: each length must be more than 0 and at most 30 (one window)");
            }
            let opts = session_options(a.threads, &a.device)?;
            let mut models = Vec::new();
            for m in &a.model {
                let label = m.display().to_string();
                let is_llm = m.extension().is_some_and(|e| e == "json")
                    && !m.ends_with(runtime::whisper::CONFIG_FILE)
                    || m.join("audio_llm.json").is_file();
                models.push((
                    label,
                    if is_llm {
                        runtime::bench::GenModel::AudioLlm(Box::new(
                            runtime::audio_llm::AudioLlm::open(m, &opts)?,
                        ))
                    } else {
                        runtime::bench::GenModel::Whisper(Box::new(
                            runtime::whisper::Whisper::open(m, &opts)?,
                        ))
                    },
                ));
            }
            let audio = read_wav(&a.audio)?;
            let rows =
                runtime::bench::bench_llm(&models, &audio, &a.seconds, a.max_new_tokens, a.runs)?;
            print!("{}", runtime::bench::llm_markdown(&rows));
            if let Some(p) = &a.json {
                write_atomic(p, serde_json::to_string_pretty(&rows)?.as_bytes())?;
            }
            Ok(())
        }
        BenchCmd::Engines(a) => {
            if a.batches.iter().any(|b| *b < 1) || a.frames < 1 {
                bail!("--batches and --frames must be at least 1");
            }
            if !(a.seconds > 0.0 && a.seconds <= 600.0) {
                bail!(
                    "--seconds {}: expected more than 0 and at most 600",
                    a.seconds
                );
            }
            let rows = runtime::bench::bench_engines(&a.engines, &a.batches, a.frames, a.seconds)?;
            print!("{}", runtime::bench::engines_markdown(&rows));
            if let Some(p) = &a.json {
                write_atomic(p, serde_json::to_string_pretty(&rows)?.as_bytes())?;
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // A closed pipe (`voxq ... | head -1`) ends the process quietly, as for other Unix tools,
    // instead of a panic on the next write to standard output.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let res = match &cli.cmd {
        Cmd::Embed(a) => cmd_embed(a),
        Cmd::Enroll(a) => cmd_enroll(a),
        Cmd::Verify(a) => cmd_verify(a),
        Cmd::Identify(a) => cmd_identify(a),
        Cmd::Eval(a) => cmd_eval(a),
        Cmd::Calibrate(a) => quant::cmd_calibrate(a),
        Cmd::Quantize(a) => quant::cmd_quantize(a),
        Cmd::Inspect(a) => quant::cmd_inspect(a),
        Cmd::Build(a) => cmd_build(a),
        Cmd::ExportTriton(a) => cmd_export_triton(a),
        Cmd::Sensitivity(a) => sensitivity::cmd_sensitivity(a),
        Cmd::Autoquant(a) => sensitivity::cmd_autoquant(a),
        Cmd::Bench(b) => cmd_bench(b),
        Cmd::Transcribe(a) => cmd_transcribe(a),
        Cmd::Generate(a) => cmd_generate(a),
        Cmd::QuantizeWhisper(a) => quant::cmd_quantize_whisper(a),
        Cmd::Serve(a) => serve::cmd_serve(a),
        Cmd::StoreCheck(a) => serve::cmd_store_check(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost message already names the file and the problem.
            let msg = e.to_string().replace('\n', " ");
            eprintln!("voxq: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
