//! Engines: ONNX Runtime environment set-up and sessions, CPU and TensorRT engine builds, engine manifests, trtexec runs and layer reports, EPContext models, Triton repositories.

pub mod build;
pub mod epcontext;
pub mod error;
pub mod gpu;
pub mod layers;
pub mod manifest;
pub mod ort_env;
pub mod tensor;
pub mod triton;
pub mod trt;
pub mod trt_build;
pub mod trtexec;

pub use error::EngineError;
