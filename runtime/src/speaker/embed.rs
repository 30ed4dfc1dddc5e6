//! Speaker embeddings: audio → resample → fbank → ONNX Runtime → embedding vector.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use engines::ort::{cpu_session, cpu_session_from_bytes, first_line, CpuOptions};
use ort::session::Session;
use ort::value::Tensor;

use crate::audio::decode::read_audio;
use crate::audio::fbank::{Fbank, Features};
use crate::audio::resample::resample;
use crate::audio::wav::Audio;
use crate::error::{Result, RuntimeError};
use crate::speaker::config::SpeakerModel;
use crate::speaker::speech::{check_speech, SpeechCheck};

/// A model's front end: resample to its rate, then its filterbank settings.
pub struct FrontEnd {
    fbank: Fbank,
}

impl FrontEnd {
    pub fn new(model: &SpeakerModel) -> Result<FrontEnd> {
        Ok(FrontEnd {
            fbank: Fbank::new(&model.config.fbank)?,
        })
    }

    /// Features of decoded audio; `name` is used in error messages.
    pub fn features(&self, name: &Path, audio: &Audio) -> Result<Features> {
        let rate = self.fbank.config().sample_rate;
        let samples = if audio.sample_rate != rate {
            std::borrow::Cow::Owned(resample(&audio.samples, audio.sample_rate, rate)?)
        } else {
            std::borrow::Cow::Borrowed(&audio.samples)
        };
        self.fbank.compute_named(name, &samples)
    }
}

/// The session options for `model`: a TensorRT engine runs on TensorRT (`auto` picks it, an
/// explicit other device is an error).
fn device_for(model: &SpeakerModel, opts: &CpuOptions) -> Result<CpuOptions> {
    use engines::ort::Device;
    match (model.required_device, opts.device) {
        (Some(Device::Tensorrt), Device::Auto | Device::Tensorrt) => Ok(CpuOptions {
            device: Device::Tensorrt,
            ..opts.clone()
        }),
        (Some(Device::Tensorrt), asked) => Err(RuntimeError::Config {
            path: model.config_path.clone(),
            reason: format!(
                "a TensorRT engine runs on --device tensorrt (or auto), not {}",
                format!("{asked:?}").to_lowercase()
            ),
        }),
        _ => Ok(opts.clone()),
    }
}

/// A speaker-embedding model opened in an ONNX Runtime session.
pub struct Embedder {
    model: SpeakerModel,
    front: FrontEnd,
    session: Mutex<Session>,
    sha256: OnceLock<String>,
    threads: usize,
}

impl Embedder {
    /// Opens the model and checks that its input and output have the shapes its config says.
    pub fn open(model: SpeakerModel, opts: &CpuOptions) -> Result<Embedder> {
        let front = FrontEnd::new(&model)?;
        let opts = &device_for(&model, opts)?;
        let session = cpu_session(&model.onnx_path, opts)?;
        check_io(&model, &session)?;
        Ok(Embedder {
            model,
            front,
            session: Mutex::new(session),
            sha256: OnceLock::new(),
            threads: opts.intra_threads,
        })
    }

    /// Opens a variant of `model` held in memory (a quantized copy, say) with the same
    /// config; `name` labels it in error messages.
    pub fn from_bytes(
        model: SpeakerModel,
        name: &str,
        bytes: &[u8],
        opts: &CpuOptions,
    ) -> Result<Embedder> {
        let front = FrontEnd::new(&model)?;
        let session = cpu_session_from_bytes(name, bytes, opts)?;
        let model = SpeakerModel {
            onnx_path: std::path::PathBuf::from(name),
            ..model
        };
        check_io(&model, &session)?;
        Ok(Embedder {
            model,
            front,
            session: Mutex::new(session),
            sha256: OnceLock::from(exporter::sensitivity::sha256_hex(bytes)),
            threads: opts.intra_threads,
        })
    }

    pub fn model(&self) -> &SpeakerModel {
        &self.model
    }

    /// Intra-op threads requested (0 = ONNX Runtime's choice).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// sha256 of the ONNX file (hex); enrollments are tied to it.
    pub fn model_sha256(&self) -> Result<&str> {
        if let Some(s) = self.sha256.get() {
            return Ok(s);
        }
        let h = crate::fsutil::sha256_file(&self.model.onnx_path)?;
        Ok(self.sha256.get_or_init(|| h))
    }

    /// Front end: resample to the model's rate and compute its filterbank features.
    pub fn features(&self, name: &Path, audio: &Audio) -> Result<Features> {
        self.front.features(name, audio)
    }

    /// Embeds one utterance's features (batch of one).
    pub fn embed_features(&self, feats: &Features) -> Result<Vec<f32>> {
        let mut out = self.embed_batch(&[feats])?;
        Ok(out.remove(0))
    }

