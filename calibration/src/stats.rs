//! Streaming per-tensor statistics (min, max, mean, std, counts) with a numerically stable merge.
//!
//! Each batch is summarised with a two-pass mean / sum of squared deviations and folded into the
//! running totals with Chan et al.'s parallel update, so feeding data in many small batches, in one
//! big batch, or merging statistics from separate runs all give the same result up to rounding.
//! Non-finite values (NaN, ±Inf) are counted in [`TensorStats::nonfinite`] and left out of every
//! other field. The standard deviation is the population one (divides by `count`).
//!
//! Optionally ([`TensorStats::update_channels`]) the largest |x| of every channel along the
//! last axis is kept too (`channel_abs_max`, one float per channel: memory independent of how
//! much data is seen), what SmoothQuant-style scale migration needs
//! (`exporter::passes::smooth`).

use serde::{Deserialize, Serialize};

/// Summary statistics of the finite values of one tensor.
///
/// With `count == 0` every float field is 0.0 (serialisable JSON, no infinities).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TensorStats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Population standard deviation of the finite values.
    pub std: f64,
    /// Number of finite values seen.
    pub count: u64,
    /// Number of NaN / ±Inf values seen (not included in any other field).
    pub nonfinite: u64,
    /// Largest finite |x| per channel of the last axis (empty unless fed through
    /// [`TensorStats::update_channels`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel_abs_max: Vec<f32>,
}

impl Default for TensorStats {
    fn default() -> Self {
        Self::new()
    }
}

impl TensorStats {
    /// Empty statistics.
    pub fn new() -> TensorStats {
        TensorStats {
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            std: 0.0,
            count: 0,
            nonfinite: 0,
            channel_abs_max: Vec::new(),
        }
    }

    /// Statistics of one slice.
    pub fn from_slice(data: &[f32]) -> TensorStats {
        let mut count = 0u64;
        let mut nonfinite = 0u64;
        let mut sum = 0.0f64;
        let mut min = f64::INFINITY;
        let mut max = f64::NEG_INFINITY;
        for &x in data {
            if x.is_finite() {
                let v = f64::from(x);
                count += 1;
                sum += v;
                min = min.min(v);
                max = max.max(v);
            } else {
                nonfinite += 1;
            }
        }
        if count == 0 {
            return TensorStats {
                nonfinite,
                ..TensorStats::new()
            };
        }
        let n = count as f64;
        let mean0 = sum / n;
        // Second pass: deviations from the first-pass mean, with the usual correction term
        // so that the rounding error of `mean0` does not leak into the variance.
        let mut dev = 0.0f64;
        let mut dev2 = 0.0f64;
        for &x in data {
            if x.is_finite() {
                let d = f64::from(x) - mean0;
                dev += d;
                dev2 += d * d;
            }
        }
        let mean = mean0 + dev / n;
        let m2 = (dev2 - dev * dev / n).max(0.0);
        TensorStats {
            min,
            max,
            mean,
            std: (m2 / n).sqrt(),
            count,
            nonfinite,
            channel_abs_max: Vec::new(),
        }
    }

    /// Folds a batch of values into these statistics.
    pub fn update(&mut self, data: &[f32]) {
        let batch = TensorStats::from_slice(data);
        self.merge(&batch);
    }

    /// [`TensorStats::update`], and the per-channel |x| maxima over the last axis of
    /// `channels` channels (`data` is row-major, so `data[i]` is in channel `i % channels`).
    /// Per-channel maxima are kept only when every batch since the first came through here
    /// with the same channel count; otherwise they are dropped (they would mix channels).
    pub fn update_channels(&mut self, data: &[f32], channels: usize) {
        let batch = channel_maxima(data, channels);
        let first = self.count == 0 && self.nonfinite == 0;
        let mut kept = std::mem::take(&mut self.channel_abs_max);
        self.update(data);
        if first {
            kept = batch;
        } else {
            merge_maxima(&mut kept, &batch);
        }
        self.channel_abs_max = kept;
    }

    /// Merges statistics gathered elsewhere (Chan et al.'s parallel algorithm).
    pub fn merge(&mut self, other: &TensorStats) {
        self.nonfinite += other.nonfinite;
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            let nonfinite = self.nonfinite;
            *self = other.clone();
            self.nonfinite = nonfinite;
            return;
        }
        let na = self.count as f64;
        let nb = other.count as f64;
        let n = na + nb;
        let delta = other.mean - self.mean;
        let m2a = self.std * self.std * na;
        let m2b = other.std * other.std * nb;
        let m2 = m2a + m2b + delta * delta * na * nb / n;
        self.mean += delta * nb / n;
        self.std = (m2.max(0.0) / n).sqrt();
        merge_maxima(&mut self.channel_abs_max, &other.channel_abs_max);
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Largest absolute finite value (0.0 when nothing finite was seen).
    pub fn abs_max(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.min.abs().max(self.max.abs())
        }
    }
}

