//! Token generation over any step-wise decoder whose cache the caller owns: greedy,
//! temperature / top-k / top-p sampling with a seed ([`sampling`]), beam search ([`beam`]),
//! repetition penalty, stop tokens, a token budget, per-step logit rules (suppressed tokens)
//! and streaming of tokens to a callback. [`strategy`] holds the options and their builder.
//! [`generate_scored`] also returns each chosen token's log-probability (what Whisper's
//! temperature fallback judges a decode by).

mod beam;
pub mod sampling;
pub mod strategy;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::Result;
use beam::beam_search;
use sampling::{apply_repetition, log_prob_of, sample};

pub use sampling::{argmax, log_softmax};
pub use strategy::{GenerateOptions, GenerationChoices, Strategy};

/// A decoder that, given its state (the KV cache, owned by the caller) and the new tokens,
/// returns the logits of the next token and advances the state.
pub trait StepDecoder {
    type State: Clone;
    fn step(&self, state: &mut Self::State, new_tokens: &[u32]) -> Result<Vec<f32>>;
}

/// Per-step logit rules of a model (Whisper's suppressed tokens, say): called with the step
/// index (0 = first new token) and the logits to edit.
pub type LogitRule<'a> = &'a dyn Fn(usize, &mut [f32]);

/// The tokens a generation chose and how likely each was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generated {
    /// The new tokens, stop token excluded.
    pub tokens: Vec<u32>,
    /// The log-probability of each chosen token under log-softmax of its step's logits after
    /// the rules and the repetition penalty (not divided by a sampling temperature), in order;
    /// when generation ended on a stop token, its log-probability comes last (one more entry
    /// than `tokens`).
    pub logprobs: Vec<f32>,
}

impl Generated {
    /// Sum of the log-probabilities divided by the number of tokens plus one, as Whisper's
    /// reference decoder averages them (the stop token counts; -inf if a chosen token had none).
    pub fn avg_logprob(&self) -> f32 {
        self.logprobs.iter().sum::<f32>() / (self.tokens.len() + 1) as f32
    }
}

/// Generates after `prompt` (fed in one step); `on_token` receives each new token as it is
/// chosen (beam search: the best hypothesis, at the end) and may return false to stop.
/// Returns the new tokens, stop token excluded. Sampling fails with
/// [`crate::RuntimeError::NoFiniteLogits`] when a step's logits hold no finite value.
pub fn generate<D: StepDecoder>(
    dec: &D,
    init: D::State,
    prompt: &[u32],
    o: &GenerateOptions,
    rule: LogitRule,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    generate_scored(dec, init, prompt, o, rule, on_token).map(|g| g.tokens)
}

/// [`generate`], with the log-probability of every chosen token ([`Generated`]).
pub fn generate_scored<D: StepDecoder>(
    dec: &D,
    init: D::State,
    prompt: &[u32],
    o: &GenerateOptions,
    rule: LogitRule,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Generated> {
    if let Strategy::Beam {
        beams,
        length_penalty,
    } = o.strategy
    {
        let best = beam_search(dec, init, prompt, o, beams.max(1), length_penalty, rule)?;
        for &t in &best.tokens {
            if !on_token(t) {
                break;
            }
        }
        return Ok(best);
    }
    let mut rng = match o.strategy {
        Strategy::Sample { seed, .. } => StdRng::seed_from_u64(seed),
        _ => StdRng::seed_from_u64(0),
    };
    let mut state = init;
    let mut out = Generated::default();
    let mut logits = dec.step(&mut state, prompt)?;
    for step in 0..o.max_new_tokens {
        rule(step, &mut logits);
        apply_repetition(&mut logits, &out.tokens, o.repetition_penalty);
        let next = match o.strategy {
            Strategy::Sample {
                temperature,
                top_k,
                top_p,
                ..
            } if temperature > 0.0 => sample(&logits, temperature, top_k, top_p, &mut rng)?,
            _ => argmax(&logits),
        };
        out.logprobs.push(log_prob_of(&logits, next));
        let next = next as u32;
        if o.stop_tokens.contains(&next) {
            break;
        }
        out.tokens.push(next);
        if !on_token(next) || step + 1 == o.max_new_tokens {
            break;
        }
        logits = dec.step(&mut state, &[next])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
