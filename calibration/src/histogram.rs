//! Streaming, fixed-size histogram of |x| whose range grows by doubling.
//!
//! The histogram covers `[0, range)` with a fixed number of equal-width bins (values equal to
//! `range` land in the last bin). The first batch with a non-zero finite value sets `range` to
//! that batch's abs-max; until then the range is 0 and every (zero) value is counted in bin 0.
//! When a later batch holds a larger |x|, the range is doubled as often as needed and adjacent
//! bin pairs are merged each time, so memory is independent of how much data was seen and the
//! resolution is at worst half of what a histogram sized to the final abs-max would have.
//! Non-finite values are skipped (the caller counts them; see [`crate::TensorStats`]).
//!
//! Counts are `f64`: merging two histograms with unrelated ranges spreads each source bin over
//! the destination bins it overlaps, proportionally, which yields fractional counts. Counts
//! stay exact integers up to 2^53 samples per bin when no such merge happens.

use crate::error::{CalibError, Result};

/// Default number of bins (TensorRT's entropy calibration uses 2048).
pub const DEFAULT_BINS: usize = 2048;
/// Smallest bin count accepted: the entropy search starts at 128 bins.
pub const MIN_BINS: usize = 128;
/// Largest bin count accepted (keeps the O(bins²) searches bounded).
pub const MAX_BINS: usize = 1 << 16;

/// Histogram of absolute values over `[0, range)`; see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    counts: Vec<f64>,
    range: f64,
    abs_max: f64,
    total: f64,
}

impl Histogram {
    /// An empty histogram with `bins` bins (`MIN_BINS..=MAX_BINS`).
    pub fn new(bins: usize) -> Result<Histogram> {
        if !(MIN_BINS..=MAX_BINS).contains(&bins) {
            return Err(CalibError::Config(format!(
                "histogram bin count {bins} out of range {MIN_BINS}..={MAX_BINS}"
            )));
        }
        Ok(Histogram {
            counts: vec![0.0; bins],
            range: 0.0,
            abs_max: 0.0,
            total: 0.0,
        })
    }

    /// An empty histogram whose range starts at `range` instead of the first batch's abs-max
    /// (for two-pass calibration: a first pass learns the abs-max, the second fills
    /// histograms at full resolution). Larger values still grow it by doubling.
    pub fn with_range(bins: usize, range: f64) -> Result<Histogram> {
        if !(range.is_finite() && range > 0.0) {
            return Err(CalibError::Config(format!(
                "histogram range must be positive and finite, got {range}"
            )));
        }
        let mut h = Histogram::new(bins)?;
        h.range = range;
        Ok(h)
    }

    /// Adds the finite values of `data` (as |x|); NaN and ±Inf are skipped.
    pub fn add(&mut self, data: &[f32]) {
        let batch_max = data
            .iter()
            .filter(|x| x.is_finite())
            .fold(0.0f64, |m, &x| m.max(f64::from(x.abs())));
        if batch_max > self.range {
            if self.range == 0.0 {
                // Zeros seen so far sit in bin 0, which stays bin 0 for any range.
                self.range = batch_max;
            } else {
                let mut doublings = 0u32;
                let mut range = self.range;
                while range < batch_max {
                    range *= 2.0;
                    doublings += 1;
                }
                self.grow(doublings);
                self.range = range;
            }
        }
        self.abs_max = self.abs_max.max(batch_max);
        let n = self.counts.len();
        if self.range == 0.0 {
            let zeros = data.iter().filter(|x| x.is_finite()).count();
            self.counts[0] += zeros as f64;
            self.total += zeros as f64;
            return;
        }
        let per_unit = n as f64 / self.range;
        let mut added = 0usize;
        for &x in data {
            if x.is_finite() {
                let idx = ((f64::from(x.abs()) * per_unit) as usize).min(n - 1);
                self.counts[idx] += 1.0;
                added += 1;
            }
        }
        self.total += added as f64;
    }

    /// Merges groups of `2^doublings` adjacent bins (the range is updated by the caller).
    fn grow(&mut self, doublings: u32) {
        let n = self.counts.len();
        let group = if doublings >= usize::BITS - 1 {
            usize::MAX
        } else {
            1usize << doublings
        };
        if group >= n {
            let total: f64 = self.counts.iter().sum();
            self.counts.iter_mut().for_each(|c| *c = 0.0);
            self.counts[0] = total;
            return;
        }
        // In place: bin j reads bins [j*group, (j+1)*group), all at indices >= j.
        for j in 0..n {
            let lo = j * group;
            let sum = if lo < n {
                self.counts[lo..(lo + group).min(n)].iter().sum()
            } else {
                0.0
            };
            self.counts[j] = sum;
        }
    }

