//! The Whisper model: the encoder and decoder parts (ONNX Runtime sessions, or OpenVINO when
//! the folder's parts are engine folders of that target, see [`crate::backend`]), the
//! tokenizer, the encoder pass over one window's log-mel features, and the decoder step over a
//! KV cache the caller owns ([`WhisperCache`]). In ONNX Runtime the encoder output and every
//! KV tensor stay the values the sessions returned: a step feeds them by reference and keeps
//! its present KV outputs as the next step's past, so no tensor is copied between steps
//! (OpenVINO: `super::openvino`).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engines::openvino::OvTensor;
use engines::ort::{first_line, CpuOptions};
use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::{DynValue, Tensor};

use super::calibrate::{observe, Tap};
use super::config::{read_config, WhisperConfig, CONFIG_FILE};
use super::context::AudioCtx;
use crate::audio::logmel::{LogMel, LogMelExtractor};
use crate::backend::{is_engine_folder, Part, Shapes};
use crate::error::{cfg_err, Result, RuntimeError};
use crate::generation::StepDecoder;
use crate::session::f32_output;
use crate::sync::lock;

/// A Whisper model opened on its backend.
pub struct Whisper {
    pub config: WhisperConfig,
    pub(super) dir: PathBuf,
    mel: LogMelExtractor,
    encoder: Part,
    decoder: Part,
    pub(super) names: KvNames,
    pub(super) tokenizer: tokenizers::Tokenizer,
    /// Encoder positions per window ([`AudioCtx::Full`] unless set).
    audio_ctx: AudioCtx,
    /// Calibration observers fed from exposed activations (encoder, decoder), if any.
    pub(crate) tap: Option<Mutex<Tap>>,
}

/// The decoder's KV input and output names, per layer key then value (`2 * layer + k`).
pub(super) struct KvNames {
    pub(super) past_self: Vec<String>,
    pub(super) past_cross: Vec<String>,
    pub(super) present_self: Vec<String>,
    pub(super) present_cross: Vec<String>,
}

impl KvNames {
    fn new(n_layers: usize) -> KvNames {
        let names = |f: &dyn Fn(usize, &str) -> String| {
            (0..n_layers)
                .flat_map(|i| ["key", "value"].map(|kv| f(i, kv)))
                .collect()
        };
        KvNames {
            past_self: names(&|i, kv| format!("past_key_values.{i}.decoder.{kv}")),
            past_cross: names(&|i, kv| format!("past_key_values.{i}.encoder.{kv}")),
            present_self: names(&|i, kv| format!("present.{i}.decoder.{kv}")),
            present_cross: names(&|i, kv| format!("present.{i}.encoder.{kv}")),
        }
    }
}

/// One window's encoder output `[1, n_audio_ctx, d_model]`, the value the encoder returned
/// (fed to every decoder step by reference).
pub enum EncoderOutput {
    Ort(DynValue),
    Openvino(OvTensor),
}

/// The KV tensors of one hypothesis on one backend (`V`: an ONNX Runtime value or an
/// OpenVINO tensor).
pub(super) struct Kv<V> {
    /// Per decoder layer self-attention key and value (the previous step's present outputs,
    /// growing); empty before the first step.
    pub(super) self_kv: Vec<Arc<V>>,
    /// Cross-attention keys and values, computed at the first step, then shared; empty
    /// before the first step.
    pub(super) cross_kv: Arc<Vec<V>>,
    pub(super) encoder_out: Arc<V>,
}

impl<V> Clone for Kv<V> {
    fn clone(&self) -> Self {
        Kv {
            self_kv: self.self_kv.clone(),
            cross_kv: Arc::clone(&self.cross_kv),
            encoder_out: Arc::clone(&self.encoder_out),
        }
    }
}

impl<V> Kv<V> {
    fn new(n_layers: usize, encoder_out: V) -> Kv<V> {
        Kv {
            self_kv: Vec::with_capacity(2 * n_layers),
            cross_kv: Arc::new(Vec::new()),
            encoder_out: Arc::new(encoder_out),
        }
    }
}

/// The KV cache of one hypothesis: per decoder layer, self-attention key and value and
/// cross-attention key and value, with the encoder output, held by the backend that made them.
/// Cloning it (beam search) shares every tensor: a step never writes into its inputs, it
/// returns new values.
#[derive(Clone)]
pub struct WhisperCache(CacheOn);

#[derive(Clone)]
enum CacheOn {
    Ort(Kv<DynValue>),
    Openvino(Kv<OvTensor>),
}

