//! Engines: ONNX Runtime environment set-up and CPU sessions (TensorRT builders come later).

pub mod error;
pub mod ort_env;
pub mod tensor;

pub use error::EngineError;
