//! Quantization policy: target placement (tensorrt, ort-cpu, openvino), which nodes and tensors to quantize.
//!
//! [`plan`] reads a model and a [`QuantPolicy`] and decides, without a calibration table, which
//! weighted nodes get int8 weights and which activation tensors get a Q/DQ pair (and so need a
//! range from calibration). [`crate::passes::insert_qdq()`] then carries the plan out.
//!
//! Placement rules (TensorRT explicit quantization, also the base of the ORT placement):
//!
//! - Only weighted ops (`Conv`, `ConvTranspose`, `Gemm`, `MatMul` by default) are quantized, and
//!   only when their weight is a float32 initializer; every other op stays float (LayerNorm,
//!   Softmax, BatchNormalization, …: TensorRT fuses or runs them itself).
//! - Q/DQ goes on the *inputs* of a quantized op: its activation input (per-tensor) and its
//!   weight (per-channel by default). The bias stays float.
//! - A `Conv`/`ConvTranspose` with fewer than `min_channels` input or output channels is left
//!   in float (int8 kernels gain nothing there, and the first layer of an audio model, with one
//!   input channel, is the most sensitive one).
//! - Residual `Add`: when an `Add` input is the direct output of a quantized `Conv`, the Q/DQ
//!   goes on the *other* (skip) input and none on the Conv→Add edge, so TensorRT can fuse the
//!   Add into the Conv as its residual. When both inputs come from quantized Convs, input 0 is
//!   the fused one and input 1 the skip (TensorRT fuses one of them). On the `tensorrt`
//!   target an input that reaches a quantized Conv through a short BatchNormalization /
//!   activation chain ([`crate::inspect::conv_chain`], the paths NVIDIA's Model Optimizer
//!   follows) counts as fused too when neither input is a direct Conv output.
//! - `Target::OrtCpu` adds Q/DQ on the outputs of quantized ops (except graph outputs): ONNX
//!   Runtime only runs integer kernels for node units it recognises, `DQ → Conv → Q` (becomes
//!   `QLinearConv`) and `DQ → MatMul → Q` (`QLinearMatMul`); without the output Q it runs a float
//!   Conv behind extra dequantize work. Not on an output that reaches the body of an
//!   If/Loop/Scan through layout-only ops: ONNX Runtime 1.31's QDQ propagation aborts there.
//! - `Target::OrtCpu` stores activations as **uint8**: ONNX Runtime's x86 integer kernels are
//!   U8S8 (uint8 activations, int8 weights) and run an int8-activation model behind extra
//!   conversions (measured on CAM++, one thread: 1.3× fp32 with int8 activations, 1.9-2.0× with
//!   uint8). A Relu output gets zero point 0 and scale amax/255 (it cannot be negative, so the
//!   whole uint8 range covers [0, amax]); every other tensor zero point 128 and scale amax/127,
//!   the int8 grid shifted. TensorRT and OpenVINO keep int8 with zero point 0.
//! - `Target::Openvino` starts from the TensorRT input placement and changes it where OpenVINO's
//!   CPU plugin (2026.4) would otherwise compute something else than the QDQ graph says; see
//!   [`openvino`] for the two rules and the measurements behind them. No residual-Add rule there.
//!
//! Per-channel weight axes (the output-channel axis of each weight layout): Conv `[M, C/g, k…]`
//! → 0; Gemm `B` → 0 with `transB=1` (`[N, K]`), 1 with `transB=0` (`[K, N]`); MatMul weight
//! `[…, K, N]` → its last axis. ConvTranspose (`[C, M/g, k…]` in ONNX) depends on the target:
//!
//! - `tensorrt` → **per tensor** (one scale), whatever `per_channel` says. The sources
//!   disagree on the axis: NVIDIA/TensorRT issues #1694 and #2380 (TensorRT 8, 2022) say
//!   per-output-channel (axis 1) ConvTranspose quantization is not supported and
//!   `pytorch_quantization` moved to axis 0, while NVIDIA's current Model Optimizer quantizes
//!   ConvTranspose weights along axis 1 (`modelopt/onnx/quantization/ort_utils.py`,
//!   `QDQOpTypePerChannelSupportToAxis`: `"ConvTranspose": 1`) and voxq's own TensorRT rule
//!   check expects 1. One scale per weight tensor is valid for every TensorRT version; it
//!   stays so until a GPU test shows which axis a given TensorRT builds in int8. The planned
//!   axis is 1 (output channels), used only if per-channel is enabled for it later.
//! - `ort-cpu` → axis **1** (per output channel), what ONNX Runtime's quantizer emits for
//!   ConvTranspose (microsoft/onnxruntime PR #19996) and what its QDQ fusions expect.
//!   `openvino` uses the same axis (its ONNX front end takes any DequantizeLinear axis).
//!
//! **Weight-only int8** ([`QuantMode::WeightOnly`]): the selected weighted nodes get int8
//! weights behind a DequantizeLinear (per channel, on the axes above) and *nothing else*: no
//! activation Q/DQ, no residual-Add or output pairs, whatever the target, so the plan needs no
//! calibration table and the activations stay float (the usual choice for small LLMs, and what
//! avoids the clipped outlier channels of per-tensor int8 activations). For `y = x·W` with a
//! MatMul weight `W` of shape `[K, N]` (PyTorch's `Linear.weight` `[N, K]` exported transposed,
//! `*.weight_t`), per channel means one scale per *output column* `n` (axis 1, the last axis):
//! each output feature keeps its own range, which is what bounds the error of `y[:, n]`. A
//! scale per input row `k` (axis 0) would mix every output's range into each scale.
//!
//! **Dynamic int8** ([`QuantMode::Dynamic`]): planned like weight-only (no activation Q/DQ,
//! no table); the pipeline then rewrites each such MatMul with [`crate::passes::dynamic`] into
//! `DynamicQuantizeLinear → MatMulInteger → rescale`, the activation quantized per run from its
//! own range. Refused for `tensorrt`.
//!
//! Nodes are identified as in [`crate::groups::node_id`]: by name, or `{op}#{index}` when
//! unnamed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use onnx_protobuf::{GraphProto, ModelProto, NodeProto};
use serde::Serialize;

