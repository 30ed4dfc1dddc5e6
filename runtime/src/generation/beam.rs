//! Beam search over a [`StepDecoder`]: each hypothesis carries its own copy of the cache;
//! hypotheses are ranked by sum of log-probabilities / length^`length_penalty`.

use super::sampling::{apply_repetition, log_softmax};
use super::{GenerateOptions, LogitRule, StepDecoder};
use crate::error::Result;

struct Hyp<S> {
    tokens: Vec<u32>,
    logp: f32,
    state: S,
    logits: Vec<f32>,
}

/// The best hypothesis after `prompt` (stop token excluded).
pub(crate) fn beam_search<D: StepDecoder>(
    dec: &D,
    init: D::State,
    prompt: &[u32],
    o: &GenerateOptions,
    beams: usize,
    length_penalty: f32,
    rule: LogitRule,
) -> Result<Vec<u32>> {
    let score = |logp: f32, len: usize| logp / (len.max(1) as f32).powf(length_penalty);
    let mut state = init;
    let logits = dec.step(&mut state, prompt)?;
    let mut alive = vec![Hyp {
        tokens: Vec::new(),
        logp: 0.0,
        state,
        logits,
    }];
    let mut done: Vec<(Vec<u32>, f32)> = Vec::new();
    for step in 0..o.max_new_tokens {
        // candidates: (hypothesis index, token, total log-probability)
        let mut cand: Vec<(usize, u32, f32)> = Vec::new();
        for (h, hyp) in alive.iter_mut().enumerate() {
            rule(step, &mut hyp.logits);
            apply_repetition(&mut hyp.logits, &hyp.tokens, o.repetition_penalty);
            let lp = log_softmax(&hyp.logits);
            let mut order: Vec<usize> = (0..lp.len()).collect();
            order.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]));
            for &t in order.iter().take(2 * beams) {
                if lp[t].is_finite() {
                    cand.push((h, t as u32, hyp.logp + lp[t]));
                }
            }
        }
        cand.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mut next = Vec::new();
        for (h, t, lp) in cand {
            if next.len() == beams {
                break;
            }
            if o.stop_tokens.contains(&t) {
                let toks = alive[h].tokens.clone();
                let len = toks.len() + 1;
                done.push((toks, score(lp, len)));
                continue;
            }
            let mut tokens = alive[h].tokens.clone();
            tokens.push(t);
            next.push((h, tokens, lp));
        }
        // stop once enough hypotheses finished and none alive can beat the best of them
        // (log-probabilities only fall as tokens are added)
        if done.len() >= beams || next.is_empty() {
            break;
        }
        if step + 1 == o.max_new_tokens {
            for (_, tokens, lp) in next {
                let len = tokens.len();
                done.push((tokens, score(lp, len)));
            }
            break;
        }
        let mut new_alive = Vec::new();
        for (h, tokens, lp) in next {
            let mut state = alive[h].state.clone();
            let logits = dec.step(&mut state, &tokens[tokens.len() - 1..])?;
            new_alive.push(Hyp {
                tokens,
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
            (h.tokens, score(h.logp, len))
        }));
    }
    done.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(done.into_iter().next().map(|d| d.0).unwrap_or_default())
}
