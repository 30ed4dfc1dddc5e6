//! SmoothQuant scale migration: move the outlier range of a LayerNormalization output into the
//! weights of the MatMul/Gemm nodes that read it, so per-tensor int8 activations stop clipping
//! a few large channels.
//!
//! For a `LayerNormalization` (opset 17, normalising the last axis) whose output `X` `[…, C]`
//! is read only by MatMul/Gemm nodes with a constant float32 weight (and by `Shape`, which sees
//! no values), each channel `j` gets a scale
//!
//! `s_j = max|X_j|^α / max|W_j|^(1-α)`
//!
//! from the calibration statistics (`max|X_j|`: the per-channel maxima the calibration keeps,
//! [`calibration::TensorStats::channel_abs_max`]) and the weights (`max|W_j|`: the largest |w|
//! of input row `j` over *every* consumer's weight, so the q/k/v projections that share one
//! LayerNorm get one `s`). The LayerNorm's scale and bias are divided by `s` and each weight's
//! row `j` multiplied by it: `(X / s) · (diag(s) W) = X · W`, exact in real arithmetic, so the
//! float model computes the same function (up to float rounding), while the activation's
//! per-channel ranges `max|X_j| / s_j = (max|X_j| · max|W_j|)^(1-α)` are evened out.
//!
//! A channel with a zero or non-finite statistic keeps `s_j = 1`; every scale is clamped to
//! `[min_scale, max_scale]`. The rewritten initializers get new names (`{name}_smoothed`), so a
//! smoothed LayerNorm is recognised and never smoothed twice; a new name already in the model
//! is an error, never a silent rename.
//!
//! A LayerNorm is left alone, with the reason (debug log and [`SmoothReport::skipped`]), when:
//! its output is a graph output or read by anything other than smoothable MatMul/Gemm and
//! Shape nodes (or inside a subgraph); a consumer's weight is not a float32 initializer of its
//! own (computed, shared, or overridable as a graph input); a consumer is outside the node
//! selection; its scale/bias are not float32 `[C]` constants (an initializer, or an
//! `Identity` of one: a parameter shared with other nodes gets a new initializer for this
//! LayerNorm alone); it normalises more than the last axis; or there are no per-channel
//! statistics of `C` channels for its output.

use std::collections::{BTreeMap, BTreeSet};

use calibration::CalibrationTable;
use onnx_protobuf::{GraphProto, ModelProto, NodeProto, TensorProto};
use serde::Serialize;

use super::{f32_data, graph_err, Result};
use crate::graph::GraphIndex;
use crate::groups::node_id;
use crate::model::elem;
use crate::onnx::builders::tensor_f32;
use crate::onnx::{attr_int, is_default_op};

/// Suffix of every initializer the pass rewrites.
pub const SMOOTHED_SUFFIX: &str = "_smoothed";

/// Settings of [`smooth_quant`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmoothOptions {
    /// Migration strength α in `[0, 1]` (0.5: SmoothQuant's default).
    pub alpha: f32,
    /// Smallest and largest scale allowed.
    pub min_scale: f32,
    pub max_scale: f32,
    /// `None`: any consumer may be smoothed; else only nodes with these ids
    /// ([`crate::groups::node_id`]) — a LayerNorm read by any other node is left alone.
    pub nodes: Option<BTreeSet<String>>,
}

impl Default for SmoothOptions {
    fn default() -> Self {
        SmoothOptions {
            alpha: 0.5,
            min_scale: 1e-2,
            max_scale: 1e2,
            nodes: None,
        }
    }
}

/// One smoothed LayerNorm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmoothedNorm {
    /// Node id of the LayerNorm.
    pub norm: String,
    /// Its output tensor (the activation whose channels were evened out).
    pub tensor: String,
    /// The MatMul/Gemm node ids whose weights absorbed the scales.
    pub consumers: Vec<String>,
    /// `s_j` per channel.
    pub scales: Vec<f32>,
}

/// A LayerNorm left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedNorm {
    pub norm: String,
    pub reason: String,
}

/// What [`smooth_quant`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SmoothReport {
    pub smoothed: Vec<SmoothedNorm>,
    pub skipped: Vec<SkippedNorm>,
}

/// The per-channel |x| maxima a calibration table carries, by tensor.
pub fn channel_stats(table: &CalibrationTable) -> BTreeMap<String, Vec<f32>> {
    table
        .tensors
        .iter()
        .filter_map(|(k, r)| {
            let s = r.stats.as_ref()?;
            (!s.channel_abs_max.is_empty()).then(|| (k.clone(), s.channel_abs_max.clone()))
        })
        .collect()
}

