//! `audio_llm.json`: where the encoder, projector and LLM of an audio LLM are (relative
//! paths), the prompt template with its `<SpeechHere>` placeholder, the task prompts, and how
//! many audio tokens a clip becomes (fixed, or cut to the audio's length: `trim_to_audio`).

use serde::Deserialize;

/// The placeholder a prompt carries where the audio goes.
pub const SPEECH: &str = "<SpeechHere>";

/// Whisper encoder states of one 30 s window.
pub const ENCODER_STATES: usize = 1500;
/// 16 kHz samples per encoder state (hop 160, the encoder's stride 2: 20 ms).
pub const SAMPLES_PER_STATE: usize = 320;

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
    /// Audio tokens of a whole 30 s window (with `trim_to_audio`, the most a clip gets).
    pub(crate) n_audio_tokens: usize,
    pub(crate) out_dim: usize,
    /// Encoder states per audio token and the hop between tokens (needed by `trim_to_audio`).
    #[serde(default)]
    pub(crate) window: Option<usize>,
    #[serde(default)]
    pub(crate) stride: Option<usize>,
    /// Audio tokens cut to the clip's length instead of the whole 30 s window.
    #[serde(default)]
    pub(crate) trim_to_audio: bool,
}

/// How a clip's encoder states become audio tokens when they are cut to its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trim {
    pub window: usize,
    pub stride: usize,
}

impl Trim {
    /// Most tokens: every full window of the 1500 encoder states.
    pub fn max_tokens(&self) -> usize {
        (ENCODER_STATES - self.window) / self.stride + 1
    }

    /// Audio tokens of `n_samples` 16 kHz samples: `ceil(frames / stride)` with `frames =
    /// ceil(n_samples / 320)`, at least 1, at most [`Trim::max_tokens`].
    pub fn tokens(&self, n_samples: usize) -> usize {
        let frames = n_samples.div_ceil(SAMPLES_PER_STATE).max(1);
        frames.div_ceil(self.stride).clamp(1, self.max_tokens())
    }

    /// Encoder states the projector takes for `n_tokens` tokens.
    pub fn states(&self, n_tokens: usize) -> usize {
        ((n_tokens.max(1) - 1) * self.stride + self.window).min(ENCODER_STATES)
    }
}

impl ProjectorPart {
    /// The cut-to-length rule, when on; an error message when its numbers are missing or wrong.
    pub(crate) fn trim(&self) -> std::result::Result<Option<Trim>, String> {
        if !self.trim_to_audio {
            return Ok(None);
        }
        match (self.window, self.stride) {
            (Some(window), Some(stride))
                if window >= 1 && stride >= 1 && window <= ENCODER_STATES =>
            {
                let t = Trim { window, stride };
                if t.max_tokens() != self.n_audio_tokens {
                    return Err(format!(
                        "projector: n_audio_tokens {} but window {window} / stride {stride} over \
                         {ENCODER_STATES} encoder states give {} (trim_to_audio)",
                        self.n_audio_tokens,
                        t.max_tokens()
                    ));
                }
                Ok(Some(t))
            }
            (w, s) => Err(format!(
                "projector: trim_to_audio needs window and stride in [1, {ENCODER_STATES}] \
                 (window {w:?}, stride {s:?})"
            )),
        }
    }
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

impl AudioLlmConfig {
    /// The files an audio-LLM config names (read without opening any model): the config, the
    /// encoder, the projector and the LLM folder's `llm.json`. `None` when the config cannot
    /// be read.
    pub fn files_of(path: &std::path::Path) -> Option<Vec<std::path::PathBuf>> {
        let file = if path.is_dir() {
            path.join("audio_llm.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).ok()?;
        let c: AudioLlmConfig = serde_json::from_str(&text).ok()?;
        let dir = file.parent()?.to_path_buf();
        Some(vec![
            dir.join(&c.encoder.file),
            dir.join(&c.projector.file),
            dir.join(&c.llm.dir).join("llm.json"),
            file,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_the_trim_rule() {
        let t = Trim {
            window: 17,
            stride: 17,
        };
        assert_eq!(t.max_tokens(), 88);
        // 1 sample: 1 frame, 1 token; 17 frames = 5440 samples: still 1 token
        assert_eq!(t.tokens(1), 1);
        assert_eq!(t.tokens(0), 1);
        assert_eq!(t.tokens(17 * 320), 1);
        assert_eq!(t.tokens(17 * 320 + 1), 2);
        // 1.8014 s (28822 samples): 91 frames -> 6 tokens, 102 states
        assert_eq!(t.tokens(28822), 6);
        assert_eq!(t.states(6), 5 * 17 + 17);
        // 30 s: 1500 frames -> ceil(1500/17) = 89, capped at 88; states capped at 1500
        assert_eq!(t.tokens(480_000), 88);
        assert_eq!(t.states(88), 1496);
        let o = Trim {
            window: 20,
            stride: 10,
        };
        assert_eq!(o.max_tokens(), 149);
        assert_eq!(o.tokens(480_000), 149);
        assert_eq!(o.states(149), 1500);
        assert_eq!(o.tokens(320 * 25), 3);
        assert_eq!(o.states(3), 40);
    }
}
