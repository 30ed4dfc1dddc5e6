//! Triton Inference Server model repositories from engine folders: `config.pbtxt` (platform,
//! max batch size, tensors from the manifest, dynamic batching, instance groups, TensorRT
//! acceleration of QDQ ONNX on GPUs) plus the version folder; and a reader for the protobuf
//! text format subset those configs use, so they can be checked.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::manifest::{Manifest, TensorSpec};
use crate::EngineError;

/// `max_batch_size` of an engine without a TensorRT shape profile (ONNX Runtime CPU engines).
pub const DEFAULT_MAX_BATCH_SIZE: u32 = 32;

/// How a repository entry is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TritonOptions {
    /// `None`: the engine's TensorRT profile max batch ([`profile_max_batch`]), else
    /// [`DEFAULT_MAX_BATCH_SIZE`]. A value above the profile max batch is refused.
    pub max_batch_size: Option<u32>,
    /// Instances per device.
    pub instances: u32,
    /// Serve ONNX engines on GPUs (`KIND_GPU`; QDQ models get TensorRT INT8 acceleration).
    /// TensorRT engines (`tensorrt`, `tensorrt-ort`) are always served on GPUs.
    pub gpu: bool,
    pub max_queue_delay_us: u64,
}

impl Default for TritonOptions {
    fn default() -> Self {
        TritonOptions {
            max_batch_size: None,
            instances: 1,
            gpu: false,
            max_queue_delay_us: 1000,
        }
    }
}

/// The largest batch a TensorRT engine takes: the smallest first-axis max among the shape
/// profiles of its inputs with a dynamic first (batch) axis, with the input that sets it;
/// `None` for an engine without such profiles.
/// Triton's TensorRT backend refuses a `max_batch_size` above its engine's profile max batch
/// ("configuration specified max-batch X but TensorRT engine only supports max-batch Y",
/// triton-inference-server/tensorrt_backend `src/model_state.cc`); an ONNX Runtime engine
/// built by the TensorRT execution provider fails at run time on a batch past its profile.
pub fn profile_max_batch(m: &Manifest) -> Option<(u32, &TensorSpec)> {
    m.inputs
        .iter()
        .filter(|t| t.shape.first().is_some_and(|d| *d < 0))
        .filter_map(|t| {
            let b = *t.profile.as_ref()?.max.first()?;
            Some((u32::try_from(b).unwrap_or(u32::MAX), t))
        })
        .min_by_key(|(b, _)| *b)
}

/// The `max_batch_size` an entry gets: the asked one, checked against the engine's profile,
/// or the profile's max batch, or [`DEFAULT_MAX_BATCH_SIZE`] without a profile.
pub fn max_batch_size(m: &Manifest, dir: &Path, asked: Option<u32>) -> Result<u32, EngineError> {
    match (asked, profile_max_batch(m)) {
        (Some(b), Some((max, t))) if b > max => Err(EngineError::Triton {
            path: dir.to_path_buf(),
            reason: format!(
                "--max-batch-size {b} is above the engine's TensorRT profile max batch {max} (input '{}' max shape {:?}); Triton refuses such a model: give at most {max}, or rebuild the engine with a larger --profile",
                t.name,
                t.profile.as_ref().map(|p| p.max.clone()).unwrap_or_default()
            ),
        }),
        (Some(b), _) => Ok(b),
        (None, Some((max, _))) => Ok(max),
        (None, None) => Ok(DEFAULT_MAX_BATCH_SIZE),
    }
}

fn triton_type(dtype: &str) -> Option<&'static str> {
    Some(match dtype {
        "float32" => "TYPE_FP32",
        "float16" => "TYPE_FP16",
        "bfloat16" => "TYPE_BF16",
        "float64" => "TYPE_FP64",
        "int8" => "TYPE_INT8",
        "uint8" => "TYPE_UINT8",
        "int32" => "TYPE_INT32",
        "int64" => "TYPE_INT64",
        "bool" => "TYPE_BOOL",
        _ => return None,
    })
}

fn tensors(
    s: &mut String,
    key: &str,
    specs: &[TensorSpec],
    batched: bool,
    m: &Path,
) -> Result<(), EngineError> {
    let _ = writeln!(s, "{key} [");
    for (i, t) in specs.iter().enumerate() {
        let ty = triton_type(&t.dtype).ok_or_else(|| EngineError::Manifest {
            path: m.to_path_buf(),
            reason: format!("tensor '{}': dtype {} has no Triton type", t.name, t.dtype),
        })?;
        if batched && t.shape.first().is_some_and(|d| *d >= 0) {
            return Err(EngineError::Manifest {
                path: m.to_path_buf(),
                reason: format!(
                    "tensor '{}' has a fixed first axis {:?}: Triton batching needs a dynamic batch axis (use --max-batch-size 0)",
                    t.name, t.shape
                ),
            });
        }
        let dims: Vec<String> = t
            .shape
            .iter()
            .skip(batched as usize)
            .map(|d| d.to_string())
            .collect();
        let _ = writeln!(
            s,
            "  {{\n    name: \"{}\"\n    data_type: {ty}\n    dims: [ {} ]\n  }}{}",
            t.name,
            dims.join(", "),
            if i + 1 < specs.len() { "," } else { "" }
        );
    }
    s.push_str("]\n");
    Ok(())
}

