//! Step 2 of insert QDQ: the plan resolved against this graph — node positions of the planned
//! weighted nodes and residual Adds (checked to be what the plan says), each weight's axis and
//! readers, and each activation's rewiring targets and producer. Owned data, so the graph can be
//! edited afterwards.

use std::collections::BTreeMap;

use onnx_protobuf::GraphProto;

use super::super::{graph_err, Result};
use super::PlannedActivation;
use crate::graph::GraphIndex;
use crate::groups::node_id;
use crate::policy::{ActivationType, QdqPlan};

/// A weight that becomes int8: its per-channel axis (None: per tensor) and the nodes that
/// read it as their weight (input 1).
pub(super) struct WeightSite {
    pub axis: Option<usize>,
    pub readers: Vec<usize>,
}

/// An activation that gets a Q/DQ pair, resolved: its scale, the nodes to rewire and the node
/// that produces it (None: a graph input).
pub(super) struct ActivationSite {
    pub ty: ActivationType,
    pub scale: f32,
    pub rewire: Vec<usize>,
    pub producer: Option<usize>,
}

pub(super) struct Resolved {
    pub weights: BTreeMap<String, WeightSite>,
    pub activations: BTreeMap<String, ActivationSite>,
}

/// Node positions by node id.
struct Positions(BTreeMap<String, usize>);

impl Positions {
    fn new(graph: &GraphProto) -> Self {
        Positions(
            (0..graph.node.len())
                .map(|i| (node_id(graph, i), i))
                .collect(),
        )
    }

    /// The position of planned node `id`, checked to be an `op`.
    fn find(&self, graph: &GraphProto, id: &str, op: &str) -> Result<usize> {
        let i = *self.0.get(id).ok_or_else(|| {
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
    }
}

/// The planned weighted nodes: each weight with its axis and readers.
fn weights(
    graph: &GraphProto,
    plan: &QdqPlan,
    pos: &Positions,
) -> Result<BTreeMap<String, WeightSite>> {
    let mut weights: BTreeMap<String, WeightSite> = BTreeMap::new();
    for p in &plan.quantized {
        let i = pos.find(graph, &p.node, &p.op)?;
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
            .entry(p.weight.clone())
            .or_insert_with(|| WeightSite {
                axis,
                readers: Vec::new(),
            });
        if e.axis != axis {
            return Err(graph_err(
                &p.node,
                format!("weight '{}' is planned with two different axes", p.weight),
            ));
        }
        e.readers.push(i);
    }
    Ok(weights)
}

/// The planned residual Adds: each must be an Add reading its skip input. Their skip tensors
/// are among the plan's activations, rewired on this Add only.
fn check_residual_adds(graph: &GraphProto, plan: &QdqPlan, pos: &Positions) -> Result<()> {
    for r in &plan.residual_adds {
        let i = pos.find(graph, &r.node, "Add")?;
        if !graph.node[i].input.contains(&r.skip) {
            return Err(graph_err(
                &r.node,
                format!("'{}' is not an input of the Add", r.skip),
            ));
        }
    }
    Ok(())
}

/// Rewiring targets per activation tensor, and where its Q/DQ go.
fn activation_sites(
    graph: &GraphProto,
    activations: BTreeMap<String, PlannedActivation>,
    pos: &Positions,
) -> Result<BTreeMap<String, ActivationSite>> {
    let ix = GraphIndex::new(graph);
    let mut out = BTreeMap::new();
    for (t, a) in activations {
        let rewire: Vec<usize> = match &a.consumers {
            None => ix.consumers(&t).to_vec(),
            Some(set) => set
                .iter()
                .filter_map(|id| pos.0.get(id.as_str()).copied())
                .collect(),
        };
        if ix.producer(&t).is_none() && !ix.is_graph_input(&t) {
            return Err(graph_err(
                &format!("tensor '{t}'"),
                "planned for Q/DQ but no node or graph input produces it",
            ));
        }
        let producer = ix.producer(&t);
        out.insert(
            t,
            ActivationSite {
                ty: a.ty,
                scale: a.scale,
                rewire,
                producer,
            },
        );
    }
    Ok(out)
}

/// Resolves the plan against `graph`; an error names the node or tensor that does not match.
pub(super) fn resolve(
    graph: &GraphProto,
    plan: &QdqPlan,
    activations: BTreeMap<String, PlannedActivation>,
) -> Result<Resolved> {
    let pos = Positions::new(graph);
    let weights = weights(graph, plan, &pos)?;
    check_residual_adds(graph, plan, &pos)?;
    let activations = activation_sites(graph, activations, &pos)?;
    Ok(Resolved {
        weights,
        activations,
    })
}