/// The table after smoothing: each smoothed tensor's range is scaled by how much its
/// largest per-channel maximum shrank (`max_j(x_j / s_j) / max_j x_j`: exact for the `max`
/// method, the same proportion for a clipped range) and its per-channel maxima divided by `s`.
pub fn smoothed_table(table: &CalibrationTable, report: &SmoothReport) -> CalibrationTable {
    let mut out = table.clone();
    for s in &report.smoothed {
        let Some(r) = out.tensors.get_mut(&s.tensor) else {
            continue;
        };
        let Some(stats) = r.stats.as_mut() else {
            continue;
        };
        let before = stats.channel_abs_max.iter().fold(0f32, |m, &x| m.max(x));
        for (x, sc) in stats.channel_abs_max.iter_mut().zip(&s.scales) {
            *x /= sc;
        }
        let after = stats.channel_abs_max.iter().fold(0f32, |m, &x| m.max(x));
        if before > 0.0 && after > 0.0 {
            let ratio = after / before;
            r.amax *= ratio;
            r.scale *= ratio;
        }
    }
    out
}

/// One MatMul/Gemm reading the LayerNorm output: its id, weight, and whether the weight's
/// input channel is its column (Gemm `transB=1`, `[N, C]`) instead of its row (`[C, N]`).
struct Consumer {
    id: String,
    weight: String,
    channel_is_column: bool,
}

