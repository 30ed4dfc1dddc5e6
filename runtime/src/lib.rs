//! Runtime: audio front ends, speaker verification, metrics and benchmarks over engines.

pub mod audio;
pub mod error;
pub mod speaker;

pub use error::RuntimeError;
