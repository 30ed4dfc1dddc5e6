//! An OpenVINO engine: the folder's ONNX model compiled for the CPU with the manifest's
//! precision and threads (from the compiled-model cache when it matches), one infer request,
//! and named f32 tensors in and out.

use std::path::Path;

use openvino::{Core, DeviceType, ElementType, InferRequest, RwPropertyKey};

use super::library::load;
use super::tensor::{f32_values, OvTensor};
use crate::engine::{manifest_specs, Engine, F32Tensor, Folder, IoSpec, Served};
use crate::manifest::OpenvinoSettings;
use crate::EngineError;

/// An OpenVINO compiled model and its infer request.
pub struct OvEngine {
    label: String,
    request: InferRequest,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    served: Served,
}

/// OpenVINO's messages span lines (file and line of the C++ exception first): one line here.
pub(crate) fn ov_text(e: impl std::fmt::Display) -> String {
    exporter::onnx::one_line(&e.to_string())
}

fn ov_err(label: &str, what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Openvino(format!("{label}: OpenVINO {what}: {}", ov_text(e)))
}

/// A core configured for `settings` on the CPU: threads, one stream, latency hint, the
/// inference precision, and the compiled-model cache folder when one is given.
pub(crate) fn configured_core(
    label: &str,
    settings: &OpenvinoSettings,
    cache: Option<&Path>,
) -> Result<Core, EngineError> {
    load()?;
    let mut core = Core::new().map_err(|e| ov_err(label, "core", e))?;
    let threads = settings.threads.to_string();
    let mut props: Vec<(RwPropertyKey, &str)> = vec![
        (RwPropertyKey::HintPerformanceMode, "LATENCY"),
        (RwPropertyKey::NumStreams, "1"),
        (
            RwPropertyKey::HintInferencePrecision,
            settings.inference_precision.as_str(),
        ),
    ];
    if settings.threads > 0 {
        props.push((RwPropertyKey::InferenceNumThreads, threads.as_str()));
    }
    core.set_properties(&DeviceType::CPU, props)
        .map_err(|e| ov_err(label, "CPU settings", e))?;
    if let Some(c) = cache {
        let c = c.to_string_lossy();
        core.set_property(&DeviceType::CPU, &RwPropertyKey::CacheDir, &c)
            .map_err(|e| ov_err(label, "cache folder", e))?;
    }
    Ok(core)
}

impl OvEngine {
    /// Opens an `openvino` engine folder; `threads` > 0 overrides the manifest's threads.
    pub fn open(folder: &Folder, threads: usize) -> Result<OvEngine, EngineError> {
        let m = &folder.manifest;
        let Some(settings) = &m.openvino else {
            return Err(EngineError::Manifest {
                path: folder.dir.join(crate::manifest::MANIFEST_FILE),
                reason: "an openvino engine without its 'openvino' settings".into(),
            });
        };
        let mut settings = settings.clone();
        if threads > 0 {
            settings.threads = threads;
        }
        let path = folder.engine_path();
        let cache = folder.dir.join(&settings.cache_dir);
        let e = OvEngine::compile(&path, &settings, Some(&cache), &m.precision)?;
        Ok(OvEngine {
            inputs: manifest_specs(&m.inputs),
            outputs: manifest_specs(&m.outputs),
            ..e
        })
    }

    /// Compiles an ONNX model file for the CPU with `settings`; `precision` is what the model
    /// holds (`fp32`, `int8`), for [`Engine::served`].
    pub fn compile(
        model: &Path,
        settings: &OpenvinoSettings,
        cache: Option<&Path>,
        precision: &str,
    ) -> Result<OvEngine, EngineError> {
        let label = model.display().to_string();
        let mut core = configured_core(&label, settings, cache)?;
        let path = model.to_string_lossy();
        let ov_model = core
            .read_model_from_file(&path, "")
            .map_err(|e| ov_err(&label, "cannot read the model", e))?;
        OvEngine::from_model(&label, &mut core, &ov_model, settings, precision)
    }

