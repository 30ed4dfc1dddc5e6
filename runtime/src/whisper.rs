//! Whisper ASR on ONNX Runtime: a model folder (`whisper.json`, `encoder.onnx`, a decoder
//! with self- and cross-attention KV cache `decoder.onnx`, `tokenizer.json`), the log-mel front
//! end, and decoding (greedy or beam search) with Whisper's token rules. Audio longer than 30 s
//! is cut into consecutive 30 s windows, each transcribed on its own, texts joined.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engines::ort_env::{cpu_session, first_line, CpuOptions};
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

use crate::audio::logmel::{LogMelExtractor, SAMPLE_RATE};
use crate::audio::resample::resample;
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
}

fn default_encoder() -> String {
    "encoder.onnx".into()
}
fn default_decoder() -> String {
    "decoder.onnx".into()
}

/// A Whisper model opened in ONNX Runtime sessions.
pub struct Whisper {
    pub config: WhisperConfig,
    dir: PathBuf,
    mel: LogMelExtractor,
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
    tokenizer: tokenizers::Tokenizer,
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
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            path.to_path_buf()
        };
        let cfg_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| cfg_err(&cfg_path, format!("cannot read Whisper model config: {e}")))?;
        let config: WhisperConfig = serde_json::from_str(&text)
            .map_err(|e| cfg_err(&cfg_path, format!("not a Whisper model config: {e}")))?;
        if config.n_heads * config.head_dim != config.d_model {
            return Err(cfg_err(
                &cfg_path,
                format!(
                    "n_heads {} x head_dim {} != d_model {}",
                    config.n_heads, config.head_dim, config.d_model
                ),
            ));
        }
        if config.prompt_notimestamps.is_empty() {
            return Err(cfg_err(&cfg_path, "empty prompt_notimestamps".into()));
        }
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
        let encoder = cpu_session(&dir.join(&config.encoder_file), opts)?;
        let decoder = cpu_session(&dir.join(&config.decoder_file), opts)?;
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
        let out = s
            .run(ort::inputs!["input_features" => t])
            .map_err(|e| self.run_err("encoder", e))?;
        let (shape, v) = out[0]
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
        generate(
            &Step { w: self },
            cache,
            &c.prompt_notimestamps,
            &o,
            &rule,
            on_token,
        )
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
        if samples.is_empty() {
            return Err(RuntimeError::EmptyAudio {
                path: name.to_path_buf(),
            });
        }
        let samples = if rate != SAMPLE_RATE {
            resample(samples, rate, SAMPLE_RATE)?
        } else {
            samples.to_vec()
        };
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
