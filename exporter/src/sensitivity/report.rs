//! The reports: one row per measured model, the sensitivity table (fp32, all-int8, each
//! group alone) and autoquant's table (fp32 vs all-int8 vs the chosen set).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{degradation, MetricInfo};

/// One measured model: fp32, all-int8, one group, or a set of groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    /// Groups quantized in this variant (all of them for all-int8, none for fp32).
    pub quantized_groups: Vec<String>,
    /// The mode of each quantized group, when the study measures several modes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modes: BTreeMap<String, String>,
    pub metric: f64,
    /// Metric minus the fp32 metric.
    pub delta: f64,
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
    pub deployable_bytes: u64,
    pub onnx_bytes: u64,
    /// Share of the model's float parameters that belong to the quantized groups.
    pub param_share: f64,
    /// Weighted nodes the plan quantized.
    pub quantized_nodes: usize,
    /// Served from the cache in this run.
    pub cached: bool,
    /// Seconds the evaluation took when it was measured.
    pub seconds: f64,
}

/// `voxq sensitivity`'s result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SensitivityReport {
    pub model: String,
    pub model_sha256: String,
    pub table_sha256: String,
    pub method: String,
    pub target: String,
    pub groups_source: String,
    pub metric: MetricInfo,
    pub fp32: Row,
    pub all_int8: Row,
    pub groups: Vec<Row>,
}

