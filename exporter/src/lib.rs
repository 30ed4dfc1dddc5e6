//! ONNX graph handling: model load/save (with external data) and, later, rewrite passes.

pub mod atomic;
pub mod build;
pub mod error;
pub mod model;

pub use error::ExportError;
