//! Engines: ONNX Runtime environment set-up and CPU sessions, CPU engine builds, engine manifests, trtexec command lines.

pub mod build;
pub mod error;
pub mod manifest;
pub mod ort_env;
pub mod tensor;
pub mod trt;

pub use error::EngineError;
