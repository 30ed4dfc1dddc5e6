//! TensorRT explicit-quantization rule checks of a QDQ model.
//!
//! [`check_qdq`] checks a QDQ model against TensorRT's explicit-quantization rules. Only the
//! main graph is checked (not `If`/`Loop` bodies). The rules, each a [`Rule`]:
//!
//! - `no-qdq`: the model has no QuantizeLinear/DequantizeLinear at all, so TensorRT builds it
//!   in float: explicit quantization asks for int8 only through Q/DQ nodes (implicit
//!   calibration is deprecated in TensorRT 10, and TensorRT 11 dropped the `--int8` flag).
//! - `nonzero-zero-point`: a Q/DQ whose zero point is not 0 (or not a constant). TensorRT
//!   quantization is symmetric: it accepts only zero points equal to 0.
//! - `bad-scale`: a scale ≤ 0, NaN or infinite, or a scale that is not a constant. TensorRT
//!   reads scales at build time and needs them positive and finite.
//! - `per-axis-activation`: a QuantizeLinear of a non-constant tensor with more than one scale.
//!   TensorRT supports per-channel scales for weights only; activations are per-tensor.
//! - `qdq-on-weighted-output`: a QuantizeLinear fed directly by Conv/ConvTranspose/Gemm/MatMul.
//!   One exception: when both inputs of a residual Add come from quantized Convs, one of them is
//!   the skip input and carries the Q/DQ while the other edge stays clean, so TensorRT fuses the
//!   Add into that Conv (the placement of NVIDIA's quantized ResNet); such a Q is allowed.
//!   TensorRT wants Q/DQ on the inputs of weighted ops; a Q straight on the output stands
//!   between the layer and the activation/BN/residual Add that TensorRT would fuse into it.
//! - `missing-weight-quantization`: a Conv/ConvTranspose/Gemm/MatMul whose input 0 comes
//!   through a DequantizeLinear but whose weight (input 1) does not. TensorRT runs a weighted
//!   layer in int8 only when both inputs are quantized; weights may be an int8 initializer → DQ
//!   or a float initializer → Q → DQ.
//! - `conv-add-edge-quantized`: an Add one of whose inputs is DQ(Q(output of a quantized
//!   Conv)), or DQ(Q(end of a short BatchNormalization/activation chain from a quantized Conv
//!   or ConvTranspose)), the chains of [`super::conv_chain`]. TensorRT fuses a residual Add
//!   into the Conv that feeds it when the Conv→Add edge stays float; the Q/DQ belongs on the
//!   skip input. Such a clean chain also counts as the fused input of the residual-Add
//!   exception of `qdq-on-weighted-output`.
//! - `weight-axis`: a per-channel weight DQ whose axis is not the op's output-channel axis
//!   (Conv 0, ConvTranspose 1, Gemm 0 with transB=1 and 1 with transB=0, MatMul the last axis
//!   of the weight, 1 for a 2-D weight). TensorRT supports per-channel scales only along the
//!   output channels.
//! - `unsigned-activation`: a Q/DQ whose quantized type is unsigned (uint8 — also ONNX's
//!   default when a QuantizeLinear has no zero point — uint16, uint4, uint2), on an activation
//!   or a weight. TensorRT quantizes to signed int8 only.
//!
//! Rules are checked node by node, so a Q→DQ pair that breaks a per-node rule (zero point,
//! scale, type) counts twice. [`qdq_report`] adds a [`QdqSummary`] of counts.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use onnx_protobuf::{type_proto, GraphProto, ModelProto, NodeProto, TensorProto};
use serde::Serialize;

use crate::graph::GraphIndex;
use crate::groups::node_id;
use crate::model::{elem, elem_type_name, num_elements};
use crate::onnx::{all_zero, attr_int, constant_value, is_default_op, tensor_floats, tensor_ints};

