//! Kaldi-compatible log-mel filterbank features (the `compute-fbank-feats` / kaldi-native-fbank
//! recipe): framing, dither, DC removal, pre-emphasis, windowing, power spectrum, mel banks, log.
//!
//! The arithmetic follows Kaldi's order of operations in `f32` (the FFT runs in `f64`, as in
//! kaldi-native-fbank), so features match the reference to about 1e-4.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// Largest analysis window accepted, in samples.
pub const MAX_FRAME_SAMPLES: usize = 1 << 20;

/// Seed of the dither noise: the same input always gives the same features.
const DITHER_SEED: u64 = 0x5eed_fba2;

/// Window function applied to each frame (Kaldi's `--window-type`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WindowType {
    /// Hann window raised to the power 0.85 (Kaldi's default).
    #[default]
    Povey,
    /// 0.54 - 0.46 cos.
    Hamming,
    /// 0.5 - 0.5 cos (symmetric).
    Hanning,
    /// All ones.
    Rectangular,
    /// Blackman with coefficient 0.42.
    Blackman,
}

/// Mean normalisation applied to the finished features.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MeanNorm {
    /// Features as computed.
    #[default]
    None,
    /// Subtract each dimension's mean over the utterance.
    Utterance,
}

/// Fbank settings. JSON keys are the field names; missing keys take Kaldi's defaults
/// (except `num_mel_bins`, 80 here) and unknown keys are rejected.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FbankConfig {
    /// Sample rate the features are computed at (Hz).
    pub sample_rate: u32,
    /// Number of triangular mel bins.
    pub num_mel_bins: usize,
    /// Analysis window length (ms).
    pub frame_length_ms: f32,
    /// Hop between frames (ms).
    pub frame_shift_ms: f32,
    /// Window function.
    pub window: WindowType,
    /// Pre-emphasis coefficient in [0, 1]; 0 disables it.
    pub preemph_coeff: f32,
    /// Subtract each frame's mean before pre-emphasis.
    pub remove_dc_offset: bool,
    /// Lower edge of the first mel bin (Hz).
    pub low_freq: f32,
    /// Upper edge of the last mel bin (Hz); a value <= 0 is an offset from the Nyquist frequency.
    pub high_freq: f32,
    /// Standard deviation of the Gaussian dither, in scaled sample units; 0 disables it.
    /// The noise is seeded, so results are deterministic.
    pub dither: f32,
    /// true: only frames that fit completely in the signal; false: Kaldi's reflected edges
    /// with `round(n / shift)` frames centred on the shifts.
    pub snip_edges: bool,
    /// Zero-pad each frame to the next power of two before the FFT.
    pub round_to_power_of_two: bool,
    /// Factor applied to samples in [-1, 1) before anything else (32768 gives 16-bit units).
    pub input_scale: f32,
    /// Prepend the log energy of the frame as an extra first dimension.
    pub use_energy: bool,
    /// Energy measured before pre-emphasis and windowing (true) or after (false).
    pub raw_energy: bool,
    /// Floor on the energy (not on its log); 0 disables the floor.
    pub energy_floor: f32,
    /// Log of the mel energies (floored at `f32::EPSILON`); false gives linear energies.
    pub use_log_fbank: bool,
    /// Power spectrum (true) or magnitude spectrum (false).
    pub use_power: bool,
    /// Mean normalisation of the output.
    pub mean_norm: MeanNorm,
}

impl Default for FbankConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16000,
            num_mel_bins: 80,
            frame_length_ms: 25.0,
            frame_shift_ms: 10.0,
            window: WindowType::Povey,
            preemph_coeff: 0.97,
            remove_dc_offset: true,
            low_freq: 20.0,
            high_freq: 0.0,
            dither: 0.0,
            snip_edges: true,
            round_to_power_of_two: true,
            input_scale: 32768.0,
            use_energy: false,
            raw_energy: true,
            energy_floor: 0.0,
            use_log_fbank: true,
            use_power: true,
            mean_norm: MeanNorm::None,
        }
    }
}

fn cfg_err(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::FbankConfig(msg.into())
}

/// Kaldi's mel scale, in `f32` as kaldi-native-fbank computes it.
fn mel_scale(freq: f32) -> f32 {
    1127.0f32 * (1.0f32 + freq / 700.0f32).ln()
}

impl FbankConfig {
    /// Window length in samples, computed as Kaldi does (`f32`, truncated).
    pub fn frame_length(&self) -> usize {
        ms_to_samples(self.sample_rate, self.frame_length_ms)
    }

