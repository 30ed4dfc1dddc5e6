//! Streaming per-tensor statistics (min, max, mean, std, counts) with a numerically stable merge.
//!
//! Each batch is summarised with a two-pass mean / sum of squared deviations and folded into the
//! running totals with Chan et al.'s parallel update, so feeding data in many small batches, in one
//! big batch, or merging statistics from separate runs all give the same result up to rounding.
//! Non-finite values (NaN, ±Inf) are counted in [`TensorStats::nonfinite`] and left out of every
//! other field. The standard deviation is the population one (divides by `count`).

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
        }
    }

    /// Folds a batch of values into these statistics.
    pub fn update(&mut self, data: &[f32]) {
        let batch = TensorStats::from_slice(data);
        self.merge(&batch);
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
