//! Per-group inventory of a model: node counts, op histograms, parameters and bytes.
//!
//! [`inventory`] tabulates a model by [`LayerGroups`]: per group the node count, an op-type
//! histogram, and the initializers its nodes read (each initializer counted once, in the group
//! of its first reader in graph order; initializers read only inside a subgraph count for the
//! node that owns the subgraph).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use onnx_protobuf::{GraphProto, ModelProto, NodeProto, TensorProto};
use serde::Serialize;

use crate::groups::{node_id, LayerGroups};
use crate::model::{num_elements, tensor_byte_len};

/// The group that holds nodes a [`LayerGroups`] does not know (groups of another graph).
pub const UNGROUPED: &str = "(ungrouped)";

/// Per-group counts of a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    /// The [`LayerGroups::source`] used.
    pub groups_source: String,
    pub groups: Vec<GroupInventory>,
    /// All nodes and all initializers read by a node.
    pub total: GroupInventory,
    /// Initializers no node reads.
    pub unused: ParamCount,
}

/// Counts of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupInventory {
    pub name: String,
    pub nodes: usize,
    /// Op type → node count.
    pub ops: BTreeMap<String, usize>,
    #[serde(flatten)]
    pub params: ParamCount,
}

/// A number of initializers, their elements and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ParamCount {
    pub initializers: usize,
    pub params: u64,
    pub bytes: u64,
}

impl ParamCount {
    fn add(&mut self, t: &TensorProto) {
        self.initializers += 1;
        self.params += num_elements(&t.dims).unwrap_or(0);
        self.bytes += tensor_byte_len(t.data_type, &t.dims).unwrap_or(t.raw_data.len() as u64);
    }
}

impl GroupInventory {
    fn new(name: &str) -> GroupInventory {
        GroupInventory {
            name: name.to_string(),
            nodes: 0,
            ops: BTreeMap::new(),
            params: ParamCount::default(),
        }
    }
}

/// Counts nodes, ops and parameters of `model` per group of `groups`.
pub fn inventory(model: &ModelProto, groups: &LayerGroups) -> Inventory {
    let empty = GraphProto::new();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let of = groups.group_of_nodes();
    let mut rows: Vec<GroupInventory> = groups
        .groups
        .iter()
        .map(|g| GroupInventory::new(&g.name))
        .collect();
    let mut row_of: BTreeMap<String, usize> = groups
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name.clone(), i))
        .collect();
    let initializers: BTreeMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut counted: BTreeSet<&str> = BTreeSet::new();
    let mut total = GroupInventory::new("total");
    for (i, n) in graph.node.iter().enumerate() {
        let id = node_id(graph, i);
        let gname = of.get(id.as_str()).copied().unwrap_or(UNGROUPED);
        let r = match row_of.get(gname) {
            Some(&r) => r,
            None => {
                rows.push(GroupInventory::new(gname));
                row_of.insert(gname.to_string(), rows.len() - 1);
                rows.len() - 1
            }
        };
        let row = &mut rows[r];
        row.nodes += 1;
        *row.ops.entry(n.op_type.clone()).or_default() += 1;
        total.nodes += 1;
        *total.ops.entry(n.op_type.clone()).or_default() += 1;
        let mut reads: Vec<&str> = n.input.iter().map(String::as_str).collect();
        subgraph_reads(n, &mut reads);
        for name in reads {
            if let Some((&key, t)) = initializers.get_key_value(name) {
                if counted.insert(key) {
                    row.params.add(t);
                    total.params.add(t);
                }
            }
        }
    }
    let mut unused = ParamCount::default();
    for t in &graph.initializer {
        if !counted.contains(t.name.as_str()) {
            unused.add(t);
        }
    }
    Inventory {
        groups_source: groups.source.clone(),
        groups: rows,
        total,
        unused,
    }
}

/// Names read by the nodes of `n`'s subgraphs (recursively), so that an outer initializer
/// read only inside an `If`/`Loop` body counts for the node that owns the body.
fn subgraph_reads<'a>(n: &'a NodeProto, out: &mut Vec<&'a str>) {
    for a in &n.attribute {
        let graphs = a.g.as_ref().into_iter().chain(a.graphs.iter());
        for g in graphs {
            for sn in &g.node {
                out.extend(sn.input.iter().map(String::as_str));
                subgraph_reads(sn, out);
            }
        }
    }
}

impl Inventory {
    /// A Markdown table: one row per group, then the total.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Groups: {}\n", self.groups_source);
        let _ = writeln!(s, "| group | nodes | params | size | ops |");
        let _ = writeln!(s, "|---|---:|---:|---:|---|");
        for g in self.groups.iter().chain(std::iter::once(&self.total)) {
            let name = if std::ptr::eq(g, &self.total) {
                format!("**{}**", g.name)
            } else {
                g.name.clone()
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                name,
                g.nodes,
                g.params.params,
                human_bytes(g.params.bytes),
                top_ops(&g.ops, 5)
            );
        }
        if self.unused.initializers > 0 {
            let _ = writeln!(
                s,
                "\n{} initializers ({} params, {}) are read by no node.",
                self.unused.initializers,
                self.unused.params,
                human_bytes(self.unused.bytes)
            );
        }
        s
    }
}

fn top_ops(ops: &BTreeMap<String, usize>, n: usize) -> String {
    let mut v: Vec<(&String, &usize)> = ops.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut parts: Vec<String> = v.iter().take(n).map(|(k, c)| format!("{k} {c}")).collect();
    if v.len() > n {
        parts.push(format!("+{} more", v.len() - n));
    }
    parts.join(", ")
}

fn human_bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f < K {
        format!("{b} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.2} MiB", f / (K * K))
    } else {
        format!("{:.2} GiB", f / (K * K * K))
    }
}
