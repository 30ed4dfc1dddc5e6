//! What a pass can prove about tensor shapes without running the model: each tensor's rank,
//! its dimensions that are static, and the values of small integer vectors (shape arithmetic
//! such as `Concat(1, 1, Unsqueeze(T))`), in one pass over the graph in node order.
//!
//! Only what follows from an op's definition is recorded; an op the table does not know leaves
//! its outputs unknown, so a pass using these facts declines rather than guesses.

use std::collections::HashMap;

use onnx_protobuf::{GraphProto, NodeProto, TensorProto};

use crate::model::ValueType;
use crate::onnx::{attr, attr_int, attr_ints};
use crate::onnx::{constant_value, tensor_ints};

/// Ops whose output has the shape of their first input.
const SAME_SHAPE: &[&str] = &[
    "Abs",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "DequantizeLinear",
    "Dropout",
    "Elu",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "LayerNormalization",
    "LeakyRelu",
    "Log",
    "LogSoftmax",
    "Mish",
    "Neg",
    "Not",
    "QuantizeLinear",
    "Reciprocal",
    "Relu",
    "Round",
    "Selu",
    "Sigmoid",
    "Sign",
    "Softmax",
    "Softplus",
    "Sqrt",
    "Tanh",
];

/// Elementwise ops with numpy broadcasting over all their inputs.
const BROADCAST: &[&str] = &[
    "Add", "And", "Div", "Equal", "Greater", "Less", "Max", "Min", "Mod", "Mul", "Or", "Pow",
    "PRelu", "Sub", "Where",
];

/// A dimension: its size where static.
pub type Dim = Option<i64>;

/// Facts about the tensors of one graph.
#[derive(Default)]
pub struct Dims {
    /// Per tensor: its rank and the dimensions that are static.
    shapes: HashMap<String, Vec<Dim>>,
    /// Values of 1-D (or scalar) integer tensors, entry by entry where known.
    values: HashMap<String, Vec<Dim>>,
}

/// Vectors longer than this are not tracked as values (shape arithmetic is short).
const MAX_VALUES: i64 = 64;

/// Broadcast of two static-or-not sizes (numpy rules). A valid model never mismatches, so an
/// unknown size against a static size other than 1 is that size.
fn broadcast_dim(a: Dim, b: Dim) -> Dim {
    match (a, b) {
        (Some(1), x) | (x, Some(1)) => x,
        (Some(x), _) | (None, Some(x)) => Some(x),
        (None, None) => None,
    }
}

/// Right-aligned numpy broadcast of several shapes.
fn broadcast_shapes(all: &[&Vec<Dim>]) -> Option<Vec<Dim>> {
    let r = all.iter().map(|u| u.len()).max()?;
    Some(
        (0..r)
            .map(|k| {
                all.iter()
                    .map(|u| {
                        let pad = r - u.len();
                        if k < pad {
                            Some(1)
                        } else {
                            u[k - pad]
                        }
                    })
                    .reduce(broadcast_dim)
                    .unwrap_or(Some(1))
            })
            .collect(),
    )
}

impl Dims {
    /// Infers what it can over `graph` (nodes in their stored, topological order).
    pub fn infer(graph: &GraphProto) -> Dims {
        let mut d = Dims::default();
        for v in graph.input.iter().chain(&graph.value_info) {
            if let Some(t) = &v.type_.0 {
                if let ValueType::Tensor { dims: Some(ds), .. } = ValueType::from_proto(t) {
                    let shape = ds.iter().map(|x| x.value()).collect();
                    d.shapes.insert(v.name.clone(), shape);
                }
            }
        }
        for t in &graph.initializer {
            d.constant(&t.name, t);
        }
        for n in &graph.node {
            d.node(n);
        }
        d
    }

    /// The rank of `tensor`, where known.
    pub fn rank(&self, tensor: &str) -> Option<usize> {
        self.shapes.get(tensor).map(Vec::len)
    }

    /// The shape of `tensor` (each dimension `None` where not static), where its rank is known.
    pub fn shape(&self, tensor: &str) -> Option<&[Dim]> {
        self.shapes.get(tensor).map(Vec::as_slice)
    }

    /// The entries of a 1-D integer tensor (each `None` where not known statically).
    pub fn int_values(&self, tensor: &str) -> Option<&[Dim]> {
        self.values.get(tensor).map(Vec::as_slice)
    }