    /// Merges another histogram with the same number of bins into this one.
    ///
    /// The result uses the grid of whichever histogram has the larger range; the other one's
    /// bins are spread over the bins they overlap in proportion to the overlap.
    pub fn merge(&mut self, other: &Histogram) -> Result<()> {
        if other.counts.len() != self.counts.len() {
            return Err(CalibError::Config(format!(
                "cannot merge histograms with {} and {} bins",
                self.counts.len(),
                other.counts.len()
            )));
        }
        if other.range == 0.0 {
            self.counts[0] += other.counts[0];
        } else if self.range == 0.0 {
            let zeros = self.counts[0];
            self.counts.clone_from(&other.counts);
            self.counts[0] += zeros;
            self.range = other.range;
            self.total = zeros;
        } else if other.range <= self.range {
            self.spread_from(other);
        } else {
            let mine = std::mem::replace(self, other.clone());
            self.spread_from(&mine);
            self.abs_max = self.abs_max.max(mine.abs_max);
            self.total += mine.total;
            return Ok(());
        }
        self.abs_max = self.abs_max.max(other.abs_max);
        self.total += other.total;
        Ok(())
    }

    /// Adds `src` (range <= self.range) onto this grid, splitting bins proportionally.
    fn spread_from(&mut self, src: &Histogram) {
        let n = self.counts.len();
        if src.range == self.range {
            for (d, s) in self.counts.iter_mut().zip(&src.counts) {
                *d += s;
            }
            return;
        }
        let ws = src.bin_width();
        let wd = self.bin_width();
        for (i, &c) in src.counts.iter().enumerate() {
            if c == 0.0 {
                continue;
            }
            let lo = i as f64 * ws;
            let hi = lo + ws;
            let mut j = ((lo / wd) as usize).min(n - 1);
            loop {
                let dlo = j as f64 * wd;
                let dhi = if j == n - 1 { f64::INFINITY } else { dlo + wd };
                let overlap = hi.min(dhi) - lo.max(dlo);
                if overlap > 0.0 {
                    self.counts[j] += c * overlap / ws;
                }
                if dhi >= hi || j == n - 1 {
                    break;
                }
                j += 1;
            }
        }
    }

    /// Per-bin counts, bin `i` covering `[edges[i], edges[i+1])`.
    pub fn bins(&self) -> &[f64] {
        &self.counts
    }

    /// The `bins + 1` bin edges (all zero while the range is still 0).
    pub fn edges(&self) -> Vec<f64> {
        let w = self.bin_width();
        (0..=self.counts.len()).map(|i| i as f64 * w).collect()
    }

    /// Number of bins.
    pub fn num_bins(&self) -> usize {
        self.counts.len()
    }

    /// Upper end of the covered range (0 while only zeros were seen).
    pub fn range(&self) -> f64 {
        self.range
    }

    /// Width of one bin.
    pub fn bin_width(&self) -> f64 {
        self.range / self.counts.len() as f64
    }

    /// Exact largest |x| added.
    pub fn abs_max(&self) -> f64 {
        self.abs_max
    }

    /// Number of values counted.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Number of bins with a non-zero count.
    pub fn occupied_bins(&self) -> usize {
        self.counts.iter().filter(|&&c| c > 0.0).count()
    }

