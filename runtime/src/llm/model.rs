//! A decoder-only LLM in ONNX Runtime: its session, token-embedding table and tokenizer, and
//! the decoder step over the KV cache the caller owns ([`LlmCache`], made by [`Llm::cache`]).
//! The KV cache holds the present outputs ONNX Runtime returned, fed back by reference as the
//! next step's past: no KV tensor is copied between steps.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engines::ort::{cpu_session_variable_shapes, first_line, CpuOptions};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};

use super::config::LlmConfig;
use crate::error::{cfg_err, Result, RuntimeError};
use crate::generation::StepDecoder;
use crate::session::f32_output;
use crate::sync::lock;

/// A decoder-only LLM opened in ONNX Runtime.
pub struct Llm {
    pub config: LlmConfig,
    dir: PathBuf,
    session: Mutex<Session>,
    embed: Vec<f32>,
    tokenizer: tokenizers::Tokenizer,
    /// `past_key_values.{i}.{key,value}` and `present.{i}.{key,value}`, at `2 * i + k`.
    past_names: Vec<String>,
    present_names: Vec<String>,
}

/// KV cache of one hypothesis, plus embeddings still to be fed before the next tokens (the
/// prompt prefix with the audio rows). The KV tensors are the previous step's present outputs;
/// cloning the cache (beam search) shares them, since a step never writes into its inputs.
#[derive(Clone)]
pub struct LlmCache {
    /// Per layer key and value; empty before the first step.
    kv: Vec<Arc<DynValue>>,
    past: usize,
    pending: Vec<f32>,
}

impl Llm {
    pub fn open(dir: &Path, opts: &CpuOptions) -> Result<Llm> {
        Self::open_replacing(dir, opts, None)
    }

    /// Opens the LLM with its decoder given as a serialized ONNX model (e.g. a quantized
    /// variant under study) instead of its file.
    pub fn open_replacing(dir: &Path, opts: &CpuOptions, decoder: Option<&[u8]>) -> Result<Llm> {
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
        let session = match decoder {
            None => cpu_session_variable_shapes(&dec_path, opts)?,
            Some(b) => engines::ort::cpu_session_from_bytes_variable_shapes(
                &dec_path.display().to_string(),
                b,
                opts,
            )?,
        };
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

    /// An empty cache with `prefix` embeddings to feed first.
    pub fn cache(&self, prefix: Vec<f32>) -> LlmCache {
        LlmCache {
            kv: Vec::with_capacity(2 * self.config.n_layers),
            past: 0,
            pending: prefix,
        }
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
                    (st.past as i64..total as i64).collect::<Vec<_>>(),
                ))
                .map_err(e)?
                .into(),
            ),
        ];
        for (j, name) in self.past_names.iter().enumerate() {
            let past = match st.kv.get(j) {
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
        let mut s = lock(&self.session);
        let mut out = s.run(feeds).map_err(e)?;
        let out_err = |r: String| self.run_err(r);
        let (shape, logits) = f32_output(&out, "logits").map_err(out_err)?;
        let vocab = *shape.last().unwrap_or(&0) as usize;
        let start = logits.len().checked_sub(vocab);
        let (Some(start), true) = (start, vocab == c.vocab_size) else {
            return Err(cfg_err(
                &self.dir.join(&c.files.decoder),
                format!(
                    "logits have {vocab} entries, llm.json says vocab_size {}",
                    c.vocab_size
                ),
            ));
        };
        let last = logits[start..].to_vec();
        // this step's present KV is the next step's past, kept as the values ONNX Runtime made
        st.kv = self
            .present_names
            .iter()
            .map(|p| {
                out.remove(p.as_str())
                    .map(Arc::new)
                    .ok_or_else(|| self.run_err(format!("the model has no output '{p}'")))
            })
            .collect::<Result<Vec<_>>>()?;
        st.past = total;
        Ok(last)
    }
}
