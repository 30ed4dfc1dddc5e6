//! Short Conv → BatchNormalization/activation chains, read backwards from a tensor: which
//! Conv/ConvTranspose a residual `Add` input comes from when TensorRT can fuse the chain (and
//! the Add) into that Conv.
//!
//! NVIDIA's Model Optimizer decides which `Add` input is the fused (non-residual) one by
//! matching "fusible backbone" paths backwards from each Add input (NVIDIA/TensorRT-Model-Optimizer,
//! `modelopt/onnx/quantization/graph_utils.py`, `get_fusible_backbone` and
//! `build_non_residual_input_map`). Its paths, read from the Add input back to the Conv, are
//! `[BiasAdd, ConstMul, Conv]`, `[Relu, BiasAdd, ConstMul, Conv]`, `[BatchNormalization,
//! BiasAdd, Conv]`, `[Relu, BatchNormalization, BiasAdd, Conv]`, `[MaxPool, Relu,
//! BatchNormalization, BiasAdd, Conv]` and `[Mul, Sigmoid, BatchNormalization, Conv]` (SiLU),
//! BiasAdd (an Add of a constant) and ConstMul (a Mul by a constant) being optional. [`chain`]
//! accepts the nodes of those paths in that order, each step at most once: MaxPool, then an
//! activation (Relu, or SiLU as `Mul(x, Sigmoid(x))`), then BatchNormalization, then an Add of
//! a constant, then a Mul by a constant, then the Conv. Unlike Model Optimizer it does not step
//! over copy ops (Reshape, Transpose, …), and every tensor of the chain, the Add input
//! included, must have a single reader: TensorRT folds the chain and the Add into the Conv's
//! output, so no intermediate value may be needed elsewhere.

use crate::graph::GraphIndex;
use crate::onnx::is_default_op;

/// A Conv and the nodes between it and a tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvChain {
    /// Position of the Conv/ConvTranspose node.
    pub conv: usize,
    /// Positions of the chain's nodes, the tensor's producer first; empty when the tensor is
    /// the Conv's own output.
    pub links: Vec<usize>,
}

/// The step of a chain node: its order in the path (Add-input side first) and the tensor the
/// walk goes on with. `None`: not a node a fusible chain holds.
fn step<'g>(ix: &GraphIndex<'g>, i: usize) -> Option<(u8, &'g str)> {
    let n = ix.node(i);
    if !is_default_op(n) {
        return None;
    }
    let input = |k: usize| n.input.get(k).map(String::as_str).filter(|s| !s.is_empty());
    // the one non-constant input of a two-input node whose other input is a constant
    let with_constant = || -> Option<&'g str> {
        let (a, b) = (input(0)?, input(1)?);
        match (ix.is_constant(a), ix.is_constant(b)) {
            (false, true) => Some(a),
            (true, false) => Some(b),
            _ => None,
        }
    };
    match n.op_type.as_str() {
        "MaxPool" => Some((0, input(0)?)),
        "Relu" => Some((1, input(0)?)),
        "Mul" => {
            // SiLU: Mul(x, Sigmoid(x)), either order
            let (a, b) = (input(0)?, input(1)?);
            let sigmoid_of = |s: &str, x: &str| {
                ix.producer(s).is_some_and(|p| {
                    let p = ix.node(p);
                    is_default_op(p)
                        && p.op_type == "Sigmoid"
                        && p.input.first().map(String::as_str) == Some(x)
                })
            };
            if sigmoid_of(b, a) {
                Some((1, a))
            } else if sigmoid_of(a, b) {
                Some((1, b))
            } else {
                Some((4, with_constant()?))
            }
        }
        "BatchNormalization" => Some((2, input(0)?)),
        "Add" => Some((3, with_constant()?)),
        _ => None,
    }
}

fn is_conv(ix: &GraphIndex<'_>, i: usize) -> bool {
    let n = ix.node(i);
    is_default_op(n) && (n.op_type == "Conv" || n.op_type == "ConvTranspose")
}

