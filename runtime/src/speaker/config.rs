//! Speaker-model configuration: which ONNX file, its tensor names, and its front-end settings.
//!
//! A model is described by a JSON file next to its ONNX file (`campplus.json` beside
//! `campplus.onnx`). The front end differs between model families (SpeechBrain, WeSpeaker,
//! 3D-Speaker, sherpa-onnx), so it is carried per model, never hard-coded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audio::fbank::FbankConfig;
use crate::error::{Result, RuntimeError};

/// The contents of a speaker model's JSON file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelConfig {
    pub name: String,
    #[serde(default = "default_task")]
    pub task: String,
    /// ONNX file, relative to the JSON file's folder.
    pub onnx: PathBuf,
    /// Input tensor name; its layout is [batch, frames, num_mel_bins].
    pub input: String,
    /// Output tensor name; its layout is [batch, embedding_dim].
    pub output: String,
    pub embedding_dim: usize,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub notes: String,
    /// Decision threshold on the cosine score, if one was calibrated for this model.
    #[serde(default)]
    pub threshold: Option<f64>,
    pub fbank: FbankConfig,
}

fn default_task() -> String {
    "speaker-embedding".into()
}

/// A model config together with the resolved path of its ONNX file.
#[derive(Debug, Clone)]
pub struct SpeakerModel {
    pub config: ModelConfig,
    pub config_path: PathBuf,
    pub onnx_path: PathBuf,
    /// The execution provider the model needs (TensorRT for a TensorRT engine folder).
    pub required_device: Option<engines::ort::Device>,
    /// An OpenVINO engine folder: the model runs through OpenVINO, not ONNX Runtime.
    pub openvino_engine: Option<PathBuf>,
}

impl SpeakerModel {
    /// Opens a model given its JSON config, its ONNX file (then `<stem>.json` beside it must
    /// exist), or an engine folder (`voxq build`): then its manifest is checked against this
    /// machine and the engine's own config and model are used.
    pub fn locate(path: &Path) -> Result<SpeakerModel> {
        if path.is_dir() {
            return Self::from_engine(path);
        }
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let config_path = if is_json {
            path.to_path_buf()
        } else {
            let cand = path.with_extension("json");
            if !cand.is_file() {
                if !path.exists() {
                    return Err(RuntimeError::Config {
                        path: path.to_path_buf(),
                        reason: "model not found".into(),
                    });
                }
                return Err(RuntimeError::Config {
                    path: path.to_path_buf(),
                    reason: format!(
                        "no model config found (expected {} with the model's front-end settings)",
                        cand.display()
                    ),
                });
            }
            cand
        };
        let text = crate::fsutil::read_text(&config_path, "a model config")?;
        let config: ModelConfig =
            serde_json::from_str(&text).map_err(|e| RuntimeError::Config {
                path: config_path.clone(),
                reason: format!("invalid model config: {e}"),
            })?;
        if config.task != "speaker-embedding" {
            return Err(RuntimeError::Config {
                path: config_path,
                reason: format!("task is '{}', expected 'speaker-embedding'", config.task),
            });
        }
        config.fbank.validate().map_err(|e| RuntimeError::Config {
            path: config_path.clone(),
            reason: e.to_string(),
        })?;
        let dir = config_path.parent().unwrap_or(Path::new("."));
        let onnx_path = if is_json {
            dir.join(&config.onnx)
        } else {
            path.to_path_buf()
        };
        if !onnx_path.exists() {
            return Err(RuntimeError::Config {
                path: config_path,
                reason: format!("its model {} does not exist", onnx_path.display()),
            });
        }
        Ok(SpeakerModel {
            config,
            config_path,
            onnx_path,
            required_device: None,
            openvino_engine: None,
        })
    }

    /// An engine folder: manifest checked (builder version, GPU), then its config. A TensorRT
    /// engine (`tensorrt`, `tensorrt-ort`) is opened through its EPContext model and needs
    /// the TensorRT execution provider.
    fn from_engine(dir: &Path) -> Result<SpeakerModel> {
        let m = engines::manifest::Manifest::read(dir)?;
        let required_device = match m.target.as_str() {
            "cpu" | "openvino" => None,
            "tensorrt" | "tensorrt-ort" => Some(engines::ort::Device::Tensorrt),
            other => {
                return Err(RuntimeError::Config {
                    path: dir.join(engines::manifest::MANIFEST_FILE),
                    reason: format!("unknown engine target '{other}'"),
                })
            }
        };
        let host = engines::manifest::Host::for_manifest(&m)?;
        m.check(dir, None, &host)?;
        let Some(cfg) = &m.config_file else {
            return Err(RuntimeError::Config {
                path: dir.join(engines::manifest::MANIFEST_FILE),
                reason: "engine has no model config (build it from a model with a JSON config)"
                    .into(),
            });
        };
        let model = SpeakerModel {
            required_device,
            openvino_engine: (m.target == "openvino").then(|| dir.to_path_buf()),
            ..Self::locate(&dir.join(cfg))?
        };
        log::info!(
            "engine {}: {} {} built by {} {}",
            dir.display(),
            m.target,
            m.precision,
            m.builder.name,
            m.builder.version
        );
        Ok(model)
    }
}
