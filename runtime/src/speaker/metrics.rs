//! Verification metrics over scored trials: EER, normalised minDCF and DET-curve points.
//!
//! Conventions: a trial is accepted when `score >= threshold`. EER is found by sweeping the
//! threshold over the sorted scores and interpolating linearly where the miss and false-alarm
//! rates cross. minDCF follows the NIST SRE convention: `C_miss * P_miss * P_target +
//! C_fa * P_fa * (1 - P_target)`, minimised over thresholds and divided by
//! `min(C_miss * P_target, C_fa * (1 - P_target))`.

use serde::Serialize;

use crate::error::{Result, RuntimeError};

/// Parameters of the detection cost function.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DcfParams {
    pub p_target: f64,
    pub c_miss: f64,
    pub c_fa: f64,
}

impl Default for DcfParams {
    fn default() -> Self {
        DcfParams {
            p_target: 0.01,
            c_miss: 1.0,
            c_fa: 1.0,
        }
    }
}

/// One operating point of the detector.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub p_miss: f64,
    pub p_fa: f64,
}

/// Summary of a scored trial list.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub targets: usize,
    pub nontargets: usize,
    /// Equal error rate as a fraction (0.01 = 1%).
    pub eer: f64,
    /// Threshold at the EER crossing.
    pub eer_threshold: f64,
    pub min_dcf: f64,
    pub min_dcf_threshold: f64,
    pub dcf: DcfParams,
}

/// Operating points at every distinct threshold, from "accept all" to "reject all".
///
/// The first point has `p_miss = 0, p_fa = 1`, the last `p_miss = 1, p_fa = 0`.
pub fn operating_points(target: &[f64], nontarget: &[f64]) -> Result<Vec<OperatingPoint>> {
    if target.is_empty() || nontarget.is_empty() {
        return Err(RuntimeError::Scoring(format!(
            "need both target and non-target trials (got {} target, {} non-target)",
            target.len(),
            nontarget.len()
        )));
    }
    if target.iter().chain(nontarget).any(|s| !s.is_finite()) {
        return Err(RuntimeError::Scoring(
            "a trial score is NaN or infinite".into(),
        ));
    }
    // (score, is_target), ascending by score.
    let mut all: Vec<(f64, bool)> = target
        .iter()
        .map(|&s| (s, true))
        .chain(nontarget.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let nt = target.len() as f64;
    let nn = nontarget.len() as f64;
    let mut pts = Vec::with_capacity(all.len() + 1);
    // Threshold at the lowest score: everything accepted.
    let mut misses = 0usize; // targets below the threshold
    let mut rejected_non = 0usize; // non-targets below the threshold
    pts.push(OperatingPoint {
        threshold: all[0].0,
        p_miss: 0.0,
        p_fa: 1.0,
    });
    let mut i = 0;
    while i < all.len() {
        let s = all[i].0;
        // Move every trial with this score below the next threshold.
        while i < all.len() && all[i].0 == s {
            if all[i].1 {
                misses += 1;
            } else {
                rejected_non += 1;
            }
            i += 1;
        }
        let next = if i < all.len() {
            all[i].0
        } else {
            f64::INFINITY
        };
        pts.push(OperatingPoint {
            threshold: next,
            p_miss: misses as f64 / nt,
            p_fa: (nn - rejected_non as f64) / nn,
        });
    }
    Ok(pts)
}

/// EER with linear interpolation where `p_miss - p_fa` changes sign; returns (eer, threshold).
fn eer_from_points(pts: &[OperatingPoint]) -> (f64, f64) {
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let da = a.p_miss - a.p_fa; // <= 0 at the start, >= 0 at the end
        let db = b.p_miss - b.p_fa;
        if da <= 0.0 && db >= 0.0 {
            if db == da {
                return ((a.p_miss + a.p_fa) / 2.0, a.threshold);
            }
            // Interpolate along the segment a->b to where p_miss == p_fa.
            let t = -da / (db - da);
            let eer = a.p_miss + t * (b.p_miss - a.p_miss);
            let thr = if b.threshold.is_finite() {
                a.threshold + t * (b.threshold - a.threshold)
            } else {
                a.threshold
            };
            return (eer, thr);
        }
    }
    // Unreachable for well-formed points (first da = -1, last db = +1).
    (0.5, pts[0].threshold)
}

