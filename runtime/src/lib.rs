//! Runtime: audio front ends, speaker verification, Whisper ASR, LLMs and audio LLMs with
//! their generation strategies, calibration runs, sensitivity evaluators and benchmarks over
//! engines.

pub mod asr_eval;
pub mod audio;
pub mod audio_llm;
mod backend;
pub mod bench;
pub mod calibrate;
pub mod error;
pub mod evaluate;
pub mod fsutil;
pub mod generation;
pub mod llm;
pub mod model_engine;
pub mod progress;
pub mod server;
mod session;
pub mod speaker;
pub mod sync;
pub mod whisper;

pub use error::RuntimeError;
