//! Audio of any length: resampled to 16 kHz, cut into consecutive 30 s windows, each
//! transcribed on its own (with or without the safeguards), texts joined.

use std::path::Path;

use super::safeguards::Safeguards;
use super::Whisper;
use crate::audio::decode::read_audio;
use crate::audio::logmel::{to_16k, LogMelExtractor};
use crate::error::Result;
use crate::generation::GenerateOptions;

impl Whisper {
    /// Transcribes decoded audio: resampled to 16 kHz, cut into 30 s windows, no safeguard
    /// (as [`Whisper::transcribe_samples_with`] with [`Safeguards::off`]).
    pub fn transcribe_samples(
        &self,
        name: &Path,
        samples: &[f32],
        rate: u32,
        opts: &GenerateOptions,
    ) -> Result<String> {
        self.transcribe_samples_with(name, samples, rate, opts, &Safeguards::off())
    }

    /// Transcribes decoded audio: resampled to 16 kHz, cut into 30 s windows, each decoded
    /// with the safeguards `sg` (temperature fallback, no-speech detection).
    pub fn transcribe_samples_with(
        &self,
        name: &Path,
        samples: &[f32],
        rate: u32,
        opts: &GenerateOptions,
        sg: &Safeguards,
    ) -> Result<String> {
        let samples = to_16k(name, samples, rate)?;
        let prompt = self.config.prompt_notimestamps.clone();
        let mut texts = Vec::new();
        for w in LogMelExtractor::windows(&samples) {
            let t = if *sg == Safeguards::off() {
                let ids = self.transcribe_window(name, w, opts, &mut |_| true)?;
                self.decode(&ids)?
            } else {
                self.transcribe_window_safe(name, w, &prompt, opts, sg, &mut |_| true)?
                    .text
            };
            if !t.is_empty() {
                texts.push(t);
            }
        }
        Ok(texts.join(" "))
    }

    /// Transcribes an audio file (WAV, FLAC, MP3, Ogg Vorbis), no safeguard.
    pub fn transcribe_file(&self, path: &Path, opts: &GenerateOptions) -> Result<String> {
        self.transcribe_file_with(path, opts, &Safeguards::off())
    }

    /// Transcribes an audio file (WAV, FLAC, MP3, Ogg Vorbis) with the safeguards `sg`.
    pub fn transcribe_file_with(
        &self,
        path: &Path,
        opts: &GenerateOptions,
        sg: &Safeguards,
    ) -> Result<String> {
        let a = read_audio(path)?;
        self.transcribe_samples_with(path, &a.samples, a.sample_rate, opts, sg)
    }
}
