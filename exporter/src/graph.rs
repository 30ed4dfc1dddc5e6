//! A read-only index over an ONNX graph: who produces and who consumes each tensor, which
//! tensors are initializers, graph inputs and outputs. Passes query it instead of scanning.
//! [`dump`] writes a graph as stable text for snapshot tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto};

use crate::model::{elem_type_name, ValueType};
use crate::onnx::qualified_op;

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

/// `node 'NAME' (Op)`, or `node #i (Op)` for an unnamed one.
fn node_label(i: usize, n: &NodeProto) -> String {
    if n.name.is_empty() {
        format!("node #{i} ({})", n.op_type)
    } else {
        format!("node '{}' ({})", n.name, n.op_type)
    }
}

/// Checks that an initializer's shape is sane and its data has the size the shape claims
/// (a tensor claiming 10 GB with a few bytes behind it is refused here, before any pass
/// sizes a buffer from its dims).
pub fn check_initializer(t: &TensorProto) -> Result<(), String> {
    check_tensor(t, &|| format!("initializer '{}'", t.name))
}

/// [`check_initializer`] for any tensor; `what` names it in the reason.
pub(crate) fn check_tensor(t: &TensorProto, what: &dyn Fn() -> String) -> Result<(), String> {
    use crate::model::{elem, num_elements, tensor_byte_len};
    if t.dims.iter().any(|&d| d < 0) {
        return Err(format!("{}: negative dimension in {:?}", what(), t.dims));
    }
    let n =
        num_elements(&t.dims).ok_or_else(|| format!("{}: dims {:?} overflow", what(), t.dims))?;
    if t.data_location.value() == onnx_protobuf::tensor_proto::DataLocation::EXTERNAL as i32 {
        return Ok(()); // checked against its file when the data is read
    }
    if !t.raw_data.is_empty() {
        if let Some(want) = tensor_byte_len(t.data_type, &t.dims) {
            if want != t.raw_data.len() as u64 {
                return Err(format!(
                    "{}: dims {:?} of {} need {want} bytes, it holds {}",
                    what(),
                    t.dims,
                    elem_type_name(t.data_type),
                    t.raw_data.len()
                ));
            }
        }
        return Ok(());
    }
    let (held, per) = match t.data_type {
        elem::FLOAT => (t.float_data.len(), 1),
        elem::COMPLEX64 => (t.float_data.len(), 2),
        elem::DOUBLE => (t.double_data.len(), 1),
        elem::COMPLEX128 => (t.double_data.len(), 2),
        elem::INT64 => (t.int64_data.len(), 1),
        elem::UINT32 | elem::UINT64 => (t.uint64_data.len(), 1),
        elem::STRING => (t.string_data.len(), 1),
        elem::INT32
        | elem::INT16
        | elem::INT8
        | elem::UINT16
        | elem::UINT8
        | elem::BOOL
        | elem::FLOAT16
        | elem::BFLOAT16 => (t.int32_data.len(), 1),
        _ => {
            let any = t.float_data.len()
                + t.double_data.len()
                + t.int32_data.len()
                + t.int64_data.len()
                + t.uint64_data.len()
                + t.string_data.len();
            if n > 0 && any == 0 {
                return Err(format!(
                    "{}: dims {:?} claim {n} elements but it holds no data",
                    what(),
                    t.dims
                ));
            }
            return Ok(());
        }
    };
    if held as u64 != n.saturating_mul(per) {
        return Err(format!(
            "{}: dims {:?} of {} claim {n} elements but it holds {}",
            what(),
            t.dims,
            elem_type_name(t.data_type),
            held as u64 / per
        ));
    }
    Ok(())
}