/// A TensorRT explicit-quantization rule (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    NoQdq,
    NonzeroZeroPoint,
    BadScale,
    PerAxisActivation,
    QdqOnWeightedOutput,
    MissingWeightQuantization,
    ConvAddEdgeQuantized,
    WeightAxis,
    UnsignedActivation,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::NoQdq,
        Rule::NonzeroZeroPoint,
        Rule::BadScale,
        Rule::PerAxisActivation,
        Rule::QdqOnWeightedOutput,
        Rule::MissingWeightQuantization,
        Rule::ConvAddEdgeQuantized,
        Rule::WeightAxis,
        Rule::UnsignedActivation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NoQdq => "no-qdq",
            Rule::NonzeroZeroPoint => "nonzero-zero-point",
            Rule::BadScale => "bad-scale",
            Rule::PerAxisActivation => "per-axis-activation",
            Rule::QdqOnWeightedOutput => "qdq-on-weighted-output",
            Rule::MissingWeightQuantization => "missing-weight-quantization",
            Rule::ConvAddEdgeQuantized => "conv-add-edge-quantized",
            Rule::WeightAxis => "weight-axis",
            Rule::UnsignedActivation => "unsigned-activation",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule at one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub rule: Rule,
    /// The node that breaks the rule ([`node_id`]); empty for `no-qdq`.
    pub node: String,
    /// The tensor concerned (scale, zero point, weight, edge); may be empty.
    pub tensor: String,
    pub detail: String,
}

/// `rule: node 'n', tensor 't': detail`, leaving out the node and tensor when they are empty
/// (`no-qdq: the model has no …`).
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rule)?;
        let mut sep = ":";
        if !self.node.is_empty() {
            write!(f, "{sep} node '{}'", self.node)?;
            sep = ",";
        }
        if !self.tensor.is_empty() {
            write!(f, "{sep} tensor '{}'", self.tensor)?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Counts of a QDQ model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QdqSummary {
    pub quantize_linear: usize,
    pub dequantize_linear: usize,
    /// Conv, ConvTranspose, Gemm and MatMul nodes.
    pub weighted_ops: usize,
    /// Weighted ops whose input 0 and weight both come through a DequantizeLinear.
    pub quantized_weighted_ops: usize,
    /// Rule (kebab-case) → number of violations.
    pub violations: BTreeMap<String, usize>,
}

/// [`check_qdq`]'s violations with a [`QdqSummary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QdqReport {
    pub summary: QdqSummary,
    pub violations: Vec<Violation>,
}

impl QdqReport {
    /// A Markdown summary: counts, a per-rule table, and up to `max_rows` violations.
    pub fn markdown(&self, max_rows: usize) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "QuantizeLinear {}, DequantizeLinear {}, quantized weighted ops {} of {}\n",
            s.quantize_linear, s.dequantize_linear, s.quantized_weighted_ops, s.weighted_ops
        );
        if self.violations.is_empty() {
            let _ = writeln!(out, "No TensorRT rule is broken.");
            return out;
        }
        let _ = writeln!(out, "| rule | violations |\n|---|---:|");
        for (rule, n) in &s.violations {
            let _ = writeln!(out, "| {rule} | {n} |");
        }
        let _ = writeln!(
            out,
            "\n| rule | node | tensor | detail |\n|---|---|---|---|"
        );
        for v in self.violations.iter().take(max_rows) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                v.rule,
                v.node,
                v.tensor,
                v.detail.replace('|', "\\|")
            );
        }
        if self.violations.len() > max_rows {
            let _ = writeln!(out, "\n… {} more", self.violations.len() - max_rows);
        }
        out
    }
}

/// The TensorRT explicit-quantization violations of `model`, in graph order.
pub fn check_qdq(model: &ModelProto) -> Vec<Violation> {
    qdq_report(model).violations
}

