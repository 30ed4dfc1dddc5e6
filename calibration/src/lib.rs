//! Calibration statistics: observers that turn activation tensors into quantization ranges.
//!
//! This crate never runs a model; the upper layers hand it tensors.

pub mod error;
pub mod histogram;
pub mod observer;
pub mod stats;
pub mod table;

pub use error::CalibError;
pub use histogram::Histogram;
pub use observer::{Calibrator, Method};
pub use stats::TensorStats;
pub use table::{CalibrationTable, TensorRange};
