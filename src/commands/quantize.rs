//! `voxq quantize`: int8 QuantizeLinear/DequantizeLinear nodes from a calibration table (or,
//! in weight-only and dynamic mode, without one), the size comparison, an optional JSON report
//! and (for TensorRT) the Q/DQ placement check.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use exporter::groups::{select, LayerGroups};
use exporter::inspect::check_qdq;
use exporter::model::{load, to_bytes};
use exporter::pipeline::{check_quantizable, compare_sizes, quantize_with, read_table};
use exporter::policy::{QuantMode, QuantPolicy, Target};

use super::mib;
use super::sensitivity::ModeArg;
use crate::args::{min_channels, selectors, QuantTarget, SelectArgs};
use crate::outputs::{self, Form, Input, Output};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq quantize fixtures/models/campplus.onnx --table out/demo/entropy.json --out campplus.int8.onnx\n  voxq quantize fixtures/models/campplus.onnx --table out/demo/entropy.json --target ort-cpu --groups preset:campplus --report report.json --out campplus.ort-int8.onnx\n  voxq quantize .cache/llm/smollm2/onnx/decoder.onnx --mode dynamic --target ort-cpu --out decoder.int8.onnx";

#[derive(Args)]
pub(crate) struct QuantizeArgs {
    /// fp32 ONNX model (a JSON config beside it is copied for the output).
    model: PathBuf,
    /// Calibration table (JSON) from `voxq calibrate`, or a TensorRT calibration cache (full and
    /// smooth modes; weight-only and dynamic take none).
    #[arg(long)]
    table: Option<PathBuf>,
    /// full (int8 weights and activations from --table), smooth (SmoothQuant, then full),
    /// dynamic (int8 MatMul weights, activations quantized per run; ort-cpu/openvino; no table)
    /// or weight-only (int8 weights, float activations; no table).
    #[arg(long, value_enum, default_value = "full")]
    mode: ModeArg,
    /// Output QDQ model.
    #[arg(long)]
    out: PathBuf,
    /// QDQ placement: tensorrt (Q/DQ on weighted-op inputs), ort-cpu (also on their outputs) or
    /// openvino (tensorrt inputs, adjusted around Concats for OpenVINO's CPU plugin).
    #[arg(long, value_enum, ignore_case = true, default_value_t = QuantTarget::Tensorrt)]
    target: QuantTarget,
    #[command(flatten)]
    select: SelectArgs,
    /// Convs with fewer input or output channels are left in float [range: [0, 65536]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 16, value_parser = min_channels())]
    min_channels: usize,
    /// Cast the parts left in float to float16 (TensorRT strongly typed builds).
    #[arg(long)]
    float16: bool,
    /// Write a JSON report (quantized/skipped nodes, Q/DQ counts, fp32 and int8 sizes) here.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The model's JSON config (if any) for the output beside `out`: pointing at the new ONNX file,
/// named `<name>-<suffix>`, without the fp32 threshold. `None` when the model has no config.
pub(crate) fn config_for(model: &Path, out: &Path, suffix: &str) -> Result<Option<Vec<u8>>> {
    let cfg = model.with_extension("json");
    if !cfg.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&cfg).with_context(|| cfg.display().to_string())?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", cfg.display()))?;
    let file = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    v["onnx"] = file.into();
    if let Some(name) = v["name"].as_str() {
        v["name"] = format!("{name}-{suffix}").into();
    }
    // A threshold calibrated for the fp32 model does not carry over.
    if let Some(o) = v.as_object_mut() {
        o.remove("threshold");
    }
    Ok(Some(serde_json::to_string_pretty(&v)?.into_bytes()))
}

/// The outputs a quantized model `out` comes with: the model and, when the input model has a
/// JSON config, that config rewritten beside it (`X.onnx` + `X.json`).
pub(crate) fn model_outputs(label: &str, model: &Path, out: &Path) -> Vec<Output> {
    let mut v = vec![Output::new(label, out.to_path_buf(), Form::File)];
    if model.with_extension("json").is_file() {
        v.push(Output::new(
            format!("the config written beside {label}"),
            out.with_extension("json"),
            Form::File,
        ));
    }
    v
}

