//! `Tile` that only repeats dimensions of size 1 becomes `Expand` (a broadcast): the same
//! values, without materialising copies through a generic tiling kernel. PyTorch exports
//! `x.repeat(1, 1, T)` of a pooled statistic (ECAPA-TDNN's attentive statistics pooling, the
//! global context beside every frame) as such a `Tile`; OpenVINO's CPU plugin runs `Tile` with a
//! reference kernel (1.1 ms of a 7.9 ms int8 ECAPA run at 3 s) and ONNX Runtime also gains
//! from the broadcast (measured in the note of issue 19).
//!
//! Exact by definition: `Tile(x, r)` and `Expand(x, r)` agree whenever every axis either has
//! repeat 1 or size 1 in `x` (Tile: `d·r`; Expand: `max(d, r)` broadcast), which
//! [`super::dims::Dims`] must prove from the graph for every axis; anything unproven is left
//! alone and logged (debug) with the reason.

use onnx_protobuf::ModelProto;

use super::dims::Dims;

/// What [`tile_to_expand`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TileReport {
    /// Names (or outputs, for unnamed nodes) of the `Tile` nodes that became `Expand`.
    pub rewritten: Vec<String>,
}

/// Rewrites every provably broadcast-only `Tile` of the main graph into `Expand`, in place of
/// the node (same inputs and outputs, so nothing else in the graph changes).
pub fn tile_to_expand(model: &ModelProto) -> (ModelProto, TileReport) {
    let mut out = model.clone();
    let mut report = TileReport::default();
    let Some(graph) = out.graph.as_mut() else {
        return (out, report);
    };
    let dims = Dims::infer(graph);
    for n in graph.node.iter_mut() {
        if n.op_type != "Tile" || !n.domain.is_empty() && n.domain != "ai.onnx" {
            continue;
        }
        let label = if n.name.is_empty() {
            n.output.first().cloned().unwrap_or_default()
        } else {
            n.name.clone()
        };
        match broadcast_only(&dims, n.input.first(), n.input.get(1)) {
            Ok(()) => {
                n.op_type = "Expand".into();
                report.rewritten.push(label);
            }
            Err(why) => log::debug!("Tile '{label}' kept: {why}"),
        }
    }
    (out, report)
}

/// Ok when every axis of `x` has size 1 or repeat 1 (statically).
fn broadcast_only(dims: &Dims, x: Option<&String>, repeats: Option<&String>) -> Result<(), String> {
    let (Some(x), Some(repeats)) = (x, repeats) else {
        return Err("missing input".into());
    };
    let shape = dims
        .shape(x)
        .ok_or_else(|| format!("rank of '{x}' not known"))?;
    let units: Vec<bool> = shape.iter().map(|&d| d == Some(1)).collect();
    let reps = dims
        .int_values(repeats)
        .ok_or_else(|| format!("repeats '{repeats}' are not a known vector"))?;
    if reps.len() != units.len() {
        return Err(format!(
            "{} repeats for rank {} (not provable)",
            reps.len(),
            units.len()
        ));
    }
    match units
        .iter()
        .zip(reps)
        .position(|(&one, &r)| !one && r != Some(1))
    {
        None => Ok(()),
        Some(k) => Err(format!(
            "axis {k} of '{x}' is not provably 1 and is repeated"
        )),
    }
}