    /// Heap and inline bytes held by this histogram (independent of the data volume).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.counts.capacity() * std::mem::size_of::<f64>()
    }

    /// The |x| below which `p` percent of the counted values lie, interpolated linearly within
    /// the bin where the cumulative count crosses, capped at the exact abs-max.
    /// `None` when the histogram is empty or `p` is not in `(0, 100]`.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.total <= 0.0 || !(p > 0.0 && p <= 100.0) {
            return None;
        }
        if self.range == 0.0 {
            return Some(0.0);
        }
        let target = p / 100.0 * self.total;
        let w = self.bin_width();
        let mut cum = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0.0 && cum + c >= target {
                let frac = ((target - cum) / c).clamp(0.0, 1.0);
                return Some(((i as f64 + frac) * w).min(self.abs_max));
            }
            cum += c;
        }
        Some(self.abs_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_count_validated() {
        assert!(Histogram::new(0).is_err());
        assert!(Histogram::new(127).is_err());
        assert!(Histogram::new(MAX_BINS + 1).is_err());
        assert!(Histogram::new(DEFAULT_BINS).is_ok());
    }

    #[test]
    fn preset_range() {
        assert!(Histogram::with_range(128, 0.0).is_err());
        assert!(Histogram::with_range(128, f64::NAN).is_err());
        let mut h = Histogram::with_range(128, 4.0).unwrap();
        h.add(&[1.0]);
        assert_eq!((h.range(), h.bins()[32]), (4.0, 1.0));
        h.add(&[5.0]);
        assert_eq!((h.range(), h.bins()[16], h.bins()[80]), (8.0, 1.0, 1.0));
    }

    #[test]
    fn zeros_then_values() {
        let mut h = Histogram::new(128).unwrap();
        h.add(&[0.0, -0.0, 0.0]);
        assert_eq!(h.range(), 0.0);
        assert_eq!(h.total(), 3.0);
        h.add(&[1.0, -2.0, f32::NAN]);
        assert_eq!(h.range(), 2.0);
        assert_eq!(h.total(), 5.0);
        assert_eq!(h.bins()[0], 3.0);
        assert_eq!(h.bins()[64], 1.0);
        assert_eq!(h.bins()[127], 1.0);
        assert_eq!(h.edges().len(), 129);
        assert_eq!(h.edges()[128], 2.0);
    }

    #[test]
    fn growth_merges_pairs() {
        let mut h = Histogram::new(128).unwrap();
        h.add(&[1.0]); // range 1, value in last bin
        h.add(&[0.5, 0.26]); // bins 64 and 33
        h.add(&[3.0]); // range 1 -> 2 -> 4: groups of 4
        assert_eq!(h.range(), 4.0);
        assert_eq!(h.bins()[31], 1.0); // 1.0 was bin 127 -> 31
        assert_eq!(h.bins()[16], 1.0); // 0.5 was bin 64 -> 16
        assert_eq!(h.bins()[8], 1.0); // 0.26 was bin 33 -> 8
        assert_eq!(h.bins()[96], 1.0); // 3.0
        assert_eq!(h.total(), 4.0);
        h.add(&[1.0e30]);
        assert_eq!(h.bins()[0], 4.0);
        assert_eq!(h.total(), 5.0);
        assert_eq!(h.abs_max(), 1.0e30f32 as f64);
    }

    #[test]
    fn merge_various_ranges() {
        let data: Vec<f32> = (0..10_000).map(|i| (i as f32) * 0.001 - 5.0).collect();
        let mut whole = Histogram::new(256).unwrap();
        whole.add(&data);
        let (a, b) = data.split_at(3_000);
        let mut ha = Histogram::new(256).unwrap();
        ha.add(a);
        let mut hb = Histogram::new(256).unwrap();
        hb.add(b);
        let mut zeros = Histogram::new(256).unwrap();
        zeros.add(&[0.0; 10]);
        let mut m = zeros.clone();
        m.merge(&hb).unwrap();
        m.merge(&ha).unwrap();
        assert_eq!(m.total(), 10_010.0);
        assert_eq!(m.abs_max(), whole.abs_max());
        let w = m.bin_width().max(whole.bin_width());
        for p in [50.0, 90.0, 99.0, 100.0] {
            let (x, y) = (m.percentile(p).unwrap(), whole.percentile(p).unwrap());
            assert!((x - y).abs() <= w, "p{p}: {x} vs {y}");
        }
        assert!(m.merge(&Histogram::new(128).unwrap()).is_err());
    }

    #[test]
    fn percentile_interpolates() {
        let mut h = Histogram::new(128).unwrap();
        let data: Vec<f32> = (1..=1280).map(|i| i as f32 / 1280.0).collect();
        h.add(&data);
        let p50 = h.percentile(50.0).unwrap();
        assert!((p50 - 0.5).abs() < 1.0 / 128.0, "{p50}");
        assert_eq!(h.percentile(100.0).unwrap(), 1.0);
        assert!(h.percentile(0.0).is_none());
        assert!(h.percentile(f64::NAN).is_none());
        assert!(Histogram::new(128).unwrap().percentile(50.0).is_none());
    }
}
