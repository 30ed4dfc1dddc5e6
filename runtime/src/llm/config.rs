//! `llm.json` (written by `tools/llm_export.py`): sizes, stop tokens, the chat template and the
//! files of a decoder-only LLM folder.

use std::path::Path;

use serde::Deserialize;

use crate::error::{cfg_err, Result};

/// File of the config inside an LLM folder.
pub const CONFIG_FILE: &str = "llm.json";

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

/// Reads and parses `dir/llm.json`.
pub fn read_config(dir: &Path) -> Result<LlmConfig> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| cfg_err(&cfg_path, format!("cannot read LLM config: {e}")))?;
    serde_json::from_str(&text).map_err(|e| cfg_err(&cfg_path, format!("not an LLM config: {e}")))
}
