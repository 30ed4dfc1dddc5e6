//! One part of a step-decoding model (Whisper's encoder or decoder, an LLM's decoder) on the
//! backend its folder names: an ONNX model file runs in ONNX Runtime; an engine folder (a
//! `manifest.json` beside the model, `voxq build MODEL_DIR --target openvino`) runs on its
//! target, ONNX Runtime (`cpu`) or OpenVINO (`openvino`). A part is driven directly (values
//! kept between runs), not through the generic [`engines::engine::Engine`] copies.

use std::path::Path;
use std::sync::Mutex;

use engines::engine::{open_backend, Backend};
use engines::openvino::OvEngine;
use engines::ort::{cpu_session, CpuOptions};
use ort::session::Session;

use crate::error::Result;
use crate::sync::lock;

/// A model part opened on its backend.
pub(crate) enum Part {
    Ort(Mutex<Session>),
    Openvino(Mutex<OvEngine>),
}

/// How to open a part's ONNX file in ONNX Runtime.
#[derive(Clone, Copy)]
pub(crate) enum Shapes {
    /// Fixed or slowly varying shapes: ONNX Runtime's memory arena.
    Steady,
    /// Shapes that vary from run to run (an LLM fed prompts of any length): no arena.
    Variable,
}

impl Part {
    /// Opens `path`: an engine folder (a folder with `manifest.json`) on its target, else the
    /// ONNX file in ONNX Runtime, or `bytes` (a variant of that file under study) when given.
    pub(crate) fn open(
        path: &Path,
        opts: &CpuOptions,
        shapes: Shapes,
        bytes: Option<&[u8]>,
    ) -> Result<Part> {
        let variable = matches!(shapes, Shapes::Variable);
        if let Some(b) = bytes {
            let name = path.display().to_string();
            let s = if variable {
                engines::ort::cpu_session_from_bytes_variable_shapes(&name, b, opts)?
            } else {
                engines::ort::cpu_session_from_bytes(&name, b, opts)?
            };
            return Ok(Part::Ort(Mutex::new(s)));
        }
        if is_engine_folder(path) {
            return Ok(match open_backend(path, opts, variable)?.0 {
                Backend::Ort(s) => Part::Ort(Mutex::new(s)),
                Backend::Openvino(e) => Part::Openvino(Mutex::new(e)),
            });
        }
        let s = if variable {
            engines::ort::cpu_session_variable_shapes(path, opts)?
        } else {
            cpu_session(path, opts)?
        };
        Ok(Part::Ort(Mutex::new(s)))
    }

    /// The part's input names.
    pub(crate) fn input_names(&self) -> Vec<String> {
        match self {
            Part::Ort(s) => lock(s)
                .inputs()
                .iter()
                .map(|i| i.name().to_string())
                .collect(),
            Part::Openvino(e) => engines::engine::Engine::inputs(&*lock(e))
                .iter()
                .map(|i| i.name.clone())
                .collect(),
        }
    }

    /// Whether input `name` has a fixed (positive) size on `axis`.
    pub(crate) fn fixed_dim(&self, name: &str, axis: usize) -> bool {
        let dim = match self {
            Part::Ort(s) => lock(s)
                .inputs()
                .iter()
                .find(|i| i.name() == name)
                .and_then(|i| i.dtype().tensor_shape().and_then(|d| d.get(axis).copied())),
            Part::Openvino(e) => engines::engine::Engine::inputs(&*lock(e))
                .iter()
                .find(|i| i.name == name)
                .and_then(|i| i.shape.get(axis).copied()),
        };
        dim.is_some_and(|d| d > 0)
    }

    /// Which backend serves it: `onnxruntime` or `openvino`.
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Part::Ort(_) => "onnxruntime",
            Part::Openvino(_) => "openvino",
        }
    }
}

/// Whether `path` is an engine folder (a folder with a manifest).
pub(crate) fn is_engine_folder(path: &Path) -> bool {
    path.is_dir() && path.join(engines::manifest::MANIFEST_FILE).is_file()
}