pub(crate) fn run(a: &QuantizeArgs) -> Result<()> {
    let mode = QuantMode::from(a.mode);
    match (&a.table, mode.needs_table()) {
        (None, true) => bail!(
            "--table: {mode} int8 needs a calibration table (weight-only and dynamic need none)"
        ),
        (Some(_), false) => {
            bail!("--table: {mode} int8 uses no calibrated range, so it takes no calibration table")
        }
        _ => {}
    }
    let mut inputs = outputs::model_with_config(&a.model);
    if let Some(t) = &a.table {
        inputs.push(Input::new("the calibration table", t));
    }
    let mut outs = model_outputs("--out", &a.model, &a.out);
    outs.extend(outputs::stream("--report", &a.report));
    outputs::check(&inputs, &outs)?;
    let mut say = outputs::summary(&outs);
    let proto = load(&a.model)?;
    let table = a.table.as_deref().map(read_table).transpose()?;
    let target: Target = a.target.into();
    let groups = LayerGroups::resolve(&proto.graph, &a.select.groups)?;
    let nodes = select(
        &proto.graph,
        &groups,
        &selectors(&a.select.include)?,
        &selectors(&a.select.exclude)?,
    )?;
    let policy = QuantPolicy {
        target,
        min_channels: a.min_channels,
        nodes: Some(nodes),
        mode,
        ..QuantPolicy::default()
    };
    // A QDQ model, or a selection that quantizes nothing: refused, naming the model.
    check_quantizable(&proto, &policy).with_context(|| a.model.display().to_string())?;
    // A table that does not fit the model: the error names the table file.
    let q = quantize_with(&proto, table.as_ref(), &policy, a.float16).map_err(|e| {
        match (e, &a.table) {
            (e @ exporter::ExportError::Table { .. }, Some(t)) => {
                anyhow::anyhow!("{}: {e}", t.display())
            }
            (e, _) => e.into(),
        }
    })?;
    // The model, its config and the report rendered first, then written as one.
    let mut files: Vec<(&Path, Vec<u8>)> = vec![(a.out.as_path(), to_bytes(&q.model)?)];
    let cfg_out = a.out.with_extension("json");
    if let Some(cfg) = config_for(&a.model, &a.out, &format!("int8-{}", a.target))? {
        files.push((&cfg_out, cfg));
    }
    let sizes = compare_sizes(&proto, &q.model);
    writeln!(
        say,
        "quantized {} weighted node(s) ({mode}), {} left in float; {} Q and {} DQ nodes{}; wrote {}",
        q.plan.quantized.len(),
        q.plan.skipped.len(),
        q.report.q_nodes,
        q.report.dq_nodes - q.dynamic.as_ref().map_or(0, |d| d.removed_dq),
        q.dynamic
            .as_ref()
            .map(|d| format!(
                "; {} MatMuls dynamic int8 over {} activations",
                d.converted.len(),
                d.activations
            ))
            .unwrap_or_default(),
        a.out.display()
    )?;
    for s in &q.plan.skipped {
        log::info!("left in float: {} ({}): {}", s.node, s.op, s.reason);
    }
    if !q.unknown_ops.is_empty() {
        let ops: BTreeSet<&str> = q.unknown_ops.iter().map(|(_, op)| op.as_str()).collect();
        writeln!(
            say,
            "passed through untouched: {} node(s) of ops voxq does not know: {}",
            q.unknown_ops.len(),
            ops.into_iter().collect::<Vec<_>>().join(", ")
        )?;
    }
    writeln!(
        say,
        "deployable size: fp32 {:.2} MiB -> int8 {:.2} MiB ({:.1}% smaller)",
        mib(sizes.fp32.deployable_bytes),
        mib(sizes.quantized.deployable_bytes),
        100.0
            * (1.0
                - sizes.quantized.deployable_bytes as f64
                    / sizes.fp32.deployable_bytes.max(1) as f64)
    )?;
    if let Some(p) = &a.report {
        let r = serde_json::json!({
            "model": a.model.display().to_string(),
            "output": a.out.display().to_string(),
            "table": a.table.as_ref().map(|t| t.display().to_string()),
            "target": a.target.to_string(),
            "mode": mode.name(),
            "dynamic": q.dynamic,
            "quantized_nodes": q.plan.quantized.len(),
            "skipped": q.plan.skipped.iter().map(|s| serde_json::json!({"node": s.node, "op": s.op, "reason": s.reason})).collect::<Vec<_>>(),
            "unknown_ops": q.unknown_ops,
            "report": q.report,
            "sizes": sizes,
        });
        files.push((p, serde_json::to_string_pretty(&r)?.into_bytes()));
    }
    let refs: Vec<(&Path, &[u8])> = files.iter().map(|(p, b)| (*p, b.as_slice())).collect();
    outputs::write_all(&refs)?;
    if target == Target::Tensorrt {
        let v = check_qdq(&q.model);
        writeln!(say, "TensorRT QDQ rules: {} violation(s)", v.len())?;
        for x in &v {
            writeln!(say, "  {x}")?;
        }
    }
    Ok(())
}
