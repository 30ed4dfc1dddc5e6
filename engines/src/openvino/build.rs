//! The OpenVINO engine build (`--target openvino`): the ONNX model copied into the folder
//! (after the exact rewrites of [`crate::build::deployable`], listed in the manifest),
//! compiled once for this CPU with an explicit inference precision so that OpenVINO's
//! compiled-model cache is filled (a server then starts from the cache), a warm-up run, the
//! config and the manifest (OpenVINO version, CPU and the instruction-set features relied on,
//! precision, threads, shapes).

use std::path::Path;

use exporter::model::{summary, to_bytes};

use super::cpu::{cpu_isa, cpu_model, relied_isa};
use super::engine::OvEngine;
use super::library::openvino_version;
use crate::build::{
    check_config, copy_config, deployable, in_scratch, new_manifest, precision_of, read_model,
    specs,
};
use crate::engine::{Engine, F32Tensor, Folder};
use crate::manifest::{Builder, Manifest, OpenvinoSettings};
use crate::ort::WARMUP_FRAMES;
use crate::EngineError;

/// File name of the model inside an OpenVINO engine folder.
pub const OV_ENGINE_FILE: &str = "model.onnx";
/// The compiled-model cache folder inside an OpenVINO engine folder.
const CACHE_DIR: &str = "cache";

/// The precision OpenVINO computes the float parts of a model in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OvPrecision {
    /// True fp32 (`INFERENCE_PRECISION_HINT=f32`); OpenVINO's default on a CPU with bf16
    /// arithmetic would be bf16.
    F32,
    /// bf16 arithmetic: faster on CPUs with AVX-512 BF16 or AMX, less exact.
    Bf16,
}

impl OvPrecision {
    /// The `INFERENCE_PRECISION_HINT` value.
    pub fn hint(self) -> &'static str {
        match self {
            OvPrecision::F32 => "f32",
            OvPrecision::Bf16 => "bf16",
        }
    }
}

/// How to build an OpenVINO engine.
#[derive(Debug, Clone)]
pub struct OvBuildOptions {
    pub precision: OvPrecision,
    /// Threads recorded for the engine (0 = OpenVINO's choice).
    pub threads: usize,
    /// Apply the exact rewrites of [`crate::build::deployable`] (false: the graph as given).
    pub rewrite: bool,
    /// A warm-up run on zeros of the model's float32 inputs (false: the caller runs the model
    /// itself, e.g. a decoder whose inputs are token ids and a KV cache).
    pub warm_up: bool,
}

/// Builds an OpenVINO CPU engine folder at `out` from `model` (fp32 or int8 QDQ). A failed
/// build leaves `out` as it was.
pub fn build_openvino(
    model: &Path,
    config: Option<&Path>,
    out: &Path,
    opts: &OvBuildOptions,
) -> Result<Manifest, EngineError> {
    let version = openvino_version()?;
    let (bytes, proto) = read_model(model)?;
    let external = proto
        .graph
        .as_ref()
        .is_some_and(|g| g.initializer.iter().any(|t| !t.external_data.is_empty()));
    if external {
        return Err(EngineError::Build {
            path: model.to_path_buf(),
            reason: "keeps its weights in external data; an OpenVINO engine folder holds one model file: save the model as one file (it must be under 2 GiB)".into(),
        });
    }
    check_config(config, model, &bytes, &proto)?;
    let precision = precision_of(&proto);
    let have = cpu_isa();
    let bf16 = opts.precision == OvPrecision::Bf16;
    if bf16 && !have.iter().any(|f| f == "avx512_bf16" || f == "amx_bf16") {
        return Err(EngineError::Build {
            path: model.to_path_buf(),
            reason: format!(
                "--precision bf16 needs a CPU with AVX-512 BF16 or AMX; {} has neither",
                cpu_model()
            ),
        });
    }
    let s = summary(&proto);
    let (deploy, rewrites) = match deployable(&proto).filter(|_| opts.rewrite) {
        Some((m, r)) => (
            to_bytes(&m).map_err(|e| EngineError::Build {
                path: model.to_path_buf(),
                reason: e.to_string(),
            })?,
            r,
        ),
        None => (bytes.clone(), vec![]),
    };
    in_scratch(out, |scratch| {
        std::fs::write(scratch.join(OV_ENGINE_FILE), &deploy).map_err(|e| EngineError::Build {
            path: out.join(OV_ENGINE_FILE),
            reason: e.to_string(),
        })?;
        let manifest = Manifest {
            config_file: copy_config(config, scratch, OV_ENGINE_FILE)?,
            openvino: Some(OpenvinoSettings {
                inference_precision: opts.precision.hint().into(),
                threads: opts.threads,
                cpu: cpu_model(),
                isa: relied_isa(&have, precision == "int8", bf16),
                cache_dir: CACHE_DIR.into(),
            }),
            rewrites,
            ..new_manifest(
                "openvino",
                model,
                &bytes,
                &proto,
                OV_ENGINE_FILE,
                Builder {
                    name: "openvino".into(),
                    version: version.clone(),
                },
                specs(&s.inputs),
                specs(&s.outputs),
            )
        };
        // compile once (this fills the cache) and run on zeros as the runtime will
        let folder = Folder {
            dir: scratch.to_path_buf(),
            manifest,
        };
        let mut engine = OvEngine::open(&folder, 0)?;
        if opts.warm_up {
            warm_up(&mut engine, &folder.manifest, &out.join(OV_ENGINE_FILE))?;
        }
        folder.manifest.write(scratch)?;
        Ok(folder.manifest)
    })
}

/// One run on zeros (batch 1, dynamic frames [`WARMUP_FRAMES`]); outputs must be finite.
fn warm_up(engine: &mut OvEngine, m: &Manifest, path: &Path) -> Result<(), EngineError> {
    let fail = |reason: String| EngineError::Build {
        path: path.to_path_buf(),
        reason,
    };
    let mut inputs = Vec::new();
    for spec in &m.inputs {
        if spec.dtype != "float32" {
            return Err(fail(format!(
                "input '{}' is {}: warm-up feeds float32 inputs only",
                spec.name, spec.dtype
            )));
        }
        let dims = spec.concrete(1, WARMUP_FRAMES);
        let n: i64 = dims.iter().product();
        inputs.push(F32Tensor {
            name: spec.name.clone(),
            dims,
            data: vec![0.0; n.max(0) as usize],
        });
    }
    let names: Vec<&str> = m.outputs.iter().map(|o| o.name.as_str()).collect();
    let outs = engine
        .run_f32(&inputs, &names)
        .map_err(|e| fail(format!("warm-up run failed: {e}")))?;
    if let Some(o) = outs.iter().find(|o| o.data.iter().any(|x| !x.is_finite())) {
        return Err(fail(format!("warm-up output '{}' is not finite", o.name)));
    }
    Ok(())
}
