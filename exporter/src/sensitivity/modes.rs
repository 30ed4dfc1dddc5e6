//! The budgeted search with a mode per group: every group measured alone in several modes
//! (full int8, smooth, weight-only) gives one option per mode; a candidate takes at most one
//! option per group (none: the group stays float).
//!
//! Degradations add up as in [`super::candidates`]; so do savings. Modes of one group that
//! save about the same (within [`TIE_SHARE`] of the group's best saving: full int8, smooth and
//! weight-only all store int8 weights, and differ by a few scale initializers) count as saving
//! the same, and the candidate whose modes are the most preferred wins the tie
//! ([`QuantMode::preference`]: full int8, then smooth, then weight-only).

use crate::policy::QuantMode;

/// Savings within this share of a group's best saving count as equal.
pub const TIE_SHARE: f64 = 0.01;
/// Exhaustive search while the number of assignments (Π (options + 1)) stays at most this.
pub const EXHAUSTIVE_ASSIGNMENTS: usize = 1 << 16;

/// One measured (group, mode): its degradation alone and what it saves.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeOption {
    /// Index of the group.
    pub group: usize,
    pub mode: QuantMode,
    pub degradation: f64,
    pub saving: f64,
}

/// A candidate: option indices (one per quantized group, by group), predicted degradation,
/// cost, and the sum of the modes' preference ranks (lower is preferred).
#[derive(Debug, Clone, PartialEq)]
pub struct ModeCandidate {
    pub options: Vec<usize>,
    pub degradation: f64,
    pub cost: f64,
    pub preference: usize,
}

/// Savings with near-ties of one group snapped to the group's best (see [`TIE_SHARE`]).
fn snapped(opts: &[ModeOption]) -> Vec<f64> {
    opts.iter()
        .map(|o| {
            let best = opts
                .iter()
                .filter(|p| p.group == o.group)
                .map(|p| p.saving)
                .fold(f64::MIN, f64::max);
            if best > 0.0 && o.saving >= best * (1.0 - TIE_SHARE) {
                best
            } else {
                o.saving
            }
        })
        .collect()
}

/// Candidates within `budget`, cheapest first (then most preferred modes, then least
/// degradation). Options with no saving are never used.
pub fn candidates_modes(
    opts: &[ModeOption],
    base: f64,
    budget: f64,
) -> (Vec<ModeCandidate>, &'static str) {
    let save = snapped(opts);
    let d = |i: usize| opts[i].degradation.max(0.0);
    let mut groups: Vec<usize> = opts.iter().map(|o| o.group).collect();
    groups.sort_unstable();
    groups.dedup();
    // useful options of each group
    let per: Vec<Vec<usize>> = groups
        .iter()
        .map(|&g| {
            (0..opts.len())
                .filter(|&i| opts[i].group == g && save[i] > 0.0)
                .collect()
        })
        .collect();
    let make = |chosen: &[usize]| {
        let mut options = chosen.to_vec();
        options.sort_by_key(|&i| opts[i].group);
        ModeCandidate {
            degradation: options.iter().map(|&i| d(i)).sum(),
            cost: base - options.iter().map(|&i| save[i]).sum::<f64>(),
            preference: options.iter().map(|&i| opts[i].mode.preference()).sum(),
            options,
        }
    };
    let assignments = per
        .iter()
        .try_fold(1usize, |acc, o| acc.checked_mul(o.len() + 1));
    let mut out = Vec::new();
    let search = match assignments {
        Some(total) if total <= EXHAUSTIVE_ASSIGNMENTS => {
            for mut code in 1..total {
                let mut chosen = Vec::new();
                for o in &per {
                    let k = code % (o.len() + 1);
                    code /= o.len() + 1;
                    if k > 0 {
                        chosen.push(o[k - 1]);
                    }
                }
                let c = make(&chosen);
                if c.degradation <= budget + 1e-12 {
                    out.push(c);
                }
            }
            "exhaustive"
        }
        _ => {
            // greedy: options by degradation per saved unit; an option replaces its group's
            // current one when it saves more, or as much with a preferred mode
            let mut order: Vec<usize> = per.iter().flatten().copied().collect();
            order.sort_by(|&a, &b| {
                (d(a) / save[a])
                    .total_cmp(&(d(b) / save[b]))
                    .then(opts[a].mode.preference().cmp(&opts[b].mode.preference()))
                    .then(a.cmp(&b))
            });
            let mut current: Vec<Option<usize>> = vec![None; groups.len()];
            let slot = |g: usize| groups.binary_search(&g).unwrap_or(0);
            let mut acc = 0.0;
            for &i in &order {
                let s = slot(opts[i].group);
                let better = match current[s] {
                    None => true,
                    Some(c) => {
                        save[i] > save[c]
                            || (save[i] == save[c]
                                && opts[i].mode.preference() < opts[c].mode.preference())
                    }
                };
                let next = acc - current[s].map_or(0.0, d) + d(i);
                if !better || next > budget + 1e-12 {
                    continue;
                }
                acc = next;
                current[s] = Some(i);
                let chosen: Vec<usize> = current.iter().flatten().copied().collect();
                out.push(make(&chosen));
            }
            "greedy"
        }
    };
    out.sort_by(|a, b| {
        a.cost
            .total_cmp(&b.cost)
            .then(a.preference.cmp(&b.preference))
            .then(a.degradation.total_cmp(&b.degradation))
            .then(a.options.cmp(&b.options))
    });
    (out, search)
}

