//! [`QuantMode`]: what a quantized node gets (full int8, SmoothQuant then full int8, dynamic
//! int8, or int8 weights only), its names and its order of preference.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ExportError;

/// What a quantized node gets: int8 weights and activations (optionally smoothed first, or
/// quantized at run time), or int8 weights only.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum QuantMode {
    /// int8 weights and Q/DQ on activations as the target's placement says (needs a
    /// calibration table).
    #[default]
    Full,
    /// SmoothQuant scale migration ([`crate::passes::smooth`]: the per-channel range of each
    /// LayerNorm output moved into the weights that read it), then [`QuantMode::Full`]. Needs a
    /// calibration table with per-channel maxima.
    Smooth,
    /// Dynamic int8 ([`crate::passes::dynamic`]): int8 per-column weights, the activation
    /// quantized at run time from its own range (`DynamicQuantizeLinear → MatMulInteger`, one
    /// scale per tensor per run: per token in a decoder step), so no table is needed and no
    /// calibrated range clips an outlier. MatMul with a constant 2-D weight only; any other
    /// weighted node in this mode gets [`QuantMode::WeightOnly`]'s int8 weights. ONNX Runtime and
    /// OpenVINO CPU only (TensorRT has no MatMulInteger).
    Dynamic,
    /// int8 weights behind DequantizeLinear only; activations stay float (no table needed).
    WeightOnly,
}

impl QuantMode {
    /// Every mode, most preferred first when they compress alike: full int8 (integer kernels,
    /// nothing added), smooth (the same kernels behind rescaled weights), dynamic (integer
    /// kernels plus a range computed per run), weight-only (float activations: no integer
    /// kernels).
    pub const ALL: [QuantMode; 4] = [
        QuantMode::Full,
        QuantMode::Smooth,
        QuantMode::Dynamic,
        QuantMode::WeightOnly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuantMode::Full => "full",
            QuantMode::Smooth => "smooth",
            QuantMode::Dynamic => "dynamic",
            QuantMode::WeightOnly => "weight-only",
        }
    }

    /// Preference rank when sizes tie: 0 is best ([`QuantMode::ALL`]'s order).
    pub fn preference(self) -> usize {
        match self {
            QuantMode::Full => 0,
            QuantMode::Smooth => 1,
            QuantMode::Dynamic => 2,
            QuantMode::WeightOnly => 3,
        }
    }

    /// Whether the mode quantizes activations with calibrated ranges (so needs a calibration
    /// table and activation Q/DQ pairs in the plan).
    pub fn needs_table(self) -> bool {
        matches!(self, QuantMode::Full | QuantMode::Smooth)
    }
}

impl fmt::Display for QuantMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QuantMode {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<QuantMode, ExportError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" | "int8" => Ok(QuantMode::Full),
            "smooth" | "smoothquant" => Ok(QuantMode::Smooth),
            "dynamic" | "dynamic-int8" => Ok(QuantMode::Dynamic),
            "weight-only" | "weight_only" | "weights" => Ok(QuantMode::WeightOnly),
            other => Err(ExportError::Policy(format!(
                "unknown quantization mode '{other}' (expected 'full', 'smooth', 'dynamic' or 'weight-only')"
            ))),
        }
    }
}