    /// Frame shift in samples, computed as Kaldi does (`f32`, truncated).
    pub fn frame_shift(&self) -> usize {
        ms_to_samples(self.sample_rate, self.frame_shift_ms)
    }

    /// FFT length: the window length, rounded up to a power of two if configured.
    pub fn padded_length(&self) -> usize {
        let n = self.frame_length();
        if self.round_to_power_of_two {
            n.max(1).next_power_of_two()
        } else {
            n
        }
    }

    /// Upper edge of the mel bins in Hz, after resolving a non-positive `high_freq`.
    pub fn high_edge(&self) -> f32 {
        let nyquist = 0.5f32 * self.sample_rate as f32;
        if self.high_freq > 0.0 {
            self.high_freq
        } else {
            nyquist + self.high_freq
        }
    }

    /// Feature dimension: the mel bins, plus one if `use_energy`.
    pub fn dim(&self) -> usize {
        self.num_mel_bins + usize::from(self.use_energy)
    }

    /// Checks the settings; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<()> {
        if self.sample_rate == 0 {
            return Err(cfg_err("sample_rate must be > 0"));
        }
        if self.num_mel_bins < 3 {
            return Err(cfg_err(format!(
                "num_mel_bins must be at least 3 (got {})",
                self.num_mel_bins
            )));
        }
        let finite = [
            ("frame_length_ms", self.frame_length_ms),
            ("frame_shift_ms", self.frame_shift_ms),
            ("preemph_coeff", self.preemph_coeff),
            ("low_freq", self.low_freq),
            ("high_freq", self.high_freq),
            ("dither", self.dither),
            ("input_scale", self.input_scale),
            ("energy_floor", self.energy_floor),
        ];
        for (name, v) in finite {
            if !v.is_finite() {
                return Err(cfg_err(format!("{name} must be a finite number (got {v})")));
            }
        }
        let len = self.frame_length();
        if self.frame_length_ms <= 0.0 || len < 2 {
            return Err(cfg_err(format!(
                "frame_length_ms {} gives a window of {len} samples at {} Hz; need at least 2",
                self.frame_length_ms, self.sample_rate
            )));
        }
        if len > MAX_FRAME_SAMPLES {
            return Err(cfg_err(format!(
                "frame_length_ms {} gives a window of {len} samples; at most {MAX_FRAME_SAMPLES} allowed",
                self.frame_length_ms
            )));
        }
        // Each mel bin needs FFT bins under it; this also bounds the filter bank's size.
        let fft_bins = self.padded_length() / 2;
        if self.num_mel_bins > fft_bins {
            return Err(cfg_err(format!(
                "num_mel_bins {} is more than the {fft_bins} frequency bins of a {}-point FFT",
                self.num_mel_bins,
                self.padded_length()
            )));
        }
        if self.frame_shift_ms <= 0.0 || self.frame_shift() == 0 {
            return Err(cfg_err(format!(
                "frame_shift_ms {} gives a shift of 0 samples at {} Hz",
                self.frame_shift_ms, self.sample_rate
            )));
        }
        if !(0.0..=1.0).contains(&self.preemph_coeff) {
            return Err(cfg_err(format!(
                "preemph_coeff must be in [0, 1] (got {})",
                self.preemph_coeff
            )));
        }
        if self.dither < 0.0 {
            return Err(cfg_err(format!(
                "dither must be >= 0 (got {})",
                self.dither
            )));
        }
        if self.input_scale == 0.0 {
            return Err(cfg_err("input_scale must not be 0"));
        }
        if self.energy_floor < 0.0 {
            return Err(cfg_err(format!(
                "energy_floor must be >= 0 (got {})",
                self.energy_floor
            )));
        }
        let nyquist = 0.5f32 * self.sample_rate as f32;
        let high = self.high_edge();
        if self.low_freq < 0.0 || self.low_freq >= nyquist {
            return Err(cfg_err(format!(
                "low_freq {} must be in [0, {nyquist}) (Nyquist at {} Hz)",
                self.low_freq, self.sample_rate
            )));
        }
        if high <= 0.0 || high > nyquist || high <= self.low_freq {
            return Err(cfg_err(format!(
                "high_freq {} gives an upper edge of {high} Hz; it must be above low_freq {} and at most the Nyquist frequency {nyquist}",
                self.high_freq, self.low_freq
            )));
        }
        Ok(())
    }
}

fn ms_to_samples(sample_rate: u32, ms: f32) -> usize {
    let v = sample_rate as f32 * 0.001f32 * ms;
    if v.is_finite() && v > 0.0 {
        // Truncation toward zero, as Kaldi's static_cast<int32>.
        v as usize
    } else {
        0
    }
}

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

