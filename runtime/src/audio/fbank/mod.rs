//! Kaldi-compatible log-mel filterbank features (the `compute-fbank-feats` / kaldi-native-fbank
//! recipe): framing, dither, DC removal, pre-emphasis, windowing, power spectrum, mel banks, log.
//!
//! The arithmetic follows Kaldi's order of operations in `f32` (the FFT runs in `f64`, as in
//! kaldi-native-fbank), so features match the reference to about 1e-4.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Result, RuntimeError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

mod config;
mod mel;
#[cfg(test)]
mod tests;

use config::cfg_err;
pub use config::{FbankConfig, MeanNorm, WindowType, MAX_FRAME_SAMPLES};
use mel::{make_mel_bins, make_window, MelBin};

/// Seed of the dither noise: the same input always gives the same features.
const DITHER_SEED: u64 = 0x5eed_fba2;

/// Row-major features: `frames` rows of `dim` values.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// Number of frames (rows).
    pub frames: usize,
    /// Values per frame (columns).
    pub dim: usize,
    /// `frames * dim` values, frame after frame.
    pub data: Vec<f32>,
}

impl Features {
    /// The values of frame `i`, if it exists.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        if i < self.frames {
            self.data.get(i * self.dim..(i + 1) * self.dim)
        } else {
            None
        }
    }

    /// Subtracts each dimension's mean over all frames.
    pub fn subtract_mean(&mut self) {
        if self.frames == 0 || self.dim == 0 {
            return;
        }
        let mut mean = vec![0.0f64; self.dim];
        for row in self.data.chunks_exact(self.dim) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += f64::from(*v);
            }
        }
        let inv = 1.0 / self.frames as f64;
        let mean: Vec<f32> = mean.iter().map(|m| (m * inv) as f32).collect();
        for row in self.data.chunks_exact_mut(self.dim) {
            for (v, m) in row.iter_mut().zip(&mean) {
                *v -= m;
            }
        }
    }
}

/// A filterbank computer built once from a validated [`FbankConfig`]: window, mel filters and
/// FFT plan are precomputed; `compute` only allocates its output and a few reusable buffers.
#[derive(Clone)]
pub struct Fbank {
    config: FbankConfig,
    frame_length: usize,
    frame_shift: usize,
    padded: usize,
    window: Vec<f32>,
    bins: Vec<MelBin>,
    fft: Arc<dyn RealToComplex<f64>>,
    log_energy_floor: Option<f32>,
}

impl fmt::Debug for Fbank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fbank")
            .field("config", &self.config)
            .field("frame_length", &self.frame_length)
            .field("frame_shift", &self.frame_shift)
            .field("padded", &self.padded)
            .finish_non_exhaustive()
    }
}

impl Fbank {
    /// Validates `config` and precomputes everything that does not depend on the audio.
    pub fn new(config: &FbankConfig) -> Result<Self> {
        config.validate()?;
        let frame_length = config.frame_length();
        let frame_shift = config.frame_shift();
        let padded = config.padded_length();
        let window = make_window(config.window, frame_length);
        let bins = make_mel_bins(config, padded)?;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(padded);
        let log_energy_floor = (config.energy_floor > 0.0).then(|| config.energy_floor.ln());
        Ok(Self {
            config: config.clone(),
            frame_length,
            frame_shift,
            padded,
            window,
            bins,
            fft,
            log_energy_floor,
        })
    }

    /// The settings this computer was built from.
    pub fn config(&self) -> &FbankConfig {
        &self.config
    }

    /// Values per frame.
    pub fn dim(&self) -> usize {
        self.config.dim()
    }

    /// Window length in samples.
    pub fn frame_length(&self) -> usize {
        self.frame_length
    }

    /// Frame shift in samples.
    pub fn frame_shift(&self) -> usize {
        self.frame_shift
    }

    /// Number of frames Kaldi produces for `num_samples` samples.
    pub fn num_frames(&self, num_samples: usize) -> usize {
        if self.config.snip_edges {
            if num_samples < self.frame_length {
                0
            } else {
                1 + (num_samples - self.frame_length) / self.frame_shift
            }
        } else {
            (num_samples + self.frame_shift / 2) / self.frame_shift
        }
    }

    /// Fewest samples that give one frame.
    pub fn min_samples(&self) -> usize {
        if self.config.snip_edges {
            self.frame_length
        } else {
            self.frame_shift - self.frame_shift / 2
        }
    }

    /// Features of `samples` (mono, at `config.sample_rate`, in [-1, 1)); errors name `<audio>`.
    pub fn compute(&self, samples: &[f32]) -> Result<Features> {
        self.compute_named(Path::new("<audio>"), samples)
    }

    /// Features of `samples`; errors (empty, too short, NaN/Inf) name `source`.
    pub fn compute_named(&self, source: impl AsRef<Path>, samples: &[f32]) -> Result<Features> {
        let source = source.as_ref();
        if samples.is_empty() {
            return Err(RuntimeError::EmptyAudio {
                path: source.to_path_buf(),
            });
        }
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(RuntimeError::NonFinite {
                path: source.to_path_buf(),
            });
        }
        let frames = self.num_frames(samples.len());
        if frames == 0 {
            return Err(RuntimeError::TooShort {
                path: source.to_path_buf(),
                samples: samples.len(),
                needed: self.min_samples(),
            });
        }
        let cfg = &self.config;
        let dim = self.dim();
        let mel_offset = usize::from(cfg.use_energy);
        let mut data = vec![0.0f32; frames * dim];

