//! The budgeted search: predict each set of groups' degradation and size from the
//! per-group measurements, then measure the best predicted sets until one verifies.

use std::collections::BTreeMap;

use super::modes::{candidates_modes, ModeOption};
use super::{
    degradation, group_parameters, AutoquantReport, Evaluate, MetricInfo, Progress, Result, Row,
    Study, Tried, EXHAUSTIVE_MAX, MAX_VERIFY,
};
use crate::policy::QuantMode;
use crate::ExportError;

/// A candidate to measure: each group with its mode, predicted degradation and cost.
type Planned = (Vec<(String, QuantMode)>, f64, f64);

/// A candidate set: group indices, predicted degradation and cost (the objective).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub groups: Vec<usize>,
    pub degradation: f64,
    pub cost: f64,
}

/// What autoquant makes smallest within the metric budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Objective {
    /// The deployable size in bytes.
    Size,
    /// A latency the evaluator measures for every variant into its row's `extra[key]`
    /// (milliseconds, e.g. `p50_ms` on the engine the model will be deployed on).
    Latency { key: String },
}

impl Objective {
    /// The cost of a measured row.
    pub fn cost(&self, r: &Row) -> Result<f64> {
        match self {
            Objective::Size => Ok(r.deployable_bytes as f64),
            Objective::Latency { key } => r.extra.get(key).copied().ok_or_else(|| {
                ExportError::Policy(format!(
                    "the latency objective needs '{key}' in every measurement; '{}' has none (the evaluator does not time models)",
                    r.label
                ))
            }),
        }
    }

    /// A cost as shown in reports (MiB or ms) and its unit.
    pub fn shown(&self, cost: f64) -> (f64, &'static str) {
        match self {
            Objective::Size => (cost / (1024.0 * 1024.0), "MiB"),
            Objective::Latency { .. } => (cost, "ms"),
        }
    }

    /// `deployable size` or `latency (p50_ms)`.
    pub fn describe(&self) -> String {
        match self {
            Objective::Size => "deployable size".into(),
            Objective::Latency { key } => format!("latency ({key})"),
        }
    }
}

/// Candidate sets within `budget` by the additive prediction, best (cheapest) first.
///
/// `deg[i]` is group i's measured degradation alone (negative counts as 0), `saving[i]` the
/// cost (bytes, milliseconds) quantizing it alone saves, `base` the fp32 cost. Exhaustive when
/// `deg.len() <=` [`EXHAUSTIVE_MAX`], else greedy by degradation per saved unit (each prefix
/// of that order that fits, longest first).
pub fn candidates(
    deg: &[f64],
    saving: &[f64],
    base: f64,
    budget: f64,
) -> (Vec<Candidate>, &'static str) {
    let n = deg.len();
    let d = |i: usize| deg[i].max(0.0);
    let mut out = Vec::new();
    let search = if n <= EXHAUSTIVE_MAX {
        for mask in 1u32..(1u32 << n) {
            let groups: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
            let dd: f64 = groups.iter().map(|&i| d(i)).sum();
            if dd <= budget + 1e-12 {
                let saved: f64 = groups.iter().map(|&i| saving[i]).sum();
                out.push(Candidate {
                    groups,
                    degradation: dd,
                    cost: base - saved,
                });
            }
        }
        "exhaustive"
    } else {
        let mut order: Vec<usize> = (0..n).filter(|&i| saving[i] > 0.0).collect();
        order.sort_by(|&a, &b| {
            let ra = d(a) / saving[a];
            let rb = d(b) / saving[b];
            ra.total_cmp(&rb).then(a.cmp(&b))
        });
        let mut acc = 0.0;
        let mut prefix = Vec::new();
        for &i in &order {
            if acc + d(i) > budget + 1e-12 {
                continue;
            }
            acc += d(i);
            prefix.push(i);
            let mut groups = prefix.clone();
            groups.sort_unstable();
            let saved: f64 = groups.iter().map(|&j| saving[j]).sum();
            out.push(Candidate {
                groups,
                degradation: acc,
                cost: base - saved,
            });
        }
        "greedy"
    };
    out.sort_by(|a, b| {
        a.cost
            .total_cmp(&b.cost)
            .then(a.degradation.total_cmp(&b.degradation))
            .then(a.groups.cmp(&b.groups))
    });
    (out, search)
}

