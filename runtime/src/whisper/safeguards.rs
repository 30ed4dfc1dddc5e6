//! Whisper's decoding safeguards, applied to each 30 s window as OpenAI's reference
//! `transcribe` applies them: **temperature fallback** — decode at temperature 0 (greedy or
//! beam search), and while the result is too repetitive (compression ratio of its text above
//! a threshold, 2.4) or too unlikely (average log-probability of its tokens below a threshold,
//! -1.0), decode again sampling at the next temperature (0.2, 0.4, … 1.0; seeded, so runs
//! repeat) — and **no-speech detection** — a window whose `<|nospeech|>` probability at the
//! start-of-transcript position is above a threshold (0.6) and whose decode is unlikely is
//! silence and gives no text.
//!
//! When no temperature passes, the reference keeps the last decode; here the decode with the
//! best average log-probability among those that pass the compression-ratio check is kept
//! (among all when none does), as faster-whisper does: a looping decode is never kept when
//! another is not looping.

use std::cell::Cell;
use std::io::Write as _;
use std::path::Path;

use flate2::write::ZlibEncoder;
use flate2::Compression;

use super::model::WhisperCache;
use super::Whisper;
use crate::error::Result;
use crate::generation::{
    generate_scored, GenerateOptions, Generated, LogitRule, StepDecoder, Strategy,
};

/// The thresholds and temperatures of the safeguards; [`Default`] is Whisper's.
#[derive(Debug, Clone, PartialEq)]
pub struct Safeguards {
    /// Temperatures tried in order; 0 decodes with the strategy asked for (greedy or beam
    /// search), above 0 samples. Empty: `[0]`.
    pub temperatures: Vec<f32>,
    /// A decode whose text's compression ratio ([`compression_ratio`]) is above this fails.
    pub compression_ratio_threshold: Option<f32>,
    /// A decode whose average log-probability ([`Generated::avg_logprob`]) is below this fails.
    pub logprob_threshold: Option<f32>,
    /// A window whose `<|nospeech|>` probability is above this (and whose decode is below
    /// `logprob_threshold`) is silence.
    pub no_speech_threshold: Option<f32>,
    /// Seed of the first sampled temperature; the i-th temperature uses `seed + i`.
    pub seed: u64,
}

impl Default for Safeguards {
    fn default() -> Self {
        Safeguards {
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            seed: 0,
        }
    }
}

impl Safeguards {
    /// No safeguard: one decode with the strategy asked for, its text kept (voxq before the
    /// safeguards, and transformers' default pipeline).
    pub fn off() -> Self {
        Safeguards {
            temperatures: vec![0.0],
            compression_ratio_threshold: None,
            logprob_threshold: None,
            no_speech_threshold: None,
            seed: 0,
        }
    }

    /// Whether decode `d` fails (its text too repetitive or its tokens too unlikely) and is
    /// not silence — the reference's `needs_fallback`.
    pub fn needs_fallback(&self, d: &WindowDecode) -> bool {
        let repetitive = self
            .compression_ratio_threshold
            .is_some_and(|t| d.compression_ratio > t);
        let unlikely = self.logprob_threshold.is_some_and(|t| d.avg_logprob < t);
        let silence = match (
            self.no_speech_threshold,
            d.no_speech_prob,
            self.logprob_threshold,
        ) {
            (Some(ns), Some(p), Some(lp)) => p > ns && d.avg_logprob < lp,
            _ => false,
        };
        (repetitive || unlikely) && !silence
    }

    /// Whether the kept decode `d` is silence: its no-speech probability is above the
    /// threshold and its average log-probability not above `logprob_threshold`.
    pub fn is_silence(&self, d: &WindowDecode) -> bool {
        match (self.no_speech_threshold, d.no_speech_prob) {
            (Some(ns), Some(p)) if p > ns => {
                self.logprob_threshold.is_none_or(|lp| d.avg_logprob <= lp)
            }
            _ => false,
        }
    }

    /// The strategy of the `i`-th temperature `t`: `base` at 0 (greedy if `base` samples),
    /// sampling at `t` otherwise (the top-k / top-p of `base` when it samples, else none),
    /// seeded with `seed + i`.
    pub fn strategy(&self, base: &Strategy, i: usize, t: f32) -> Strategy {
        let seed = self.seed.wrapping_add(i as u64);
        match base {
            _ if t > 0.0 => {
                let (top_k, top_p) = match base {
                    Strategy::Sample { top_k, top_p, .. } => (*top_k, *top_p),
                    _ => (0, 1.0),
                };
                Strategy::Sample {
                    temperature: t,
                    top_k,
                    top_p,
                    seed,
                }
            }
            Strategy::Sample { .. } => Strategy::Greedy,
            other => other.clone(),
        }
    }

