//! Unit tests of generation: greedy, beam search, rules, repetition penalty, streaming stop,
//! seeded sampling with top-k / top-p, the refusal of logits with nothing finite, and the
//! log-probability of each chosen token.

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

#[test]
fn sampling_refuses_logits_with_nothing_finite() {
    // every logit NaN (a broken model): a typed error, not a panic
    let nan = Bigram(vec![vec![f32::NAN; 5]; 5]);
    let o = GenerateOptions {
        strategy: Strategy::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 1,
        },
        ..Default::default()
    };
    let e = generate(&nan, Vec::new(), &[0], &o, &|_, _| {}, &mut |_| true).unwrap_err();
    assert!(
        matches!(e, crate::RuntimeError::NoFiniteLogits { vocab: 5 }),
        "{e}"
    );
    // a rule that suppresses every token leaves nothing to draw from either
    let e = generate(
        &table(),
        Vec::new(),
        &[0],
        &o,
        &|_, l| l.fill(f32::NEG_INFINITY),
        &mut |_| true,
    )
    .unwrap_err();
    assert!(
        matches!(e, crate::RuntimeError::NoFiniteLogits { .. }),
        "{e}"
    );
}

#[test]
fn scored_generation_reports_each_chosen_tokens_log_probability() {
    let o = GenerateOptions {
        max_new_tokens: 4,
        stop_tokens: vec![4],
        ..Default::default()
    };
    let lp = |row: usize, t: usize| log_softmax(&table().0[row])[t];
    // greedy 0→1→3→1→3, the budget reached: one log-probability per token
    let g = generate_scored(&table(), Vec::new(), &[0], &o, &|_, _| {}, &mut |_| true).unwrap();
    assert_eq!(g.tokens, [1, 3, 1, 3]);
    let want = [lp(0, 1), lp(1, 3), lp(3, 1), lp(1, 3)];
    assert_eq!(g.logprobs.len(), 4);
    for (a, b) in g.logprobs.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{:?} vs {want:?}", g.logprobs);
    }
    // averaged over the tokens plus one, as Whisper's reference does
    let avg = want.iter().sum::<f32>() / 5.0;
    assert!((g.avg_logprob() - avg).abs() < 1e-6);
    // the rules come first: token 1 suppressed at step 0, its mass goes to 2 (then stop)
    let g = generate_scored(
        &table(),
        Vec::new(),
        &[0],
        &o,
        &|step, l| {
            if step == 0 {
                l[1] = f32::NEG_INFINITY
            }
        },
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(g.tokens, [2]);
    let mut row = table().0[0].clone();
    row[1] = f32::NEG_INFINITY;
    // the stop token's log-probability is the last entry
    assert_eq!(g.logprobs.len(), 2);
    assert!((g.logprobs[0] - log_softmax(&row)[2]).abs() < 1e-6);
    assert!((g.logprobs[1] - lp(2, 4)).abs() < 1e-6);
    // beam search: the best hypothesis 0→2→4 with its two log-probabilities
    let b = GenerateOptions {
        strategy: Strategy::Beam {
            beams: 3,
            length_penalty: 0.0,
        },
        ..o.clone()
    };
    let g = generate_scored(&table(), Vec::new(), &[0], &b, &|_, _| {}, &mut |_| true).unwrap();
    assert_eq!(g.tokens, [2]);
    assert!((g.logprobs[0] - lp(0, 2)).abs() < 1e-6 && (g.logprobs[1] - lp(2, 4)).abs() < 1e-6);
    // sampling reports the untempered log-probability of what it drew
    let s = GenerateOptions {
        strategy: Strategy::Sample {
            temperature: 0.5,
            top_k: 0,
            top_p: 1.0,
            seed: 5,
        },
        ..o
    };
    let g = generate_scored(&table(), Vec::new(), &[0], &s, &|_, _| {}, &mut |_| true).unwrap();
    let mut last = 0usize;
    for (i, &t) in g.tokens.iter().enumerate() {
        assert!((g.logprobs[i] - lp(last, t as usize)).abs() < 1e-6);
        last = t as usize;
    }
}