/// The metric budget autoquant keeps to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// The metric may get worse by at most this much, in its unit (EER: percentage points).
    MaxIncrease(f64),
    /// Output SQNR must stay at or above this many dB (SNR metrics only).
    MinSnrDb(f64),
}

impl Budget {
    /// The budget in [`degradation`] units for this metric and fp32 value, and its text.
    pub fn resolve(self, metric: &MetricInfo, fp32: f64) -> Result<(f64, String)> {
        match self {
            Budget::MaxIncrease(x) if x.is_finite() && x >= 0.0 => {
                if metric.noise_db {
                    return Err(ExportError::Policy(format!(
                        "{} is an SNR: give the budget as a minimum in dB (--min-sqnr), not an increase",
                        metric.name
                    )));
                }
                Ok((
                    x,
                    format!("{} worse by at most {x} {}", metric.name, metric.unit),
                ))
            }
            Budget::MinSnrDb(db) if db.is_finite() => {
                if !metric.noise_db {
                    return Err(ExportError::Policy(format!(
                        "a minimum SNR budget needs an SNR metric; {} is not one (use --max-increase)",
                        metric.name
                    )));
                }
                Ok((
                    degradation(metric, db, fp32).max(0.0),
                    format!("{} >= {db} {}", metric.name, metric.unit),
                ))
            }
            Budget::MaxIncrease(x) => Err(ExportError::Policy(format!(
                "invalid budget: the metric increase must be a finite number >= 0, got {x}"
            ))),
            Budget::MinSnrDb(db) => Err(ExportError::Policy(format!(
                "invalid budget: the minimum SNR must be a finite number of dB, got {db}"
            ))),
        }
    }
}

