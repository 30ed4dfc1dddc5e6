//! The label-free evaluator: SQNR (dB) and mean cosine of each variant's outputs against the
//! fp32 model's outputs on calibration audio.

use std::path::PathBuf;

use exporter::sensitivity::{EvalError, Evaluate, Measurement, MetricInfo};

use super::{features_of, VariantRunner};
use crate::audio::fbank::Features;
use crate::error::Result;
use crate::speaker::config::SpeakerModel;
use crate::speaker::embed::cosine;

/// Label-free: SQNR (dB, the budgeted metric; higher is better) of a variant's outputs against
/// the fp32 model's outputs on calibration audio, and their mean cosine.
pub struct OutputEvaluator {
    model: SpeakerModel,
    feats: Vec<(String, Features)>,
    reference: Vec<Vec<f32>>,
    runner: VariantRunner,
    fingerprint: String,
}

/// SQNR is capped here (identical outputs would be infinite).
pub const SQNR_CAP_DB: f64 = 200.0;

/// `10 log10(Σ ref² / Σ (ref − out)²)` over all values, and the mean per-row cosine.
pub fn sqnr_and_cosine(reference: &[Vec<f32>], out: &[Vec<f32>]) -> (f64, f64) {
    let (mut sig, mut noise, mut cos) = (0f64, 0f64, 0f64);
    for (r, o) in reference.iter().zip(out) {
        for (a, b) in r.iter().zip(o) {
            sig += (*a as f64).powi(2);
            noise += (*a as f64 - *b as f64).powi(2);
        }
        cos += cosine(r, o);
    }
    let sqnr = if noise == 0.0 {
        SQNR_CAP_DB
    } else {
        (10.0 * (sig / noise).log10()).min(SQNR_CAP_DB)
    };
    (sqnr, cos / reference.len().max(1) as f64)
}

impl OutputEvaluator {
    /// `fp32` is the float model's bytes: its outputs on `audio` are the reference.
    pub fn new(
        model: SpeakerModel,
        fp32: &[u8],
        audio: &[(String, PathBuf)],
        runner: VariantRunner,
        progress: bool,
    ) -> Result<OutputEvaluator> {
        let (feats, fh) = features_of(&model, audio, progress)?;
        let (reference, _) = runner.run(&model, "fp32 reference", fp32, &feats)?;
        Ok(OutputEvaluator {
            model,
            feats,
            reference,
            fingerprint: format!("output-sqnr:{fh}{}", runner.fingerprint()),
            runner,
        })
    }
}

impl Evaluate for OutputEvaluator {
    fn metric(&self) -> MetricInfo {
        MetricInfo {
            name: "SQNR".into(),
            unit: "dB".into(),
            lower_is_better: false,
            noise_db: true,
        }
    }
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
    fn evaluate(
        &mut self,
        label: &str,
        model: &[u8],
    ) -> std::result::Result<Measurement, EvalError> {
        let (out, mut extra) = self.runner.run(&self.model, label, model, &self.feats)?;
        let (sqnr, cos) = sqnr_and_cosine(&self.reference, &out);
        extra.insert("cosine".to_string(), cos);
        Ok(Measurement { value: sqnr, extra })
    }
}
