//! One small interface over every backend that runs a model on the host: an [`Engine`] names
//! its inputs and outputs, runs named f32 tensors, and says which backend, device and precision
//! serve it. [`open_folder`] opens an engine folder of any CPU-side target (`cpu` through ONNX
//! Runtime, `openvino` through OpenVINO); [`OrtEngine`] wraps any ONNX Runtime session (files,
//! models held in memory, TensorRT engines opened through ONNX Runtime).

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::Tensor;

use crate::manifest::{Manifest, TensorSpec};
use crate::ort::{first_line, CpuOptions};
use crate::EngineError;

/// A named f32 tensor going into or coming out of an engine.
#[derive(Debug, Clone, PartialEq)]
pub struct F32Tensor {
    pub name: String,
    pub dims: Vec<i64>,
    pub data: Vec<f32>,
}

/// Name, element type and shape (`-1` for dynamic axes) of an engine input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    pub name: String,
    /// ONNX element type name (`float32`, `int64`, …).
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// What serves an engine: `onnxruntime CPUExecutionProvider`, `openvino CPU`, and the precision
/// it computes in (`fp32`, `bf16`, `int8`, `int8+f32`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub backend: String,
    pub device: String,
    pub precision: String,
}

impl std::fmt::Display for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.backend, self.device, self.precision)
    }
}

/// A model ready to run on one backend.
pub trait Engine: Send {
    /// The model's inputs.
    fn inputs(&self) -> &[IoSpec];
    /// The model's outputs.
    fn outputs(&self) -> &[IoSpec];
    /// Runs the model on named f32 inputs and returns the named outputs as f32 (an output that
    /// is not f32 is an error).
    fn run_f32(
        &mut self,
        inputs: &[F32Tensor],
        outputs: &[&str],
    ) -> Result<Vec<F32Tensor>, EngineError>;
    /// Which backend, device and precision serve it.
    fn served(&self) -> &Served;
}

/// An engine over an ONNX Runtime session.
pub struct OrtEngine {
    label: String,
    session: Session,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    served: Served,
}

/// The specs of an ONNX Runtime session's inputs or outputs.
pub fn ort_specs(outlets: &[ort::value::Outlet]) -> Vec<IoSpec> {
    outlets
        .iter()
        .map(|o| {
            let (dtype, shape) = match o.dtype() {
                ort::value::ValueType::Tensor { ty, shape, .. } => (
                    crate::tensor::onnx_elem_type(*ty)
                        .map(|c| exporter::model::elem_type_name(c).to_string())
                        .unwrap_or_else(|| format!("{ty}")),
                    shape.iter().copied().collect(),
                ),
                other => (other.to_string(), Vec::new()),
            };
            IoSpec {
                name: o.name().to_string(),
                dtype,
                shape,
            }
        })
        .collect()
}

impl OrtEngine {
    /// Wraps an open session; `label` names the model in errors, `precision` is what the model
    /// holds (`fp32`, `int8`, …) and `device` the execution provider that serves it.
    pub fn new(label: &str, session: Session, device: &str, precision: &str) -> OrtEngine {
        let inputs = ort_specs(session.inputs());
        let outputs = ort_specs(session.outputs());
        OrtEngine {
            label: label.to_string(),
            session,
            inputs,
            outputs,
            served: Served {
                backend: "onnxruntime".into(),
                device: device.to_string(),
                precision: precision.to_string(),
            },
        }
    }

    /// The session inside (for callers that need ONNX Runtime itself).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl Engine for OrtEngine {
    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn served(&self) -> &Served {
        &self.served
    }

