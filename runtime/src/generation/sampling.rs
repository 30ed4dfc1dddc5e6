//! Picking the next token from logits, apart from any model: greedy (argmax), temperature /
//! top-k / top-p sampling with a seeded generator, log-softmax and the repetition penalty.

use rand::rngs::StdRng;
use rand::Rng;

use crate::error::{Result, RuntimeError};

/// Above 1 `penalty` discourages tokens already generated (CTRL's rule: positive logits
/// divided, negative multiplied); each token is penalised once.
pub(crate) fn apply_repetition(logits: &mut [f32], generated: &[u32], penalty: f32) {
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

/// `log_softmax(v)[i]` without the whole vector (-inf for an index outside `v`).
pub(crate) fn log_prob_of(v: &[f32], i: usize) -> f32 {
    let Some(&x) = v.get(i) else {
        return f32::NEG_INFINITY;
    };
    let m = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    if !m.is_finite() {
        return f32::NEG_INFINITY;
    }
    let lse = v.iter().map(|y| ((y - m) as f64).exp()).sum::<f64>().ln() as f32 + m;
    x - lse
}

/// A token drawn from softmax(logits / temperature) over the `top_k` most likely tokens
/// (0 = all) and the smallest set whose probability reaches `top_p` (1 = all). Fails when no
/// logit is finite (every one NaN or infinite): there is nothing to draw from.
pub(crate) fn sample(
    logits: &[f32],
    temperature: f32,
    top_k: usize,
    top_p: f32,
    rng: &mut StdRng,
) -> Result<usize> {
    let t = temperature.max(1e-5);
    let mut idx: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if top_k > 0 {
        idx.truncate(top_k);
    }
    let Some(&best) = idx.first() else {
        return Err(RuntimeError::NoFiniteLogits {
            vocab: logits.len(),
        });
    };
    let m = logits[best] / t;
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
    for (&i, x) in idx.iter().zip(&p) {
        acc += x;
        if r < acc {
            return Ok(i);
        }
    }
    // rounding left the cumulative sum just under r: the least likely kept token
    Ok(idx.last().copied().unwrap_or(best))
}
