//! Argument groups shared by several subcommands (speaker model and session, enrollment store,
//! layer selection) and the typed values of `--device`, `--target`, `--precision` and
//! `--metric`; `--method` is parsed into [`calibration::Method`] by its `FromStr`.

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
    Tensorrt,
    TensorrtOrt,
}

/// `--precision` of `voxq build` (TensorRT targets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Precision {
    Auto,
    Fp16,
    Fp32,
}

impl Precision {
    /// The TensorRT precision asked for; `None` for auto (int8 for QDQ, else fp16).
    pub(crate) fn tensorrt(self) -> Option<engines::tensorrt::TrtPrecision> {
        match self {
            Precision::Auto => None,
            Precision::Fp16 => Some(engines::tensorrt::TrtPrecision::Fp16),
            Precision::Fp32 => Some(engines::tensorrt::TrtPrecision::Fp32),
        }
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
}

impl From<QuantTarget> for exporter::policy::Target {
    fn from(t: QuantTarget) -> Self {
        match t {
            QuantTarget::Tensorrt => exporter::policy::Target::Tensorrt,
            QuantTarget::OrtCpu => exporter::policy::Target::OrtCpu,
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
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
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
    /// is refused. Range 0-60; 0 turns the check off.
    #[arg(long, value_name = "SECONDS", default_value_t = runtime::speaker::speech::DEFAULT_MIN_SPEECH_S, value_parser = min_speech_s)]
    pub(crate) min_speech_s: f64,
}

impl SpeechArgs {
    pub(crate) fn check(&self) -> runtime::speaker::speech::SpeechCheck {
        runtime::speaker::speech::SpeechCheck::with_min_speech_s(self.min_speech_s)
    }
}

/// `--min-speech-s`: a number of seconds the speech check accepts.
fn min_speech_s(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    runtime::speaker::speech::SpeechCheck::with_min_speech_s(v).validate()?;
    Ok(v)
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
