//! How the next token is picked ([`Strategy`]), everything generation is asked for
//! ([`GenerateOptions`]), and the one builder that turns a user's choices (CLI flags) into
//! them, refusing invalid combinations.

use crate::error::{Result, RuntimeError};

/// How the next token is picked.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Greedy,
    /// Sampling from softmax(logits / temperature), keeping the `top_k` most likely tokens
    /// (0 = all) and the smallest set whose probability reaches `top_p` (1 = all).
    Sample {
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
    },
    /// Beam search; hypotheses are ranked by sum of log-probabilities / length^`length_penalty`.
    Beam {
        beams: usize,
        length_penalty: f32,
    },
}

impl Strategy {
    /// Beam search when `beams` > 1 (length penalty 1, as Whisper's reference decoder),
    /// else sampling when `temperature` > 0, else greedy. Checks nothing: see
    /// [`GenerateOptions::from_choices`] for the checked builder.
    pub fn from_options(
        beams: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
    ) -> Self {
        if beams > 1 {
            Strategy::Beam {
                beams,
                length_penalty: 1.0,
            }
        } else if temperature > 0.0 {
            Strategy::Sample {
                temperature,
                top_k,
                top_p,
                seed,
            }
        } else {
            Strategy::Greedy
        }
    }
}

/// Everything generation is asked for.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub strategy: Strategy,
    pub max_new_tokens: usize,
    pub stop_tokens: Vec<u32>,
    /// Above 1 it discourages tokens already generated (CTRL's rule: positive logits
    /// divided, negative multiplied).
    pub repetition_penalty: f32,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            strategy: Strategy::Greedy,
            max_new_tokens: 64,
            stop_tokens: Vec::new(),
            repetition_penalty: 1.0,
        }
    }
}

/// What a user chose for generation (the CLI's `--beams`, `--temperature`, … flags); the
/// defaults are greedy decoding of at most 64 tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationChoices {
    pub beams: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub seed: u64,
    pub repetition_penalty: f32,
    pub max_new_tokens: usize,
}

impl Default for GenerationChoices {
    fn default() -> Self {
        GenerationChoices {
            beams: 1,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            repetition_penalty: 1.0,
            max_new_tokens: 64,
        }
    }
}

impl GenerateOptions {
    /// The options for `c`, strategy by [`Strategy::from_options`]; refuses zero beams or
    /// tokens ([`RuntimeError::NoBeamsOrTokens`]) and a negative temperature, a top-p outside
    /// (0, 1] or a repetition penalty ≤ 0 ([`RuntimeError::SamplingRange`]).
    pub fn from_choices(c: &GenerationChoices) -> Result<GenerateOptions> {
        if c.beams == 0 || c.max_new_tokens == 0 {
            return Err(RuntimeError::NoBeamsOrTokens);
        }
        if c.temperature < 0.0 || !(c.top_p > 0.0 && c.top_p <= 1.0) || c.repetition_penalty <= 0.0
        {
            return Err(RuntimeError::SamplingRange);
        }
        Ok(GenerateOptions {
            strategy: Strategy::from_options(c.beams, c.temperature, c.top_k, c.top_p, c.seed),
            max_new_tokens: c.max_new_tokens,
            repetition_penalty: c.repetition_penalty,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_pick_the_strategy_and_refuse_bad_combinations() {
        let o = |c: GenerationChoices| GenerateOptions::from_choices(&c);
        let d = GenerationChoices::default();
        assert_eq!(o(d.clone()).unwrap().strategy, Strategy::Greedy);
        let beam = o(GenerationChoices {
            beams: 5,
            temperature: 0.7,
            ..d.clone()
        })
        .unwrap();
        assert_eq!(
            beam.strategy,
            Strategy::Beam {
                beams: 5,
                length_penalty: 1.0
            }
        );
        let s = o(GenerationChoices {
            temperature: 0.7,
            top_k: 3,
            top_p: 0.9,
            seed: 11,
            repetition_penalty: 1.2,
            max_new_tokens: 9,
            ..d.clone()
        })
        .unwrap();
        assert_eq!(
            s.strategy,
            Strategy::Sample {
                temperature: 0.7,
                top_k: 3,
                top_p: 0.9,
                seed: 11
            }
        );
        assert_eq!((s.max_new_tokens, s.repetition_penalty), (9, 1.2));
        for bad in [
            GenerationChoices {
                beams: 0,
                ..d.clone()
            },
            GenerationChoices {
                max_new_tokens: 0,
                ..d.clone()
            },
        ] {
            let e = o(bad).unwrap_err();
            assert!(matches!(e, RuntimeError::NoBeamsOrTokens), "{e}");
        }
        for bad in [
            GenerationChoices {
                temperature: -0.1,
                ..d.clone()
            },
            GenerationChoices {
                top_p: 0.0,
                ..d.clone()
            },
            GenerationChoices {
                top_p: 1.5,
                ..d.clone()
            },
            GenerationChoices {
                repetition_penalty: 0.0,
                ..d.clone()
            },
        ] {
            let e = o(bad).unwrap_err();
            assert!(matches!(e, RuntimeError::SamplingRange), "{e}");
        }
    }
}