/// EER and minDCF of target and non-target scores.
pub fn compute(target: &[f64], nontarget: &[f64], dcf: DcfParams) -> Result<Metrics> {
    if !(dcf.p_target > 0.0 && dcf.p_target < 1.0) || dcf.c_miss <= 0.0 || dcf.c_fa <= 0.0 {
        return Err(RuntimeError::Scoring(format!(
            "invalid DCF parameters P_target {}, C_miss {}, C_fa {}: need 0 < P_target < 1 and positive costs",
            dcf.p_target, dcf.c_miss, dcf.c_fa
        )));
    }
    let pts = operating_points(target, nontarget)?;
    let (eer, eer_threshold) = eer_from_points(&pts);
    let norm = (dcf.c_miss * dcf.p_target).min(dcf.c_fa * (1.0 - dcf.p_target));
    let mut best = (f64::INFINITY, pts[0].threshold);
    for p in &pts {
        let c = dcf.c_miss * p.p_miss * dcf.p_target + dcf.c_fa * p.p_fa * (1.0 - dcf.p_target);
        if c < best.0 {
            best = (c, p.threshold);
        }
    }
    Ok(Metrics {
        targets: target.len(),
        nontargets: nontarget.len(),
        eer,
        eer_threshold,
        min_dcf: best.0 / norm,
        min_dcf_threshold: best.1,
        dcf,
    })
}

/// Inverse of the standard normal CDF (probit), used for DET axes.
///
/// Acklam's rational approximation refined by one Halley step; |error| < 1e-12 on (0, 1).
pub fn probit(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let plow = 0.02425;
    let x = if p < plow {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - plow {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Halley refinement step using erfc.
    let e = 0.5 * erfc(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// Complementary error function (W. J. Cody's rational approximations via erfc = 1 - erf),
/// accurate to ~1e-15 relative; used only to refine [`probit`].
fn erfc(x: f64) -> f64 {
    // Numerical Recipes' erfc with Chebyshev fit (fractional error < 1.2e-7), then good
    // enough for one Halley step to converge probit to ~1e-9.
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_separation_has_zero_eer() {
        let m = compute(&[0.9, 0.8, 0.7], &[0.1, 0.2, 0.3], DcfParams::default()).unwrap();
        assert_eq!(m.eer, 0.0);
        assert_eq!(m.min_dcf, 0.0);
        assert!(m.eer_threshold > 0.3 && m.eer_threshold <= 0.7);
    }

    #[test]
    fn reversed_scores_have_full_eer() {
        let m = compute(&[0.1, 0.2], &[0.8, 0.9], DcfParams::default()).unwrap();
        assert!((m.eer - 1.0).abs() < 1e-12, "{}", m.eer);
    }

    #[test]
    fn interleaved_scores_give_known_eer() {
        // Targets 10..19, non-targets 7.5..16.5: at threshold 13.5 four targets are missed
        // (10..13) and four non-targets accepted (13.5..16.5), so EER = 0.4 exactly.
        let t: Vec<f64> = (0..10).map(|i| 10.0 + i as f64).collect();
        let n: Vec<f64> = (0..10).map(|i| 7.5 + i as f64).collect();
        let m = compute(&t, &n, DcfParams::default()).unwrap();
        assert!((m.eer - 0.4).abs() < 1e-12, "eer {}", m.eer);
        assert!((m.eer_threshold - 13.5).abs() < 1e-12);
    }

    #[test]
    fn eer_is_interpolated_between_operating_points() {
        // (P_miss, P_fa) goes (1/3, 1/2) at 0.5 -> (2/3, 1/2) at 0.6: they cross half way.
        let m = compute(&[0.3, 0.5, 0.7], &[0.4, 0.6], DcfParams::default()).unwrap();
        assert!((m.eer - 0.5).abs() < 1e-12, "eer {}", m.eer);
        assert!((m.eer_threshold - 0.55).abs() < 1e-12);
    }

    #[test]
    fn min_dcf_is_normalised_and_at_most_one() {
        let t = [0.5, 0.6, 0.2, 0.9];
        let n = [0.1, 0.55, 0.3, 0.05, 0.4];
        let m = compute(&t, &n, DcfParams::default()).unwrap();
        assert!(m.min_dcf <= 1.0 + 1e-12 && m.min_dcf >= 0.0);
        // Rejecting everything costs exactly the normaliser: 1.0.
        let all_reject = compute(&[0.0], &[1.0], DcfParams::default()).unwrap();
        assert!((all_reject.min_dcf - 1.0).abs() < 1e-12);
    }

    #[test]
    fn empty_and_nan_are_errors() {
        assert!(compute(&[], &[0.1], DcfParams::default()).is_err());
        assert!(compute(&[f64::NAN], &[0.1], DcfParams::default()).is_err());
    }

    #[test]
    fn probit_matches_known_quantiles() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.01, -2.326_347_874_040_841),
            (1e-4, -3.719_016_485_455_68),
        ] {
            assert!((probit(p) - z).abs() < 1e-6, "probit({p}) = {}", probit(p));
        }
    }
}