/// `g1, g2`, or `g1 (smooth), g2 (full)` when modes are known.
fn with_modes(groups: &[String], modes: &BTreeMap<String, String>) -> String {
    groups
        .iter()
        .map(|g| match modes.get(g) {
            Some(m) => format!("{g} ({m})"),
            None => g.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn extra_cols(rows: &[&Row]) -> Vec<String> {
    let mut keys = BTreeSet::new();
    for r in rows {
        keys.extend(r.extra.keys().cloned());
    }
    keys.into_iter().collect()
}

fn row_line(r: &Row, extras: &[String], fp32: &Row, first_col: &str) -> String {
    // an SNR against fp32 has no meaningful fp32 value to subtract (it is capped infinity)
    let delta = if r.quantized_groups.is_empty() {
        "–".to_string()
    } else if fp32.metric >= 199.0 {
        "n/a".to_string()
    } else {
        format!("{:+.3}", r.metric - fp32.metric)
    };
    let mut s = format!("| {first_col} | {:.3} | {delta} |", r.metric);
    for k in extras {
        match r.extra.get(k) {
            Some(v) => {
                let _ = write!(s, " {v:.4} |");
            }
            None => s.push_str(" |"),
        }
    }
    let _ = write!(
        s,
        " {:.2} | {:.1}% | {:.2} | {:.1}% | {} |",
        mib(r.deployable_bytes),
        100.0 * (1.0 - r.deployable_bytes as f64 / fp32.deployable_bytes.max(1) as f64),
        mib(r.onnx_bytes),
        100.0 * r.param_share,
        r.quantized_nodes
    );
    s
}

fn header(metric: &MetricInfo, extras: &[String], first: &str) -> String {
    let mut s = format!(
        "| {first} | {} ({}) | Δ vs fp32 |",
        metric.name, metric.unit
    );
    for k in extras {
        let _ = write!(s, " {k} |");
    }
    s.push_str(
        " deployable MiB | smaller | ONNX MiB | params quantized | int8 nodes |\n|---|---:|---:|",
    );
    for _ in extras {
        s.push_str("---:|");
    }
    s.push_str("---:|---:|---:|---:|---:|\n");
    s
}

impl SensitivityReport {
    /// Markdown: one row for fp32, all-int8 and each group quantized alone.
    pub fn markdown(&self) -> String {
        let rows: Vec<&Row> = [&self.fp32, &self.all_int8]
            .into_iter()
            .chain(self.groups.iter())
            .collect();
        let extras = extra_cols(&rows);
        let mut s = format!(
            "Sensitivity of `{}` (sha256 {}…): {} calibration, {} placement, groups {}; metric {} ({}, {} is better).\n\n",
            self.model,
            &self.model_sha256[..12.min(self.model_sha256.len())],
            self.method,
            self.target,
            self.groups_source,
            self.metric.name,
            self.metric.unit,
            if self.metric.lower_is_better { "lower" } else { "higher" }
        );
        s.push_str(&header(&self.metric, &extras, "quantized"));
        for r in rows {
            let name = match r.label.as_str() {
                "fp32" => "none (fp32)".to_string(),
                "all int8" => "all groups (int8)".to_string(),
                _ if !r.modes.is_empty() && r.quantized_groups.len() == 1 => format!(
                    "`{}` only, {}",
                    r.quantized_groups[0],
                    r.modes.values().next().map(String::as_str).unwrap_or("")
                ),
                g => format!("`{g}` only"),
            };
            s.push_str(&row_line(r, &extras, &self.fp32, &name));
            s.push('\n');
        }
        s
    }

    /// Degradation of each group alone (positive: worse than fp32).
    pub fn degradations(&self) -> Vec<(String, f64)> {
        self.groups
            .iter()
            .map(|r| {
                (
                    r.label.clone(),
                    degradation(&self.metric, r.metric, self.fp32.metric),
                )
            })
            .collect()
    }
}

/// `voxq autoquant`'s result, in the shape of the study's Table 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoquantReport {
    /// Largest allowed degradation ([`degradation`] units).
    pub budget: f64,
    /// The budget as the user gave it (e.g. `EER +0.1 %`, `SQNR >= 30 dB`).
    pub budget_text: String,
    /// What was made smallest: `deployable size` or `latency (p50_ms)`.
    #[serde(default)]
    pub objective: String,
    /// `exhaustive` or `greedy`.
    pub search: String,
    /// Groups quantized in the chosen model.
    pub chosen: Vec<String>,
    /// The mode of each chosen group, when several modes were measured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub chosen_modes: BTreeMap<String, String>,
    /// Groups kept in float.
    pub kept_float: Vec<String>,
    /// The chosen set, measured.
    pub chosen_row: Row,
    /// Every set measured while searching (predicted vs measured).
    pub tried: Vec<Tried>,
    pub sensitivity: SensitivityReport,
    /// Why this set, in one line.
    pub verdict: String,
}

/// A candidate set autoquant measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tried {
    pub groups: Vec<String>,
    /// The mode of each group, when several modes were measured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modes: BTreeMap<String, String>,
    pub predicted_degradation: f64,
    /// The objective's predicted and measured cost (bytes or milliseconds).
    pub predicted_cost: f64,
    pub measured_degradation: f64,
    pub cost: f64,
    pub deployable_bytes: u64,
    pub within_budget: bool,
}

impl AutoquantReport {
    /// Markdown in the shape of the study's Table 2 (fp32 vs all-int8 vs chosen), then the
    /// sets measured while searching.
    pub fn markdown(&self) -> String {
        let s = &self.sensitivity;
        let rows = [&s.fp32, &s.all_int8, &self.chosen_row];
        let extras = extra_cols(&rows);
        let mut out =
            format!(
            "Automatic mixed precision for `{}`: budget {} ({} is better), smallest {}, {} search.\n\n{}\n\n",
            s.model,
            self.budget_text,
            if s.metric.lower_is_better { "lower" } else { "higher" },
            if self.objective.is_empty() { "deployable size" } else { &self.objective },
            self.search,
            self.verdict
        );
        out.push_str(&header(&s.metric, &extras, "model"));
        out.push_str(&row_line(&s.fp32, &extras, &s.fp32, "fp32"));
        out.push('\n');
        out.push_str(&row_line(&s.all_int8, &extras, &s.fp32, "all int8"));
        out.push('\n');
        let kept = if self.kept_float.is_empty() {
            "none".to_string()
        } else {
            self.kept_float.join(", ")
        };
        let modes = if self.chosen_modes.is_empty() {
            String::new()
        } else {
            let m: Vec<String> = self
                .chosen_modes
                .iter()
                .map(|(g, m)| format!("{g}: {m}"))
                .collect();
            format!("; modes: {}", m.join(", "))
        };
        out.push_str(&row_line(
            &self.chosen_row,
            &extras,
            &s.fp32,
            &format!("chosen (float: {kept}{modes})"),
        ));
        out.push('\n');
        if !self.tried.is_empty() {
            let m = &s.metric;
            // show predictions in the metric's own unit
            let shown = |deg: f64| {
                if m.noise_db {
                    -10.0 * (10f64.powf(-s.fp32.metric / 10.0) + deg).log10()
                } else if m.lower_is_better {
                    s.fp32.metric + deg
                } else {
                    s.fp32.metric - deg
                }
            };
            let _ = write!(
                out,
                "\nSets measured while searching:\n\n| groups quantized | predicted {n} ({u}) | measured {n} ({u}) | predicted {o} | measured {o} | measured MiB | within budget |\n|---|---:|---:|---:|---:|---:|---|\n",
                n = m.name,
                u = m.unit,
                o = if self.objective.starts_with("latency") { "ms" } else { "MiB" },
            );
            let cost = |c: f64| {
                if self.objective.starts_with("latency") {
                    c
                } else {
                    c / (1024.0 * 1024.0)
                }
            };
            for t in &self.tried {
                let _ = writeln!(
                    out,
                    "| {} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {} |",
                    with_modes(&t.groups, &t.modes),
                    shown(t.predicted_degradation),
                    shown(t.measured_degradation),
                    cost(t.predicted_cost),
                    cost(t.cost),
                    mib(t.deployable_bytes),
                    if t.within_budget { "yes" } else { "no" }
                );
            }
        }
        out
    }
}
