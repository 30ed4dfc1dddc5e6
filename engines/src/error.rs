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
}
