//! Deployable-size accounting: ONNX file size vs int8 weights + scales + the float rest.
//!
//! The ONNX file is not what a runtime holds. [`deployable_size`] counts what TensorRT or ONNX
//! Runtime keep for the model's constants:
//!
//! - int8 weights: integer initializers read by a `DequantizeLinear` (1 byte per int8 value),
//!   and float weights behind a `QuantizeLinear → DequantizeLinear` pair (fake-quantized in the
//!   file, int8 once built: counted as 1 byte per element, not at their float width); the
//!   integer weight of a `MatMulInteger` / `ConvInteger` (dynamic int8);
//! - scales: the scale and zero-point initializers of Q/DQ nodes (and the zero points of
//!   `MatMulInteger` / `ConvInteger`), at their own width;
//! - everything else (float weights, biases, BatchNorm parameters, shape constants, `Constant`
//!   node values) at its own width, split into float and non-float.
//!
//! Graph structure, names and metadata are not counted in `deployable_bytes` (they are in
//! `onnx_bytes`).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use onnx_protobuf::{GraphProto, ModelProto, TensorProto};
use protobuf::Message;
use serde::Serialize;

use crate::graph::GraphIndex;
use crate::model::{elem, num_elements, tensor_data_bytes};
use crate::onnx::is_default_op;

/// Bytes a model's constants take, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SizeReport {
    /// The ONNX file (as given, else the serialized model).
    pub onnx_bytes: u64,
    /// What a runtime holds: `int8_weight_bytes + scale_bytes + float_weight_bytes + other_bytes`.
    pub deployable_bytes: u64,
    /// Int8 weights (stored int8, or float behind Q→DQ counted at 1 byte per element).
    pub int8_weight_bytes: u64,
    /// Q/DQ scales and zero points.
    pub scale_bytes: u64,
    /// Float initializers and Constant values of any float width (fp32, fp16, bf16, fp64).
    pub float_weight_bytes: u64,
    /// Everything else (int64 shapes and indices, bools, …).
    pub other_bytes: u64,
    /// Number of weights counted as int8.
    pub int8_weights: usize,
    /// Of those, float weights behind a Q→DQ pair.
    pub fake_quant_weights: usize,
    /// Number of float initializers and Constant values.
    pub float_tensors: usize,
}

impl SizeReport {
    /// A Markdown table (bytes and MiB per kind).
    pub fn markdown(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let mut s = String::from("| kind | bytes | MiB |\n|---|---:|---:|\n");
        for (k, v) in [
            ("int8 weights", self.int8_weight_bytes),
            ("scales + zero points", self.scale_bytes),
            ("float weights", self.float_weight_bytes),
            ("other constants", self.other_bytes),
            ("**deployable**", self.deployable_bytes),
            ("ONNX file", self.onnx_bytes),
        ] {
            let _ = writeln!(s, "| {k} | {v} | {:.3} |", mib(v));
        }
        s
    }
}

fn is_float(data_type: i32) -> bool {
    matches!(
        data_type,
        elem::FLOAT | elem::FLOAT16 | elem::BFLOAT16 | elem::DOUBLE
    )
}

fn add_other(r: &mut SizeReport, t: &TensorProto) {
    let b = tensor_data_bytes(t);
    if is_float(t.data_type) {
        r.float_weight_bytes += b;
        r.float_tensors += 1;
    } else {
        r.other_bytes += b;
    }
}

fn count_graph(g: &GraphProto, r: &mut SizeReport) {
    let ix = GraphIndex::new(g);
    let mut int8 = BTreeSet::new();
    let mut fake = BTreeSet::new();
    let mut params = BTreeSet::new();
    for n in g.node.iter().filter(|n| is_default_op(n)) {
        // Dynamic int8 (`MatMulInteger`, `ConvInteger`): the integer weight is input 1, the
        // zero points inputs 2-3.
        if matches!(n.op_type.as_str(), "MatMulInteger" | "ConvInteger") {
            if let Some(t) = n.input.get(1).and_then(|w| ix.initializer(w)) {
                if !is_float(t.data_type) {
                    int8.insert(t.name.clone());
                }
            }
            params.extend(
                n.input
                    .iter()
                    .skip(2)
                    .filter(|s| ix.is_initializer(s))
                    .cloned(),
            );
            continue;
        }
        let q = n.op_type == "QuantizeLinear";
        let dq = n.op_type == "DequantizeLinear";
        if !(q || dq) {
            continue;
        }
        params.extend(
            n.input
                .iter()
                .skip(1)
                .filter(|s| ix.is_initializer(s))
                .cloned(),
        );
        let Some(x) = n.input.first() else { continue };
        let Some(t) = ix.initializer(x) else { continue };
        if dq && !is_float(t.data_type) {
            int8.insert(x.clone());
        }
        // A float weight whose Q feeds a DQ: int8 once built.
        if q && is_float(t.data_type) {
            let feeds_dq = n.output.iter().any(|o| {
                ix.consumers(o)
                    .iter()
                    .any(|&c| ix.node(c).op_type == "DequantizeLinear")
            });
            if feeds_dq {
                fake.insert(x.clone());
            }
        }
    }
    for t in &g.initializer {
        if int8.contains(&t.name) {
            r.int8_weight_bytes += tensor_data_bytes(t);
            r.int8_weights += 1;
        } else if fake.contains(&t.name) {
            r.int8_weight_bytes += num_elements(&t.dims).unwrap_or(0);
            r.int8_weights += 1;
            r.fake_quant_weights += 1;
        } else if params.contains(&t.name) {
            r.scale_bytes += tensor_data_bytes(t);
        } else {
            add_other(r, t);
        }
    }
    for n in &g.node {
        for a in &n.attribute {
            if let Some(t) = a.t.as_ref() {
                add_other(r, t);
            }
            for t in &a.tensors {
                add_other(r, t);
            }
            for sg in a.g.iter().chain(&a.graphs) {
                count_graph(sg, r);
            }
        }
    }
}

/// What a runtime holds for `model`, next to the ONNX file size (`onnx_file_bytes`, or the
/// serialized size of `model` when not given).
pub fn deployable_size(model: &ModelProto, onnx_file_bytes: Option<u64>) -> SizeReport {
    let mut r = SizeReport {
        onnx_bytes: onnx_file_bytes.unwrap_or_else(|| model.compute_size()),
        ..Default::default()
    };
    if let Some(g) = model.graph.as_ref() {
        count_graph(g, &mut r);
    }
    r.deployable_bytes = r.int8_weight_bytes + r.scale_bytes + r.float_weight_bytes + r.other_bytes;
    r
}
