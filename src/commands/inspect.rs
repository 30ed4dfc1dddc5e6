//! `voxq inspect`: a model's layer groups, ops and sizes; with `--qdq`, its Q/DQ placement
//! checked against TensorRT's explicit-quantization rules.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use exporter::groups::LayerGroups;
use exporter::inspect::{check_qdq, inventory};
use exporter::model::load;

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq inspect fixtures/models/campplus.onnx --groups preset:campplus\n  voxq inspect campplus.int8.onnx --qdq --json";

#[derive(Args)]
pub(crate) struct InspectArgs {
    /// ONNX model (fp32 or QDQ).
    model: PathBuf,
    /// Layer groups: preset:NAME, depth=N, or a group spec JSON file.
    #[arg(long, default_value = "depth=2")]
    groups: String,
    /// Check Q/DQ placement against TensorRT's explicit-quantization rules (exit 1 on violations).
    #[arg(long)]
    qdq: bool,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: &InspectArgs) -> Result<()> {
    let proto = load(&a.model)?;
    let groups = LayerGroups::resolve(&proto.graph, &a.groups)?;
    let inv = inventory(&proto, &groups);
    let violations = if a.qdq { Some(check_qdq(&proto)) } else { None };
    if a.json {
        let v = serde_json::json!({"inventory": inv, "qdq_violations": violations.as_ref().map(|v| v.iter().map(|x| serde_json::json!({
            "rule": x.rule.to_string(), "node": x.node, "tensor": x.tensor, "detail": x.detail})).collect::<Vec<_>>())});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", inv.markdown());
        if let Some(v) = &violations {
            println!("\nTensorRT QDQ rules: {} violation(s)", v.len());
            for x in v {
                println!("- {x}");
            }
        }
    }
    if let Some(v) = violations {
        if !v.is_empty() {
            bail!(
                "{}: {} TensorRT QDQ rule violation(s)",
                a.model.display(),
                v.len()
            );
        }
    }
    Ok(())
}
