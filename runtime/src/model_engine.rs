//! Engine folders of whole step-decoding models: `voxq build MODEL_DIR --target openvino`
//! turns a Whisper folder (`whisper.json`: encoder and decoder) or an LLM folder (`llm.json`:
//! decoder) into a folder of the same layout whose ONNX parts are OpenVINO engine folders
//! (`encoder/`, `decoder/`, each with its model, compiled-model cache and manifest), the config
//! naming them and every other file (tokenizer, embedding table) copied. The whole model is
//! then opened and run once (a window of silence through Whisper, a prompt through the LLM)
//! before the folder is moved into place; a failed build leaves `out` as it was.

use std::path::{Path, PathBuf};

use engines::manifest::Manifest;
use engines::openvino::{build_openvino, OvBuildOptions};
use engines::ort::CpuOptions;

use crate::backend::is_engine_folder;
use crate::error::{cfg_err, Result, RuntimeError};
use crate::generation::StepDecoder;
use crate::llm::config::CONFIG_FILE as LLM_CONFIG;

/// What a model folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Whisper,
    Llm,
}

impl ModelKind {
    /// The kind of model folder `dir` is (by its config file), if any.
    pub fn of(dir: &Path) -> Option<ModelKind> {
        if !dir.is_dir() {
            return None;
        }
        if dir.join(crate::whisper::CONFIG_FILE).is_file() {
            Some(ModelKind::Whisper)
        } else if dir.join(LLM_CONFIG).is_file() {
            Some(ModelKind::Llm)
        } else {
            None
        }
    }

    fn config_file(self) -> &'static str {
        match self {
            ModelKind::Whisper => crate::whisper::CONFIG_FILE,
            ModelKind::Llm => LLM_CONFIG,
        }
    }

    /// `Whisper` or `LLM`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Whisper => "Whisper",
            ModelKind::Llm => "LLM",
        }
    }
}

/// A built model engine folder: its kind and each part's folder name and manifest.
pub struct ModelEngine {
    pub kind: ModelKind,
    pub parts: Vec<(String, Manifest)>,
}

