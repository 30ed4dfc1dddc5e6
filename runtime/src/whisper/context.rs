//! The audio context: how many encoder positions (20 ms each, 2 log-mel frames) a window's
//! encoder pass covers. Whisper always encodes 30 s (1500 positions), however short the clip;
//! a shorter context (whisper.cpp's `audio_ctx`) encodes only the clip's start, which is much
//! cheaper for short clips but moves the model away from what it was trained on, so it is an
//! explicit choice with its measured WER (README, "Whisper"), never the default.

use std::fmt;
use std::str::FromStr;

/// Samples per encoder position at 16 kHz (hop 160 × 2 frames per position).
const SAMPLES_PER_POSITION: usize = 320;

/// Positions per second of audio.
const POSITIONS_PER_SECOND: usize = 50;

/// The audio context of every encoder pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioCtx {
    /// All `n_audio_ctx` positions (30 s): what Whisper was trained on.
    #[default]
    Full,
    /// A fixed number of positions (at most `n_audio_ctx`), whatever the clip's length.
    Positions(usize),
    /// The clip's length plus `margin` seconds, rounded up to whole seconds (at most
    /// `n_audio_ctx`); written `auto` (1 s) or `auto+N`.
    Auto { margin: usize },
}

impl AudioCtx {
    /// The positions to encode for a window of `n_samples` (16 kHz) in a model of
    /// `n_audio_ctx` positions.
    pub fn positions(self, n_samples: usize, n_audio_ctx: usize) -> usize {
        let p = match self {
            AudioCtx::Full => n_audio_ctx,
            AudioCtx::Positions(p) => p,
            AudioCtx::Auto { margin } => {
                let clip = n_samples.div_ceil(SAMPLES_PER_POSITION) + margin * POSITIONS_PER_SECOND;
                clip.div_ceil(POSITIONS_PER_SECOND) * POSITIONS_PER_SECOND
            }
        };
        p.clamp(1, n_audio_ctx.max(1))
    }
}

impl fmt::Display for AudioCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioCtx::Full => f.write_str("full"),
            AudioCtx::Positions(p) => write!(f, "{p}"),
            AudioCtx::Auto { margin: 1 } => f.write_str("auto"),
            AudioCtx::Auto { margin } => write!(f, "auto+{margin}"),
        }
    }
}

impl FromStr for AudioCtx {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<AudioCtx, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(AudioCtx::Full),
            "auto" => Ok(AudioCtx::Auto { margin: 1 }),
            t if t.starts_with("auto+") => match t["auto+".len()..].parse::<usize>() {
                Ok(m) if m <= 30 => Ok(AudioCtx::Auto { margin: m }),
                _ => Err(format!(
                    "'{s}' is not an audio context: auto+N takes 0-30 seconds of margin"
                )),
            },
            t => match t.parse::<usize>() {
                Ok(p) if (1..=1500).contains(&p) => Ok(AudioCtx::Positions(p)),
                _ => Err(format!(
                    "'{s}' is not an audio context: full, auto, auto+N (N s of margin) or 1-1500 encoder positions (50 per second)"
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_the_clip_length_in_auto() {
        // 2.35 s = 37600 samples -> 118 positions + 50 -> 168 -> 200 (4 s)
        assert_eq!(AudioCtx::Auto { margin: 1 }.positions(37_600, 1500), 200);
        assert_eq!(AudioCtx::Auto { margin: 1 }.positions(0, 1500), 50);
        // a 29.5 s clip needs the whole window
        assert_eq!(AudioCtx::Auto { margin: 1 }.positions(472_000, 1500), 1500);
        assert_eq!(AudioCtx::Auto { margin: 10 }.positions(37_600, 1500), 650);
        assert_eq!(AudioCtx::Full.positions(16_000, 1500), 1500);
        assert_eq!(AudioCtx::Positions(750).positions(16_000, 1500), 750);
        // never more than the model has
        assert_eq!(AudioCtx::Positions(1500).positions(16_000, 64), 64);
    }

    #[test]
    fn parses_and_prints() {
        for s in ["full", "auto", "auto+10", "750"] {
            assert_eq!(s.parse::<AudioCtx>().unwrap().to_string(), s);
        }
        assert!("0".parse::<AudioCtx>().is_err());
        assert!("1501".parse::<AudioCtx>().is_err());
        assert!("auto+31".parse::<AudioCtx>().is_err());
        let e = "half".parse::<AudioCtx>().unwrap_err();
        assert!(e.contains("'half'"), "{e}");
    }
}