/// Longest chain followed (MaxPool, activation, BatchNormalization, bias Add, scale Mul).
const MAX_LINKS: usize = 5;

/// The Conv/ConvTranspose `tensor` comes from: its own output (no links), or the end of a
/// short fusible chain (module docs). `None` when it is neither.
pub fn chain(ix: &GraphIndex<'_>, tensor: &str) -> Option<ConvChain> {
    let mut links = Vec::new();
    let mut t = tensor;
    let mut next_step = 0u8;
    loop {
        let p = ix.producer(t)?;
        if is_conv(ix, p) {
            return Some(ConvChain { conv: p, links });
        }
        // the start of a chain (the Add input) is read by the Add alone
        if links.len() == MAX_LINKS || (links.is_empty() && ix.consumers(t).len() != 1) {
            return None;
        }
        let (k, input) = step(ix, p)?;
        if k < next_step {
            return None;
        }
        next_step = k + 1;
        links.push(p);
        t = input;
        // the tensor the chain goes on from is read by this node only (the SiLU's Sigmoid
        // reads it too)
        let readers = ix.consumers(t).len();
        let silu = k == 1 && ix.node(p).op_type == "Mul";
        if readers != 1 + usize::from(silu) {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builders::{node, tensor_f32};
    use onnx_protobuf::GraphProto;

    fn graph(nodes: &[(&str, &[&str], &str)]) -> GraphProto {
        let mut g = GraphProto::new();
        g.initializer.push(tensor_f32("k", &[1], &[2.0]));
        for (op, ins, out) in nodes {
            g.node.push(node(op, ins, &[*out]));
        }
        g
    }

    #[test]
    fn follows_bn_activation_and_constant_ops_in_order() {
        let g = graph(&[
            ("Conv", &["x", "w"], "c"),
            ("Mul", &["c", "k"], "m"),
            ("Add", &["m", "k"], "b"),
            ("BatchNormalization", &["b", "k", "k", "k", "k"], "bn"),
            ("Sigmoid", &["bn"], "sg"),
            ("Mul", &["bn", "sg"], "silu"),
            ("MaxPool", &["silu"], "y"),
            ("Add", &["y", "x"], "out"),
        ]);
        let ix = GraphIndex::new(&g);
        assert_eq!(
            chain(&ix, "y"),
            Some(ConvChain {
                conv: 0,
                links: vec![6, 5, 3, 2, 1]
            })
        );
        assert_eq!(chain(&ix, "c").map(|c| c.links.len()), Some(0));
        assert_eq!(chain(&ix, "b").map(|c| c.links), Some(vec![2, 1]));
        // `bn` is read by the Sigmoid and the Mul: not the start of a chain
        assert_eq!(chain(&ix, "bn"), None);
    }

    #[test]
    fn refuses_other_ops_wrong_order_and_shared_tensors() {
        // BatchNormalization after the activation: not one of the fusible paths
        let g = graph(&[
            ("Conv", &["x", "w"], "c"),
            ("Relu", &["c"], "r"),
            ("BatchNormalization", &["r", "k", "k", "k", "k"], "bn"),
        ]);
        assert_eq!(chain(&GraphIndex::new(&g), "bn"), None);
        // a copy op in between
        let g = graph(&[("Conv", &["x", "w"], "c"), ("Transpose", &["c"], "t")]);
        assert_eq!(chain(&GraphIndex::new(&g), "t"), None);
        // the Conv output read by another node as well
        let g = graph(&[
            ("Conv", &["x", "w"], "c"),
            ("Relu", &["c"], "r"),
            ("Sigmoid", &["c"], "s"),
        ]);
        assert_eq!(chain(&GraphIndex::new(&g), "r"), None);
        // an Add of two activations is not a bias
        let g = graph(&[("Conv", &["x", "w"], "c"), ("Add", &["c", "x"], "a")]);
        assert_eq!(chain(&GraphIndex::new(&g), "a"), None);
    }
}
