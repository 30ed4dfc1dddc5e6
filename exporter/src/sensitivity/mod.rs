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
//! model (or the fastest, [`Objective::Latency`], from latencies the evaluator measures on the
//! deployment engine) whose metric stays within a budget: it predicts a set's degradation as
//! the sum of its groups' measured degradations and its cost from the groups' measured savings, searches all
//! subsets when there are at most [`EXHAUSTIVE_MAX`] groups (greedy by degradation per saved
//! byte otherwise), and measures the best predicted sets until one verifies.
//!
//! With several quantization modes ([`Study::modes`], e.g. weight-only, smooth and full int8)
//! every group is measured in every mode and autoquant picks a mode per group
//! ([`candidates_modes`]): the cheapest, and among near-equal sizes the preferred mode.
//!
//! Files: `driver` (the [`Study`] and its measurements), `cache` (measurement cache keys and
//! files), `report` (the sensitivity and autoquant reports and their tables), `search` (the
//! budgeted search: [`candidates`], [`Budget`], [`autoquant`]), `modes` (the search with a
//! mode per group).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod cache;
mod driver;
mod modes;
mod report;
mod search;

pub use cache::{default_cache_dir, sha256_hex, table_sha256};
pub use driver::{group_parameters, nodes_of, policy_for_groups, Study};
pub use modes::{candidates_modes, ModeCandidate, ModeOption, TIE_SHARE};
pub use report::{AutoquantReport, Row, SensitivityReport, Tried};
pub use search::{autoquant, candidates, Budget, Candidate, Objective};

type Result<T> = std::result::Result<T, crate::ExportError>;

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

/// Progress events for a progress bar.
pub enum Progress<'a> {
    /// `total` measurements are planned.
    Start { total: usize },
    /// Measurement `label` done (from the cache or measured).
    Done { label: &'a str, cached: bool },
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
