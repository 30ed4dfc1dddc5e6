//! Whisper ASR on ONNX Runtime: a model folder (`whisper.json`, `encoder.onnx`, a decoder
//! with self- and cross-attention KV cache `decoder.onnx`, `tokenizer.json`), the log-mel front
//! end, and decoding (greedy or beam search) with Whisper's token rules. Audio longer than 30 s
//! is cut into consecutive 30 s windows, each transcribed on its own, texts joined.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use calibration::Calibrator;

use engines::ort_env::{cpu_session, first_line, CpuOptions};
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

use crate::audio::logmel::{to_16k, LogMelExtractor, SAMPLE_RATE};
use crate::audio::wav::read_wav;
use crate::error::{Result, RuntimeError};
use crate::generate::{generate, GenerateOptions, StepDecoder, Strategy};

/// File of the model description inside a Whisper model folder.
pub const CONFIG_FILE: &str = "whisper.json";

/// `whisper.json`: sizes, special tokens and token rules (written by `tools/whisper_ct2.py`).
#[derive(Debug, Clone, Deserialize)]
pub struct WhisperConfig {
    #[serde(default)]
    pub model: String,
    pub n_mels: usize,
    pub n_audio_ctx: usize,
    pub n_text_ctx: usize,
    /// Decoder layers.
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_model: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub eot: u32,
    /// Prompt for transcription without timestamps (`<|startoftranscript|>` … `<|notimestamps|>`).
    pub prompt_notimestamps: Vec<u32>,
    /// Never generated.
    pub suppress_tokens: Vec<u32>,
    /// Not generated as the first token.
    pub begin_suppress_tokens: Vec<u32>,
    #[serde(default = "default_encoder")]
    pub encoder_file: String,
    #[serde(default = "default_decoder")]
    pub decoder_file: String,
    /// Multilingual model (language tokens in the prompt) or English-only.
    #[serde(default)]
    pub multilingual: bool,
    /// `<|en|>` → id, … (empty for English-only models).
    #[serde(default)]
    pub language_tokens: std::collections::BTreeMap<String, u32>,
    /// `<|startofprev|>`: begins the previous-text prompt.
    #[serde(default)]
    pub startofprev: Option<u32>,
    #[serde(default)]
    pub sot: Option<u32>,
    #[serde(default)]
    pub transcribe: Option<u32>,
    #[serde(default)]
    pub notimestamps: Option<u32>,
    /// Front-end settings the file may state; the log-mel front end is fixed, so any that is
    /// given must be its value (checked by [`read_config`]).
    #[serde(default)]
    pub sample_rate: Option<u64>,
    #[serde(default)]
    pub n_fft: Option<u64>,
    #[serde(default)]
    pub hop_length: Option<u64>,
    #[serde(default)]
    pub chunk_length_s: Option<u64>,
    #[serde(default)]
    pub n_samples: Option<u64>,
    #[serde(default)]
    pub n_frames: Option<u64>,
}

fn default_encoder() -> String {
    "encoder.onnx".into()
}
fn default_decoder() -> String {
    "decoder.onnx".into()
}

