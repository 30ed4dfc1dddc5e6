//! Per-group sensitivity analysis and automatic mixed precision: the driver, over an [`Evaluate`]r.
//!
//! The driver quantizes one layer group at a time through [`crate::pipeline::quantize`] (so a
//! group means here what it means to `voxq quantize --include`), hands the model bytes to an
//! evaluator the upper layer supplies (EER on trials, output SQNR, ...), and records the
//! metric with the deployable and ONNX size. Every measurement is cached on disk under a key
//! made of everything it depends on: the model's sha256, the calibration table's sha256 (not
//! for fp32), the calibration method, the evaluator's fingerprint, the policy, and the exact
//! set of quantized nodes, so a re-run, or a run with a group added, only measures what is new.
//!
//! [`autoquant`] then picks the set of groups to quantize that gives the smallest deployable
//! model whose metric stays within a budget: it predicts a set's degradation as the sum of its
//! groups' measured degradations and its size from the groups' measured savings, searches all
//! subsets when there are at most [`EXHAUSTIVE_MAX`] groups (greedy by degradation per saved
//! byte otherwise), and measures the best predicted sets until one verifies.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use calibration::CalibrationTable;
use onnx_protobuf::ModelProto;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::write_atomic;
use crate::groups::LayerGroups;
use crate::model::{num_elements, to_bytes};
use crate::pipeline::quantize;
use crate::policy::QuantPolicy;
use crate::size::deployable_size;
use crate::ExportError;

type Result<T> = std::result::Result<T, ExportError>;

/// Subsets are searched exhaustively up to this many groups; greedily above.
pub const EXHAUSTIVE_MAX: usize = 10;
/// How many predicted sets autoquant measures at most before it settles.
pub const MAX_VERIFY: usize = 6;

/// What an evaluator measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricInfo {
    /// Short name, e.g. `eer_percent`, `sqnr_db`.
    pub name: String,
    /// Unit for tables, e.g. `%`, `dB`.
    pub unit: String,
    pub lower_is_better: bool,
    /// The metric is a signal-to-noise ratio in dB (output SQNR): degradations are compared as
    /// noise power (`10^(-dB/10)`), which adds up over groups, not as dB differences.
    #[serde(default)]
    pub noise_db: bool,
}

/// One evaluation of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The metric the budget applies to.
    pub value: f64,
    /// Secondary figures (minDCF, mean cosine, ...).
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
}

/// The error type evaluators return.
pub type EvalError = Box<dyn std::error::Error + Send + Sync>;

/// A task metric over a model, supplied by the layer that can run models.
pub trait Evaluate {
    fn metric(&self) -> MetricInfo;
    /// Identifies the evaluation data and settings (it joins every cache key).
    fn fingerprint(&self) -> String;
    /// Evaluates the serialized ONNX model `model`; `label` names it in messages.
    fn evaluate(
        &mut self,
        label: &str,
        model: &[u8],
    ) -> std::result::Result<Measurement, EvalError>;
}

/// What a study varies and what stays fixed.
pub struct Study<'a> {
    pub model: &'a ModelProto,
    /// Where the model came from (reports only).
    pub model_name: String,
    pub model_sha256: String,
    pub table: &'a CalibrationTable,
    pub table_sha256: String,
    /// Calibration method the table was computed with (cache key and reports).
    pub method: String,
    pub groups: &'a LayerGroups,
    /// Target, ops, channel floor; its `nodes` is replaced per variant.
    pub policy: QuantPolicy,
    pub float16: bool,
    /// Folder of cached measurements (`None`: no cache).
    pub cache: Option<PathBuf>,
}

/// Progress events for a progress bar.
pub enum Progress<'a> {
    /// `total` measurements are planned.
    Start { total: usize },
    /// Measurement `label` done (from the cache or measured).
    Done { label: &'a str, cached: bool },
}

/// One measured model: fp32, all-int8, one group, or a set of groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    /// Groups quantized in this variant (all of them for all-int8, none for fp32).
    pub quantized_groups: Vec<String>,
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

/// What a cache file holds.
#[derive(Serialize, Deserialize)]
struct CacheEntry {
    key_material: serde_json::Value,
    label: String,
    measurement: Measurement,
    deployable_bytes: u64,
    onnx_bytes: u64,
    quantized_nodes: usize,
    seconds: f64,
}