    /// Embeds several utterances with equal frame counts in one run.
    pub fn embed_batch(&self, feats: &[&Features]) -> Result<Vec<Vec<f32>>> {
        let model = &self.model.onnx_path;
        let Some(first) = feats.first() else {
            return Ok(Vec::new());
        };
        if feats
            .iter()
            .any(|f| f.frames != first.frames || f.dim != first.dim)
        {
            return Err(RuntimeError::Model {
                model: model.clone(),
                reason: "a batch must hold utterances with equal frame counts".into(),
            });
        }
        let mut data = Vec::with_capacity(feats.len() * first.frames * first.dim);
        for f in feats {
            data.extend_from_slice(&f.data);
        }
        let shape = [feats.len(), first.frames, first.dim];
        let run_err = |reason: String| RuntimeError::Model {
            model: model.clone(),
            reason,
        };
        let input = Tensor::<f32>::from_array((shape, data))
            .map_err(|e| run_err(format!("input tensor: {e}")))?;
        let cfg = &self.model.config;
        let mut session = crate::sync::lock(&self.session);
        let outputs = session
            .run(ort::inputs![cfg.input.as_str() => input])
            .map_err(|e| run_err(format!("inference failed: {}", first_line(&e.to_string()))))?;
        let out = outputs
            .get(cfg.output.as_str())
            .ok_or_else(|| run_err(format!("no output named '{}'", cfg.output)))?;
        let (shape, values) = out
            .try_extract_tensor::<f32>()
            .map_err(|e| run_err(format!("output '{}': {e}", cfg.output)))?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        if dims.len() != 2
            || dims[0] as usize != feats.len()
            || dims[1] as usize != cfg.embedding_dim
        {
            return Err(run_err(format!(
                "output '{}' has shape {dims:?}, expected [{}, {}]",
                cfg.output,
                feats.len(),
                cfg.embedding_dim
            )));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(run_err("embedding contains NaN or infinite values".into()));
        }
        Ok(values
            .chunks(cfg.embedding_dim)
            .map(|c| c.to_vec())
            .collect())
    }

    /// Embeds decoded audio; `name` is used in error messages.
    pub fn embed_audio(&self, name: &Path, audio: &Audio) -> Result<Vec<f32>> {
        let feats = self.features(name, audio)?;
        self.embed_features(&feats)
    }

    /// Reads an audio file (WAV, FLAC, MP3, Ogg Vorbis) and embeds it.
    pub fn embed_file(&self, path: &Path) -> Result<Vec<f32>> {
        let audio = read_audio(path)?;
        self.embed_audio(path, &audio)
    }

    /// Reads an audio file, refuses it unless it holds speech ([`check_speech`]), and embeds
    /// it: what enrolling, verifying and identifying use.
    pub fn embed_speech_file(&self, path: &Path, check: &SpeechCheck) -> Result<Vec<f32>> {
        let audio = read_audio(path)?;
        check_speech(path, &audio, check)?;
        self.embed_audio(path, &audio)
    }
}

/// Checks the session's input and output against the model config; errors name both files.
pub(crate) fn check_io(model: &SpeakerModel, session: &Session) -> Result<()> {
    let cfg = &model.config;
    let bad = |reason: String| RuntimeError::Model {
        model: model.onnx_path.clone(),
        reason: format!(
            "does not match its config {}: {reason}",
            model.config_path.display()
        ),
    };
    let names = |v: &[ort::value::Outlet]| {
        v.iter()
            .map(|o| o.name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == cfg.input)
        .ok_or_else(|| {
            bad(format!(
                "has no input '{}' (inputs: {})",
                cfg.input,
                names(session.inputs())
            ))
        })?;
    if session.inputs().len() != 1 {
        return Err(bad(format!(
            "expected one input, found {} ({})",
            session.inputs().len(),
            names(session.inputs())
        )));
    }
    let bins = cfg.fbank.num_mel_bins as i64;
    match input.dtype().tensor_shape() {
        Some(s) if s.len() == 3 && (s[2] == bins || s[2] < 0) => {}
        Some(s) => {
            return Err(bad(format!(
                "input '{}' has shape {:?}, expected rank 3 [batch, frames, {bins}]",
                cfg.input,
                s.iter().collect::<Vec<_>>()
            )))
        }
        None => return Err(bad(format!("input '{}' is not a tensor", cfg.input))),
    }
    let output = session
        .outputs()
        .iter()
        .find(|o| o.name() == cfg.output)
        .ok_or_else(|| {
            bad(format!(
                "has no output '{}' (outputs: {})",
                cfg.output,
                names(session.outputs())
            ))
        })?;
    match output.dtype().tensor_shape() {
        Some(s) if s.len() == 2 && (s[1] == cfg.embedding_dim as i64 || s[1] < 0) => Ok(()),
        Some(s) => Err(bad(format!(
            "output '{}' has shape {:?}, expected [batch, {}]",
            cfg.output,
            s.iter().collect::<Vec<_>>(),
            cfg.embedding_dim
        ))),
        None => Err(bad(format!("output '{}' is not a tensor", cfg.output))),
    }
}

/// Returns `v / |v|` (a zero vector stays zero).
pub fn l2_normalized(v: &[f32]) -> Vec<f32> {
    let n = v
        .iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt();
    if n == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| (*x as f64 / n) as f32).collect()
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}
