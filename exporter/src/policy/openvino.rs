//! The `openvino` placement: the TensorRT input placement with two changes for OpenVINO's CPU
//! plugin, each found by comparing OpenVINO 2026.4.1 with ONNX Runtime 1.31.1 on the same QDQ
//! file, real speech, one Q/DQ pair at a time (`tools/ov_parity.py` reproduces the figures):
//!
//! 1. **uint8 (zero point 128) for a tensor that is a Concat output reached through layout-only
//!    ops** (Pad, Reshape, Transpose, Squeeze, Unsqueeze, Flatten, Identity), int8 (zero point 0)
//!    everywhere else. The two grids are the same (q_uint8 = q_int8 + 128), so the numerics are
//!    those of the int8 placement; but OpenVINO computes `Concat(two or more inputs) → int8
//!    QuantizeLinear/DequantizeLinear → Conv` wrong (it moves the FakeQuantize above the Concat
//!    and shifts the signed range into uint8; a synthetic Concat of two float tensors gave 4-6 %
//!    relative error, one input none; `tools/ov_parity.py --known-faults`), while the same pair
//!    stored as uint8, any zero point, is exact. The distilled ECAPA (SpeechBrain: Concat →
//!    reflect Pad → Conv in every Res2Net block, the MFA and the attentive pooling) gave
//!    embedding cosine 0.97-0.99 to ONNX Runtime on the same file with int8 there; 0.9999 with
//!    uint8, at the same speed (those five Convs stay int8 kernels).
//! 2. **A Q/DQ pair on the output of a quantized op that a Concat reads** (directly or through
//!    layout-only ops), so the int8 kernel writes int8 into the Concat. With a dynamic input
//!    shape, OpenVINO's CPU plugin computes the in-place Concat wrong when one input is an int8
//!    convolution with a float (dequantized) output: the other input's channels come out as
//!    stale values. CAM++'s dense blocks (transit Conv → Concat) gave cosine 0.88-0.94 to ONNX
//!    Runtime under the `tensorrt` placement; the same graph compiled for a static input shape,
//!    or with this output pair, matches ONNX Runtime to its own rounding floor.
//!
//! Every other activation stays int8 with zero point 0 (as for TensorRT): uint8 with zero point 0
//! on all of CAM++'s ReLU outputs set off the in-place Concat fault of rule 2 at other Concats.
//! There is no residual-Add rule (OpenVINO fuses a float skip input into the convolution as a sum).

use std::collections::{BTreeMap, BTreeSet};

use super::{reaches_subgraph, subgraph_uses, ActivationType, PlannedNode, Planning};
use crate::graph::GraphIndex;

/// Ops that move data without computing on it; OpenVINO passes quantization through them.
const LAYOUT: [&str; 7] = [
    "Pad",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
];

/// Whether `tensor` is the output of a Concat, followed backwards through layout-only ops.
pub(super) fn from_concat(ix: &GraphIndex<'_>, tensor: &str) -> bool {
    let mut t = tensor.to_string();
    let mut seen = BTreeSet::new();
    while seen.insert(t.clone()) {
        let Some(p) = ix.producer(&t) else {
            return false;
        };
        let n = ix.node(p);
        if n.op_type == "Concat" {
            return true;
        }
        if !LAYOUT.contains(&n.op_type.as_str()) {
            return false;
        }
        match n.input.first() {
            Some(i) if !i.is_empty() => t = i.clone(),
            _ => return false,
        }
    }
    false
}

/// Whether a Concat reads `tensor`, followed forward through layout-only ops.
pub(super) fn feeds_concat(ix: &GraphIndex<'_>, tensor: &str) -> bool {
    let mut todo = vec![tensor.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(t) = todo.pop() {
        if !seen.insert(t.clone()) {
            continue;
        }
        for &c in ix.consumers(&t) {
            let n = ix.node(c);
            if n.op_type == "Concat" {
                return true;
            }
            if LAYOUT.contains(&n.op_type.as_str()) && n.input.first() == Some(&t) {
                todo.extend(n.output.iter().filter(|x| !x.is_empty()).cloned());
            }
        }
    }
    false
}

/// The storage type of activation `tensor` under the `openvino` placement (rule 1).
pub(super) fn activation_type(ix: &GraphIndex<'_>, tensor: &str) -> ActivationType {
    if from_concat(ix, tensor) {
        log::debug!("'{tensor}': uint8 (zero point 128): it is a Concat output");
        ActivationType::Uint8Centered
    } else {
        ActivationType::Int8
    }
}

impl Planning<'_> {
    /// `openvino`: the output pair of quantized ops a Concat reads (rule 2), each logged.
    pub(super) fn openvino(&self, quantized: &mut [PlannedNode], pos: &BTreeMap<&str, usize>) {
        let implicit = subgraph_uses(self.graph);
        for p in quantized {
            let node = &p.node;
            let Some(&i) = pos.get(p.node.as_str()) else {
                continue;
            };
            let Some(out) = self.graph.node[i].output.first() else {
                continue;
            };
            if out.is_empty() || self.ix.is_graph_output(out) || !feeds_concat(&self.ix, out) {
                continue;
            }
            if reaches_subgraph(&self.ix, out, &implicit) {
                log::info!(
                    "{node}: no output Q/DQ: its output reaches an If/Loop/Scan body through layout ops"
                );
                continue;
            }
            log::debug!("{node}: output Q/DQ: a Concat reads its output");
            p.outputs.push(out.clone());
        }
    }
}
