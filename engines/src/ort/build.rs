//! The ONNX Runtime CPU engine (`--target cpu`): the optimised model ONNX Runtime writes (from
//! the source after the exact rewrites of [`crate::build::deployable`]), the
//! manifest, a warm-up run, and the session options the engine is loaded with.

use std::path::Path;

use exporter::model::{summary, to_bytes};
use ort::value::Tensor;

use super::env::{first_line, ort_version};
use super::providers::Device;
use super::session::{cpu_session, CpuOptions};
use crate::build::{
    check_config, copy_config, deployable, in_scratch, new_manifest, read_model, specs,
};
use crate::manifest::{Builder, Manifest, SessionSettings};
use crate::EngineError;

/// File name of the model inside a CPU engine folder.
pub const CPU_ENGINE_FILE: &str = "model.onnx";
/// Frames used for dynamic non-batch axes in the warm-up run.
pub const WARMUP_FRAMES: i64 = 200;

/// Builds an ONNX Runtime CPU engine folder at `out` from `model` (fp32 or int8 QDQ):
/// ONNX Runtime saves its optimised graph (basic, hardware-independent optimisations; the
/// rest run when the engine is loaded, at the level the manifest records), the model's JSON
/// config is copied beside it, a warm-up run proves it loads and runs, and `manifest.json`
/// describes it. `rewrite`: apply the exact rewrites of [`crate::build::deployable`] first
/// (false: the graph as given, a baseline). A failed build leaves `out` as it was.
pub fn build_cpu(
    model: &Path,
    config: Option<&Path>,
    out: &Path,
    opts: &CpuOptions,
    rewrite: bool,
) -> Result<Manifest, EngineError> {
    let (bytes, proto) = read_model(model)?;
    check_config(config, model, &bytes, &proto)?;
    let s = summary(&proto);
    in_scratch(out, |scratch| {
        // 1. the optimised model, written by ONNX Runtime itself
        let engine = scratch.join(CPU_ENGINE_FILE);
        // the exact rewrites first (a scratch copy ONNX Runtime reads, removed after)
        let rewritten = deployable(&proto).filter(|_| rewrite);
        let source = match &rewritten {
            Some((m, _)) => {
                let p = scratch.join("source.rewritten.onnx");
                let b = to_bytes(m).map_err(|e| EngineError::Build {
                    path: model.to_path_buf(),
                    reason: e.to_string(),
                })?;
                std::fs::write(&p, b).map_err(|e| EngineError::Build {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                p
            }
            None => model.to_path_buf(),
        };
        let save = CpuOptions {
            intra_threads: opts.intra_threads,
            opt_level: 1,
            optimized_model_path: Some(engine.clone()),
            device: Device::Cpu,
        };
        drop(cpu_session(&source, &save)?);
        if rewritten.is_some() {
            std::fs::remove_file(&source).map_err(|e| EngineError::Build {
                path: source.clone(),
                reason: e.to_string(),
            })?;
        }
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
            rewrites: rewritten.map(|(_, r)| r).unwrap_or_default(),
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
        device: Device::Cpu,
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
