//! Engines: ONNX Runtime environment set-up and CPU sessions, CPU engine builds, engine manifests (TensorRT builders come later).

pub mod build;
pub mod error;
pub mod manifest;
pub mod ort_env;
pub mod tensor;

pub use error::EngineError;
