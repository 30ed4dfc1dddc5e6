//! Decoding one 30 s window: the decoder prompt (language, previous text), Whisper's token
//! rules (suppressed tokens, begin-suppressed tokens, half the text context at most) and the
//! generation loop over the decoder step, greedy or beam search.

use std::path::Path;

use super::config::CONFIG_FILE;
use super::model::WhisperCache;
use super::Whisper;
use crate::error::{cfg_err, Result};
use crate::generation::{generate, GenerateOptions, Strategy};

impl Whisper {
    /// Token ids for one window (at most 30 s of 16 kHz audio), prompt and stop token excluded.
    pub fn transcribe_window(
        &self,
        name: &Path,
        samples: &[f32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        let prompt = self.config.prompt_notimestamps.clone();
        self.transcribe_window_prompt(name, samples, &prompt, opts, on_token)
    }

    /// The decoder prompt for a language (`en`, `de`, …; English-only models take only `en`)
    /// and a text that came before the audio (Whisper's `<|startofprev|>` prompt, at most half
    /// the text context, its end kept).
    pub fn prompt(&self, language: Option<&str>, previous: Option<&str>) -> Result<Vec<u32>> {
        let c = &self.config;
        let path = self.dir.join(CONFIG_FILE);
        let mut out = Vec::new();
        if let Some(text) = previous.map(str::trim).filter(|t| !t.is_empty()) {
            let start = c.startofprev.ok_or_else(|| {
                cfg_err(
                    &path,
                    "no `startofprev` token: the model cannot take a text prompt".into(),
                )
            })?;
            let enc = self
                .tokenizer
                .encode(format!(" {text}"), false)
                .map_err(|e| cfg_err(&self.dir.join("tokenizer.json"), e.to_string()))?;
            let ids = enc.get_ids();
            let keep = (c.n_text_ctx / 2).saturating_sub(1).min(ids.len());
            out.push(start);
            out.extend_from_slice(&ids[ids.len() - keep..]);
        }
        match language.map(|l| l.trim().to_ascii_lowercase()) {
            None => out.extend_from_slice(&c.prompt_notimestamps),
            Some(l) if !c.multilingual => {
                if l != "en" && l != "english" {
                    return Err(cfg_err(
                        &path,
                        format!(
                            "model '{}' is English-only; language '{l}' is not available",
                            c.model
                        ),
                    ));
                }
                out.extend_from_slice(&c.prompt_notimestamps);
            }
            Some(l) => {
                let lang = c
                    .language_tokens
                    .get(&format!("<|{l}|>"))
                    .or_else(|| c.language_tokens.get(&l));
                match (lang, c.sot, c.transcribe, c.notimestamps) {
                    (Some(&lang), Some(sot), Some(tr), Some(nt)) => {
                        out.extend_from_slice(&[sot, lang, tr, nt])
                    }
                    (None, ..) => return Err(cfg_err(&path, format!("unknown language '{l}'"))),
                    _ => {
                        return Err(cfg_err(
                            &path,
                            "needs `sot`, `transcribe` and `notimestamps` tokens to set a language"
                                .into(),
                        ))
                    }
                }
            }
        }
        Ok(out)
    }

    /// Like [`Whisper::transcribe_window`] with a prompt from [`Whisper::prompt`].
    pub fn transcribe_window_prompt(
        &self,
        name: &Path,
        samples: &[f32],
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        let enc = self.encode(name, samples)?;
        let cache = WhisperCache::new(self.config.n_layers, enc);
        let (o, rule) = self.window_options(opts);
        generate(&self.step_decoder(), cache, prompt, &o, &rule, on_token)
    }

    /// The options of one window (the stop token added, the budget capped at half the text
    /// context) and Whisper's token rules: suppressed tokens at every step, begin-suppressed
    /// tokens at the first.
    pub(super) fn window_options(
        &self,
        opts: &GenerateOptions,
    ) -> (GenerateOptions, impl Fn(usize, &mut [f32])) {
        let c = &self.config;
        let mut o = opts.clone();
        if !o.stop_tokens.contains(&c.eot) {
            o.stop_tokens.push(c.eot);
        }
        let limit = c.n_text_ctx / 2;
        o.max_new_tokens = o.max_new_tokens.min(limit);
        let suppress = c.suppress_tokens.clone();
        let begin = c.begin_suppress_tokens.clone();
        let rule = move |step: usize, l: &mut [f32]| {
            let begin = if step == 0 { &begin[..] } else { &[] };
            for &t in suppress.iter().chain(begin) {
                if let Some(x) = l.get_mut(t as usize) {
                    *x = f32::NEG_INFINITY;
                }
            }
        };
        (o, rule)
    }
}

/// Beam search as Whisper's reference decoder uses it (5 beams there; `beams` here).
pub fn beam(beams: usize) -> Strategy {
    Strategy::Beam {
        beams,
        length_penalty: 1.0,
    }
}
