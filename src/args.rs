//! Argument groups shared by several subcommands (speaker model and session, enrollment store,
//! layer selection), the typed values of `--device`, `--target`, `--precision` and `--metric`
//! (`--method` is parsed into [`calibration::Method`] by its `FromStr`), and the range-checked
//! parsers of every numeric option: a value outside its documented range is refused while the
//! command line is parsed, before any file is read or model loaded, with one line that names
//! the option and the range (`invalid value '0' for '--beams <BEAMS>': expected an integer in
//! [1, 16]`). Ranges are written in interval notation, the same text in the error and in the
//! option's help (`[range: (0, 1)]`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use engines::ort::CpuOptions;
use runtime::speaker::config::SpeakerModel;
use runtime::speaker::embed::Embedder;
use runtime::speaker::StoreModel;

/// `--device`: the ONNX Runtime execution provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Device {
    Auto,
    Cpu,
    Cuda,
    Tensorrt,
}

impl From<Device> for engines::ort::Device {
    fn from(d: Device) -> Self {
        match d {
            Device::Auto => engines::ort::Device::Auto,
            Device::Cpu => engines::ort::Device::Cpu,
            Device::Cuda => engines::ort::Device::Cuda,
            Device::Tensorrt => engines::ort::Device::Tensorrt,
        }
    }
}

/// `--target` of `voxq build`: the engine kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum EngineTarget {
    Cpu,
    Openvino,
    Tensorrt,
    TensorrtOrt,
}

/// `--precision` of `voxq build` (TensorRT and OpenVINO targets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Precision {
    Auto,
    Fp16,
    Fp32,
    Bf16,
}

impl Precision {
    /// The TensorRT precision asked for; `None` for auto (int8 for QDQ, else fp16).
    pub(crate) fn tensorrt(self) -> anyhow::Result<Option<engines::tensorrt::TrtPrecision>> {
        Ok(match self {
            Precision::Auto => None,
            Precision::Fp16 => Some(engines::tensorrt::TrtPrecision::Fp16),
            Precision::Fp32 => Some(engines::tensorrt::TrtPrecision::Fp32),
            Precision::Bf16 => anyhow::bail!("--precision bf16 is an OpenVINO precision (--target openvino); TensorRT builds take auto, fp16 or fp32"),
        })
    }

    /// The OpenVINO inference precision: auto and fp32 are true f32 (OpenVINO would pick bf16
    /// on a CPU that has it: here that is only done when asked), bf16 is bf16.
    pub(crate) fn openvino(self) -> anyhow::Result<engines::openvino::OvPrecision> {
        Ok(match self {
            Precision::Auto | Precision::Fp32 => engines::openvino::OvPrecision::F32,
            Precision::Bf16 => engines::openvino::OvPrecision::Bf16,
            Precision::Fp16 => anyhow::bail!("--precision fp16 is not an OpenVINO CPU precision; --target openvino takes auto (= fp32), fp32 or bf16"),
        })
    }
}

/// `--target` of the quantizing commands: where the Q/DQ nodes go. Case is ignored and the
/// exporter's other spellings (`trt`, `ort_cpu`, `ortcpu`) are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "kebab-case")]
pub(crate) enum QuantTarget {
    #[value(alias = "trt")]
    Tensorrt,
    #[value(aliases = ["ort_cpu", "ortcpu"])]
    OrtCpu,
    #[value(alias = "ov")]
    Openvino,
}

impl From<QuantTarget> for exporter::policy::Target {
    fn from(t: QuantTarget) -> Self {
        match t {
            QuantTarget::Tensorrt => exporter::policy::Target::Tensorrt,
            QuantTarget::OrtCpu => exporter::policy::Target::OrtCpu,
            QuantTarget::Openvino => exporter::policy::Target::Openvino,
        }
    }
}

impl std::fmt::Display for QuantTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(exporter::policy::Target::from(*self).name())
    }
}

