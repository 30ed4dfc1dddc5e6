//! Runtime: audio front ends, speaker verification, metrics and benchmarks over engines.

pub mod audio;
pub mod bench;
pub mod error;
pub mod fsutil;
pub mod generate;
pub mod llm;
pub mod quant;
pub mod sensitivity;
pub mod server;
pub mod speaker;
pub mod sync;
pub mod whisper;

pub use error::RuntimeError;
