//! Calibration statistics: observers that turn activation tensors into quantization ranges.
//!
//! This crate never runs a model; the upper layers hand it tensors.

pub mod error;

pub use error::CalibError;
