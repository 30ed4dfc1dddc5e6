//! Steps 3–5 of insert QDQ: new names, the weight DequantizeLinear nodes, the activation Q/DQ
//! pairs, then the rewiring, the removal of float weights nobody reads and the splice of the
//! new nodes into a valid topological order.

use std::collections::{BTreeMap, BTreeSet};

use onnx_protobuf::{GraphProto, NodeProto, TensorProto};

use super::super::tensors::{f32_data, named, tensor_i8, NameSet};
use super::super::weights::quantize_weight;
use super::super::{graph_err, Result};
use super::resolve::{ActivationSite, WeightSite};
use super::InsertQdqReport;
use crate::model::{elem, tensor_data_bytes};
use crate::onnx::builders::{int_attr, node, tensor_f32};
use crate::policy::ActivationType;

/// The names in use in the main graph; a new name must be free.
pub(super) struct Names(NameSet);

impl Names {
    pub(super) fn new(graph: &GraphProto) -> Self {
        Names(NameSet::new(graph, false))
    }

    /// Takes `name`, or fails when the model already has it (quantized already?).
    fn fresh(&mut self, name: String) -> Result<String> {
        self.0.fresh(
            name,
            "the name voxq gives a new Q/DQ node or initializer already exists (is the model quantized already?)",
        )
    }
}

/// What the pass adds, collected before the graph is edited.
#[derive(Default)]
pub(super) struct Insertions {
    /// Nodes that go before every original node (weight DQs, Q/DQ of graph inputs).
    first: Vec<NodeProto>,
    /// Nodes that go right after the original node at this position.
    after: BTreeMap<usize, Vec<NodeProto>>,
    inits: Vec<TensorProto>,
    /// (node, input slot, new input name).
    edits: Vec<(usize, usize, String)>,
}

/// Weights → int8 initializer + scale + zero point + DequantizeLinear, readers rewired.
pub(super) fn quantize_weights(
    graph: &GraphProto,
    weights: &BTreeMap<String, WeightSite>,
    names: &mut Names,
    new: &mut Insertions,
    report: &mut InsertQdqReport,
) -> Result<()> {
    for (w, site) in weights {
        let t = graph
            .initializer
            .iter()
            .find(|t| t.name == *w)
            .ok_or_else(|| graph_err(w, "planned weight is not an initializer"))?;
        let data = f32_data(t)?;
        let (q, scales) = quantize_weight(w, &data, &t.dims, site.axis)?;
        let sdims: Vec<i64> = match site.axis {
            Some(_) => vec![scales.len() as i64],
            None => vec![],
        };
        let qname = names.fresh(format!("{w}_quantized"))?;
        let sname = names.fresh(format!("{w}_scale"))?;
        let zname = names.fresh(format!("{w}_zero_point"))?;
        let dname = names.fresh(format!("{w}_dq"))?;
        report.weights_int8_bytes += q.len() as u64;
        report.scale_bytes += (scales.len() * 4 + scales.len()) as u64;
        new.inits.push(tensor_i8(&qname, &t.dims, &q));
        new.inits.push(tensor_f32(&sname, &sdims, &scales));
        new.inits
            .push(tensor_i8(&zname, &sdims, &vec![0i8; scales.len()]));
        let mut dq = named(
            node("DequantizeLinear", &[&qname, &sname, &zname], &[&dname]),
            &dname,
        );
        if let Some(a) = site.axis {
            dq.attribute.push(int_attr("axis", a as i64));
        }
        new.first.push(dq);
        report.dq_nodes += 1;
        report.weights += 1;
        for &i in &site.readers {
            new.edits.push((i, 1, dname.clone()));
        }
    }
    Ok(())
}

/// The scalar zero point of an activation of type `ty` (int8 0, or uint8 0 / 128).
fn zero_point(name: &str, ty: ActivationType) -> TensorProto {
    match ty {
        ActivationType::Int8 => tensor_i8(name, &[], &[0]),
        ActivationType::Uint8Centered | ActivationType::Uint8NonNegative => TensorProto {
            name: name.into(),
            data_type: elem::UINT8,
            raw_data: vec![ty.zero_point() as u8],
            ..Default::default()
        },
    }
}

/// Activations → one shared Q → DQ pair per tensor, right after its producer; the planned
/// consumers are rewired to the DQ output.
pub(super) fn quantize_activations(
    graph: &GraphProto,
    activations: &BTreeMap<String, ActivationSite>,
    names: &mut Names,
    new: &mut Insertions,
    report: &mut InsertQdqReport,
) -> Result<()> {
    for (t, site) in activations {
        let sname = names.fresh(format!("{t}_scale"))?;
        let zname = names.fresh(format!("{t}_zero_point"))?;
        let qname = names.fresh(format!("{t}_q"))?;
        let dname = names.fresh(format!("{t}_dq"))?;
        new.inits.push(tensor_f32(&sname, &[], &[site.scale]));
        new.inits.push(zero_point(&zname, site.ty));
        report.scale_bytes += 5;
        let q = named(
            node("QuantizeLinear", &[t, &sname, &zname], &[&qname]),
            &qname,
        );
        let dq = named(
            node("DequantizeLinear", &[&qname, &sname, &zname], &[&dname]),
            &dname,
        );
        match site.producer {
            Some(p) => new.after.entry(p).or_default().extend([q, dq]),
            None => new.first.extend([q, dq]),
        }
        report.q_nodes += 1;
        report.dq_nodes += 1;
        report.activations += 1;
        for &i in &site.rewire {
            for (k, inp) in graph.node[i].input.iter().enumerate() {
                if inp == t {
                    new.edits.push((i, k, dname.clone()));
                }
            }
        }
    }
    Ok(())
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

/// Float weights nobody reads any more go (the file shrinks); one still read is kept, and the
/// log says so.
fn drop_unread_weights(
    graph: &mut GraphProto,
    weights: &BTreeMap<String, WeightSite>,
    report: &mut InsertQdqReport,
) {
    let still_read: BTreeSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|v| v.name.clone()))
        .collect();
    let mut removed = BTreeSet::new();
    for w in weights.keys() {
        if still_read.contains(w) {
            log::info!(
                "insert QDQ: float weight '{w}' kept: a float consumer or graph output still reads it"
            );
        } else if subgraphs_read(graph, w) {
            log::info!("insert QDQ: float weight '{w}' kept: an If/Loop/Scan body reads it");
        } else {
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
}

/// Applies the insertions: rewires the inputs, drops float weights nobody reads, adds the new
/// initializers and splices the new nodes in (`first` ahead, the rest after their producer).
pub(super) fn apply(
    graph: &mut GraphProto,
    new: Insertions,
    weights: &BTreeMap<String, WeightSite>,
    report: &mut InsertQdqReport,
) {
    let Insertions {
        first,
        mut after,
        inits,
        edits,
    } = new;
    report.rewired_inputs = edits.len();
    for (i, k, name) in edits {
        graph.node[i].input[k] = name;
    }
    drop_unread_weights(graph, weights, report);
    graph.initializer.extend(inits);

    let old = std::mem::take(&mut graph.node);
    let mut nodes = first;
    for (i, n) in old.into_iter().enumerate() {
        nodes.push(n);
        if let Some(extra) = after.remove(&i) {
            nodes.extend(extra);
        }
    }
    graph.node = nodes;
}