    fn run_f32(
        &mut self,
        inputs: &[F32Tensor],
        outputs: &[&str],
    ) -> Result<Vec<F32Tensor>, EngineError> {
        let mut values = Vec::with_capacity(inputs.len());
        for t in inputs {
            let v = Tensor::<f32>::from_array((t.dims.clone(), t.data.clone())).map_err(|e| {
                EngineError::Input {
                    model: self.label.clone(),
                    input: t.name.clone(),
                    reason: e.to_string(),
                }
            })?;
            values.push((t.name.clone(), v));
        }
        let run = self
            .session
            .run(
                values
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.view().into_dyn()))
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| EngineError::Run {
                model: self.label.clone(),
                reason: first_line(&e.to_string()),
            })?;
        let mut out = Vec::with_capacity(outputs.len());
        for name in outputs {
            let bad = |reason: String| EngineError::Output {
                model: self.label.clone(),
                output: name.to_string(),
                reason,
            };
            let v = run
                .get(name)
                .ok_or_else(|| bad("the model has no such output".into()))?;
            let (shape, data) = v
                .try_extract_tensor::<f32>()
                .map_err(|e| bad(first_line(&e.to_string())))?;
            out.push(F32Tensor {
                name: name.to_string(),
                dims: shape.iter().copied().collect(),
                data: data.to_vec(),
            });
        }
        Ok(out)
    }
}

/// The engine folder's model file and manifest, for a backend to open.
pub struct Folder {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Folder {
    /// The engine file inside the folder.
    pub fn engine_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.engine_file)
    }
}

/// Specs of a manifest's tensors, as an [`Engine`] reports them.
pub fn manifest_specs(specs: &[TensorSpec]) -> Vec<IoSpec> {
    specs
        .iter()
        .map(|s| IoSpec {
            name: s.name.clone(),
            dtype: s.dtype.clone(),
            shape: s.shape.clone(),
        })
        .collect()
}

/// An engine folder opened as its backend's own type, for callers that drive the backend
/// directly (a step decoder keeping values between runs).
pub enum Backend {
    /// An ONNX Runtime session (`cpu` target) with the manifest's session settings.
    Ort(Session),
    /// An OpenVINO compiled model (`openvino` target).
    Openvino(crate::openvino::OvEngine),
}

/// Opens an engine folder of a host target: `cpu` (ONNX Runtime, with the session settings the
/// manifest records; `opts` gives threads when the manifest leaves them to the caller;
/// `variable_shapes`: no memory arena, for inputs whose shapes change from run to run) or
/// `openvino`. The manifest is checked against this machine first.
pub fn open_backend(
    dir: &Path,
    opts: &CpuOptions,
    variable_shapes: bool,
) -> Result<(Backend, Manifest), EngineError> {
    let manifest = Manifest::read(dir)?;
    let host = crate::manifest::Host::for_manifest(&manifest)?;
    manifest.check(dir, None, &host)?;
    let folder = Folder {
        dir: dir.to_path_buf(),
        manifest,
    };
    let backend = match folder.manifest.target.as_str() {
        "cpu" => {
            let mut o = crate::ort::session_options(&folder.manifest);
            if opts.intra_threads > 0 {
                o.intra_threads = opts.intra_threads;
            }
            let path = folder.engine_path();
            Backend::Ort(if variable_shapes {
                crate::ort::cpu_session_variable_shapes(&path, &o)?
            } else {
                crate::ort::cpu_session(&path, &o)?
            })
        }
        "openvino" => Backend::Openvino(crate::openvino::OvEngine::open(
            &folder,
            opts.intra_threads,
        )?),
        other => {
            return Err(EngineError::Manifest {
                path: dir.join(crate::manifest::MANIFEST_FILE),
                reason: format!("a '{other}' engine is not opened here (targets: cpu, openvino)"),
            })
        }
    };
    Ok((backend, folder.manifest))
}

/// Opens an engine folder of a host target as an [`Engine`] (see [`open_backend`]).
pub fn open_folder(dir: &Path, opts: &CpuOptions) -> Result<Box<dyn Engine>, EngineError> {
    Ok(match open_backend(dir, opts, false)? {
        (Backend::Ort(s), m) => Box::new(OrtEngine::new(
            &dir.join(&m.engine_file).display().to_string(),
            s,
            "CPUExecutionProvider",
            &m.precision,
        )),
        (Backend::Openvino(e), _) => Box::new(e),
    })
}
