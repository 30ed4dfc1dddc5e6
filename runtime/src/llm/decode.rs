//! Generation with a decoder-only LLM: the chat-templated prompt of one user turn, and the
//! decode loop from prefix embeddings plus tokens, stopping at the model's stop tokens.

use super::Llm;
use crate::error::Result;
use crate::generation::{generate, GenerateOptions};

impl Llm {
    /// The chat-templated prompt for one user turn with the default system turn.
    pub fn chat_prompt(&self, user: &str) -> String {
        let c = &self.config.chat;
        format!(
            "{}{}{}{}{}{}",
            c.system_prefix, c.default_system, c.system_suffix, c.user_prefix, user, c.user_suffix
        )
    }

    /// Generates from `prefix` embeddings followed by the `tokens`.
    pub fn generate(
        &self,
        prefix: Vec<f32>,
        tokens: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        let mut o = opts.clone();
        for s in &self.config.stop_token_ids {
            if !o.stop_tokens.contains(s) {
                o.stop_tokens.push(*s);
            }
        }
        generate(self, self.cache(prefix), tokens, &o, &|_, _| {}, on_token)
    }
}
