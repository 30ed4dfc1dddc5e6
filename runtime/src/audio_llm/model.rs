//! The audio LLM in ONNX Runtime: Whisper encoder → window projector → LLM. One window of
//! audio becomes `n_audio_tokens` embedding rows (or, with `trim_to_audio`, as many as the
//! clip's length needs: [`Trim`]) that stand where the prompt says `<SpeechHere>`; generation
//! then runs on the LLM with its own cache.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use engines::ort::{cpu_session, cpu_session_from_bytes, first_line, CpuOptions};
use ort::session::Session;
use ort::value::Tensor;

use super::config::{AudioLlmConfig, Trim};
use crate::audio::logmel::{to_16k, LogMelExtractor, SAMPLE_RATE};
use crate::error::{cfg_err, Result, RuntimeError};
use crate::generation::GenerateOptions;
use crate::llm::Llm;
use crate::session::f32_output;
use crate::sync::lock;

/// One ONNX model of an audio LLM, for [`AudioLlm::open_replacing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioLlmPart {
    /// The Whisper encoder.
    Encoder,
    /// The projector.
    Projector,
    /// The LLM's decoder.
    Llm,
}

impl AudioLlmPart {
    /// `encoder`, `projector`, `llm`.
    pub fn name(&self) -> &'static str {
        match self {
            AudioLlmPart::Encoder => "encoder",
            AudioLlmPart::Projector => "projector",
            AudioLlmPart::Llm => "llm",
        }
    }
}

/// Whisper encoder → projector → LLM.
pub struct AudioLlm {
    pub config: AudioLlmConfig,
    pub(super) path: PathBuf,
    mel: LogMelExtractor,
    encoder: Mutex<Session>,
    projector: Mutex<Session>,
    trim: Option<Trim>,
    pub llm: Llm,
}

impl AudioLlm {
    /// Opens `audio_llm.json` (or the folder holding it) and everything it points at; checks
    /// that the projector's width is the LLM's hidden size.
    pub fn open(path: &Path, opts: &CpuOptions) -> Result<AudioLlm> {
        Self::open_replacing(path, opts, None)
    }

    /// Opens the audio LLM with one part given as a serialized ONNX model (e.g. a quantized
    /// variant under study) instead of its file.
    pub fn open_replacing(
        path: &Path,
        opts: &CpuOptions,
        replace: Option<(AudioLlmPart, &[u8])>,
    ) -> Result<AudioLlm> {
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
        let trim = config.projector.trim().map_err(|r| cfg_err(&file, r))?;
        let bytes_of = |part: AudioLlmPart| replace.filter(|(p, _)| *p == part).map(|(_, b)| b);
        let llm = Llm::open_replacing(
            &dir.join(&config.llm.dir),
            opts,
            bytes_of(AudioLlmPart::Llm),
        )?;
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
        let session = |file: &str, bytes: Option<&[u8]>| match bytes {
            None => cpu_session(&dir.join(file), opts),
            Some(b) => cpu_session_from_bytes(&dir.join(file).display().to_string(), b, opts),
        };
        Ok(AudioLlm {
            encoder: Mutex::new(session(
                &config.encoder.file,
                bytes_of(AudioLlmPart::Encoder),
            )?),
            projector: Mutex::new(session(
                &config.projector.file,
                bytes_of(AudioLlmPart::Projector),
            )?),
            config,
            trim,
            path: file,
            mel,
            llm,
        })
    }

    /// The files of each part: encoder, projector, the LLM's decoder (as the config names
    /// them, resolved against its folder).
    pub fn part_files(&self) -> Vec<(AudioLlmPart, PathBuf)> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        vec![
            (AudioLlmPart::Encoder, dir.join(&self.config.encoder.file)),
            (
                AudioLlmPart::Projector,
                dir.join(&self.config.projector.file),
            ),
            (
                AudioLlmPart::Llm,
                dir.join(&self.config.llm.dir)
                    .join(&self.llm.config.files.decoder),
            ),
        ]
    }

    /// The config file this model was opened from.
    pub fn config_path(&self) -> &Path {
        &self.path
    }

    fn run_err(&self, what: &str, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Model {
            model: self.path.clone(),
            reason: format!("{what}: {}", first_line(&e.to_string())),
        }
    }

    /// The cut-to-length rule (`trim_to_audio`), if the config turns it on.
    pub fn trim(&self) -> Option<Trim> {
        self.trim
    }

    /// Audio tokens of a clip of `n_samples` 16 kHz samples; `None` (length not known yet):
    /// the most a clip can get (`n_audio_tokens`).
    pub fn audio_tokens(&self, n_samples: Option<usize>) -> usize {
        match (self.trim, n_samples) {
            (Some(t), Some(n)) => t.tokens(n),
            _ => self.config.projector.n_audio_tokens,
        }
    }

    /// Audio embeddings `[n_tokens * hidden]` of one window of 16 kHz audio (`n_tokens` =
    /// [`AudioLlm::audio_tokens`] of its length).
    pub fn audio_embeddings(&self, name: &Path, samples: &[f32]) -> Result<Vec<f32>> {
        let m = self.mel.compute(name, samples)?;
        let t = Tensor::<f32>::from_array((vec![1i64, m.n_mels as i64, m.frames as i64], m.data))
            .map_err(|e| self.run_err("encoder", e))?;
        let mut enc = lock(&self.encoder);
        let out = enc
            .run(vec![(
                self.config.encoder.input.as_str(),
                t.view().into_dyn(),
            )])
            .map_err(|e| self.run_err("encoder", e))?;
        let (shape, v) = f32_output(&out, &self.config.encoder.output)
            .map_err(|e| self.run_err("encoder", e))?;
        let n_tokens = self.audio_tokens(Some(samples.len()));
        let (shape, v) = match (self.trim, &**shape) {
            (Some(t), &[1, frames, d]) if frames >= 0 && d >= 0 => {
                let keep = t.states(n_tokens).min(frames as usize);
                (vec![1, keep as i64, d], v[..keep * d as usize].to_vec())
            }
            (Some(_), other) => {
                return Err(self.run_err(
                    "encoder",
                    format!("output shape {other:?}, expected [1, frames, d_model]"),
                ))
            }
            (None, _) => (shape.to_vec(), v.to_vec()),
        };
        let states =
            Tensor::<f32>::from_array((shape, v)).map_err(|e| self.run_err("projector", e))?;
        let mut p = lock(&self.projector);
        let out = p
            .run(vec![(
                self.config.projector.input.as_str(),
                states.view().into_dyn(),
            )])
            .map_err(|e| self.run_err("projector", e))?;
        let (shape, v) = f32_output(&out, &self.config.projector.output)
            .map_err(|e| self.run_err("projector", e))?;
        let want = [1, n_tokens as i64, self.llm.config.hidden_size as i64];
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
