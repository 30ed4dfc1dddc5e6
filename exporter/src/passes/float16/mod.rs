//! The float16 pass: casts the float part of a (QDQ) model to float16 for strongly typed
//! TensorRT builds, keeping the model's inputs and outputs float32.
//!
//! Steps, in order: raise the opset to [`FP16_SCALE_MIN_OPSET`] when the model has Q/DQ nodes;
//! [`classify::classify`] finds what stays float32, which initializers are Q/DQ scales and which
//! DequantizeLinear outputs need a Cast; [`requantize::requantize_weights`] requantizes int8
//! weights against their float16-rounded scales; [`convert::graph_to_f16`] converts
//! initializers, node attributes and value_info; [`casts`] adds the Casts at the DQs that stay
//! float32 and at the graph inputs and outputs.

mod casts;
mod classify;
mod convert;
mod requantize;

use onnx_protobuf::{ModelProto, NodeProto};

use super::opset::{default_opset, raise_opset};
use super::Result;
use crate::onnx::is_default_op;

/// The smallest opset whose `QuantizeLinear`/`DequantizeLinear` take float16 scales.
pub const FP16_SCALE_MIN_OPSET: i64 = 19;

fn is_qdq(n: &NodeProto) -> bool {
    is_default_op(n) && (n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear")
}

/// Casts the float part of a model to float16 for strongly typed TensorRT builds (`--float16`):
///
/// - float32 initializers, Constant values and `Cast(to=float)` targets become float16, except
///   float weights read by a `QuantizeLinear` (a float weight behind Q→DQ keeps its values and
///   its float32 scales; a `Cast` to float16 follows its `DequantizeLinear`) and `Resize`
///   `scales` (float32 only in ONNX);
/// - Q/DQ scales become float16, which needs opset 19: the opset is raised when the model has
///   Q/DQ nodes (see [`crate::passes::raise_opset`]). Scales are kept ≥ 2^-14 (normal float16);
///   int8 weights are requantized against their rounded float16 scales so `q × scale` stays
///   closest to the original weight;
/// - float values beyond ±65504 are clamped to it;
/// - every float32 graph input gets a `Cast` to float16 after it and every float32 graph output
///   a `Cast` to float32 before it, so the model's interface is unchanged;
/// - value_info float32 entries become float16.
///
/// ONNX Runtime CPU runs the result, with one caveat found on CAM++: its level-1
/// `WeightBiasQuantization` transformer turns float Conv biases into int32 using a scale
/// `x_scale · w_scale` computed in the scales' type, which with float16 scales ruins the biases
/// (embedding cosine 0.77 instead of 0.99). Disable that transformer
/// (`SessionBuilder::with_disabled_optimizers("WeightBiasQuantization")`) when checking a
/// float16 QDQ model on ORT CPU; TensorRT, the target of this option, does not do this.
pub fn to_float16(model: &ModelProto) -> Result<ModelProto> {
    let mut m = model.clone();
    let has_qdq = m.graph.node.iter().any(is_qdq);
    if has_qdq && default_opset(&m).unwrap_or(0) < FP16_SCALE_MIN_OPSET {
        raise_opset(&mut m, FP16_SCALE_MIN_OPSET)?;
    }
    let g = m.graph.mut_or_insert_default();
    let classes = classify::classify(g);
    requantize::requantize_weights(g, &classes.keep32)?;
    convert::graph_to_f16(g, &classes.keep32, &classes.scales)?;
    convert::retype_initializer_inputs(g);
    casts::add_casts(g, &classes.dq_cast)?;
    Ok(m)
}