/// Largest finite |x| per channel (`data[i]` in channel `i % channels`); empty when `data` is
/// not a whole number of rows of `channels` values.
fn channel_maxima(data: &[f32], channels: usize) -> Vec<f32> {
    if channels == 0 || data.is_empty() || !data.len().is_multiple_of(channels) {
        return Vec::new();
    }
    let mut out = vec![0f32; channels];
    for row in data.chunks_exact(channels) {
        for (m, &x) in out.iter_mut().zip(row) {
            if x.is_finite() {
                *m = m.max(x.abs());
            }
        }
    }
    out
}

/// Element-wise max of `b` into `a`; mismatched or missing maxima leave none.
fn merge_maxima(a: &mut Vec<f32>, b: &[f32]) {
    if a.len() == b.len() {
        for (x, y) in a.iter_mut().zip(b) {
            *x = x.max(*y);
        }
    } else {
        a.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1e-300)
    }

    #[test]
    fn merge_equals_one_pass() {
        // Values with a large offset stress cancellation in naive sum-of-squares formulas.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<f32> = (0..100_003)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                1000.0 + ((state >> 11) as f64 / (1u64 << 53) as f64) as f32
            })
            .collect();
        let whole = TensorStats::from_slice(&data);
        let mut streamed = TensorStats::new();
        for chunk in data.chunks(977) {
            streamed.update(chunk);
        }
        let mut merged = TensorStats::new();
        let (a, b) = data.split_at(31_337);
        let mut sa = TensorStats::from_slice(a);
        sa.merge(&TensorStats::from_slice(b));
        merged.merge(&sa);
        for s in [&streamed, &merged] {
            assert_eq!(s.count, whole.count);
            assert_eq!(s.min, whole.min);
            assert_eq!(s.max, whole.max);
            assert!(
                rel(s.mean, whole.mean) < 1e-9,
                "{} vs {}",
                s.mean,
                whole.mean
            );
            assert!(rel(s.std, whole.std) < 1e-9, "{} vs {}", s.std, whole.std);
        }
        // Uniform(0,1) shifted by 1000 (rounded to f32): std ≈ 1/sqrt(12).
        assert!(
            (whole.std - (1.0f64 / 12.0).sqrt()).abs() < 0.01,
            "{}",
            whole.std
        );
    }

    #[test]
    fn channel_maxima_stream_and_merge() {
        // rows of 3 channels; channel 1 carries the outlier
        let mut s = TensorStats::new();
        s.update_channels(&[1.0, -9.0, 0.5, -2.0, 3.0, 0.25], 3);
        s.update_channels(&[0.5, 1.0, -0.75, f32::NAN, 2.0, 0.0], 3);
        assert_eq!(s.channel_abs_max, [2.0, 9.0, 0.75]);
        assert_eq!((s.count, s.nonfinite), (11, 1));
        assert_eq!(s.abs_max(), 9.0);
        let mut other = TensorStats::new();
        other.update_channels(&[4.0, 0.0, 0.0], 3);
        let mut merged = s.clone();
        merged.merge(&other);
        assert_eq!(merged.channel_abs_max, [4.0, 9.0, 0.75]);
        // a batch that is not whole rows, or a plain update, drops them
        let mut ragged = s.clone();
        ragged.update_channels(&[1.0, 2.0], 3);
        assert!(ragged.channel_abs_max.is_empty());
        let mut plain = s.clone();
        plain.merge(&TensorStats::from_slice(&[1.0]));
        assert!(plain.channel_abs_max.is_empty());
        // absent from the JSON when empty, and round-trips when present
        let json = serde_json::to_string(&TensorStats::from_slice(&[1.0])).unwrap();
        assert!(!json.contains("channel_abs_max"), "{json}");
        let back: TensorStats = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn nonfinite_counted_and_excluded() {
        let s = TensorStats::from_slice(&[1.0, f32::NAN, 3.0, f32::INFINITY, f32::NEG_INFINITY]);
        assert_eq!(s.count, 2);
        assert_eq!(s.nonfinite, 3);
        assert_eq!(s.mean, 2.0);
        assert_eq!(s.std, 1.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 3.0);
        let mut e = TensorStats::new();
        e.update(&[f32::NAN]);
        e.update(&[-5.0]);
        assert_eq!(
            (e.count, e.nonfinite, e.min, e.abs_max()),
            (1, 1, -5.0, 5.0)
        );
    }
}
