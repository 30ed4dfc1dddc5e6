//! ONNX graph handling: model load/save (with external data), graph index, layer groups,
//! quantization passes (expose activations, insert QDQ, fp16), inspection, size accounting, and the sensitivity/autoquant driver.

pub mod atomic;
pub mod build;
pub mod error;
pub mod graph;
pub mod groups;
pub mod inspect;
pub mod model;
pub mod onnx;
pub mod passes;
pub mod pipeline;
pub mod policy;
pub mod sensitivity;
pub mod size;
pub mod textfile;

pub use error::ExportError;
