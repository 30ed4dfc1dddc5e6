//! The EER evaluator: EER (percent, the budgeted metric) and minDCF of each model variant on
//! a trial list.

use std::collections::BTreeMap;
use std::path::Path;

use exporter::sensitivity::{sha256_hex, EvalError, Evaluate, Measurement, MetricInfo};

use super::{features_of, VariantRunner};
use crate::audio::fbank::Features;
use crate::error::Result;
use crate::speaker::config::SpeakerModel;
use crate::speaker::eval::{metrics_of, score_trials};
use crate::speaker::metrics::DcfParams;
use crate::speaker::trials::{utterances, Trial};

/// EER (percent, the budgeted metric) and minDCF of a speaker model on a trial list. The
/// front end runs once; each model variant only embeds the cached features.
pub struct TrialsEvaluator {
    model: SpeakerModel,
    trials: Vec<Trial>,
    feats: Vec<(String, Features)>,
    dcf: DcfParams,
    runner: VariantRunner,
    fingerprint: String,
}

impl TrialsEvaluator {
    pub fn new(
        model: SpeakerModel,
        trials: Vec<Trial>,
        root: &Path,
        dcf: DcfParams,
        runner: VariantRunner,
        progress: bool,
    ) -> Result<TrialsEvaluator> {
        let files = utterances(&trials, root);
        let (feats, fh) = features_of(&model, &files, progress)?;
        let mut t = String::new();
        for x in &trials {
            t.push_str(&format!("{} {} {}\n", x.target as u8, x.enroll, x.test));
        }
        let fingerprint = format!(
            "trials-eer:{}:{}:p{}-m{}-f{}{}",
            sha256_hex(t.as_bytes()),
            fh,
            dcf.p_target,
            dcf.c_miss,
            dcf.c_fa,
            runner.fingerprint()
        );
        Ok(TrialsEvaluator {
            model,
            trials,
            feats,
            dcf,
            runner,
            fingerprint,
        })
    }

    fn run(&self, label: &str, bytes: &[u8]) -> Result<Measurement> {
        let (emb, mut extra) = self.runner.run(&self.model, label, bytes, &self.feats)?;
        let map: BTreeMap<String, Vec<f32>> =
            self.feats.iter().map(|(n, _)| n.clone()).zip(emb).collect();
        let scores = score_trials(&self.trials, &map)?;
        let (all, _) = metrics_of(&self.trials, &scores, self.dcf)?;
        extra.insert("min_dcf".to_string(), all.min_dcf);
        Ok(Measurement {
            value: 100.0 * all.eer,
            extra,
        })
    }
}

impl Evaluate for TrialsEvaluator {
    fn metric(&self) -> MetricInfo {
        MetricInfo {
            name: "EER".into(),
            unit: "%".into(),
            lower_is_better: true,
            noise_db: false,
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
        Ok(self.run(label, model)?)
    }
}
