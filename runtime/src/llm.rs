//! Decoder-only LLMs on ONNX Runtime (ONNX Runtime GenAI naming: `inputs_embeds`,
//! `attention_mask`, `position_ids`, `past_key_values.{i}.key/value` → `logits`,
//! `present.{i}.key/value`) with their token-embedding table, so text and audio embeddings are
//! concatenated here; and the SALMONN-style audio LLM: Whisper encoder → window projector →
//! LLM prompted with `<SpeechHere>` where the audio embeddings go.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use engines::ort::{cpu_session, first_line, CpuOptions};
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

use crate::audio::logmel::{to_16k, LogMelExtractor, SAMPLE_RATE};
use crate::error::{Result, RuntimeError};
use crate::generate::{generate, GenerateOptions, StepDecoder};

/// The placeholder a prompt carries where the audio goes.
pub const SPEECH: &str = "<SpeechHere>";

/// One chat turn's wrapping.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatTemplate {
    pub system_prefix: String,
    pub system_suffix: String,
    pub default_system: String,
    pub user_prefix: String,
    pub user_suffix: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LlmFiles {
    pub decoder: String,
    pub embed_tokens: String,
    pub tokenizer: String,
}

/// `llm.json` (written by `tools/llm_export.py`).
#[derive(Debug, Clone, Deserialize)]
pub struct LlmConfig {
    #[serde(default)]
    pub model: String,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub stop_token_ids: Vec<u32>,
    pub chat: ChatTemplate,
    pub files: LlmFiles,
}

fn cfg_err(path: &Path, reason: String) -> RuntimeError {
    RuntimeError::Config {
        path: path.to_path_buf(),
        reason,
    }
}

/// A decoder-only LLM opened in ONNX Runtime.
pub struct Llm {
    pub config: LlmConfig,
    dir: PathBuf,
    session: Mutex<Session>,
    embed: Vec<f32>,
    tokenizer: tokenizers::Tokenizer,
}

/// KV cache of one hypothesis, plus embeddings still to be fed before the next tokens (the
/// prompt prefix with the audio rows).
#[derive(Clone)]
pub struct LlmCache {
    kv: Vec<Vec<f32>>,
    past: usize,
    pending: Vec<f32>,
}

