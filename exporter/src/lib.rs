//! ONNX graph handling: shared ONNX helpers (`onnx`), model load/save with external data
//! (`model`), graph index, layer groups, quantization passes (expose activations, insert QDQ,
//! fp16), calibration-tensor selection, inspection, size accounting, and the
//! sensitivity/autoquant driver.

pub mod atomic;
pub mod calib_tensors;
pub mod error;
pub mod graph;
pub mod groups;
pub mod inspect;
pub mod model;
pub mod onnx;
pub mod outputs;
pub mod passes;
pub mod pipeline;
pub mod policy;
pub mod sensitivity;
pub mod size;
pub mod textfile;

pub use error::ExportError;
