//! Engines: turning an ONNX model into something that runs, on each backend, and describing it.
//!
//! - `engine.rs` — the [`engine::Engine`] trait every host backend implements (inputs and
//!   outputs, named f32 runs, which backend/device/precision serves it) and `open_folder`.
//! - `ort/` — ONNX Runtime: the library and its environment, devices and execution providers,
//!   sessions, and the CPU engine build (`--target cpu`).
//! - `openvino/` — OpenVINO on the CPU: the library, the CPU's instruction sets, the engine
//!   build (`--target openvino`, f32 or bf16) and the engine.
//! - `tensorrt/` — TensorRT on NVIDIA GPUs: GPU and library detection, shape profiles,
//!   `trtexec`, layer reports, EPContext models, and the `tensorrt` / `tensorrt-ort` builds.
//! - `build.rs` — the steps every backend's build shares: read the model, write the manifest
//!   and config, build in a scratch folder moved into place on success.
//! - `manifest.rs` — `manifest.json`: what an engine folder holds and the check on load.
//! - `triton.rs` — Triton Inference Server model repositories from engine folders.
//! - `tensor/` — host tensors and values, float formats, ONNX Runtime conversion, comparison.
//! - `error.rs` — [`EngineError`].
//!
//! A new backend is a new folder beside `ort/`, `openvino/` and `tensorrt/` with its own `build`, using
//! `build.rs`'s shared steps, and a `--target` name in its manifests.

pub mod build;
mod dylib;
pub mod engine;
pub mod error;
pub mod manifest;
pub mod openvino;
pub mod ort;
pub mod tensor;
pub mod tensorrt;
pub mod triton;

pub use error::EngineError;