    /// Compiles an ONNX model held in memory (a quantized candidate, say) after the exact
    /// rewrites an engine build applies ([`crate::build::deployable`]); `name` labels it.
    pub fn from_onnx_bytes(
        name: &str,
        bytes: &[u8],
        settings: &OpenvinoSettings,
        precision: &str,
    ) -> Result<OvEngine, EngineError> {
        let bad = |e: exporter::ExportError| EngineError::Open {
            path: name.into(),
            reason: e.to_string(),
        };
        let proto = exporter::model::load_bytes(name, bytes).map_err(bad)?;
        let rewritten = match crate::build::deployable(&proto) {
            Some((m, _)) => Some(exporter::model::to_bytes(&m).map_err(bad)?),
            None => None,
        };
        let bytes = rewritten.as_deref().unwrap_or(bytes);
        let mut core = configured_core(name, settings, None)?;
        let ov_model = core
            .read_model_from_buffer(bytes, None)
            .map_err(|e| ov_err(name, "cannot read the model", e))?;
        OvEngine::from_model(name, &mut core, &ov_model, settings, precision)
    }

    fn from_model(
        label: &str,
        core: &mut Core,
        ov_model: &openvino::Model,
        settings: &OpenvinoSettings,
        precision: &str,
    ) -> Result<OvEngine, EngineError> {
        let specs =
            |n: usize, get: &dyn Fn(usize) -> Result<openvino::Node, openvino::InferenceError>| {
                (0..n)
                    .map(|i| {
                        let node = get(i).map_err(|e| ov_err(label, "model I/O", e))?;
                        let name = node.get_name().map_err(|e| ov_err(label, "model I/O", e))?;
                        let dtype = node
                            .get_element_type()
                            .map(|t| elem_name(t).to_string())
                            .map_err(|e| ov_err(label, "model I/O", e))?;
                        let shape = node
                            .get_partial_shape()
                            .map(|s| {
                                s.get_dimensions()
                                    .iter()
                                    .map(|d| if d.is_dynamic() { -1 } else { d.get_min() })
                                    .collect()
                            })
                            .map_err(|e| ov_err(label, "model I/O", e))?;
                        Ok(IoSpec { name, dtype, shape })
                    })
                    .collect::<Result<Vec<_>, EngineError>>()
            };
        let n_in = ov_model
            .get_inputs_len()
            .map_err(|e| ov_err(label, "model I/O", e))?;
        let n_out = ov_model
            .get_outputs_len()
            .map_err(|e| ov_err(label, "model I/O", e))?;
        let inputs = specs(n_in, &|i| ov_model.get_input_by_index(i))?;
        let outputs = specs(n_out, &|i| ov_model.get_output_by_index(i))?;
        let mut compiled = core
            .compile_model(ov_model, DeviceType::CPU)
            .map_err(|e| ov_err(label, "cannot compile the model for the CPU", e))?;
        let request = compiled
            .create_infer_request()
            .map_err(|e| ov_err(label, "infer request", e))?;
        let computes = match settings.inference_precision.as_str() {
            "bf16" => "bf16",
            _ => "fp32",
        };
        Ok(OvEngine {
            label: label.to_string(),
            request,
            inputs,
            outputs,
            served: Served {
                backend: "openvino".into(),
                device: "CPU".into(),
                precision: if precision == "int8" {
                    format!("int8 (float parts {computes})")
                } else {
                    computes.to_string()
                },
            },
        })
    }
}

/// The reason of a tensor error, for an error that names the model and input itself.
fn tensor_reason(e: EngineError) -> String {
    match e {
        EngineError::Tensor { reason, .. } => reason,
        e => e.to_string(),
    }
}

/// Step-decoding use: inputs bound by reference to caller-owned tensors, outputs written into
/// caller-owned tensors bound before the run, read (the tail of a large one) or copied out.
impl OvEngine {
    /// Binds input `name` to `t` (no copy: the request shares the tensor's buffer).
    pub fn bind(&mut self, name: &str, t: &OvTensor) -> Result<(), EngineError> {
        self.request
            .set_tensor(name, &t.0)
            .map_err(|e| EngineError::Input {
                model: self.label.clone(),
                input: name.to_string(),
                reason: ov_text(e),
            })
    }

