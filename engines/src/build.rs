//! The steps every engine build shares, whatever the backend: reading the source model, its
//! precision and tensor specs, a fresh manifest, the model config (checked against the model,
//! then copied), and the scratch
//! folder that is moved into place only when the build is complete. The backends' builds use
//! them: `ort::build_cpu` (`--target cpu`), `tensorrt::build_tensorrt` and
//! `tensorrt::build_tensorrt_ort`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use exporter::model::{load_bytes, summary, Dim, ValueType};

use crate::manifest::{Builder, Manifest, SourceModel, TensorSpec, FORMAT};
use crate::EngineError;

/// File name of the copied model config inside an engine folder.
pub const CONFIG_FILE: &str = "model.json";

/// `fp32`, `fp16` or `int8` from what the model holds: Q/DQ nodes or integer ops (dynamic
/// int8: `DynamicQuantizeLinear`, `MatMulInteger`, `ConvInteger`) mean int8.
pub fn precision_of(m: &onnx_protobuf::ModelProto) -> &'static str {
    let ops = &summary(m).op_types;
    let int8 = [
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
    ];
    if int8.iter().any(|op| ops.contains_key(*op)) {
        "int8"
    } else if m
        .graph
        .initializer
        .iter()
        .any(|t| t.data_type == exporter::model::elem::FLOAT16)
    {
        "fp16"
    } else {
        "fp32"
    }
}

pub(crate) fn specs(io: &[exporter::model::IoSummary]) -> Vec<TensorSpec> {
    io.iter()
        .map(|x| {
            let (dtype, dims) = match &x.ty {
                ValueType::Tensor { elem_type, dims } => (
                    elem_type.name().to_string(),
                    dims.clone().unwrap_or_default(),
                ),
                other => (other.to_string(), Vec::new()),
            };
            TensorSpec {
                name: x.name.clone(),
                dtype,
                shape: dims.iter().map(|d| d.value().unwrap_or(-1)).collect(),
                dim_names: dims
                    .iter()
                    .map(|d| match d {
                        Dim::Symbolic(s) => s.clone(),
                        _ => String::new(),
                    })
                    .collect(),
                profile: None,
            }
        })
        .collect()
}