use crate::graph::GraphIndex;
use crate::groups::node_id;
use crate::model::elem;
use crate::onnx::{attr_int, is_default_op};
use crate::ExportError;

mod mode;
mod openvino;

pub use mode::QuantMode;

type Result<T> = std::result::Result<T, ExportError>;

/// Weighted ops the planner knows how to quantize.
pub const SUPPORTED_OPS: [&str; 4] = ["Conv", "ConvTranspose", "Gemm", "MatMul"];

/// Which runtime the QDQ model is for; it decides the Q/DQ placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// TensorRT explicit quantization: Q/DQ on the inputs of weighted ops only.
    Tensorrt,
    /// ONNX Runtime on CPU: also Q/DQ on the outputs of weighted ops, so they fuse into
    /// QLinearConv / QLinearMatMul.
    OrtCpu,
    /// OpenVINO on CPU: the TensorRT input placement, uint8 (zero point 128) where the activation
    /// is a Concat output, plus Q/DQ on weighted-op outputs a Concat reads; no residual-Add rule.
    Openvino,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Tensorrt => "tensorrt",
            Target::OrtCpu => "ort-cpu",
            Target::Openvino => "openvino",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Target> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tensorrt" | "trt" => Ok(Target::Tensorrt),
            "ort-cpu" | "ort_cpu" | "ortcpu" => Ok(Target::OrtCpu),
            "openvino" | "ov" => Ok(Target::Openvino),
            other => Err(ExportError::Policy(format!(
                "unknown target '{other}' (expected 'tensorrt', 'ort-cpu' or 'openvino')"
            ))),
        }
    }
}

/// How an activation tensor is stored between its QuantizeLinear and DequantizeLinear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationType {
    /// int8, zero point 0, scale amax/127 (TensorRT's symmetric rule; OpenVINO).
    Int8,
    /// uint8, zero point 128, scale amax/127: the int8 grid shifted, for ONNX Runtime's U8S8
    /// kernels (and OpenVINO's Concat outputs).
    Uint8Centered,
    /// uint8, zero point 0, scale amax/255: a tensor that cannot be negative (a Relu output).
    Uint8NonNegative,
}

