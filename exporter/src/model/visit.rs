//! Walking every tensor a model holds: initializers (also sparse ones), tensors in node
//! attributes, in subgraphs, in functions and in training graphs.

use onnx_protobuf::{GraphProto, NodeProto, TensorProto};

use super::external::is_external;
use super::{ModelProto, Result};

type TensorVisitor<'a> = dyn FnMut(&mut TensorProto) -> Result<()> + 'a;

/// Calls `f` on every tensor a model holds: initializers (also sparse ones), tensors in node
/// attributes, in subgraphs, in functions and in training graphs.
pub(super) fn visit_tensors_mut(m: &mut ModelProto, f: &mut TensorVisitor<'_>) -> Result<()> {
    if let Some(g) = m.graph.as_mut() {
        visit_graph_mut(g, f)?;
    }
    for func in &mut m.functions {
        for n in &mut func.node {
            visit_node_mut(n, f)?;
        }
    }
    for ti in &mut m.training_info {
        if let Some(g) = ti.initialization.as_mut() {
            visit_graph_mut(g, f)?;
        }
        if let Some(g) = ti.algorithm.as_mut() {
            visit_graph_mut(g, f)?;
        }
    }
    Ok(())
}

fn visit_graph_mut(g: &mut GraphProto, f: &mut TensorVisitor<'_>) -> Result<()> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for s in &mut g.sparse_initializer {
        visit_sparse_mut(s, f)?;
    }
    for n in &mut g.node {
        visit_node_mut(n, f)?;
    }
    Ok(())
}

fn visit_sparse_mut(
    s: &mut onnx_protobuf::SparseTensorProto,
    f: &mut TensorVisitor<'_>,
) -> Result<()> {
    if let Some(t) = s.values.as_mut() {
        f(t)?;
    }
    if let Some(t) = s.indices.as_mut() {
        f(t)?;
    }
    Ok(())
}

fn visit_node_mut(n: &mut NodeProto, f: &mut TensorVisitor<'_>) -> Result<()> {
    for a in &mut n.attribute {
        if let Some(t) = a.t.as_mut() {
            f(t)?;
        }
        for t in &mut a.tensors {
            f(t)?;
        }
        if let Some(s) = a.sparse_tensor.as_mut() {
            visit_sparse_mut(s, f)?;
        }
        for s in &mut a.sparse_tensors {
            visit_sparse_mut(s, f)?;
        }
        if let Some(g) = a.g.as_mut() {
            visit_graph_mut(g, f)?;
        }
        for g in &mut a.graphs {
            visit_graph_mut(g, f)?;
        }
    }
    Ok(())
}

/// The first tensor that still points at external data, if any.
pub(super) fn first_external(m: &ModelProto) -> Option<String> {
    // The visitor needs `&mut`; a clone of a model that has external tensors would copy only
    // small inline data, but to stay cheap we walk immutably by hand.
    fn graph(g: &GraphProto) -> Option<String> {
        for t in &g.initializer {
            if is_external(t) {
                return Some(t.name.clone());
            }
        }
        for s in &g.sparse_initializer {
            if let Some(n) = sparse(s) {
                return Some(n);
            }
        }
        g.node.iter().find_map(node)
    }
    fn sparse(s: &onnx_protobuf::SparseTensorProto) -> Option<String> {
        [s.values.as_ref(), s.indices.as_ref()]
            .into_iter()
            .flatten()
            .find(|t| is_external(t))
            .map(|t| t.name.clone())
    }
    fn node(n: &NodeProto) -> Option<String> {
        for a in &n.attribute {
            for t in a.t.as_ref().into_iter().chain(a.tensors.iter()) {
                if is_external(t) {
                    return Some(t.name.clone());
                }
            }
            for s in a
                .sparse_tensor
                .as_ref()
                .into_iter()
                .chain(a.sparse_tensors.iter())
            {
                if let Some(n) = sparse(s) {
                    return Some(n);
                }
            }
            for g in a.g.as_ref().into_iter().chain(a.graphs.iter()) {
                if let Some(n) = graph(g) {
                    return Some(n);
                }
            }
        }
        None
    }
    m.graph
        .as_ref()
        .and_then(graph)
        .or_else(|| {
            m.functions
                .iter()
                .find_map(|f| f.node.iter().find_map(node))
        })
        .or_else(|| {
            m.training_info.iter().find_map(|ti| {
                ti.initialization
                    .as_ref()
                    .and_then(graph)
                    .or_else(|| ti.algorithm.as_ref().and_then(graph))
            })
        })
}
