//! The insert-QDQ pass: carries out a [`QdqPlan`] with ranges from a [`CalibrationTable`].
//!
//! Steps, in order: [`activation_scales`] checks the table (every Q/DQ tensor needs a positive
//! scale) before the graph is touched; the opset is raised to [`QDQ_MIN_OPSET`];
//! [`resolve::resolve`] finds the planned nodes, weights, residual Adds and rewiring targets in
//! this graph; [`rewrite`] adds the weight DequantizeLinear nodes and the activation Q/DQ pairs,
//! then rewires the consumers, drops float weights nobody reads and splices the new nodes in.

mod resolve;
mod rewrite;

use std::collections::{BTreeMap, BTreeSet};

use calibration::CalibrationTable;
use onnx_protobuf::ModelProto;
use serde::Serialize;

use super::opset::{default_opset, raise_opset};
use super::Result;
use crate::policy::{ActivationType, QdqPlan, Target};
use crate::ExportError;

/// The smallest opset with per-axis `DequantizeLinear` (and int8 `QuantizeLinear` outputs).
pub const QDQ_MIN_OPSET: i64 = 13;

/// What [`insert_qdq`] did (counts and bytes of the rewrite; the TensorRT rule check of a
/// QDQ model is [`crate::inspect::qdq_report`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InsertQdqReport {
    pub target: Option<Target>,
    /// Weighted nodes that now read int8 weights.
    pub quantized_nodes: usize,
    /// Weighted nodes the plan left in float.
    pub skipped: usize,
    /// Residual Adds whose skip input got a Q/DQ pair.
    pub residual_adds: usize,
    /// Distinct weights stored as int8.
    pub weights: usize,
    /// Activation tensors with a Q/DQ pair.
    pub activations: usize,
    pub q_nodes: usize,
    pub dq_nodes: usize,
    /// Node inputs rewired to a DequantizeLinear output.
    pub rewired_inputs: usize,
    /// Bytes of the int8 weight initializers added.
    pub weights_int8_bytes: u64,
    /// Bytes of the float32 weight initializers removed (no float consumer left).
    pub weights_float_bytes_removed: u64,
    /// Bytes of the scale and zero-point initializers added.
    pub scale_bytes: u64,
    pub opset_from: i64,
    pub opset_to: i64,
    /// Tensors whose calibration range came from a fallback (the table says which).
    pub fallback_ranges: Vec<String>,
}

/// An activation tensor that gets a Q/DQ pair: its storage type, its scale (for that type) and
/// the nodes to rewire (`None`: every consumer).
pub(super) struct PlannedActivation {
    pub ty: ActivationType,
    pub scale: f32,
    pub consumers: Option<BTreeSet<String>>,
}

/// Step 1: the scale of every tensor the plan puts a Q/DQ pair on, checked against the table
/// before the graph is touched (a missing or non-positive scale is an error naming the tensor).
fn activation_scales(
    plan: &QdqPlan,
    table: &CalibrationTable,
    report: &mut InsertQdqReport,
) -> Result<BTreeMap<String, PlannedActivation>> {
    let mut out = BTreeMap::new();
    for (t, consumers) in plan.consumers() {
        let r = table.tensors.get(&t).ok_or_else(|| ExportError::Table {
            tensor: t.clone(),
            reason:
                "no range in the calibration table (was it calibrated with this model and policy?)"
                    .into(),
        })?;
        if !(r.scale.is_finite() && r.scale > 0.0) {
            return Err(ExportError::Table {
                tensor: t.clone(),
                reason: format!(
                    "scale {} is not a positive finite number (amax {})",
                    r.scale, r.amax
                ),
            });
        }
        if r.fallback.is_some() {
            report.fallback_ranges.push(t.clone());
        }
        let ty = plan.activation_type(&t);
        out.insert(
            t,
            PlannedActivation {
                ty,
                scale: ty.scale(r.scale),
                consumers,
            },
        );
    }
    Ok(out)
}

/// Inserts Q/DQ as planned, with activation scales from `table`. See the module docs of
/// [`crate::passes`] for the names; the model's opset is raised to at least 13 (per-axis
/// DequantizeLinear) when the ops present allow it. Nodes stay in a valid topological order:
/// weight DQs first, each activation's Q/DQ right after the tensor's producer (or first, for a
/// graph input).
pub fn insert_qdq(
    model: &ModelProto,
    plan: &QdqPlan,
    table: &CalibrationTable,
) -> Result<(ModelProto, InsertQdqReport)> {
    let mut m = model.clone();
    let opset_from = default_opset(&m).unwrap_or(0);
    let mut report = InsertQdqReport {
        target: Some(plan.target),
        quantized_nodes: plan.quantized.len(),
        skipped: plan.skipped.len(),
        residual_adds: plan.residual_adds.len(),
        opset_from,
        opset_to: opset_from,
        ..Default::default()
    };
    for s in &plan.skipped {
        log::debug!(
            "insert QDQ: {} ({}) stays float: {}",
            s.node,
            s.op,
            s.reason
        );
    }
    let activations = activation_scales(plan, table, &mut report)?;
    if plan.quantized.is_empty() && activations.is_empty() {
        log::info!("insert QDQ: the plan quantizes no node and no tensor; the model is unchanged");
        return Ok((m, report));
    }

    if opset_from < QDQ_MIN_OPSET {
        raise_opset(&mut m, QDQ_MIN_OPSET)?;
    }
    report.opset_to = default_opset(&m).unwrap_or(QDQ_MIN_OPSET);
    let graph = m.graph.mut_or_insert_default();

    let resolved = resolve::resolve(graph, plan, activations)?;
    let mut names = rewrite::Names::new(graph);
    let mut new = rewrite::Insertions::default();
    rewrite::quantize_weights(graph, &resolved.weights, &mut names, &mut new, &mut report)?;
    rewrite::quantize_activations(
        graph,
        &resolved.activations,
        &mut names,
        &mut new,
        &mut report,
    )?;
    rewrite::apply(graph, new, &resolved.weights, &mut report);
    Ok((m, report))
}
