//! Unit tests of the safeguards' logic over a step decoder built from constructed logits: the
//! compression ratio, a decode that loops at temperature 0 and is replaced by a sampled one,
//! the pick when every temperature fails, and no-speech detection at the start-of-transcript
//! position.

use super::*;
use crate::generation::StepDecoder;

/// Tokens: 0 = start-of-transcript, 1 = no-timestamps, 2 = stop, 3 = no-speech, 4.. letters.
const SOT: u32 = 0;
const NT: u32 = 1;
const EOT: u32 = 2;
const NO_SPEECH: usize = 3;
const VOCAB: usize = 10;

/// A decoder whose next-token logits depend on the last token only (the state is the token
/// history, what a KV cache stands for): after the prompt, letter 4 is near certain, and after
/// 4, 4 again (p 0.73: greedy decoding loops to the budget) or the stop token (p 0.27:
/// sampling at 0.4 and above stops after a few letters).
struct Looping {
    /// Logit of `<|nospeech|>` after start-of-transcript.
    no_speech_logit: f32,
}

impl StepDecoder for Looping {
    type State = Vec<u32>;
    fn step(&self, state: &mut Vec<u32>, new: &[u32]) -> Result<Vec<f32>> {
        state.extend_from_slice(new);
        let mut l = vec![-10.0f32; VOCAB];
        match state.last().copied() {
            Some(SOT) => {
                l[NT as usize] = 5.0;
                l[NO_SPEECH] = self.no_speech_logit;
            }
            Some(NT) => l[4] = 5.0,
            Some(4) => {
                l[4] = 3.0;
                l[EOT as usize] = 2.0;
            }
            _ => l[EOT as usize] = 8.0,
        }
        Ok(l)
    }
}

fn letters(ids: &[u32]) -> Result<String> {
    Ok(ids
        .iter()
        .map(|&t| (b'a' + (t as u8).saturating_sub(4)) as char)
        .collect())
}

fn opts() -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: 224,
        stop_tokens: vec![EOT],
        ..Default::default()
    }
}

fn run(dec: &Looping, sg: &Safeguards) -> WindowDecode {
    decode_with_fallback(
        dec,
        Vec::new(),
        &[SOT, NT],
        &opts(),
        &|_, _| {},
        sg,
        Some((1, NO_SPEECH)),
        &letters,
        &mut |_| true,
    )
    .unwrap()
}

#[test]
fn compression_ratio_of_repeated_and_normal_text() {
    let looped = "a".repeat(224);
    assert!(
        compression_ratio(&looped) > 2.4,
        "{}",
        compression_ratio(&looped)
    );
    let repeated = "I can't hear you. ".repeat(12);
    assert!(compression_ratio(&repeated) > 2.4);
    let normal = "All circuits are busy now. Please try your call again later, \
                  or press the pound key for more options.";
    let r = compression_ratio(normal);
    assert!(r > 0.5 && r < 2.4, "{r}");
    assert_eq!(compression_ratio(""), 0.0);
}

#[test]
fn a_decode_that_loops_at_temperature_zero_is_replaced_by_a_sampled_one() {
    let dec = Looping {
        no_speech_logit: -10.0,
    };
    // without the safeguards greedy decoding loops to the budget: 224 times the same letter
    let off = run(&dec, &Safeguards::off());
    assert_eq!(off.tokens.len(), 224);
    assert!(off.tokens.iter().all(|&t| t == 4));
    assert_eq!((off.attempts, off.temperature), (1, 0.0));
    assert!(off.compression_ratio > 2.4);
    // with them: temperature 0 fails on its compression ratio, a sampled decode that stops
    // passes and is kept
    let sg = Safeguards::default();
    let on = run(&dec, &sg);
    assert!(on.attempts > 1, "{on:?}");
    assert!(on.temperature > 0.0);
    assert!(on.tokens.len() < 224 && !on.tokens.is_empty(), "{on:?}");
    assert!(
        on.compression_ratio <= 2.4 && on.avg_logprob >= -1.0,
        "{on:?}"
    );
    assert!(!on.silence);
    assert_eq!(on.text, letters(&on.tokens).unwrap());
    // seeded: the same decode every run; another seed samples another
    assert_eq!(run(&dec, &sg), on);
    // no fallback (temperature 0 only): the looping decode is all there is
    let single = Safeguards {
        temperatures: vec![0.0],
        ..Safeguards::default()
    };
    assert_eq!(run(&dec, &single).tokens, off.tokens);
}

