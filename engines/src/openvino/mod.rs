//! The OpenVINO backend (Intel's CPU inference runtime, bound with the `openvino` crate and loaded
//! at run time): the library (`library`), the CPU it runs on and the instruction sets an engine
//! relies on (`cpu`), the engine build (`build`, `--target openvino`) and the engine that runs a
//! folder (`engine`). OpenVINO reads the ONNX model (fp32 or QDQ int8) itself; an engine folder
//! holds that model, OpenVINO's compiled-model cache, the config and the manifest.

mod build;
mod cpu;
mod engine;
mod library;
mod tensor;

pub use build::{build_openvino, OvBuildOptions, OvPrecision, OV_ENGINE_FILE};
pub use cpu::{cpu_isa, cpu_model, relied_isa};
pub use engine::OvEngine;
pub use library::{dylib_candidates, find_dylib, load, openvino_version, OPENVINO_VERSION};
pub use tensor::{OvElement, OvTensor};