/// The model folder of `path` (the folder itself, or the one holding the given file) and its
/// checked `whisper.json`.
pub fn read_config(path: &Path) -> Result<(PathBuf, WhisperConfig)> {
    let dir = if path.is_file() {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    let cfg_path = dir.join(CONFIG_FILE);
    let text = exporter::textfile::read_text(&cfg_path, "a Whisper model config")
        .map_err(|e| cfg_err(&cfg_path, format!("cannot read Whisper model config: {e}")))?;
    let config: WhisperConfig = serde_json::from_str(&text)
        .map_err(|e| cfg_err(&cfg_path, format!("not a Whisper model config: {e}")))?;
    check_config(&config).map_err(|reason| cfg_err(&cfg_path, reason))?;
    Ok((dir, config))
}

/// The sizes are usable and the front-end settings, where given, are the ones implemented.
fn check_config(c: &WhisperConfig) -> std::result::Result<(), String> {
    use crate::audio::logmel::{HOP, N_FFT, N_FRAMES, N_SAMPLES};
    if c.n_mels != 80 && c.n_mels != 128 {
        return Err(format!(
            "n_mels {}: Whisper uses 80 or 128 mel bins",
            c.n_mels
        ));
    }
    for (key, v) in [
        ("n_audio_ctx", c.n_audio_ctx),
        ("n_layers", c.n_layers),
        ("n_heads", c.n_heads),
        ("head_dim", c.head_dim),
        ("vocab_size", c.vocab_size),
    ] {
        if v == 0 {
            return Err(format!("{key} is 0"));
        }
    }
    // Generation stops at half the text context; the prompt must leave room for a token.
    if c.n_text_ctx / 2 <= c.prompt_notimestamps.len() {
        return Err(format!(
            "n_text_ctx {} leaves no room to generate after a {}-token prompt",
            c.n_text_ctx,
            c.prompt_notimestamps.len()
        ));
    }
    let fixed = [
        ("sample_rate", c.sample_rate, u64::from(SAMPLE_RATE)),
        ("n_fft", c.n_fft, N_FFT as u64),
        ("hop_length", c.hop_length, HOP as u64),
        (
            "chunk_length_s",
            c.chunk_length_s,
            (N_SAMPLES as u64) / u64::from(SAMPLE_RATE),
        ),
        ("n_samples", c.n_samples, N_SAMPLES as u64),
        ("n_frames", c.n_frames, N_FRAMES as u64),
    ];
    for (key, given, ours) in fixed {
        if let Some(v) = given {
            if v != ours {
                return Err(format!(
                    "{key} {v}: voxq's Whisper front end computes log-mel features with {key} {ours}"
                ));
            }
        }
    }
    if c.n_heads.checked_mul(c.head_dim) != Some(c.d_model) {
        return Err(format!(
            "n_heads {} x head_dim {} != d_model {}",
            c.n_heads, c.head_dim, c.d_model
        ));
    }
    if c.prompt_notimestamps.is_empty() {
        return Err("empty prompt_notimestamps".into());
    }
    // The model files live in the model folder: no absolute names, no '..'.
    for (key, f) in [
        ("encoder_file", &c.encoder_file),
        ("decoder_file", &c.decoder_file),
    ] {
        if f.is_empty()
            || !Path::new(f)
                .components()
                .all(|x| matches!(x, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "{key} '{f}' must be a file inside the model folder (no '..', not absolute)"
            ));
        }
    }
    Ok(())
}

/// A Whisper model opened in ONNX Runtime sessions.
pub struct Whisper {
    pub config: WhisperConfig,
    dir: PathBuf,
    mel: LogMelExtractor,
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
    tokenizer: tokenizers::Tokenizer,
    /// Calibration observers fed from exposed activations (encoder, decoder), if any.
    tap: Option<Mutex<Tap>>,
}

/// Exposed activations and the calibrators they stream into.
struct Tap {
    encoder: (BTreeSet<String>, Calibrator),
    decoder: (BTreeSet<String>, Calibrator),
}

