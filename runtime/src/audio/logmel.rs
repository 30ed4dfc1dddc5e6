//! Whisper's log-mel front end: 16 kHz audio padded (or cut) to 30 s, a 400-point STFT with a
//! periodic Hann window every 160 samples (centred, reflect padding), power spectrum, Slaney
//! mel filters (80 or 128 bins, 0–8 kHz), `log10` floored at 1e-10, clamped to 8 below the
//! maximum and scaled as `(x + 4) / 4`; the last STFT frame is dropped, giving 3000 frames.

use std::path::Path;
use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use crate::error::{Result, RuntimeError};

/// Sample rate Whisper's front end expects.
pub const SAMPLE_RATE: u32 = 16_000;
/// FFT size (25 ms).
pub const N_FFT: usize = 400;
/// Hop (10 ms).
pub const HOP: usize = 160;
/// Samples in one 30 s window.
pub const N_SAMPLES: usize = 30 * SAMPLE_RATE as usize;
/// Frames in one 30 s window.
pub const N_FRAMES: usize = N_SAMPLES / HOP;

/// Decoded audio as the 16 kHz samples Whisper's front end takes (resampled when needed);
/// empty audio is refused. `name` labels errors.
pub fn to_16k(name: &Path, samples: &[f32], rate: u32) -> Result<Vec<f32>> {
    if samples.is_empty() {
        return Err(RuntimeError::EmptyAudio {
            path: name.to_path_buf(),
        });
    }
    if rate == SAMPLE_RATE {
        Ok(samples.to_vec())
    } else {
        crate::audio::resample::resample(samples, rate, SAMPLE_RATE)
    }
}

/// Log-mel features, `n_mels` rows of `frames` values (the layout Whisper's encoder takes:
/// `[n_mels, frames]`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    pub n_mels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

/// Mel scale of Slaney's Auditory Toolbox (librosa's default): linear below 1 kHz,
/// logarithmic above.
fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// Slaney-normalised triangular mel filters over the `n_fft / 2 + 1` FFT bins,
/// `n_mels` rows, from 0 Hz to half the sample rate.
pub fn mel_filters(n_mels: usize, n_fft: usize, sample_rate: u32) -> Vec<Vec<f32>> {
    let bins = n_fft / 2 + 1;
    let nyquist = sample_rate as f64 / 2.0;
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|k| k as f64 * nyquist / (bins - 1) as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(nyquist));
    let pts: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    (0..n_mels)
        .map(|m| {
            let (l, c, r) = (pts[m], pts[m + 1], pts[m + 2]);
            let norm = 2.0 / (r - l);
            fft_freqs
                .iter()
                .map(|&f| {
                    let up = (f - l) / (c - l);
                    let down = (r - f) / (r - c);
                    (up.min(down).max(0.0) * norm) as f32
                })
                .collect()
        })
        .collect()
}

