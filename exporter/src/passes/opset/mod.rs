//! The opset-raising pass: moves a model to a newer default-domain opset when every op present
//! is unchanged or changed compatibly between the two. The op history is data
//! ([`history`]); the per-node upgrades are in [`adapt`].

mod adapt;
mod history;

use std::collections::BTreeSet;

use onnx_protobuf::{GraphProto, ModelProto, OperatorSetIdProto};

use super::tensors::collect_names;
use super::{graph_err, Result};
use crate::groups::node_id;
use crate::onnx::{is_default_domain, is_default_op};
use crate::ExportError;

/// The default-domain opset a model imports.
pub fn default_opset(model: &ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .find(|o| is_default_domain(&o.domain))
        .map(|o| o.version)
}

/// The IR version a model needs for a default-domain opset.
fn ir_for_opset(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

fn raise_graph(g: &mut GraphProto, from: i64, to: i64, used: &mut BTreeSet<String>) -> Result<()> {
    let mut inits = Vec::new();
    for i in 0..g.node.len() {
        let id = node_id(g, i);
        let n = &mut g.node[i];
        for a in n.attribute.iter_mut() {
            if let Some(sg) = a.g.as_mut() {
                raise_graph(sg, from, to, used)?;
            }
            for sg in a.graphs.iter_mut() {
                raise_graph(sg, from, to, used)?;
            }
        }
        if !is_default_op(n) {
            log::debug!(
                "raise opset: {id}: op {}::{} is outside the default domain; left as it is",
                n.domain,
                n.op_type
            );
            continue;
        }
        let Some(versions) = history::history().versions(&n.op_type) else {
            return Err(graph_err(
                &id,
                format!(
                    "op {} is not a standard ONNX op up to opset {to}; cannot raise the opset from {from}",
                    n.op_type
                ),
            ));
        };
        for &v in versions.iter().filter(|&&v| v > from && v <= to) {
            adapt::adapt(n, v, &mut inits, used).map_err(|why| {
                graph_err(
                    &id,
                    format!(
                        "op {} blocks raising the opset from {from} to {to}: {why}",
                        n.op_type
                    ),
                )
            })?;
        }
    }
    g.initializer.extend(inits);
    Ok(())
}

/// Raises the default-domain opset to `to` (and the IR version to what that opset needs),
/// when every op present is unchanged between the two opsets or changed compatibly; the
/// attribute→input moves (`axes`, `split`, Dropout `ratio`) are done here. Otherwise the error
/// names the first node and op that block it. Returns the previous opset. Models older than
/// opset 7 are refused.
pub fn raise_opset(model: &mut ModelProto, to: i64) -> Result<i64> {
    let from = default_opset(model).unwrap_or(to);
    if from >= to {
        return Ok(from);
    }
    if from < 7 {
        return Err(ExportError::Policy(format!(
            "the model uses opset {from}; voxq raises opsets from 7 on (convert it with onnx.version_converter first)"
        )));
    }
    let mut used = BTreeSet::new();
    collect_names(&model.graph, true, &mut used);
    raise_graph(model.graph.mut_or_insert_default(), from, to, &mut used)?;
    if !model.functions.is_empty() {
        log::warn!(
            "model functions keep their own opset imports; only the main graph was raised to opset {to}"
        );
    }
    match model
        .opset_import
        .iter_mut()
        .find(|o| is_default_domain(&o.domain))
    {
        Some(o) => o.version = to,
        None => model.opset_import.push(OperatorSetIdProto {
            domain: String::new(),
            version: to,
            ..Default::default()
        }),
    }
    model.ir_version = model.ir_version.max(ir_for_opset(to));
    Ok(from)
}
