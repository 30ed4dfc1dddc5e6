//! Dynamic int8: a MatMul that reads its constant weight through an int8 `DequantizeLinear`
//! (what weight-only int8 wrote) becomes
//! `DynamicQuantizeLinear(x) → MatMulInteger(x_q, W_q, x_zp, W_zp) → Cast → Mul(x_scale·W_scale)`,
//! so ONNX Runtime runs an integer GEMM on an activation quantized from its own range at run
//! time (uint8, asymmetric, one scale per tensor per run), fused into its
//! `DynamicQuantizeMatMul` kernel.
//!
//! Why: per-tensor int8 activations from a calibrated range clip the few outlier channels of a
//! transformer's LayerNorm/GELU outputs, and weight-only int8 keeps float kernels. A range
//! computed per run is never exceeded (nothing clips) and, in a decoder step over one token,
//! is that token's own range. What ONNX Runtime's `quantize_dynamic` produces and CTranslate2's
//! int8 does (per row there).
//!
//! Not for every model: per-tensor ranges computed per run still let a few outlier channels set
//! the scale of a whole row. Whisper tiny.en keeps its WER with a dynamic decoder and encoder
//! blocks 2-3; SmolLM2-135M with every MatMul dynamic loses the trained audio LLM (held-out WER
//! 88.8% → 211.8%), where weight-only keeps it. Let the per-group search choose.
//!
//! The pass takes the MatMul nodes by their first output's name (stable across the Q/DQ
//! insertion, unlike the `{op}#{index}` ids of unnamed nodes). A candidate is left as it is
//! (weight-only int8), with the reason in [`DynamicReport::skipped`], when: its weight is not
//! the output of a `DequantizeLinear` of an int8 initializer `[K, N]` with a scalar or per-column
//! (`axis` 1) scale and zero point; or the model's opset is below 11 (no
//! `DynamicQuantizeLinear`). One `DynamicQuantizeLinear` serves every converted reader of one
//! activation; a weight `DequantizeLinear` nobody reads any more is removed (its int8 weight,
//! scale and zero point are what `MatMulInteger` and the rescale read).
//!
//! Names: `{x}_dynq` (node and outputs `{x}_dynq`, `{x}_dynq_scale`, `{x}_dynq_zero_point`);
//! for a MatMul whose output is `y`: `{y}_int` (MatMulInteger), `{y}_int_float` (Cast),
//! `{y}_scale` (the scale product), and the final Mul writes `y` itself.

use std::collections::{BTreeMap, BTreeSet};

use onnx_protobuf::{ModelProto, NodeProto};
use serde::Serialize;

use super::opset::default_opset;
use super::tensors::{named, NameSet};
use super::Result;
use crate::model::elem;
use crate::onnx::builders::{int_attr, node};
use crate::onnx::{attr_int, is_default_op};

/// First default-domain opset with `DynamicQuantizeLinear` (MatMulInteger: 10).
pub const DYNAMIC_MIN_OPSET: i64 = 11;

/// What [`dynamic_int8`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DynamicReport {
    /// Output names of the MatMuls now run as dynamic int8.
    pub converted: Vec<String>,
    /// (MatMul output, why it stayed weight-only).
    pub skipped: Vec<(String, String)>,
    /// Activations quantized at run time (one `DynamicQuantizeLinear` each).
    pub activations: usize,
    /// Weight `DequantizeLinear` nodes removed (no reader left).
    pub removed_dq: usize,
}

/// The int8 weight behind a MatMul's `B` input: (DQ node index, quantized, scale, zero point).
struct Weight {
    dq: usize,
    q: String,
    scale: String,
    zero: String,
}

/// Why the MatMul `n`'s weight is not an int8 `[K, N]` behind a scalar or per-column
/// DequantizeLinear, or the weight.
fn int8_weight(
    m: &ModelProto,
    producer: &BTreeMap<&str, usize>,
    n: &NodeProto,
) -> std::result::Result<Weight, String> {
    let g = &m.graph;
    let b = n.input.get(1).ok_or("MatMul has no second input")?;
    let &dq = producer
        .get(b.as_str())
        .ok_or("the weight is not the output of a DequantizeLinear (not quantized)")?;
    let d = &g.node[dq];
    if d.op_type != "DequantizeLinear" || !is_default_op(d) || d.input.len() < 3 {
        return Err(format!(
            "the weight comes from a {} node, not a DequantizeLinear with a zero point",
            d.op_type
        ));
    }
    let init = |name: &str| g.initializer.iter().find(|t| t.name == name);
    let q = init(&d.input[0]).ok_or("the quantized weight is not an initializer")?;
    if q.data_type != elem::INT8 || q.dims.len() != 2 {
        return Err(format!(
            "the quantized weight is not int8 [K, N] (type {}, dims {:?})",
            q.data_type, q.dims
        ));
    }
    let cols = q.dims[1];
    let s = init(&d.input[1]).ok_or("the weight scale is not an initializer")?;
    let z = init(&d.input[2]).ok_or("the weight zero point is not an initializer")?;
    let per_column = match s.dims.as_slice() {
        [] => false,
        [c] if *c == cols => true,
        other => {
            return Err(format!(
                "the weight scale has dims {other:?}, not [] or [{cols}]"
            ))
        }
    };
    if per_column && !matches!(attr_int(d, "axis"), Some(1) | Some(-1)) {
        return Err("the weight is quantized per row (axis 0), not per output column".into());
    }
    if z.dims != s.dims || z.data_type != elem::INT8 || s.data_type != elem::FLOAT {
        return Err("the weight zero point/scale are not int8/float32 of the scale's shape".into());
    }
    Ok(Weight {
        dq,
        q: q.name.clone(),
        scale: s.name.clone(),
        zero: z.name.clone(),
    })
}

