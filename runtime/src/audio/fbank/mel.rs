//! Kaldi's analysis windows and triangular mel filters, precomputed once per [`super::Fbank`].

use super::config::{cfg_err, FbankConfig, WindowType};
use crate::error::Result;

/// Kaldi's mel scale, in `f32` as kaldi-native-fbank computes it.
fn mel_scale(freq: f32) -> f32 {
    1127.0f32 * (1.0f32 + freq / 700.0f32).ln()
}

/// One triangular mel filter: weights over FFT bins `offset..offset + weights.len()`.
#[derive(Clone, Debug)]
pub(super) struct MelBin {
    pub(super) offset: usize,
    pub(super) weights: Vec<f32>,
}

/// Kaldi's window functions, computed in `f64` and stored as `f32`.
pub(super) fn make_window(kind: WindowType, len: usize) -> Vec<f32> {
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
pub(super) fn make_mel_bins(cfg: &FbankConfig, padded: usize) -> Result<Vec<MelBin>> {
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