impl WhisperCache {
    /// An empty cache of `n_layers` decoder layers over one window's encoder output.
    pub(crate) fn new(n_layers: usize, encoder_out: EncoderOutput) -> WhisperCache {
        match encoder_out {
            EncoderOutput::Ort(v) => WhisperCache(CacheOn::Ort(Kv::new(n_layers, v))),
            EncoderOutput::Openvino(t) => WhisperCache(CacheOn::Openvino(Kv::new(n_layers, t))),
        }
    }
}

/// The decoder step of a [`Whisper`] model, for [`crate::generation::generate`].
pub(crate) struct Step<'a> {
    w: &'a Whisper,
}

impl Whisper {
    /// Opens `dir` (or `dir/whisper.json`): config, both sessions, tokenizer; checks that
    /// the sessions have the inputs and outputs the config's sizes imply.
    pub fn open(path: &Path, opts: &CpuOptions) -> Result<Whisper> {
        Self::open_with(path, opts, None)
    }

    /// Opens the model with sessions built from the given encoder and decoder models (e.g.
    /// with activations exposed for calibration) instead of the files.
    pub(crate) fn open_with(
        path: &Path,
        opts: &CpuOptions,
        replace: Option<(&onnx_protobuf::ModelProto, &onnx_protobuf::ModelProto)>,
    ) -> Result<Whisper> {
        match replace {
            None => Self::open_replacing(path, opts, None, None),
            Some((e, d)) => Self::open_replacing(
                path,
                opts,
                Some(&exporter::model::to_bytes(e)?),
                Some(&exporter::model::to_bytes(d)?),
            ),
        }
    }

