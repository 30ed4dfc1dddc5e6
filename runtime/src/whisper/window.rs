//! Audio of any length: resampled to 16 kHz, cut into consecutive 30 s windows, each
//! transcribed on its own, texts joined.

use std::path::Path;

use super::Whisper;
use crate::audio::decode::read_audio;
use crate::audio::logmel::{to_16k, LogMelExtractor};
use crate::error::Result;
use crate::generation::GenerateOptions;

impl Whisper {
    /// Transcribes decoded audio: resampled to 16 kHz, cut into 30 s windows.
    pub fn transcribe_samples(
        &self,
        name: &Path,
        samples: &[f32],
        rate: u32,
        opts: &GenerateOptions,
    ) -> Result<String> {
        let samples = to_16k(name, samples, rate)?;
        let mut texts = Vec::new();
        for w in LogMelExtractor::windows(&samples) {
            let ids = self.transcribe_window(name, w, opts, &mut |_| true)?;
            let t = self.decode(&ids)?;
            if !t.is_empty() {
                texts.push(t);
            }
        }
        Ok(texts.join(" "))
    }

    /// Transcribes an audio file (WAV, FLAC, MP3, Ogg Vorbis).
    pub fn transcribe_file(&self, path: &Path, opts: &GenerateOptions) -> Result<String> {
        let a = read_audio(path)?;
        self.transcribe_samples(path, &a.samples, a.sample_rate, opts)
    }
}
