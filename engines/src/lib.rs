//! Engines: turning an ONNX model into something that runs, on each backend, and describing it.
//!
//! - `ort/` — ONNX Runtime: the library and its environment, devices and execution providers,
//!   sessions, and the CPU engine build (`--target cpu`).
//! - `tensorrt/` — TensorRT on NVIDIA GPUs: GPU and library detection, shape profiles,
//!   `trtexec`, layer reports, EPContext models, and the `tensorrt` / `tensorrt-ort` builds.
//! - `build.rs` — the steps every backend's build shares: read the model, write the manifest
//!   and config, build in a scratch folder moved into place on success.
//! - `manifest.rs` — `manifest.json`: what an engine folder holds and the check on load.
//! - `triton.rs` — Triton Inference Server model repositories from engine folders.
//! - `tensor/` — host tensors and values, float formats, ONNX Runtime conversion, comparison.
//! - `error.rs` — [`EngineError`].
//!
//! A new backend is a new folder beside `ort/` and `tensorrt/` with its own `build`, using
//! `build.rs`'s shared steps, and a `--target` name in its manifests.

pub mod build;
pub mod error;
pub mod manifest;
pub mod ort;
pub mod tensor;
pub mod tensorrt;
pub mod triton;

pub use error::EngineError;
