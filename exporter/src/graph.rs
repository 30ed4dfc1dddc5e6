//! A read-only index over an ONNX graph: who produces and who consumes each tensor, which
//! tensors are initializers, graph inputs and outputs. Passes query it instead of scanning.

use std::collections::{BTreeMap, BTreeSet};

use onnx_protobuf::{GraphProto, NodeProto, TensorProto};

/// Producer/consumer maps of one graph (the main graph; subgraphs are not descended into).
pub struct GraphIndex<'g> {
    pub graph: &'g GraphProto,
    producer: BTreeMap<&'g str, usize>,
    consumers: BTreeMap<&'g str, Vec<usize>>,
    initializers: BTreeMap<&'g str, &'g TensorProto>,
    inputs: BTreeSet<&'g str>,
    outputs: BTreeSet<&'g str>,
}

impl<'g> GraphIndex<'g> {
    pub fn new(graph: &'g GraphProto) -> GraphIndex<'g> {
        let mut producer = BTreeMap::new();
        let mut consumers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                producer.insert(o.as_str(), i);
            }
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                let c = consumers.entry(inp.as_str()).or_default();
                if c.last() != Some(&i) {
                    c.push(i);
                }
            }
        }
        GraphIndex {
            graph,
            producer,
            consumers,
            initializers: graph
                .initializer
                .iter()
                .map(|t| (t.name.as_str(), t))
                .collect(),
            inputs: graph.input.iter().map(|v| v.name.as_str()).collect(),
            outputs: graph.output.iter().map(|v| v.name.as_str()).collect(),
        }
    }

    pub fn node(&self, i: usize) -> &'g NodeProto {
        &self.graph.node[i]
    }

    /// The node that produces `tensor`, if any (initializers and graph inputs have none).
    pub fn producer(&self, tensor: &str) -> Option<usize> {
        self.producer.get(tensor).copied()
    }

    /// The nodes that read `tensor`, in graph order, each once.
    pub fn consumers(&self, tensor: &str) -> &[usize] {
        self.consumers.get(tensor).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn initializer(&self, tensor: &str) -> Option<&'g TensorProto> {
        self.initializers.get(tensor).copied()
    }

    pub fn is_initializer(&self, tensor: &str) -> bool {
        self.initializers.contains_key(tensor)
    }

    /// A graph input that is not also an initializer (a real runtime input).
    pub fn is_graph_input(&self, tensor: &str) -> bool {
        self.inputs.contains(tensor) && !self.is_initializer(tensor)
    }

    pub fn is_graph_output(&self, tensor: &str) -> bool {
        self.outputs.contains(tensor)
    }

    /// `tensor` is a constant: an initializer or the output of a `Constant` node.
    pub fn is_constant(&self, tensor: &str) -> bool {
        self.is_initializer(tensor)
            || self
                .producer(tensor)
                .is_some_and(|i| self.node(i).op_type == "Constant")
    }

    /// Op type of the node producing `tensor`, if any.
    pub fn producer_op(&self, tensor: &str) -> Option<&'g str> {
        self.producer(tensor).map(|i| self.node(i).op_type.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{node, tensor_f32, value_info};
    use crate::model::elem;

    #[test]
    fn producers_consumers_and_constants() {
        let mut g = GraphProto::new();
        g.input.push(value_info("x", elem::FLOAT, &[1, 4]));
        g.output.push(value_info("y", elem::FLOAT, &[1, 4]));
        g.initializer.push(tensor_f32("w", &[4, 4], &[0.0; 16]));
        g.node.push(node("MatMul", &["x", "w"], &["a"]));
        g.node.push(node("Add", &["a", "a"], &["y"]));
        let ix = GraphIndex::new(&g);
        assert_eq!(ix.producer("a"), Some(0));
        assert_eq!(ix.consumers("a"), &[1]);
        assert_eq!(ix.consumers("x"), &[0]);
        assert!(ix.is_constant("w") && !ix.is_constant("x"));
        assert!(ix.is_graph_input("x") && ix.is_graph_output("y"));
        assert_eq!(ix.producer_op("y"), Some("Add"));
        assert_eq!(ix.producer("w"), None);
    }
}
