//! `voxq sensitivity` / `voxq autoquant` on a speech-to-text model: a Whisper folder (parts
//! `encoder`, `decoder`) or an audio-LLM config (parts `encoder`, `projector`, `llm`), one
//! part at a time, judged by WER on an ASR list ([`runtime::evaluate::WerEvaluator`]).
//!
//! The model autoquant chooses is written as a complete model folder `--out/model/`:
//!
//! - Whisper: `whisper.json` and `tokenizer.json` copied, the quantized part under its
//!   configured file name, the other part copied (Whisper's files must sit in its folder);
//! - audio LLM: `audio_llm.json` pointing at the quantized part in that folder
//!   (`encoder.onnx`, `projector.onnx`, or `llm/` with its own `llm.json` and `decoder.onnx`)
//!   and at every other file of the source model by a path relative to the new folder, so the
//!   folder stays usable as long as the source model stays where it is.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::outputs::{self, Input};

/// The part of a speech-to-text model that sensitivity/autoquant quantizes.
pub(crate) struct AsrTarget {
    /// The Whisper folder or the audio-LLM config, as given.
    pub(crate) path: PathBuf,
    pub(crate) llm: bool,
    pub(crate) part: String,
    /// The ONNX file of that part.
    pub(crate) onnx: PathBuf,
}

/// A JSON file read as a value, with its path in errors.
fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

fn str_at<'a>(v: &'a Value, path: &Path, keys: &[&str]) -> Result<&'a str> {
    let mut x = v;
    for k in keys {
        x = &x[*k];
    }
    x.as_str()
        .with_context(|| format!("{}: no string '{}'", path.display(), keys.join(".")))
}

/// The audio-LLM config file of `p` (the file, or `audio_llm.json` in the folder).
fn llm_config_file(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join("audio_llm.json")
    } else {
        p.to_path_buf()
    }
}

/// `Some(true)` for an audio-LLM config (a folder with `audio_llm.json`, or a JSON file with
/// `encoder`, `projector` and `llm` sections), `Some(false)` for a Whisper folder (or its
/// `whisper.json`), `None` for anything else (a speaker model's config or ONNX file).
pub(crate) fn asr_kind(model: &Path) -> Option<bool> {
    if model.is_dir() {
        return runtime::asr_eval::is_audio_llm(model);
    }
    match runtime::asr_eval::is_audio_llm(model) {
        Some(true) => {
            let v = read_json(model).ok()?;
            ["encoder", "projector", "llm"]
                .iter()
                .all(|k| v[*k].is_object())
                .then_some(true)
        }
        other => other,
    }
}

impl AsrTarget {
    /// `Some` when `model` is a Whisper folder or an audio-LLM config (then `part` is needed);
    /// `None` for anything else (a speaker model).
    pub(crate) fn locate(model: &Path, part: Option<&str>) -> Result<Option<AsrTarget>> {
        let Some(llm) = asr_kind(model) else {
            return Ok(None);
        };
        let parts: &[&str] = if llm {
            &["encoder", "projector", "llm"]
        } else {
            &["encoder", "decoder"]
        };
        let kind = if llm {
            "an audio-LLM config"
        } else {
            "a Whisper folder"
        };
        let part = match part {
            Some(p) if parts.contains(&p) => p,
            Some(p) => bail!(
                "--part: {} is {kind}, which has no part '{p}' (parts: {})",
                model.display(),
                parts.join(", ")
            ),
            None => bail!(
                "--part: {} is {kind}; name the part to quantize ({})",
                model.display(),
                parts.join(", ")
            ),
        };
        let onnx = if llm {
            let file = llm_config_file(model);
            let c = read_json(&file)?;
            let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            match part {
                "encoder" => dir.join(str_at(&c, &file, &["encoder", "file"])?),
                "projector" => dir.join(str_at(&c, &file, &["projector", "file"])?),
                _ => {
                    let ldir = dir.join(str_at(&c, &file, &["llm", "dir"])?);
                    let lj = ldir.join("llm.json");
                    ldir.join(str_at(&read_json(&lj)?, &lj, &["files", "decoder"])?)
                }
            }
        } else {
            let (dir, cfg) = runtime::whisper::read_config(model)?;
            dir.join(if part == "encoder" {
                &cfg.encoder_file
            } else {
                &cfg.decoder_file
            })
        };
        Ok(Some(AsrTarget {
            path: model.to_path_buf(),
            llm,
            part: part.to_string(),
            onnx,
        }))
    }