impl ActivationType {
    /// The zero point, as stored (`int8` for [`ActivationType::Int8`], else `uint8`).
    pub fn zero_point(self) -> i32 {
        match self {
            ActivationType::Int8 | ActivationType::Uint8NonNegative => 0,
            ActivationType::Uint8Centered => 128,
        }
    }

    /// The scale for a calibrated symmetric int8 scale (amax/127).
    pub fn scale(self, int8_scale: f32) -> f32 {
        match self {
            ActivationType::Int8 | ActivationType::Uint8Centered => int8_scale,
            ActivationType::Uint8NonNegative => int8_scale * 127.0 / 255.0,
        }
    }
}

/// What to quantize and for which runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuantPolicy {
    pub target: Target,
    /// Weighted op types to quantize (a subset of [`SUPPORTED_OPS`]).
    pub ops: BTreeSet<String>,
    /// Convs with fewer input or output channels than this stay float.
    pub min_channels: usize,
    /// Per-output-channel weight scales (else one scale per weight tensor).
    pub per_channel: bool,
    /// `None`: every node is eligible; otherwise only the nodes with these ids.
    pub nodes: Option<BTreeSet<String>>,
    /// Weights and activations, or weights only (or smoothed first), for every node
    /// `node_modes` does not name.
    pub mode: QuantMode,
    /// Per-node modes (node id → mode): a plan with a mode per layer group. Nodes not named
    /// here get `mode`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_modes: BTreeMap<String, QuantMode>,
}

impl QuantPolicy {
    /// The mode of node `id`.
    pub fn mode_of(&self, id: &str) -> QuantMode {
        self.node_modes.get(id).copied().unwrap_or(self.mode)
    }

    /// Whether any node may be smoothed ([`QuantMode::Smooth`]).
    pub fn smooths(&self) -> bool {
        self.mode == QuantMode::Smooth || self.node_modes.values().any(|m| *m == QuantMode::Smooth)
    }
}

impl Default for QuantPolicy {
    fn default() -> Self {
        QuantPolicy {
            target: Target::Tensorrt,
            ops: SUPPORTED_OPS.iter().map(|s| s.to_string()).collect(),
            min_channels: 16,
            per_channel: true,
            nodes: None,
            mode: QuantMode::Full,
            node_modes: BTreeMap::new(),
        }
    }
}

/// A weighted node the plan quantizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedNode {
    /// Node id ([`crate::groups::node_id`]).
    pub node: String,
    pub op: String,
    /// The float32 weight initializer that becomes int8.
    pub weight: String,
    /// Per-channel axis of the weight (meaningful when `per_channel`).
    pub weight_axis: usize,
    pub per_channel: bool,
    /// Activation inputs of this node that get a Q/DQ pair (this node is rewired to the DQ).
    pub inputs: Vec<String>,
    /// Outputs that get a Q/DQ pair consumed by every reader (`ort-cpu` placement only).
    pub outputs: Vec<String>,
}

/// The reason a weighted node outside the node selection is left in float.
pub const NOT_SELECTED: &str = "not in the node selection";

/// A weighted node left in float, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedNode {
    pub node: String,
    pub op: String,
    pub reason: String,
}

/// A residual `Add` fed by a quantized Conv (directly, or through a short chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResidualAdd {
    /// Node id of the Add.
    pub node: String,
    /// The Conv output it reads (or the end of a BN/activation chain from a Conv, `tensorrt`):
    /// no Q/DQ on this edge (TensorRT fuses the Add into the Conv).
    pub fused: String,
    /// The other input: it gets a Q/DQ pair, and this Add is rewired to the DQ.
    pub skip: String,
}

/// The outcome of [`plan`]: what [`crate::passes::insert_qdq()`] will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QdqPlan {
    pub target: Target,
    /// In graph order.
    pub quantized: Vec<PlannedNode>,
    /// Weighted-op nodes left in float, in graph order.
    pub skipped: Vec<SkippedNode>,
    /// Residual Adds whose skip input gets Q/DQ, in graph order.
    pub residual_adds: Vec<ResidualAdd>,
    /// Every tensor that gets a Q/DQ pair, so needs a calibrated range.
    pub activations: BTreeSet<String>,
    /// How each of those tensors is stored (every entry of `activations` has one).
    pub activation_types: BTreeMap<String, ActivationType>,
}

