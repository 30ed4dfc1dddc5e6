//! The SALMONN-style audio LLM: Whisper encoder → window projector → decoder-only LLM
//! ([`crate::llm`]), prompted with `<SpeechHere>` where the audio embeddings go.
//!
//! - [`config`] — `audio_llm.json`;
//! - [`model`] — encoder and projector sessions, audio embeddings, generation over one window;
//! - [`prompt`] — task prompts and the chat prompt split at the placeholder.

pub mod config;
pub mod model;
pub mod prompt;

pub use config::{AudioLlmConfig, Trim, SPEECH};
pub use model::{AudioLlm, AudioLlmPart};
