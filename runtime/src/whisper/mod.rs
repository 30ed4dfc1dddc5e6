//! Whisper ASR on ONNX Runtime: a model folder (`whisper.json`, `encoder.onnx`, a decoder
//! with self- and cross-attention KV cache `decoder.onnx`, `tokenizer.json`), the log-mel front
//! end, and decoding (greedy or beam search) with Whisper's token rules. Audio longer than 30 s
//! is cut into consecutive 30 s windows, each transcribed on its own, texts joined.
//!
//! - [`config`] — `whisper.json`, read and checked;
//! - [`context`] — the audio context (encoder positions per window: 30 s, or the clip's length);
//! - [`model`] — sessions, tokenizer, encoder pass, decoder step over a caller-owned cache;
//! - [`decode`] — the prompt, token rules and decode loop of one window;
//! - [`safeguards`] — temperature fallback and no-speech detection per window;
//! - [`window`] — 30 s windowing of longer audio;
//! - `calibrate`: the calibration tap (the run itself is [`crate::calibrate::whisper`]).

pub(crate) mod calibrate;
pub mod config;
pub mod context;
pub mod decode;
pub mod model;
mod openvino;
pub mod safeguards;
pub mod window;

pub use config::{read_config, WhisperConfig, CONFIG_FILE};
pub use context::AudioCtx;
pub use decode::beam;
pub use model::{Whisper, WhisperCache};
pub use safeguards::{compression_ratio, Safeguards, WindowDecode};