/// Computes Whisper log-mel features; reusable across calls (FFT plan and filters kept).
pub struct LogMelExtractor {
    n_mels: usize,
    filters: Vec<Vec<f32>>,
    /// Per filter, the range of frequency bins where its weight is not zero.
    support: Vec<(usize, usize)>,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl LogMelExtractor {
    /// `n_mels` is 80 (Whisper up to large-v2) or 128 (large-v3).
    pub fn new(n_mels: usize) -> Result<LogMelExtractor> {
        if n_mels != 80 && n_mels != 128 {
            return Err(RuntimeError::FbankConfig(format!(
                "Whisper uses 80 or 128 mel bins, not {n_mels}"
            )));
        }
        let window = (0..N_FFT)
            .map(|n| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32
            })
            .collect();
        let filters = mel_filters(n_mels, N_FFT, SAMPLE_RATE);
        let support = filters
            .iter()
            .map(|f| {
                let lo = f.iter().position(|&w| w != 0.0).unwrap_or(0);
                let hi = f.iter().rposition(|&w| w != 0.0).map_or(lo, |i| i + 1);
                (lo, hi)
            })
            .collect();
        Ok(LogMelExtractor {
            n_mels,
            filters,
            support,
            window,
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT),
        })
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Features of at most 30 s of 16 kHz audio, zero-padded to 30 s: `[n_mels, 3000]`.
    /// Longer audio is refused here; callers cut it into 30 s windows
    /// ([`LogMelExtractor::windows`]). `name` labels errors.
    pub fn compute(&self, name: &Path, samples: &[f32]) -> Result<LogMel> {
        if samples.is_empty() {
            return Err(RuntimeError::EmptyAudio {
                path: name.to_path_buf(),
            });
        }
        if samples.len() > N_SAMPLES {
            return Err(RuntimeError::Config {
                path: name.to_path_buf(),
                reason: format!(
                    "{:.2} s of audio: one Whisper window holds 30 s",
                    samples.len() as f64 / SAMPLE_RATE as f64
                ),
            });
        }
        if samples.iter().any(|x| !x.is_finite()) {
            return Err(RuntimeError::NonFinite {
                path: name.to_path_buf(),
            });
        }
        let mut padded = vec![0f32; N_SAMPLES];
        padded[..samples.len()].copy_from_slice(samples);
        // centred frames: reflect-pad N_FFT / 2 on both sides
        let half = N_FFT / 2;
        let n = padded.len();
        let at = |i: isize| -> f32 {
            let j = if i < 0 {
                (-i) as usize
            } else if i as usize >= n {
                2 * (n - 1) - i as usize
            } else {
                i as usize
            };
            padded[j]
        };
        let mut buf = self.fft.make_input_vec();
        let mut spec = self.fft.make_output_vec();
        let bins = N_FFT / 2 + 1;
        let mut power = vec![0f32; bins];
        let mut out = vec![0f32; self.n_mels * N_FRAMES];
        // the log energy of a frame of zeros (most frames of a short clip's 30 s window)
        let silent = 0f32.max(1e-10).log10();
        for t in 0..N_FRAMES {
            let start = (t * HOP) as isize - half as isize;
            for (k, b) in buf.iter_mut().enumerate() {
                *b = at(start + k as isize) * self.window[k];
            }
            // an all-zero frame has an all-zero spectrum: skip its FFT and filters (exact)
            if buf.iter().all(|&x| x == 0.0) {
                for m in 0..self.n_mels {
                    out[m * N_FRAMES + t] = silent;
                }
                continue;
            }
            self.fft
                .process(&mut buf, &mut spec)
                .map_err(|e| RuntimeError::FbankConfig(format!("FFT: {e}")))?;
            for (p, c) in power.iter_mut().zip(&spec) {
                *p = c.norm_sqr();
            }
            // Finite samples far outside [-1, 1] (a float WAV holding 1e30) overflow the power
            // spectrum to inf/NaN, which the log floor below would hide: refuse them.
            if power.iter().any(|p| !p.is_finite()) {
                let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
                return Err(RuntimeError::BadAudio {
                    path: name.to_path_buf(),
                    reason: format!(
                        "samples far outside [-1, 1] (peak |x| = {peak:e}) overflow the log-mel energies"
                    ),
                });
            }
            for (m, (f, &(lo, hi))) in self.filters.iter().zip(&self.support).enumerate() {
                // zero weights outside [lo, hi) add exactly 0.0 to a sum of finite terms
                let e: f32 = f[lo..hi]
                    .iter()
                    .zip(&power[lo..hi])
                    .map(|(a, b)| a * b)
                    .sum();
                out[m * N_FRAMES + t] = e.max(1e-10).log10();
            }
        }
        let max = out.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut out {
            *v = ((*v).max(max - 8.0) + 4.0) / 4.0;
        }
        Ok(LogMel {
            n_mels: self.n_mels,
            frames: N_FRAMES,
            data: out,
        })
    }