#[test]
fn when_every_temperature_fails_the_best_non_looping_decode_is_kept() {
    let dec = Looping {
        no_speech_logit: -10.0,
    };
    // a log-probability threshold nothing reaches: every decode fails; the looping greedy
    // one has the best average log-probability but is left out for its compression ratio
    let sg = Safeguards {
        logprob_threshold: Some(-0.01),
        ..Safeguards::default()
    };
    let d = run(&dec, &sg);
    assert_eq!(d.attempts, 6);
    assert!(d.temperature > 0.0 && d.compression_ratio <= 2.4, "{d:?}");
    let mut tried = Vec::new();
    for (i, &t) in sg.temperatures.iter().enumerate() {
        let mut o = opts();
        o.strategy = sg.strategy(&Strategy::Greedy, i, t);
        let g =
            generate_scored(&dec, Vec::new(), &[SOT, NT], &o, &|_, _| {}, &mut |_| true).unwrap();
        let text = letters(&g.tokens).unwrap();
        tried.push((compression_ratio(&text), g.avg_logprob(), g.tokens));
    }
    let best = tried
        .iter()
        .filter(|t| t.0 <= 2.4)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(d.tokens, best.2);
    assert!((d.avg_logprob - best.1).abs() < 1e-6);
    // with no compression-ratio threshold the greedy decode wins on log-probability
    let sg = Safeguards {
        compression_ratio_threshold: None,
        logprob_threshold: Some(-0.01),
        ..Safeguards::default()
    };
    let d = run(&dec, &sg);
    assert_eq!((d.temperature, d.tokens.len()), (0.0, 224));
}

#[test]
fn a_likely_no_speech_window_with_an_unlikely_decode_is_silence() {
    // p(no-speech) = e^8 / (e^5 + e^8 + 8 e^-10) ≈ 0.95
    let silent = Looping {
        no_speech_logit: 8.0,
    };
    let sg = Safeguards {
        // only the log-probability check: the decode is unlikely
        compression_ratio_threshold: None,
        logprob_threshold: Some(-0.01),
        ..Safeguards::default()
    };
    let d = run(&silent, &sg);
    let p = d.no_speech_prob.unwrap();
    assert!(p > 0.9, "{p}");
    assert!(
        d.silence && d.tokens.is_empty() && d.text.is_empty(),
        "{d:?}"
    );
    // silence stops the fallback at the first decode
    assert_eq!(d.attempts, 1);
    // the same window when the no-speech token is unlikely: text
    let speech = Looping {
        no_speech_logit: -10.0,
    };
    let d = run(&speech, &sg);
    assert!(d.no_speech_prob.unwrap() < 1e-6);
    assert!(!d.silence && !d.text.is_empty());
    // a likely decode is never silence, however likely no-speech is
    let lenient = Safeguards {
        logprob_threshold: Some(-100.0),
        ..sg.clone()
    };
    let d = run(&silent, &lenient);
    assert!(!d.silence && !d.text.is_empty());
    // no detection without the threshold
    let off = Safeguards {
        no_speech_threshold: None,
        ..sg
    };
    let d = run(&silent, &off);
    assert_eq!(d.no_speech_prob, None);
    assert!(!d.silence);
}

#[test]
fn the_no_speech_probe_feeds_the_prompt_in_two_steps_with_the_same_result() {
    let dec = Looping {
        no_speech_logit: 1.0,
    };
    let probe = NoSpeechProbe {
        inner: &dec,
        split: 1,
        token: NO_SPEECH,
        first: Cell::new(true),
        prob: Cell::new(None),
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let la = probe.step(&mut a, &[SOT, NT]).unwrap();
    let lb = dec.step(&mut b, &[SOT, NT]).unwrap();
    assert_eq!((a.clone(), la), (b, lb));
    let p = probe.prob.get().unwrap();
    let want = 1f32.exp() / (1f32.exp() + 5f32.exp() + 8.0 * (-10f32).exp());
    assert!((p - want).abs() < 1e-5, "{p} vs {want}");
    // later steps pass through
    probe.step(&mut a, &[4]).unwrap();
    assert_eq!(a, [SOT, NT, 4]);
}