fn observe(
    outs: &ort::session::SessionOutputs,
    (names, cal): &mut (BTreeSet<String>, Calibrator),
) -> std::result::Result<(), String> {
    for n in names.iter() {
        let v = outs
            .get(n.as_str())
            .ok_or_else(|| format!("exposed tensor '{n}' missing from the outputs"))?;
        let (_, data) = v
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("tensor '{n}': {e}"))?;
        cal.observe(n, data).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn cfg_err(path: &Path, reason: String) -> RuntimeError {
    RuntimeError::Config {
        path: path.to_path_buf(),
        reason,
    }
}

/// The KV cache of one hypothesis: per decoder layer, self-attention key and value (growing)
/// and cross-attention key and value (computed at the first step, then shared).
#[derive(Clone)]
pub struct WhisperCache {
    self_kv: Vec<Vec<f32>>,
    past: usize,
    cross_kv: Arc<Vec<Vec<f32>>>,
    cross_len: usize,
    encoder_out: Arc<Vec<f32>>,
}

struct Step<'a> {
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
    fn open_with(
        path: &Path,
        opts: &CpuOptions,
        replace: Option<(&onnx_protobuf::ModelProto, &onnx_protobuf::ModelProto)>,
    ) -> Result<Whisper> {
        let (dir, config) = read_config(path)?;
        let mel = LogMelExtractor::new(config.n_mels)?;
        for f in [
            &config.encoder_file,
            &config.decoder_file,
            &"tokenizer.json".to_string(),
        ] {
            if !dir.join(f).is_file() {
                return Err(cfg_err(
                    &dir.join(f),
                    "missing from the Whisper model folder".into(),
                ));
            }
        }
        let (encoder, decoder) = match replace {
            None => (
                cpu_session(&dir.join(&config.encoder_file), opts)?,
                cpu_session(&dir.join(&config.decoder_file), opts)?,
            ),
            Some((e, d)) => (
                engines::ort_env::cpu_session_from_bytes(
                    &dir.join(&config.encoder_file).display().to_string(),
                    &exporter::model::to_bytes(e)?,
                    opts,
                )?,
                engines::ort_env::cpu_session_from_bytes(
                    &dir.join(&config.decoder_file).display().to_string(),
                    &exporter::model::to_bytes(d)?,
                    opts,
                )?,
            ),
        };
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| cfg_err(&tok_path, format!("cannot load tokenizer: {e}")))?;
        let w = Whisper {
            config,
            dir,
            mel,
            encoder: Mutex::new(encoder),
            decoder: Mutex::new(decoder),
            tokenizer,
            tap: None,
        };
        w.check_io()?;
        Ok(w)
    }

    fn check_io(&self) -> Result<()> {
        let c = &self.config;
        let dec = self.decoder.lock().unwrap();
        let names: Vec<&str> = dec.inputs().iter().map(|i| i.name()).collect();
        for i in 0..c.n_layers {
            for kind in ["decoder", "encoder"] {
                for kv in ["key", "value"] {
                    let n = format!("past_key_values.{i}.{kind}.{kv}");
                    if !names.contains(&n.as_str()) {
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

    /// Encoder output for one 30 s window of 16 kHz samples: `[n_audio_ctx * d_model]`.
    fn encode(&self, name: &Path, samples: &[f32]) -> Result<Vec<f32>> {
        let m = self.mel.compute(name, samples)?;
        let t = Tensor::<f32>::from_array((vec![1i64, m.n_mels as i64, m.frames as i64], m.data))
            .map_err(|e| self.run_err("encoder", e))?;
        let mut s = self.encoder.lock().unwrap();
        // the input stays alive (borrowed) until its outputs are read: an exposed graph input
        // may come back as an output sharing its buffer
        let out = s
            .run(vec![("input_features", t.view().into_dyn())])
            .map_err(|e| self.run_err("encoder", e))?;
        if let Some(tap) = &self.tap {
            observe(&out, &mut tap.lock().unwrap().encoder)
                .map_err(|r| self.run_err("encoder", r))?;
        }
        let (shape, v) = out["last_hidden_state"]
            .try_extract_tensor::<f32>()
            .map_err(|e| self.run_err("encoder", e))?;
        let want = [
            1,
            self.config.n_audio_ctx as i64,
            self.config.d_model as i64,
        ];
        if **shape != want {
            return Err(cfg_err(
                &self.dir.join(&self.config.encoder_file),
                format!(
                    "encoder output shape {:?}, {CONFIG_FILE} implies {want:?} (mismatched sizes)",
                    &**shape
                ),
            ));
        }
        Ok(v.to_vec())
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

    /// Token ids for one window (at most 30 s of 16 kHz audio), prompt and stop token excluded.
    pub fn transcribe_window(
        &self,
        name: &Path,
        samples: &[f32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        let prompt = self.config.prompt_notimestamps.clone();
        self.transcribe_window_prompt(name, samples, &prompt, opts, on_token)
    }

    /// The decoder prompt for a language (`en`, `de`, …; English-only models take only `en`)
    /// and a text that came before the audio (Whisper's `<|startofprev|>` prompt, at most half
    /// the text context, its end kept).
    pub fn prompt(&self, language: Option<&str>, previous: Option<&str>) -> Result<Vec<u32>> {
        let c = &self.config;
        let path = self.dir.join(CONFIG_FILE);
        let mut out = Vec::new();
        if let Some(text) = previous.map(str::trim).filter(|t| !t.is_empty()) {
            let start = c.startofprev.ok_or_else(|| {
                cfg_err(
                    &path,
                    "no `startofprev` token: the model cannot take a text prompt".into(),
                )
            })?;
            let enc = self
                .tokenizer
                .encode(format!(" {text}"), false)
                .map_err(|e| cfg_err(&self.dir.join("tokenizer.json"), e.to_string()))?;
            let ids = enc.get_ids();
            let keep = (c.n_text_ctx / 2).saturating_sub(1).min(ids.len());
            out.push(start);
            out.extend_from_slice(&ids[ids.len() - keep..]);
        }
        match language.map(|l| l.trim().to_ascii_lowercase()) {
            None => out.extend_from_slice(&c.prompt_notimestamps),
            Some(l) if !c.multilingual => {
                if l != "en" && l != "english" {
                    return Err(cfg_err(
                        &path,
                        format!(
                            "model '{}' is English-only; language '{l}' is not available",
                            c.model
                        ),
                    ));
                }
                out.extend_from_slice(&c.prompt_notimestamps);
            }
            Some(l) => {
                let lang = c
                    .language_tokens
                    .get(&format!("<|{l}|>"))
                    .or_else(|| c.language_tokens.get(&l));
                match (lang, c.sot, c.transcribe, c.notimestamps) {
                    (Some(&lang), Some(sot), Some(tr), Some(nt)) => {
                        out.extend_from_slice(&[sot, lang, tr, nt])
                    }
                    (None, ..) => return Err(cfg_err(&path, format!("unknown language '{l}'"))),
                    _ => {
                        return Err(cfg_err(
                            &path,
                            "needs `sot`, `transcribe` and `notimestamps` tokens to set a language"
                                .into(),
                        ))
                    }
                }
            }
        }
        Ok(out)
    }

    /// Like [`Whisper::transcribe_window`] with a prompt from [`Whisper::prompt`].
    pub fn transcribe_window_prompt(
        &self,
        name: &Path,
        samples: &[f32],
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        let enc = self.encode(name, samples)?;
        let c = &self.config;
        let cache = WhisperCache {
            self_kv: vec![Vec::new(); 2 * c.n_layers],
            past: 0,
            cross_kv: Arc::new(vec![Vec::new(); 2 * c.n_layers]),
            cross_len: 0,
            encoder_out: Arc::new(enc),
        };
        let mut o = opts.clone();
        if !o.stop_tokens.contains(&c.eot) {
            o.stop_tokens.push(c.eot);
        }
        let limit = c.n_text_ctx / 2;
        o.max_new_tokens = o.max_new_tokens.min(limit);
        let suppress = c.suppress_tokens.clone();
        let begin = c.begin_suppress_tokens.clone();
        let vocab = c.vocab_size;
        let rule = move |step: usize, l: &mut [f32]| {
            for &t in &suppress {
                if (t as usize) < vocab {
                    l[t as usize] = f32::NEG_INFINITY;
                }
            }
            if step == 0 {
                for &t in &begin {
                    if (t as usize) < vocab {
                        l[t as usize] = f32::NEG_INFINITY;
                    }
                }
            }
        };
        generate(&Step { w: self }, cache, prompt, &o, &rule, on_token)
    }

    /// Text of token ids (special tokens dropped, surrounding spaces trimmed).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self
            .tokenizer
            .decode(ids, true)
            .map_err(|e| cfg_err(&self.dir.join("tokenizer.json"), e.to_string()))?;
        Ok(text.trim().to_string())
    }

    /// Transcribes decoded audio: resampled to 16 kHz, cut into 30 s windows.
    pub fn transcribe_samples(
        &self,
        name: &Path,
        samples: &[f32],
        rate: u32,
        opts: &GenerateOptions,
    ) -> Result<String> {
        let samples = to_16k(name, samples, rate)?;
        let mut texts = Vec::new();
        for w in LogMelExtractor::windows(&samples) {
            let ids = self.transcribe_window(name, w, opts, &mut |_| true)?;
            let t = self.decode(&ids)?;
            if !t.is_empty() {
                texts.push(t);
            }
        }
        Ok(texts.join(" "))
    }

    /// Transcribes a WAV file.
    pub fn transcribe_file(&self, path: &Path, opts: &GenerateOptions) -> Result<String> {
        let a = read_wav(path)?;
        self.transcribe_samples(path, &a.samples, a.sample_rate, opts)
    }
}

impl StepDecoder for Step<'_> {
    type State = WhisperCache;

    fn step(&self, st: &mut WhisperCache, new: &[u32]) -> Result<Vec<f32>> {
        let w = self.w;
        let c = &w.config;
        let (h, hd) = (c.n_heads as i64, c.head_dim as i64);
        let e = |e: ort::Error| w.run_err("decoder", e);
        let mut inputs: Vec<(String, Tensor<f32>)> = Vec::new();
        let ids = Tensor::<i64>::from_array((
            vec![1i64, new.len() as i64],
            new.iter().map(|&t| t as i64).collect::<Vec<_>>(),
        ))
        .map_err(e)?;
        inputs.push((
            "encoder_hidden_states".into(),
            Tensor::<f32>::from_array((
                vec![1i64, c.n_audio_ctx as i64, c.d_model as i64],
                st.encoder_out.as_ref().clone(),
            ))
            .map_err(e)?,
        ));
        for i in 0..c.n_layers {
            for (k, kv) in ["key", "value"].iter().enumerate() {
                inputs.push((
                    format!("past_key_values.{i}.decoder.{kv}"),
                    Tensor::<f32>::from_array((
                        vec![1, h, st.past as i64, hd],
                        st.self_kv[2 * i + k].clone(),
                    ))
                    .map_err(e)?,
                ));
                inputs.push((
                    format!("past_key_values.{i}.encoder.{kv}"),
                    Tensor::<f32>::from_array((
                        vec![1, h, st.cross_len as i64, hd],
                        st.cross_kv[2 * i + k].clone(),
                    ))
                    .map_err(e)?,
                ));
            }
        }
        let mut feeds: Vec<(String, ort::session::SessionInputValue)> =
            vec![("input_ids".into(), ids.into())];
        feeds.extend(inputs.into_iter().map(|(n, t)| (n, t.into())));
        let mut s = w.decoder.lock().unwrap();
        let out = s.run(feeds).map_err(e)?;
        let (shape, logits) = out["logits"].try_extract_tensor::<f32>().map_err(e)?;
        let vocab = *shape.last().unwrap_or(&0) as usize;
        if vocab != c.vocab_size {
            return Err(cfg_err(
                &w.dir.join(&c.decoder_file),
                format!(
                    "decoder logits have {vocab} entries, {CONFIG_FILE} says vocab_size {}",
                    c.vocab_size
                ),
            ));
        }
        let last = logits[logits.len() - vocab..].to_vec();
        if let Some(tap) = &w.tap {
            observe(&out, &mut tap.lock().unwrap().decoder).map_err(|r| w.run_err("decoder", r))?;
        }
        let new_cross = st.cross_len == 0;
        let mut cross = Vec::new();
        for i in 0..c.n_layers {
            for (k, kv) in ["key", "value"].iter().enumerate() {
                let (_, v) = out[format!("present.{i}.decoder.{kv}").as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(e)?;
                st.self_kv[2 * i + k] = v.to_vec();
                if new_cross {
                    let (_, v) = out[format!("present.{i}.encoder.{kv}").as_str()]
                        .try_extract_tensor::<f32>()
                        .map_err(e)?;
                    cross.push(v.to_vec());
                }
            }
        }
        st.past += new.len();
        if new_cross {
            st.cross_kv = Arc::new(cross);
            st.cross_len = c.n_audio_ctx;
        }
        Ok(last)
    }
}

/// Beam search as Whisper's reference decoder uses it (5 beams there; `beams` here).
pub fn beam(beams: usize) -> Strategy {
    Strategy::Beam {
        beams,
        length_penalty: 1.0,
    }
}

/// What a Whisper calibration run saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WhisperCalibration {
    pub utterances: usize,
    pub audio_seconds: f64,
    /// Decoder steps observed per pass.
    pub decoder_steps: usize,
    pub encoder_tensors: usize,
    pub decoder_tensors: usize,
    pub wall_seconds: f64,
}

/// Calibrates encoder and decoder on real audio: every utterance is encoded and transcribed
/// greedily by the float model with the activations the quantizer needs exposed, so the
/// decoder is observed on the token sequences it really produces, step by step with its KV
/// cache. Two passes: abs-max first, then histograms over exactly that range.
pub fn calibrate(
    dir: &Path,
    models: (&onnx_protobuf::ModelProto, &onnx_protobuf::ModelProto),
    audio: &[(String, PathBuf)],
    tensors: (&BTreeSet<String>, &BTreeSet<String>),
    bins: usize,
    opts: &CpuOptions,
) -> Result<(Calibrator, Calibrator, WhisperCalibration)> {
    let t0 = std::time::Instant::now();
    let enc_x = exporter::passes::expose_activations(models.0, tensors.0)?;
    let dec_x = exporter::passes::expose_activations(models.1, tensors.1)?;
    let mut w = Whisper::open_with(dir, opts, Some((&enc_x, &dec_x)))?;
    let mut seconds = 0.0;
    let mut steps = 0;
    let mut ranges: Option<(Calibrator, Calibrator)> = None;
    for pass in 0..2 {
        let (mut ce, mut cd) = (Calibrator::new(bins)?, Calibrator::new(bins)?);
        if let Some((re, rd)) = &ranges {
            for (c, r, names) in [(&mut ce, re, tensors.0), (&mut cd, rd, tensors.1)] {
                for n in names {
                    let amax = r.stats(n).map(|s| s.abs_max()).unwrap_or(0.0);
                    if amax > 0.0 && amax.is_finite() {
                        c.preset_range(n, amax)?;
                    }
                }
            }
        }
        w.tap = Some(Mutex::new(Tap {
            encoder: (tensors.0.clone(), ce),
            decoder: (tensors.1.clone(), cd),
        }));
        for (_, path) in audio {
            let a = read_wav(path)?;
            let samples = to_16k(path, &a.samples, a.sample_rate)?;
            if pass == 0 {
                seconds += samples.len() as f64 / SAMPLE_RATE as f64;
            }
            for win in LogMelExtractor::windows(&samples) {
                let ids =
                    w.transcribe_window(path, win, &GenerateOptions::default(), &mut |_| true)?;
                if pass == 0 {
                    steps += ids.len() + 1;
                }
            }
        }
        let tap = w
            .tap
            .take()
            .map(|t| t.into_inner().unwrap())
            .ok_or_else(|| cfg_err(dir, "calibration observers lost".into()))?;
        ranges = Some((tap.encoder.1, tap.decoder.1));
    }
    let (ce, cd) = ranges.ok_or_else(|| cfg_err(dir, "no calibration pass ran".into()))?;
    let info = WhisperCalibration {
        utterances: audio.len(),
        audio_seconds: seconds,
        decoder_steps: steps,
        encoder_tensors: tensors.0.len(),
        decoder_tensors: tensors.1.len(),
        wall_seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((ce, cd, info))
}