/// `config.pbtxt` for an engine described by `m` (its folder `dir`, for messages).
pub fn config_pbtxt(
    name: &str,
    m: &Manifest,
    dir: &Path,
    o: &TritonOptions,
) -> Result<String, EngineError> {
    let mpath = dir.join(crate::manifest::MANIFEST_FILE);
    let platform = match m.target.as_str() {
        "tensorrt" => "tensorrt_plan",
        "cpu" | "tensorrt-ort" => "onnxruntime_onnx",
        other => {
            return Err(EngineError::Manifest {
                path: mpath,
                reason: format!("target '{other}' has no Triton platform"),
            })
        }
    };
    let max_batch = max_batch_size(m, dir, o.max_batch_size)?;
    let batched = max_batch > 0;
    // A `tensorrt-ort` engine is an EPContext model: only ONNX Runtime's TensorRT execution
    // provider runs its node (the CPU provider refuses it, tests/cli/engines_trt.rs), and the
    // onnxruntime backend adds that provider only to KIND_GPU instances through the
    // `gpu_execution_accelerator` "tensorrt" (triton-inference-server/onnxruntime_backend
    // README.md, "TensorRT optimization"). So it is served on GPUs with the accelerator
    // whether or not `--gpu` is given, like a TensorRT plan: KIND_CPU could never load it.
    let gpu = o.gpu || platform == "tensorrt_plan" || m.target == "tensorrt-ort";
    let mut s =
        format!("name: \"{name}\"\nplatform: \"{platform}\"\nmax_batch_size: {max_batch}\n");
    tensors(&mut s, "input", &m.inputs, batched, &mpath)?;
    tensors(&mut s, "output", &m.outputs, batched, &mpath)?;
    if batched {
        let _ = writeln!(
            s,
            "dynamic_batching {{\n  max_queue_delay_microseconds: {}\n}}",
            o.max_queue_delay_us
        );
    }
    let _ = writeln!(
        s,
        "instance_group [\n  {{\n    count: {}\n    kind: {}\n  }}\n]",
        o.instances,
        if gpu { "KIND_GPU" } else { "KIND_CPU" }
    );
    if gpu && platform == "onnxruntime_onnx" {
        let precision = match m.precision.as_str() {
            "int8" => "INT8",
            "fp16" => "FP16",
            _ => "FP32",
        };
        let _ = writeln!(
            s,
            "optimization {{\n  execution_accelerators {{\n    gpu_execution_accelerator : [\n      {{\n        name : \"tensorrt\"\n        parameters {{ key: \"precision_mode\" value: \"{precision}\" }}\n        parameters {{ key: \"max_workspace_size_bytes\" value: \"1073741824\" }}\n      }}\n    ]\n  }}\n}}"
        );
    }
    Ok(s)
}

/// Triton's file name for a platform's model.
pub fn model_file(platform_target: &str) -> &'static str {
    if platform_target == "tensorrt" {
        "model.plan"
    } else {
        "model.onnx"
    }
}

/// The repository entry name of an engine folder: its parent's and its own name joined by
/// `_` (the folder's name alone when it has no named parent), every character other than an
/// ASCII letter, digit, `-` or `_` replaced by `_`. E.g. `out/engines/campplus/cpu-int8` ->
/// `campplus_cpu-int8`.
pub fn entry_name(dir: &Path) -> String {
    let leaf = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    match parent {
        Some(p) if !p.is_empty() => format!("{p}_{leaf}"),
        _ => leaf,
    }
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        }
    })
    .collect()
}

/// Writes `repo/<name>/config.pbtxt` and `repo/<name>/1/<model file>` for an engine folder.
/// The entry is built in a scratch folder and moved into place when complete
/// ([`exporter::atomic::commit_dir`]), replacing an earlier entry of that name.
pub fn export(
    dir: &Path,
    name: &str,
    repo: &Path,
    o: &TritonOptions,
) -> Result<std::path::PathBuf, EngineError> {
    let m = Manifest::read(dir)?;
    let cfg = config_pbtxt(name, &m, dir, o)?;
    let entry = repo.join(name);
    let io = |p: &Path, e: std::io::Error| EngineError::Build {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    let export_err = |e: exporter::ExportError| EngineError::Triton {
        path: entry.clone(),
        reason: match e {
            exporter::ExportError::Io { path, source } if path == entry => source.to_string(),
            e => e.to_string(),
        },
    };
    std::fs::create_dir_all(repo).map_err(|e| io(repo, e))?;
    let scratch = exporter::atomic::scratch_dir(&entry).map_err(export_err)?;
    let fill = || -> Result<(), EngineError> {
        let version = scratch.join("1");
        std::fs::create_dir_all(&version).map_err(|e| io(&version, e))?;
        let src = dir.join(&m.engine_file);
        std::fs::copy(&src, version.join(model_file(&m.target))).map_err(|e| io(&src, e))?;
        if m.target == "tensorrt-ort" {
            // the EPContext model points at its engine relative to itself: bring the engine
            let cache = dir.join(crate::tensorrt::ORT_CACHE_DIR);
            let to = version.join(crate::tensorrt::ORT_CACHE_DIR);
            std::fs::create_dir_all(&to).map_err(|e| io(&to, e))?;
            for f in std::fs::read_dir(&cache).map_err(|e| io(&cache, e))? {
                let f = f.map_err(|e| io(&cache, e))?;
                if f.path().is_file() {
                    std::fs::copy(f.path(), to.join(f.file_name()))
                        .map_err(|e| io(&f.path(), e))?;
                }
            }
        }
        exporter::atomic::write_atomic(scratch.join("config.pbtxt"), cfg.as_bytes())
            .map_err(export_err)?;
        exporter::atomic::commit_dir(&scratch, &entry, "a Triton model entry", |d| {
            d.join("config.pbtxt").is_file()
        })
        .map_err(export_err)
    };
    if let Err(e) = fill() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(e);
    }
    Ok(entry)
}

