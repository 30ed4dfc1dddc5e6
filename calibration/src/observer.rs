//! Observers: collect per-tensor histograms and statistics, then turn them into int8 ranges.
//!
//! A [`Calibrator`] keeps, for every tensor name, one [`Histogram`] of |x| and one
//! [`TensorStats`]. Every [`Method`] is computed from those same histograms, so a single
//! calibration pass serves all methods. Quantization is symmetric int8: `scale = amax / 127`,
//! zero point 0.
//!
//! Methods:
//! - `max`: the exact abs-max from the statistics.
//! - `percentile:P`: the |x| below which P % of the finite samples lie (interpolated within a
//!   bin, never above the abs-max). `percentile` alone means 99.99.
//! - `entropy`: TensorRT's KL-divergence calibration: for every candidate threshold from bin 128
//!   up to the last bin, the reference distribution P is the histogram up to the threshold with
//!   all outliers folded into its last bin; the candidate Q quantizes the same bins (without
//!   outliers) to 128 levels and expands each level back evenly over its non-empty bins; the
//!   threshold with the smallest KL(P‖Q) wins (ties go to the larger threshold).
//! - `mse`: the amax (searched over all bin edges) minimising the expected squared error of
//!   symmetric int8 fake-quantization, values taken as uniform within each bin: rounding error
//!   (exact sawtooth integral) inside the range plus clipping error outside it.
//!
//! Degenerate tensors (recorded in [`TensorRange::fallback`], never a zero or non-finite scale):
//! - any NaN/Inf observed → [`CalibError::Tensor`] naming the tensor;
//! - nothing observed, all zero, or abs-max so small that amax/127 is not a normal f32 →
//!   amax 1.0 (any positive scale represents zero exactly), with a `log::warn!`;
//! - constant tensor (min == max) or a single occupied histogram bin → the `max` result,
//!   with a `log::info!` (only noted for methods other than `max`);
//! - a method that finds no usable threshold (e.g. every KL candidate infinite) → `max`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{CalibError, Result};
use crate::histogram::Histogram;
use crate::stats::TensorStats;
use crate::table::{CalibrationTable, TensorRange, TABLE_FORMAT};

/// Default percentile for `percentile` without a value.
pub const DEFAULT_PERCENTILE: f64 = 99.99;
/// Number of quantized levels the entropy search maps the |x| histogram onto (TensorRT: 128).
pub const ENTROPY_LEVELS: usize = 128;
/// First candidate threshold (in bins) of the entropy search.
pub const ENTROPY_START_BIN: usize = 128;
/// Largest int8 magnitude of symmetric quantization.
pub const QMAX: f64 = 127.0;

/// How a tensor's range (amax) is chosen from its observations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Exact abs-max.
    Max,
    /// |x| percentile, in percent (e.g. 99.99).
    Percentile(f64),
    /// TensorRT's KL-divergence (entropy) calibration.
    Entropy,
    /// Minimum expected squared quantization error.
    Mse,
}

impl Method {
    fn validate(&self) -> Result<()> {
        match *self {
            Method::Percentile(p) if !(p > 0.0 && p <= 100.0) => Err(CalibError::Config(format!(
                "percentile must be in (0, 100], got {p}"
            ))),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Max => f.write_str("max"),
            Method::Percentile(p) => write!(f, "percentile:{p}"),
            Method::Entropy => f.write_str("entropy"),
            Method::Mse => f.write_str("mse"),
        }
    }
}

impl FromStr for Method {
    type Err = CalibError;

    fn from_str(s: &str) -> Result<Method> {
        let t = s.trim().to_ascii_lowercase();
        let m = match t.as_str() {
            "max" => Method::Max,
            "percentile" => Method::Percentile(DEFAULT_PERCENTILE),
            "entropy" => Method::Entropy,
            "mse" => Method::Mse,
            _ => match t.strip_prefix("percentile:") {
                Some(v) => {
                    let p: f64 = v.trim().parse().map_err(|_| {
                        CalibError::Config(format!(
                            "calibration method '{s}': '{v}' is not a number"
                        ))
                    })?;
                    Method::Percentile(p)
                }
                None => {
                    return Err(CalibError::Config(format!(
                        "unknown calibration method '{s}' (expected max, percentile, \
                         percentile:P with 0 < P <= 100, entropy or mse)"
                    )))
                }
            },
        };
        m.validate()
            .map_err(|e| CalibError::Config(format!("calibration method '{s}': {e}")))?;
        Ok(m)
    }
}

