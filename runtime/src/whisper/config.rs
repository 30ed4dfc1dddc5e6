//! `whisper.json`: the sizes, special tokens and token rules of a Whisper model folder, read
//! and checked against what the fixed log-mel front end computes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{cfg_err, Result};

/// File of the model description inside a Whisper model folder.
pub const CONFIG_FILE: &str = "whisper.json";

/// `whisper.json`: sizes, special tokens and token rules (written by `tools/whisper_ct2.py`).
#[derive(Debug, Clone, Deserialize)]
pub struct WhisperConfig {
    #[serde(default)]
    pub model: String,
    pub n_mels: usize,
    pub n_audio_ctx: usize,
    pub n_text_ctx: usize,
    /// Decoder layers.
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_model: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub eot: u32,
    /// Prompt for transcription without timestamps (`<|startoftranscript|>` … `<|notimestamps|>`).
    pub prompt_notimestamps: Vec<u32>,
    /// Never generated.
    pub suppress_tokens: Vec<u32>,
    /// Not generated as the first token.
    pub begin_suppress_tokens: Vec<u32>,
    #[serde(default = "default_encoder")]
    pub encoder_file: String,
    #[serde(default = "default_decoder")]
    pub decoder_file: String,
    /// Multilingual model (language tokens in the prompt) or English-only.
    #[serde(default)]
    pub multilingual: bool,
    /// `<|en|>` → id, … (empty for English-only models).
    #[serde(default)]
    pub language_tokens: std::collections::BTreeMap<String, u32>,
    /// `<|startofprev|>`: begins the previous-text prompt.
    #[serde(default)]
    pub startofprev: Option<u32>,
    #[serde(default)]
    pub sot: Option<u32>,
    #[serde(default)]
    pub transcribe: Option<u32>,
    #[serde(default)]
    pub notimestamps: Option<u32>,
    /// `<|nospeech|>`: its probability at the start-of-transcript position says the window
    /// holds no speech (folders without it: looked up in the tokenizer).
    #[serde(default)]
    pub no_speech: Option<u32>,
    /// Front-end settings the file may state; the log-mel front end is fixed, so any that is
    /// given must be its value (checked by [`read_config`]).
    #[serde(default)]
    pub sample_rate: Option<u64>,
    #[serde(default)]
    pub n_fft: Option<u64>,
    #[serde(default)]
    pub hop_length: Option<u64>,
    #[serde(default)]
    pub chunk_length_s: Option<u64>,
    #[serde(default)]
    pub n_samples: Option<u64>,
    #[serde(default)]
    pub n_frames: Option<u64>,
}

fn default_encoder() -> String {
    "encoder.onnx".into()
}
fn default_decoder() -> String {
    "decoder.onnx".into()
}

/// The model folder of `path` (the folder itself, or the one holding the given file) and its
/// checked `whisper.json`.
pub fn read_config(path: &Path) -> Result<(PathBuf, WhisperConfig)> {
    let dir = if path.is_file() {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    let cfg_path = dir.join(CONFIG_FILE);
    let text = exporter::textfile::read_text(&cfg_path, "a Whisper model config")
        .map_err(|e| cfg_err(&cfg_path, format!("cannot read Whisper model config: {e}")))?;
    let config: WhisperConfig = serde_json::from_str(&text)
        .map_err(|e| cfg_err(&cfg_path, format!("not a Whisper model config: {e}")))?;
    check_config(&config).map_err(|reason| cfg_err(&cfg_path, reason))?;
    Ok((dir, config))
}

/// The sizes are usable and the front-end settings, where given, are the ones implemented.
fn check_config(c: &WhisperConfig) -> std::result::Result<(), String> {
    use crate::audio::logmel::{HOP, N_FFT, N_FRAMES, N_SAMPLES, SAMPLE_RATE};
    if c.n_mels != 80 && c.n_mels != 128 {
        return Err(format!(
            "n_mels {}: Whisper uses 80 or 128 mel bins",
            c.n_mels
        ));
    }
    for (key, v) in [
        ("n_audio_ctx", c.n_audio_ctx),
        ("n_layers", c.n_layers),
        ("n_heads", c.n_heads),
        ("head_dim", c.head_dim),
        ("vocab_size", c.vocab_size),
    ] {
        if v == 0 {
            return Err(format!("{key} is 0"));
        }
    }
    // Generation stops at half the text context; the prompt must leave room for a token.
    if c.n_text_ctx / 2 <= c.prompt_notimestamps.len() {
        return Err(format!(
            "n_text_ctx {} leaves no room to generate after a {}-token prompt",
            c.n_text_ctx,
            c.prompt_notimestamps.len()
        ));
    }
    let fixed = [
        ("sample_rate", c.sample_rate, u64::from(SAMPLE_RATE)),
        ("n_fft", c.n_fft, N_FFT as u64),
        ("hop_length", c.hop_length, HOP as u64),
        (
            "chunk_length_s",
            c.chunk_length_s,
            (N_SAMPLES as u64) / u64::from(SAMPLE_RATE),
        ),
        ("n_samples", c.n_samples, N_SAMPLES as u64),
        ("n_frames", c.n_frames, N_FRAMES as u64),
    ];
    for (key, given, ours) in fixed {
        if let Some(v) = given {
            if v != ours {
                return Err(format!(
                    "{key} {v}: voxq's Whisper front end computes log-mel features with {key} {ours}"
                ));
            }
        }
    }
    if c.n_heads.checked_mul(c.head_dim) != Some(c.d_model) {
        return Err(format!(
            "n_heads {} x head_dim {} != d_model {}",
            c.n_heads, c.head_dim, c.d_model
        ));
    }
    if c.prompt_notimestamps.is_empty() {
        return Err("empty prompt_notimestamps".into());
    }
    // The model files live in the model folder: no absolute names, no '..'.
    for (key, f) in [
        ("encoder_file", &c.encoder_file),
        ("decoder_file", &c.decoder_file),
    ] {
        if f.is_empty()
            || !Path::new(f)
                .components()
                .all(|x| matches!(x, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "{key} '{f}' must be a file inside the model folder (no '..', not absolute)"
            ));
        }
    }
    Ok(())
}
