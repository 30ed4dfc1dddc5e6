//! Evaluators for the exporter's sensitivity driver (its [`exporter::sensitivity::Evaluate`]
//! trait): [`trials`] (EER/minDCF on a trial list), [`output`] (label-free output SQNR and
//! cosine to fp32 on calibration audio) and [`wer`] (word error rate of a Whisper or audio-LLM
//! part on an ASR list), and [`plot`], the sensitivity bar chart (PNG). The
//! front end runs once per evaluator; each model variant only embeds the cached features, on
//! the engine its [`VariantRunner`] names (ONNX Runtime or OpenVINO), timed when asked.

pub mod output;
pub mod plot;
pub mod runner;
pub mod trials;
pub mod wer;

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::audio::decode::read_audio;
use crate::audio::fbank::Features;
use crate::error::Result;
use crate::progress::Progress;
use crate::speaker::config::SpeakerModel;
use crate::speaker::embed::FrontEnd;

pub use output::{sqnr_and_cosine, OutputEvaluator, SQNR_CAP_DB};
pub use plot::{sensitivity_png, sensitivity_png_bytes};
pub use runner::{EvalEngine, LatencySpec, VariantRunner, LATENCY_KEY};
pub use trials::TrialsEvaluator;
pub use wer::WerEvaluator;

/// Features of each named audio file through the model's front end, and a hash of them all.
pub(super) fn features_of(
    model: &SpeakerModel,
    files: &[(String, PathBuf)],
    progress: bool,
) -> Result<(Vec<(String, Features)>, String)> {
    let front = FrontEnd::new(model)?;
    let b = Progress::new(files.len() as u64, "features", "files", progress);
    let mut h = Sha256::new();
    let mut out = Vec::with_capacity(files.len());
    for (name, path) in files {
        let audio = read_audio(path)?;
        let f = front.features(path, &audio)?;
        h.update(name.as_bytes());
        h.update((f.frames as u64).to_le_bytes());
        for v in &f.data {
            h.update(v.to_le_bytes());
        }
        out.push((name.clone(), f));
        b.inc(1);
    }
    b.finish_and_clear();
    Ok((out, format!("{:x}", h.finalize())))
}