/// Checks the structure of a graph (subgraphs are not descended into): initializers and node
/// attribute tensors hold the data their shapes claim, every tensor a node reads or the graph outputs is produced by a
/// node, a graph input or an initializer, no tensor is produced twice, and the nodes form no
/// cycle. Node order is not required to be topological. The reason names the node or tensor.
pub fn check_graph(graph: &GraphProto) -> Result<(), String> {
    use std::collections::HashMap;
    for t in &graph.initializer {
        check_initializer(t)?;
    }
    // Tensors held by node attributes (a Constant's `value`, ConstantOfShape's fill) are data
    // too: a `[0]`-shaped value with 16 bytes behind it was accepted in memory but refused once
    // saved with external data (found by the `onnx_model` fuzz target).
    for (i, n) in graph.node.iter().enumerate() {
        for a in &n.attribute {
            for t in a.t.as_ref().into_iter().chain(a.tensors.iter()) {
                check_tensor(t, &|| {
                    format!("{} attribute '{}'", node_label(i, n), a.name)
                })?;
            }
        }
    }
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if let Some(j) = producer.insert(o.as_str(), i) {
                return Err(format!(
                    "tensor '{o}' is produced twice: by {} and by {}",
                    node_label(j, &graph.node[j]),
                    node_label(i, n)
                ));
            }
        }
    }
    let outside: BTreeSet<&str> = graph
        .input
        .iter()
        .map(|v| v.name.as_str())
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    // Kahn's algorithm over node-to-node edges.
    let mut waiting = vec![0usize; graph.node.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (i, n) in graph.node.iter().enumerate() {
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    waiting[i] += 1;
                    users[p].push(i);
                }
                None if outside.contains(inp.as_str()) => {}
                None => {
                    return Err(format!(
                        "{} reads '{inp}', which no node, graph input or initializer produces",
                        node_label(i, n)
                    ))
                }
            }
        }
    }
    for o in &graph.output {
        if !producer.contains_key(o.name.as_str()) && !outside.contains(o.name.as_str()) {
            return Err(format!(
                "graph output '{}' is not produced by any node, graph input or initializer",
                o.name
            ));
        }
    }
    let mut ready: Vec<usize> = (0..graph.node.len()).filter(|&i| waiting[i] == 0).collect();
    let mut done = 0usize;
    while let Some(i) = ready.pop() {
        done += 1;
        for &u in &users[i] {
            waiting[u] -= 1;
            if waiting[u] == 0 {
                ready.push(u);
            }
        }
    }
    if done < graph.node.len() {
        // Walk back from a node left over through producers also left over until one repeats:
        // that one is on a cycle (the first left-over node may only sit downstream of it).
        let mut i = (0..graph.node.len()).find(|&i| waiting[i] > 0).unwrap_or(0);
        let mut seen = vec![false; graph.node.len()];
        while !seen[i] {
            seen[i] = true;
            let back = graph.node[i]
                .input
                .iter()
                .filter_map(|inp| producer.get(inp.as_str()).copied())
                .find(|&p| waiting[p] > 0);
            match back {
                Some(p) => i = p,
                None => break,
            }
        }
        return Err(format!(
            "the graph has a cycle through {}",
            node_label(i, &graph.node[i])
        ));
    }
    Ok(())
}

/// A deterministic text dump of a graph, one line per item, for snapshot tests:
///
/// ```text
/// input x: float32[1,4]
/// output y: float32[1,4]
/// init w: float32[4,4]
/// node0: MatMul(x, w) -> a
/// conv: Conv(a, w_dq, b) -> y {dilations=[1], group=1}
/// ```
///
/// Inputs and outputs keep their graph order, initializers are sorted by name, nodes keep graph
/// order (a pass that emits nodes deterministically gives a stable dump). An unnamed node is
/// shown as `<unnamed>`; attributes are sorted by name; tensor attributes show `dtype[dims]`,
/// subgraphs `<graph NAME: N nodes>`. Floats print in Rust's shortest round-trip form.
pub fn dump(graph: &GraphProto) -> String {
    let mut out = String::new();
    let io = |kind: &str, v: &ValueInfoProto, out: &mut String| {
        let ty = v
            .type_
            .as_ref()
            .map_or(ValueType::Unknown, ValueType::from_proto);
        let _ = writeln!(out, "{kind} {}: {ty}", v.name);
    };
    for v in &graph.input {
        io("input", v, &mut out);
    }
    for v in &graph.output {
        io("output", v, &mut out);
    }
    let mut inits: Vec<&TensorProto> = graph.initializer.iter().collect();
    inits.sort_by(|a, b| a.name.cmp(&b.name));
    for t in inits {
        let _ = writeln!(out, "init {}: {}", t.name, tensor_type(t));
    }
    for n in &graph.node {
        let name = if n.name.is_empty() {
            "<unnamed>"
        } else {
            n.name.as_str()
        };
        let op = qualified_op(n);
        let _ = write!(
            out,
            "{name}: {op}({}) -> {}",
            n.input.join(", "),
            n.output.join(", ")
        );
        if !n.attribute.is_empty() {
            let mut attrs: Vec<&AttributeProto> = n.attribute.iter().collect();
            attrs.sort_by(|a, b| a.name.cmp(&b.name));
            let parts: Vec<String> = attrs
                .iter()
                .map(|a| format!("{}={}", a.name, attr_value(a)))
                .collect();
            let _ = write!(out, " {{{}}}", parts.join(", "));
        }
        out.push('\n');
    }
    out
}

fn tensor_type(t: &TensorProto) -> String {
    let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", elem_type_name(t.data_type), dims.join(","))
}