/// sha256 (hex) of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a calibration table's canonical JSON (independent of the file it came from).
pub fn table_sha256(table: &CalibrationTable) -> String {
    sha256_hex(table.to_json().as_bytes())
}

/// How much worse `value` is than `base`: positive is worse whichever way the metric points;
/// for SNR metrics ([`MetricInfo::noise_db`]) it is the added noise-to-signal power ratio.
pub fn degradation(metric: &MetricInfo, value: f64, base: f64) -> f64 {
    if metric.noise_db {
        10f64.powf(-value / 10.0) - 10f64.powf(-base / 10.0)
    } else if metric.lower_is_better {
        value - base
    } else {
        base - value
    }
}

/// Float parameters of each group: elements of float initializers its nodes read (each
/// initializer counted once, for the first group that reads it), and the model's total.
pub fn group_parameters(model: &ModelProto, groups: &LayerGroups) -> (BTreeMap<String, u64>, u64) {
    let g = &model.graph;
    let inits: BTreeMap<&str, u64> = g
        .initializer
        .iter()
        .filter(|t| {
            matches!(
                t.data_type,
                crate::model::elem::FLOAT
                    | crate::model::elem::FLOAT16
                    | crate::model::elem::BFLOAT16
            )
        })
        .map(|t| (t.name.as_str(), num_elements(&t.dims).unwrap_or(0)))
        .collect();
    let total: u64 = inits.values().sum();
    let owner = groups.group_of_nodes();
    let mut seen = BTreeSet::new();
    let mut per: BTreeMap<String, u64> = groups
        .groups
        .iter()
        .map(|gr| (gr.name.clone(), 0))
        .collect();
    for (i, n) in g.node.iter().enumerate() {
        let id = crate::groups::node_id(g, i);
        let Some(group) = owner.get(id.as_str()) else {
            continue;
        };
        for inp in &n.input {
            if let Some(&e) = inits.get(inp.as_str()) {
                if seen.insert(inp.as_str()) {
                    *per.entry(group.to_string()).or_default() += e;
                }
            }
        }
    }
    (per, total)
}

