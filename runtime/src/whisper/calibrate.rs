//! The calibration tap: activations a calibration run exposes as extra outputs of the encoder
//! and decoder sessions, streamed into their calibrators after every run (the run itself is
//! `crate::calibrate::whisper`). Each tensor's per-channel |x| maxima over its last axis are kept
//! too (SmoothQuant scale migration reads them from the table's statistics).

use std::collections::BTreeSet;

use calibration::Calibrator;

/// Exposed activations and the calibrators they stream into.
pub(crate) struct Tap {
    pub(crate) encoder: (BTreeSet<String>, Calibrator),
    pub(crate) decoder: (BTreeSet<String>, Calibrator),
}

/// Feeds every exposed tensor of one run into its calibrator.
pub(crate) fn observe(
    outs: &ort::session::SessionOutputs,
    (names, cal): &mut (BTreeSet<String>, Calibrator),
) -> std::result::Result<(), String> {
    for n in names.iter() {
        let v = outs
            .get(n.as_str())
            .ok_or_else(|| format!("exposed tensor '{n}' missing from the outputs"))?;
        let (shape, data) = v
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("tensor '{n}': {e}"))?;
        // the last axis is the feature (channel) axis of every MatMul input
        let channels = shape.last().map(|&d| d.max(0) as usize).unwrap_or(0);
        cal.observe_channels(n, data, channels)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