/// `--metric` of `voxq sensitivity` and `voxq autoquant`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Metric {
    Auto,
    Eer,
    Sqnr,
    Wer,
}

/// A value parser for clap: the option's text to its value, or the reason it is refused (clap
/// prints it after `invalid value 'X' for '--option <OPTION>': `).
pub(crate) trait Parse<T>:
    Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
{
}

impl<T, F: Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static> Parse<T> for F {}

/// An integer in `[lo, hi]`.
pub(crate) fn int<T>(lo: T, hi: T) -> impl Parse<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| match s.parse::<T>() {
        Ok(v) if lo <= v && v <= hi => Ok(v),
        _ => Err(format!("expected an integer in [{lo}, {hi}]")),
    }
}

/// A finite number between `lo` and `hi`; `open_lo`/`open_hi` leave that end out.
fn real_in(lo: f64, open_lo: bool, hi: f64, open_hi: bool) -> impl Parse<f64> {
    move |s: &str| {
        let ok = |v: f64| {
            v.is_finite()
                && (if open_lo { v > lo } else { v >= lo })
                && (if open_hi { v < hi } else { v <= hi })
        };
        match s.parse::<f64>() {
            Ok(v) if ok(v) => Ok(v),
            _ => Err(format!(
                "expected a finite number in {}{lo}, {hi}{}",
                if open_lo { '(' } else { '[' },
                if open_hi { ')' } else { ']' }
            )),
        }
    }
}

/// A finite number in `[lo, hi]`.
pub(crate) fn real(lo: f64, hi: f64) -> impl Parse<f64> {
    real_in(lo, false, hi, false)
}

/// A finite number in `(lo, hi]` (more than `lo`).
pub(crate) fn real_gt(lo: f64, hi: f64) -> impl Parse<f64> {
    real_in(lo, true, hi, false)
}

/// A finite number in `(lo, hi)`.
pub(crate) fn real_open(lo: f64, hi: f64) -> impl Parse<f64> {
    real_in(lo, true, hi, true)
}

/// An `f32` option checked as [`real`]/[`real_gt`] check `f64` ones.
pub(crate) fn as_f32(p: impl Parse<f64>) -> impl Parse<f32> {
    move |s: &str| p(s).map(|v| v as f32)
}