impl Study<'_> {
    fn nodes_of(&self, groups: &[String]) -> Result<BTreeSet<String>> {
        let mut set = BTreeSet::new();
        for name in groups {
            let g = self.groups.group(name).ok_or_else(|| {
                ExportError::Policy(format!(
                    "no group '{name}' (groups: {})",
                    self.groups.names().join(", ")
                ))
            })?;
            set.extend(g.nodes.iter().cloned());
        }
        Ok(set)
    }

    /// The model with `groups` quantized (`None`: fp32), serialized, and its plan size.
    fn variant(&self, groups: Option<&[String]>) -> Result<(ModelProto, usize)> {
        match groups {
            None => Ok((self.model.clone(), 0)),
            Some(gs) => {
                let policy = QuantPolicy {
                    nodes: Some(self.nodes_of(gs)?),
                    ..self.policy.clone()
                };
                let q = quantize(self.model, self.table, &policy, self.float16)?;
                Ok((q.model, q.plan.quantized.len()))
            }
        }
    }

    /// The model with exactly these groups quantized (what autoquant writes).
    pub fn quantized_model(&self, groups: &[String]) -> Result<ModelProto> {
        Ok(self.variant(Some(groups))?.0)
    }

    fn key_material(
        &self,
        eval: &dyn Evaluate,
        groups: Option<&[String]>,
    ) -> Result<serde_json::Value> {
        let p = &self.policy;
        let mut v = serde_json::json!({
            "version": 1,
            "model_sha256": self.model_sha256,
            "evaluator": eval.fingerprint(),
            "metric": eval.metric().name,
        });
        if let Some(gs) = groups {
            let nodes: Vec<String> = self.nodes_of(gs)?.into_iter().collect();
            let o = v.as_object_mut().expect("object");
            o.insert("table_sha256".into(), self.table_sha256.clone().into());
            o.insert("method".into(), self.method.clone().into());
            o.insert("target".into(), p.target.name().into());
            o.insert("ops".into(), serde_json::json!(p.ops));
            o.insert("min_channels".into(), p.min_channels.into());
            o.insert("per_channel".into(), p.per_channel.into());
            o.insert("float16".into(), self.float16.into());
            o.insert(
                "nodes_sha256".into(),
                sha256_hex(nodes.join("\n").as_bytes()).into(),
            );
        }
        Ok(v)
    }

    fn cache_path(&self, material: &serde_json::Value) -> Option<PathBuf> {
        let dir = self.cache.as_ref()?;
        let key = sha256_hex(material.to_string().as_bytes());
        Some(dir.join(format!("{}.json", &key[..32])))
    }

    /// Measures one variant, from the cache when it holds it.
    pub fn measure(
        &self,
        eval: &mut dyn Evaluate,
        label: &str,
        groups: Option<&[String]>,
        base: Option<f64>,
        params: (&BTreeMap<String, u64>, u64),
    ) -> Result<Row> {
        let material = self.key_material(eval, groups)?;
        let path = self.cache_path(&material);
        let cached: Option<CacheEntry> = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<CacheEntry>(&t).ok())
            .filter(|e| e.key_material == material);
        let (entry, was_cached) = match cached {
            Some(e) => (e, true),
            None => {
                let (model, quantized_nodes) = self.variant(groups)?;
                let bytes = to_bytes(&model)?;
                let size = deployable_size(&model, Some(bytes.len() as u64));
                let t0 = Instant::now();
                let m = eval
                    .evaluate(label, &bytes)
                    .map_err(|e| ExportError::Evaluate {
                        variant: label.to_string(),
                        reason: e.to_string(),
                    })?;
                let e = CacheEntry {
                    key_material: material,
                    label: label.to_string(),
                    measurement: m,
                    deployable_bytes: size.deployable_bytes,
                    onnx_bytes: bytes.len() as u64,
                    quantized_nodes,
                    seconds: t0.elapsed().as_secs_f64(),
                };
                if let Some(p) = &path {
                    let text = serde_json::to_string_pretty(&e)
                        .map_err(|err| ExportError::Policy(err.to_string()))?;
                    if let Some(dir) = p.parent() {
                        std::fs::create_dir_all(dir).map_err(|source| ExportError::Io {
                            path: dir.to_path_buf(),
                            source,
                        })?;
                    }
                    write_atomic(p, text.as_bytes())?;
                }
                (e, false)
            }
        };
        let quantized_groups: Vec<String> = match groups {
            None => Vec::new(),
            Some(gs) => gs.to_vec(),
        };
        let (per, total) = params;
        let share = quantized_groups
            .iter()
            .map(|g| per.get(g).copied().unwrap_or(0))
            .sum::<u64>() as f64
            / total.max(1) as f64;
        let metric = entry.measurement.value;
        Ok(Row {
            label: label.to_string(),
            quantized_groups,
            metric,
            delta: base.map(|b| metric - b).unwrap_or(0.0),
            extra: entry.measurement.extra,
            deployable_bytes: entry.deployable_bytes,
            onnx_bytes: entry.onnx_bytes,
            param_share: share,
            quantized_nodes: entry.quantized_nodes,
            cached: was_cached,
            seconds: entry.seconds,
        })
    }

    /// fp32, all-int8 and every group alone.
    pub fn sensitivity(
        &self,
        eval: &mut dyn Evaluate,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<SensitivityReport> {
        let (per, total) = group_parameters(self.model, self.groups);
        let names: Vec<String> = self.groups.groups.iter().map(|g| g.name.clone()).collect();
        progress(Progress::Start {
            total: names.len() + 2,
        });
        let fp32 = self.measure(eval, "fp32", None, None, (&per, total))?;
        progress(Progress::Done {
            label: "fp32",
            cached: fp32.cached,
        });
        let base = Some(fp32.metric);
        let all_int8 = self.measure(eval, "all int8", Some(&names), base, (&per, total))?;
        progress(Progress::Done {
            label: "all int8",
            cached: all_int8.cached,
        });
        let mut rows = Vec::new();
        for name in &names {
            let r = self.measure(
                eval,
                name,
                Some(std::slice::from_ref(name)),
                base,
                (&per, total),
            )?;
            progress(Progress::Done {
                label: name,
                cached: r.cached,
            });
            rows.push(r);
        }
        Ok(SensitivityReport {
            model: self.model_name.clone(),
            model_sha256: self.model_sha256.clone(),
            table_sha256: self.table_sha256.clone(),
            method: self.method.clone(),
            target: self.policy.target.name().to_string(),
            groups_source: self.groups.source.clone(),
            metric: eval.metric(),
            fp32,
            all_int8,
            groups: rows,
        })
    }
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
    /// `exhaustive` or `greedy`.
    pub search: String,
    /// Groups quantized in the chosen model.
    pub chosen: Vec<String>,
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
    pub predicted_degradation: f64,
    pub predicted_deployable_bytes: u64,
    pub measured_degradation: f64,
    pub deployable_bytes: u64,
    pub within_budget: bool,
}

