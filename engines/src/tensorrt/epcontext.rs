//! EPContext models: an ONNX model whose only node is `com.microsoft::EPContext`, pointing at a
//! TensorRT engine file beside it (`embed_mode` 0, relative path), so ONNX Runtime's TensorRT
//! execution provider loads a prebuilt plan instead of building one. voxq writes them for
//! `trtexec` plans; ONNX Runtime writes its own for `--target tensorrt-ort`. Both are read
//! back and checked here.

use std::path::{Component, Path};

use onnx_protobuf::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};

use exporter::onnx::builders::{int_attr, str_attr};
use exporter::onnx::{attr, is_default_domain};

use crate::EngineError;

/// File name of the EPContext model inside a TensorRT engine folder.
pub const CTX_FILE: &str = "model_ctx.onnx";
/// The execution provider the EPContext node is meant for.
pub const SOURCE: &str = "TensorrtExecutionProvider";

/// What the EPContext node says about its engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpContext {
    /// Engine file, relative to the EPContext model, without `..`.
    pub engine_file: String,
    /// Compute capability without the dot (`90`), as the TensorRT EP compares it.
    pub hardware_architecture: String,
    /// TensorRT version the engine was built with.
    pub sdk_version: String,
    /// File name of the ONNX model the engine was built from.
    pub onnx_model_filename: String,
}

fn bad(path: &Path, reason: String) -> EngineError {
    EngineError::Manifest {
        path: path.to_path_buf(),
        reason,
    }
}

/// The engine path must stay inside the folder: relative, no `..` (the TensorRT EP refuses
/// anything else for security).
pub fn check_relative(path: &Path, file: &str) -> Result<(), EngineError> {
    let p = Path::new(file);
    if file.is_empty()
        || !p
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad(
            path,
            format!("engine path '{file}' must be relative to the model's folder, without '..'"),
        ));
    }
    Ok(())
}

/// The EPContext model for `source` (its graph inputs and outputs, types and dynamic axes
/// kept) pointing at `ctx.engine_file`.
pub fn wrapper_model(source: &ModelProto, ctx: &EpContext) -> Result<ModelProto, EngineError> {
    check_relative(Path::new(&ctx.engine_file), &ctx.engine_file)?;
    let inits: std::collections::HashSet<&str> = source
        .graph
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    let inputs: Vec<_> = source
        .graph
        .input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .cloned()
        .collect();
    let outputs = source.graph.output.clone();
    let node = NodeProto {
        name: "voxq_tensorrt_engine".into(),
        op_type: "EPContext".into(),
        domain: "com.microsoft".into(),
        input: inputs.iter().map(|i| i.name.clone()).collect(),
        output: outputs.iter().map(|o| o.name.clone()).collect(),
        attribute: vec![
            int_attr("main_context", 1),
            int_attr("embed_mode", 0),
            str_attr("ep_cache_context", &ctx.engine_file),
            str_attr("hardware_architecture", &ctx.hardware_architecture),
            str_attr("ep_sdk_version", &ctx.sdk_version),
            str_attr("onnx_model_filename", &ctx.onnx_model_filename),
            str_attr("source", SOURCE),
        ],
        ..Default::default()
    };
    let default_opset = source
        .opset_import
        .iter()
        .find(|o| is_default_domain(&o.domain))
        .map(|o| o.version)
        .unwrap_or(17);
    Ok(ModelProto {
        ir_version: source.ir_version.max(8),
        producer_name: "voxq".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: default_opset,
                ..Default::default()
            },
            OperatorSetIdProto {
                domain: "com.microsoft".into(),
                version: 1,
                ..Default::default()
            },
        ],
        graph: Some(GraphProto {
            name: "voxq_tensorrt_engine".into(),
            node: vec![node],
            input: inputs,
            output: outputs,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    })
}

/// Writes the EPContext model for `source` to `path` atomically.
pub fn write(path: &Path, source: &ModelProto, ctx: &EpContext) -> Result<(), EngineError> {
    let m = wrapper_model(source, ctx)?;
    let bytes = exporter::model::to_bytes(&m).map_err(|e| bad(path, e.to_string()))?;
    exporter::atomic::write_atomic(path, &bytes).map_err(|e| bad(path, e.to_string()))
}

/// Reads an EPContext model back: one `com.microsoft::EPContext` node, `embed_mode` 0, an
/// engine path inside the folder that exists.
pub fn read(path: &Path) -> Result<EpContext, EngineError> {
    let m = exporter::model::load(path).map_err(|e| bad(path, e.to_string()))?;
    let nodes = &m.graph.node;
    let [n] = nodes.as_slice() else {
        return Err(bad(
            path,
            format!(
                "an EPContext model has one node, this one has {}",
                nodes.len()
            ),
        ));
    };
    if n.op_type != "EPContext" || n.domain != "com.microsoft" {
        return Err(bad(
            path,
            format!(
                "node is {}::{}, not com.microsoft::EPContext",
                n.domain, n.op_type
            ),
        ));
    }
    let s = |k: &str| {
        attr(n, k)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
            .unwrap_or_default()
    };
    if attr(n, "embed_mode").map(|a| a.i) != Some(0) {
        return Err(bad(
            path,
            "embed_mode is not 0 (voxq keeps engines as files beside the model)".into(),
        ));
    }
    let ctx = EpContext {
        engine_file: s("ep_cache_context"),
        hardware_architecture: s("hardware_architecture"),
        sdk_version: s("ep_sdk_version"),
        onnx_model_filename: s("onnx_model_filename"),
    };
    check_relative(path, &ctx.engine_file)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.join(&ctx.engine_file).is_file() {
        return Err(bad(
            path,
            format!("engine file '{}' is missing beside it", ctx.engine_file),
        ));
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_paths_stay_inside_the_folder() {
        let p = Path::new("m.onnx");
        check_relative(p, "model.plan").unwrap();
        check_relative(p, "cache/TensorrtExecutionProvider_TRTKernel_1.engine").unwrap();
        for bad in ["", "/abs/model.plan", "../model.plan", "a/../../b"] {
            assert!(check_relative(p, bad).is_err(), "{bad}");
        }
    }
}
