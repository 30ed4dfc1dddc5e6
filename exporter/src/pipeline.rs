//! The quantize pipeline: table + policy + model → QDQ model, with its plan, report and size.
//!
//! The CLI and the sensitivity driver both go through here, so "quantize these groups" means
//! the same thing everywhere.

use std::collections::BTreeSet;
use std::path::Path;

use calibration::CalibrationTable;
use onnx_protobuf::ModelProto;
use serde::Serialize;

use crate::graph::GraphIndex;
use crate::groups::node_id;
use crate::onnx::is_default_op;
use crate::passes::smooth::{channel_stats, smoothed_table};
use crate::passes::{
    dynamic_int8, insert_qdq, smooth_quant, to_float16, DynamicReport, InsertQdqReport,
    SmoothOptions, SmoothReport,
};
use crate::policy::{plan, QdqPlan, QuantMode, QuantPolicy, Target, NOT_SELECTED};
use crate::size::{deployable_size, SizeReport};
use crate::ExportError;

type Result<T> = std::result::Result<T, ExportError>;

/// Reads a calibration table: voxq JSON, or a TensorRT calibration cache (text).
pub fn read_table(path: &Path) -> Result<CalibrationTable> {
    let text =
        crate::textfile::read_text(path, "a calibration table").map_err(|e| ExportError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    let parsed = if text.trim_start().starts_with('{') {
        CalibrationTable::from_json(&text)
    } else {
        CalibrationTable::from_trt_cache(&text)
    };
    parsed.map_err(|e| ExportError::TableFile {
        path: path.to_path_buf(),
        reason: table_file_reason(e),
    })
}

/// Why a file is not a usable table, with the words "calibration table" once.
fn table_file_reason(e: calibration::CalibError) -> String {
    use calibration::CalibError;
    match e {
        CalibError::Table(r) if r.starts_with("not a ") => r,
        CalibError::Table(r) => format!("not a calibration table: {r}"),
        CalibError::TableLine { line, reason } => {
            format!("not a calibration table: line {line}: {reason}")
        }
        CalibError::Tensor { tensor, reason } => {
            format!("bad calibration table: tensor '{tensor}': {reason}")
        }
        CalibError::Config(r) => format!("bad calibration table: {r}"),
    }
}

/// Nodes whose op is outside the standard ONNX domain: left untouched and reported.
pub fn unknown_ops(model: &ModelProto) -> Vec<(String, String)> {
    model
        .graph
        .node
        .iter()
        .filter(|n| !is_default_op(n))
        .map(|n| (n.name.clone(), format!("{}::{}", n.domain, n.op_type)))
        .collect()
}

/// Refuses a table that names tensors the model does not have (a table of another model).
pub fn check_table_matches(model: &ModelProto, table: &CalibrationTable) -> Result<()> {
    let ix = GraphIndex::new(&model.graph);
    let known: BTreeSet<&str> = model
        .graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().chain(n.input.iter()))
        .map(String::as_str)
        .chain(model.graph.input.iter().map(|v| v.name.as_str()))
        .collect();
    let missing: Vec<&String> = table
        .tensors
        .keys()
        .filter(|t| !known.contains(t.as_str()) && !ix.is_initializer(t))
        .collect();
    if let Some(first) = missing.first() {
        return Err(ExportError::Table {
            tensor: (*first).clone(),
            reason: format!(
                "not in the model ({} of the table's {} tensors are missing; is the table from another model?)",
                missing.len(),
                table.tensors.len()
            ),
        });
    }
    Ok(())
}

/// Everything one quantization produced.
pub struct Quantized {
    pub model: ModelProto,
    /// What SmoothQuant migrated first ([`QuantMode::Smooth`] nodes; `None` when none).
    pub smooth: Option<SmoothReport>,
    pub plan: QdqPlan,
    pub report: InsertQdqReport,
    /// What the dynamic int8 pass converted ([`QuantMode::Dynamic`] nodes; `None` when none).
    pub dynamic: Option<DynamicReport>,
    pub unknown_ops: Vec<(String, String)>,
}