    fn constant(&mut self, name: &str, t: &TensorProto) {
        self.shapes
            .insert(name.to_string(), t.dims.iter().map(|&x| Some(x)).collect());
        if t.dims.len() <= 1 {
            if let Some(v) = tensor_ints(t) {
                self.values
                    .insert(name.to_string(), v.into_iter().map(Some).collect());
            }
        }
    }

    fn node(&mut self, n: &NodeProto) {
        let Some(out) = n.output.first().filter(|o| !o.is_empty()) else {
            return;
        };
        if let Some(t) = constant_value(n) {
            let t = t.into_owned();
            self.constant(out, &t);
            return;
        }
        let inp = |i: usize| n.input.get(i).map(String::as_str).unwrap_or("");
        let op = n.op_type.as_str();
        let shape: Option<Vec<Dim>> = if SAME_SHAPE.contains(&op) {
            self.shapes.get(inp(0)).cloned()
        } else if BROADCAST.contains(&op) {
            let all: Option<Vec<&Vec<Dim>>> = n.input.iter().map(|i| self.shapes.get(i)).collect();
            all.and_then(|a| broadcast_shapes(&a))
        } else {
            match op {
                "Unsqueeze" => self.unsqueeze(n),
                "Expand" => {
                    let (x, s) = (self.shapes.get(inp(0)), self.values.get(inp(1)));
                    x.zip(s).and_then(|(x, s)| broadcast_shapes(&[x, s]))
                }
                "Tile" | "Pad" | "Conv" | "Slice" | "Resize" => {
                    self.shapes.get(inp(0)).map(|u| vec![None; u.len()])
                }
                "Transpose" => self.transpose(n),
                "Squeeze" => self.squeeze(n),
                "Range" => Some(vec![None]),
                "Flatten" => Some(vec![None, None]),
                "Reshape" => self.values.get(inp(1)).map(|v| vec![None; v.len()]),
                "MatMul" => match (self.rank(inp(0)), self.rank(inp(1))) {
                    (Some(a), Some(b)) if a >= 2 && b >= 2 => Some(vec![None; a.max(b)]),
                    _ => None,
                },
                "Concat" => self.concat(n),
                "Shape" => self.rank(inp(0)).map(|r| vec![Some(r as i64)]),
                "ConstantOfShape" => self.values.get(inp(0)).cloned(),
                "Gather" => {
                    let (d, i) = (self.rank(inp(0)), self.rank(inp(1)));
                    d.zip(i)
                        .and_then(|(d, i)| (d + i).checked_sub(1))
                        .map(|r| vec![None; r])
                }
                _ if op.starts_with("Reduce") => self.reduce(n),
                _ => None,
            }
        };
        if let Some(s) = shape {
            self.shapes.insert(out.to_string(), s);
        }
        if op == "Split" {
            if let Some(r) = self.rank(inp(0)) {
                for o in n.output.iter().filter(|o| !o.is_empty()) {
                    self.shapes.insert(o.clone(), vec![None; r]);
                }
            }
        }
        if let Some(v) = self.node_values(n, op) {
            self.values.insert(out.to_string(), v);
        }
    }

    /// Values of small integer vectors through the ops of shape arithmetic.
    fn node_values(&self, n: &NodeProto, op: &str) -> Option<Vec<Dim>> {
        let inp = |i: usize| n.input.get(i).map(String::as_str).unwrap_or("");
        match op {
            "Unsqueeze" | "Squeeze" | "Identity" => self.values.get(inp(0)).cloned(),
            "Shape" if n.attribute.is_empty() => self.shapes.get(inp(0)).cloned(),
            "Concat" if self.rank(inp(0)) == Some(1) => {
                let mut v = Vec::new();
                for i in &n.input {
                    match (self.values.get(i), self.shape(i)) {
                        (Some(x), _) => v.extend(x.iter().copied()),
                        (None, Some([Some(len)])) if *len <= MAX_VALUES => {
                            v.extend(std::iter::repeat_n(None, *len as usize))
                        }
                        _ => return None,
                    }
                }
                Some(v)
            }
            "ConstantOfShape" => {
                let value = attr(n, "value")
                    .and_then(|a| a.t.as_ref())
                    .and_then(tensor_ints)
                    .and_then(|v| v.first().copied());
                match self.values.get(inp(0))?.as_slice() {
                    [Some(len)] if (0..=MAX_VALUES).contains(len) => {
                        Some(vec![value; *len as usize])
                    }
                    _ => None,
                }
            }
            "Gather" if self.rank(inp(0)) == Some(1) && self.rank(inp(1)) == Some(0) => {
                let v = self.values.get(inp(0))?;
                let len = v.len() as i64;
                let i = (*self.values.get(inp(1))?.first()?)?;
                let i = if i < 0 { i + len } else { i };
                (0..len).contains(&i).then(|| vec![v[i as usize]])
            }
            _ => None,
        }
    }

