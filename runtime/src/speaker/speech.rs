//! The speech check before enrolling, verifying or identifying: energy-based voice activity.
//!
//! An embedding of silence or of a faint hum is not a voice, yet it is a vector like any other:
//! enrolled, it matches every other near-silent clip at a cosine near 1. So every utterance is
//! measured before it is embedded for a decision: frame levels (RMS in dBFS over 25 ms frames
//! every 10 ms), the clip's noise floor (its 2nd-percentile frame level), and the frames that
//! are both above an absolute floor and clearly above that noise floor. Audio shorter than the
//! minimum, or with less speech-level audio than the minimum, is refused with
//! [`RuntimeError::NoSpeech`] naming the file.
//!
//! Measured with the defaults (0.5 s, -50 dBFS, 6 dB) on the 3926 prompts of the speech corpus
//! (`tools/setup_speech.sh`): all 1454 of 2 s or more pass (the least holds 1.37 s of speech),
//! 983 of the 992 of 1-2 s pass (the 9 refused are single dense words); 2 s of digital silence,
//! of white noise (-70 or -20 dBFS), of pink noise (-30 dBFS) or of a 50 Hz hum are refused.

use std::path::Path;

use crate::audio::wav::Audio;
use crate::error::{Result, RuntimeError};

/// Frame length and hop of the level measurement, in seconds.
const FRAME_S: f64 = 0.025;
const HOP_S: f64 = 0.010;
/// The percentile of frame levels taken as the clip's noise floor.
const NOISE_PERCENTILE: f64 = 0.02;

/// What an utterance must hold to be enrolled or scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechCheck {
    /// Least speech, in seconds of speech-level frames; also the shortest audio accepted.
    /// 0 turns the check off.
    pub min_speech_s: f64,
    /// Level (frame RMS, dBFS) a frame must reach to count as speech.
    pub floor_dbfs: f64,
    /// How far (dB) above the clip's noise floor a speech frame must be: steady noise, however
    /// loud, is not speech.
    pub above_noise_db: f64,
}

impl Default for SpeechCheck {
    fn default() -> Self {
        SpeechCheck {
            min_speech_s: DEFAULT_MIN_SPEECH_S,
            floor_dbfs: -50.0,
            above_noise_db: 6.0,
        }
    }
}

/// The default least speech, in seconds.
pub const DEFAULT_MIN_SPEECH_S: f64 = 0.5;
/// The largest `min_speech_s` accepted (a minute of speech is more than any enrollment needs).
pub const MAX_MIN_SPEECH_S: f64 = 60.0;

impl SpeechCheck {
    /// The default check with another least speech (seconds).
    pub fn with_min_speech_s(min_speech_s: f64) -> SpeechCheck {
        SpeechCheck {
            min_speech_s,
            ..SpeechCheck::default()
        }
    }

    /// Why these settings are unusable, if they are.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(0.0..=MAX_MIN_SPEECH_S).contains(&self.min_speech_s) {
            return Err(format!(
                "--min-speech-s must be in [0, {MAX_MIN_SPEECH_S}] seconds (got {})",
                self.min_speech_s
            ));
        }
        if !self.floor_dbfs.is_finite() || !self.above_noise_db.is_finite() {
            return Err("speech check levels must be finite".into());
        }
        Ok(())
    }
}

/// Levels of one clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechStats {
    pub duration_s: f64,
    /// Seconds of speech-level frames (a frame counts for its hop, 10 ms).
    pub speech_s: f64,
    /// The clip's noise floor: its 2nd-percentile frame level (dBFS; -inf for digital silence).
    pub noise_floor_dbfs: f64,
    /// Its loudest frame (dBFS).
    pub peak_dbfs: f64,
}

/// Frame levels of `samples` at `rate` Hz (RMS in dBFS, -inf for an all-zero frame).
fn frame_levels(samples: &[f32], rate: u32) -> Vec<f64> {
    let rate = f64::from(rate.max(1));
    let len = ((FRAME_S * rate).round() as usize).max(1);
    let hop = ((HOP_S * rate).round() as usize).max(1);
    let mut out = Vec::with_capacity(samples.len() / hop + 1);
    let mut start = 0;
    loop {
        let frame = &samples[start.min(samples.len())..(start + len).min(samples.len())];
        if frame.is_empty() {
            break;
        }
        let ms = frame
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            / frame.len() as f64;
        out.push(10.0 * ms.log10());
        if start + len >= samples.len() {
            break;
        }
        start += hop;
    }
    out
}

/// Measures the levels and the speech of `audio` under `check`'s thresholds.
pub fn speech_stats(audio: &Audio, check: &SpeechCheck) -> SpeechStats {
    let mut levels = frame_levels(&audio.samples, audio.sample_rate);
    let threshold_of = |noise: f64| (noise + check.above_noise_db).max(check.floor_dbfs);
    let (noise, peak) = {
        let mut sorted = levels.clone();
        sorted.sort_by(f64::total_cmp);
        let i = ((sorted.len().saturating_sub(1)) as f64 * NOISE_PERCENTILE).floor() as usize;
        (
            sorted.get(i).copied().unwrap_or(f64::NEG_INFINITY),
            sorted.last().copied().unwrap_or(f64::NEG_INFINITY),
        )
    };
    let threshold = threshold_of(noise);
    levels.retain(|&l| l >= threshold);
    SpeechStats {
        duration_s: audio.duration_s(),
        speech_s: levels.len() as f64 * HOP_S,
        noise_floor_dbfs: noise,
        peak_dbfs: peak,
    }
}

