//! [`QuantMode`]: what a quantized node gets (full int8, SmoothQuant then full int8, or int8
//! weights only), its names and its order of preference.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ExportError;

/// What a quantized node gets: int8 weights and activations (optionally smoothed first), or
/// int8 weights only.
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
    /// int8 weights behind DequantizeLinear only; activations stay float (no table needed).
    WeightOnly,
}

impl QuantMode {
    /// Every mode, most preferred first when they compress alike: full int8 (integer kernels,
    /// nothing added), smooth (the same kernels behind rescaled weights), weight-only (float
    /// activations: no integer kernels).
    pub const ALL: [QuantMode; 3] = [QuantMode::Full, QuantMode::Smooth, QuantMode::WeightOnly];

    pub fn name(self) -> &'static str {
        match self {
            QuantMode::Full => "full",
            QuantMode::Smooth => "smooth",
            QuantMode::WeightOnly => "weight-only",
        }
    }

    /// Preference rank when sizes tie: 0 is best ([`QuantMode::ALL`]'s order).
    pub fn preference(self) -> usize {
        match self {
            QuantMode::Full => 0,
            QuantMode::Smooth => 1,
            QuantMode::WeightOnly => 2,
        }
    }

    /// Whether the mode quantizes activations (so needs a calibration table).
    pub fn needs_table(self) -> bool {
        self != QuantMode::WeightOnly
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
            "weight-only" | "weight_only" | "weights" => Ok(QuantMode::WeightOnly),
            other => Err(ExportError::Policy(format!(
                "unknown quantization mode '{other}' (expected 'full', 'smooth' or 'weight-only')"
            ))),
        }
    }
}