impl Llm {
    pub fn open(dir: &Path, opts: &CpuOptions) -> Result<Llm> {
        let cfg_path = dir.join("llm.json");
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| cfg_err(&cfg_path, format!("cannot read LLM config: {e}")))?;
        let config: LlmConfig = serde_json::from_str(&text)
            .map_err(|e| cfg_err(&cfg_path, format!("not an LLM config: {e}")))?;
        for f in [
            &config.files.decoder,
            &config.files.embed_tokens,
            &config.files.tokenizer,
        ] {
            if !dir.join(f).is_file() {
                return Err(cfg_err(&dir.join(f), "missing from the LLM folder".into()));
            }
        }
        let ep = dir.join(&config.files.embed_tokens);
        let bytes = std::fs::read(&ep).map_err(|e| cfg_err(&ep, e.to_string()))?;
        let want = config.vocab_size * config.hidden_size * 4;
        if bytes.len() != want {
            return Err(cfg_err(
                &ep,
                format!(
                    "{} bytes, llm.json implies {want} (vocab {} x hidden {} float32)",
                    bytes.len(),
                    config.vocab_size,
                    config.hidden_size
                ),
            ));
        }
        let embed = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let session = cpu_session(&dir.join(&config.files.decoder), opts)?;
        let names: Vec<String> = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        for i in 0..config.n_layers {
            let n = format!("past_key_values.{i}.key");
            if !names.contains(&n) {
                return Err(cfg_err(
                    &dir.join(&config.files.decoder),
                    format!(
                        "decoder has no input '{n}' (n_layers {} in llm.json)",
                        config.n_layers
                    ),
                ));
            }
        }
        let tp = dir.join(&config.files.tokenizer);
        let tokenizer = tokenizers::Tokenizer::from_file(&tp)
            .map_err(|e| cfg_err(&tp, format!("cannot load tokenizer: {e}")))?;
        Ok(Llm {
            config,
            dir: dir.to_path_buf(),
            session: Mutex::new(session),
            embed,
            tokenizer,
        })
    }

    /// Token ids of text (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| cfg_err(&self.dir.join(&self.config.files.tokenizer), e.to_string()))?
            .get_ids()
            .to_vec())
    }

    /// Text of token ids (special tokens dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| cfg_err(&self.dir.join(&self.config.files.tokenizer), e.to_string()))
    }

    /// Embedding rows of token ids, concatenated.
    pub fn embed(&self, ids: &[u32]) -> Vec<f32> {
        let h = self.config.hidden_size;
        let mut out = Vec::with_capacity(ids.len() * h);
        for &t in ids {
            let t = (t as usize).min(self.config.vocab_size - 1);
            out.extend_from_slice(&self.embed[t * h..(t + 1) * h]);
        }
        out
    }

    /// The chat-templated prompt for one user turn with the default system turn.
    pub fn chat_prompt(&self, user: &str) -> String {
        let c = &self.config.chat;
        format!(
            "{}{}{}{}{}{}",
            c.system_prefix, c.default_system, c.system_suffix, c.user_prefix, user, c.user_suffix
        )
    }

    /// An empty cache with `prefix` embeddings to feed first.
    pub fn cache(&self, prefix: Vec<f32>) -> LlmCache {
        LlmCache {
            kv: vec![Vec::new(); 2 * self.config.n_layers],
            past: 0,
            pending: prefix,
        }
    }

    /// Generates from `prefix` embeddings followed by the `tokens`.
    pub fn generate(
        &self,
        prefix: Vec<f32>,
        tokens: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        let mut o = opts.clone();
        for s in &self.config.stop_token_ids {
            if !o.stop_tokens.contains(s) {
                o.stop_tokens.push(*s);
            }
        }
        generate(self, self.cache(prefix), tokens, &o, &|_, _| {}, on_token)
    }

    fn run_err(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Model {
            model: self.dir.join(&self.config.files.decoder),
            reason: first_line(&e.to_string()),
        }
    }
}

impl StepDecoder for Llm {
    type State = LlmCache;

