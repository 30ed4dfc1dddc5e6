//! A decoder-only LLM: its decoder (an ONNX Runtime session, or OpenVINO when the folder's
//! decoder is an engine folder of that target, see [`crate::backend`]), token-embedding table
//! and tokenizer, and the decoder step over the KV cache the caller owns ([`LlmCache`], made
//! by [`Llm::cache`]). In ONNX Runtime the KV cache holds the present outputs the session
//! returned, fed back by reference as the next step's past: no KV tensor is copied between
//! steps (OpenVINO: `super::openvino`).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engines::openvino::OvTensor;
use engines::ort::{first_line, CpuOptions};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};

use super::config::{read_config, LlmConfig, CONFIG_FILE};
use crate::backend::{is_engine_folder, Part, Shapes};
use crate::error::{cfg_err, Result, RuntimeError};
use crate::generation::StepDecoder;
use crate::session::f32_output;
use crate::sync::lock;

/// A decoder-only LLM opened on its backend.
pub struct Llm {
    pub config: LlmConfig,
    pub(super) dir: PathBuf,
    session: Part,
    embed: Vec<f32>,
    tokenizer: tokenizers::Tokenizer,
    /// `past_key_values.{i}.{key,value}` and `present.{i}.{key,value}`, at `2 * i + k`.
    pub(super) past_names: Vec<String>,
    pub(super) present_names: Vec<String>,
}

/// KV cache of one hypothesis, plus embeddings still to be fed before the next tokens (the
/// prompt prefix with the audio rows). The KV tensors are the previous step's present outputs;
/// cloning the cache (beam search) shares them, since a step never writes into its inputs.
#[derive(Clone)]
pub struct LlmCache {
    /// Per layer key and value, held by the backend that made them; empty before the first
    /// step.
    kv: KvOn,
    pub(super) past: usize,
    pub(super) pending: Vec<f32>,
}

#[derive(Clone)]
enum KvOn {
    Ort(Vec<Arc<DynValue>>),
    Openvino(Vec<Arc<OvTensor>>),
}

impl Llm {
    pub fn open(dir: &Path, opts: &CpuOptions) -> Result<Llm> {
        Self::open_replacing(dir, opts, None)
    }

