//! The WER evaluator: word error rate (percent, the budgeted metric; lower is better) of each
//! variant of one part of a Whisper folder (`encoder`, `decoder`) or an audio LLM (`encoder`,
//! `projector`, `llm`) on an ASR list, greedy. The audio is read once; each variant opens the
//! model with that part replaced by its bytes and transcribes the list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engines::ort::CpuOptions;
use exporter::sensitivity::{EvalError, Evaluate, Measurement, MetricInfo};
use sha2::{Digest, Sha256};

use crate::asr_eval::{evaluate_asr, is_non_speech, load_clips, words, AsrItem, AsrModel, Clip};
use crate::error::{cfg_err, Result, RuntimeError};
use crate::generation::{GenerateOptions, GenerationChoices};

/// WER of one model part's variants on an ASR list.
pub struct WerEvaluator {
    model: PathBuf,
    part: String,
    items: Vec<AsrItem>,
    clips: Vec<Clip>,
    opts: GenerateOptions,
    cpu: CpuOptions,
    progress: bool,
    fingerprint: String,
}

/// The files a model's results depend on (configs, tokenizers, every ONNX model, the LLM's
/// embedding table).
fn model_files(m: &AsrModel, path: &Path) -> Vec<PathBuf> {
    match m {
        AsrModel::Whisper(..) => {
            let (dir, cfg) = match crate::whisper::read_config(path) {
                Ok(x) => x,
                Err(_) => return vec![path.to_path_buf()],
            };
            vec![
                dir.join(crate::whisper::CONFIG_FILE),
                dir.join("tokenizer.json"),
                dir.join(&cfg.encoder_file),
                dir.join(&cfg.decoder_file),
            ]
        }
        AsrModel::AudioLlm(a) => {
            let mut v = vec![a.config_path().to_path_buf()];
            v.extend(a.part_files().into_iter().map(|(_, f)| f));
            if let Some((_, dec)) = a.part_files().pop() {
                let dir = dec.parent().unwrap_or(Path::new(".")).to_path_buf();
                let f = &a.llm.config.files;
                v.extend([
                    dir.join("llm.json"),
                    dir.join(&f.embed_tokens),
                    dir.join(&f.tokenizer),
                ]);
            }
            v
        }
    }
}

impl WerEvaluator {
    /// Reads the list's audio (relative to `root`) and fingerprints the model's files, the
    /// list, the audio and the settings. `part` names the part whose variants are evaluated.
    pub fn new(
        model: &Path,
        part: &str,
        items: Vec<AsrItem>,
        root: &Path,
        max_new_tokens: usize,
        cpu: CpuOptions,
        progress: bool,
    ) -> Result<WerEvaluator> {
        let m = AsrModel::open(model, &cpu, None)?;
        let parts: &[&str] = match m {
            AsrModel::Whisper(..) => &["encoder", "decoder"],
            AsrModel::AudioLlm(_) => &["encoder", "projector", "llm"],
        };
        if !parts.contains(&part) {
            return Err(cfg_err(
                model,
                format!("no model part '{part}' (parts: {})", parts.join(", ")),
            ));
        }
        let n_words: usize = items
            .iter()
            .filter(|i| !is_non_speech(&i.reference))
            .map(|i| words(&i.reference).len())
            .sum();
        if n_words == 0 {
            return Err(cfg_err(
                model,
                "the ASR list has no reference words (WER is undefined)".into(),
            ));
        }
        let opts = GenerateOptions::from_choices(&GenerationChoices {
            max_new_tokens,
            ..Default::default()
        })?;
        let clips = load_clips(items.iter().map(|i| i.audio.as_str()), root, progress)?;
        let mut h = Sha256::new();
        for f in model_files(&m, model) {
            let bytes = std::fs::read(&f).map_err(|source| RuntimeError::Io {
                path: f.clone(),
                source,
            })?;
            h.update(Sha256::digest(&bytes));
        }
        for (it, c) in items.iter().zip(&clips) {
            h.update(format!("{}\t{}\n", it.audio, it.reference).as_bytes());
            for v in &c.samples {
                h.update(v.to_le_bytes());
            }
        }
        let fingerprint = format!(
            "asr-wer:{}:{part}:greedy-{max_new_tokens}:{:x}",
            m.kind(),
            h.finalize()
        );
        Ok(WerEvaluator {
            model: model.to_path_buf(),
            part: part.to_string(),
            items,
            clips,
            opts,
            cpu,
            progress,
            fingerprint,
        })
    }

    fn run(&self, label: &str, bytes: &[u8]) -> Result<Measurement> {
        let m = AsrModel::open(&self.model, &self.cpu, Some((&self.part, bytes)))?;
        let r = evaluate_asr(
            &m,
            label,
            &self.items,
            &self.clips,
            &self.opts,
            self.progress,
        )?;
        let mut extra = BTreeMap::new();
        for (k, v) in [
            ("substitutions", r.counts.substitutions),
            ("deletions", r.counts.deletions),
            ("insertions", r.counts.insertions),
            ("words", r.counts.words),
            ("utterances", r.utterances),
        ] {
            extra.insert(k.to_string(), v as f64);
        }
        Ok(Measurement {
            value: r.wer_percent,
            extra,
        })
    }
}

impl Evaluate for WerEvaluator {
    fn metric(&self) -> MetricInfo {
        MetricInfo {
            name: "WER".into(),
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