#[cfg(test)]
mod tests {
    use super::*;
    use QuantMode::{Full, Smooth, WeightOnly};

    fn o(group: usize, mode: QuantMode, degradation: f64, saving: f64) -> ModeOption {
        ModeOption {
            group,
            mode,
            degradation,
            saving,
        }
    }

    /// Three groups in three modes, sizes alike (weight-only a few bytes smaller):
    /// group 0 is fine in full int8; group 1 (the outlier MLP) breaks in full int8, holds in
    /// smooth; group 2 holds only weight-only.
    fn table() -> Vec<ModeOption> {
        vec![
            o(0, Full, 0.05, 100.0),
            o(0, Smooth, 0.05, 100.0),
            o(0, WeightOnly, 0.0, 100.2),
            o(1, Full, 2.0, 300.0),
            o(1, Smooth, 0.1, 300.0),
            o(1, WeightOnly, 0.05, 300.5),
            o(2, Full, 3.0, 50.0),
            o(2, Smooth, 2.5, 50.0),
            o(2, WeightOnly, 0.1, 50.1),
        ]
    }

    fn modes(opts: &[ModeOption], c: &ModeCandidate) -> Vec<(usize, QuantMode)> {
        c.options
            .iter()
            .map(|&i| (opts[i].group, opts[i].mode))
            .collect()
    }

    #[test]
    fn picks_the_preferred_mode_per_group_within_the_budget() {
        let t = table();
        let (c, how) = candidates_modes(&t, 1000.0, 0.3);
        assert_eq!(how, "exhaustive");
        // every group quantized; full where it holds, smooth for the outlier group,
        // weight-only where only that holds
        assert_eq!(modes(&t, &c[0]), [(0, Full), (1, Smooth), (2, WeightOnly)]);
        assert!((c[0].degradation - 0.25).abs() < 1e-12);
        assert!(c.iter().all(|x| x.degradation <= 0.3 + 1e-12));
        // a tighter budget drops to weight-only where it must
        let (c, _) = candidates_modes(&t, 1000.0, 0.16);
        assert_eq!(
            modes(&t, &c[0]),
            [(0, WeightOnly), (1, WeightOnly), (2, WeightOnly)]
        );
        // the cheapest candidate never takes two modes of one group
        for x in &c {
            let mut g: Vec<usize> = x.options.iter().map(|&i| t[i].group).collect();
            g.dedup();
            assert_eq!(g.len(), x.options.len());
        }
    }

    #[test]
    fn a_real_size_difference_beats_preference() {
        // weight-only of group 0 saves clearly more (e.g. full int8 must keep a float part)
        let t = vec![o(0, Full, 0.0, 50.0), o(0, WeightOnly, 0.0, 100.0)];
        let (c, _) = candidates_modes(&t, 1000.0, 0.1);
        assert_eq!(modes(&t, &c[0]), [(0, WeightOnly)]);
        assert_eq!(c[0].cost, 900.0);
    }

    #[test]
    fn greedy_when_the_assignments_are_too_many() {
        // 12 groups × 3 modes: 4^12 assignments
        let mut t = Vec::new();
        for g in 0..12 {
            t.push(o(g, Full, if g % 3 == 0 { 1.0 } else { 0.01 }, 10.0));
            t.push(o(g, Smooth, 0.02, 10.0));
            t.push(o(g, WeightOnly, 0.0, 10.05));
        }
        let (c, how) = candidates_modes(&t, 1000.0, 0.2);
        assert_eq!(how, "greedy");
        let best = modes(&t, &c[0]);
        assert_eq!(best.len(), 12, "every group quantized");
        for (g, m) in best {
            // full where it is cheap in metric, never full on the sensitive groups
            if g % 3 == 0 {
                assert_ne!(m, Full, "group {g}");
            } else {
                assert_eq!(m, Full, "group {g}");
            }
        }
        assert!(c[0].degradation <= 0.2 + 1e-12);
    }
}