/// A candidate set: group indices, predicted degradation and size.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub groups: Vec<usize>,
    pub degradation: f64,
    pub bytes: u64,
}

/// Candidate sets within `budget` by the additive prediction, best (smallest) first.
///
/// `deg[i]` is group i's measured degradation alone (negative counts as 0), `saving[i]` the
/// bytes quantizing it alone saves, `base` the fp32 size. Exhaustive when `deg.len() <=`
/// [`EXHAUSTIVE_MAX`], else greedy by degradation per saved byte (each prefix of that order
/// that fits, longest first).
pub fn candidates(
    deg: &[f64],
    saving: &[u64],
    base: u64,
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
                let saved: u64 = groups.iter().map(|&i| saving[i]).sum();
                out.push(Candidate {
                    groups,
                    degradation: dd,
                    bytes: base.saturating_sub(saved),
                });
            }
        }
        "exhaustive"
    } else {
        let mut order: Vec<usize> = (0..n).filter(|&i| saving[i] > 0).collect();
        order.sort_by(|&a, &b| {
            let ra = d(a) / saving[a] as f64;
            let rb = d(b) / saving[b] as f64;
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
            let saved: u64 = groups.iter().map(|&j| saving[j]).sum();
            out.push(Candidate {
                groups,
                degradation: acc,
                bytes: base.saturating_sub(saved),
            });
        }
        "greedy"
    };
    out.sort_by(|a, b| {
        a.bytes
            .cmp(&b.bytes)
            .then(a.degradation.total_cmp(&b.degradation))
            .then(a.groups.cmp(&b.groups))
    });
    (out, search)
}

/// Chooses the smallest verified set of groups within `budget` (metric units, "worse" direction).
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
            other => Err(ExportError::Policy(format!("invalid budget {other:?}"))),
        }
    }
}

