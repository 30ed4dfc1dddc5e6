//! The sensitivity driver: a [`Study`] quantizes one set of groups at a time, measures it
//! through an [`Evaluate`]r (or takes the measurement from the cache), and runs the
//! per-group sensitivity pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use calibration::CalibrationTable;
use onnx_protobuf::ModelProto;

use super::cache::CacheEntry;
use super::{Evaluate, Progress, Result, Row, SensitivityReport};
use crate::groups::LayerGroups;
use crate::model::{elem, num_elements, to_bytes};
use crate::pipeline::quantize_with;
use crate::policy::{QuantMode, QuantPolicy};
use crate::size::deployable_size;
use crate::ExportError;

/// What a study varies and what stays fixed.
pub struct Study<'a> {
    pub model: &'a ModelProto,
    /// Where the model came from (reports only).
    pub model_name: String,
    pub model_sha256: String,
    /// `None` in weight-only mode (no activation is quantized, so no range is needed).
    pub table: Option<&'a CalibrationTable>,
    /// sha256 of the table (empty without one).
    pub table_sha256: String,
    /// Calibration method the table was computed with (cache key and reports).
    pub method: String,
    pub groups: &'a LayerGroups,
    /// Target, ops, channel floor; its `nodes` (and `node_modes`) are replaced per variant.
    pub policy: QuantPolicy,
    /// The modes each group is measured in (empty: only `policy.mode`). With several, the
    /// sensitivity pass measures every group in every mode and autoquant picks one per group.
    pub modes: Vec<QuantMode>,
    pub float16: bool,
    /// Folder of cached measurements (`None`: no cache).
    pub cache: Option<PathBuf>,
}