    /// Opens the model with the encoder and/or decoder given as serialized ONNX models (e.g.
    /// a quantized variant under study) instead of its files; the other part from its file.
    pub fn open_replacing(
        path: &Path,
        opts: &CpuOptions,
        encoder: Option<&[u8]>,
        decoder: Option<&[u8]>,
    ) -> Result<Whisper> {
        let (dir, config) = read_config(path)?;
        let mel = LogMelExtractor::new(config.n_mels)?;
        for f in [
            &config.encoder_file,
            &config.decoder_file,
            &"tokenizer.json".to_string(),
        ] {
            if !dir.join(f).is_file() && !is_engine_folder(&dir.join(f)) {
                return Err(cfg_err(
                    &dir.join(f),
                    "missing from the Whisper model folder".into(),
                ));
            }
        }
        let encoder = Part::open(
            &dir.join(&config.encoder_file),
            opts,
            Shapes::Steady,
            encoder,
        )?;
        let decoder = Part::open(
            &dir.join(&config.decoder_file),
            opts,
            Shapes::Steady,
            decoder,
        )?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| cfg_err(&tok_path, format!("cannot load tokenizer: {e}")))?;
        let names = KvNames::new(config.n_layers);
        let w = Whisper {
            config,
            dir,
            mel,
            encoder,
            decoder,
            names,
            tokenizer,
            audio_ctx: AudioCtx::Full,
            tap: None,
        };
        w.check_io()?;
        Ok(w)
    }

    fn check_io(&self) -> Result<()> {
        let c = &self.config;
        if self.encoder.backend() != self.decoder.backend() {
            return Err(cfg_err(
                &self.dir.join(CONFIG_FILE),
                format!(
                    "the encoder runs on {} and the decoder on {}: both parts must run on one backend (build the folder with `voxq build MODEL_DIR --target openvino`)",
                    self.encoder.backend(),
                    self.decoder.backend()
                ),
            ));
        }
        let names = self.decoder.input_names();
        for i in 0..c.n_layers {
            for kind in ["decoder", "encoder"] {
                for kv in ["key", "value"] {
                    let n = format!("past_key_values.{i}.{kind}.{kv}");
                    if !names.contains(&n) {
                        return Err(cfg_err(
                            &self.dir.join(&c.decoder_file),
                            format!(
                                "decoder has no input '{n}' (n_layers {} in {CONFIG_FILE}; inputs: {})",
                                c.n_layers,
                                names.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Encodes every window over `ctx` positions (see [`AudioCtx`]). A context shorter than
    /// the model's needs an encoder that takes any number of frames and a decoder that takes
    /// any encoder length (`tools/whisper_ct2.py export` writes both); a folder with fixed
    /// 3000-frame shapes is refused here, before any audio is read.
    pub fn set_audio_ctx(&mut self, ctx: AudioCtx) -> Result<()> {
        if ctx != AudioCtx::Full {
            for (s, file, input, axis) in [
                (
                    &self.encoder,
                    &self.config.encoder_file,
                    "input_features",
                    2,
                ),
                (
                    &self.decoder,
                    &self.config.decoder_file,
                    "encoder_hidden_states",
                    1,
                ),
            ] {
                if s.fixed_dim(input, axis) {
                    return Err(cfg_err(
                        &self.dir.join(file),
                        format!(
                            "--audio-ctx {ctx}: '{input}' has a fixed length (a 30 s-only export); re-export the model with tools/whisper_ct2.py export for a shorter audio context"
                        ),
                    ));
                }
            }
        }
        self.audio_ctx = ctx;
        Ok(())
    }

    /// The audio context this model encodes with.
    pub fn audio_ctx(&self) -> AudioCtx {
        self.audio_ctx
    }

    /// Encoder output for one 30 s window of 16 kHz samples.
    pub(crate) fn encode(&self, name: &Path, samples: &[f32]) -> Result<EncoderOutput> {
        self.encode_features(self.features(name, samples)?)
    }

    /// The log-mel features of one 30 s window (the encoder's input), cut to the audio
    /// context's frames (2 per position).
    pub(crate) fn features(&self, name: &Path, samples: &[f32]) -> Result<LogMel> {
        let m = self.mel.compute(name, samples)?;
        let positions = self
            .audio_ctx
            .positions(samples.len(), self.config.n_audio_ctx);
        let frames = (2 * positions).min(m.frames);
        if frames == m.frames {
            return Ok(m);
        }
        let data = m
            .data
            .chunks(m.frames)
            .flat_map(|row| row[..frames].iter().copied())
            .collect();
        Ok(LogMel {
            n_mels: m.n_mels,
            frames,
            data,
        })
    }

    /// The encoder pass over one window's features.
    pub(crate) fn encode_features(&self, m: LogMel) -> Result<EncoderOutput> {
        let want = [1, (m.frames / 2) as i64, self.config.d_model as i64];
        let dims = vec![1i64, m.n_mels as i64, m.frames as i64];
        let s = match &self.encoder {
            Part::Ort(s) => s,
            Part::Openvino(e) => {
                let mut e = lock(e);
                e.bind(
                    "input_features",
                    &OvTensor::new("input_features", &dims, &m.data)?,
                )?;
                e.infer()?;
                let out = e.take_output("last_hidden_state")?;
                self.check_encoder_shape(&out.dims()?, &want)?;
                return Ok(EncoderOutput::Openvino(out));
            }
        };
        let t =
            Tensor::<f32>::from_array((dims, m.data)).map_err(|e| self.run_err("encoder", e))?;
        let mut s = lock(s);
        // the input stays alive (borrowed) until its outputs are read: an exposed graph input
        // may come back as an output sharing its buffer
        let mut out = s
            .run(vec![("input_features", t.view().into_dyn())])
            .map_err(|e| self.run_err("encoder", e))?;
        if let Some(tap) = &self.tap {
            observe(&out, &mut lock(tap).encoder).map_err(|r| self.run_err("encoder", r))?;
        }
        let (shape, _) =
            f32_output(&out, "last_hidden_state").map_err(|e| self.run_err("encoder", e))?;
        self.check_encoder_shape(shape, &want)?;
        let v = take(&mut out, "last_hidden_state").map_err(|e| self.run_err("encoder", e))?;
        Ok(EncoderOutput::Ort(v))
    }

    fn check_encoder_shape(&self, shape: &[i64], want: &[i64; 3]) -> Result<()> {
        if shape != want {
            return Err(cfg_err(
                &self.dir.join(&self.config.encoder_file),
                format!(
                    "encoder output shape {shape:?}, {CONFIG_FILE} implies {want:?} (mismatched sizes)"
                ),
            ));
        }
        Ok(())
    }

    /// The logits' last axis (`vocab`) and the values read (`got`) are the config's
    /// vocabulary.
    pub(super) fn check_vocab(&self, vocab: i64, got: usize) -> Result<()> {
        let c = &self.config;
        if vocab != c.vocab_size as i64 || got != c.vocab_size {
            return Err(cfg_err(
                &self.dir.join(&c.decoder_file),
                format!(
                    "decoder logits have {vocab} entries, {CONFIG_FILE} says vocab_size {}",
                    c.vocab_size
                ),
            ));
        }
        Ok(())
    }

    /// Which backend runs the decoder: `onnxruntime` or `openvino`.
    pub fn backend(&self) -> &'static str {
        self.decoder.backend()
    }

    fn run_err(&self, which: &str, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Model {
            model: self.dir.join(match which {
                "encoder" => &self.config.encoder_file,
                _ => &self.config.decoder_file,
            }),
            reason: first_line(&e.to_string()),
        }
    }

    /// The decoder step over this model's sessions.
    pub(crate) fn step_decoder(&self) -> Step<'_> {
        Step { w: self }
    }

    /// Text of token ids (special tokens dropped, surrounding spaces trimmed).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self
            .tokenizer
            .decode(ids, true)
            .map_err(|e| cfg_err(&self.dir.join("tokenizer.json"), e.to_string()))?;
        Ok(text.trim().to_string())
    }
}

impl StepDecoder for Step<'_> {
    type State = WhisperCache;

    fn step(&self, st: &mut WhisperCache, new: &[u32]) -> Result<Vec<f32>> {
        match (&self.w.decoder, &mut st.0) {
            (Part::Ort(s), CacheOn::Ort(kv)) => ort_step(self.w, s, kv, new),
            (Part::Openvino(e), CacheOn::Openvino(kv)) => {
                super::openvino::step(self.w, &mut lock(e), kv, new)
            }
            _ => Err(self.w.run_err(
                "decoder",
                "the KV cache comes from an encoder on another backend",
            )),
        }
    }
}

/// One decoder step in ONNX Runtime, every KV value fed by reference.
fn ort_step(
    w: &Whisper,
    s: &Mutex<Session>,
    st: &mut Kv<DynValue>,
    new: &[u32],
) -> Result<Vec<f32>> {
    {
        let c = &w.config;
        let n = &w.names;
        let e = |e: ort::Error| w.run_err("decoder", e);
        let out_err = |r: String| w.run_err("decoder", r);
        let ids = Tensor::<i64>::from_array((
            vec![1i64, new.len() as i64],
            new.iter().map(|&t| t as i64).collect::<Vec<_>>(),
        ))
        .map_err(e)?;
        // zero-length past: the first step (no tensor to share yet)
        let empty = || {
            Tensor::<f32>::from_array((
                vec![1i64, c.n_heads as i64, 0, c.head_dim as i64],
                Vec::<f32>::new(),
            ))
            .map(SessionInputValue::from)
        };
        let mut feeds: Vec<(Cow<str>, SessionInputValue)> = Vec::with_capacity(2 + 8 * c.n_layers);
        feeds.push(("input_ids".into(), ids.into()));
        feeds.push((
            "encoder_hidden_states".into(),
            st.encoder_out.as_ref().into(),
        ));
        for j in 0..2 * c.n_layers {
            let past = match st.self_kv.get(j) {
                Some(v) => v.as_ref().into(),
                None => empty().map_err(e)?,
            };
            feeds.push((Cow::Borrowed(n.past_self[j].as_str()), past));
            let cross = match st.cross_kv.get(j) {
                Some(v) => v.into(),
                None => empty().map_err(e)?,
            };
            feeds.push((Cow::Borrowed(n.past_cross[j].as_str()), cross));
        }
        let mut s = lock(s);
        let mut out = s.run(feeds).map_err(e)?;
        let (shape, logits) = f32_output(&out, "logits").map_err(out_err)?;
        let vocab = *shape.last().unwrap_or(&0);
        w.check_vocab(vocab, logits.len().min(c.vocab_size))?;
        let last = logits[logits.len() - c.vocab_size..].to_vec();
        if let Some(tap) = &w.tap {
            observe(&out, &mut lock(tap).decoder).map_err(out_err)?;
        }
        // this step's present KV is the next step's past, kept as the values ONNX Runtime made
        let self_kv = n
            .present_self
            .iter()
            .map(|p| take(&mut out, p).map(Arc::new))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(out_err)?;
        if st.cross_kv.is_empty() {
            let cross = n
                .present_cross
                .iter()
                .map(|p| take(&mut out, p))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(out_err)?;
            st.cross_kv = Arc::new(cross);
        }
        st.self_kv = self_kv;
        Ok(last)
    }
}

/// Takes the output `name` out of a run's outputs (no copy), or says the model lacks it.
fn take(out: &mut SessionOutputs, name: &str) -> std::result::Result<DynValue, String> {
    out.remove(name)
        .ok_or_else(|| format!("the model has no output '{name}'"))
}
