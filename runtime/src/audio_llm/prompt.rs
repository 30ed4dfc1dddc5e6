//! Prompts of the audio LLM: the user turn of a task (`asr`, `caption`, `qa` with a question)
//! or a custom prompt, and the chat prompt split at `<SpeechHere>`.

use std::path::PathBuf;

use super::config::SPEECH;
use super::AudioLlm;
use crate::error::{cfg_err, Result, RuntimeError};

impl AudioLlm {
    /// The user turn for a task (`asr`, `caption`, `qa` with `question`) or a custom prompt,
    /// which must hold `<SpeechHere>` exactly once.
    pub fn user_turn(
        &self,
        task: &str,
        prompt: Option<&str>,
        question: Option<&str>,
    ) -> Result<String> {
        let text = match prompt {
            Some(p) => p.to_string(),
            None => {
                let t = self.config.tasks.get(task).ok_or_else(|| {
                    cfg_err(
                        &self.path,
                        format!(
                            "no task '{task}' (tasks: {})",
                            self.config
                                .tasks
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                if t.contains("{question}") {
                    let q = question.ok_or_else(|| {
                        cfg_err(
                            &self.path,
                            format!("task '{task}' needs a question (--question)"),
                        )
                    })?;
                    t.replace("{question}", q)
                } else {
                    t.clone()
                }
            }
        };
        let n = text.matches(SPEECH).count();
        if n != 1 {
            return Err(RuntimeError::Config {
                path: PathBuf::from("--prompt"),
                reason: format!(
                    "the prompt must contain {SPEECH} exactly once (found {n}): \"{text}\""
                ),
            });
        }
        Ok(text)
    }

    /// Number of prompt positions for a user turn: template tokens plus the audio tokens of a
    /// clip of `n_samples` 16 kHz samples (`None`, not known: the most a clip can take).
    pub fn prompt_tokens(&self, user: &str, n_samples: Option<usize>) -> Result<usize> {
        let (before, after) = self.split_prompt(user)?;
        Ok(self.llm.encode(&before)?.len()
            + self.audio_tokens(n_samples)
            + self.llm.encode(&after)?.len())
    }

    /// The chat prompt of a user turn, split at `<SpeechHere>`.
    pub(super) fn split_prompt(&self, user: &str) -> Result<(String, String)> {
        let prompt = self
            .config
            .prompt_template
            .replace("{system}", &self.config.system)
            .replace("{prompt}", user);
        let (before, after) = prompt
            .split_once(SPEECH)
            .ok_or_else(|| cfg_err(&self.path, format!("prompt has no {SPEECH}")))?;
        Ok((before.to_string(), after.to_string()))
    }
}