        // Reusable buffers (no allocation inside the frame loop).
        let mut frame = vec![0.0f32; self.frame_length];
        let mut fft_in = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f32; spectrum.len()];
        let mut rng = StdRng::seed_from_u64(DITHER_SEED);

        for (f, out) in data.chunks_exact_mut(dim).enumerate() {
            self.extract_frame(samples, f, &mut frame);
            let raw_log_energy = self.process_frame(&mut frame, &mut rng);

            for (dst, src) in fft_in.iter_mut().zip(&frame) {
                *dst = f64::from(*src);
            }
            for dst in fft_in.iter_mut().skip(self.frame_length) {
                *dst = 0.0;
            }
            let log_energy = if cfg.use_energy && !cfg.raw_energy {
                inner_product(&frame, &frame).max(f32::EPSILON).ln()
            } else {
                raw_log_energy
            };
            self.fft
                .process_with_scratch(&mut fft_in, &mut spectrum, &mut scratch)
                .map_err(|e| cfg_err(format!("FFT failed: {e}")))?;
            power_spectrum(&spectrum, &mut power, cfg.use_power);

            let mel = &mut out[mel_offset..];
            for (m, bin) in mel.iter_mut().zip(&self.bins) {
                let mut e = 0.0f32;
                for (w, p) in bin.weights.iter().zip(&power[bin.offset..]) {
                    e += w * p;
                }
                *m = if cfg.use_log_fbank {
                    e.max(f32::EPSILON).ln()
                } else {
                    e
                };
            }
            if cfg.use_energy {
                out[0] = match self.log_energy_floor {
                    Some(floor) if log_energy < floor => floor,
                    _ => log_energy,
                };
            }
        }
        // Finite samples far outside [-1, 1] (a float WAV holding 1e30) overflow the f32
        // energies to inf/NaN; refuse them rather than hand NaN features to a model.
        if data.iter().any(|v| !v.is_finite()) {
            let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            return Err(RuntimeError::BadAudio {
                path: source.to_path_buf(),
                reason: format!(
                    "samples far outside [-1, 1] (peak |x| = {peak:e}) overflow the filterbank energies"
                ),
            });
        }
        let mut features = Features { frames, dim, data };
        if cfg.mean_norm == MeanNorm::Utterance {
            features.subtract_mean();
        }
        Ok(features)
    }

    /// Copies frame `f` (scaled by `input_scale`) into `frame`, reflecting at the edges when
    /// `snip_edges` is false.
    fn extract_frame(&self, samples: &[f32], f: usize, frame: &mut [f32]) {
        let scale = self.config.input_scale;
        let n = samples.len() as i64;
        let start = if self.config.snip_edges {
            (f * self.frame_shift) as i64
        } else {
            (f * self.frame_shift + self.frame_shift / 2) as i64 - (self.frame_length / 2) as i64
        };
        let end = start + self.frame_length as i64;
        if start >= 0 && end <= n {
            let s = start as usize;
            for (dst, src) in frame.iter_mut().zip(&samples[s..s + self.frame_length]) {
                *dst = src * scale;
            }
        } else {
            for (i, dst) in frame.iter_mut().enumerate() {
                let mut k = start + i as i64;
                // Reflect around the edges: -1 -> 0, -2 -> 1; n -> n-1, n+1 -> n-2.
                while k < 0 || k >= n {
                    k = if k < 0 { -k - 1 } else { 2 * n - 1 - k };
                }
                *dst = samples[k as usize] * scale;
            }
        }
    }

    /// Dither, DC removal, raw log energy, pre-emphasis and window, in Kaldi's order.
    /// Returns the raw log energy (0 when not needed).
    fn process_frame(&self, frame: &mut [f32], rng: &mut StdRng) -> f32 {
        let cfg = &self.config;
        if cfg.dither > 0.0 {
            for v in frame.iter_mut() {
                *v += gauss(rng) * cfg.dither;
            }
        }
        if cfg.remove_dc_offset {
            let mut sum = 0.0f32;
            for v in frame.iter() {
                sum += v;
            }
            let mean = sum / frame.len() as f32;
            for v in frame.iter_mut() {
                *v -= mean;
            }
        }
        let raw_log_energy = if cfg.use_energy && cfg.raw_energy {
            inner_product(frame, frame).max(f32::EPSILON).ln()
        } else {
            0.0
        };
        let c = cfg.preemph_coeff;
        if c != 0.0 {
            for i in (1..frame.len()).rev() {
                frame[i] -= c * frame[i - 1];
            }
            if let Some(first) = frame.first_mut() {
                *first -= c * *first;
            }
        }
        for (v, w) in frame.iter_mut().zip(&self.window) {
            *v *= w;
        }
        raw_log_energy
    }
}

fn inner_product(a: &[f32], b: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        sum += x * y;
    }
    sum
}

/// Standard normal sample (Box–Muller).
fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// |X|^2 (or |X|) per FFT bin, with the coefficients rounded to `f32` first as Kaldi stores them.
fn power_spectrum(spectrum: &[Complex<f64>], power: &mut [f32], use_power: bool) {
    for (p, c) in power.iter_mut().zip(spectrum) {
        let re = c.re as f32;
        let im = c.im as f32;
        let e = re * re + im * im;
        *p = if use_power { e } else { e.sqrt() };
    }
}
