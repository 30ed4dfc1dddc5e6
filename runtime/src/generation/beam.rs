//! Beam search over a [`StepDecoder`]: each hypothesis carries its own copy of the cache;
//! hypotheses are ranked by sum of log-probabilities / length^`length_penalty`; the best one
//! comes back with the log-probability of each of its tokens.

use super::sampling::{apply_repetition, log_softmax};
use super::{GenerateOptions, Generated, LogitRule, StepDecoder};
use crate::error::Result;

struct Hyp<S> {
    tokens: Vec<u32>,
    /// Log-probability of each token.
    lps: Vec<f32>,
    logp: f32,
    state: S,
    logits: Vec<f32>,
}

/// The best hypothesis after `prompt` (stop token excluded; its log-probability kept).
pub(crate) fn beam_search<D: StepDecoder>(
    dec: &D,
    init: D::State,
    prompt: &[u32],
    o: &GenerateOptions,
    beams: usize,
    length_penalty: f32,
    rule: LogitRule,
) -> Result<Generated> {
    let score = |logp: f32, len: usize| logp / (len.max(1) as f32).powf(length_penalty);
    let mut state = init;
    let logits = dec.step(&mut state, prompt)?;
    let mut alive = vec![Hyp {
        tokens: Vec::new(),
        lps: Vec::new(),
        logp: 0.0,
        state,
        logits,
    }];
    let mut done: Vec<(Generated, f32)> = Vec::new();
    for step in 0..o.max_new_tokens {
        // candidates: (hypothesis index, token, its log-probability, total log-probability)
        let mut cand: Vec<(usize, u32, f32, f32)> = Vec::new();
        for (h, hyp) in alive.iter_mut().enumerate() {
            rule(step, &mut hyp.logits);
            apply_repetition(&mut hyp.logits, &hyp.tokens, o.repetition_penalty);
            let lp = log_softmax(&hyp.logits);
            let mut order: Vec<usize> = (0..lp.len()).collect();
            order.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]));
            for &t in order.iter().take(2 * beams) {
                if lp[t].is_finite() {
                    cand.push((h, t as u32, lp[t], hyp.logp + lp[t]));
                }
            }
        }
        cand.sort_by(|a, b| b.3.total_cmp(&a.3));
        let mut next = Vec::new();
        for (h, t, tlp, lp) in cand {
            if next.len() == beams {
                break;
            }
            let mut lps = alive[h].lps.clone();
            lps.push(tlp);
            if o.stop_tokens.contains(&t) {
                let tokens = alive[h].tokens.clone();
                let len = tokens.len() + 1;
                done.push((
                    Generated {
                        tokens,
                        logprobs: lps,
                    },
                    score(lp, len),
                ));
                continue;
            }
            let mut tokens = alive[h].tokens.clone();
            tokens.push(t);
            next.push((
                h,
                Generated {
                    tokens,
                    logprobs: lps,
                },
                lp,
            ));
        }
        // stop once enough hypotheses finished and none alive can beat the best of them
        // (log-probabilities only fall as tokens are added)
        if done.len() >= beams || next.is_empty() {
            break;
        }
        if step + 1 == o.max_new_tokens {
            for (_, g, lp) in next {
                let len = g.tokens.len();
                done.push((g, score(lp, len)));
            }
            break;
        }
        let mut new_alive = Vec::new();
        for (h, g, lp) in next {
            let mut state = alive[h].state.clone();
            let logits = dec.step(&mut state, &g.tokens[g.tokens.len() - 1..])?;
            new_alive.push(Hyp {
                tokens: g.tokens,
                lps: g.logprobs,
                logp: lp,
                state,
                logits,
            });
        }
        alive = new_alive;
    }
    if done.is_empty() {
        done.extend(alive.into_iter().map(|h| {
            let len = h.tokens.len();
            let g = Generated {
                tokens: h.tokens,
                logprobs: h.lps,
            };
            (g, score(h.logp, len))
        }));
    }
    done.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(done.into_iter().next().map(|d| d.0).unwrap_or_default())
}