/// Longest tensor name accepted (bytes); ONNX tensor names are far shorter.
pub const MAX_TENSOR_NAME_BYTES: usize = 4096;

/// Checks a tensor name can be stored in both table formats (non-empty, at most
/// [`MAX_TENSOR_NAME_BYTES`], no control characters).
pub(crate) fn check_tensor_name(name: &str) -> Result<()> {
    if name.len() > MAX_TENSOR_NAME_BYTES {
        let cut = (0..=40)
            .rev()
            .find(|&i| name.is_char_boundary(i))
            .unwrap_or(0);
        return Err(CalibError::Tensor {
            tensor: format!("{}…", &name[..cut]),
            reason: format!(
                "name is {} bytes long, more than {MAX_TENSOR_NAME_BYTES}",
                name.len()
            ),
        });
    }
    if name.is_empty() {
        return Err(CalibError::Tensor {
            tensor: String::new(),
            reason: "empty tensor name".into(),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(CalibError::Tensor {
            tensor: name.escape_debug().to_string(),
            reason: "tensor name contains control characters".into(),
        });
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct Observed {
    hist: Histogram,
    stats: TensorStats,
}

/// Per-tensor observers (histogram + statistics); see the module docs.
#[derive(Clone, Debug)]
pub struct Calibrator {
    bins: usize,
    tensors: BTreeMap<String, Observed>,
}

impl Calibrator {
    /// A calibrator whose histograms have `bins` bins (128..=65536; 2048 is TensorRT's choice).
    pub fn new(bins: usize) -> Result<Calibrator> {
        Histogram::new(bins)?;
        Ok(Calibrator {
            bins,
            tensors: BTreeMap::new(),
        })
    }

    /// Folds one batch of `tensor` into its observers. NaN/Inf are counted in
    /// `stats.nonfinite` and left out of the histogram; [`Calibrator::compute`] rejects them.
    pub fn observe(&mut self, tensor: &str, data: &[f32]) -> Result<()> {
        let obs = self.entry(tensor)?;
        obs.stats.update(data);
        obs.hist.add(data);
        Ok(())
    }

    /// The observers of `tensor`, created on first use.
    fn entry(&mut self, tensor: &str) -> Result<&mut Observed> {
        if !self.tensors.contains_key(tensor) {
            check_tensor_name(tensor)?;
            let obs = Observed {
                hist: Histogram::new(self.bins)?,
                stats: TensorStats::new(),
            };
            self.tensors.insert(tensor.to_string(), obs);
        }
        self.tensors
            .get_mut(tensor)
            .ok_or_else(|| CalibError::Tensor {
                tensor: tensor.to_string(),
                reason: "observer lost".into(),
            })
    }

    /// [`Calibrator::observe`], also keeping the |x| maximum of each of the `channels`
    /// channels of the last axis (`stats.channel_abs_max`, for SmoothQuant scale migration).
    pub fn observe_channels(&mut self, tensor: &str, data: &[f32], channels: usize) -> Result<()> {
        let obs = self.entry(tensor)?;
        obs.stats.update_channels(data, channels);
        obs.hist.add(data);
        Ok(())
    }

    /// Starts `tensor`'s histogram at `range` (e.g. the abs-max from a first `max` pass) so
    /// that it never has to grow; only allowed before the tensor's first observation.
    pub fn preset_range(&mut self, tensor: &str, range: f64) -> Result<()> {
        check_tensor_name(tensor)?;
        if self.tensors.contains_key(tensor) {
            return Err(CalibError::Tensor {
                tensor: tensor.to_string(),
                reason: "range preset after the tensor was already observed".into(),
            });
        }
        let hist = Histogram::with_range(self.bins, range).map_err(|e| CalibError::Tensor {
            tensor: tensor.to_string(),
            reason: e.to_string(),
        })?;
        let obs = Observed {
            hist,
            stats: TensorStats::new(),
        };
        self.tensors.insert(tensor.to_string(), obs);
        Ok(())
    }

    /// Merges observations made by another calibrator (e.g. a parallel worker).
    pub fn merge(&mut self, other: &Calibrator) -> Result<()> {
        if other.bins != self.bins {
            return Err(CalibError::Config(format!(
                "cannot merge calibrators with {} and {} bins",
                self.bins, other.bins
            )));
        }
        for (name, o) in &other.tensors {
            match self.tensors.get_mut(name) {
                Some(mine) => {
                    mine.hist.merge(&o.hist)?;
                    mine.stats.merge(&o.stats);
                }
                None => {
                    self.tensors.insert(name.clone(), o.clone());
                }
            }
        }
        Ok(())
    }

    /// Number of histogram bins per tensor.
    pub fn bins(&self) -> usize {
        self.bins
    }

    /// Observed tensor names, sorted.
    pub fn tensors(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }

    /// Statistics of one tensor.
    pub fn stats(&self, tensor: &str) -> Option<&TensorStats> {
        self.tensors.get(tensor).map(|o| &o.stats)
    }

    /// Histogram of one tensor.
    pub fn histogram(&self, tensor: &str) -> Option<&Histogram> {
        self.tensors.get(tensor).map(|o| &o.hist)
    }

    /// Approximate bytes held (grows with the number of tensors, never with the data volume).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .tensors
                .iter()
                .map(|(k, o)| {
                    k.capacity() + std::mem::size_of::<(String, Observed)>() + o.hist.memory_bytes()
                        - std::mem::size_of::<Histogram>()
                })
                .sum::<usize>()
    }

    /// The calibration table for every observed tensor with `method`.
    pub fn compute(&self, method: Method) -> Result<CalibrationTable> {
        method.validate()?;
        let bad: Vec<&str> = self
            .tensors
            .iter()
            .filter(|(_, o)| o.stats.nonfinite > 0)
            .map(|(k, _)| k.as_str())
            .collect();
        if let Some(first) = bad.first() {
            let mut reason = format!(
                "{} NaN/Inf values among {} observed; refusing to calibrate it",
                self.tensors[*first].stats.nonfinite,
                self.tensors[*first].stats.nonfinite + self.tensors[*first].stats.count
            );
            if bad.len() > 1 {
                reason.push_str(&format!(
                    " ({} more tensors have NaN/Inf: {})",
                    bad.len() - 1,
                    bad[1..]
                        .iter()
                        .take(5)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            return Err(CalibError::Tensor {
                tensor: first.to_string(),
                reason,
            });
        }
        let mut tensors = BTreeMap::new();
        for name in self.tensors.keys() {
            tensors.insert(name.clone(), self.compute_tensor(name, method)?);
        }
        Ok(CalibrationTable {
            format: TABLE_FORMAT.to_string(),
            method: method.to_string(),
            tensors,
        })
    }

    /// The range of one tensor with `method` (see the module docs for degenerate cases).
    pub fn compute_tensor(&self, tensor: &str, method: Method) -> Result<TensorRange> {
        method.validate()?;
        let obs = self.tensors.get(tensor).ok_or_else(|| CalibError::Tensor {
            tensor: tensor.to_string(),
            reason: "never observed".into(),
        })?;
        let stats = &obs.stats;
        if stats.nonfinite > 0 {
            return Err(CalibError::Tensor {
                tensor: tensor.to_string(),
                reason: format!(
                    "{} NaN/Inf values among {} observed; refusing to calibrate it",
                    stats.nonfinite,
                    stats.nonfinite + stats.count
                ),
            });
        }
        let abs_max = stats.abs_max();
        let unit = |why: String| {
            log::warn!("calibration: tensor '{tensor}': {why}");
            range(1.0, Some(why), stats)
        };
        if stats.count == 0 {
            return Ok(unit("no values observed: amax 1.0".into()));
        }
        if abs_max == 0.0 {
            return Ok(unit("all-zero tensor: amax 1.0".into()));
        }
        if !((abs_max as f32 / QMAX as f32).is_normal()) {
            return Ok(unit(format!(
                "abs-max {abs_max:e} too small for a normal f32 scale: amax 1.0"
            )));
        }
        let use_max = |why: String| {
            if method != Method::Max {
                log::info!("calibration: tensor '{tensor}' ({method}): {why}");
                range(abs_max, Some(why), stats)
            } else {
                range(abs_max, None, stats)
            }
        };
        if stats.min == stats.max {
            return Ok(use_max("constant tensor: using max".into()));
        }
        if obs.hist.occupied_bins() <= 1 {
            return Ok(use_max("single occupied histogram bin: using max".into()));
        }
        let found = match method {
            Method::Max => Some(abs_max),
            Method::Percentile(p) => obs.hist.percentile(p),
            Method::Entropy => amax_entropy(&obs.hist),
            Method::Mse => amax_mse(&obs.hist),
        };
        let amax = match found {
            Some(a) if a.is_finite() && a > 0.0 => a.min(abs_max),
            _ => {
                return Ok(use_max(format!(
                    "{method} found no usable threshold: using max"
                )))
            }
        };
        if !((amax as f32 / QMAX as f32).is_normal()) {
            return Ok(use_max(format!(
                "{method} threshold {amax:e} gives no normal f32 scale: using max"
            )));
        }
        Ok(range(amax, None, stats))
    }
}

fn range(amax: f64, fallback: Option<String>, stats: &TensorStats) -> TensorRange {
    let amax = amax as f32;
    TensorRange {
        amax,
        scale: amax / QMAX as f32,
        fallback,
        stats: Some(stats.clone()),
    }
}

/// TensorRT-style KL-divergence threshold over the |x| histogram; `None` if no candidate has a
/// finite divergence.
///
/// Bin 0 is set to the count of bin 1 first (as NVIDIA's pytorch-quantization does): after a
/// ReLU, half or more of the values are exactly zero, and that spike, merged with its
/// neighbours into the first quantization level of every wider candidate, would dominate the
/// divergence and always select the narrowest threshold (128 of 2048 bins), clipping 94% of
/// the range. Zero is represented exactly at any scale, so its count carries no information
/// about where to clip.
pub fn amax_entropy(hist: &Histogram) -> Option<f64> {
    let mut bins = hist.bins().to_vec();
    if bins.len() > 1 {
        bins[0] = bins[1];
    }
    let bins = bins.as_slice();
    let n = bins.len();
    let total: f64 = bins.iter().sum();
    if n < ENTROPY_START_BIN || total <= 0.0 {
        return None;
    }
    // suffix[i] = sum of bins[i..]
    let mut suffix = vec![0.0; n + 1];
    for i in (0..n).rev() {
        suffix[i] = suffix[i + 1] + bins[i];
    }
    let mut best: Option<(f64, usize)> = None;
    // Candidate `i` keeps bins [0, i); suffix[i] are its outliers.
    for (i, &outliers) in suffix.iter().enumerate().skip(ENTROPY_START_BIN) {
        let inside = total - outliers;
        if inside <= 0.0 {
            continue;
        }
        let mut kl = 0.0f64;
        let mut finite = true;
        // Level `l` covers bins [ceil(l*i/L), ceil((l+1)*i/L)): bin j maps to floor(j*L/i).
        let mut start = 0usize;
        for level in 0..ENTROPY_LEVELS {
            let stop = ((level + 1) * i).div_ceil(ENTROPY_LEVELS);
            let chunk = &bins[start..stop];
            let sum: f64 = chunk.iter().sum();
            let nonzero = chunk.iter().filter(|&&c| c > 0.0).count();
            let q_each = if nonzero > 0 {
                sum / nonzero as f64 / inside
            } else {
                0.0
            };
            for (k, &c) in chunk.iter().enumerate() {
                let mut p = c;
                if start + k == i - 1 {
                    p += outliers;
                }
                if p <= 0.0 {
                    continue;
                }
                let p = p / total;
                let q = if c > 0.0 { q_each } else { 0.0 };
                if q <= 0.0 {
                    finite = false;
                    break;
                }
                kl += p * (p / q).ln();
            }
            if !finite {
                break;
            }
            start = stop;
        }
        if !finite || !kl.is_finite() {
            continue;
        }
        if best.is_none_or(|(b, _)| kl <= b) {
            best = Some((kl, i));
        }
    }
    best.map(|(_, i)| i as f64 * hist.bin_width())
}

/// ∫₀ˣ (t − round(t/s)·s)² dt for step `s` (rounding error of a uniform quantizer).
fn rounding_integral(x: f64, s: f64) -> f64 {
    let u = x / s + 0.5;
    let whole = u.floor();
    let frac = u - whole;
    let s3 = s * s * s;
    whole * s3 / 12.0 + ((frac - 0.5).powi(3) * s3 + s3 / 8.0) / 3.0 - s3 / 24.0
}

/// Expected squared error of symmetric int8 fake-quantization with range `amax` for each bin
/// edge as candidate; returns the minimising edge.
pub fn amax_mse(hist: &Histogram) -> Option<f64> {
    let bins = hist.bins();
    let n = bins.len();
    let w = hist.bin_width();
    if w <= 0.0 || bins.iter().sum::<f64>() <= 0.0 {
        return None;
    }
    // Suffix sums of count, count·E[x], count·E[x²] (uniform within each bin).
    let mut s0 = vec![0.0; n + 1];
    let mut s1 = vec![0.0; n + 1];
    let mut s2 = vec![0.0; n + 1];
    for j in (0..n).rev() {
        let lo = j as f64 * w;
        let hi = lo + w;
        let c = bins[j];
        s0[j] = s0[j + 1] + c;
        s1[j] = s1[j + 1] + c * (lo + hi) / 2.0;
        s2[j] = s2[j + 1] + c * (lo * lo + lo * hi + hi * hi) / 3.0;
    }
    // Expected squared error when clipping at the upper edge of bin `i - 1`.
    let err_at = |i: usize| -> f64 {
        let a = i as f64 * w;
        let step = a / QMAX;
        let clip = (s2[i] - 2.0 * a * s1[i] + a * a * s0[i]).max(0.0);
        let mut round = 0.0;
        let mut prev = 0.0;
        for (j, &c) in bins[..i].iter().enumerate() {
            let next = rounding_integral((j + 1) as f64 * w, step);
            if c > 0.0 {
                round += c * (next - prev) / w;
            }
            prev = next;
        }
        clip + round
    };
    // The error is smooth in the threshold: scan every MSE_COARSE-th candidate, then every
    // candidate around the best coarse one (about a tenth of the work of a full scan).
    let mut best: Option<(f64, usize)> = None;
    let consider = |i: usize, best: &mut Option<(f64, usize)>| {
        let err = err_at(i);
        if err.is_finite() && best.is_none_or(|(b, _)| err < b) {
            *best = Some((err, i));
        }
    };
    for i in (MSE_COARSE..=n).step_by(MSE_COARSE).chain([n]) {
        consider(i, &mut best);
    }
    if let Some((_, c)) = best {
        for i in c.saturating_sub(MSE_COARSE).max(1)..=(c + MSE_COARSE).min(n) {
            consider(i, &mut best);
        }
    }
    best.map(|(_, i)| i as f64 * w)
}

/// Stride of the coarse MSE threshold scan.
const MSE_COARSE: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_parse_and_display() {
        assert_eq!("max".parse::<Method>().unwrap(), Method::Max);
        assert_eq!(" Entropy ".parse::<Method>().unwrap(), Method::Entropy);
        assert_eq!("mse".parse::<Method>().unwrap(), Method::Mse);
        assert_eq!(
            "percentile".parse::<Method>().unwrap(),
            Method::Percentile(99.99)
        );
        assert_eq!(
            "percentile:99.9".parse::<Method>().unwrap(),
            Method::Percentile(99.9)
        );
        for m in [
            Method::Max,
            Method::Percentile(99.99),
            Method::Percentile(99.9),
            Method::Entropy,
            Method::Mse,
        ] {
            assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
        }
        for bad in [
            "",
            "minmax",
            "percentile:",
            "percentile:abc",
            "percentile:0",
            "percentile:101",
            "percentile:NaN",
        ] {
            let e = bad.parse::<Method>().unwrap_err().to_string();
            assert!(e.contains("calibration method"), "{bad}: {e}");
        }
    }

    #[test]
    fn rounding_integral_matches_numeric() {
        let s = 0.37;
        for x in [0.0, 0.1, 0.185, 0.5, 1.234, 7.77] {
            let steps = 200_000;
            let h = x / steps as f64;
            let num: f64 = (0..steps)
                .map(|k| {
                    let t = (k as f64 + 0.5) * h;
                    let e = t - (t / s).round() * s;
                    e * e * h
                })
                .sum();
            let exact = rounding_integral(x, s);
            assert!((num - exact).abs() < 1e-9, "x={x}: {num} vs {exact}");
        }
    }

    #[test]
    fn names_checked() {
        let mut c = Calibrator::new(2048).unwrap();
        assert!(c.observe("", &[1.0]).is_err());
        assert!(c.observe("a\nb", &[1.0]).is_err());
        assert!(c
            .observe("(Unnamed Layer* 4) [Conv]_output:0", &[1.0])
            .is_ok());
        assert!(Calibrator::new(64).is_err());
        assert!(c.compute(Method::Percentile(0.0)).is_err());
        assert!(c.compute_tensor("nope", Method::Max).is_err());
    }
}