    /// Name in reports: `whisper-tiny-test decoder`.
    pub(crate) fn name(&self) -> String {
        let base = if self.llm {
            llm_config_file(&self.path)
        } else {
            self.path.clone()
        };
        let stem = if self.llm {
            base.parent().and_then(|p| p.file_name())
        } else {
            base.file_name()
        };
        format!(
            "{} {}",
            stem.map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| base.display().to_string()),
            self.part
        )
    }

    /// The model's files, the list and its audio (for the pre-work check).
    pub(crate) fn inputs(&self, list: &Path, audio_root: &Path) -> Vec<Input> {
        let mut v = if self.llm {
            outputs::audio_llm_model(&self.path)
        } else {
            outputs::whisper_model(&self.path)
        };
        v.push(Input::new("the ASR list (--list)", list));
        let mut seen = std::collections::BTreeSet::new();
        for it in runtime::asr_eval::read_asr_list(list).unwrap_or_default() {
            if seen.insert(it.audio.clone()) {
                v.push(Input::new(
                    "an audio file of the ASR list",
                    audio_root.join(&it.audio),
                ));
            }
        }
        v
    }

    /// The model folder autoquant writes (`dir`, e.g. `--out/model`): every file to write,
    /// with the quantized part's bytes `onnx`; `note` says what was quantized.
    pub(crate) fn folder_files(
        &self,
        dir: &Path,
        onnx: Vec<u8>,
        note: &str,
    ) -> Result<Vec<(PathBuf, Vec<u8>)>> {
        if !self.llm {
            let (src, cfg) = runtime::whisper::read_config(&self.path)?;
            let mut c = read_json(&src.join(runtime::whisper::CONFIG_FILE))?;
            c["quantized"] = Value::from(note);
            let mut files = vec![
                (
                    dir.join(runtime::whisper::CONFIG_FILE),
                    serde_json::to_vec_pretty(&c)?,
                ),
                (
                    dir.join("tokenizer.json"),
                    read(&src.join("tokenizer.json"))?,
                ),
            ];
            let (mine, other) = if self.part == "encoder" {
                (&cfg.encoder_file, &cfg.decoder_file)
            } else {
                (&cfg.decoder_file, &cfg.encoder_file)
            };
            files.push((dir.join(mine), onnx));
            files.push((dir.join(other), read(&src.join(other))?));
            return Ok(files);
        }
        let file = llm_config_file(&self.path);
        let src = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut c = read_json(&file)?;
        let rel = |p: PathBuf, from: &Path| relative_to(&p, from);
        for keys in [
            ["encoder", "file"],
            ["encoder", "config"],
            ["projector", "file"],
        ] {
            if let Ok(s) = str_at(&c, &file, &keys) {
                let r = rel(src.join(s), dir)?;
                c[keys[0]][keys[1]] = Value::from(r);
            }
        }
        let ldir = src.join(str_at(&c, &file, &["llm", "dir"])?);
        c["llm"]["dir"] = Value::from(rel(ldir.clone(), dir)?);
        let mut files = Vec::new();
        match self.part.as_str() {
            "encoder" => {
                c["encoder"]["file"] = Value::from("encoder.onnx");
                files.push((dir.join("encoder.onnx"), onnx));
            }
            "projector" => {
                c["projector"]["file"] = Value::from("projector.onnx");
                files.push((dir.join("projector.onnx"), onnx));
            }
            _ => {
                let new = dir.join("llm");
                let lj = ldir.join("llm.json");
                let mut l = read_json(&lj)?;
                let names: Vec<String> = l["files"]
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                for k in names {
                    if k == "decoder" {
                        continue;
                    }
                    if let Some(s) = l["files"][&k].as_str() {
                        let r = rel(ldir.join(s), &new)?;
                        l["files"][&k] = Value::from(r);
                    }
                }
                l["files"]["decoder"] = Value::from("decoder.onnx");
                l["quantized"] = Value::from(note);
                c["llm"]["dir"] = Value::from("llm");
                files.push((new.join("llm.json"), serde_json::to_vec_pretty(&l)?));
                files.push((new.join("decoder.onnx"), onnx));
            }
        }
        c["quantized"] = Value::from(note);
        c["paths"] = Value::from(
            "relative to the folder of this file; the parts voxq autoquant did not change point back at the source model",
        );
        files.insert(
            0,
            (dir.join("audio_llm.json"), serde_json::to_vec_pretty(&c)?),
        );
        Ok(files)
    }
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))
}

/// An absolute, normalised form of `p` that may not exist yet: its deepest existing ancestor
/// canonicalised (links resolved), the rest appended.
fn resolved(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).with_context(|| format!("{}: bad path", p.display()))?;
    let mut tail = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for t in tail.iter().rev() {
                out.push(t);
            }
            return Ok(out);
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                cur = parent;
            }
            _ => return Ok(abs),
        }
    }
}

/// `target` as a path relative to the folder `from` (with `..` where needed), `/`-separated.
fn relative_to(target: &Path, from: &Path) -> Result<String> {
    let t = resolved(target)?;
    let f = resolved(from)?;
    let tc: Vec<Component> = t.components().collect();
    let fc: Vec<Component> = f.components().collect();
    let common = tc.iter().zip(&fc).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); fc.len() - common];
    parts.extend(
        tc[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a/b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("f.onnx"), b"x").unwrap();
        let out = d.path().join("out/model");
        assert_eq!(
            relative_to(&a.join("f.onnx"), &out).unwrap(),
            "../../a/b/f.onnx"
        );
        assert_eq!(relative_to(&a, &a).unwrap(), "");
        assert_eq!(relative_to(&a.join("f.onnx"), &a).unwrap(), "f.onnx");
    }
}