/// One triangular mel filter: weights over FFT bins `offset..offset + weights.len()`.
#[derive(Clone, Debug)]
struct MelBin {
    offset: usize,
    weights: Vec<f32>,
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

/// Kaldi's window functions, computed in `f64` and stored as `f32`.
fn make_window(kind: WindowType, len: usize) -> Vec<f32> {
    let a = 2.0 * std::f64::consts::PI / (len as f64 - 1.0);
    (0..len)
        .map(|i| {
            let x = i as f64;
            let w = match kind {
                WindowType::Hanning => 0.5 - 0.5 * (a * x).cos(),
                WindowType::Hamming => 0.54 - 0.46 * (a * x).cos(),
                WindowType::Povey => (0.5 - 0.5 * (a * x).cos()).powf(0.85),
                WindowType::Rectangular => 1.0,
                WindowType::Blackman => {
                    let c = f64::from(0.42f32);
                    c - 0.5 * (a * x).cos() + (0.5 - c) * (2.0 * a * x).cos()
                }
            };
            w as f32
        })
        .collect()
}

/// Kaldi's triangular mel filters over FFT bins `0..padded/2` (the Nyquist bin is never used).
fn make_mel_bins(cfg: &FbankConfig, padded: usize) -> Result<Vec<MelBin>> {
    let num_fft_bins = padded / 2;
    let fft_bin_width = cfg.sample_rate as f32 / padded as f32;
    let mel_low = mel_scale(cfg.low_freq);
    let mel_high = mel_scale(cfg.high_edge());
    let delta = (mel_high - mel_low) / (cfg.num_mel_bins as f32 + 1.0);
    let fft_mels: Vec<f32> = (0..num_fft_bins)
        .map(|i| mel_scale(fft_bin_width * i as f32))
        .collect();
    let mut bins = Vec::with_capacity(cfg.num_mel_bins);
    for b in 0..cfg.num_mel_bins {
        let left = mel_low + b as f32 * delta;
        let center = mel_low + (b as f32 + 1.0) * delta;
        let right = mel_low + (b as f32 + 2.0) * delta;
        let mut offset = None;
        let mut weights = Vec::new();
        for (i, &mel) in fft_mels.iter().enumerate() {
            if mel > left && mel < right {
                let w = if mel <= center {
                    (mel - left) / (center - left)
                } else {
                    (right - mel) / (right - center)
                };
                let first = *offset.get_or_insert(i);
                // Kaldi keeps the contiguous span first..=last (all inside it are positive).
                weights.resize(i - first, 0.0);
                weights.push(w);
            }
        }
        match offset {
            Some(offset) => bins.push(MelBin { offset, weights }),
            None => {
                return Err(cfg_err(format!(
                    "mel bin {b} of {} covers no FFT bin ({}-point FFT at {} Hz); use fewer num_mel_bins or a longer frame",
                    cfg.num_mel_bins, padded, cfg.sample_rate
                )))
            }
        }
    }
    Ok(bins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_json_keys() {
        let c: FbankConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, FbankConfig::default());
        let v = serde_json::to_value(&c).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        for k in [
            "sample_rate",
            "num_mel_bins",
            "frame_length_ms",
            "frame_shift_ms",
            "window",
            "preemph_coeff",
            "remove_dc_offset",
            "low_freq",
            "high_freq",
            "dither",
            "snip_edges",
            "round_to_power_of_two",
            "input_scale",
            "use_energy",
            "raw_energy",
            "energy_floor",
            "use_log_fbank",
            "use_power",
            "mean_norm",
        ] {
            assert!(keys.contains(&k), "missing key {k}");
        }
        assert_eq!(keys.len(), 19);
        assert_eq!(v["window"], "povey");
        assert_eq!(v["mean_norm"], "none");
        let c: FbankConfig =
            serde_json::from_str(r#"{"window": "hamming", "mean_norm": "utterance"}"#).unwrap();
        assert_eq!(c.window, WindowType::Hamming);
        assert_eq!(c.mean_norm, MeanNorm::Utterance);
        assert!(serde_json::from_str::<FbankConfig>(r#"{"num_mel_bin": 40}"#).is_err());
        assert!(serde_json::from_str::<FbankConfig>(r#"{"window": "hann"}"#).is_err());
    }

    #[test]
    fn validation_errors() {
        let bad = |f: &dyn Fn(&mut FbankConfig)| {
            let mut c = FbankConfig::default();
            f(&mut c);
            match c.validate() {
                Err(RuntimeError::FbankConfig(msg)) => msg,
                other => panic!("expected FbankConfig error, got {other:?}"),
            }
        };
        assert!(bad(&|c| c.num_mel_bins = 0).contains("num_mel_bins"));
        assert!(bad(&|c| c.frame_length_ms = 0.0).contains("frame_length_ms"));
        assert!(bad(&|c| c.frame_shift_ms = 0.0).contains("frame_shift_ms"));
        assert!(bad(&|c| c.low_freq = 8000.0).contains("low_freq"));
        assert!(bad(&|c| {
            c.low_freq = 7700.0;
            c.high_freq = -400.0;
        })
        .contains("high_freq"));
        assert!(bad(&|c| c.high_freq = 9000.0).contains("high_freq"));
        assert!(bad(&|c| c.high_freq = -8000.0).contains("high_freq"));
        assert!(bad(&|c| c.sample_rate = 0).contains("sample_rate"));
        assert!(bad(&|c| c.preemph_coeff = 1.5).contains("preemph_coeff"));
        assert!(bad(&|c| c.dither = f32::NAN).contains("dither"));
        assert!(bad(&|c| c.input_scale = 0.0).contains("input_scale"));
        assert!(bad(&|c| c.num_mel_bins = 1_000_000_000).contains("num_mel_bins"));
        let c = FbankConfig {
            num_mel_bins: 400,
            ..FbankConfig::default()
        };
        assert!(matches!(Fbank::new(&c), Err(RuntimeError::FbankConfig(_))));
        assert!(FbankConfig::default().validate().is_ok());
    }

    /// `wav_fbank` fuzz finding: a float WAV holding finite samples far outside [-1, 1]
    /// overflowed the energies to inf/NaN, and `compute` returned those as features.
    #[test]
    fn samples_far_outside_unit_range_are_bad_audio() {
        for cfg in [
            FbankConfig::default(),
            FbankConfig {
                input_scale: 1.0,
                mean_norm: MeanNorm::Utterance,
                ..FbankConfig::default()
            },
        ] {
            let fb = Fbank::new(&cfg).unwrap();
            let mut x = vec![0.25f32; 1600];
            x[700] = 1e30;
            match fb.compute(&x) {
                Err(RuntimeError::BadAudio { reason, .. }) => {
                    assert!(reason.contains("1e30"), "{reason}")
                }
                other => panic!("expected BadAudio, got {other:?}"),
            }
            x[700] = 0.5;
            let f = fb.compute(&x).unwrap();
            assert!(f.data.iter().all(|v| v.is_finite()));
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/fuzz-regressions/wav_fbank-float-overflow.wav");
        let audio = crate::audio::wav::read_wav(&path).unwrap();
        let x = crate::audio::resample::resample(&audio.samples, audio.sample_rate, 16000).unwrap();
        let fb = Fbank::new(&FbankConfig::default()).unwrap();
        let e = fb.compute(&x).unwrap_err();
        assert!(matches!(e, RuntimeError::BadAudio { .. }), "{e}");
    }

    #[test]
    fn frame_geometry() {
        let fb = Fbank::new(&FbankConfig::default()).unwrap();
        assert_eq!(fb.frame_length(), 400);
        assert_eq!(fb.frame_shift(), 160);
        assert_eq!(fb.num_frames(399), 0);
        assert_eq!(fb.num_frames(400), 1);
        assert_eq!(fb.num_frames(16000), 98);
        let c8 = FbankConfig {
            sample_rate: 8000,
            ..FbankConfig::default()
        };
        assert_eq!(c8.frame_length(), 200);
        assert_eq!(c8.frame_shift(), 80);
        assert_eq!(c8.padded_length(), 256);
    }

    #[test]
    fn window_shapes() {
        let w = make_window(WindowType::Povey, 400);
        assert_eq!(w[0], 0.0);
        assert!((w[200] - 1.0).abs() < 1e-4);
        let h = make_window(WindowType::Hamming, 400);
        assert!((h[0] - 0.08).abs() < 1e-6);
        let r = make_window(WindowType::Rectangular, 10);
        assert!(r.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn dither_is_deterministic() {
        let c = FbankConfig {
            dither: 1.0,
            ..FbankConfig::default()
        };
        let fb = Fbank::new(&c).unwrap();
        let x = vec![0.0f32; 4000];
        let a = fb.compute(&x).unwrap();
        let b = fb.compute(&x).unwrap();
        assert_eq!(a, b);
        // Dither lifts digital silence off the log floor.
        assert!(a.data.iter().all(|&v| v > f32::EPSILON.ln() + 1.0));
    }
}