fn attr_value(a: &AttributeProto) -> String {
    let list = |v: Vec<String>| format!("[{}]", v.join(","));
    let s = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
    match a.type_.enum_value() {
        Ok(AttributeType::INT) => a.i.to_string(),
        Ok(AttributeType::FLOAT) => a.f.to_string(),
        Ok(AttributeType::STRING) => s(&a.s),
        Ok(AttributeType::INTS) => list(a.ints.iter().map(|x| x.to_string()).collect()),
        Ok(AttributeType::FLOATS) => list(a.floats.iter().map(|x| x.to_string()).collect()),
        Ok(AttributeType::STRINGS) => list(a.strings.iter().map(|x| s(x)).collect()),
        Ok(AttributeType::TENSOR) => a.t.as_ref().map_or("tensor?".into(), tensor_type),
        Ok(AttributeType::GRAPH) => a.g.as_ref().map_or("graph?".into(), |g| {
            format!("<graph {}: {} nodes>", g.name, g.node.len())
        }),
        Ok(AttributeType::TENSORS) => list(a.tensors.iter().map(tensor_type).collect()),
        Ok(AttributeType::GRAPHS) => format!("<{} graphs>", a.graphs.len()),
        _ => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::elem;
    use crate::onnx::builders::{node, tensor_f32, value_info};

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

    fn small() -> GraphProto {
        let mut g = GraphProto::new();
        g.input.push(value_info("x", elem::FLOAT, &[1, 4]));
        g.output.push(value_info("y", elem::FLOAT, &[1, 4]));
        g.initializer.push(tensor_f32("w", &[4, 4], &[0.0; 16]));
        // out of topological order on purpose: order is not required
        g.node.push(node("Relu", &["a"], &["y"]));
        g.node.push(node("MatMul", &["x", "w"], &["a"]));
        g
    }

    /// A node attribute's tensor is held to its dims like an initializer (fuzz regression:
    /// a Constant `value` of dims `[0]` holding 16 bytes loaded, then failed to load once
    /// saved with external data).
    #[test]
    fn attribute_tensors_hold_the_data_their_dims_claim() {
        let mut g = small();
        let mut c = node("Constant", &[], &["k"]);
        c.name = "shape".into();
        let mut a = AttributeProto::new();
        a.name = "value".into();
        let mut t = tensor_f32("", &[4], &[0.0; 4]);
        a.t = protobuf::MessageField::some(t.clone());
        c.attribute.push(a.clone());
        g.node.push(c);
        assert_eq!(check_graph(&g), Ok(()));
        t.dims = vec![0];
        g.node[2].attribute[0].t = protobuf::MessageField::some(t.clone());
        let e = check_graph(&g).unwrap_err();
        assert!(
            e.starts_with("node 'shape' (Constant) attribute 'value': dims [0]")
                && e.contains("need 0 bytes, it holds 16"),
            "{e}"
        );
        // The same in a `tensors` list.
        g.node[2].attribute[0].t = protobuf::MessageField::none();
        g.node[2].attribute[0].tensors = vec![tensor_f32("", &[4], &[0.0; 4]), t];
        let e = check_graph(&g).unwrap_err();
        assert!(e.contains("attribute 'value': dims [0]"), "{e}");
    }

    #[test]
    fn check_graph_accepts_a_dag_in_any_order() {
        assert_eq!(check_graph(&small()), Ok(()));
    }

    #[test]
    fn check_graph_names_what_is_wrong() {
        let mut g = small();
        g.node[1].input[0] = "y".into(); // MatMul reads the Relu that reads it
        let e = check_graph(&g).unwrap_err();
        assert!(e.starts_with("the graph has a cycle through node"), "{e}");
        let mut g = small();
        g.node[1].input[0] = "nope".into();
        let e = check_graph(&g).unwrap_err();
        assert!(e.contains("reads 'nope', which no node"), "{e}");
        let mut g = small();
        g.node.push(node("Identity", &["x"], &["a"]));
        let e = check_graph(&g).unwrap_err();
        assert!(e.starts_with("tensor 'a' is produced twice"), "{e}");
        let mut g = small();
        g.output[0].name = "z".into();
        assert!(check_graph(&g).unwrap_err().contains("graph output 'z'"));
        let mut g = small();
        g.initializer[0].dims = vec![10_000_000_000];
        let e = check_graph(&g).unwrap_err();
        assert!(e.contains("need 40000000000 bytes, it holds 64"), "{e}");
        g.initializer[0].raw_data.clear();
        g.initializer[0].float_data = vec![0.0; 16];
        let e = check_graph(&g).unwrap_err();
        assert!(
            e.contains("claim 10000000000 elements but it holds 16"),
            "{e}"
        );
        g.initializer[0].float_data.clear();
        let e = check_graph(&g).unwrap_err();
        assert!(e.contains("but it holds 0"), "{e}");
        g.initializer[0].dims = vec![-4, 1];
        assert!(check_graph(&g).unwrap_err().contains("negative dimension"));
    }
}