    /// The decode kept when every temperature failed: the best average log-probability among
    /// those within the compression-ratio threshold (all when none is); the first on ties.
    pub fn pick(&self, tried: Vec<WindowDecode>) -> Option<WindowDecode> {
        let within = |d: &WindowDecode| {
            self.compression_ratio_threshold
                .is_none_or(|t| d.compression_ratio <= t)
        };
        let any_within = tried.iter().any(within);
        let mut best: Option<WindowDecode> = None;
        for d in tried {
            if any_within && !within(&d) {
                continue;
            }
            if best.as_ref().is_none_or(|b| d.avg_logprob > b.avg_logprob) {
                best = Some(d);
            }
        }
        best
    }
}

/// Length of the UTF-8 text over the length of its zlib compression (level 6, as Python's
/// `zlib.compress`): about 1–2 for speech, higher the more the text repeats; 0 for no text.
pub fn compression_ratio(text: &str) -> f32 {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut z = ZlibEncoder::new(Vec::new(), Compression::new(6));
    // writing into a Vec cannot fail; were it to, the text counts as incompressible (ratio 1)
    let packed = z
        .write_all(bytes)
        .and_then(|()| z.finish())
        .map_or(bytes.len(), |v| v.len());
    bytes.len() as f32 / packed.max(1) as f32
}

/// One window's decode and the figures the safeguards judged it by.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowDecode {
    /// Token ids, prompt and stop token excluded (empty when the window is silence).
    pub tokens: Vec<u32>,
    /// Their text (empty when the window is silence).
    pub text: String,
    /// [`Generated::avg_logprob`] of the decode.
    pub avg_logprob: f32,
    /// [`compression_ratio`] of the text decoded (before any silence check).
    pub compression_ratio: f32,
    /// Probability of `<|nospeech|>` at the start-of-transcript position (raw logits); `None`
    /// when no-speech detection is off or the model has no such token.
    pub no_speech_prob: Option<f32>,
    /// Temperature of the decode kept.
    pub temperature: f32,
    /// Decodes run (1 = no fallback).
    pub attempts: usize,
    /// The window was judged silence: its text was dropped.
    pub silence: bool,
}

/// A decoder step that, at its first call (the prompt), feeds the prompt up to the
/// start-of-transcript token, records the softmax probability of `token` there, then feeds
/// the rest: the no-speech probability as the reference computes it, in the same pass.
struct NoSpeechProbe<'a, D> {
    inner: &'a D,
    /// Prompt tokens up to and including start-of-transcript.
    split: usize,
    token: usize,
    first: Cell<bool>,
    prob: Cell<Option<f32>>,
}

impl<D: StepDecoder> StepDecoder for NoSpeechProbe<'_, D> {
    type State = D::State;

    fn step(&self, st: &mut D::State, new: &[u32]) -> Result<Vec<f32>> {
        if !self.first.replace(false) || self.split == 0 || self.split > new.len() {
            return self.inner.step(st, new);
        }
        let at_sot = self.inner.step(st, &new[..self.split])?;
        let lp = crate::generation::log_softmax(&at_sot);
        self.prob.set(lp.get(self.token).map(|x| x.exp()));
        if self.split == new.len() {
            return Ok(at_sot);
        }
        self.inner.step(st, &new[self.split..])
    }
}

impl Whisper {
    /// The `<|nospeech|>` token: `no_speech` of `whisper.json`, else the tokenizer's
    /// `<|nospeech|>` (or `<|nocaptions|>`, its older name).
    pub fn no_speech_token(&self) -> Option<u32> {
        self.config.no_speech.or_else(|| {
            ["<|nospeech|>", "<|nocaptions|>"]
                .iter()
                .find_map(|t| self.tokenizer.token_to_id(t))
        })
    }

