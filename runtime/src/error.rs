//! Typed errors of the runtime crate.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the runtime: audio input, front end, models, scoring, storage.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    // ---- audio (runtime::audio) ----
    #[error("{path}: cannot read WAV: {reason}")]
    WavRead { path: PathBuf, reason: String },
    #[error("{path}: unsupported WAV format: {reason}")]
    WavFormat { path: PathBuf, reason: String },
    #[error("{path}: audio is empty (0 samples)")]
    EmptyAudio { path: PathBuf },
    #[error("{path}: audio too short: {samples} samples, at least {needed} needed for one frame")]
    TooShort {
        path: PathBuf,
        samples: usize,
        needed: usize,
    },
    #[error("{path}: audio contains NaN or infinite samples")]
    NonFinite { path: PathBuf },
    /// Decoding stopped as soon as the audio passed the limit, so `seconds` is what had been
    /// decoded by then: the audio is at least that long.
    #[error("{path}: audio is longer than the limit of {limit} s (at least {:.2} s)", (.seconds * 100.0).floor() / 100.0)]
    TooLong {
        path: PathBuf,
        seconds: f64,
        limit: f64,
    },
    /// Too short, or too little speech-level audio, to enroll or score (the speech check).
    #[error("{path}: no speech: {reason}")]
    NoSpeech { path: PathBuf, reason: String },
    #[error("{path}: unsupported or undecodable audio: {reason}")]
    BadAudio { path: PathBuf, reason: String },
    #[error("resampling {from} Hz -> {to} Hz: {reason}")]
    Resample { from: u32, to: u32, reason: String },
    #[error("fbank settings: {0}")]
    FbankConfig(String),

    // ---- configs, models, data files ----
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{model}: {reason}")]
    Model { model: PathBuf, reason: String },
    #[error(transparent)]
    Engine(#[from] engines::EngineError),
    #[error(transparent)]
    Export(#[from] exporter::ExportError),
    #[error(transparent)]
    Calibration(#[from] calibration::CalibError),

    // ---- speaker verification ----
    #[error("{path}: speaker '{speaker}' is not enrolled")]
    UnknownSpeaker { path: PathBuf, speaker: String },
    #[error("{0}")]
    Scoring(String),
    #[error("{path}: cannot draw plot: {reason}")]
    Plot { path: PathBuf, reason: String },

    // ---- generation (runtime::generation) ----
    #[error("--beams and --max-new-tokens must be at least 1")]
    NoBeamsOrTokens,
    #[error("--temperature must be >= 0, --top-p in (0, 1], --repetition-penalty > 0")]
    SamplingRange,
    /// Every logit of a step was NaN or infinite (a broken model, or rules that suppress
    /// every token): there is no distribution to sample from.
    #[error("cannot sample the next token: none of the {vocab} logits is finite")]
    NoFiniteLogits { vocab: usize },
}

/// A [`RuntimeError::Config`] about `path`.
pub(crate) fn cfg_err(path: &Path, reason: String) -> RuntimeError {
    RuntimeError::Config {
        path: path.to_path_buf(),
        reason,
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;
