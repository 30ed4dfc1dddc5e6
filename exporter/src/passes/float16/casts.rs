//! The Casts the float16 pass adds: float16 after each DequantizeLinear that stays float32,
//! float16 after each float32 graph input, float32 before each float32 graph output, and
//! float32 around the ops ONNX defines for no float16 (`Range`).

use std::collections::BTreeSet;

use onnx_protobuf::{GraphProto, NodeProto};

use super::super::tensors::{named, value_elem, NameSet};
use super::super::Result;
use crate::model::elem;
use crate::onnx::builders::{int_attr, node};
use crate::onnx::is_default_op;

/// The names in use in the graph and its subgraphs; a new Cast's names must be free.
struct Names(NameSet);

impl Names {
    fn fresh(&mut self, name: String) -> Result<String> {
        self.0
            .fresh(name, "the name of a new float16 Cast is taken")
    }
}

/// `Cast(input) → output` to element type `to`, named `{output}_cast`.
fn cast(input: &str, output: &str, to: i32) -> NodeProto {
    let mut c = named(node("Cast", &[input], &[output]), &format!("{output}_cast"));
    c.attribute.push(int_attr("to", to as i64));
    c
}

/// Every node but the one at `skip` reads `to` where it read `from`.
fn rewire(nodes: &mut [NodeProto], from: &str, to: &str, skip: usize) {
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
}

/// Casts to float16 right after the DequantizeLinear nodes that stay float32.
fn cast_dq_outputs(
    g: &mut GraphProto,
    dq_cast: &BTreeSet<String>,
    names: &mut Names,
) -> Result<()> {
    for out in dq_cast {
        let Some(p) = g.node.iter().position(|n| n.output.first() == Some(out)) else {
            log::debug!("float16: no Cast after '{out}': no node produces it as its first output");
            continue;
        };
        let name = names.fresh(format!("{out}_fp16"))?;
        names.fresh(format!("{name}_cast"))?;
        rewire(&mut g.node, out, &name, usize::MAX);
        g.node.insert(p + 1, cast(out, &name, elem::FLOAT16));
    }
    Ok(())
}

/// Graph inputs: float32 in, float16 inside (Casts to go first).
fn cast_inputs(g: &mut GraphProto, names: &mut Names) -> Result<Vec<NodeProto>> {
    let inits: BTreeSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    let mut head = Vec::new();
    for v in g.input.clone() {
        if inits.contains(&v.name) {
            log::debug!(
                "float16: no Cast on input '{}': it is an initializer and follows its type",
                v.name
            );
            continue;
        }
        if value_elem(&v) != Some(elem::FLOAT) {
            log::debug!("float16: no Cast on input '{}': it is not float32", v.name);
            continue;
        }
        let name = names.fresh(format!("{}_fp16", v.name))?;
        names.fresh(format!("{name}_cast"))?;
        rewire(&mut g.node, &v.name, &name, usize::MAX);
        head.push(cast(&v.name, &name, elem::FLOAT16));
    }
    Ok(head)
}

/// Graph outputs: float16 inside, float32 out (Casts to go last).
fn cast_outputs(g: &mut GraphProto, names: &mut Names) -> Result<Vec<NodeProto>> {
    let mut tail = Vec::new();
    for v in g.output.clone() {
        if value_elem(&v) != Some(elem::FLOAT) {
            log::debug!("float16: no Cast on output '{}': it is not float32", v.name);
            continue;
        }
        let Some(p) = g.node.iter().position(|n| n.output.contains(&v.name)) else {
            log::debug!(
                "float16: no Cast on output '{}': a graph input or initializer passed straight through",
                v.name
            );
            continue;
        };
        let name = names.fresh(format!("{}_fp16", v.name))?;
        names.fresh(format!("{}_cast", v.name))?;
        for o in g.node[p].output.iter_mut() {
            if o == &v.name {
                *o = name.clone();
            }
        }
        rewire(&mut g.node, &v.name, &name, p);
        tail.push(cast(&name, &v.name, elem::FLOAT));
    }
    Ok(tail)
}

/// Ops whose ONNX definition has no float16 type (`Range`: float, double, int16/32/64).
const NO_FLOAT16: &[&str] = &["Range"];

/// The element type of `name` where the graph says it plainly: an initializer, a graph input,
/// a value_info entry, or the output of a Constant or Cast.
fn elem_of(g: &GraphProto, name: &str) -> Option<i32> {
    if let Some(t) = g.initializer.iter().find(|t| t.name == name) {
        return Some(t.data_type);
    }
    if let Some(v) = g.input.iter().chain(&g.value_info).find(|v| v.name == name) {
        return value_elem(v);
    }
    let n = g
        .node
        .iter()
        .find(|n| n.output.first().is_some_and(|o| o == name))?;
    match n.op_type.as_str() {
        "Cast" => n
            .attribute
            .iter()
            .find(|a| a.name == "to")
            .map(|a| a.i as i32),
        "Constant" => n
            .attribute
            .iter()
            .find(|a| a.name == "value")
            .and_then(|a| a.t.as_ref())
            .map(|t| t.data_type),
        _ => None,
    }
}

/// Float16 inputs of an op ONNX defines for no float16 are cast to float32, and its output
/// back to float16: `Range(start, limit, delta)` on float16 would make an invalid model.
fn float32_islands(g: &mut GraphProto, names: &mut Names) -> Result<()> {
    let mut k = 0;
    while k < g.node.len() {
        let n = &g.node[k];
        let f16_inputs = is_default_op(n)
            && NO_FLOAT16.contains(&n.op_type.as_str())
            && n.input
                .iter()
                .any(|i| !i.is_empty() && elem_of(g, i) == Some(elem::FLOAT16));
        if !f16_inputs {
            k += 1;
            continue;
        }
        let mut before = Vec::new();
        for i in 0..g.node[k].input.len() {
            let x = g.node[k].input[i].clone();
            if x.is_empty() || elem_of(g, &x) != Some(elem::FLOAT16) {
                continue;
            }
            let y = names.fresh(format!("{x}_fp32"))?;
            names.fresh(format!("{y}_cast"))?;
            before.push(cast(&x, &y, elem::FLOAT));
            g.node[k].input[i] = y;
        }
        let mut after = Vec::new();
        for o in g.node[k].output.iter_mut() {
            let inner = names.fresh(format!("{o}_fp32"))?;
            names.fresh(format!("{o}_cast"))?;
            after.push(cast(&inner, o, elem::FLOAT16));
            log::debug!(
                "float16: '{}' computes in float32 (ONNX defines no float16 for it)",
                o
            );
            *o = inner;
        }
        let (nb, na) = (before.len(), after.len());
        let tail = g.node.split_off(k + 1);
        let op = g.node.pop();
        g.node.extend(before);
        g.node.extend(op);
        g.node.extend(after);
        g.node.extend(tail);
        k += nb + 1 + na;
    }
    Ok(())
}

/// Adds every Cast: after the DQs in `dq_cast`, around the ops without float16, after the
/// float32 graph inputs (first in the graph) and before the float32 graph outputs (last).
pub(super) fn add_casts(g: &mut GraphProto, dq_cast: &BTreeSet<String>) -> Result<()> {
    let mut names = Names(NameSet::new(g, true));
    cast_dq_outputs(g, dq_cast, &mut names)?;
    float32_islands(g, &mut names)?;
    let head = cast_inputs(g, &mut names)?;
    let tail = cast_outputs(g, &mut names)?;
    let body = std::mem::take(&mut g.node);
    g.node = head.into_iter().chain(body).chain(tail).collect();
    Ok(())
}