/// Refuses audio shorter than `check.min_speech_s` or holding less speech than that, with an
/// error naming `name`; returns the measured levels otherwise.
pub fn check_speech(name: &Path, audio: &Audio, check: &SpeechCheck) -> Result<SpeechStats> {
    let stats = speech_stats(audio, check);
    let min = check.min_speech_s;
    if min <= 0.0 {
        return Ok(stats);
    }
    let refuse = |reason: String| {
        Err(RuntimeError::NoSpeech {
            path: name.to_path_buf(),
            reason,
        })
    };
    if stats.duration_s < min {
        return refuse(format!(
            "the audio is {:.2} s long, at least {min} s of speech is needed",
            stats.duration_s
        ));
    }
    if stats.speech_s < min {
        return refuse(format!(
            "{:.2} s of its {:.2} s is speech-level audio (frames above {} dBFS and {} dB over the clip's noise floor of {}; loudest frame {}), at least {min} s is needed",
            stats.speech_s,
            stats.duration_s,
            check.floor_dbfs,
            check.above_noise_db,
            dbfs(stats.noise_floor_dbfs),
            dbfs(stats.peak_dbfs),
        ));
    }
    Ok(stats)
}

/// A level for messages: `-63.2 dBFS`, or `silence` for digital zero.
fn dbfs(l: f64) -> String {
    if l.is_finite() {
        format!("{l:.1} dBFS")
    } else {
        "digital silence".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(samples: Vec<f32>) -> Audio {
        Audio {
            samples,
            sample_rate: 16000,
        }
    }

    /// Deterministic white noise of RMS `rms`.
    fn noise(n: usize, rms: f32, seed: u64) -> Vec<f32> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // uniform in [-1, 1): RMS 1/sqrt(3)
                ((x >> 11) as f64 / (1u64 << 52) as f64 - 1.0) as f32 * rms * 3f32.sqrt()
            })
            .collect()
    }

    fn db(x: f64) -> f32 {
        10f64.powf(x / 20.0) as f32
    }

    /// A syllable-like signal: a 150 Hz tone whose loudness rises and falls 4 times a second,
    /// over faint noise.
    fn voiced(seconds: f64) -> Vec<f32> {
        let n = (seconds * 16000.0) as usize;
        let bg = noise(n, db(-65.0), 7);
        (0..n)
            .map(|i| {
                let t = i as f64 / 16000.0;
                let env = (std::f64::consts::PI * 4.0 * t).sin().abs();
                (0.3 * env * (2.0 * std::f64::consts::PI * 150.0 * t).sin()) as f32 + bg[i]
            })
            .collect()
    }

    fn check(a: &Audio) -> Result<SpeechStats> {
        check_speech(Path::new("x.wav"), a, &SpeechCheck::default())
    }

    #[test]
    fn silence_faint_noise_steady_noise_and_blips_are_refused() {
        let silence = audio(vec![0.0; 32000]);
        let e = check(&silence).unwrap_err().to_string();
        assert!(
            e.starts_with("x.wav: no speech: 0.00 s of its 2.00 s"),
            "{e}"
        );
        assert!(e.contains("digital silence"), "{e}");
        assert!(check(&audio(noise(32000, db(-70.0), 1))).is_err());
        // loud but steady: never 6 dB over its own floor
        assert!(check(&audio(noise(32000, db(-20.0), 2))).is_err());
        // a 0.2 s burst in 2 s of silence
        let mut blip = vec![0.0f32; 32000];
        blip[8000..11200].copy_from_slice(&noise(3200, 0.3, 3));
        let e = check(&audio(blip)).unwrap_err().to_string();
        assert!(e.contains("0.2"), "{e}");
        // 0.2 s of loud sound on its own: too short
        let e = check(&audio(voiced(0.2))).unwrap_err().to_string();
        assert!(e.contains("the audio is 0.20 s long"), "{e}");
    }

    #[test]
    fn voiced_audio_passes_and_zero_turns_the_check_off() {
        let s = check(&audio(voiced(2.0))).unwrap();
        assert!(s.speech_s > 1.0, "{s:?}");
        let off = SpeechCheck::with_min_speech_s(0.0);
        assert!(check_speech(Path::new("x"), &audio(vec![0.0; 10]), &off).is_ok());
        assert!(SpeechCheck::with_min_speech_s(-1.0).validate().is_err());
        assert!(SpeechCheck::with_min_speech_s(f64::NAN).validate().is_err());
        assert!(SpeechCheck::default().validate().is_ok());
    }
}
