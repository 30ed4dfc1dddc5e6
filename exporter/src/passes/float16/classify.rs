//! What the float16 pass leaves float32, which initializers are Q/DQ scales, and which
//! DequantizeLinear outputs need a Cast to float16.

use std::collections::BTreeSet;

use onnx_protobuf::GraphProto;

use super::is_qdq;
use crate::graph::GraphIndex;
use crate::model::elem;

pub(super) struct Classes {
    /// Initializers that stay float32: float weights behind Q→DQ with their scales, and
    /// `Resize` scales (float32 only in ONNX).
    pub keep32: BTreeSet<String>,
    /// Initializers read as Q/DQ scales (converted as scales: kept normal and > 0).
    pub scales: BTreeSet<String>,
    /// DequantizeLinear outputs that stay float32 and get a Cast to float16 after them.
    pub dq_cast: BTreeSet<String>,
}

pub(super) fn classify(g: &GraphProto) -> Classes {
    let mut keep32: BTreeSet<String> = BTreeSet::new();
    let mut scales: BTreeSet<String> = BTreeSet::new();
    let mut dq_cast: BTreeSet<String> = BTreeSet::new();
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
        if n.op_type == "QuantizeLinear" {
            if let Some(w) = n.input.first().filter(|x| float_init(x)) {
                log::debug!(
                    "float16: weight '{w}' stays float32: it is a float weight behind Q→DQ"
                );
                keep32.insert(w.clone());
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
        }
        if n.op_type == "Resize" {
            if let Some(s) = n.input.get(2).filter(|s| !s.is_empty()) {
                log::debug!("float16: Resize scales '{s}' stay float32 (ONNX allows no other)");
                keep32.insert(s.clone());
            }
        }
    }
    Classes {
        keep32,
        scales,
        dq_cast,
    }
}