    fn axes(&self, n: &NodeProto) -> Option<Vec<i64>> {
        if let Some(a) = attr_ints(n, "axes") {
            return Some(a.to_vec());
        }
        let t = n.input.get(1).filter(|s| !s.is_empty())?;
        self.values.get(t)?.iter().copied().collect()
    }

    fn unsqueeze(&self, n: &NodeProto) -> Option<Vec<Dim>> {
        let src = self.shapes.get(n.input.first()?)?;
        let axes = self.axes(n)?;
        let r = (src.len() + axes.len()) as i64;
        let mut norm: Vec<i64> = axes
            .iter()
            .map(|&a| if a < 0 { a + r } else { a })
            .collect();
        norm.sort_unstable();
        if norm.iter().any(|&a| a < 0 || a >= r) || norm.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
        let mut rest = src.iter();
        (0..r)
            .map(|k| {
                if norm.contains(&k) {
                    Some(Some(1))
                } else {
                    rest.next().copied()
                }
            })
            .collect()
    }

    fn transpose(&self, n: &NodeProto) -> Option<Vec<Dim>> {
        let src = self.shapes.get(n.input.first()?)?;
        match attr_ints(n, "perm") {
            Some(p) if p.len() == src.len() => p
                .iter()
                .map(|&k| usize::try_from(k).ok().and_then(|k| src.get(k).copied()))
                .collect(),
            Some(_) => None,
            None => Some(src.iter().rev().copied().collect()),
        }
    }

    fn squeeze(&self, n: &NodeProto) -> Option<Vec<Dim>> {
        let src = self.shapes.get(n.input.first()?)?;
        let r = src.len() as i64;
        let axes: Vec<i64> = match self.axes(n) {
            Some(a) if !a.is_empty() => a.iter().map(|&a| if a < 0 { a + r } else { a }).collect(),
            _ => return None, // squeezes what is 1 at run time
        };
        if axes.iter().any(|&a| a < 0 || a >= r) {
            return None;
        }
        Some(
            (0..r)
                .filter(|k| !axes.contains(k))
                .map(|k| src[k as usize])
                .collect(),
        )
    }

    fn concat(&self, n: &NodeProto) -> Option<Vec<Dim>> {
        let all: Vec<&Vec<Dim>> = n
            .input
            .iter()
            .map(|i| self.shapes.get(i))
            .collect::<Option<_>>()?;
        let r = all.first()?.len() as i64;
        let axis = attr_int(n, "axis").unwrap_or(0);
        let axis = if axis < 0 { axis + r } else { axis };
        if !(0..r).contains(&axis) || all.iter().any(|s| s.len() as i64 != r) {
            return None;
        }
        Some(
            (0..r as usize)
                .map(|k| {
                    if k as i64 == axis {
                        all.iter().map(|s| s[k]).sum()
                    } else {
                        all.iter().find_map(|s| s[k])
                    }
                })
                .collect(),
        )
    }

    fn reduce(&self, n: &NodeProto) -> Option<Vec<Dim>> {
        let src = self.shapes.get(n.input.first()?)?;
        let r = src.len() as i64;
        let keep = attr_int(n, "keepdims").unwrap_or(1) != 0;
        let axes: Vec<i64> = match self.axes(n) {
            Some(a) if !a.is_empty() => a.iter().map(|&a| if a < 0 { a + r } else { a }).collect(),
            _ if attr_int(n, "noop_with_empty_axes").unwrap_or(0) != 0 => return Some(src.clone()),
            _ => (0..r).collect(),
        };
        if axes.iter().any(|&a| a < 0 || a >= r) {
            return None;
        }
        Some(
            (0..r)
                .filter_map(|k| match (axes.contains(&k), keep) {
                    (true, true) => Some(Some(1)),
                    (true, false) => None,
                    (false, _) => Some(src[k as usize]),
                })
                .collect(),
        )
    }
}