/// Rewrites the weight-only int8 MatMuls whose first output is in `outputs` into dynamic int8.
pub fn dynamic_int8(
    model: &ModelProto,
    outputs: &BTreeSet<String>,
) -> Result<(ModelProto, DynamicReport)> {
    let mut report = DynamicReport::default();
    let g = &model.graph;
    if default_opset(model).unwrap_or(0) < DYNAMIC_MIN_OPSET {
        for o in outputs {
            report.skipped.push((
                o.clone(),
                format!(
                    "the model's opset is below {DYNAMIC_MIN_OPSET} (no DynamicQuantizeLinear)"
                ),
            ));
        }
        return Ok((model.clone(), report));
    }
    let mut producer: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for o in &n.output {
            producer.insert(o.as_str(), i);
        }
    }
    // MatMul index → its weight
    let mut convert: BTreeMap<usize, Weight> = BTreeMap::new();
    for (i, n) in g.node.iter().enumerate() {
        let Some(out) = n.output.first().filter(|o| outputs.contains(*o)) else {
            continue;
        };
        if n.op_type != "MatMul" || !is_default_op(n) {
            report
                .skipped
                .push((out.clone(), format!("a {} node, not a MatMul", n.op_type)));
            continue;
        }
        match int8_weight(model, &producer, n) {
            Ok(w) => {
                convert.insert(i, w);
            }
            Err(why) => report.skipped.push((out.clone(), why)),
        }
    }
    // a weight DQ goes when every reader of its output is converted
    let mut readers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for x in &n.input {
            readers.entry(x.as_str()).or_default().push(i);
        }
    }
    let graph_outputs: BTreeSet<&str> = g.output.iter().map(|v| v.name.as_str()).collect();
    let removed: BTreeSet<usize> = convert
        .values()
        .map(|w| w.dq)
        .filter(|&dq| {
            let out = g.node[dq].output[0].as_str();
            !graph_outputs.contains(out)
                && readers
                    .get(out)
                    .is_none_or(|r| r.iter().all(|i| convert.contains_key(i)))
        })
        .collect();
    let mut names = NameSet::new(g, false);
    let taken =
        "a name the dynamic int8 pass gives already exists (is the model quantized already?)";
    // activation → (x_q, x_scale, x_zero_point)
    let mut quantized_acts: BTreeMap<String, [String; 3]> = BTreeMap::new();
    let mut nodes: Vec<NodeProto> = Vec::with_capacity(g.node.len() + 4 * convert.len());
    for (i, n) in g.node.iter().enumerate() {
        if removed.contains(&i) {
            report.removed_dq += 1;
            continue;
        }
        let Some(w) = convert.get(&i) else {
            nodes.push(n.clone());
            continue;
        };
        let x = &n.input[0];
        let y = &n.output[0];
        if !quantized_acts.contains_key(x) {
            let base = names.fresh(format!("{x}_dynq"), taken)?;
            let s = names.fresh(format!("{x}_dynq_scale"), taken)?;
            let z = names.fresh(format!("{x}_dynq_zero_point"), taken)?;
            nodes.push(named(
                node("DynamicQuantizeLinear", &[x], &[&base, &s, &z]),
                &base,
            ));
            quantized_acts.insert(x.clone(), [base, s, z]);
            report.activations += 1;
        }
        let [xq, xs, xz] = &quantized_acts[x];
        let int = names.fresh(format!("{y}_int"), taken)?;
        let float = names.fresh(format!("{y}_int_float"), taken)?;
        let scale = names.fresh(format!("{y}_scale"), taken)?;
        nodes.push(named(
            node("MatMulInteger", &[xq, &w.q, xz, &w.zero], &[&int]),
            &int,
        ));
        let mut cast = named(node("Cast", &[&int], &[&float]), &float);
        cast.attribute.push(int_attr("to", elem::FLOAT as i64));
        nodes.push(cast);
        nodes.push(named(node("Mul", &[xs, &w.scale], &[&scale]), &scale));
        let name = if n.name.is_empty() {
            names.fresh(format!("{y}_rescale"), taken)?
        } else {
            n.name.clone()
        };
        nodes.push(named(node("Mul", &[&float, &scale], &[y]), &name));
        report.converted.push(y.clone());
    }
    let mut out = model.clone();
    out.graph.mut_or_insert_default().node = nodes;
    Ok((out, report))
}
