//! Engine builds: ONNX Runtime CPU engines (optimised model + manifest + warm-up), built into
//! a scratch folder and moved into place only when complete.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use exporter::model::{load_bytes, summary, Dim, ValueType};
use ort::value::Tensor;

use crate::manifest::{Builder, Manifest, SessionSettings, SourceModel, TensorSpec, FORMAT};
use crate::ort_env::{cpu_session, first_line, CpuOptions};
use crate::EngineError;

/// File name of the model inside a CPU engine folder.
pub const CPU_ENGINE_FILE: &str = "model.onnx";
/// File name of the copied model config inside an engine folder.
pub const CONFIG_FILE: &str = "model.json";
/// Frames used for dynamic non-batch axes in the warm-up run.
pub const WARMUP_FRAMES: i64 = 200;

/// The version of the ONNX Runtime library in use (`1.31.1`), as the library reports it
/// (`OrtGetApiBase()->GetVersionString()`).
pub fn ort_version() -> Result<String, EngineError> {
    crate::ort_env::environment()?;
    let path = crate::ort_env::find_dylib()?;
    let err = |reason: String| EngineError::OrtLoad {
        path: path.clone(),
        reason,
    };
    // SAFETY: the library is already loaded by `environment()` (dlopen returns the same
    // handle); OrtGetApiBase has this signature in every ONNX Runtime release, and
    // GetVersionString returns a static NUL-terminated string.
    unsafe {
        let lib = libloading::Library::new(&path).map_err(|e| err(e.to_string()))?;
        let get: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            lib.get(b"OrtGetApiBase").map_err(|e| err(e.to_string()))?;
        let base = get();
        if base.is_null() {
            return Err(err("OrtGetApiBase returned null".into()));
        }
        let v = ((*base).GetVersionString)();
        if v.is_null() {
            return Err(err("GetVersionString returned null".into()));
        }
        Ok(std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

/// `fp32`, `fp16` or `int8` from what the model holds: Q/DQ nodes mean int8.
pub fn precision_of(m: &onnx_protobuf::ModelProto) -> &'static str {
    let ops = &summary(m).op_types;
    if ops.contains_key("QuantizeLinear") || ops.contains_key("DequantizeLinear") {
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

/// Builds an ONNX Runtime CPU engine folder at `out` from `model` (fp32 or int8 QDQ):
/// ONNX Runtime saves its optimised graph (basic, hardware-independent optimisations; the
/// rest run when the engine is loaded, at the level the manifest records), the model's JSON
/// config is copied beside it, a warm-up run proves it loads and runs, and `manifest.json`
/// describes it. A failed build leaves `out` as it was.
pub fn build_cpu(
    model: &Path,
    config: Option<&Path>,
    out: &Path,
    opts: &CpuOptions,
) -> Result<Manifest, EngineError> {
    let (bytes, proto) = read_model(model)?;
    let s = summary(&proto);
    in_scratch(out, |scratch| {
        // 1. the optimised model, written by ONNX Runtime itself
        let engine = scratch.join(CPU_ENGINE_FILE);
        let save = CpuOptions {
            intra_threads: opts.intra_threads,
            opt_level: 1,
            optimized_model_path: Some(engine.clone()),
            device: crate::ort_env::Device::Cpu,
        };
        drop(cpu_session(model, &save)?);
        if !engine.is_file() {
            return Err(EngineError::Build {
                path: model.to_path_buf(),
                reason: "ONNX Runtime did not write the optimised model".into(),
            });
        }
        let manifest = Manifest {
            session: Some(SessionSettings {
                graph_optimization_level: opts.opt_level,
                intra_threads: opts.intra_threads,
            }),
            config_file: copy_config(config, scratch, CPU_ENGINE_FILE)?,
            ..new_manifest(
                "cpu",
                model,
                &bytes,
                &proto,
                CPU_ENGINE_FILE,
                Builder {
                    name: "onnxruntime".into(),
                    version: ort_version()?,
                },
                specs(&s.inputs),
                specs(&s.outputs),
            )
        };
        // 2. warm-up: load the engine as the runtime will and run it once
        warm_up(scratch, &manifest)?;
        manifest.write(scratch)?;
        Ok(manifest)
    })
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
    }
}

/// Copies the model's JSON config into the engine folder with `onnx` pointing at the
/// engine's model file; returns its file name.
pub(crate) fn copy_config(
    config: Option<&Path>,
    scratch: &Path,
    engine_model: &str,
) -> Result<Option<String>, EngineError> {
    let Some(c) = config else { return Ok(None) };
    let text = exporter::textfile::read_text(c, "a model config").map_err(|e| io_err(c, e))?;
    let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| EngineError::Build {
        path: c.to_path_buf(),
        reason: format!("invalid JSON: {e}"),
    })?;
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
    let done = f(&scratch).and_then(|v| {
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

/// Session options a manifest's CPU engine is loaded with.
pub fn session_options(m: &Manifest) -> CpuOptions {
    let s = m.session.clone().unwrap_or(SessionSettings {
        graph_optimization_level: 3,
        intra_threads: 0,
    });
    CpuOptions {
        intra_threads: s.intra_threads,
        opt_level: s.graph_optimization_level,
        optimized_model_path: None,
        device: crate::ort_env::Device::Cpu,
    }
}

/// Runs the engine once on zeros (dynamic batch 1, other dynamic axes [`WARMUP_FRAMES`]).
pub fn warm_up(dir: &Path, m: &Manifest) -> Result<(), EngineError> {
    let path = dir.join(&m.engine_file);
    let mut session = cpu_session(&path, &session_options(m))?;
    let mut inputs = Vec::new();
    for spec in &m.inputs {
        if spec.dtype != "float32" {
            return Err(EngineError::Build {
                path: path.clone(),
                reason: format!(
                    "input '{}' is {}: warm-up feeds float32 inputs only",
                    spec.name, spec.dtype
                ),
            });
        }
        let shape = spec.concrete(1, WARMUP_FRAMES);
        let n: i64 = shape.iter().product();
        let t = Tensor::<f32>::from_array((shape.clone(), vec![0f32; n.max(0) as usize])).map_err(
            |e| EngineError::Build {
                path: path.clone(),
                reason: format!("warm-up input '{}': {e}", spec.name),
            },
        )?;
        inputs.push((spec.name.clone(), t));
    }
    let outs = session
        .run(
            inputs
                .iter()
                .map(|(n, t)| (n.as_str(), t.view().into_dyn()))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| EngineError::Build {
            path: path.clone(),
            reason: format!("warm-up run failed: {}", first_line(&e.to_string())),
        })?;
    for spec in &m.outputs {
        if let Some(v) = outs.get(spec.name.as_str()) {
            if let Ok((_, vals)) = v.try_extract_tensor::<f32>() {
                if vals.iter().any(|x| !x.is_finite()) {
                    return Err(EngineError::Build {
                        path: path.clone(),
                        reason: format!("warm-up output '{}' is not finite", spec.name),
                    });
                }
            }
        }
    }
    Ok(())
}