    /// Cuts audio into consecutive 30 s windows (the last one shorter) for long-form
    /// transcription.
    pub fn windows(samples: &[f32]) -> Vec<&[f32]> {
        samples.chunks(N_SAMPLES).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_finite_samples_are_bad_audio() {
        let m = LogMelExtractor::new(80).unwrap();
        let e = m.compute(Path::new("x.wav"), &[3e38f32; 4000]).unwrap_err();
        assert!(matches!(e, RuntimeError::BadAudio { .. }), "{e}");
        assert!(e.to_string().starts_with("x.wav: "), "{e}");
    }

    #[test]
    fn mel_scale_round_trips_and_filters_cover_the_band() {
        for f in [0.0, 300.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-6, "{f}");
        }
        let fb = mel_filters(80, N_FFT, SAMPLE_RATE);
        assert_eq!(fb.len(), 80);
        assert!(fb.iter().all(|r| r.len() == 201));
        // every filter has weight, and the peaks rise with the bin index
        let peaks: Vec<usize> = fb
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
            })
            .collect();
        assert!(fb.iter().all(|r| r.iter().any(|w| *w > 0.0)));
        assert!(peaks.windows(2).all(|w| w[0] <= w[1]));
        // Slaney normalisation: each triangle has area 1 in Hz (2 / width * width / 2), so
        // the weights summed over bins times the 40 Hz bin spacing are about 1 where the
        // triangles are wider than a few bins
        let area: f32 = fb[60].iter().sum::<f32>() * 40.0;
        assert!((area - 1.0).abs() < 0.05, "{area}");
    }

    /// The shortcuts (no FFT for all-zero frames, each filter summed over its non-zero bins
    /// only) give bit-identical features to the plain computation: every frame's FFT, every
    /// filter over all 201 bins. The clip has digital silence inside it and after it.
    #[test]
    fn skipping_silent_frames_and_zero_weights_is_exact() {
        let x = LogMelExtractor::new(80).unwrap();
        let mut s = 12345u32;
        let clip: Vec<f32> = (0..37_000)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let noise = (s as f32 / u32::MAX as f32 - 0.5) * 0.1;
                let tone = (i as f32 * 0.07).sin() * 0.3;
                if (12_000..20_000).contains(&i) {
                    0.0
                } else {
                    noise + tone
                }
            })
            .collect();
        let fast = x.compute(Path::new("clip"), &clip).unwrap();
        let mut padded = vec![0f32; N_SAMPLES];
        padded[..clip.len()].copy_from_slice(&clip);
        let n = padded.len() as isize;
        let mut buf = x.fft.make_input_vec();
        let mut spec = x.fft.make_output_vec();
        let mut plain = vec![0f32; 80 * N_FRAMES];
        for t in 0..N_FRAMES {
            for (k, b) in buf.iter_mut().enumerate() {
                let i = (t * HOP + k) as isize - (N_FFT / 2) as isize;
                let j = if i < 0 {
                    -i
                } else if i >= n {
                    2 * (n - 1) - i
                } else {
                    i
                };
                *b = padded[j as usize] * x.window[k];
            }
            x.fft.process(&mut buf, &mut spec).unwrap();
            let power: Vec<f32> = spec.iter().map(|c| c.norm_sqr()).collect();
            for (m, f) in x.filters.iter().enumerate() {
                let e: f32 = f.iter().zip(&power).map(|(a, b)| a * b).sum();
                plain[m * N_FRAMES + t] = e.max(1e-10).log10();
            }
        }
        let max = plain.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut plain {
            *v = ((*v).max(max - 8.0) + 4.0) / 4.0;
        }
        let differ = fast
            .data
            .iter()
            .zip(&plain)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{differ} of {} values differ", plain.len());
        assert!(x.support.iter().any(|&(lo, hi)| hi - lo < 20));
    }

    #[test]
    fn a_tone_lights_its_mel_bin_and_silence_is_flat() {
        let x = LogMelExtractor::new(80).unwrap();
        let tone: Vec<f32> = (0..SAMPLE_RATE as usize)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin() * 0.5)
            .collect();
        let m = x.compute(Path::new("tone"), &tone).unwrap();
        assert_eq!((m.n_mels, m.frames, m.data.len()), (80, 3000, 240_000));
        // frame 50 (0.5 s): the loudest bin is the one whose filter peaks nearest 1 kHz
        let col: Vec<f32> = (0..80).map(|b| m.data[b * 3000 + 50]).collect();
        let best = col
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        let fb = mel_filters(80, N_FFT, SAMPLE_RATE);
        assert!(
            fb[best][25] > 0.0,
            "bin {best} does not cover 1 kHz (FFT bin 25)"
        );
        // the padded tail (after 1 s) sits at the floor: max - 8, scaled
        let max = m.data.iter().cloned().fold(f32::MIN, f32::max);
        let floor = ((max * 4.0 - 4.0) - 8.0 + 4.0) / 4.0;
        assert!((m.data[10 * 3000 + 2000] - floor).abs() < 1e-5);
        assert!(x.compute(Path::new("e"), &[]).is_err());
        let long = vec![0f32; N_SAMPLES + 1];
        let e = x
            .compute(Path::new("long.wav"), &long)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("long.wav: 30.00 s of audio"), "{e}");
        assert!(LogMelExtractor::new(64).is_err());
        assert_eq!(
            LogMelExtractor::windows(&vec![0f32; N_SAMPLES * 2 + 5]).len(),
            3
        );
    }
}
