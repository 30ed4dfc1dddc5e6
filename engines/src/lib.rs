//! Engines: ONNX Runtime environment set-up and CPU sessions, CPU engine builds, engine manifests, trtexec command lines, Triton repositories.

pub mod build;
pub mod error;
pub mod manifest;
pub mod ort_env;
pub mod tensor;
pub mod triton;
pub mod trt;

pub use error::EngineError;