/// The config keys naming the ONNX parts (a JSON pointer per part) and their files.
fn parts(kind: ModelKind, dir: &Path) -> Result<Vec<(&'static str, String)>> {
    Ok(match kind {
        ModelKind::Whisper => {
            let (_, c) = crate::whisper::read_config(dir)?;
            vec![
                ("/encoder_file", c.encoder_file),
                ("/decoder_file", c.decoder_file),
            ]
        }
        ModelKind::Llm => vec![(
            "/files/decoder",
            crate::llm::config::read_config(dir)?.files.decoder,
        )],
    })
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `out` is a model engine folder an earlier build wrote (a config and an engine
/// folder among its parts), so that a new build may replace it.
fn is_model_engine(out: &Path) -> bool {
    ModelKind::of(out).is_some_and(|k| {
        parts(k, out).is_ok_and(|p| p.iter().any(|(_, f)| is_engine_folder(&out.join(f))))
    })
}

/// Builds the OpenVINO engine folder of the model folder `src` at `out` (see the module).
pub fn build_openvino_model(src: &Path, out: &Path, opts: &OvBuildOptions) -> Result<ModelEngine> {
    let Some(kind) = ModelKind::of(src) else {
        return Err(cfg_err(
            src,
            "not a Whisper or LLM model folder (no whisper.json or llm.json)".into(),
        ));
    };
    let parts = parts(kind, src)?;
    for (_, f) in &parts {
        let p = src.join(f);
        if f.contains('/') || f.contains('\\') {
            return Err(cfg_err(
                &src.join(kind.config_file()),
                format!("part '{f}' is not a file of the folder itself"),
            ));
        }
        if !p.is_file() {
            return Err(cfg_err(
                &p,
                match is_engine_folder(&p) {
                    true => "is already an engine folder: build from the ONNX model folder".into(),
                    false => "missing from the model folder".into(),
                },
            ));
        }
    }
    let scratch = exporter::atomic::scratch_dir(out)?;
    let done = fill(kind, src, &scratch, &parts, opts).and_then(|built| {
        exporter::atomic::commit_dir(&scratch, out, "a model engine folder", is_model_engine)?;
        Ok(built)
    });
    if done.is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    // errors name the files as they will be in `out`, not in the scratch folder
    done.map_err(|e| {
        let (s, o) = (scratch.display().to_string(), out.display().to_string());
        match e {
            RuntimeError::Engine(e) => RuntimeError::Engine(e.map_text(&|t| t.replace(&s, &o))),
            RuntimeError::Config { path, reason } => RuntimeError::Config {
                path: PathBuf::from(path.display().to_string().replace(&s, &o)),
                reason: reason.replace(&s, &o),
            },
            e => e,
        }
    })
}

/// Writes the model engine folder into `scratch`: every part built, the other files copied,
/// the config rewritten, and one run of the whole model.
fn fill(
    kind: ModelKind,
    src: &Path,
    scratch: &Path,
    parts: &[(&'static str, String)],
    opts: &OvBuildOptions,
) -> Result<ModelEngine> {
    let part_files: Vec<&str> = parts.iter().map(|(_, f)| f.as_str()).collect();
    // the other files: tokenizer, embedding table, … (not the config, rewritten below)
    for e in std::fs::read_dir(src).map_err(io(src))? {
        let p = e.map_err(io(src))?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name else { continue };
        if !p.is_file() || part_files.contains(&name.as_str()) || name == kind.config_file() {
            continue;
        }
        std::fs::copy(&p, scratch.join(&name)).map_err(io(&scratch.join(&name)))?;
    }
    let cfg_path = src.join(kind.config_file());
    let text = exporter::textfile::read_text(&cfg_path, "a model config")
        .map_err(|e| cfg_err(&cfg_path, e.to_string()))?;
    let mut cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| cfg_err(&cfg_path, e.to_string()))?;
    let mut built = Vec::new();
    let part_opts = OvBuildOptions {
        warm_up: false,
        ..opts.clone()
    };
    for (pointer, file) in parts {
        let folder = Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.clone());
        let m = build_openvino(&src.join(file), None, &scratch.join(&folder), &part_opts)?;
        set_pointer(&mut cfg, pointer, &folder);
        built.push((folder, m));
    }
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| cfg_err(&cfg_path, e.to_string()))?;
    let out_cfg = scratch.join(kind.config_file());
    std::fs::write(&out_cfg, text + "\n").map_err(io(&out_cfg))?;
    warm_up(kind, scratch, opts.threads)?;
    Ok(ModelEngine { kind, parts: built })
}

/// Sets the string at a JSON pointer of objects (`/files/decoder`), creating what is missing.
fn set_pointer(v: &mut serde_json::Value, pointer: &str, to: &str) {
    let mut at = v;
    let keys: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, k) in keys.iter().enumerate() {
        if !at.is_object() {
            *at = serde_json::Value::Object(Default::default());
        }
        let Some(obj) = at.as_object_mut() else {
            return;
        };
        if i + 1 == keys.len() {
            obj.insert(k.to_string(), serde_json::Value::String(to.to_string()));
            return;
        }
        at = obj
            .entry(k.to_string())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
    }
}

/// Opens the built folder and runs the model once: a window of silence through Whisper (the
/// encoder and two decoder steps), a short prompt and one more token through the LLM; the
/// logits must be finite.
fn warm_up(kind: ModelKind, dir: &Path, threads: usize) -> Result<()> {
    let opts = CpuOptions {
        intra_threads: threads,
        ..CpuOptions::default()
    };
    let finite = |logits: &[f32], what: &str| -> Result<()> {
        if logits.iter().all(|x| x.is_finite()) && !logits.is_empty() {
            Ok(())
        } else {
            Err(cfg_err(
                dir,
                format!("warm-up run: the {what} logits are not finite"),
            ))
        }
    };
    match kind {
        ModelKind::Whisper => {
            let w = crate::whisper::Whisper::open(dir, &opts)?;
            let samples = vec![0.0f32; 16_000];
            let enc = w.encode(dir, &samples)?;
            let mut cache = crate::whisper::WhisperCache::new(w.config.n_layers, enc);
            let step = w.step_decoder();
            finite(
                &step.step(&mut cache, &w.config.prompt_notimestamps)?,
                "first step's",
            )?;
            finite(&step.step(&mut cache, &[w.config.eot])?, "second step's")
        }
        ModelKind::Llm => {
            let llm = crate::llm::Llm::open(dir, &opts)?;
            let mut ids = llm.encode("Hello")?;
            if ids.is_empty() {
                ids.push(0);
            }
            let mut cache = llm.cache(Vec::new());
            finite(&llm.step(&mut cache, &ids)?, "prompt's")?;
            finite(&llm.step(&mut cache, &ids[..1])?, "next step's")
        }
    }
}
