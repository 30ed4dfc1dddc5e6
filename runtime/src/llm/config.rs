//! `llm.json` (written by `tools/llm_export.py`): sizes, stop tokens, the chat template and the
//! files of a decoder-only LLM folder.

use serde::Deserialize;

/// One chat turn's wrapping.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatTemplate {
    pub system_prefix: String,
    pub system_suffix: String,
    pub default_system: String,
    pub user_prefix: String,
    pub user_suffix: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LlmFiles {
    pub decoder: String,
    pub embed_tokens: String,
    pub tokenizer: String,
}

/// `llm.json` (written by `tools/llm_export.py`).
#[derive(Debug, Clone, Deserialize)]
pub struct LlmConfig {
    #[serde(default)]
    pub model: String,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// The context: the most positions (prompt and generated tokens) the model was trained on.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    pub stop_token_ids: Vec<u32>,
    pub chat: ChatTemplate,
    pub files: LlmFiles,
}