    /// Opens the LLM with its decoder given as a serialized ONNX model (e.g. a quantized
    /// variant under study) instead of its file.
    pub fn open_replacing(dir: &Path, opts: &CpuOptions, decoder: Option<&[u8]>) -> Result<Llm> {
        let cfg_path = dir.join(CONFIG_FILE);
        let config = read_config(dir)?;
        for f in [
            &config.files.decoder,
            &config.files.embed_tokens,
            &config.files.tokenizer,
        ] {
            let engine = f == &config.files.decoder && is_engine_folder(&dir.join(f));
            if !dir.join(f).is_file() && !engine {
                return Err(cfg_err(&dir.join(f), "missing from the LLM folder".into()));
            }
        }
        let ep = dir.join(&config.files.embed_tokens);
        let bytes = std::fs::read(&ep).map_err(|e| cfg_err(&ep, e.to_string()))?;
        if config.vocab_size == 0 || config.hidden_size == 0 {
            return Err(cfg_err(
                &cfg_path,
                format!(
                    "vocab_size {} and hidden_size {} must both be at least 1",
                    config.vocab_size, config.hidden_size
                ),
            ));
        }
        let want = config
            .vocab_size
            .checked_mul(config.hidden_size)
            .and_then(|n| n.checked_mul(4));
        if Some(bytes.len()) != want {
            let want = want.map_or("more than fits in memory".into(), |w| w.to_string());
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
        // Prompts of any length: no arena, so a long prompt's memory is returned after its run.
        let dec_path = dir.join(&config.files.decoder);
        let session = Part::open(&dec_path, opts, Shapes::Variable, decoder)?;
        let names = session.input_names();
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
        let kv_names = |f: &dyn Fn(usize, &str) -> String| {
            (0..config.n_layers)
                .flat_map(|i| ["key", "value"].map(|kv| f(i, kv)))
                .collect()
        };
        Ok(Llm {
            past_names: kv_names(&|i, kv| format!("past_key_values.{i}.{kv}")),
            present_names: kv_names(&|i, kv| format!("present.{i}.{kv}")),
            config,
            dir: dir.to_path_buf(),
            session,
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

    /// An empty cache with `prefix` embeddings to feed first.
    pub fn cache(&self, prefix: Vec<f32>) -> LlmCache {
        let n = 2 * self.config.n_layers;
        LlmCache {
            kv: match self.session {
                Part::Ort(_) => KvOn::Ort(Vec::with_capacity(n)),
                Part::Openvino(_) => KvOn::Openvino(Vec::with_capacity(n)),
            },
            past: 0,
            pending: prefix,
        }
    }

    /// Which backend runs the decoder: `onnxruntime` or `openvino`.
    pub fn backend(&self) -> &'static str {
        self.session.backend()
    }

    pub(super) fn run_err(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Model {
            model: self.dir.join(&self.config.files.decoder),
            reason: first_line(&e.to_string()),
        }
    }
}

impl StepDecoder for Llm {
    type State = LlmCache;

    fn step(&self, st: &mut LlmCache, new: &[u32]) -> Result<Vec<f32>> {
        let mut x = std::mem::take(&mut st.pending);
        x.extend(self.embed(new));
        let n = x.len() / self.config.hidden_size;
        let logits = match (&self.session, &mut st.kv) {
            (Part::Ort(s), KvOn::Ort(kv)) => self.ort_step(s, kv, st.past, x)?,
            (Part::Openvino(e), KvOn::Openvino(kv)) => {
                super::openvino::step(self, &mut lock(e), kv, st.past, x)?
            }
            _ => return Err(self.run_err("the KV cache was made for another backend")),
        };
        st.past += n;
        Ok(logits)
    }
}

impl Llm {
    /// One step in ONNX Runtime over `x` (`[n, hidden]` embeddings) after `past` positions:
    /// the last position's logits; `kv` becomes this step's present KV, kept as the values
    /// ONNX Runtime made.
    fn ort_step(
        &self,
        s: &Mutex<Session>,
        kv: &mut Vec<Arc<DynValue>>,
        past: usize,
        x: Vec<f32>,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        let h = c.hidden_size;
        let n = x.len() / h;
        let e = |e: ort::Error| self.run_err(e);
        let total = past + n;
        let mut feeds: Vec<(Cow<str>, SessionInputValue)> = vec![
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
                    (past as i64..total as i64).collect::<Vec<_>>(),
                ))
                .map_err(e)?
                .into(),
            ),
        ];
        for (j, name) in self.past_names.iter().enumerate() {
            let past = match kv.get(j) {
                Some(v) => v.as_ref().into(),
                // the first step: a zero-length past
                None => Tensor::<f32>::from_array((
                    vec![1, c.n_kv_heads as i64, 0, c.head_dim as i64],
                    Vec::<f32>::new(),
                ))
                .map_err(e)?
                .into(),
            };
            feeds.push((Cow::Borrowed(name.as_str()), past));
        }
        let mut s = lock(s);
        let mut out = s.run(feeds).map_err(e)?;
        let out_err = |r: String| self.run_err(r);
        let (shape, logits) = f32_output(&out, "logits").map_err(out_err)?;
        let vocab = *shape.last().unwrap_or(&0) as usize;
        self.check_vocab(vocab, logits.len().min(vocab))?;
        let last = logits[logits.len() - vocab..].to_vec();
        *kv = self
            .present_names
            .iter()
            .map(|p| {
                out.remove(p.as_str())
                    .map(Arc::new)
                    .ok_or_else(|| self.run_err(format!("the model has no output '{p}'")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(last)
    }

    /// The logits' last axis (`vocab`) and the values read (`got`) are the config's vocabulary.
    pub(super) fn check_vocab(&self, vocab: usize, got: usize) -> Result<()> {
        let c = &self.config;
        if vocab != c.vocab_size || got != c.vocab_size {
            return Err(cfg_err(
                &self.dir.join(&c.files.decoder),
                format!(
                    "logits have {vocab} entries, llm.json says vocab_size {}",
                    c.vocab_size
                ),
            ));
        }
        Ok(())
    }
}