/// Refuses dynamic int8 for TensorRT, which has no `MatMulInteger`/`DynamicQuantizeLinear`.
fn check_dynamic_target(policy: &QuantPolicy) -> Result<()> {
    let dynamic = policy.mode == QuantMode::Dynamic
        || policy.node_modes.values().any(|m| *m == QuantMode::Dynamic);
    if dynamic && policy.target == Target::Tensorrt {
        return Err(ExportError::Policy(
            "dynamic int8 runs on ONNX Runtime or OpenVINO CPU (target ort-cpu or openvino); TensorRT has no MatMulInteger/DynamicQuantizeLinear".into(),
        ));
    }
    Ok(())
}

/// Refuses a plan that quantizes no weighted node, saying why each was left in float.
/// Commands that write an int8 model call this (through [`check_quantizable`] before any
/// calibration work); the sensitivity driver measures such variants as they are.
pub fn require_quantized(plan: &QdqPlan) -> Result<()> {
    if !plan.quantized.is_empty() {
        return Ok(());
    }
    let skipped = &plan.skipped;
    if skipped.is_empty() {
        return Err(ExportError::NothingToQuantize(
            "the model has no weighted node (Conv, ConvTranspose, Gemm, MatMul) the policy quantizes"
                .into(),
        ));
    }
    let unselected = skipped.iter().filter(|s| s.reason == NOT_SELECTED).count();
    if unselected == skipped.len() {
        return Err(ExportError::NothingToQuantize(format!(
            "the node selection (--groups/--include/--exclude) leaves none of the model's {} weighted nodes",
            skipped.len()
        )));
    }
    let others = skipped.len() - unselected;
    let examples: Vec<String> = skipped
        .iter()
        .filter(|s| s.reason != NOT_SELECTED)
        .take(3)
        .map(|s| format!("node '{}' ({}): {}", s.node, s.op, s.reason))
        .collect();
    Err(ExportError::NothingToQuantize(format!(
        "none of the model's {} weighted nodes can be quantized ({unselected} not selected, {others} refused: {}{})",
        skipped.len(),
        examples.join("; "),
        if others > examples.len() { "; …" } else { "" }
    )))
}

/// The plan of quantizing `model` under `policy`, refused when the model already holds Q/DQ
/// nodes or the plan quantizes nothing: the check to run before calibrating or quantizing.
pub fn check_quantizable(model: &ModelProto, policy: &QuantPolicy) -> Result<QdqPlan> {
    refuse_qdq_model(model)?;
    check_dynamic_target(policy)?;
    let p = plan(model, policy)?;
    require_quantized(&p)?;
    Ok(p)
}

/// Refuses a model that already holds Q/DQ nodes: quantizing it again would stack scales on
/// scales (or, as its weights sit behind DequantizeLinear, quantize nothing).
pub fn refuse_qdq_model(model: &ModelProto) -> Result<()> {
    let count = |op: &str| model.graph.node.iter().filter(|n| n.op_type == op).count();
    let (q, dq) = (count("QuantizeLinear"), count("DequantizeLinear"));
    if q + dq > 0 {
        return Err(ExportError::NothingToQuantize(format!(
            "the model is already quantized ({q} QuantizeLinear and {dq} DequantizeLinear nodes); quantize the fp32 model it was made from"
        )));
    }
    Ok(())
}

/// Plans, inserts Q/DQ and optionally casts the float rest to float16. A model that already
/// holds Q/DQ nodes is refused ([`refuse_qdq_model`]).
pub fn quantize(
    model: &ModelProto,
    table: &CalibrationTable,
    policy: &QuantPolicy,
    float16: bool,
) -> Result<Quantized> {
    quantize_with(model, Some(table), policy, float16)
}