/// Tensors read inside If/Loop/Scan bodies (recursively).
fn subgraph_reads(graph: &GraphProto) -> BTreeSet<String> {
    fn walk(g: &GraphProto, out: &mut BTreeSet<String>) {
        for n in &g.node {
            for a in &n.attribute {
                for sg in a.g.as_ref().into_iter().chain(a.graphs.iter()) {
                    for sn in &sg.node {
                        out.extend(sn.input.iter().cloned());
                    }
                    walk(sg, out);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(graph, &mut out);
    out
}

struct Finder<'a> {
    ix: GraphIndex<'a>,
    ids: Vec<String>,
    ir_version: i64,
    in_subgraphs: BTreeSet<String>,
}

impl Finder<'_> {
    /// A float32 initializer read by exactly one node and not overridable as a graph input.
    fn own_float_init(&self, name: &str) -> std::result::Result<&TensorProto, String> {
        let t = self
            .ix
            .initializer(name)
            .ok_or_else(|| format!("'{name}' is not a constant initializer"))?;
        if t.data_type != elem::FLOAT {
            return Err(format!("'{name}' is not float32"));
        }
        if self.ir_version >= 4 && self.ix.graph.input.iter().any(|v| v.name == name) {
            return Err(format!("'{name}' is also a graph input"));
        }
        if self.ix.consumers(name).len() != 1 || self.in_subgraphs.contains(name) {
            return Err(format!("'{name}' is shared with other nodes"));
        }
        Ok(t)
    }

    /// A LayerNorm parameter: a float32 constant, either an initializer or an `Identity` of
    /// one (exporters deduplicate equal initializers, e.g. all-ones scales, that way); the
    /// flag says whether it is an initializer this node alone reads (rewritten in place).
    fn norm_param(&self, name: &str) -> std::result::Result<(&TensorProto, bool), String> {
        if let Ok(t) = self.own_float_init(name) {
            return Ok((t, true));
        }
        let source = match self.ix.producer(name).map(|i| self.ix.node(i)) {
            Some(p) if is_default_op(p) && p.op_type == "Identity" => {
                p.input.first().cloned().unwrap_or_default()
            }
            _ => name.to_string(),
        };
        let t = self
            .ix
            .initializer(&source)
            .ok_or_else(|| format!("'{name}' is not a constant initializer"))?;
        if t.data_type != elem::FLOAT {
            return Err(format!("'{name}' is not float32"));
        }
        if self.ir_version >= 4 && self.ix.graph.input.iter().any(|v| v.name == source) {
            return Err(format!("'{source}' is also a graph input"));
        }
        Ok((t, false))
    }

    /// Checks a consumer of the LayerNorm output `x` with `c` channels: `Ok(None)` for a
    /// `Shape` (no values read), `Ok(Some(_))` for a smoothable MatMul/Gemm.
    fn consumer(
        &self,
        i: usize,
        x: &str,
        c: i64,
        nodes: Option<&BTreeSet<String>>,
    ) -> std::result::Result<Option<Consumer>, String> {
        let n: &NodeProto = self.ix.node(i);
        let id = &self.ids[i];
        if is_default_op(n) && n.op_type == "Shape" {
            return Ok(None);
        }
        if !is_default_op(n) || !matches!(n.op_type.as_str(), "MatMul" | "Gemm") {
            return Err(format!("its output is also read by '{id}' ({})", n.op_type));
        }
        if nodes.is_some_and(|s| !s.contains(id)) {
            return Err(format!("consumer '{id}' is not in the node selection"));
        }
        if n.input.first().map(String::as_str) != Some(x)
            || n.input.get(1).map(String::as_str) == Some(x)
        {
            return Err(format!(
                "'{id}' does not read it as its activation (input 0) only"
            ));
        }
        if n.op_type == "Gemm" && attr_int(n, "transA").unwrap_or(0) != 0 {
            return Err(format!("Gemm '{id}' transposes its activation (transA=1)"));
        }
        let weight = n.input.get(1).cloned().unwrap_or_default();
        let w = self
            .own_float_init(&weight)
            .map_err(|r| format!("weight of '{id}': {r}"))?;
        let channel_is_column = n.op_type == "Gemm" && attr_int(n, "transB").unwrap_or(0) != 0;
        let k = if channel_is_column { 1 } else { 0 };
        if w.dims.len() != 2 || w.dims[k] != c {
            return Err(format!(
                "weight '{weight}' of '{id}' has dims {:?}, not {} input channels on axis {k} of a 2-D weight",
                w.dims, c
            ));
        }
        Ok(Some(Consumer {
            id: id.clone(),
            weight,
            channel_is_column,
        }))
    }

    /// Checks one LayerNorm: its output, channel count, scale/bias and consumers.
    #[allow(clippy::type_complexity)]
    fn norm(
        &self,
        i: usize,
        stats: &BTreeMap<String, Vec<f32>>,
        opts: &SmoothOptions,
    ) -> std::result::Result<(String, usize, Option<String>, Vec<Consumer>), String> {
        let n = self.ix.node(i);
        if attr_int(n, "axis").unwrap_or(-1) != -1 {
            return Err("it normalises more than the last axis (axis ≠ -1)".into());
        }
        let x = n.output.first().cloned().unwrap_or_default();
        if x.is_empty() || self.ix.is_graph_output(&x) || self.in_subgraphs.contains(&x) {
            return Err("its output is a graph output or read inside a subgraph".into());
        }
        let gamma = n.input.get(1).cloned().unwrap_or_default();
        if gamma.ends_with(SMOOTHED_SUFFIX) {
            return Err(format!("already smoothed (scale '{gamma}')"));
        }
        let (g, _) = self.norm_param(&gamma).map_err(|r| format!("scale: {r}"))?;
        if g.dims.len() != 1 {
            return Err(format!("scale '{gamma}' is not 1-D"));
        }
        let c = g.dims[0];
        let beta = n.input.get(2).filter(|b| !b.is_empty()).cloned();
        if let Some(b) = &beta {
            let (t, _) = self.norm_param(b).map_err(|r| format!("bias: {r}"))?;
            if t.dims != g.dims {
                return Err(format!(
                    "bias '{b}' has dims {:?}, scale {:?}",
                    t.dims, g.dims
                ));
            }
        }
        let mut consumers = Vec::new();
        for &ci in self.ix.consumers(&x) {
            if let Some(cons) = self.consumer(ci, &x, c, opts.nodes.as_ref())? {
                consumers.push(cons);
            }
        }
        if consumers.is_empty() {
            return Err("no MatMul/Gemm reads its output".into());
        }
        match stats.get(&x) {
            None => Err(format!(
                "no per-channel statistics of '{x}' (calibrate with per-channel maxima)"
            )),
            Some(s) if s.len() as i64 != c => Err(format!(
                "per-channel statistics of '{x}' have {} channels, the LayerNorm {c}",
                s.len()
            )),
            Some(_) => Ok((gamma, c as usize, beta, consumers)),
        }
    }
}

/// `s_j = x_j^α / w_j^(1-α)`, clamped; 1 where a statistic is zero or not finite.
fn scales(x: &[f32], w: &[f32], opts: &SmoothOptions) -> Vec<f32> {
    x.iter()
        .zip(w)
        .map(|(&xj, &wj)| {
            let ok = |v: f32| v.is_finite() && v > 0.0;
            if !ok(xj) || !ok(wj) {
                return 1.0;
            }
            let s = xj.powf(opts.alpha) / wj.powf(1.0 - opts.alpha);
            if s.is_finite() {
                s.clamp(opts.min_scale, opts.max_scale)
            } else {
                1.0
            }
        })
        .collect()
}

/// Smooths every LayerNorm → MatMul/Gemm pattern it can (see the module docs); returns the new
/// model and what was smoothed or skipped. `stats`: per-channel |x| maxima by tensor
/// ([`channel_stats`] of a calibration table).
pub fn smooth_quant(
    model: &ModelProto,
    stats: &BTreeMap<String, Vec<f32>>,
    opts: &SmoothOptions,
) -> Result<(ModelProto, SmoothReport)> {
    let valid = (0.0..=1.0).contains(&opts.alpha)
        && opts.min_scale > 0.0
        && opts.min_scale <= 1.0
        && opts.max_scale >= 1.0
        && opts.max_scale.is_finite();
    if !valid {
        return Err(crate::ExportError::Policy(format!(
            "smoothing: alpha {} must be in [0, 1] and 0 < min_scale {} ≤ 1 ≤ max_scale {} < ∞",
            opts.alpha, opts.min_scale, opts.max_scale
        )));
    }
    let graph = &model.graph;
    let f = Finder {
        ix: GraphIndex::new(graph),
        ids: (0..graph.node.len()).map(|i| node_id(graph, i)).collect(),
        ir_version: model.ir_version,
        in_subgraphs: subgraph_reads(graph),
    };
    let mut report = SmoothReport::default();
    // initializer name → new values
    let mut rewrites: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    // (LayerNorm index, input slot, new initializer) for parameters it does not own
    let mut added: Vec<(usize, usize, TensorProto)> = Vec::new();
    for (i, n) in graph.node.iter().enumerate() {
        if !is_default_op(n) || n.op_type != "LayerNormalization" {
            continue;
        }
        let id = f.ids[i].clone();
        let (gamma, c, beta, consumers) = match f.norm(i, stats, opts) {
            Ok(v) => v,
            Err(reason) => {
                log::debug!("{id}: not smoothed: {reason}");
                report.skipped.push(SkippedNorm { norm: id, reason });
                continue;
            }
        };
        let x = n.output[0].clone();
        // max |W_j| over every consumer's input row j
        let mut wmax = vec![0f32; c];
        let mut weights = Vec::new();
        for cons in &consumers {
            let w =
                f.ix.initializer(&cons.weight)
                    .ok_or_else(|| graph_err(&cons.weight, "weight vanished"))?;
            let data = f32_data(w)?;
            let cols = data.len() / c;
            for (k, v) in data.iter().enumerate() {
                let j = if cons.channel_is_column {
                    k % c
                } else {
                    k / cols
                };
                if v.is_finite() {
                    wmax[j] = wmax[j].max(v.abs());
                }
            }
            weights.push((cons, data, cols));
        }
        let s = scales(&stats[&x], &wmax, opts);
        for (cons, mut data, cols) in weights {
            for (k, v) in data.iter_mut().enumerate() {
                let j = if cons.channel_is_column {
                    k % c
                } else {
                    k / cols
                };
                *v *= s[j];
            }
            rewrites.insert(cons.weight.clone(), data);
        }
        for (slot, name) in [(1, Some(&gamma)), (2, beta.as_ref())] {
            let Some(name) = name else { continue };
            let (t, own) = f.norm_param(name).map_err(|r| graph_err(name, r))?;
            let mut data = f32_data(t)?;
            for (v, sj) in data.iter_mut().zip(&s) {
                *v /= sj;
            }
            if own {
                rewrites.insert(name.clone(), data);
            } else {
                // shared or behind an Identity: a new initializer for this LayerNorm only
                added.push((
                    i,
                    slot,
                    tensor_f32(&format!("{name}{SMOOTHED_SUFFIX}"), &t.dims, &data),
                ));
            }
        }
        report.smoothed.push(SmoothedNorm {
            norm: id,
            tensor: x,
            consumers: consumers.iter().map(|c| c.id.clone()).collect(),
            scales: s,
        });
    }
    let mut out = model.clone();
    if rewrites.is_empty() && added.is_empty() {
        return Ok((out, report));
    }
    let mut existing = BTreeSet::new();
    super::tensors::collect_names(&out.graph, true, &mut existing);
    let g = out.graph.mut_or_insert_default();
    for t in g.initializer.iter_mut() {
        if let Some(data) = rewrites.remove(&t.name) {
            let new = format!("{}{SMOOTHED_SUFFIX}", t.name);
            if existing.contains(&new) {
                return Err(graph_err(
                    &new,
                    "already in the model (was it smoothed before?)",
                ));
            }
            let old = std::mem::replace(t, tensor_f32(&new, &t.dims.clone(), &data));
            for n in g.node.iter_mut() {
                for inp in n.input.iter_mut().filter(|s| **s == old.name) {
                    inp.clone_from(&new);
                }
            }
        }
    }
    for (i, slot, t) in added {
        if existing.contains(&t.name) || g.initializer.iter().any(|x| x.name == t.name) {
            return Err(graph_err(
                &t.name,
                "already in the model (was it smoothed before?)",
            ));
        }
        if let Some(inp) = g.node.get_mut(i).and_then(|n| n.input.get_mut(slot)) {
            inp.clone_from(&t.name);
        }
        g.initializer.push(t);
    }
    Ok((out, report))
}