    /// Binds each output of `names` to a new zero tensor of `dims`: the next run writes those
    /// outputs straight into them when their shape is `dims`. Call it before every run whose
    /// outputs are kept (a bound tensor stays bound until rebound), then
    /// [`OvEngine::keep_outputs`] after the run.
    pub fn bind_new_outputs<S: AsRef<str>>(
        &mut self,
        names: &[S],
        dims: &[i64],
    ) -> Result<Vec<OvTensor>, EngineError> {
        names
            .iter()
            .map(|n| {
                let n = n.as_ref();
                let t = OvTensor::zeros::<f32>(n, dims)?;
                self.request
                    .set_tensor(n, &t.0)
                    .map_err(|e| self.out_err(n, ov_text(e)))?;
                Ok(t)
            })
            .collect()
    }

    /// The outputs `names` of the last run as caller-owned tensors: each tensor of `bound`
    /// (from [`OvEngine::bind_new_outputs`]) the run wrote into, else a copy of the buffer
    /// OpenVINO used instead.
    pub fn keep_outputs<S: AsRef<str>>(
        &self,
        names: &[S],
        bound: Vec<OvTensor>,
    ) -> Result<Vec<OvTensor>, EngineError> {
        names
            .iter()
            .zip(bound)
            .map(|(n, t)| {
                let n = n.as_ref();
                let got = self
                    .request
                    .get_tensor(n)
                    .map_err(|e| self.out_err(n, ov_text(e)))?;
                let ours = OvTensor::data_ptr(&t.0);
                let same = !ours.is_null()
                    && OvTensor::data_ptr(&got) == ours
                    && got.get_shape().ok().map(|s| s.get_dimensions().to_vec()) == t.dims().ok();
                match same {
                    true => Ok(t),
                    false => {
                        OvTensor::copy_of(n, &got).map_err(|e| self.out_err(n, tensor_reason(e)))
                    }
                }
            })
            .collect()
    }

    /// Runs the model on the bound inputs.
    pub fn infer(&mut self) -> Result<(), EngineError> {
        self.request.infer().map_err(|e| EngineError::Run {
            model: self.label.clone(),
            reason: format!("OpenVINO: {}", ov_text(e)),
        })
    }

    fn out_err(&self, name: &str, reason: String) -> EngineError {
        EngineError::Output {
            model: self.label.clone(),
            output: name.to_string(),
            reason,
        }
    }

    /// The dims of f32 output `name` of the last run and its last `count` values (all of them
    /// when it holds fewer): the last position's logits without copying a prompt's worth.
    pub fn output_tail(
        &self,
        name: &str,
        count: usize,
    ) -> Result<(Vec<i64>, Vec<f32>), EngineError> {
        let t = self
            .request
            .get_tensor(name)
            .map_err(|e| self.out_err(name, ov_text(e)))?;
        f32_values(name, &t, count).map_err(|e| self.out_err(name, tensor_reason(e)))
    }

    /// A caller-owned copy of output `name` of the last run (the request reuses its own
    /// output buffers at the next run).
    pub fn take_output(&self, name: &str) -> Result<OvTensor, EngineError> {
        let t = self
            .request
            .get_tensor(name)
            .map_err(|e| self.out_err(name, ov_text(e)))?;
        OvTensor::copy_of(name, &t).map_err(|e| self.out_err(name, tensor_reason(e)))
    }
}

pub(super) fn elem_name(t: ElementType) -> &'static str {
    match t {
        ElementType::F32 => "float32",
        ElementType::F16 => "float16",
        ElementType::Bf16 => "bfloat16",
        ElementType::F64 => "float64",
        ElementType::I64 => "int64",
        ElementType::I32 => "int32",
        ElementType::I8 => "int8",
        ElementType::U8 => "uint8",
        ElementType::Boolean => "bool",
        _ => "other",
    }
}

impl Engine for OvEngine {
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
        for t in inputs {
            let tensor =
                OvTensor::new(&t.name, &t.dims, &t.data).map_err(|e| EngineError::Input {
                    model: self.label.clone(),
                    input: t.name.clone(),
                    reason: tensor_reason(e),
                })?;
            self.bind(&t.name, &tensor)?;
        }
        self.infer()?;
        outputs
            .iter()
            .map(|name| {
                let (dims, data) = self.output_tail(name, usize::MAX)?;
                Ok(F32Tensor {
                    name: name.to_string(),
                    dims,
                    data,
                })
            })
            .collect()
    }
}