/// [`quantize`] with the table optional: a plan that puts Q/DQ on no activation (weight-only,
/// [`crate::policy::QuantMode::WeightOnly`]) needs none; any other plan without a table is
/// refused, naming the first tensor that needs a range.
pub fn quantize_with(
    model: &ModelProto,
    table: Option<&CalibrationTable>,
    policy: &QuantPolicy,
    float16: bool,
) -> Result<Quantized> {
    refuse_qdq_model(model)?;
    check_dynamic_target(policy)?;
    if let Some(t) = table {
        check_table_matches(model, t)?;
    }
    let (smoothed, smooth, smoothed_tab) = smooth_first(model, table, policy)?;
    let (model, table) = match (&smoothed, &smoothed_tab) {
        (Some(m), Some(t)) => (m, Some(t)),
        _ => (model, table),
    };
    let plan = plan(model, policy)?;
    let empty;
    let table = match table {
        Some(t) => t,
        None => {
            if let Some(first) = plan.activations.iter().next() {
                return Err(ExportError::Table {
                    tensor: first.clone(),
                    reason: format!(
                        "the {} placement quantizes {} activation tensors and no calibration table was given (weight-only int8 needs none)",
                        policy.mode, plan.activations.len()
                    ),
                });
            }
            empty = CalibrationTable {
                format: calibration::table::TABLE_FORMAT.to_string(),
                method: "none (weight-only)".into(),
                tensors: Default::default(),
            };
            &empty
        }
    };
    let (mut q, report) = insert_qdq(model, &plan, table)?;
    let dynamic = dynamic_nodes(model, &plan, policy);
    let dynamic = if dynamic.is_empty() {
        None
    } else {
        let (d, r) = dynamic_int8(&q, &dynamic)?;
        log::info!(
            "dynamic int8: {} MatMuls over {} activations ({} left weight-only)",
            r.converted.len(),
            r.activations,
            r.skipped.len()
        );
        for (o, why) in &r.skipped {
            log::debug!("dynamic int8 skips '{o}': {why}");
        }
        q = d;
        Some(r)
    };
    if float16 {
        q = to_float16(&q)?;
    }
    Ok(Quantized {
        model: q,
        smooth,
        plan,
        report,
        dynamic,
        unknown_ops: unknown_ops(model),
    })
}

/// The first outputs of the planned nodes in [`QuantMode::Dynamic`] (names survive the Q/DQ
/// insertion; `{op}#{index}` ids of unnamed nodes do not).
fn dynamic_nodes(model: &ModelProto, plan: &QdqPlan, policy: &QuantPolicy) -> BTreeSet<String> {
    let g = &model.graph;
    let ids: BTreeSet<&str> = plan
        .quantized
        .iter()
        .filter(|p| policy.mode_of(&p.node) == QuantMode::Dynamic)
        .map(|p| p.node.as_str())
        .collect();
    (0..g.node.len())
        .filter(|&i| ids.contains(node_id(g, i).as_str()))
        .filter_map(|i| g.node[i].output.first().cloned())
        .collect()
}

/// [`QuantMode::Smooth`]: SmoothQuant over the selected smooth-mode nodes, with the table's
/// ranges of the smoothed tensors rescaled. `(None, None, None)` when no node is in that mode.
#[allow(clippy::type_complexity)]
fn smooth_first(
    model: &ModelProto,
    table: Option<&CalibrationTable>,
    policy: &QuantPolicy,
) -> Result<(
    Option<ModelProto>,
    Option<SmoothReport>,
    Option<CalibrationTable>,
)> {
    if !policy.smooths() {
        return Ok((None, None, None));
    }
    let Some(table) = table else {
        return Err(ExportError::Policy(
            "smooth int8 needs a calibration table (with per-channel maxima)".into(),
        ));
    };
    let stats = channel_stats(table);
    if stats.is_empty() {
        return Err(ExportError::Policy(
            "smooth int8: the calibration table has no per-channel maxima (a table from before they were collected, or from a calibration that does not keep them); calibrate again".into(),
        ));
    }
    let g = &model.graph;
    let nodes = (0..g.node.len())
        .map(|i| node_id(g, i))
        .filter(|id| policy.mode_of(id) == QuantMode::Smooth)
        .filter(|id| policy.nodes.as_ref().is_none_or(|s| s.contains(id)))
        .collect();
    let opts = SmoothOptions {
        nodes: Some(nodes),
        ..SmoothOptions::default()
    };
    let (m, report) = smooth_quant(model, &stats, &opts)?;
    log::info!(
        "smoothed {} LayerNorm outputs ({} left alone)",
        report.smoothed.len(),
        report.skipped.len()
    );
    let t = smoothed_table(table, &report);
    Ok((Some(m), Some(report), Some(t)))
}

/// Sizes of the fp32 input and the quantized output, side by side.
#[derive(Debug, Clone, Serialize)]
pub struct SizeComparison {
    pub fp32: SizeReport,
    pub quantized: SizeReport,
}

pub fn compare_sizes(fp32: &ModelProto, quantized: &ModelProto) -> SizeComparison {
    SizeComparison {
        fp32: deployable_size(fp32, None),
        quantized: deployable_size(quantized, None),
    }
}
