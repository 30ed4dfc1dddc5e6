//! The fbank configuration (Kaldi's option names and defaults, JSON keys) and its validation.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// Largest analysis window accepted, in samples.
pub const MAX_FRAME_SAMPLES: usize = 1 << 20;

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

pub(super) fn cfg_err(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::FbankConfig(msg.into())
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
