//! Typed errors of the engines crate.

use std::path::PathBuf;

/// Everything that can go wrong while finding ONNX Runtime, opening a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "ONNX Runtime library not found (looked at: {looked}); run `make setup` (tools/setup_ort.sh) or set ORT_DYLIB_PATH to libonnxruntime.so"
    )]
    OrtMissing { looked: String },
    #[error("{path}: cannot load ONNX Runtime library: {reason}")]
    OrtLoad { path: PathBuf, reason: String },
    #[error("ONNX Runtime environment: {0}")]
    OrtInit(String),
    #[error("{path}: ONNX Runtime cannot open the model: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{model}: input '{input}': {reason}")]
    Input {
        model: String,
        input: String,
        reason: String,
    },
    #[error("{model}: inference failed: {reason}")]
    Run { model: String, reason: String },
    #[error("{model}: output '{output}': {reason}")]
    Output {
        model: String,
        output: String,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("{0}")]
    Device(String),
    #[error("shape profile '{profile}': {reason}")]
    Profile { profile: String, reason: String },
    #[error("{path}: engine build failed: {reason}")]
    Build { path: PathBuf, reason: String },
    #[error("{path}: Triton export failed: {reason}")]
    Triton { path: PathBuf, reason: String },
    #[error("tensor '{name}': {reason}")]
    Tensor { name: String, reason: String },
    /// OpenVINO: the library missing or failing, or a model it cannot read, compile or run.
    #[error("{0}")]
    Openvino(String),
}

impl EngineError {
    /// The same error with `f` applied to every path and text it holds (e.g. a build's scratch
    /// folder replaced by the folder the user named).
    pub fn map_text(self, f: &dyn Fn(&str) -> String) -> EngineError {
        let p = |path: PathBuf| PathBuf::from(f(&path.to_string_lossy()));
        match self {
            EngineError::OrtMissing { looked } => EngineError::OrtMissing { looked: f(&looked) },
            EngineError::OrtLoad { path, reason } => EngineError::OrtLoad {
                path: p(path),
                reason: f(&reason),
            },
            EngineError::OrtInit(m) => EngineError::OrtInit(f(&m)),
            EngineError::Open { path, reason } => EngineError::Open {
                path: p(path),
                reason: f(&reason),
            },
            EngineError::Input {
                model,
                input,
                reason,
            } => EngineError::Input {
                model: f(&model),
                input,
                reason: f(&reason),
            },
            EngineError::Run { model, reason } => EngineError::Run {
                model: f(&model),
                reason: f(&reason),
            },
            EngineError::Output {
                model,
                output,
                reason,
            } => EngineError::Output {
                model: f(&model),
                output,
                reason: f(&reason),
            },
            EngineError::Manifest { path, reason } => EngineError::Manifest {
                path: p(path),
                reason: f(&reason),
            },
            EngineError::Device(m) => EngineError::Device(f(&m)),
            EngineError::Profile { profile, reason } => EngineError::Profile {
                profile,
                reason: f(&reason),
            },
            EngineError::Build { path, reason } => EngineError::Build {
                path: p(path),
                reason: f(&reason),
            },
            EngineError::Triton { path, reason } => EngineError::Triton {
                path: p(path),
                reason: f(&reason),
            },
            EngineError::Tensor { name, reason } => EngineError::Tensor {
                name,
                reason: f(&reason),
            },
            EngineError::Openvino(m) => EngineError::Openvino(f(&m)),
        }
    }
}
