//! Token generation over any step-wise decoder with a cache: greedy, temperature / top-k /
//! top-p sampling with a seed, beam search, repetition penalty, stop tokens, a token budget,
//! per-step logit rules (suppressed tokens) and streaming of tokens to a callback.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::Result;

/// A decoder that, given its state (the KV cache) and the new tokens, returns the logits of
/// the next token and advances the state.
pub trait StepDecoder {
    type State: Clone;
    fn step(&self, state: &mut Self::State, new_tokens: &[u32]) -> Result<Vec<f32>>;
}

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

/// Per-step logit rules of a model (Whisper's suppressed tokens, say): called with the step
/// index (0 = first new token) and the logits to edit.
pub type LogitRule<'a> = &'a dyn Fn(usize, &mut [f32]);

fn apply_repetition(logits: &mut [f32], generated: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for &t in generated {
        if seen.insert(t) {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// log-softmax, stable.
pub fn log_softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = v.iter().map(|x| ((x - m) as f64).exp()).sum::<f64>().ln() as f32 + m;
    v.iter().map(|x| x - lse).collect()
}

fn sample(logits: &[f32], temperature: f32, top_k: usize, top_p: f32, rng: &mut StdRng) -> usize {
    let t = temperature.max(1e-5);
    let mut idx: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if top_k > 0 {
        idx.truncate(top_k);
    }
    let m = logits[idx[0]] / t;
    let mut p: Vec<f64> = idx
        .iter()
        .map(|&i| ((logits[i] / t - m) as f64).exp())
        .collect();
    let z: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= z);
    if top_p < 1.0 {
        let mut acc = 0.0;
        let keep = p
            .iter()
            .position(|x| {
                acc += x;
                acc >= top_p as f64
            })
            .map_or(p.len(), |k| k + 1);
        idx.truncate(keep);
        p.truncate(keep);
        let z: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= z);
    }
    let r: f64 = rng.random();
    let mut acc = 0.0;
    for (k, x) in p.iter().enumerate() {
        acc += x;
        if r < acc {
            return idx[k];
        }
    }
    idx[idx.len() - 1]
}

/// Generates after `prompt` (fed in one step); `on_token` receives each new token as it is
/// chosen (beam search: the best hypothesis, at the end) and may return false to stop.
/// Returns the new tokens, stop token excluded.
pub fn generate<D: StepDecoder>(
    dec: &D,
    init: D::State,
    prompt: &[u32],
    o: &GenerateOptions,
    rule: LogitRule,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    if let Strategy::Beam {
        beams,
        length_penalty,
    } = o.strategy
    {
        let best = beam_search(dec, init, prompt, o, beams.max(1), length_penalty, rule)?;
        for &t in &best {
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
    let mut out = Vec::new();
    let mut logits = dec.step(&mut state, prompt)?;
    for step in 0..o.max_new_tokens {
        rule(step, &mut logits);
        apply_repetition(&mut logits, &out, o.repetition_penalty);
        let next = match o.strategy {
            Strategy::Sample {
                temperature,
                top_k,
                top_p,
                ..
            } if temperature > 0.0 => sample(&logits, temperature, top_k, top_p, &mut rng),
            _ => argmax(&logits),
        } as u32;
        if o.stop_tokens.contains(&next) {
            break;
        }
        out.push(next);
        if !on_token(next) || step + 1 == o.max_new_tokens {
            break;
        }
        logits = dec.step(&mut state, &[next])?;
    }
    Ok(out)
}

struct Hyp<S> {
    tokens: Vec<u32>,
    logp: f32,
    state: S,
    logits: Vec<f32>,
}

fn beam_search<D: StepDecoder>(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A bigram table over 5 tokens: logits of the next token depend on the last one; the
    /// state is the token history (what a KV cache stands for).
    struct Bigram(Vec<Vec<f32>>);

    impl StepDecoder for Bigram {
        type State = Vec<u32>;
        fn step(&self, state: &mut Vec<u32>, new: &[u32]) -> Result<Vec<f32>> {
            state.extend_from_slice(new);
            Ok(self.0[*state.last().unwrap() as usize].clone())
        }
    }

    fn table() -> Bigram {
        // from 0: 1 is likely but leads to a dead end (4 = stop is unlikely after 1);
        // 2 is less likely but then 4 is certain: beam search finds 0→2→4, greedy 0→1→...
        Bigram(vec![
            vec![-9.0, 2.0, 1.6, -9.0, -9.0],
            vec![-9.0, -9.0, -9.0, 0.0, -0.5],
            vec![-9.0, -9.0, -9.0, -9.0, 5.0],
            vec![-9.0, 0.2, -9.0, -9.0, 0.1],
            vec![0.0; 5],
        ])
    }

    fn run(o: &GenerateOptions) -> Vec<u32> {
        generate(&table(), Vec::new(), &[0], o, &|_, _| {}, &mut |_| true).unwrap()
    }

    #[test]
    fn greedy_beam_and_stops() {
        let mut o = GenerateOptions {
            max_new_tokens: 4,
            stop_tokens: vec![4],
            ..Default::default()
        };
        assert_eq!(run(&o), [1, 3, 1, 3]);
        o.strategy = Strategy::Beam {
            beams: 3,
            length_penalty: 0.0,
        };
        assert_eq!(run(&o), [2]);
        // a rule that suppresses token 2 at the first step sends beam search elsewhere
        let r = generate(
            &table(),
            Vec::new(),
            &[0],
            &o,
            &|step, l| {
                if step == 0 {
                    l[2] = f32::NEG_INFINITY
                }
            },
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(r[0], 1);
        // repetition penalty breaks the 1,3 loop of greedy decoding
        o.strategy = Strategy::Greedy;
        o.repetition_penalty = 100.0;
        assert_eq!(run(&o), [1, 3]);
        // the callback can stop generation
        let mut seen = Vec::new();
        let r = generate(
            &table(),
            Vec::new(),
            &[0],
            &GenerateOptions::default(),
            &|_, _| {},
            &mut |t| {
                seen.push(t);
                seen.len() < 2
            },
        )
        .unwrap();
        assert_eq!((r, seen), (vec![1, 3], vec![1, 3]));
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_k() {
        let o = |seed| GenerateOptions {
            strategy: Strategy::Sample {
                temperature: 1.0,
                top_k: 2,
                top_p: 1.0,
                seed,
            },
            max_new_tokens: 20,
            ..Default::default()
        };
        assert_eq!(run(&o(7)), run(&o(7)));
        let many: Vec<Vec<u32>> = (0..20).map(|s| run(&o(s))).collect();
        assert!(many.iter().any(|r| r != &many[0]), "different seeds differ");
        // from 0, top_k 2 keeps tokens 1 and 2 only
        assert!(many.iter().all(|r| r[0] == 1 || r[0] == 2));
        // top_p small: only the most likely token survives, as greedy
        let tight = GenerateOptions {
            strategy: Strategy::Sample {
                temperature: 1.0,
                top_k: 0,
                top_p: 0.01,
                seed: 3,
            },
            max_new_tokens: 4,
            ..Default::default()
        };
        assert_eq!(run(&tight), [1, 3, 1, 3]);
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let z: f32 = lp.iter().map(|x| x.exp()).sum();
        assert!((z - 1.0).abs() < 1e-6);
    }
}
