//! Trial-list evaluation: embed every utterance once, score each trial, compute EER/minDCF.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Result, RuntimeError};
use crate::progress::Progress;
use crate::speaker::embed::{cosine, Embedder};
use crate::speaker::metrics::{self, DcfParams, Metrics};
use crate::speaker::trials::{utterances, Trial};

/// Everything `voxq eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub model: String,
    pub model_sha256: String,
    pub trials: usize,
    pub utterances: usize,
    /// All trials.
    pub all: Metrics,
    /// Cross-language target trials against all non-target trials, when the list has them.
    pub cross_language: Option<Metrics>,
    pub embed_seconds: f64,
    #[serde(skip)]
    pub scores: Vec<f64>,
    /// Per-utterance embeddings, by trial-list name.
    #[serde(skip)]
    pub embeddings: BTreeMap<String, Vec<f32>>,
}

/// Embeds each distinct utterance of the trial list, in sorted order.
pub fn embed_utterances(
    embedder: &Embedder,
    trials: &[Trial],
    root: &Path,
    progress: bool,
) -> Result<BTreeMap<String, Vec<f32>>> {
    let utts = utterances(trials, root);
    let bar = Progress::new(utts.len() as u64, "embedding", "utterances", progress);
    let mut out = BTreeMap::new();
    for (name, path) in utts {
        let e = embedder.embed_file(&path)?;
        out.insert(name, e);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Scores every trial by the cosine of its two utterances' embeddings.
pub fn score_trials(trials: &[Trial], emb: &BTreeMap<String, Vec<f32>>) -> Result<Vec<f64>> {
    trials
        .iter()
        .map(|t| {
            let a = emb.get(&t.enroll);
            let b = emb.get(&t.test);
            match (a, b) {
                (Some(a), Some(b)) => Ok(cosine(a, b)),
                _ => Err(RuntimeError::Scoring(format!(
                    "no embedding for trial {} / {}",
                    t.enroll, t.test
                ))),
            }
        })
        .collect()
}

/// Metrics of scored trials, overall and for the cross-language target subset.
pub fn metrics_of(
    trials: &[Trial],
    scores: &[f64],
    dcf: DcfParams,
) -> Result<(Metrics, Option<Metrics>)> {
    let mut tar = Vec::new();
    let mut non = Vec::new();
    let mut xlang = Vec::new();
    for (t, &s) in trials.iter().zip(scores) {
        if t.target {
            tar.push(s);
            if t.cross_language {
                xlang.push(s);
            }
        } else {
            non.push(s);
        }
    }
    let all = metrics::compute(&tar, &non, dcf)?;
    let x = if xlang.is_empty() {
        None
    } else {
        Some(metrics::compute(&xlang, &non, dcf)?)
    };
    Ok((all, x))
}

/// Runs a whole evaluation.
pub fn evaluate(
    embedder: &Embedder,
    trials: &[Trial],
    root: &Path,
    dcf: DcfParams,
    progress: bool,
) -> Result<Evaluation> {
    let t0 = Instant::now();
    let emb = embed_utterances(embedder, trials, root, progress)?;
    let embed_seconds = t0.elapsed().as_secs_f64();
    let scores = score_trials(trials, &emb)?;
    let (all, cross_language) = metrics_of(trials, &scores, dcf)?;
    Ok(Evaluation {
        model: embedder.model().config.name.clone(),
        model_sha256: embedder.model_sha256()?.to_string(),
        trials: trials.len(),
        utterances: emb.len(),
        all,
        cross_language,
        embed_seconds,
        scores,
        embeddings: emb,
    })
}

/// One embedding as a text line: `name<TAB>v1 v2 ...` (full f32 precision, no newline).
pub fn embedding_line(name: &str, v: &[f32]) -> String {
    let vals: Vec<String> = v.iter().map(|x| format!("{x:.8e}")).collect();
    format!("{name}\t{}", vals.join(" "))
}

/// Embeddings as [`embedding_line`]s, one a line.
pub fn embeddings_text(emb: &BTreeMap<String, Vec<f32>>) -> Vec<u8> {
    let mut buf = Vec::new();
    for (name, v) in emb {
        let _ = writeln!(buf, "{}", embedding_line(name, v));
    }
    buf
}

/// Writes embeddings as [`embedding_line`]s (atomically).
pub fn write_embeddings(path: &Path, emb: &BTreeMap<String, Vec<f32>>) -> Result<()> {
    crate::fsutil::write_atomic(path, &embeddings_text(emb))
}

/// A score file: `score label enroll test` per trial, in trial order.
pub fn scores_text(trials: &[Trial], scores: &[f64]) -> Vec<u8> {
    let mut buf = Vec::new();
    for (t, s) in trials.iter().zip(scores) {
        let _ = writeln!(
            buf,
            "{s:.6} {} {} {}",
            if t.target { "target" } else { "nontarget" },
            t.enroll,
            t.test
        );
    }
    buf
}

/// Writes a score file ([`scores_text`]) atomically.
pub fn write_scores(path: &Path, trials: &[Trial], scores: &[f64]) -> Result<()> {
    crate::fsutil::write_atomic(path, &scores_text(trials, scores))
}