impl QdqPlan {
    /// The storage type of activation `tensor` ([`ActivationType::Int8`] when not planned).
    pub fn activation_type(&self, tensor: &str) -> ActivationType {
        self.activation_types
            .get(tensor)
            .copied()
            .unwrap_or(ActivationType::Int8)
    }

    /// The nodes to rewire for each activation tensor: `None` = every consumer.
    pub fn consumers(&self) -> BTreeMap<String, Option<BTreeSet<String>>> {
        let mut out: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        let mut add = |tensor: &str, node: Option<&str>| {
            let e = out
                .entry(tensor.to_string())
                .or_insert_with(|| Some(BTreeSet::new()));
            match (e.as_mut(), node) {
                (Some(set), Some(n)) => {
                    set.insert(n.to_string());
                }
                (_, None) => *e = None,
                (None, Some(_)) => {}
            }
        };
        for p in &self.quantized {
            for t in &p.inputs {
                add(t, Some(&p.node));
            }
            for t in &p.outputs {
                add(t, None);
            }
        }
        for r in &self.residual_adds {
            add(&r.skip, Some(&r.node));
        }
        out
    }
}

/// Names read inside the bodies of If/Loop/Scan nodes (recursively): a subgraph's implicit
/// inputs are among them.
fn subgraph_uses(graph: &onnx_protobuf::GraphProto) -> BTreeSet<String> {
    fn walk(g: &onnx_protobuf::GraphProto, out: &mut BTreeSet<String>) {
        for n in &g.node {
            for a in &n.attribute {
                for sg in a.g.as_ref().into_iter().chain(a.graphs.iter()) {
                    for sn in &sg.node {
                        out.extend(sn.input.iter().filter(|x| !x.is_empty()).cloned());
                    }
                    walk(sg, out);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(graph, &mut out);
    out
}

/// Whether `tensor`, followed forward through layout-only ops, is read inside a subgraph.
/// ONNX Runtime 1.31's QDQ propagation moves a DQ forward through such ops and aborts (a
/// C++ assertion, the process dies) when the result feeds a subgraph as an implicit input, so
/// the ORT-CPU placement leaves the output Q/DQ off those ops.
fn reaches_subgraph(ix: &GraphIndex, tensor: &str, implicit: &BTreeSet<String>) -> bool {
    const LAYOUT: [&str; 6] = [
        "Transpose",
        "Reshape",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Identity",
    ];
    let mut todo = vec![tensor.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(t) = todo.pop() {
        if implicit.contains(&t) {
            return true;
        }
        if !seen.insert(t.clone()) {
            continue;
        }
        for &c in ix.consumers(&t) {
            let n = ix.node(c);
            if LAYOUT.contains(&n.op_type.as_str()) {
                todo.extend(n.output.iter().filter(|x| !x.is_empty()).cloned());
            }
        }
    }
    false
}

/// The graph a plan is made for, with node ids and positions.
struct Planning<'a> {
    graph: &'a GraphProto,
    ix: GraphIndex<'a>,
    ids: Vec<String>,
    ir_version: i64,
}

impl Planning<'_> {
    /// Node ids must be unambiguous for the ops we may touch (selection and rewiring use them).
    fn check_ids(&self, policy: &QuantPolicy) -> Result<()> {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &self.ids {
            *count.entry(id.as_str()).or_default() += 1;
        }
        if let Some(sel) = &policy.nodes {
            if let Some(missing) = sel.iter().find(|s| !count.contains_key(s.as_str())) {
                return Err(ExportError::Policy(format!(
                    "selected node '{missing}' is not in the graph"
                )));
            }
        }
        for (i, n) in self.graph.node.iter().enumerate() {
            let relevant =
                is_default_op(n) && (policy.ops.contains(&n.op_type) || (n.op_type == "Add"));
            if relevant && count.get(self.ids[i].as_str()).copied().unwrap_or(0) > 1 {
                return Err(ExportError::Graph {
                    node: self.ids[i].clone(),
                    reason: "several nodes share this name; node names must be unique to quantize"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// The weighted nodes to quantize, and those left in float with the reason.
    fn weighted(&self, policy: &QuantPolicy) -> (Vec<PlannedNode>, Vec<SkippedNode>) {
        let mut quantized: Vec<PlannedNode> = Vec::new();
        let mut skipped = Vec::new();
        // weight → (axis, per_channel, first node using it)
        let mut weights: BTreeMap<String, (usize, bool, String)> = BTreeMap::new();
        for (i, n) in self.graph.node.iter().enumerate() {
            if !is_default_op(n) || !policy.ops.contains(&n.op_type) {
                continue;
            }
            let id = &self.ids[i];
            let skip = |reason: String| SkippedNode {
                node: id.clone(),
                op: n.op_type.clone(),
                reason,
            };
            if let Some(sel) = &policy.nodes {
                if !sel.contains(id) {
                    skipped.push(skip(NOT_SELECTED.into()));
                    continue;
                }
            }
            match check_node(&self.ix, n, policy, self.ir_version) {
                Ok((act, weight, axis)) => {
                    let per_channel =
                        policy.per_channel && per_channel_weights(&n.op_type, policy.target);
                    if let Some((a, pc, other)) = weights.get(&weight) {
                        if (*a, *pc) != (axis, per_channel) {
                            skipped.push(skip(format!(
                                "weight '{weight}' is shared with node '{other}', which quantizes it along axis {a}; this node needs axis {axis}"
                            )));
                            continue;
                        }
                    } else {
                        weights.insert(weight.clone(), (axis, per_channel, id.clone()));
                    }
                    // dynamic int8 starts as weight-only; passes::dynamic rewrites it later
                    let inputs = match policy.mode_of(id).needs_table() {
                        true => vec![act],
                        false => Vec::new(),
                    };
                    quantized.push(PlannedNode {
                        node: id.clone(),
                        op: n.op_type.clone(),
                        weight,
                        weight_axis: axis,
                        per_channel,
                        inputs,
                        outputs: Vec::new(),
                    });
                }
                Err(reason) => skipped.push(skip(reason)),
            }
        }
        (quantized, skipped)
    }

    /// Residual Adds fed directly by a quantized Conv; every other two-input Add is logged
    /// with the reason it is not one.
    fn residual_adds(
        &self,
        quantized: &[PlannedNode],
        pos: &BTreeMap<&str, usize>,
        target: Target,
    ) -> Vec<ResidualAdd> {
        let graph = self.graph;
        let conv_outputs: BTreeSet<&str> = quantized
            .iter()
            .filter(|p| p.op == "Conv" || p.op == "ConvTranspose")
            .filter_map(|p| {
                let i = *pos.get(p.node.as_str())?;
                graph.node[i].output.first().map(String::as_str)
            })
            .collect();
        let mut residual_adds = Vec::new();
        for (i, n) in graph.node.iter().enumerate() {
            if !is_default_op(n) || n.op_type != "Add" || n.input.len() != 2 {
                continue;
            }
            let id = &self.ids[i];
            let (a, b) = (n.input[0].as_str(), n.input[1].as_str());
            if a.is_empty() || b.is_empty() || a == b {
                log::debug!("{id}: not a residual Add: an input is missing or both are the same");
                continue;
            }
            if self.ix.is_constant(a) || self.ix.is_constant(b) {
                log::debug!("{id}: not a residual Add: an input is a constant");
                continue;
            }
            // tensorrt: an input reaching a quantized Conv through a BN/activation chain
            let chained = |t: &str| {
                target == Target::Tensorrt
                    && crate::inspect::conv_chain::chain(&self.ix, t).is_some_and(|c| {
                        let conv = graph.node[c.conv].output.first().map(String::as_str);
                        !c.links.is_empty() && conv.is_some_and(|o| conv_outputs.contains(o))
                    })
            };
            let (fused, skip) = match (conv_outputs.contains(a), conv_outputs.contains(b)) {
                (true, _) => (a, b),
                (false, true) => (b, a),
                (false, false) if chained(a) => (a, b),
                (false, false) if chained(b) => (b, a),
                (false, false) => {
                    log::debug!(
                        "{id}: not a residual Add: neither input is the output of a quantized Conv"
                    );
                    continue;
                }
            };
            residual_adds.push(ResidualAdd {
                node: id.clone(),
                fused: fused.to_string(),
                skip: skip.to_string(),
            });
        }
        residual_adds
    }

    /// `ort-cpu`: a Q/DQ pair on the output of each quantized op, except graph outputs and
    /// outputs that reach an If/Loop/Scan body through layout ops (each logged).
    fn ort_outputs(&self, quantized: &mut [PlannedNode], pos: &BTreeMap<&str, usize>) {
        let implicit = subgraph_uses(self.graph);
        for p in quantized {
            let Some(&i) = pos.get(p.node.as_str()) else {
                continue;
            };
            if let Some(out) = self.graph.node[i].output.first() {
                if out.is_empty() || self.ix.is_graph_output(out) {
                    log::debug!(
                        "{}: no output Q/DQ: its output is unnamed or a graph output",
                        p.node
                    );
                    continue;
                }
                if reaches_subgraph(&self.ix, out, &implicit) {
                    log::info!(
                        "{}: no output Q/DQ: its output reaches an If/Loop/Scan body through layout ops",
                        p.node
                    );
                    continue;
                }
                p.outputs.push(out.clone());
            }
        }
    }
}

/// Decides which weighted nodes to quantize and which tensors need ranges.
pub fn plan(model: &ModelProto, policy: &QuantPolicy) -> Result<QdqPlan> {
    for op in &policy.ops {
        if !SUPPORTED_OPS.contains(&op.as_str()) {
            return Err(ExportError::Policy(format!(
                "op '{op}' cannot be quantized (supported: {})",
                SUPPORTED_OPS.join(", ")
            )));
        }
    }
    let empty = GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let cx = Planning {
        graph,
        ix: GraphIndex::new(graph),
        ids: (0..graph.node.len()).map(|i| node_id(graph, i)).collect(),
        ir_version: model.ir_version,
    };
    cx.check_ids(policy)?;
    let (quantized, skipped) = cx.weighted(policy);
    let pos: BTreeMap<&str, usize> = cx
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    // residual-Add and output pairs only around the nodes that quantize activations
    let (mut with_acts, weight_only): (Vec<PlannedNode>, Vec<PlannedNode>) = quantized
        .into_iter()
        .partition(|p| policy.mode_of(&p.node).needs_table());
    let residual_adds = match policy.target {
        Target::Openvino => Vec::new(),
        Target::Tensorrt | Target::OrtCpu => cx.residual_adds(&with_acts, &pos, policy.target),
    };
    match policy.target {
        Target::Tensorrt => {}
        Target::OrtCpu => cx.ort_outputs(&mut with_acts, &pos),
        Target::Openvino => cx.openvino(&mut with_acts, &pos),
    }
    // back in graph order
    let mut quantized: Vec<PlannedNode> = with_acts.into_iter().chain(weight_only).collect();
    quantized.sort_by_key(|p| pos.get(p.node.as_str()).copied().unwrap_or(usize::MAX));

    let mut activations = BTreeSet::new();
    for p in &quantized {
        activations.extend(p.inputs.iter().cloned());
        activations.extend(p.outputs.iter().cloned());
    }
    activations.extend(residual_adds.iter().map(|r| r.skip.clone()));
    let activation_types = activations
        .iter()
        .map(|t| {
            let ty = match policy.target {
                Target::Tensorrt => ActivationType::Int8,
                Target::Openvino => openvino::activation_type(&cx.ix, t),
                Target::OrtCpu if cx.ix.producer_op(t) == Some("Relu") => {
                    ActivationType::Uint8NonNegative
                }
                Target::OrtCpu => ActivationType::Uint8Centered,
            };
            (t.clone(), ty)
        })
        .collect();
    Ok(QdqPlan {
        target: policy.target,
        quantized,
        skipped,
        residual_adds,
        activations,
        activation_types,
    })
}

/// Whether `op`'s weights may get per-channel scales on `target`: not ConvTranspose on
/// `tensorrt` (quantized per tensor, see the module docs).
fn per_channel_weights(op: &str, target: Target) -> bool {
    !(op == "ConvTranspose" && target == Target::Tensorrt)
}

/// Checks one weighted node: `Ok((activation, weight, axis))` or the reason it stays float.
fn check_node(
    ix: &GraphIndex<'_>,
    n: &NodeProto,
    policy: &QuantPolicy,
    ir_version: i64,
) -> std::result::Result<(String, String, usize), String> {
    let input = |k: usize| n.input.get(k).filter(|s| !s.is_empty()).cloned();
    let act = input(0).ok_or("no activation input")?;
    let weight = input(1).ok_or("no weight input")?;
    if ix.is_constant(&act) {
        return Err(format!(
            "input '{act}' is a constant (a constant-only node is folded, not quantized)"
        ));
    }
    let Some(w) = ix.initializer(&weight) else {
        if ix.is_constant(&weight) {
            return Err(format!(
                "weight '{weight}' comes from a Constant node, not an initializer"
            ));
        }
        return Err(format!(
            "weight '{weight}' is not a constant initializer (it is computed at run time)"
        ));
    };
    // From IR 4 on, an initializer that is also a graph input is only a default value.
    if ir_version >= 4 && ix.graph.input.iter().any(|v| v.name == weight) {
        return Err(format!(
            "weight '{weight}' is also a graph input, so it can be overridden at run time"
        ));
    }
    if w.data_type != elem::FLOAT {
        return Err(format!(
            "weight '{weight}' is {}, only float32 weights are quantized",
            crate::model::elem_type_name(w.data_type)
        ));
    }
    let dims = &w.dims;
    let axis = match n.op_type.as_str() {
        "Conv" | "ConvTranspose" => {
            if dims.len() < 3 {
                return Err(format!(
                    "weight '{weight}' has rank {}, a Conv weight needs at least 3",
                    dims.len()
                ));
            }
            let group = attr_int(n, "group").unwrap_or(1).max(1);
            let (cin, cout, axis) = if n.op_type == "Conv" {
                (dims[1] * group, dims[0], 0)
            } else {
                let axis = match policy.target {
                    Target::Tensorrt => 1, // per tensor: see per_channel_weights
                    Target::OrtCpu | Target::Openvino => 1,
                };
                (dims[0], dims[1] * group, axis)
            };
            let min = policy.min_channels as i64;
            if cin < min || cout < min {
                return Err(format!(
                    "{cin} input and {cout} output channels, fewer than min_channels {min}"
                ));
            }
            axis
        }
        "Gemm" => {
            if dims.len() != 2 {
                return Err(format!("Gemm weight '{weight}' is not 2-D"));
            }
            if attr_int(n, "transB").unwrap_or(0) != 0 {
                0
            } else {
                1
            }
        }
        "MatMul" => {
            if dims.len() < 2 {
                return Err(format!("MatMul weight '{weight}' is 1-D"));
            }
            dims.len() - 1
        }
        other => return Err(format!("op {other} is not a weighted op voxq quantizes")),
    };
    Ok((act, weight, axis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        assert_eq!("tensorrt".parse::<Target>().unwrap(), Target::Tensorrt);
        assert_eq!("ort-cpu".parse::<Target>().unwrap(), Target::OrtCpu);
        assert_eq!(Target::OrtCpu.to_string(), "ort-cpu");
        assert_eq!("OpenVINO".parse::<Target>().unwrap(), Target::Openvino);
        assert_eq!(Target::Openvino.to_string(), "openvino");
        let e = "gpu".parse::<Target>().unwrap_err().to_string();
        assert!(e.contains("unknown target 'gpu'"), "{e}");
    }

    #[test]
    fn default_policy() {
        let p = QuantPolicy::default();
        assert_eq!(p.min_channels, 16);
        assert!(p.per_channel && p.nodes.is_none());
        assert_eq!(p.ops.len(), 4);
        assert_eq!(p.mode, QuantMode::Full);
    }

    #[test]
    fn modes_parse_and_print() {
        assert_eq!(
            "weight-only".parse::<QuantMode>().unwrap(),
            QuantMode::WeightOnly
        );
        assert_eq!("FULL".parse::<QuantMode>().unwrap(), QuantMode::Full);
        assert_eq!(QuantMode::WeightOnly.to_string(), "weight-only");
        let e = "w4".parse::<QuantMode>().unwrap_err().to_string();
        assert!(e.contains("unknown quantization mode 'w4'"), "{e}");
    }
}
