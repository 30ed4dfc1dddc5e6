//! QDQ passes: expose activations for calibration, insert QuantizeLinear/DequantizeLinear, fp16.
//!
//! - [`expose_activations`] copies a model and makes chosen intermediate tensors extra graph
//!   outputs, so a calibration run can read them.
//! - [`insert_qdq`] carries out a [`QdqPlan`] with ranges from a [`CalibrationTable`]:
//!   symmetric int8 (zero point 0, typed int8), weights stored as int8 initializers behind a
//!   per-channel `DequantizeLinear`, one shared `QuantizeLinear → DequantizeLinear` pair per
//!   activation tensor, rewiring only the consumers the plan names.
//! - [`to_float16`] casts the float rest of a (QDQ) model to float16 for strongly typed
//!   TensorRT builds, keeping the model's inputs and outputs float32.
//! - [`raise_opset`] moves a model to a newer default-domain opset where every op present is
//!   unchanged or changed compatibly (per ONNX's own version converter), with the few
//!   attribute-to-input rewrites the converter also does.
//!
//! Names are derived from the tensor served: `{weight}_quantized`, `{weight}_scale`,
//! `{weight}_zero_point`, node and output `{weight}_dq`; `{tensor}_scale`,
//! `{tensor}_zero_point`, node and output `{tensor}_q` and `{tensor}_dq`. A name that already
//! exists in the model is an error (quantizing a model twice), never a silent rename.

use crate::onnx::{f16_bits_to_f32, f32_to_f16_bits};
use std::collections::{BTreeMap, BTreeSet};

use calibration::CalibrationTable;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TypeProto, ValueInfoProto,
};
use serde::Serialize;

use crate::graph::GraphIndex;
use crate::groups::node_id;
use crate::model::{elem, elem_type_name, num_elements, tensor_data_bytes};
use crate::onnx::builders::{int_attr as attr_int, node};
use crate::policy::{QdqPlan, Target};
use crate::ExportError;

type Result<T> = std::result::Result<T, ExportError>;

/// The scale given to a weight channel whose values are all zero. Any positive scale
/// quantizes zeros to 0; this one is the smallest normal float16, so the scale stays positive
/// (and normal) after [`to_float16`]. TensorRT rejects scales that are not > 0.
pub const ZERO_CHANNEL_SCALE: f32 = 6.103_515_6e-5; // 2^-14

/// The smallest opset with per-axis `DequantizeLinear` (and int8 `QuantizeLinear` outputs).
pub const QDQ_MIN_OPSET: i64 = 13;
/// The smallest opset whose `QuantizeLinear`/`DequantizeLinear` take float16 scales.
pub const FP16_SCALE_MIN_OPSET: i64 = 19;

fn graph_err(node: &str, reason: impl Into<String>) -> ExportError {
    ExportError::Graph {
        node: node.to_string(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Small tensor helpers

/// The float32 values of a tensor (raw_data or float_data).
pub fn f32_data(t: &TensorProto) -> Result<Vec<f32>> {
    if t.data_type != elem::FLOAT {
        return Err(graph_err(
            &t.name,
            format!("tensor is {}, not float32", elem_type_name(t.data_type)),
        ));
    }
    if t.data_location.value() == DataLocation::EXTERNAL as i32 {
        return Err(graph_err(
            &t.name,
            "tensor data is in an external file; load the model with exporter::model::load",
        ));
    }
    let n = num_elements(&t.dims)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| graph_err(&t.name, format!("invalid dims {:?}", t.dims)))?;
    let data: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    if data.len() != n {
        return Err(graph_err(
            &t.name,
            format!("{} values for dims {:?} ({n} elements)", data.len(), t.dims),
        ));
    }
    Ok(data)
}

fn tensor_raw(name: &str, data_type: i32, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type,
        dims: dims.to_vec(),
        raw_data: raw,
        ..Default::default()
    }
}

fn tensor_i8(name: &str, dims: &[i64], data: &[i8]) -> TensorProto {
    tensor_raw(
        name,
        elem::INT8,
        dims,
        data.iter().map(|&x| x as u8).collect(),
    )
}

fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    crate::onnx::builders::tensor_f32(name, dims, data)
}

fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    tensor_raw(
        name,
        elem::INT64,
        dims,
        data.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

fn named(mut n: NodeProto, name: &str) -> NodeProto {
    n.name = name.to_string();
    n
}

/// The largest finite float16.
const F16_MAX: f32 = 65504.0;

/// Rounds a positive scale to the float16 value it will have, kept normal and finite.
fn f16_scale(s: f32) -> f32 {
    f16_bits_to_f32(f32_to_f16_bits(s.clamp(ZERO_CHANNEL_SCALE, F16_MAX)))
}

/// Symmetric int8 quantization of a weight: per channel along `axis` (or one scale), values
/// rounded half to even and clamped to [-127, 127]. Returns (int8 values, scales).
pub fn quantize_weight(
    name: &str,
    data: &[f32],
    dims: &[i64],
    axis: Option<usize>,
) -> Result<(Vec<i8>, Vec<f32>)> {
    if let Some(bad) = data.iter().find(|x| !x.is_finite()) {
        return Err(graph_err(
            name,
            format!("weight holds a non-finite value ({bad})"),
        ));
    }
    let (outer, channels, inner) = match axis {
        Some(a) => {
            let d = |r: &[i64]| r.iter().map(|&x| x.max(0) as usize).product::<usize>();
            let c = dims.get(a).copied().ok_or_else(|| {
                graph_err(name, format!("axis {a} out of range for dims {dims:?}"))
            })?;
            (d(&dims[..a]), c.max(0) as usize, d(&dims[a + 1..]))
        }
        None => (1, 1, data.len()),
    };
    if outer * channels * inner != data.len() {
        return Err(graph_err(
            name,
            format!("{} values do not match dims {dims:?}", data.len()),
        ));
    }
    let mut amax = vec![0f32; channels];
    for o in 0..outer {
        for (c, m) in amax.iter_mut().enumerate() {
            let base = (o * channels + c) * inner;
            for &x in &data[base..base + inner] {
                *m = m.max(x.abs());
            }
        }
    }
    let scales: Vec<f32> = amax
        .iter()
        .map(|&m| {
            let s = m / 127.0;
            if s > 0.0 && s.is_finite() {
                s
            } else {
                ZERO_CHANNEL_SCALE
            }
        })
        .collect();
    let mut q = vec![0i8; data.len()];
    for o in 0..outer {
        for (c, &s) in scales.iter().enumerate() {
            let base = (o * channels + c) * inner;
            for k in base..base + inner {
                q[k] = (data[k] / s).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
        }
    }
    Ok((q, scales))
}

// ---------------------------------------------------------------------------------------------
// Expose activations

fn float_type(shape_from: Option<&TypeProto>) -> TypeProto {
    let shape = shape_from.and_then(|t| match &t.value {
        Some(type_proto::Value::TensorType(tt)) => tt.shape.clone().into_option(),
        _ => None,
    });
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: elem::FLOAT,
            shape: shape.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn tensor_elem_type(t: &TypeProto) -> Option<i32> {
    match &t.value {
        Some(type_proto::Value::TensorType(tt)) => Some(tt.elem_type),
        _ => None,
    }
}

/// A copy of `model` whose graph outputs also include each of `tensors` (as float32, with the
/// shape its value_info declares, if any). Existing outputs keep their place; tensors that are
/// outputs already are not added twice. A tensor the graph does not have, or one declared with
/// a non-float type, is an error.
pub fn expose_activations(model: &ModelProto, tensors: &BTreeSet<String>) -> Result<ModelProto> {
    let mut m = model.clone();
    let g = m.graph.mut_or_insert_default();
    let mut known: BTreeSet<&str> = BTreeSet::new();
    for n in &g.node {
        known.extend(
            n.output
                .iter()
                .filter(|s| !s.is_empty())
                .map(String::as_str),
        );
    }
    known.extend(g.input.iter().map(|v| v.name.as_str()));
    let declared: BTreeMap<&str, &ValueInfoProto> = g
        .value_info
        .iter()
        .chain(g.input.iter())
        .chain(g.output.iter())
        .map(|v| (v.name.as_str(), v))
        .collect();
    let outputs: BTreeSet<&str> = g.output.iter().map(|v| v.name.as_str()).collect();
    let mut add = Vec::new();
    for t in tensors {
        if !known.contains(t.as_str()) {
            let what = if g.initializer.iter().any(|i| &i.name == t) {
                "is an initializer (a constant), not an activation"
            } else {
                "is not produced by any node or graph input"
            };
            return Err(ExportError::Graph {
                node: format!("tensor '{t}'"),
                reason: format!("cannot expose it: it {what}"),
            });
        }
        if outputs.contains(t.as_str()) {
            continue;
        }
        let ty = declared.get(t.as_str()).and_then(|v| v.type_.as_ref());
        if let Some(e) = ty.and_then(tensor_elem_type) {
            if e != elem::FLOAT && e != elem::UNDEFINED {
                return Err(ExportError::Graph {
                    node: format!("tensor '{t}'"),
                    reason: format!(
                        "cannot expose it for calibration: it is {}, not float32",
                        elem_type_name(e)
                    ),
                });
            }
        }
        add.push(ValueInfoProto {
            name: t.clone(),
            type_: Some(float_type(ty)).into(),
            ..Default::default()
        });
    }
    g.output.extend(add);
    Ok(m)
}

// ---------------------------------------------------------------------------------------------
// Insert QDQ

/// What [`insert_qdq`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QdqReport {
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

/// Inserts Q/DQ as planned, with activation scales from `table`. See the module docs for the
/// names; the model's opset is raised to at least 13 (per-axis DequantizeLinear) when the ops
/// present allow it. Nodes stay in a valid topological order: weight DQs first, each
/// activation's Q/DQ right after the tensor's producer (or first, for a graph input).
pub fn insert_qdq(
    model: &ModelProto,
    plan: &QdqPlan,
    table: &CalibrationTable,
) -> Result<(ModelProto, QdqReport)> {
    let mut m = model.clone();
    let opset_from = default_opset(&m).unwrap_or(0);
    let mut report = QdqReport {
        target: Some(plan.target),
        quantized_nodes: plan.quantized.len(),
        skipped: plan.skipped.len(),
        residual_adds: plan.residual_adds.len(),
        opset_from,
        opset_to: opset_from,
        ..Default::default()
    };
    let consumers = plan.consumers();
    if plan.quantized.is_empty() && consumers.is_empty() {
        return Ok((m, report));
    }
    // Check the table before touching the graph: every Q/DQ tensor needs a positive scale.
    let mut act_scales: BTreeMap<&str, f32> = BTreeMap::new();
    for t in consumers.keys() {
        let r = table.tensors.get(t).ok_or_else(|| ExportError::Table {
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
        act_scales.insert(t.as_str(), r.scale);
    }

    if opset_from < QDQ_MIN_OPSET {
        raise_opset(&mut m, QDQ_MIN_OPSET)?;
    }
    report.opset_to = default_opset(&m).unwrap_or(QDQ_MIN_OPSET);
    let graph = m.graph.mut_or_insert_default();

    // Resolve the plan against this graph (owned data, so the graph can be edited after).
    let ids: Vec<String> = (0..graph.node.len()).map(|i| node_id(graph, i)).collect();
    let pos: BTreeMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let find = |id: &str, op: &str| -> Result<usize> {
        let i = *pos.get(id).ok_or_else(|| {
            graph_err(
                id,
                "planned node is not in the model (plan made for another model?)",
            )
        })?;
        if graph.node[i].op_type != op {
            return Err(graph_err(
                id,
                format!("plan says {op}, the model has {}", graph.node[i].op_type),
            ));
        }
        Ok(i)
    };
    // weight → (axis, nodes reading it as weight)
    let mut weights: BTreeMap<&str, (Option<usize>, Vec<usize>)> = BTreeMap::new();
    for p in &plan.quantized {
        let i = find(&p.node, &p.op)?;
        let n = &graph.node[i];
        if n.input.get(1) != Some(&p.weight) {
            return Err(graph_err(
                &p.node,
                format!("weight '{}' is not the node's input 1", p.weight),
            ));
        }
        for t in p.inputs.iter().chain(&p.outputs) {
            if !n.input.contains(t) && !n.output.contains(t) {
                return Err(graph_err(
                    &p.node,
                    format!("tensor '{t}' is not an input or output of the node"),
                ));
            }
        }
        let axis = p.per_channel.then_some(p.weight_axis);
        let e = weights
            .entry(p.weight.as_str())
            .or_insert_with(|| (axis, Vec::new()));
        if e.0 != axis {
            return Err(graph_err(
                &p.node,
                format!("weight '{}' is planned with two different axes", p.weight),
            ));
        }
        e.1.push(i);
    }
    for r in &plan.residual_adds {
        let i = find(&r.node, "Add")?;
        if !graph.node[i].input.contains(&r.skip) {
            return Err(graph_err(
                &r.node,
                format!("'{}' is not an input of the Add", r.skip),
            ));
        }
    }
    // Rewiring targets per activation tensor, and where its Q/DQ go.
    let (rewire, producers): (
        BTreeMap<String, Vec<usize>>,
        BTreeMap<String, Option<usize>>,
    ) = {
        let ix = GraphIndex::new(graph);
        let mut rewire = BTreeMap::new();
        let mut producers = BTreeMap::new();
        for (t, who) in &consumers {
            let nodes: Vec<usize> = match who {
                None => ix.consumers(t).to_vec(),
                Some(set) => set
                    .iter()
                    .filter_map(|id| pos.get(id.as_str()).copied())
                    .collect(),
            };
            if ix.producer(t).is_none() && !ix.is_graph_input(t) {
                return Err(graph_err(
                    &format!("tensor '{t}'"),
                    "planned for Q/DQ but no node or graph input produces it",
                ));
            }
            rewire.insert(t.clone(), nodes);
            producers.insert(t.clone(), ix.producer(t));
        }
        (rewire, producers)
    };

    let mut used: BTreeSet<String> = BTreeSet::new();
    for n in &graph.node {
        used.extend(n.input.iter().chain(&n.output).cloned());
        used.insert(n.name.clone());
    }
    used.extend(graph.initializer.iter().map(|t| t.name.clone()));
    used.extend(
        graph
            .input
            .iter()
            .chain(&graph.output)
            .map(|v| v.name.clone()),
    );
    let mut fresh = |name: String| -> Result<String> {
        if used.contains(&name) {
            return Err(graph_err(
                &name,
                "the name voxq gives a new Q/DQ node or initializer already exists (is the model quantized already?)",
            ));
        }
        used.insert(name.clone());
        Ok(name)
    };

    let mut first: Vec<NodeProto> = Vec::new();
    let mut after: BTreeMap<usize, Vec<NodeProto>> = BTreeMap::new();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    let mut edits: Vec<(usize, usize, String)> = Vec::new(); // (node, input slot, new name)

    // Weights → int8 initializer + DequantizeLinear.
    for (w, (axis, readers)) in &weights {
        let t = graph
            .initializer
            .iter()
            .find(|t| t.name == *w)
            .ok_or_else(|| graph_err(w, "planned weight is not an initializer"))?;
        let data = f32_data(t)?;
        let (q, scales) = quantize_weight(w, &data, &t.dims, *axis)?;
        let sdims: Vec<i64> = match axis {
            Some(_) => vec![scales.len() as i64],
            None => vec![],
        };
        let qname = fresh(format!("{w}_quantized"))?;
        let sname = fresh(format!("{w}_scale"))?;
        let zname = fresh(format!("{w}_zero_point"))?;
        let dname = fresh(format!("{w}_dq"))?;
        report.weights_int8_bytes += q.len() as u64;
        report.scale_bytes += (scales.len() * 4 + scales.len()) as u64;
        new_inits.push(tensor_i8(&qname, &t.dims, &q));
        new_inits.push(tensor_f32(&sname, &sdims, &scales));
        new_inits.push(tensor_i8(&zname, &sdims, &vec![0i8; scales.len()]));
        let mut dq = named(
            node("DequantizeLinear", &[&qname, &sname, &zname], &[&dname]),
            &dname,
        );
        if let Some(a) = axis {
            dq.attribute.push(attr_int("axis", *a as i64));
        }
        first.push(dq);
        report.dq_nodes += 1;
        report.weights += 1;
        for &i in readers {
            edits.push((i, 1, dname.clone()));
        }
    }

    // Activations → one Q → DQ pair per tensor.
    for (t, nodes) in &rewire {
        let scale = act_scales.get(t.as_str()).copied().unwrap_or(1.0);
        let sname = fresh(format!("{t}_scale"))?;
        let zname = fresh(format!("{t}_zero_point"))?;
        let qname = fresh(format!("{t}_q"))?;
        let dname = fresh(format!("{t}_dq"))?;
        new_inits.push(tensor_f32(&sname, &[], &[scale]));
        new_inits.push(tensor_i8(&zname, &[], &[0]));
        report.scale_bytes += 5;
        let q = named(
            node("QuantizeLinear", &[t, &sname, &zname], &[&qname]),
            &qname,
        );
        let dq = named(
            node("DequantizeLinear", &[&qname, &sname, &zname], &[&dname]),
            &dname,
        );
        match producers.get(t).copied().flatten() {
            Some(p) => after.entry(p).or_default().extend([q, dq]),
            None => first.extend([q, dq]),
        }
        report.q_nodes += 1;
        report.dq_nodes += 1;
        report.activations += 1;
        for &i in nodes {
            for (k, inp) in graph.node[i].input.iter().enumerate() {
                if inp == t {
                    edits.push((i, k, dname.clone()));
                }
            }
        }
    }
    report.rewired_inputs = edits.len();
    for (i, k, name) in edits {
        graph.node[i].input[k] = name;
    }

    // Float weights nobody reads any more go (the file shrinks).
    let still_read: BTreeSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|v| v.name.clone()))
        .collect();
    let mut removed = BTreeSet::new();
    for w in weights.keys() {
        if !still_read.contains(*w) && !subgraphs_read(graph, w) {
            removed.insert(w.to_string());
        }
    }
    graph.initializer.retain(|t| {
        if removed.contains(&t.name) {
            report.weights_float_bytes_removed += tensor_data_bytes(t);
            false
        } else {
            true
        }
    });
    graph.input.retain(|v| !removed.contains(&v.name));
    graph.initializer.extend(new_inits);

    let old = std::mem::take(&mut graph.node);
    let mut nodes = first;
    for (i, n) in old.into_iter().enumerate() {
        nodes.push(n);
        if let Some(extra) = after.remove(&i) {
            nodes.extend(extra);
        }
    }
    graph.node = nodes;
    Ok((m, report))
}

/// Whether a subgraph (If/Loop/Scan body) of the graph reads `tensor` from the outer scope.
fn subgraphs_read(graph: &GraphProto, tensor: &str) -> bool {
    fn walk(g: &GraphProto, tensor: &str) -> bool {
        g.node.iter().any(|n| {
            n.input.iter().any(|i| i == tensor)
                || n.attribute.iter().any(|a| {
                    a.g.as_ref().is_some_and(|sg| walk(sg, tensor))
                        || a.graphs.iter().any(|sg| walk(sg, tensor))
                })
        })
    }
    graph.node.iter().any(|n| {
        n.attribute.iter().any(|a| {
            a.g.as_ref().is_some_and(|sg| walk(sg, tensor))
                || a.graphs.iter().any(|sg| walk(sg, tensor))
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Opset raising

/// Opsets at which each default-domain operator's schema changed (`since_version`s up to 19),
/// from `onnx.defs.get_all_schemas_with_history()` (onnx 1.19).
const OP_HISTORY: &[(&str, &[i64])] = &[
    ("Abs", &[1, 6, 13]),
    ("Acos", &[7]),
    ("Acosh", &[9]),
    ("Add", &[1, 6, 7, 13, 14]),
    ("And", &[1, 7]),
    ("ArgMax", &[1, 11, 12, 13]),
    ("ArgMin", &[1, 11, 12, 13]),
    ("Asin", &[7]),
    ("Asinh", &[9]),
    ("Atan", &[7]),
    ("Atanh", &[9]),
    ("AveragePool", &[1, 7, 10, 11, 19]),
    ("BatchNormalization", &[1, 6, 7, 9, 14, 15]),
    ("Bernoulli", &[15]),
    ("BitShift", &[11]),
    ("BitwiseAnd", &[18]),
    ("BitwiseNot", &[18]),
    ("BitwiseOr", &[18]),
    ("BitwiseXor", &[18]),
    ("BlackmanWindow", &[17]),
    ("Cast", &[1, 6, 9, 13, 19]),
    ("CastLike", &[15, 19]),
    ("Ceil", &[1, 6, 13]),
    ("Celu", &[12]),
    ("CenterCropPad", &[18]),
    ("Clip", &[1, 6, 11, 12, 13]),
    ("Col2Im", &[18]),
    ("Compress", &[9, 11]),
    ("Concat", &[1, 4, 11, 13]),
    ("ConcatFromSequence", &[11]),
    ("Constant", &[1, 9, 11, 12, 13, 19]),
    ("ConstantOfShape", &[9]),
    ("Conv", &[1, 11]),
    ("ConvInteger", &[10]),
    ("ConvTranspose", &[1, 11]),
    ("Cos", &[7]),
    ("Cosh", &[9]),
    ("CumSum", &[11, 14]),
    ("DFT", &[17]),
    ("DeformConv", &[19]),
    ("DepthToSpace", &[1, 11, 13]),
    ("DequantizeLinear", &[10, 13, 19]),
    ("Det", &[11]),
    ("Div", &[1, 6, 7, 13, 14]),
    ("Dropout", &[1, 6, 7, 10, 12, 13]),
    ("DynamicQuantizeLinear", &[11]),
    ("Einsum", &[12]),
    ("Elu", &[1, 6]),
    ("Equal", &[1, 7, 11, 13, 19]),
    ("Erf", &[9, 13]),
    ("Exp", &[1, 6, 13]),
    ("Expand", &[8, 13]),
    ("EyeLike", &[9]),
    ("Flatten", &[1, 9, 11, 13]),
    ("Floor", &[1, 6, 13]),
    ("GRU", &[1, 3, 7, 14]),
    ("Gather", &[1, 11, 13]),
    ("GatherElements", &[11, 13]),
    ("GatherND", &[11, 12, 13]),
    ("Gemm", &[1, 6, 7, 9, 11, 13]),
    ("GlobalAveragePool", &[1]),
    ("GlobalLpPool", &[1, 2]),
    ("GlobalMaxPool", &[1]),
    ("Greater", &[1, 7, 9, 13]),
    ("GreaterOrEqual", &[12, 16]),
    ("GridSample", &[16]),
    ("GroupNormalization", &[18]),
    ("HammingWindow", &[17]),
    ("HannWindow", &[17]),
    ("HardSigmoid", &[1, 6]),
    ("HardSwish", &[14]),
    ("Hardmax", &[1, 11, 13]),
    ("Identity", &[1, 13, 14, 16, 19]),
    ("If", &[1, 11, 13, 16, 19]),
    ("InstanceNormalization", &[1, 6]),
    ("IsInf", &[10]),
    ("IsNaN", &[9, 13]),
    ("LRN", &[1, 13]),
    ("LSTM", &[1, 7, 14]),
    ("LayerNormalization", &[17]),
    ("LeakyRelu", &[1, 6, 16]),
    ("Less", &[1, 7, 9, 13]),
    ("LessOrEqual", &[12, 16]),
    ("Log", &[1, 6, 13]),
    ("LogSoftmax", &[1, 11, 13]),
    ("Loop", &[1, 11, 13, 16, 19]),
    ("LpNormalization", &[1]),
    ("LpPool", &[1, 2, 11, 18]),
    ("MatMul", &[1, 9, 13]),
    ("MatMulInteger", &[10]),
    ("Max", &[1, 6, 8, 12, 13]),
    ("MaxPool", &[1, 8, 10, 11, 12]),
    ("MaxRoiPool", &[1]),
    ("MaxUnpool", &[9, 11]),
    ("Mean", &[1, 6, 8, 13]),
    ("MeanVarianceNormalization", &[9, 13]),
    ("MelWeightMatrix", &[17]),
    ("Min", &[1, 6, 8, 12, 13]),
    ("Mish", &[18]),
    ("Mod", &[10, 13]),
    ("Mul", &[1, 6, 7, 13, 14]),
    ("Multinomial", &[7]),
    ("Neg", &[1, 6, 13]),
    ("NegativeLogLikelihoodLoss", &[12, 13]),
    ("NonMaxSuppression", &[10, 11]),
    ("NonZero", &[9, 13]),
    ("Not", &[1]),
    ("OneHot", &[9, 11]),
    ("Optional", &[15]),
    ("OptionalGetElement", &[15, 18]),
    ("OptionalHasElement", &[15, 18]),
    ("Or", &[1, 7]),
    ("PRelu", &[1, 6, 7, 9, 16]),
    ("Pad", &[1, 2, 11, 13, 18, 19]),
    ("Pow", &[1, 7, 12, 13, 15]),
    ("QLinearConv", &[10]),
    ("QLinearMatMul", &[10]),
    ("QuantizeLinear", &[10, 13, 19]),
    ("RNN", &[1, 7, 14]),
    ("RandomNormal", &[1]),
    ("RandomNormalLike", &[1]),
    ("RandomUniform", &[1]),
    ("RandomUniformLike", &[1]),
    ("Range", &[11]),
    ("Reciprocal", &[1, 6, 13]),
    ("ReduceL1", &[1, 11, 13, 18]),
    ("ReduceL2", &[1, 11, 13, 18]),
    ("ReduceLogSum", &[1, 11, 13, 18]),
    ("ReduceLogSumExp", &[1, 11, 13, 18]),
    ("ReduceMax", &[1, 11, 12, 13, 18]),
    ("ReduceMean", &[1, 11, 13, 18]),
    ("ReduceMin", &[1, 11, 12, 13, 18]),
    ("ReduceProd", &[1, 11, 13, 18]),
    ("ReduceSum", &[1, 11, 13]),
    ("ReduceSumSquare", &[1, 11, 13, 18]),
    ("Relu", &[1, 6, 13, 14]),
    ("Reshape", &[1, 5, 13, 14, 19]),
    ("Resize", &[10, 11, 13, 18, 19]),
    ("ReverseSequence", &[10]),
    ("RoiAlign", &[10, 16]),
    ("Round", &[11]),
    ("STFT", &[17]),
    ("Scan", &[8, 9, 11, 16, 19]),
    ("Scatter", &[9, 11]),
    ("ScatterElements", &[11, 13, 16, 18]),
    ("ScatterND", &[11, 13, 16, 18]),
    ("Selu", &[1, 6]),
    ("SequenceAt", &[11]),
    ("SequenceConstruct", &[11]),
    ("SequenceEmpty", &[11]),
    ("SequenceErase", &[11]),
    ("SequenceInsert", &[11]),
    ("SequenceLength", &[11]),
    ("SequenceMap", &[17]),
    ("Shape", &[1, 13, 15, 19]),
    ("Shrink", &[9]),
    ("Sigmoid", &[1, 6, 13]),
    ("Sign", &[9, 13]),
    ("Sin", &[7]),
    ("Sinh", &[9]),
    ("Size", &[1, 13, 19]),
    ("Slice", &[1, 10, 11, 13]),
    ("Softmax", &[1, 11, 13]),
    ("SoftmaxCrossEntropyLoss", &[12, 13]),
    ("Softplus", &[1]),
    ("Softsign", &[1]),
    ("SpaceToDepth", &[1, 13]),
    ("Split", &[1, 2, 11, 13, 18]),
    ("SplitToSequence", &[11]),
    ("Sqrt", &[1, 6, 13]),
    ("Squeeze", &[1, 11, 13]),
    ("StringNormalizer", &[10]),
    ("Sub", &[1, 6, 7, 13, 14]),
    ("Sum", &[1, 6, 8, 13]),
    ("Tan", &[7]),
    ("Tanh", &[1, 6, 13]),
    ("TfIdfVectorizer", &[9]),
    ("ThresholdedRelu", &[10]),
    ("Tile", &[1, 6, 13]),
    ("TopK", &[1, 10, 11]),
    ("Transpose", &[1, 13]),
    ("Trilu", &[14]),
    ("Unique", &[11]),
    ("Unsqueeze", &[1, 11, 13]),
    ("Upsample", &[1, 7, 9, 10]),
    ("Where", &[9, 16]),
    ("Xor", &[1, 7]),
];

/// Version bumps ONNX's own version converter treats as compatible (the newer schema accepts
/// the older node unchanged: wider type lists, new optional inputs or attributes whose default
/// keeps the old behaviour), from `onnx/version_converter/convert.h`.
fn compatible_bump(op: &str, version: i64) -> bool {
    match version {
        8 => matches!(op, "Max" | "Min" | "Mean" | "Sum" | "MaxPool"),
        9 => matches!(
            op,
            "Flatten" | "Constant" | "MatMul" | "Gemm" | "PRelu" | "Greater" | "Less" | "Cast"
        ),
        10 => matches!(op, "AveragePool" | "MaxPool" | "Dropout"),
        11 => matches!(
            op,
            "ArgMax"
                | "ArgMin"
                | "AveragePool"
                | "Concat"
                | "Constant"
                | "Compress"
                | "Conv"
                | "ConvTranspose"
                | "DepthToSpace"
                | "Equal"
                | "Flatten"
                | "Gather"
                | "Gemm"
                | "Hardmax"
                | "If"
                | "LogSoftmax"
                | "Loop"
                | "LpPool"
                | "MaxPool"
                | "MaxUnpool"
                | "NonMaxSuppression"
                | "OneHot"
                | "ReduceL1"
                | "ReduceL2"
                | "ReduceLogSum"
                | "ReduceLogSumExp"
                | "ReduceMax"
                | "ReduceMean"
                | "ReduceMin"
                | "ReduceProd"
                | "ReduceSum"
                | "ReduceSumSquare"
                | "Scan"
                | "Softmax"
                | "Slice"
                | "Split"
                | "Squeeze"
                | "TopK"
                | "Unsqueeze"
        ),
        12 => matches!(
            op,
            "ArgMax"
                | "ArgMin"
                | "BatchNormalization"
                | "Constant"
                | "Clip"
                | "GatherND"
                | "Min"
                | "Max"
                | "MaxPool"
                | "Pow"
                | "ReduceMax"
                | "ReduceMin"
        ),
        13 => matches!(
            op,
            "Abs"
                | "Add"
                | "ArgMin"
                | "ArgMax"
                | "Cast"
                | "Ceil"
                | "Clip"
                | "Concat"
                | "Constant"
                | "DepthToSpace"
                | "DequantizeLinear"
                | "Div"
                | "Dropout"
                | "Equal"
                | "Erf"
                | "Exp"
                | "Expand"
                | "Flatten"
                | "Floor"
                | "Gather"
                | "GatherElements"
                | "GatherND"
                | "Gemm"
                | "Greater"
                | "Hardmax"
                | "Identity"
                | "If"
                | "IsNaN"
                | "Less"
                | "Log"
                | "Loop"
                | "LRN"
                | "NegativeLogLikelihoodLoss"
                | "MatMul"
                | "Max"
                | "Mean"
                | "MeanVarianceNormalization"
                | "Min"
                | "Mod"
                | "Mul"
                | "Neg"
                | "NonZero"
                | "Pow"
                | "Pad"
                | "QuantizeLinear"
                | "Reciprocal"
                | "ReduceL1"
                | "ReduceL2"
                | "ReduceLogSum"
                | "ReduceLogSumExp"
                | "ReduceMean"
                | "ReduceMax"
                | "ReduceMin"
                | "ReduceProd"
                | "ReduceSumSquare"
                | "Relu"
                | "Reshape"
                | "Resize"
                | "ScatterElements"
                | "ScatterND"
                | "Shape"
                | "Sigmoid"
                | "Sign"
                | "Size"
                | "Slice"
                | "SoftmaxCrossEntropyLoss"
                | "SpaceToDepth"
                | "Sqrt"
                | "Sub"
                | "Sum"
                | "Tanh"
                | "Tile"
                | "Transpose"
        ),
        // GRU/LSTM/RNN gained `layout`, whose default (0) is the old behaviour.
        14 => matches!(
            op,
            "Add"
                | "CumSum"
                | "Div"
                | "Identity"
                | "Mul"
                | "Relu"
                | "Reshape"
                | "Sub"
                | "GRU"
                | "LSTM"
                | "RNN"
        ),
        15 => matches!(op, "BatchNormalization" | "Pow" | "Shape"),
        16 => matches!(
            op,
            "ScatterElements"
                | "ScatterND"
                | "Identity"
                | "Loop"
                | "If"
                | "Where"
                | "Scan"
                | "LessOrEqual"
                | "GreaterOrEqual"
                | "LeakyRelu"
                | "PRelu"
        ),
        // LpPool gained `ceil_mode`, default 0 = the old behaviour.
        18 => matches!(
            op,
            "Pad"
                | "Resize"
                | "OptionalGetElement"
                | "OptionalHasElement"
                | "ScatterND"
                | "ScatterElements"
                | "LpPool"
        ),
        19 => matches!(
            op,
            "Equal"
                | "AveragePool"
                | "Cast"
                | "CastLike"
                | "Constant"
                | "DequantizeLinear"
                | "Identity"
                | "If"
                | "Loop"
                | "Pad"
                | "QuantizeLinear"
                | "Reshape"
                | "Resize"
                | "Scan"
                | "Shape"
                | "Size"
        ),
        _ => false,
    }
}

/// The default-domain opset a model imports.
pub fn default_opset(model: &ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
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

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// Moves an `ints` attribute (`axes`, `split`) into a new int64 initializer input at `slot`.
fn attribute_to_input(
    n: &mut NodeProto,
    attr_name: &str,
    slot: usize,
    inits: &mut Vec<TensorProto>,
    used: &mut BTreeSet<String>,
) -> std::result::Result<(), String> {
    let Some(k) = n.attribute.iter().position(|a| a.name == attr_name) else {
        return Ok(());
    };
    let values = n.attribute[k].ints.clone();
    let base = n.output.first().cloned().unwrap_or_else(|| n.name.clone());
    let name = format!("{base}_{attr_name}");
    if !used.insert(name.clone()) {
        return Err(format!(
            "the name '{name}' for its new '{attr_name}' input is taken"
        ));
    }
    inits.push(tensor_i64(&name, &[values.len() as i64], &values));
    n.attribute.remove(k);
    while n.input.len() < slot {
        n.input.push(String::new());
    }
    if n.input.len() == slot {
        n.input.push(name);
    } else {
        n.input[slot] = name;
    }
    Ok(())
}

/// Upgrades one node across the schema change at `version`, or says why it cannot.
fn adapt(
    n: &mut NodeProto,
    version: i64,
    inits: &mut Vec<TensorProto>,
    used: &mut BTreeSet<String>,
) -> std::result::Result<(), String> {
    let op = n.op_type.clone();
    match (op.as_str(), version) {
        _ if compatible_bump(&op, version) => Ok(()),
        ("ReduceSum" | "Squeeze" | "Unsqueeze", 13)
        | (
            "ReduceL1" | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceMax"
            | "ReduceMean" | "ReduceMin" | "ReduceProd" | "ReduceSumSquare",
            18,
        ) => attribute_to_input(n, "axes", 1, inits, used),
        ("Split", 13) => attribute_to_input(n, "split", 1, inits, used),
        ("Split", 18) => {
            if n.input.get(1).is_none_or(|s| s.is_empty()) && attr(n, "num_outputs").is_none() {
                let k = n.output.len() as i64;
                n.attribute.push(attr_int("num_outputs", k));
            }
            Ok(())
        }
        ("BatchNormalization", 9) => match attr(n, "spatial").map(|a| a.i) {
            None => Ok(()),
            Some(1) => {
                n.attribute.retain(|a| a.name != "spatial");
                Ok(())
            }
            Some(_) => Err("spatial=0 has no equivalent in opset 9".into()),
        },
        ("BatchNormalization", 14) if n.output.len() == 1 => Ok(()),
        ("Softmax" | "LogSoftmax", 13) if attr(n, "axis").map(|a| a.i) == Some(-1) => Ok(()),
        ("Dropout", 12) => {
            if let Some(k) = n.attribute.iter().position(|a| a.name == "ratio") {
                let ratio = n.attribute[k].f;
                let base = n.output.first().cloned().unwrap_or_default();
                let name = format!("{base}_ratio");
                if !used.insert(name.clone()) {
                    return Err(format!("the name '{name}' for its ratio input is taken"));
                }
                inits.push(tensor_f32(&name, &[], &[ratio]));
                n.attribute.remove(k);
                n.input.truncate(1);
                n.input.push(name);
            }
            Ok(())
        }
        _ => Err(format!(
            "its schema changed at opset {version} in a way voxq does not convert"
        )),
    }
}

fn collect_names(g: &GraphProto, used: &mut BTreeSet<String>) {
    for n in &g.node {
        used.extend(n.input.iter().chain(&n.output).cloned());
        used.insert(n.name.clone());
        for a in &n.attribute {
            for sg in a.g.iter().chain(&a.graphs) {
                collect_names(sg, used);
            }
        }
    }
    used.extend(g.initializer.iter().map(|t| t.name.clone()));
    used.extend(g.input.iter().chain(&g.output).map(|v| v.name.clone()));
}

fn raise_graph(g: &mut GraphProto, from: i64, to: i64, used: &mut BTreeSet<String>) -> Result<()> {
    let history: BTreeMap<&str, &[i64]> = OP_HISTORY.iter().copied().collect();
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
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            continue;
        }
        let Some(versions) = history.get(n.op_type.as_str()) else {
            return Err(graph_err(
                &id,
                format!(
                    "op {} is not a standard ONNX op up to opset {to}; cannot raise the opset from {from}",
                    n.op_type
                ),
            ));
        };
        for &v in versions.iter().filter(|&&v| v > from && v <= to) {
            adapt(n, v, &mut inits, used).map_err(|why| {
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
    collect_names(&model.graph, &mut used);
    raise_graph(model.graph.mut_or_insert_default(), from, to, &mut used)?;
    if !model.functions.is_empty() {
        log::warn!(
            "model functions keep their own opset imports; only the main graph was raised to opset {to}"
        );
    }
    match model
        .opset_import
        .iter_mut()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
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

// ---------------------------------------------------------------------------------------------
// float16

fn is_qdq(n: &NodeProto) -> bool {
    (n.domain.is_empty() || n.domain == "ai.onnx")
        && (n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear")
}

/// Rewrites a float32 tensor as float16 in place (`scale`: clamp to a normal float16 > 0).
fn tensor_to_f16(t: &mut TensorProto, scale: bool) -> Result<()> {
    let data = f32_data(t)?;
    t.raw_data = data
        .iter()
        .map(|&x| {
            let x = if scale {
                f16_scale(x)
            } else {
                x.clamp(-F16_MAX, F16_MAX)
            };
            f32_to_f16_bits(x)
        })
        .flat_map(u16::to_le_bytes)
        .collect();
    t.float_data.clear();
    t.data_type = elem::FLOAT16;
    Ok(())
}

fn retype(v: &mut ValueInfoProto, from: i32, to: i32) {
    if let Some(t) = v.type_.as_mut() {
        if let Some(type_proto::Value::TensorType(tt)) = t.value.as_mut() {
            if tt.elem_type == from {
                tt.elem_type = to;
            }
        }
    }
}

fn value_elem(v: &ValueInfoProto) -> Option<i32> {
    v.type_.as_ref().and_then(tensor_elem_type)
}

/// Converts Constant values, Cast targets and dtype attributes from float32 to float16.
fn node_attrs_to_f16(n: &mut NodeProto) -> Result<()> {
    let default = n.domain.is_empty() || n.domain == "ai.onnx";
    for a in n.attribute.iter_mut() {
        if let Some(t) = a.t.as_mut() {
            if t.data_type == elem::FLOAT {
                tensor_to_f16(t, false)?;
            }
        }
        if default {
            match (n.op_type.as_str(), a.name.as_str()) {
                ("Cast", "to") | (_, "dtype") if a.i == elem::FLOAT as i64 => {
                    a.i = elem::FLOAT16 as i64;
                }
                _ => {}
            }
        }
    }
    if default && n.op_type == "Constant" {
        // value_float / value_floats become a float16 `value` tensor.
        if let Some(k) = n
            .attribute
            .iter()
            .position(|a| a.name == "value_float" || a.name == "value_floats")
        {
            let a = n.attribute.remove(k);
            let (dims, vals) = if a.name == "value_float" {
                (vec![], vec![a.f])
            } else {
                (vec![a.floats.len() as i64], a.floats.clone())
            };
            let mut t = tensor_f32("", &dims, &vals);
            tensor_to_f16(&mut t, false)?;
            n.attribute.push(AttributeProto {
                name: "value".into(),
                type_: AttributeType::TENSOR.into(),
                t: Some(t).into(),
                ..Default::default()
            });
        }
    }
    Ok(())
}

/// The float16 pass over one graph body (initializers, node attributes, value_info),
/// recursing into subgraphs. `keep32` names initializers that stay float32; `scales` those
/// converted as Q/DQ scales.
fn graph_to_f16(
    g: &mut GraphProto,
    keep32: &BTreeSet<String>,
    scales: &BTreeSet<String>,
) -> Result<()> {
    for t in g.initializer.iter_mut() {
        if t.data_type == elem::FLOAT && !keep32.contains(&t.name) {
            tensor_to_f16(t, scales.contains(&t.name))?;
        }
    }
    for n in g.node.iter_mut() {
        node_attrs_to_f16(n)?;
        for a in n.attribute.iter_mut() {
            if let Some(sg) = a.g.as_mut() {
                graph_to_f16(sg, keep32, scales)?;
            }
            for sg in a.graphs.iter_mut() {
                graph_to_f16(sg, keep32, scales)?;
            }
        }
    }
    for v in g.value_info.iter_mut() {
        retype(v, elem::FLOAT, elem::FLOAT16);
    }
    Ok(())
}

/// Casts the float part of a model to float16 for strongly typed TensorRT builds (`--float16`):
///
/// - float32 initializers, Constant values and `Cast(to=float)` targets become float16, except
///   float weights read by a `QuantizeLinear` (a float weight behind Q→DQ keeps its values and
///   its float32 scales; a `Cast` to float16 follows its `DequantizeLinear`) and `Resize`
///   `scales` (float32 only in ONNX);
/// - Q/DQ scales become float16, which needs opset 19: the opset is raised when the model has
///   Q/DQ nodes (see [`raise_opset`]). Scales are kept ≥ 2^-14 (normal float16); int8 weights
///   are requantized against their rounded float16 scales so `q × scale` stays closest to the
///   original weight;
/// - float values beyond ±65504 are clamped to it;
/// - every float32 graph input gets a `Cast` to float16 after it and every float32 graph output
///   a `Cast` to float32 before it, so the model's interface is unchanged;
/// - value_info float32 entries become float16.
///
/// ONNX Runtime CPU runs the result, with one caveat found on CAM++: its level-1
/// `WeightBiasQuantization` transformer turns float Conv biases into int32 using a scale
/// `x_scale · w_scale` computed in the scales' type, which with float16 scales ruins the biases
/// (embedding cosine 0.77 instead of 0.99). Disable that transformer
/// (`SessionBuilder::with_disabled_optimizers("WeightBiasQuantization")`) when checking a
/// float16 QDQ model on ORT CPU; TensorRT, the target of this option, does not do this.
pub fn to_float16(model: &ModelProto) -> Result<ModelProto> {
    let mut m = model.clone();
    let has_qdq = m.graph.node.iter().any(is_qdq);
    if has_qdq && default_opset(&m).unwrap_or(0) < FP16_SCALE_MIN_OPSET {
        raise_opset(&mut m, FP16_SCALE_MIN_OPSET)?;
    }
    let g = m.graph.mut_or_insert_default();

    // What stays float32, which initializers are scales, which DQ outputs need a Cast.
    let mut keep32: BTreeSet<String> = BTreeSet::new();
    let mut scales: BTreeSet<String> = BTreeSet::new();
    let mut dq_cast: BTreeSet<String> = BTreeSet::new();
    {
        let ix = GraphIndex::new(g);
        let float_init = |t: &str| {
            ix.initializer(t)
                .is_some_and(|i| i.data_type == elem::FLOAT)
        };
        for n in &g.node {
            if is_qdq(n) {
                if let Some(s) = n.input.get(1) {
                    scales.insert(s.clone());
                }
            }
            if n.op_type == "QuantizeLinear" && n.input.first().is_some_and(|x| float_init(x)) {
                keep32.insert(n.input[0].clone());
                keep32.extend(n.input.get(1).cloned());
                for out in &n.output {
                    for &c in ix.consumers(out) {
                        let d = ix.node(c);
                        if d.op_type == "DequantizeLinear" {
                            keep32.extend(d.input.get(1).cloned());
                            dq_cast.extend(d.output.first().cloned());
                        }
                    }
                }
            }
            if n.op_type == "Resize" {
                if let Some(s) = n.input.get(2).filter(|s| !s.is_empty()) {
                    keep32.insert(s.clone());
                }
            }
        }
    }

    // int8 weights behind a DQ: requantize against the float16-rounded scale.
    let dq_weights: Vec<(String, String)> = g
        .node
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear" && n.input.len() >= 2)
        .map(|n| (n.input[0].clone(), n.input[1].clone()))
        .collect();
    for (qname, sname) in dq_weights {
        if keep32.contains(&sname) {
            continue;
        }
        let Some(si) = g.initializer.iter().position(|t| t.name == sname) else {
            continue;
        };
        let Some(qi) = g.initializer.iter().position(|t| t.name == qname) else {
            continue;
        };
        if g.initializer[qi].data_type != elem::INT8 || g.initializer[si].data_type != elem::FLOAT {
            continue;
        }
        let old = f32_data(&g.initializer[si])?;
        let new: Vec<f32> = old.iter().map(|&s| f16_scale(s)).collect();
        if old == new {
            continue;
        }
        let q = &mut g.initializer[qi];
        let n = q.raw_data.len();
        if n == 0 || (old.len() != 1 && !n.is_multiple_of(old.len())) {
            continue;
        }
        // Per-tensor: one scale; per-axis: channel c of n/len(old) blocks … find the axis.
        let axis_len = old.len();
        let dims = q.dims.clone();
        let axis = g
            .node
            .iter()
            .find(|d| d.op_type == "DequantizeLinear" && d.input.first() == Some(&qname))
            .and_then(|d| attr(d, "axis").map(|a| a.i))
            .unwrap_or(1);
        let axis = if axis < 0 {
            axis + dims.len() as i64
        } else {
            axis
        } as usize;
        let inner: usize = dims
            .get(axis + 1..)
            .map_or(1, |r| r.iter().map(|&x| x.max(0) as usize).product());
        let q = &mut g.initializer[qi];
        for (k, b) in q.raw_data.iter_mut().enumerate() {
            let c = if axis_len == 1 {
                0
            } else {
                (k / inner.max(1)) % axis_len
            };
            let w = (*b as i8) as f32 * old[c];
            *b = ((w / new[c]).round_ties_even().clamp(-127.0, 127.0) as i8) as u8;
        }
    }

    graph_to_f16(g, &keep32, &scales)?;

    // Graph inputs that are initializers follow their initializer's new type.
    let inits16: BTreeSet<String> = g
        .initializer
        .iter()
        .filter(|t| t.data_type == elem::FLOAT16)
        .map(|t| t.name.clone())
        .collect();
    for v in g.input.iter_mut() {
        if inits16.contains(&v.name) {
            retype(v, elem::FLOAT, elem::FLOAT16);
        }
    }

    let mut used = BTreeSet::new();
    collect_names(g, &mut used);
    let mut fresh = |name: String| -> Result<String> {
        if !used.insert(name.clone()) {
            return Err(graph_err(&name, "the name of a new float16 Cast is taken"));
        }
        Ok(name)
    };
    let cast = |input: &str, output: &str, to: i32| {
        let mut c = named(node("Cast", &[input], &[output]), &format!("{output}_cast"));
        c.attribute.push(attr_int("to", to as i64));
        c
    };
    let rewire = |nodes: &mut [NodeProto], from: &str, to: &str, skip: usize| {
        for (i, n) in nodes.iter_mut().enumerate() {
            if i == skip {
                continue;
            }
            for x in n.input.iter_mut() {
                if x == from {
                    *x = to.to_string();
                }
            }
        }
    };

    // Casts after DequantizeLinear nodes that stay float32.
    for out in &dq_cast {
        let Some(p) = g.node.iter().position(|n| n.output.first() == Some(out)) else {
            continue;
        };
        let name = fresh(format!("{out}_fp16"))?;
        fresh(format!("{name}_cast"))?;
        rewire(&mut g.node, out, &name, usize::MAX);
        g.node.insert(p + 1, cast(out, &name, elem::FLOAT16));
    }

    // Graph inputs: float32 in, float16 inside.
    let inits: BTreeSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    let mut head = Vec::new();
    for v in g.input.clone() {
        if inits.contains(&v.name) || value_elem(&v) != Some(elem::FLOAT) {
            continue;
        }
        let name = fresh(format!("{}_fp16", v.name))?;
        fresh(format!("{name}_cast"))?;
        rewire(&mut g.node, &v.name, &name, usize::MAX);
        head.push(cast(&v.name, &name, elem::FLOAT16));
    }
    // Graph outputs: float16 inside, float32 out.
    let mut tail = Vec::new();
    for v in g.output.clone() {
        if value_elem(&v) != Some(elem::FLOAT) {
            continue;
        }
        let Some(p) = g.node.iter().position(|n| n.output.contains(&v.name)) else {
            continue; // a graph input or initializer passed straight through
        };
        let name = fresh(format!("{}_fp16", v.name))?;
        fresh(format!("{}_cast", v.name))?;
        for o in g.node[p].output.iter_mut() {
            if o == &v.name {
                *o = name.clone();
            }
        }
        rewire(&mut g.node, &v.name, &name, p);
        tail.push(cast(&name, &v.name, elem::FLOAT));
    }
    let body = std::mem::take(&mut g.node);
    g.node = head.into_iter().chain(body).chain(tail).collect();
    Ok(m)
}