    /// One window (at most 30 s of 16 kHz audio) after `prompt` ([`Whisper::prompt`]) with
    /// the safeguards `sg`: the encoder runs once, the decoder once per temperature tried.
    /// `on_token` sees the tokens of every decode as they are chosen; returning false stops
    /// that decode and keeps it (no further temperature is tried).
    pub fn transcribe_window_safe(
        &self,
        name: &Path,
        samples: &[f32],
        prompt: &[u32],
        opts: &GenerateOptions,
        sg: &Safeguards,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<WindowDecode> {
        let enc = self.encode(name, samples)?;
        let cache = WhisperCache::new(self.config.n_layers, enc);
        let (base, rule) = self.window_options(opts);
        let sot = self
            .config
            .sot
            .or_else(|| self.config.prompt_notimestamps.first().copied());
        // the prompt up to start-of-transcript, and the no-speech token
        let no_speech = self.no_speech_token().and_then(|token| {
            let at = prompt.iter().rposition(|&t| Some(t) == sot)?;
            Some((at + 1, token as usize))
        });
        let text = |ids: &[u32]| self.decode(ids);
        let d = decode_with_fallback(
            &self.step_decoder(),
            cache,
            prompt,
            &base,
            &rule,
            sg,
            no_speech,
            &text,
            on_token,
        )?;
        if d.attempts > 1 {
            log::debug!(
                "{}: kept temperature {} after {} decodes (compression ratio {:.2}, avg \
                 log-probability {:.3})",
                name.display(),
                d.temperature,
                d.attempts,
                d.compression_ratio,
                d.avg_logprob
            );
        }
        Ok(d)
    }
}

/// The safeguards' loop over any step decoder: decodes after `prompt` from state `init` at
/// each temperature of `sg` until one passes ([`Safeguards::needs_fallback`]), else keeps
/// [`Safeguards::pick`]'s choice; then drops its text if it is silence. `no_speech`: the
/// prompt length up to start-of-transcript and the `<|nospeech|>` id (no detection if
/// `None`); `text` turns token ids into the text whose compression ratio is judged.
#[allow(clippy::too_many_arguments)]
pub fn decode_with_fallback<D: StepDecoder>(
    dec: &D,
    init: D::State,
    prompt: &[u32],
    base: &GenerateOptions,
    rule: LogitRule,
    sg: &Safeguards,
    no_speech: Option<(usize, usize)>,
    text: &dyn Fn(&[u32]) -> Result<String>,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<WindowDecode> {
    let probe = match (sg.no_speech_threshold, no_speech) {
        (Some(_), Some((split, token))) => Some(NoSpeechProbe {
            inner: dec,
            split,
            token,
            first: Cell::new(true),
            prob: Cell::new(None),
        }),
        _ => None,
    };
    let temps = if sg.temperatures.is_empty() {
        vec![0.0]
    } else {
        sg.temperatures.clone()
    };
    let mut tried = Vec::new();
    for (i, &t) in temps.iter().enumerate() {
        let mut o = base.clone();
        o.strategy = sg.strategy(&base.strategy, i, t);
        let mut stopped = false;
        let mut cb = |tok: u32| {
            let go = on_token(tok);
            stopped |= !go;
            go
        };
        let g: Generated = match (&probe, i) {
            (Some(p), 0) => generate_scored(p, init.clone(), prompt, &o, rule, &mut cb)?,
            _ => generate_scored(dec, init.clone(), prompt, &o, rule, &mut cb)?,
        };
        let words = text(&g.tokens)?;
        let d = WindowDecode {
            compression_ratio: compression_ratio(&words),
            avg_logprob: g.avg_logprob(),
            no_speech_prob: probe.as_ref().and_then(|p| p.prob.get()),
            temperature: t,
            attempts: i + 1,
            silence: false,
            tokens: g.tokens,
            text: words,
        };
        if stopped || !sg.needs_fallback(&d) {
            return Ok(silence_check(sg, d));
        }
        tried.push(d);
    }
    let attempts = tried.len();
    match sg.pick(tried) {
        Some(d) => Ok(silence_check(sg, WindowDecode { attempts, ..d })),
        // `temps` is never empty, so a decode was tried and `pick` found one
        None => Ok(WindowDecode {
            tokens: Vec::new(),
            text: String::new(),
            avg_logprob: f32::NEG_INFINITY,
            compression_ratio: 0.0,
            no_speech_prob: None,
            temperature: 0.0,
            attempts,
            silence: false,
        }),
    }
}

/// `d`, its text dropped when the safeguards judge it silence.
fn silence_check(sg: &Safeguards, mut d: WindowDecode) -> WindowDecode {
    if sg.is_silence(&d) {
        d.tokens.clear();
        d.text.clear();
        d.silence = true;
    }
    d
}

#[cfg(test)]
mod tests;