/// [`check_qdq`] plus counts.
pub fn qdq_report(model: &ModelProto) -> QdqReport {
    let empty = GraphProto::new();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let cx = Ctx::new(graph);
    let mut summary = QdqSummary::default();
    let mut violations = Vec::new();
    for (i, n) in graph.node.iter().enumerate() {
        let id = node_id(graph, i);
        let mut push = |rule: Rule, tensor: &str, detail: String| {
            violations.push(Violation {
                rule,
                node: id.clone(),
                tensor: tensor.to_string(),
                detail,
            })
        };
        if let Some(kind) = qdq_kind(n) {
            match kind {
                Qdq::Q => summary.quantize_linear += 1,
                Qdq::Dq => summary.dequantize_linear += 1,
            }
            cx.check_qdq_node(n, kind, &mut push);
        } else if is_weighted(n) {
            summary.weighted_ops += 1;
            if cx.check_weighted(n, &mut push) {
                summary.quantized_weighted_ops += 1;
            }
        } else if is_default_op(n) && n.op_type == "Add" {
            cx.check_add(n, &mut push);
        }
    }
    if summary.quantize_linear == 0 && summary.dequantize_linear == 0 {
        violations.push(Violation {
            rule: Rule::NoQdq,
            node: String::new(),
            tensor: String::new(),
            detail: "the model has no QuantizeLinear/DequantizeLinear node; TensorRT would build it in float".into(),
        });
    }
    for v in &violations {
        *summary.violations.entry(v.rule.to_string()).or_default() += 1;
    }
    QdqReport {
        summary,
        violations,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qdq {
    Q,
    Dq,
}

fn qdq_kind(n: &NodeProto) -> Option<Qdq> {
    if !(is_default_op(n) || n.domain == "com.microsoft") {
        return None;
    }
    match n.op_type.as_str() {
        "QuantizeLinear" => Some(Qdq::Q),
        "DequantizeLinear" => Some(Qdq::Dq),
        _ => None,
    }
}

const WEIGHTED: [&str; 4] = ["Conv", "ConvTranspose", "Gemm", "MatMul"];

fn is_weighted(n: &NodeProto) -> bool {
    is_default_op(n) && WEIGHTED.contains(&n.op_type.as_str())
}

fn input(n: &NodeProto, k: usize) -> Option<&str> {
    n.input.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

fn is_unsigned(t: i32) -> bool {
    matches!(t, elem::UINT8 | elem::UINT16 | elem::UINT4 | elem::UINT2)
}

/// Graph queries the rules need: constants (initializers and `Constant` nodes), element
/// types and ranks of tensors.
struct Ctx<'g> {
    ix: GraphIndex<'g>,
    /// Element type and rank (when known) from graph inputs, outputs and value_info.
    infos: BTreeMap<&'g str, (i32, Option<usize>)>,
}

impl<'g> Ctx<'g> {
    fn new(graph: &'g GraphProto) -> Ctx<'g> {
        let mut infos = BTreeMap::new();
        for vi in graph
            .input
            .iter()
            .chain(&graph.output)
            .chain(&graph.value_info)
        {
            if let Some(type_proto::Value::TensorType(tt)) =
                vi.type_.as_ref().and_then(|t| t.value.as_ref())
            {
                let rank = tt.shape.as_ref().map(|s| s.dim.len());
                infos.insert(vi.name.as_str(), (tt.elem_type, rank));
            }
        }
        Ctx {
            ix: GraphIndex::new(graph),
            infos,
        }
    }

    fn producer(&self, tensor: &str) -> Option<&'g NodeProto> {
        self.ix.producer(tensor).map(|i| self.ix.node(i))
    }

    /// The producer of `tensor` when it is a Q or DQ of the given kind.
    fn produced_by(&self, tensor: &str, kind: Qdq) -> Option<&'g NodeProto> {
        self.producer(tensor).filter(|p| qdq_kind(p) == Some(kind))
    }

    /// The value of a constant tensor: an initializer or the output of a `Constant` node.
    fn constant(&self, tensor: &str) -> Option<Cow<'g, TensorProto>> {
        if let Some(t) = self.ix.initializer(tensor) {
            return Some(Cow::Borrowed(t));
        }
        constant_value(self.producer(tensor)?)
    }

    fn elem_type(&self, tensor: &str) -> Option<i32> {
        if let Some(t) = self.constant(tensor) {
            return Some(t.data_type);
        }
        if let Some(p) = self.producer(tensor) {
            if qdq_kind(p) == Some(Qdq::Q) {
                return self.quant_type(p, Qdq::Q);
            }
        }
        self.infos.get(tensor).map(|&(t, _)| t)
    }

    fn rank(&self, tensor: &str) -> Option<usize> {
        if let Some(t) = self.constant(tensor) {
            return Some(t.dims.len());
        }
        if let Some(q) = self.produced_by(tensor, Qdq::Q) {
            if let Some(r) = input(q, 0).and_then(|x| self.rank(x)) {
                return Some(r);
            }
        }
        self.infos.get(tensor).and_then(|&(_, r)| r)
    }

    /// The integer type a Q produces or a DQ consumes.
    fn quant_type(&self, n: &NodeProto, kind: Qdq) -> Option<i32> {
        if let Some(zp) = input(n, 2) {
            return self.elem_type(zp);
        }
        match kind {
            Qdq::Q => Some(
                attr_int(n, "output_dtype")
                    .filter(|&t| t != 0)
                    .map_or(elem::UINT8, |t| t as i32),
            ),
            Qdq::Dq => input(n, 0).and_then(|x| self.elem_type(x)),
        }
    }

    /// The tensor a Q/DQ chain starts from is constant: a weight rather than an activation.
    fn quantizes_constant(&self, n: &NodeProto, kind: Qdq) -> bool {
        let Some(x) = input(n, 0) else { return false };
        if self.ix.is_constant(x) {
            return true;
        }
        kind == Qdq::Dq
            && self
                .produced_by(x, Qdq::Q)
                .is_some_and(|q| input(q, 0).is_some_and(|y| self.ix.is_constant(y)))
    }

    fn scale_len(&self, n: &NodeProto) -> Option<u64> {
        let t = self.constant(input(n, 1)?)?;
        num_elements(&t.dims)
    }

    fn check_qdq_node(&self, n: &NodeProto, kind: Qdq, push: &mut impl FnMut(Rule, &str, String)) {
        let what = if self.quantizes_constant(n, kind) {
            "weight"
        } else {
            "activation"
        };
        // bad-scale
        match input(n, 1) {
            None => push(Rule::BadScale, "", "no scale input".into()),
            Some(s) => match self.constant(s) {
                None => push(
                    Rule::BadScale,
                    s,
                    "scale is not a constant; TensorRT needs constant scales".into(),
                ),
                Some(t) => match tensor_floats(&t) {
                    Ok(v) => {
                        let bad: Vec<f32> = v
                            .iter()
                            .copied()
                            .filter(|x| !(x.is_finite() && *x > 0.0))
                            .collect();
                        if let Some(first) = bad.first() {
                            push(
                                Rule::BadScale,
                                s,
                                format!(
                                    "{} of {} scale values are not positive and finite (e.g. {first})",
                                    bad.len(),
                                    v.len()
                                ),
                            );
                        }
                    }
                    Err(reason) => log::debug!("scale '{s}' not checked: {reason}"),
                },
            },
        }
        // nonzero-zero-point
        if let Some(zp) = input(n, 2) {
            match self.constant(zp) {
                None => push(
                    Rule::NonzeroZeroPoint,
                    zp,
                    "zero point is not a constant; TensorRT needs a constant 0".into(),
                ),
                Some(t) if !all_zero(&t) => {
                    let detail = match tensor_ints(&t) {
                        Some(v) if v.len() == 1 => {
                            format!("{what} zero point is {}", v[0])
                        }
                        Some(v) => format!(
                            "{} of {} {what} zero points are non-zero",
                            v.iter().filter(|&&x| x != 0).count(),
                            v.len()
                        ),
                        None => format!("{what} zero point is non-zero"),
                    };
                    push(Rule::NonzeroZeroPoint, zp, detail);
                }
                Some(_) => {}
            }
        }
        // unsigned-activation
        if let Some(t) = self.quant_type(n, kind) {
            if is_unsigned(t) {
                let tensor = input(n, 2).or_else(|| input(n, 0)).unwrap_or("");
                push(
                    Rule::UnsignedActivation,
                    tensor,
                    format!(
                        "{} {what}; TensorRT quantizes to signed int8 only",
                        elem_type_name(t)
                    ),
                );
            }
        }
        if kind != Qdq::Q {
            return;
        }
        let Some(x) = input(n, 0) else { return };
        // per-axis-activation
        if !self.ix.is_constant(x) {
            if let Some(len) = self.scale_len(n).filter(|&l| l > 1) {
                push(
                    Rule::PerAxisActivation,
                    x,
                    format!(
                        "activation quantized with {len} scales; TensorRT needs one per tensor"
                    ),
                );
            }
        }
        // qdq-on-weighted-output (except the skip input of a residual Add of two Convs)
        let skip = kind == Qdq::Q && self.q_is_residual_skip(n);
        if let Some(p) = self.producer(x).filter(|p| is_weighted(p) && !skip) {
            push(
                Rule::QdqOnWeightedOutput,
                x,
                format!(
                    "quantizes the output of {} '{}'; put Q/DQ on its inputs only",
                    p.op_type, p.name
                ),
            );
        }
    }

    /// Checks one weighted op; returns whether both its input and weight are quantized.
    fn check_weighted(&self, n: &NodeProto, push: &mut impl FnMut(Rule, &str, String)) -> bool {
        let act_q = input(n, 0).is_some_and(|x| self.produced_by(x, Qdq::Dq).is_some());
        let w = input(n, 1);
        let w_dq = w.and_then(|w| self.produced_by(w, Qdq::Dq));
        if act_q && w_dq.is_none() {
            push(
                Rule::MissingWeightQuantization,
                w.unwrap_or(""),
                format!(
                    "{} input is quantized but its weight is not (TensorRT would run it in float)",
                    n.op_type
                ),
            );
        }
        if let (Some(w), Some(dq)) = (w, w_dq) {
            if self.scale_len(dq).is_some_and(|l| l > 1) {
                let rank = input(dq, 0).and_then(|x| self.rank(x));
                let axis = attr_int(dq, "axis").unwrap_or(1);
                let axis = match rank {
                    Some(r) if axis < 0 => axis + r as i64,
                    _ => axis,
                };
                let expected = match n.op_type.as_str() {
                    "Conv" => 0,
                    "ConvTranspose" => 1,
                    "Gemm" if attr_int(n, "transB").unwrap_or(0) != 0 => 0,
                    "Gemm" => 1,
                    _ => rank.filter(|&r| r >= 2).map_or(1, |r| r as i64 - 1),
                };
                if axis != expected {
                    push(
                        Rule::WeightAxis,
                        w,
                        format!(
                            "per-channel weight of {} quantized along axis {axis}; its output channels are axis {expected}",
                            n.op_type
                        ),
                    );
                }
            }
        }
        act_q && w_dq.is_some()
    }

    /// A Conv/ConvTranspose whose input comes through a DequantizeLinear.
    fn is_quantized_conv(&self, c: &NodeProto, ops: &[&str]) -> bool {
        is_default_op(c)
            && ops.contains(&c.op_type.as_str())
            && input(c, 0).is_some_and(|i| self.produced_by(i, Qdq::Dq).is_some())
    }

    /// The quantized Conv `y` comes from through a short BN/activation chain (at least one
    /// link; [`super::conv_chain`]).
    fn chained_conv(&self, y: &str) -> Option<&'g NodeProto> {
        let c = super::conv_chain::chain(&self.ix, y).filter(|c| !c.links.is_empty())?;
        let conv = self.ix.node(c.conv);
        self.is_quantized_conv(conv, &["Conv", "ConvTranspose"])
            .then_some(conv)
    }

    /// The other input of Add `add` (besides `x`) comes straight from a quantized Conv, or
    /// through a short BN/activation chain: the edge TensorRT fuses the Add into.
    fn other_input_is_fused_conv(&self, add: &NodeProto, x: &str) -> bool {
        add.input
            .iter()
            .filter(|y| !y.is_empty() && y.as_str() != x)
            .any(|y| {
                self.producer(y)
                    .is_some_and(|c| self.is_quantized_conv(c, &["Conv"]))
                    || self.chained_conv(y).is_some()
            })
    }

    /// A Q whose DQ outputs feed only Adds whose other input is a clean quantized-Conv edge:
    /// the skip input of a residual Add of two Convs (NVIDIA's quantized ResNet places it so).
    fn q_is_residual_skip(&self, q: &NodeProto) -> bool {
        let Some(qo) = q.output.first() else {
            return false;
        };
        let dqs: Vec<&NodeProto> = self
            .ix
            .consumers(qo)
            .iter()
            .map(|&i| self.ix.node(i))
            .collect();
        !dqs.is_empty()
            && dqs.iter().all(|dq| {
                qdq_kind(dq) == Some(Qdq::Dq)
                    && dq.output.first().is_some_and(|o| {
                        let users = self.ix.consumers(o);
                        !users.is_empty()
                            && users.iter().all(|&u| {
                                let add = self.ix.node(u);
                                is_default_op(add)
                                    && add.op_type == "Add"
                                    && self.other_input_is_fused_conv(add, o)
                            })
                    })
            })
    }

    fn check_add(&self, n: &NodeProto, push: &mut impl FnMut(Rule, &str, String)) {
        for x in n
            .input
            .iter()
            .filter(|s| !s.is_empty() && !self.other_input_is_fused_conv(n, s))
        {
            let quantized = self
                .produced_by(x, Qdq::Dq)
                .and_then(|dq| input(dq, 0))
                .and_then(|y| self.produced_by(y, Qdq::Q))
                .and_then(|q| input(q, 0));
            let direct = quantized
                .and_then(|y| self.producer(y))
                .filter(|c| self.is_quantized_conv(c, &["Conv"]));
            let (conv, via) = match direct {
                Some(c) => (Some(c), ""),
                None => (
                    quantized.and_then(|y| self.chained_conv(y)),
                    " (through its BatchNormalization/activation chain)",
                ),
            };
            if let Some(c) = conv {
                push(
                    Rule::ConvAddEdgeQuantized,
                    x,
                    format!(
                        "Q/DQ on the edge from quantized {} '{}'{via} blocks TensorRT's Conv+Add fusion; quantize the skip input instead",
                        c.op_type, c.name
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_kebab_case() {
        for r in Rule::ALL {
            let json = serde_json::to_string(&r).unwrap_or_default();
            assert_eq!(json, format!("\"{r}\""));
        }
    }
}