/// Float parameters of each group: elements of float initializers its nodes read (each
/// initializer counted once, for the first group that reads it), and the model's total.
pub fn group_parameters(model: &ModelProto, groups: &LayerGroups) -> (BTreeMap<String, u64>, u64) {
    let g = &model.graph;
    let inits: BTreeMap<&str, u64> = g
        .initializer
        .iter()
        .filter(|t| matches!(t.data_type, elem::FLOAT | elem::FLOAT16 | elem::BFLOAT16))
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

/// The nodes of the named groups; an unknown name is refused, listing the groups.
pub fn nodes_of(groups: &LayerGroups, names: &[String]) -> Result<BTreeSet<String>> {
    let mut set = BTreeSet::new();
    for name in names {
        let g = groups.group(name).ok_or_else(|| {
            ExportError::Policy(format!(
                "no group '{name}' (groups: {})",
                groups.names().join(", ")
            ))
        })?;
        set.extend(g.nodes.iter().cloned());
    }
    Ok(set)
}

/// `base` (target, ops, channel floor) quantizing exactly the `chosen` groups of `groups`,
/// each in its mode: what a study measures and what autoquant's choice is built with
/// (also `voxq quantize-whisper`'s per-group recipes).
pub fn policy_for_groups(
    groups: &LayerGroups,
    base: &QuantPolicy,
    chosen: &[(String, QuantMode)],
) -> Result<QuantPolicy> {
    let mut nodes = BTreeSet::new();
    let mut node_modes = BTreeMap::new();
    for (g, m) in chosen {
        for n in nodes_of(groups, std::slice::from_ref(g))? {
            if *m != base.mode {
                node_modes.insert(n.clone(), *m);
            }
            nodes.insert(n);
        }
    }
    Ok(QuantPolicy {
        nodes: Some(nodes),
        node_modes,
        ..base.clone()
    })
}

impl Study<'_> {
    pub(super) fn nodes_of(&self, groups: &[String]) -> Result<BTreeSet<String>> {
        nodes_of(self.groups, groups)
    }

    /// The modes groups are measured in: [`Study::modes`], or the policy's one mode.
    pub fn modes(&self) -> Vec<QuantMode> {
        if self.modes.is_empty() {
            vec![self.policy.mode]
        } else {
            self.modes.clone()
        }
    }

    /// `groups`, each in the policy's mode.
    fn in_policy_mode(&self, groups: &[String]) -> Vec<(String, QuantMode)> {
        groups
            .iter()
            .map(|g| (g.clone(), self.policy.mode))
            .collect()
    }

    /// The policy quantizing exactly `groups`, each in its mode.
    pub(super) fn policy_for(&self, groups: &[(String, QuantMode)]) -> Result<QuantPolicy> {
        policy_for_groups(self.groups, &self.policy, groups)
    }

    /// The model with `groups` quantized (`None`: fp32), serialized, and its plan size.
    fn variant(&self, groups: Option<&[(String, QuantMode)]>) -> Result<(ModelProto, usize)> {
        match groups {
            None => Ok((self.model.clone(), 0)),
            Some(gs) => {
                let policy = self.policy_for(gs)?;
                let q = quantize_with(self.model, self.table, &policy, self.float16)?;
                Ok((q.model, q.plan.quantized.len()))
            }
        }
    }

    /// The model with exactly these groups quantized (what autoquant writes).
    pub fn quantized_model(&self, groups: &[String]) -> Result<ModelProto> {
        Ok(self.variant(Some(&self.in_policy_mode(groups)))?.0)
    }

    /// The model with exactly these groups quantized, each in its mode.
    pub fn quantized_model_modes(&self, groups: &[(String, QuantMode)]) -> Result<ModelProto> {
        Ok(self.variant(Some(groups))?.0)
    }

    /// Measures one variant (its groups in the policy's mode), from the cache when it holds it.
    pub fn measure(
        &self,
        eval: &mut dyn Evaluate,
        label: &str,
        groups: Option<&[String]>,
        base: Option<f64>,
        params: (&BTreeMap<String, u64>, u64),
    ) -> Result<Row> {
        let gm = groups.map(|g| self.in_policy_mode(g));
        self.measure_modes(eval, label, gm.as_deref(), base, params)
    }

    /// Measures one variant, each group in its mode, from the cache when it holds it.
    pub fn measure_modes(
        &self,
        eval: &mut dyn Evaluate,
        label: &str,
        groups: Option<&[(String, QuantMode)]>,
        base: Option<f64>,
        params: (&BTreeMap<String, u64>, u64),
    ) -> Result<Row> {
        let material = self.key_material(eval, groups)?;
        let path = self.cache_path(&material);
        let cached = path.as_deref().and_then(|p| CacheEntry::read(p, &material));
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
                    e.write(p)?;
                }
                (e, false)
            }
        };
        let quantized_groups: Vec<String> = match groups {
            None => Vec::new(),
            Some(gs) => gs.iter().map(|(g, _)| g.clone()).collect(),
        };
        // the mode of each group, only when the study measures several
        let modes = match groups {
            Some(gs) if self.modes().len() > 1 => gs
                .iter()
                .map(|(g, m)| (g.clone(), m.name().to_string()))
                .collect(),
            _ => BTreeMap::new(),
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
            modes,
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

    /// The placement as reports name it: the target, `weight-only`, `smooth (target)`, or the
    /// list of modes measured.
    fn target_text(&self) -> String {
        let one = |m: QuantMode| match m {
            QuantMode::Full => self.policy.target.name().to_string(),
            QuantMode::WeightOnly => "weight-only".to_string(),
            QuantMode::Dynamic => format!("dynamic ({})", self.policy.target.name()),
            QuantMode::Smooth => format!("smooth ({})", self.policy.target.name()),
        };
        let modes = self.modes();
        if modes.len() == 1 {
            one(modes[0])
        } else {
            let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
            format!("{} (modes {})", self.policy.target.name(), names.join(", "))
        }
    }

    /// fp32, all-int8 and every group alone (in every mode of the study; all-int8 in the most
    /// preferred one, [`QuantMode::preference`]).
    pub fn sensitivity(
        &self,
        eval: &mut dyn Evaluate,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<SensitivityReport> {
        let (per, total) = group_parameters(self.model, self.groups);
        let names: Vec<String> = self.groups.groups.iter().map(|g| g.name.clone()).collect();
        let modes = self.modes();
        progress(Progress::Start {
            total: names.len() * modes.len() + 2,
        });
        let fp32 = self.measure_modes(eval, "fp32", None, None, (&per, total))?;
        progress(Progress::Done {
            label: "fp32",
            cached: fp32.cached,
        });
        let base = Some(fp32.metric);
        let best = modes
            .iter()
            .copied()
            .min_by_key(|m| m.preference())
            .unwrap_or(self.policy.mode);
        let all: Vec<(String, QuantMode)> = names.iter().map(|g| (g.clone(), best)).collect();
        let all_int8 = self.measure_modes(eval, "all int8", Some(&all), base, (&per, total))?;
        progress(Progress::Done {
            label: "all int8",
            cached: all_int8.cached,
        });
        let mut rows = Vec::new();
        for name in &names {
            for &m in &modes {
                let label = if modes.len() > 1 {
                    format!("{name} [{m}]")
                } else {
                    name.clone()
                };
                let one = [(name.clone(), m)];
                let r = self.measure_modes(eval, &label, Some(&one), base, (&per, total))?;
                progress(Progress::Done {
                    label: &label,
                    cached: r.cached,
                });
                rows.push(r);
            }
        }
        Ok(SensitivityReport {
            model: self.model_name.clone(),
            model_sha256: self.model_sha256.clone(),
            table_sha256: self.table_sha256.clone(),
            method: self.method.clone(),
            target: self.target_text(),
            groups_source: self.groups.source.clone(),
            metric: eval.metric(),
            fp32,
            all_int8,
            groups: rows,
        })
    }
}
