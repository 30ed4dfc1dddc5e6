//! Rewrite passes over an ONNX model: expose activations for calibration, insert
//! QuantizeLinear/DequantizeLinear, cast the float rest to float16, raise the opset.
//!
//! - [`expose_activations`] ([`expose`]) copies a model and makes chosen intermediate tensors
//!   extra graph outputs, so a calibration run can read them.
//! - [`insert_qdq()`] ([`mod@insert_qdq`]) carries out a [`crate::policy::QdqPlan`] with ranges
//!   from a [`calibration::CalibrationTable`]: symmetric int8 (zero point 0, typed int8),
//!   weights stored as int8 initializers behind a per-channel `DequantizeLinear`, one shared
//!   `QuantizeLinear → DequantizeLinear` pair per activation tensor, rewiring only the consumers
//!   the plan names.
//! - [`to_float16`] ([`float16`]) casts the float rest of a (QDQ) model to float16 for strongly
//!   typed TensorRT builds, keeping the model's inputs and outputs float32.
//! - [`tile_to_expand`] ([`tile`]) turns a `Tile` that only repeats size-1 dimensions into the
//!   equal `Expand` (exact; proven with [`dims`]), which engine builds apply.
//! - [`raise_opset`] ([`opset`]) moves a model to a newer default-domain opset where every op
//!   present is unchanged or changed compatibly (per ONNX's own version converter), with the
//!   few attribute-to-input rewrites the converter also does.
//! - [`smooth_quant`] ([`smooth`]) migrates per-channel activation outliers of a LayerNorm
//!   output into the following MatMul/Gemm weights (SmoothQuant; exact in float), before a
//!   per-tensor int8 quantization.
//! - [`dynamic_int8`] ([`dynamic`]) turns weight-only int8 MatMuls into dynamic int8
//!   (`DynamicQuantizeLinear → MatMulInteger`: activations quantized per run, no table).
//!
//! Names are derived from the tensor served: `{weight}_quantized`, `{weight}_scale`,
//! `{weight}_zero_point`, node and output `{weight}_dq`; `{tensor}_scale`,
//! `{tensor}_zero_point`, node and output `{tensor}_q` and `{tensor}_dq`. A name that already
//! exists in the model is an error (quantizing a model twice), never a silent rename.

pub mod dims;
pub mod dynamic;
pub mod expose;
pub mod float16;
pub mod insert_qdq;
pub mod opset;
pub mod smooth;
pub mod tensors;
pub mod tile;
pub mod weights;

pub use dynamic::{dynamic_int8, DynamicReport, DYNAMIC_MIN_OPSET};
pub use expose::expose_activations;
pub use float16::{to_float16, FP16_SCALE_MIN_OPSET};
pub use insert_qdq::{insert_qdq, InsertQdqReport, QDQ_MIN_OPSET};
pub use opset::{default_opset, raise_opset};
pub use smooth::{smooth_quant, SmoothOptions, SmoothReport};
pub use tensors::f32_data;
pub use tile::{tile_to_expand, TileReport};
pub use weights::{quantize_weight, ZERO_CHANNEL_SCALE};

use crate::ExportError;

type Result<T> = std::result::Result<T, ExportError>;

/// An [`ExportError::Graph`] naming `node` (or tensor).
fn graph_err(node: &str, reason: impl Into<String>) -> ExportError {
    ExportError::Graph {
        node: node.to_string(),
        reason: reason.into(),
    }
}