/// A value in protobuf text format: a scalar (kept as written, strings unquoted) or a message.
#[derive(Debug, Clone, PartialEq)]
pub enum PbValue {
    Scalar(String),
    Message(PbMessage),
}

/// A message: every field name with its values in order (repeated fields have several).
pub type PbMessage = BTreeMap<String, Vec<PbValue>>;

/// Reads the protobuf text format subset of Triton configs: `key: value`, `key { ... }`,
/// `key: [ v, v ]`, `key [ {..}, {..} ]`, quoted strings, `#` comments.
pub fn parse_pbtxt(text: &str) -> Result<PbMessage, String> {
    let toks = tokenize(text)?;
    let mut i = 0;
    let m = parse_fields(&toks, &mut i, None)?;
    if let Some(t) = toks.get(i) {
        return Err(format!("unexpected '{t}'"));
    }
    Ok(m)
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut it = text.chars().peekable();
    while let Some(&c) = it.peek() {
        if c.is_whitespace() {
            it.next();
        } else if c == '#' {
            for c in it.by_ref() {
                if c == '\n' {
                    break;
                }
            }
        } else if "{}[]:,".contains(c) {
            out.push(c.to_string());
            it.next();
        } else if c == '"' {
            it.next();
            let mut s = String::from("\"");
            loop {
                match it.next() {
                    Some('"') => break,
                    Some('\\') => s.extend(it.next()),
                    Some(c) => s.push(c),
                    None => return Err("unterminated string".into()),
                }
            }
            out.push(s);
        } else {
            let mut s = String::new();
            while let Some(&c) = it.peek() {
                if c.is_whitespace() || "{}[]:,#\"".contains(c) {
                    break;
                }
                s.push(c);
                it.next();
            }
            out.push(s);
        }
    }
    Ok(out)
}

fn scalar(t: &str) -> PbValue {
    PbValue::Scalar(t.strip_prefix('"').unwrap_or(t).to_string())
}

fn parse_fields(toks: &[String], i: &mut usize, close: Option<&str>) -> Result<PbMessage, String> {
    let mut m = PbMessage::new();
    while *i < toks.len() {
        if Some(toks[*i].as_str()) == close {
            *i += 1;
            return Ok(m);
        }
        let key = toks[*i].clone();
        if "{}[]:,".contains(key.as_str()) {
            return Err(format!("expected a field name, found '{key}'"));
        }
        *i += 1;
        if toks.get(*i).map(String::as_str) == Some(":") {
            *i += 1;
        }
        let vals = m.entry(key.clone()).or_default();
        match toks.get(*i).map(String::as_str) {
            Some("{") => {
                *i += 1;
                vals.push(PbValue::Message(parse_fields(toks, i, Some("}"))?));
            }
            Some("[") => {
                *i += 1;
                loop {
                    match toks.get(*i).map(String::as_str) {
                        Some("]") => {
                            *i += 1;
                            break;
                        }
                        Some(",") => *i += 1,
                        Some("{") => {
                            *i += 1;
                            vals.push(PbValue::Message(parse_fields(toks, i, Some("}"))?));
                        }
                        Some(t) => {
                            vals.push(scalar(t));
                            *i += 1;
                        }
                        None => return Err(format!("unterminated list for '{key}'")),
                    }
                }
            }
            Some(t) if !"{}[]:,".contains(t) => {
                vals.push(scalar(t));
                *i += 1;
            }
            other => return Err(format!("field '{key}': unexpected {other:?}")),
        }
    }
    match close {
        Some(c) => Err(format!("missing '{c}'")),
        None => Ok(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_join_parent_and_folder() {
        assert_eq!(
            entry_name(Path::new("out/engines/campplus/cpu-int8")),
            "campplus_cpu-int8"
        );
        assert_eq!(entry_name(Path::new("cpu-int8")), "cpu-int8");
        assert_eq!(entry_name(Path::new("/a b/c.d")), "a_b_c_d");
    }
}
