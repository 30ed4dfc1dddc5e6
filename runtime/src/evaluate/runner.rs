//! How a study runs its model variants: on ONNX Runtime or on OpenVINO (the engine the model
//! will be deployed on), and, for autoquant's latency objective, how each variant is timed
//! (median of repeated runs on one input of fixed length, after warm-up runs).

use std::collections::BTreeMap;
use std::time::Instant;

use engines::manifest::OpenvinoSettings;
use engines::ort::CpuOptions;

use crate::audio::fbank::Features;
use crate::error::{Result, RuntimeError};
use crate::speaker::config::SpeakerModel;
use crate::speaker::embed::Embedder;

/// The key the measured median latency is recorded under in each measurement.
pub const LATENCY_KEY: &str = "p50_ms";
/// Untimed runs before the timed ones.
const WARMUP_RUNS: usize = 3;

/// The engine that runs a study's model variants.
#[derive(Debug, Clone)]
pub enum EvalEngine {
    /// ONNX Runtime with these options.
    Ort(CpuOptions),
    /// OpenVINO on the CPU with these settings (precision, threads).
    Openvino(OpenvinoSettings),
}

/// Timing of each variant: `runs` runs on `frames` frames of real features (batch 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySpec {
    pub frames: usize,
    pub runs: usize,
}

/// Every utterance's embedding, and the extra figures of the run (the latency when timed).
pub type VariantRun = (Vec<Vec<f32>>, BTreeMap<String, f64>);

/// Runs (and optionally times) model variants on one engine.
#[derive(Debug, Clone)]
pub struct VariantRunner {
    pub engine: EvalEngine,
    pub latency: Option<LatencySpec>,
}

impl VariantRunner {
    /// ONNX Runtime, no timing.
    pub fn ort(opts: CpuOptions) -> VariantRunner {
        VariantRunner {
            engine: EvalEngine::Ort(opts),
            latency: None,
        }
    }

    /// What joins the evaluator's fingerprint: nothing for untimed ONNX Runtime runs (so that
    /// earlier caches stay valid), else the engine, its settings and the timing.
    pub fn fingerprint(&self) -> String {
        let mut s = match &self.engine {
            EvalEngine::Ort(o) if self.latency.is_some() => {
                format!(":ort-t{}", o.intra_threads)
            }
            EvalEngine::Ort(_) => String::new(),
            EvalEngine::Openvino(ov) => format!(
                ":openvino-{}-{}-t{}",
                engines::openvino::openvino_version().unwrap_or_default(),
                ov.inference_precision,
                ov.threads
            ),
        };
        if let Some(l) = self.latency {
            s.push_str(&format!(":latency-{}x{}", l.frames, l.runs));
        }
        s
    }

    fn embedder(&self, model: &SpeakerModel, label: &str, bytes: &[u8]) -> Result<Embedder> {
        match &self.engine {
            EvalEngine::Ort(o) => Embedder::from_bytes(model.clone(), label, bytes, o),
            EvalEngine::Openvino(s) => {
                Embedder::from_bytes_openvino(model.clone(), label, bytes, s)
            }
        }
    }

    /// Embeddings of every utterance, and the variant's latency when timing is asked for.
    pub fn run(
        &self,
        model: &SpeakerModel,
        label: &str,
        bytes: &[u8],
        feats: &[(String, Features)],
    ) -> Result<VariantRun> {
        let e = self.embedder(model, label, bytes)?;
        let emb = feats
            .iter()
            .map(|(_, f)| e.embed_features(f))
            .collect::<Result<Vec<_>>>()?;
        let mut extra = BTreeMap::new();
        if let Some(spec) = self.latency {
            extra.insert(
                LATENCY_KEY.to_string(),
                time_variant(&e, feats, spec, label)?,
            );
        }
        Ok((emb, extra))
    }
}

/// Real features tiled (or cut) to `frames` frames.
fn input_of(feats: &[(String, Features)], frames: usize, label: &str) -> Result<Features> {
    let Some((_, f)) = feats.iter().find(|(_, f)| f.frames > 0) else {
        return Err(RuntimeError::Model {
            model: label.into(),
            reason: "no features to time the model on".into(),
        });
    };
    let data: Vec<f32> = f
        .data
        .iter()
        .copied()
        .cycle()
        .take(frames * f.dim)
        .collect();
    Ok(Features {
        frames,
        dim: f.dim,
        data,
    })
}

/// Median milliseconds of `spec.runs` runs after [`WARMUP_RUNS`] untimed ones.
fn time_variant(
    e: &Embedder,
    feats: &[(String, Features)],
    spec: LatencySpec,
    label: &str,
) -> Result<f64> {
    let x = input_of(feats, spec.frames, label)?;
    for _ in 0..WARMUP_RUNS {
        e.embed_features(&x)?;
    }
    let mut t = Vec::with_capacity(spec.runs);
    for _ in 0..spec.runs.max(1) {
        let t0 = Instant::now();
        e.embed_features(&x)?;
        t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}