fn io_err(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Build {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Reads and parses a model file (bytes kept for its hash). A file past protobuf's 2 GiB limit
/// is refused before it is read.
pub(crate) fn read_model(
    model: &Path,
) -> Result<(Vec<u8>, onnx_protobuf::ModelProto), EngineError> {
    let meta = std::fs::metadata(model).map_err(|e| io_err(model, e))?;
    let refuse = |reason: String| EngineError::Build {
        path: model.to_path_buf(),
        reason,
    };
    if meta.is_dir() {
        return Err(refuse("is a folder, not a model file".into()));
    }
    if meta.len() > exporter::model::PROTOBUF_LIMIT {
        return Err(refuse(format!(
            "{} bytes is more than protobuf's 2 GiB limit on one model file (keep large weights in external data)",
            meta.len()
        )));
    }
    let bytes = std::fs::read(model).map_err(|e| io_err(model, e))?;
    let proto =
        load_bytes(&model.display().to_string(), &bytes).map_err(|e| EngineError::Build {
            path: model.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok((bytes, proto))
}

/// A manifest for a fresh build of `model` (no session settings, no config, no GPU).
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_manifest(
    target: &str,
    model: &Path,
    bytes: &[u8],
    proto: &onnx_protobuf::ModelProto,
    engine_file: &str,
    builder: Builder,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
) -> Manifest {
    Manifest {
        format: FORMAT,
        voxq_version: env!("CARGO_PKG_VERSION").to_string(),
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        target: target.into(),
        precision: precision_of(proto).into(),
        source_model: SourceModel {
            file: model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: exporter::sensitivity::sha256_hex(bytes),
        },
        engine_file: engine_file.into(),
        builder,
        gpu: None,
        inputs,
        outputs,
        session: None,
        config_file: None,
        openvino: None,
        rewrites: vec![],
    }
}

/// The graph an engine deploys: `proto` after the exact rewrites every backend gains from
/// (a broadcast-only `Tile` becomes `Expand`: [`exporter::passes::tile_to_expand`]), and one
/// label per rewrite for the manifest. `None` when nothing changed.
pub(crate) fn deployable(
    proto: &onnx_protobuf::ModelProto,
) -> Option<(onnx_protobuf::ModelProto, Vec<String>)> {
    let external = proto
        .graph
        .as_ref()
        .is_some_and(|g| g.initializer.iter().any(|t| !t.external_data.is_empty()));
    if external {
        return None; // the rewritten file could not find the data beside the source
    }
    let (m, report) = exporter::passes::tile_to_expand(proto);
    if report.rewritten.is_empty() {
        return None;
    }
    let labels = report
        .rewritten
        .iter()
        .map(|n| format!("Tile→Expand {n}"))
        .collect();
    Some((m, labels))
}

/// Refuses a JSON config that contradicts the model it is built with, before any build work:
/// its `onnx` names another model file (an existing file with other bytes), its `input` or
/// `output` is not a tensor of the model, or its `embedding_dim` / `fbank.num_mel_bins`
/// disagree with a fixed last dimension of that output / input.
pub(crate) fn check_config(
    config: Option<&Path>,
    model: &Path,
    bytes: &[u8],
    proto: &onnx_protobuf::ModelProto,
) -> Result<(), EngineError> {
    let Some(c) = config else { return Ok(()) };
    let v = read_config(c)?;
    let bad = |reason: String| EngineError::Build {
        path: c.to_path_buf(),
        reason: format!(
            "the config contradicts the model {}: {reason}",
            model.display()
        ),
    };
    if let Some(onnx) = v.get("onnx").and_then(|x| x.as_str()) {
        let named = c.parent().unwrap_or(Path::new("")).join(onnx);
        if named.is_file() && !same_model(&named, model, bytes) {
            return Err(bad(format!(
                "its \"onnx\" names another model, {}",
                named.display()
            )));
        }
    }
    let s = summary(proto);
    let last_dim = |io: &exporter::model::IoSummary| match &io.ty {
        ValueType::Tensor {
            dims: Some(dims), ..
        } => dims.last().and_then(|d| d.value()),
        _ => None,
    };
    fn find<'a>(
        io: &'a [exporter::model::IoSummary],
        name: Option<&str>,
    ) -> std::result::Result<Option<&'a exporter::model::IoSummary>, String> {
        let Some(name) = name else { return Ok(None) };
        io.iter().find(|x| x.name == name).map(Some).ok_or_else(|| {
            io.iter()
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
    let field = |k: &str| v.get(k).and_then(|x| x.as_str());
    let missing = |key: &str, what: &str, have: String| {
        bad(format!(
            "its \"{key}\" is '{}', but the model has no {what} of that name ({what}s: {have})",
            field(key).unwrap_or_default()
        ))
    };
    let input = find(&s.inputs, field("input")).map_err(|h| missing("input", "input", h))?;
    let output = find(&s.outputs, field("output")).map_err(|h| missing("output", "output", h))?;
    let checks = [
        (output, v.get("embedding_dim"), "embedding_dim"),
        (
            input,
            v.get("fbank").and_then(|f| f.get("num_mel_bins")),
            "fbank.num_mel_bins",
        ),
    ];
    for (io, want, key) in checks {
        let (Some(io), Some(want)) = (io, want.and_then(|w| w.as_i64())) else {
            continue;
        };
        if let Some(have) = last_dim(io).filter(|&d| d > 0) {
            if have != want {
                return Err(bad(format!(
                    "its \"{key}\" is {want}, but the last dimension of '{}' is {have}",
                    io.name
                )));
            }
        }
    }
    Ok(())
}

/// Whether `named` is the model `model` (whose bytes are `bytes`): the same file, or a copy.
fn same_model(named: &Path, model: &Path, bytes: &[u8]) -> bool {
    if let (Ok(a), Ok(b)) = (named.canonicalize(), model.canonicalize()) {
        if a == b {
            return true;
        }
    }
    std::fs::metadata(named).is_ok_and(|m| m.len() == bytes.len() as u64)
        && std::fs::read(named).is_ok_and(|other| other == bytes)
}

/// Reads and parses a model's JSON config.
fn read_config(c: &Path) -> Result<serde_json::Value, EngineError> {
    let text = exporter::textfile::read_text(c, "a model config").map_err(|e| io_err(c, e))?;
    serde_json::from_str(&text).map_err(|e| EngineError::Build {
        path: c.to_path_buf(),
        reason: format!("invalid JSON: {e}"),
    })
}

/// Copies the model's JSON config into the engine folder with `onnx` pointing at the
/// engine's model file; returns its file name.
pub(crate) fn copy_config(
    config: Option<&Path>,
    scratch: &Path,
    engine_model: &str,
) -> Result<Option<String>, EngineError> {
    let Some(c) = config else { return Ok(None) };
    let mut v = read_config(c)?;
    v["onnx"] = engine_model.into();
    let text = serde_json::to_string_pretty(&v).map_err(|e| EngineError::Build {
        path: c.to_path_buf(),
        reason: e.to_string(),
    })?;
    let dest = scratch.join(CONFIG_FILE);
    exporter::atomic::write_atomic(&dest, text.as_bytes()).map_err(|e| EngineError::Build {
        path: dest.clone(),
        reason: e.to_string(),
    })?;
    Ok(Some(CONFIG_FILE.to_string()))
}

/// Runs `f` on a fresh scratch folder beside `out` and moves it to `out` when `f` succeeds
/// ([`exporter::atomic::commit_dir`]: an existing `out` is replaced only if it is an engine
/// folder or empty); on failure the scratch folder is removed and `out` is left as it was.
pub(crate) fn in_scratch<T>(
    out: &Path,
    f: impl FnOnce(&Path) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    let fail = |e: exporter::ExportError| EngineError::Build {
        path: out.to_path_buf(),
        reason: match e {
            exporter::ExportError::Io { path, source } if path == out => source.to_string(),
            e => e.to_string(),
        },
    };
    let scratch: PathBuf = exporter::atomic::scratch_dir(out).map_err(fail)?;
    // Errors name the files as they will be in `out`, not in the scratch folder that is
    // removed on failure (`out/.eng.partial-123/model.onnx` → `out/model.onnx`).
    let mut names: Vec<String> = [scratch.canonicalize().ok(), Some(scratch.clone())]
        .into_iter()
        .flatten()
        .map(|p| p.display().to_string())
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let target = out.display().to_string();
    let unscratch = |t: &str| {
        names
            .iter()
            .fold(t.to_string(), |t, n| t.replace(n.as_str(), &target))
    };
    let done = f(&scratch)
        .map_err(|e| e.map_text(&unscratch))
        .and_then(|v| {
            exporter::atomic::commit_dir(&scratch, out, "an engine folder", |d| {
                d.join(crate::manifest::MANIFEST_FILE).is_file()
            })
            .map_err(fail)?;
            Ok(v)
        });
    if done.is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    done
}
