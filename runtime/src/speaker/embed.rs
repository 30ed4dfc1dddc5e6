//! Speaker embeddings: audio → resample → fbank → ONNX Runtime → embedding vector.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use engines::engine::{Engine, F32Tensor, IoSpec, OrtEngine, Served};
use engines::ort::{cpu_session, cpu_session_from_bytes, ep_name, resolve_device, CpuOptions};

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

/// A speaker-embedding model opened on an engine backend (ONNX Runtime, or OpenVINO for an
/// `openvino` engine folder).
pub struct Embedder {
    model: SpeakerModel,
    front: FrontEnd,
    session: Mutex<Box<dyn Engine>>,
    served: Served,
    sha256: OnceLock<String>,
    threads: usize,
}

/// An ONNX Runtime session as an [`Engine`], labelled with the provider `opts` resolve to.
fn ort_engine(
    label: &str,
    session: ort::session::Session,
    opts: &CpuOptions,
    precision: &str,
) -> Result<Box<dyn Engine>> {
    let provider = ep_name(resolve_device(opts.device)?);
    Ok(Box::new(OrtEngine::new(
        label, session, provider, precision,
    )))
}

/// `int8` when the model file holds Q/DQ nodes, else `fp32` (what [`Served`] reports).
fn precision_label(onnx: &[u8]) -> &'static str {
    let needle = b"QuantizeLinear";
    if onnx.windows(needle.len()).any(|w| w == needle) {
        "int8"
    } else {
        "fp32"
    }
}

impl Embedder {
    /// Opens the model and checks that its input and output have the shapes its config says.
    pub fn open(model: SpeakerModel, opts: &CpuOptions) -> Result<Embedder> {
        let front = FrontEnd::new(&model)?;
        let opts = &device_for(&model, opts)?;
        let engine: Box<dyn Engine> = match &model.openvino_engine {
            Some(dir) => engines::engine::open_folder(dir, opts)?,
            None => {
                let session = cpu_session(&model.onnx_path, opts)?;
                let bytes = std::fs::read(&model.onnx_path).unwrap_or_default();
                ort_engine(
                    &model.onnx_path.display().to_string(),
                    session,
                    opts,
                    precision_label(&bytes),
                )?
            }
        };
        Embedder::with_engine(model, front, engine, OnceLock::new(), opts.intra_threads)
    }

    /// An embedder over any opened engine of `model`.
    fn with_engine(
        model: SpeakerModel,
        front: FrontEnd,
        engine: Box<dyn Engine>,
        sha256: OnceLock<String>,
        threads: usize,
    ) -> Result<Embedder> {
        check_io(&model, engine.inputs(), engine.outputs())?;
        let served = engine.served().clone();
        log::info!("{}: served by {served}", model.onnx_path.display());
        Ok(Embedder {
            model,
            front,
            session: Mutex::new(engine),
            served,
            sha256,
            threads,
        })
    }

    /// Opens a variant of `model` held in memory on OpenVINO (an autoquant candidate judged on
    /// the engine it will be deployed on); `name` labels it in error messages.
    pub fn from_bytes_openvino(
        model: SpeakerModel,
        name: &str,
        bytes: &[u8],
        settings: &engines::manifest::OpenvinoSettings,
    ) -> Result<Embedder> {
        let front = FrontEnd::new(&model)?;
        let engine = engines::openvino::OvEngine::from_onnx_bytes(
            name,
            bytes,
            settings,
            precision_label(bytes),
        )?;
        let model = SpeakerModel {
            onnx_path: std::path::PathBuf::from(name),
            ..model
        };
        let sha = OnceLock::from(exporter::sensitivity::sha256_hex(bytes));
        Embedder::with_engine(model, front, Box::new(engine), sha, settings.threads)
    }

    /// Which backend, device and precision serve the model.
    pub fn served(&self) -> &Served {
        &self.served
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
        let engine = ort_engine(name, session, opts, precision_label(bytes))?;
        let model = SpeakerModel {
            onnx_path: std::path::PathBuf::from(name),
            ..model
        };
        let sha = OnceLock::from(exporter::sensitivity::sha256_hex(bytes));
        Embedder::with_engine(model, front, engine, sha, opts.intra_threads)
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
        // OpenVINO checks every pooling window against the input (CAM++'s 100-frame segment
        // pooling refuses inputs under 2 s, where ONNX Runtime shrinks the window): shorter
        // utterances are repeated up to the length the engine was built and checked on.
        let frames = if self.served.backend == "openvino" {
            first.frames.max(engines::ort::WARMUP_FRAMES as usize)
        } else {
            first.frames
        };
        let mut data = Vec::with_capacity(feats.len() * frames * first.dim);
        for f in feats {
            data.extend(f.data.iter().copied().cycle().take(frames * f.dim));
        }
        let run_err = |reason: String| RuntimeError::Model {
            model: model.clone(),
            reason,
        };
        let cfg = &self.model.config;
        let input = F32Tensor {
            name: cfg.input.clone(),
            dims: vec![feats.len() as i64, frames as i64, first.dim as i64],
            data,
        };
        let mut out = crate::sync::lock(&self.session).run_f32(&[input], &[cfg.output.as_str()])?;
        let Some(out) = out.pop() else {
            return Err(run_err(format!("no output named '{}'", cfg.output)));
        };
        let (dims, values) = (out.dims, out.data);
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

/// Checks the engine's input and output against the model config; errors name both files.
pub(crate) fn check_io(model: &SpeakerModel, inputs: &[IoSpec], outputs: &[IoSpec]) -> Result<()> {
    let cfg = &model.config;
    let bad = |reason: String| RuntimeError::Model {
        model: model.onnx_path.clone(),
        reason: format!(
            "does not match its config {}: {reason}",
            model.config_path.display()
        ),
    };
    let names = |v: &[IoSpec]| {
        v.iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let input = inputs.iter().find(|i| i.name == cfg.input).ok_or_else(|| {
        bad(format!(
            "has no input '{}' (inputs: {})",
            cfg.input,
            names(inputs)
        ))
    })?;
    if inputs.len() != 1 {
        return Err(bad(format!(
            "expected one input, found {} ({})",
            inputs.len(),
            names(inputs)
        )));
    }
    let bins = cfg.fbank.num_mel_bins as i64;
    let s = &input.shape;
    if input.dtype != "float32" {
        return Err(bad(format!(
            "input '{}' is {}, not float32",
            cfg.input, input.dtype
        )));
    }
    if !(s.len() == 3 && (s[2] == bins || s[2] < 0)) {
        return Err(bad(format!(
            "input '{}' has shape {s:?}, expected rank 3 [batch, frames, {bins}]",
            cfg.input
        )));
    }
    let output = outputs
        .iter()
        .find(|o| o.name == cfg.output)
        .ok_or_else(|| {
            bad(format!(
                "has no output '{}' (outputs: {})",
                cfg.output,
                names(outputs)
            ))
        })?;
    let s = &output.shape;
    if s.len() == 2 && (s[1] == cfg.embedding_dim as i64 || s[1] < 0) {
        Ok(())
    } else {
        Err(bad(format!(
            "output '{}' has shape {s:?}, expected [batch, {}]",
            cfg.output, cfg.embedding_dim
        )))
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