pub fn autoquant(
    study: &Study,
    eval: &mut dyn Evaluate,
    budget: Budget,
    progress: &mut dyn FnMut(Progress),
) -> Result<AutoquantReport> {
    let sens = study.sensitivity(eval, progress)?;
    let metric = sens.metric.clone();
    let base = sens.fp32.metric;
    let (budget, budget_text) = budget.resolve(&metric, base)?;
    let params = group_parameters(study.model, study.groups);
    let names: Vec<String> = sens.groups.iter().map(|r| r.label.clone()).collect();
    let worse = |r: &Row| degradation(&metric, r.metric, base);
    let mut tried = Vec::new();
    let all_names = names.clone();
    let finish = |chosen_row: Row, tried: Vec<Tried>, search: &str, verdict: String| {
        let chosen = chosen_row.quantized_groups.clone();
        let kept_float = all_names
            .iter()
            .filter(|g| !chosen.contains(g))
            .cloned()
            .collect();
        AutoquantReport {
            budget,
            budget_text: budget_text.clone(),
            search: search.to_string(),
            chosen,
            kept_float,
            chosen_row,
            tried,
            sensitivity: sens.clone(),
            verdict,
        }
    };
    if worse(&sens.all_int8) <= budget {
        let v = format!(
            "all groups quantized: all-int8 measures {:.4} {} ({budget_text})",
            sens.all_int8.metric, metric.unit
        );
        return Ok(finish(sens.all_int8.clone(), tried, "none needed", v));
    }
    // Only groups whose quantization saves bytes are worth a place in a set.
    let useful: Vec<usize> = (0..names.len())
        .filter(|&i| sens.groups[i].deployable_bytes < sens.fp32.deployable_bytes)
        .collect();
    let deg: Vec<f64> = useful.iter().map(|&i| worse(&sens.groups[i])).collect();
    let saving: Vec<u64> = useful
        .iter()
        .map(|&i| sens.fp32.deployable_bytes - sens.groups[i].deployable_bytes)
        .collect();
    let (cands, search) = candidates(&deg, &saving, sens.fp32.deployable_bytes, budget);
    // The best verified set so far: a single group measured within budget counts.
    let mut best: Option<Row> = None;
    for r in &sens.groups {
        if worse(r) <= budget
            && r.deployable_bytes < sens.fp32.deployable_bytes
            && best
                .as_ref()
                .is_none_or(|b| r.deployable_bytes < b.deployable_bytes)
        {
            best = Some(r.clone());
        }
    }
    let mut measured = 0;
    for c in &cands {
        if measured >= MAX_VERIFY {
            break;
        }
        if let Some(b) = &best {
            if c.bytes >= b.deployable_bytes {
                break; // nothing predicted smaller than what is already verified
            }
        }
        let gs: Vec<String> = c.groups.iter().map(|&k| names[useful[k]].clone()).collect();
        if gs.len() == 1 {
            continue; // measured in the sensitivity pass
        }
        let label = format!("set {}", gs.join("+"));
        let r = study.measure(eval, &label, Some(&gs), Some(base), (&params.0, params.1))?;
        progress(Progress::Done {
            label: &label,
            cached: r.cached,
        });
        measured += 1;
        let w = worse(&r);
        tried.push(Tried {
            groups: gs,
            predicted_degradation: c.degradation,
            predicted_deployable_bytes: c.bytes,
            measured_degradation: w,
            deployable_bytes: r.deployable_bytes,
            within_budget: w <= budget,
        });
        if w <= budget
            && best
                .as_ref()
                .is_none_or(|b| r.deployable_bytes < b.deployable_bytes)
        {
            best = Some(r);
            break;
        }
    }
    Ok(match best {
        Some(r) => {
            let v = format!(
                "smallest set verified within the budget ({budget_text}): measures {:.4} {}, {} of {} groups quantized ({} search, {} set(s) measured beyond single groups)",
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
                "no group can be quantized within the budget ({budget_text}): every group alone is worse (see the sensitivity table); the model stays fp32"
            );
            finish(sens.fp32.clone(), tried, search, v)
        }
    })
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
            "Automatic mixed precision for `{}`: budget {} ({} is better), {} search.\n\n{}\n\n",
            s.model,
            self.budget_text,
            if s.metric.lower_is_better { "lower" } else { "higher" },
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
        out.push_str(&row_line(
            &self.chosen_row,
            &extras,
            &s.fp32,
            &format!("chosen (float: {kept})"),
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
                "\nSets measured while searching:\n\n| groups quantized | predicted {n} ({u}) | measured {n} ({u}) | predicted MiB | measured MiB | within budget |\n|---|---:|---:|---:|---:|---|\n",
                n = m.name,
                u = m.unit
            );
            for t in &self.tried {
                let _ = writeln!(
                    out,
                    "| {} | {:.3} | {:.3} | {:.2} | {:.2} | {} |",
                    t.groups.join(", "),
                    shown(t.predicted_degradation),
                    shown(t.measured_degradation),
                    mib(t.predicted_deployable_bytes),
                    mib(t.deployable_bytes),
                    if t.within_budget { "yes" } else { "no" }
                );
            }
        }
        out
    }
}

/// Where measurements are cached by default: `.voxq-cache/sensitivity` under the current folder.
pub fn default_cache_dir() -> PathBuf {
    Path::new(".voxq-cache").join("sensitivity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustive_prefers_smallest_within_budget() {
        // three groups: a is insensitive and big, b sensitive, c cheap
        let deg = [0.02, 0.5, 0.05];
        let saving = [100, 80, 10];
        let (c, how) = candidates(&deg, &saving, 1000, 0.1);
        assert_eq!(how, "exhaustive");
        assert_eq!(c[0].groups, vec![0, 2]);
        assert_eq!(c[0].bytes, 890);
        assert!(c.iter().all(|x| x.degradation <= 0.1 + 1e-12));
        assert!(!c.iter().any(|x| x.groups.contains(&1)));
    }

    #[test]
    fn negative_degradation_counts_as_zero() {
        let (c, _) = candidates(&[-0.3, 0.2], &[10, 10], 100, 0.1);
        assert_eq!(c[0].groups, vec![0]);
        assert_eq!(c[0].degradation, 0.0);
    }

    #[test]
    fn greedy_above_the_exhaustive_limit() {
        let n = EXHAUSTIVE_MAX + 2;
        let deg: Vec<f64> = (0..n).map(|i| 0.01 * i as f64).collect();
        let saving = vec![10u64; n];
        let (c, how) = candidates(&deg, &saving, 1000, 0.1);
        assert_eq!(how, "greedy");
        // 0+1+2+3+4 = 0.10 fits, the next does not
        assert_eq!(c[0].groups, vec![0, 1, 2, 3, 4]);
        assert_eq!(c[0].bytes, 950);
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
