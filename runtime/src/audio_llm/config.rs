//! `audio_llm.json`: where the encoder, projector and LLM of an audio LLM are (relative
//! paths), the prompt template with its `<SpeechHere>` placeholder, and the task prompts.

use serde::Deserialize;

/// The placeholder a prompt carries where the audio goes.
pub const SPEECH: &str = "<SpeechHere>";

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Part {
    pub(crate) file: String,
    pub(crate) input: String,
    pub(crate) output: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ProjectorPart {
    pub(crate) file: String,
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) n_audio_tokens: usize,
    pub(crate) out_dim: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LlmPart {
    pub(crate) dir: String,
}

/// `audio_llm.json`: where the encoder, projector and LLM are (relative paths) and the prompts.
#[derive(Debug, Clone, Deserialize)]
pub struct AudioLlmConfig {
    #[serde(default)]
    pub model: String,
    pub(crate) encoder: Part,
    pub(crate) projector: ProjectorPart,
    pub(crate) llm: LlmPart,
    pub prompt_template: String,
    pub system: String,
    pub tasks: std::collections::BTreeMap<String, String>,
}
