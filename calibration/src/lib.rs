//! Calibration statistics: observers that turn activation tensors into quantization ranges.
//!
//! This crate never runs a model; the upper layers hand it tensors. Its observers
//! (max, percentile, entropy, MSE), streaming histograms and calibration-table I/O
//! arrive with the quantization work (issue 3).