/// Most ONNX Runtime threads an option may ask for: 4 per CPU core. More threads than cores
/// only slow ONNX Runtime down, and thousands of them exhausted the machine (1000 never
/// finished on 2 cores, 100000 crashed).
pub(crate) fn max_threads() -> usize {
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--threads`: 0 (ONNX Runtime's choice) to [`max_threads`].
pub(crate) fn threads() -> impl Parse<usize> {
    let (p, hi) = (int(0, max_threads()), max_threads());
    move |s: &str| p(s).map_err(|e| format!("{e} (at most 4 per CPU core: {hi})"))
}

/// The help of a `--threads` option: `what` and its range on this machine.
pub(crate) fn threads_help(what: &str) -> String {
    format!(
        "{what} [range: [0, {}]: at most 4 per CPU core]",
        max_threads()
    )
}

/// A cosine-score threshold (`--threshold`): [-1, 1].
pub(crate) fn threshold() -> impl Parse<f64> {
    real(-1.0, 1.0)
}

/// Candidates to list (`--top`): [1, 1000].
pub(crate) fn top() -> impl Parse<usize> {
    int(1usize, 1000)
}

/// Beams of beam search (`--beams`): [1, 16]; each beam holds its own KV cache.
pub(crate) fn beams() -> impl Parse<usize> {
    int(1, 16)
}

/// Tokens to generate (`--max-new-tokens`): [1, 4096], as the server's `max_tokens`.
pub(crate) fn max_new_tokens() -> impl Parse<usize> {
    int(1, 4096)
}

/// Histogram bins per tensor (`--bins`): [128, 65536], what the calibrator accepts.
pub(crate) fn bins() -> impl Parse<usize> {
    int(128, 65536)
}

/// `--min-channels`: [0, 65536].
pub(crate) fn min_channels() -> impl Parse<usize> {
    int(0, 65536)
}

/// ONNX Runtime session options from `--threads` and `--device`.
pub(crate) fn session_options(threads: usize, device: Device) -> CpuOptions {
    CpuOptions {
        intra_threads: threads,
        device: device.into(),
        ..CpuOptions::default()
    }
}

/// A speaker model and the sessions it runs in.
#[derive(Args)]
pub(crate) struct ModelArgs {
    /// Speaker model: its JSON config, or its ONNX file with a JSON config beside it.
    #[arg(long)]
    pub(crate) model: PathBuf,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("ONNX Runtime intra-op threads (0 = ONNX Runtime's default)"))]
    pub(crate) threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU; the choice is logged with
    /// RUST_LOG=info), cpu, cuda, tensorrt (an explicit one that is missing is an error).
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub(crate) device: Device,
}

impl ModelArgs {
    /// Opens the speaker model for embedding.
    pub(crate) fn open(&self) -> Result<Embedder> {
        let model = SpeakerModel::locate(&self.model)?;
        Ok(Embedder::open(
            model,
            &session_options(self.threads, self.device),
        )?)
    }
}

/// A model and the enrollment store made with it.
#[derive(Args)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Enrollment store: a SQLite database (.db / .sqlite: durable, WAL, one transaction per
    /// enrollment) or a JSON file; `enroll` creates it if missing.
    #[arg(long)]
    pub(crate) store: PathBuf,
}

impl StoreArgs {
    /// Opens the store for the model of `emb` (`create`: start a missing one), refusing a JSON
    /// store made with another model.
    pub(crate) fn open_store(
        &self,
        emb: &Embedder,
        create: bool,
    ) -> Result<Box<dyn runtime::speaker::EnrollmentStore>> {
        Ok(runtime::speaker::open_store(
            &self.store,
            &store_model(emb)?,
            create,
        )?)
    }
}

/// How much speech an utterance needs before it is enrolled or scored (enroll, verify,
/// identify, serve).
#[derive(Args)]
pub(crate) struct SpeechArgs {
    /// Least speech an utterance must hold, in seconds: audio shorter than this, or with less
    /// speech-level audio (25 ms frames above -50 dBFS and 6 dB over the clip's noise floor),
    /// is refused; 0 turns the check off [range: [0, 60]].
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true,
        default_value_t = runtime::speaker::speech::DEFAULT_MIN_SPEECH_S,
        value_parser = real(0.0, runtime::speaker::speech::MAX_MIN_SPEECH_S))]
    pub(crate) min_speech_s: f64,
}

impl SpeechArgs {
    pub(crate) fn check(&self) -> runtime::speaker::speech::SpeechCheck {
        runtime::speaker::speech::SpeechCheck::with_min_speech_s(self.min_speech_s)
    }
}

/// `--speaker` of enroll: the stored form of a name (the server's rules, one line when refused).
pub(crate) fn speaker_name(s: &str) -> std::result::Result<String, String> {
    runtime::speaker::name::normalize_name(s).map_err(|e| e.to_string())
}

/// `--speaker` of verify: the form a name is looked up by.
pub(crate) fn speaker_lookup(s: &str) -> std::result::Result<String, String> {
    Ok(runtime::speaker::name::lookup_form(s))
}

/// The identity enrollments made with `emb` are recorded under.
pub(crate) fn store_model(emb: &Embedder) -> Result<StoreModel<'_>> {
    let cfg = &emb.model().config;
    Ok(StoreModel {
        name: &cfg.name,
        sha256: emb.model_sha256()?,
        embedding_dim: cfg.embedding_dim,
    })
}

/// Which layer groups and nodes to quantize.
#[derive(Args)]
pub(crate) struct SelectArgs {
    /// Layer groups: preset:NAME, depth=N, or a group spec JSON file.
    #[arg(long, default_value = "depth=2")]
    pub(crate) groups: String,
    /// Quantize only these: group:NAME, node:REGEX, op:TYPE (repeatable).
    #[arg(long)]
    pub(crate) include: Vec<String>,
    /// Leave these in float: group:NAME, node:REGEX, op:TYPE (repeatable).
    #[arg(long)]
    pub(crate) exclude: Vec<String>,
}

/// Parses `--include` / `--exclude` style selectors.
pub(crate) fn selectors(args: &[String]) -> Result<Vec<exporter::groups::Selector>> {
    Ok(args
        .iter()
        .map(|s| s.parse::<exporter::groups::Selector>())
        .collect::<Result<Vec<_>, _>>()?)
}

/// Help of `--audio-ctx` (Whisper's encoder positions per window).
pub(crate) const AUDIO_CTX_HELP: &str = "Whisper encoder positions per 30 s window: full (1500, what Whisper was trained on), auto (the clip's length + 1 s, in whole seconds), auto+N (+N s) or N (50 per second). Shorter contexts encode short clips several times faster but cost accuracy (measured WER in the README, section Whisper); needs a model exported with dynamic frames (tools/whisper_ct2.py export)";

/// Whisper's decoding safeguards (`voxq transcribe`, `voxq eval-asr`): temperature fallback
/// and no-speech detection, with Whisper's defaults.
#[derive(Args, Clone, Debug)]
pub(crate) struct SafeguardArgs {
    /// Temperatures tried in order while a window's decode fails the checks below: 0 decodes
    /// greedily (or with --beams), above 0 samples (seeded) [range: [0, 2]].
    #[arg(long, value_delimiter = ',', default_value = "0,0.2,0.4,0.6,0.8,1.0",
        allow_hyphen_values = true, value_parser = as_f32(real(0.0, 2.0)))]
    temperatures: Vec<f32>,
    /// Decode once at temperature 0 (the same as --temperatures 0); no-speech detection stays.
    #[arg(long, conflicts_with = "temperatures")]
    no_fallback: bool,
    /// A decode whose text's gzip compression ratio is above this is too repetitive
    /// [range: (0, 100]].
    #[arg(long, default_value_t = 2.4, allow_hyphen_values = true,
        value_parser = as_f32(real_gt(0.0, 100.0)))]
    compression_ratio_threshold: f32,
    /// A decode whose average token log-probability is below this is too unlikely
    /// [range: [-100, 0]].
    #[arg(long, default_value_t = -1.0, allow_hyphen_values = true,
        value_parser = as_f32(real(-100.0, 0.0)))]
    logprob_threshold: f32,
    /// A window whose no-speech probability is above this, with an unlikely decode, is
    /// silence (no text) [range: [0, 1]].
    #[arg(long, default_value_t = 0.6, allow_hyphen_values = true,
        value_parser = as_f32(real(0.0, 1.0)))]
    no_speech_threshold: f32,
    /// No safeguard at all: one decode per window, its text kept (transformers' default).
    #[arg(long, conflicts_with_all = ["temperatures", "no_fallback",
        "compression_ratio_threshold", "logprob_threshold", "no_speech_threshold"])]
    no_safeguards: bool,
}

impl SafeguardArgs {
    pub(crate) fn safeguards(&self) -> runtime::whisper::Safeguards {
        if self.no_safeguards {
            return runtime::whisper::Safeguards::off();
        }
        runtime::whisper::Safeguards {
            temperatures: if self.no_fallback {
                vec![0.0]
            } else {
                self.temperatures.clone()
            },
            compression_ratio_threshold: Some(self.compression_ratio_threshold),
            logprob_threshold: Some(self.logprob_threshold),
            no_speech_threshold: Some(self.no_speech_threshold),
            seed: 0,
        }
    }
}