    fn step(&self, st: &mut LlmCache, new: &[u32]) -> Result<Vec<f32>> {
        let c = &self.config;
        let h = c.hidden_size;
        let mut x = std::mem::take(&mut st.pending);
        x.extend(self.embed(new));
        let n = x.len() / h;
        let e = |e: ort::Error| self.run_err(e);
        let total = st.past + n;
        let mut feeds: Vec<(String, ort::session::SessionInputValue)> = vec![
            (
                "inputs_embeds".into(),
                Tensor::<f32>::from_array((vec![1i64, n as i64, h as i64], x))
                    .map_err(e)?
                    .into(),
            ),
            (
                "attention_mask".into(),
                Tensor::<i64>::from_array((vec![1i64, total as i64], vec![1i64; total]))
                    .map_err(e)?
                    .into(),
            ),
            (
                "position_ids".into(),
                Tensor::<i64>::from_array((
                    vec![1i64, n as i64],
                    (st.past as i64..total as i64).collect::<Vec<_>>(),
                ))
                .map_err(e)?
                .into(),
            ),
        ];
        for i in 0..c.n_layers {
            for (k, kv) in ["key", "value"].iter().enumerate() {
                feeds.push((
                    format!("past_key_values.{i}.{kv}"),
                    Tensor::<f32>::from_array((
                        vec![1, c.n_kv_heads as i64, st.past as i64, c.head_dim as i64],
                        st.kv[2 * i + k].clone(),
                    ))
                    .map_err(e)?
                    .into(),
                ));
            }
        }
        let mut s = self.session.lock().unwrap();
        let out = s.run(feeds).map_err(e)?;
        let (shape, logits) = out["logits"].try_extract_tensor::<f32>().map_err(e)?;
        let vocab = *shape.last().unwrap_or(&0) as usize;
        if vocab != c.vocab_size {
            return Err(cfg_err(
                &self.dir.join(&c.files.decoder),
                format!(
                    "logits have {vocab} entries, llm.json says vocab_size {}",
                    c.vocab_size
                ),
            ));
        }
        let last = logits[logits.len() - vocab..].to_vec();
        for i in 0..c.n_layers {
            for (k, kv) in ["key", "value"].iter().enumerate() {
                let (_, v) = out[format!("present.{i}.{kv}").as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(e)?;
                st.kv[2 * i + k] = v.to_vec();
            }
        }
        st.past = total;
        Ok(last)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Part {
    file: String,
    input: String,
    output: String,
}

#[derive(Debug, Clone, Deserialize)]
struct ProjectorPart {
    file: String,
    input: String,
    output: String,
    n_audio_tokens: usize,
    out_dim: usize,
}

#[derive(Debug, Clone, Deserialize)]
struct LlmPart {
    dir: String,
}

/// `audio_llm.json`: where the encoder, projector and LLM are (relative paths) and the prompts.
#[derive(Debug, Clone, Deserialize)]
pub struct AudioLlmConfig {
    #[serde(default)]
    pub model: String,
    encoder: Part,
    projector: ProjectorPart,
    llm: LlmPart,
    pub prompt_template: String,
    pub system: String,
    pub tasks: std::collections::BTreeMap<String, String>,
}

/// Whisper encoder → projector → LLM.
pub struct AudioLlm {
    pub config: AudioLlmConfig,
    path: PathBuf,
    mel: LogMelExtractor,
    encoder: Mutex<Session>,
    projector: Mutex<Session>,
    pub llm: Llm,
}

impl AudioLlm {
    /// Opens `audio_llm.json` (or the folder holding it) and everything it points at; checks
    /// that the projector's width is the LLM's hidden size.
    pub fn open(path: &Path, opts: &CpuOptions) -> Result<AudioLlm> {
        let file = if path.is_file() {
            path.to_path_buf()
        } else {
            path.join("audio_llm.json")
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| cfg_err(&file, format!("cannot read audio-LLM config: {e}")))?;
        let config: AudioLlmConfig = serde_json::from_str(&text)
            .map_err(|e| cfg_err(&file, format!("not an audio-LLM config: {e}")))?;
        let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        for f in [&config.encoder.file, &config.projector.file] {
            if !dir.join(f).is_file() {
                return Err(cfg_err(
                    &dir.join(f),
                    "missing (named in audio_llm.json)".into(),
                ));
            }
        }
        let llm = Llm::open(&dir.join(&config.llm.dir), opts)?;
        if config.projector.out_dim != llm.config.hidden_size {
            return Err(cfg_err(
                &file,
                format!(
                    "projector width {} != LLM hidden size {} (mismatched hidden sizes)",
                    config.projector.out_dim, llm.config.hidden_size
                ),
            ));
        }
        let mel = LogMelExtractor::new(80)?;
        Ok(AudioLlm {
            encoder: Mutex::new(cpu_session(&dir.join(&config.encoder.file), opts)?),
            projector: Mutex::new(cpu_session(&dir.join(&config.projector.file), opts)?),
            config,
            path: file,
            mel,
            llm,
        })
    }

    fn run_err(&self, what: &str, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Model {
            model: self.path.clone(),
            reason: format!("{what}: {}", first_line(&e.to_string())),
        }
    }

    /// Audio embeddings `[n_audio_tokens * hidden]` of one window of 16 kHz audio.
    pub fn audio_embeddings(&self, name: &Path, samples: &[f32]) -> Result<Vec<f32>> {
        let m = self.mel.compute(name, samples)?;
        let t = Tensor::<f32>::from_array((vec![1i64, m.n_mels as i64, m.frames as i64], m.data))
            .map_err(|e| self.run_err("encoder", e))?;
        let mut enc = self.encoder.lock().unwrap();
        let out = enc
            .run(vec![(
                self.config.encoder.input.as_str(),
                t.view().into_dyn(),
            )])
            .map_err(|e| self.run_err("encoder", e))?;
        let (shape, v) = out[self.config.encoder.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| self.run_err("encoder", e))?;
        let states = Tensor::<f32>::from_array((shape.to_vec(), v.to_vec()))
            .map_err(|e| self.run_err("projector", e))?;
        let mut p = self.projector.lock().unwrap();
        let out = p
            .run(vec![(
                self.config.projector.input.as_str(),
                states.view().into_dyn(),
            )])
            .map_err(|e| self.run_err("projector", e))?;
        let (shape, v) = out[self.config.projector.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| self.run_err("projector", e))?;
        let want = [
            1,
            self.config.projector.n_audio_tokens as i64,
            self.llm.config.hidden_size as i64,
        ];
        if **shape != want {
            return Err(cfg_err(
                &self.path,
                format!(
                    "projector output {:?}, expected {want:?} (mismatched hidden sizes)",
                    &**shape
                ),
            ));
        }
        Ok(v.to_vec())
    }

    /// The user turn for a task (`asr`, `caption`, `qa` with `question`) or a custom prompt,
    /// which must hold `<SpeechHere>` exactly once.
    pub fn user_turn(
        &self,
        task: &str,
        prompt: Option<&str>,
        question: Option<&str>,
    ) -> Result<String> {
        let text = match prompt {
            Some(p) => p.to_string(),
            None => {
                let t = self.config.tasks.get(task).ok_or_else(|| {
                    cfg_err(
                        &self.path,
                        format!(
                            "no task '{task}' (tasks: {})",
                            self.config
                                .tasks
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                if t.contains("{question}") {
                    let q = question.ok_or_else(|| {
                        cfg_err(
                            &self.path,
                            format!("task '{task}' needs a question (--question)"),
                        )
                    })?;
                    t.replace("{question}", q)
                } else {
                    t.clone()
                }
            }
        };
        let n = text.matches(SPEECH).count();
        if n != 1 {
            return Err(RuntimeError::Config {
                path: PathBuf::from("--prompt"),
                reason: format!(
                    "the prompt must contain {SPEECH} exactly once (found {n}): \"{text}\""
                ),
            });
        }
        Ok(text)
    }

    /// Number of prompt positions for a user turn: template tokens plus the audio tokens.
    pub fn prompt_tokens(&self, user: &str) -> Result<usize> {
        let (before, after) = self.split_prompt(user)?;
        Ok(self.llm.encode(&before)?.len()
            + self.config.projector.n_audio_tokens
            + self.llm.encode(&after)?.len())
    }

    /// The chat prompt of a user turn, split at `<SpeechHere>`.
    fn split_prompt(&self, user: &str) -> Result<(String, String)> {
        let prompt = self
            .config
            .prompt_template
            .replace("{system}", &self.config.system)
            .replace("{prompt}", user);
        let (before, after) = prompt
            .split_once(SPEECH)
            .ok_or_else(|| cfg_err(&self.path, format!("prompt has no {SPEECH}")))?;
        Ok((before.to_string(), after.to_string()))
    }

    /// Generates an answer about one window (at most 30 s) of audio.
    pub fn generate(
        &self,
        name: &Path,
        samples: &[f32],
        rate: u32,
        user: &str,
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        let samples = to_16k(name, samples, rate)?;
        if samples.len() > crate::audio::logmel::N_SAMPLES {
            return Err(RuntimeError::Config {
                path: name.to_path_buf(),
                reason: format!(
                    "{:.1} s of audio: the audio LLM takes one 30 s window (cut the audio, or use `voxq transcribe`, which windows it)",
                    samples.len() as f64 / SAMPLE_RATE as f64
                ),
            });
        }
        let (before, after) = self.split_prompt(user)?;
        let mut prefix = self.llm.embed(&self.llm.encode(&before)?);
        prefix.extend(self.audio_embeddings(name, &samples)?);
        let after = self.llm.encode(&after)?;
        self.llm.generate(prefix, &after, opts, on_token)
    }
}