/// Chooses the cheapest verified set of groups within `budget` (metric units, "worse"
/// direction): the smallest deployable model, or the fastest one as measured
/// ([`Objective::Latency`]).
pub fn autoquant(
    study: &Study,
    eval: &mut dyn Evaluate,
    budget: Budget,
    objective: &Objective,
    progress: &mut dyn FnMut(Progress),
) -> Result<AutoquantReport> {
    let sens = study.sensitivity(eval, progress)?;
    let metric = sens.metric.clone();
    let base = sens.fp32.metric;
    let (budget, budget_text) = budget.resolve(&metric, base)?;
    let params = group_parameters(study.model, study.groups);
    let names: Vec<String> = study.groups.groups.iter().map(|g| g.name.clone()).collect();
    let mode_of = |r: &Row, g: &str| {
        r.modes
            .get(g)
            .and_then(|m| m.parse::<QuantMode>().ok())
            .unwrap_or(study.policy.mode)
    };
    let worse = |r: &Row| degradation(&metric, r.metric, base);
    let cost = |r: &Row| objective.cost(r);
    let base_cost = cost(&sens.fp32)?;
    let mut tried = Vec::new();
    let all_names = names.clone();
    let finish = |chosen_row: Row, tried: Vec<Tried>, search: &str, verdict: String| {
        let chosen = chosen_row.quantized_groups.clone();
        let chosen_modes = chosen_row.modes.clone();
        let kept_float = all_names
            .iter()
            .filter(|g| !chosen.contains(g))
            .cloned()
            .collect();
        AutoquantReport {
            budget,
            budget_text: budget_text.clone(),
            objective: objective.describe(),
            search: search.to_string(),
            chosen,
            chosen_modes,
            kept_float,
            chosen_row,
            tried,
            sensitivity: sens.clone(),
            verdict,
        }
    };
    // The best verified set so far: all-int8 or a single group measured within budget.
    let mut best: Option<(Row, f64)> = None;
    let all_ok = worse(&sens.all_int8) <= budget;
    if all_ok {
        if *objective == Objective::Size {
            let v = format!(
                "all groups quantized: all-int8 measures {:.4} {} ({budget_text})",
                sens.all_int8.metric, metric.unit
            );
            return Ok(finish(sens.all_int8.clone(), tried, "none needed", v));
        }
        best = Some((sens.all_int8.clone(), cost(&sens.all_int8)?));
    }
    // Only groups whose quantization lowers the cost are worth a place in a set. Sizes add up;
    // latencies do not (one group alone pays the float/int8 boundaries that a larger set shares),
    // so a group's latency saving is also credited with its share of the all-int8 saving, by
    // quantized nodes, and the larger of the two counts.
    let all_saving = base_cost - cost(&sens.all_int8)?;
    let all_nodes = sens.all_int8.quantized_nodes.max(1) as f64;
    let mut opts = Vec::new();
    for r in &sens.groups {
        let mut save = base_cost - cost(r)?;
        if matches!(objective, Objective::Latency { .. }) && all_saving > 0.0 {
            save = save.max(all_saving * r.quantized_nodes as f64 / all_nodes);
        }
        let Some(g) = r.quantized_groups.first() else {
            continue;
        };
        let Some(group) = names.iter().position(|n| n == g) else {
            continue;
        };
        opts.push(ModeOption {
            group,
            mode: mode_of(r, g),
            degradation: worse(r),
            saving: save,
        });
    }
    // one option per group (one mode): the plain subset search; else one mode per group
    let several = study.modes().len() > 1;
    let (cands, search): (Vec<Planned>, &str) = if several {
        let (c, how) = candidates_modes(&opts, base_cost, budget);
        let c = c
            .into_iter()
            .map(|c| {
                let gs = c
                    .options
                    .iter()
                    .map(|&i| (names[opts[i].group].clone(), opts[i].mode))
                    .collect();
                (gs, c.degradation, c.cost)
            })
            .collect();
        (c, how)
    } else {
        let useful: Vec<usize> = (0..opts.len()).filter(|&i| opts[i].saving > 0.0).collect();
        let deg: Vec<f64> = useful.iter().map(|&i| opts[i].degradation).collect();
        let saving: Vec<f64> = useful.iter().map(|&i| opts[i].saving).collect();
        let (c, how) = candidates(&deg, &saving, base_cost, budget);
        let c = c
            .into_iter()
            .map(|c| {
                let gs = c
                    .groups
                    .iter()
                    .map(|&k| {
                        let o = &opts[useful[k]];
                        (names[o.group].clone(), o.mode)
                    })
                    .collect();
                (gs, c.degradation, c.cost)
            })
            .collect();
        (c, how)
    };
    for r in &sens.groups {
        let c = cost(r)?;
        if worse(r) <= budget && c < base_cost && best.as_ref().is_none_or(|b| c < b.1) {
            best = Some((r.clone(), c));
        }
    }
    let mut measured = 0;
    for (gs, pred_deg, pred_cost) in &cands {
        if measured >= MAX_VERIFY {
            break;
        }
        if let Some(b) = &best {
            if *pred_cost >= b.1 {
                break; // nothing predicted cheaper than what is already verified
            }
        }
        let same_as_all = gs.len() == names.len()
            && gs.iter().all(|(g, m)| {
                sens.all_int8.quantized_groups.contains(g) && *m == mode_of(&sens.all_int8, g)
            });
        if gs.len() == 1 || (all_ok && same_as_all) {
            continue; // measured in the sensitivity pass
        }
        let label = format!(
            "set {}",
            gs.iter()
                .map(|(g, m)| if several {
                    format!("{g}[{m}]")
                } else {
                    g.clone()
                })
                .collect::<Vec<_>>()
                .join("+")
        );
        let r = study.measure_modes(eval, &label, Some(gs), Some(base), (&params.0, params.1))?;
        progress(Progress::Done {
            label: &label,
            cached: r.cached,
        });
        measured += 1;
        let w = worse(&r);
        let rc = cost(&r)?;
        tried.push(Tried {
            groups: gs.iter().map(|(g, _)| g.clone()).collect(),
            modes: if several {
                gs.iter()
                    .map(|(g, m)| (g.clone(), m.name().to_string()))
                    .collect()
            } else {
                BTreeMap::new()
            },
            predicted_degradation: *pred_deg,
            predicted_cost: *pred_cost,
            measured_degradation: w,
            cost: rc,
            deployable_bytes: r.deployable_bytes,
            within_budget: w <= budget,
        });
        if w <= budget && best.as_ref().is_none_or(|b| rc < b.1) {
            best = Some((r, rc));
            if *objective == Objective::Size {
                break;
            }
        }
    }
    Ok(match best {
        Some((r, c)) => {
            let (v_cost, unit) = objective.shown(c);
            let v = format!(
                "cheapest set verified within the budget ({budget_text}) by {}: {v_cost:.2} {unit}, measures {:.4} {}, {} of {} groups quantized ({} search, {} set(s) measured beyond single groups)",
                objective.describe(),
                r.metric,
                metric.unit,
                r.quantized_groups.len(),
                names.len(),
                search,
                tried.len()
            );
            finish(r, tried, search, v)
        }
        None => {
            let v = format!(
                "no group can be quantized within the budget ({budget_text}) at a lower {}: every group alone is worse (see the sensitivity table); the model stays fp32",
                objective.describe()
            );
            finish(sens.fp32.clone(), tried, search, v)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustive_prefers_smallest_within_budget() {
        // three groups: a is insensitive and big, b sensitive, c cheap
        let deg = [0.02, 0.5, 0.05];
        let saving = [100.0, 80.0, 10.0];
        let (c, how) = candidates(&deg, &saving, 1000.0, 0.1);
        assert_eq!(how, "exhaustive");
        assert_eq!(c[0].groups, vec![0, 2]);
        assert_eq!(c[0].cost, 890.0);
        assert!(c.iter().all(|x| x.degradation <= 0.1 + 1e-12));
        assert!(!c.iter().any(|x| x.groups.contains(&1)));
    }

    #[test]
    fn negative_degradation_counts_as_zero() {
        let (c, _) = candidates(&[-0.3, 0.2], &[10.0, 10.0], 100.0, 0.1);
        assert_eq!(c[0].groups, vec![0]);
        assert_eq!(c[0].degradation, 0.0);
    }

    #[test]
    fn greedy_above_the_exhaustive_limit() {
        let n = EXHAUSTIVE_MAX + 2;
        let deg: Vec<f64> = (0..n).map(|i| 0.01 * i as f64).collect();
        let saving = vec![10.0; n];
        let (c, how) = candidates(&deg, &saving, 1000.0, 0.1);
        assert_eq!(how, "greedy");
        // 0+1+2+3+4 = 0.10 fits, the next does not
        assert_eq!(c[0].groups, vec![0, 1, 2, 3, 4]);
        assert_eq!(c[0].cost, 950.0);
    }

    #[test]
    fn degradation_direction() {
        let lower = MetricInfo {
            name: "eer".into(),
            unit: "%".into(),
            lower_is_better: true,
            noise_db: false,
        };
        let higher = MetricInfo {
            name: "acc".into(),
            unit: "%".into(),
            lower_is_better: false,
            noise_db: false,
        };
        let snr = MetricInfo {
            name: "sqnr".into(),
            unit: "dB".into(),
            lower_is_better: false,
            noise_db: true,
        };
        assert_eq!(degradation(&lower, 1.2, 1.0), 1.2 - 1.0);
        assert_eq!(degradation(&higher, 30.0, 40.0), 10.0);
        // two groups at 30 dB each add up to 26.99 dB: within 26.9 dB, a third is not
        let d = degradation(&snr, 30.0, 200.0);
        assert!((d - 1e-3).abs() < 1e-12);
        let (b, _) = Budget::MinSnrDb(26.9).resolve(&snr, 200.0).unwrap();
        assert!(2.0 * d <= b && 2.1 * d > b);
        assert!(Budget::MaxIncrease(0.1).resolve(&snr, 200.0).is_err());
        assert!(Budget::MinSnrDb(30.0).resolve(&lower, 1.0).is_err());
    }
}
