//! Decoder-only LLMs on ONNX Runtime (ONNX Runtime GenAI naming: `inputs_embeds`,
//! `attention_mask`, `position_ids`, `past_key_values.{i}.key/value` → `logits`,
//! `present.{i}.key/value`) with their token-embedding table, so text and other embeddings
//! (audio, in [`crate::audio_llm`]) can be concatenated before the tokens.
//!
//! - [`config`] — `llm.json`;
//! - [`model`] — the session, embeddings, tokenizer and the decoder step over a caller-owned
//!   [`LlmCache`];
//! - [`decode`] — the chat prompt and generation with the model's stop tokens.

pub mod config;
pub mod decode;
pub mod model;
mod openvino;

pub use config::{ChatTemplate, LlmConfig, LlmFiles};
pub use model::{Llm, LlmCache};
