//! ONNX Runtime sessions: CPU options, and opening a model (from a file or from memory) on the
//! device the options ask for, or with a given TensorRT execution provider.

use std::path::{Path, PathBuf};

use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use super::env::{environment, first_line};
use super::providers::{with_device, Device};
use crate::EngineError;

/// How a CPU session is configured.
#[derive(Debug, Clone)]
pub struct CpuOptions {
    /// Intra-op threads; 0 lets ONNX Runtime choose (one per physical core).
    pub intra_threads: usize,
    /// Graph optimisation level 0–3 (disable, basic, extended, all).
    pub opt_level: u8,
    /// Where ONNX Runtime should save the optimised model, if anywhere.
    pub optimized_model_path: Option<PathBuf>,
    /// Execution provider choice.
    pub device: Device,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            intra_threads: 0,
            opt_level: 3,
            optimized_model_path: None,
            device: Device::Cpu,
        }
    }
}

fn level(l: u8) -> GraphOptimizationLevel {
    match l {
        0 => GraphOptimizationLevel::Disable,
        1 => GraphOptimizationLevel::Level1,
        2 => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::All,
    }
}

/// A session builder with the options' optimisation level and intra-op threads.
fn cpu_builder(
    env: &ort::environment::Environment,
    opts: &CpuOptions,
    open_err: &dyn Fn(String) -> EngineError,
) -> Result<SessionBuilder, EngineError> {
    let mut b = Session::builder(env)
        .map_err(|e| open_err(e.to_string()))?
        .with_optimization_level(level(opts.opt_level))
        .map_err(|e| open_err(e.to_string()))?;
    if opts.intra_threads > 0 {
        b = b
            .with_intra_threads(opts.intra_threads)
            .map_err(|e| open_err(e.to_string()))?;
    }
    Ok(b)
}

/// Opens a model file in an ONNX Runtime CPU session.
pub fn cpu_session(model: &Path, opts: &CpuOptions) -> Result<Session, EngineError> {
    open_file(model, opts, true)
}

/// Opens a model file for runs whose shapes vary from call to call (an LLM decoder fed prompts
/// of any length): no CPU memory arena and no memory pattern, so the memory a long input takes
/// goes back to the system when its run ends instead of staying in ONNX Runtime's arena.
pub fn cpu_session_variable_shapes(
    model: &Path,
    opts: &CpuOptions,
) -> Result<Session, EngineError> {
    open_file(model, opts, false)
}

fn open_file(model: &Path, opts: &CpuOptions, arena: bool) -> Result<Session, EngineError> {
    let env = environment()?;
    let open_err = |reason: String| EngineError::Open {
        path: model.to_path_buf(),
        reason,
    };
    if !model.is_file() {
        return Err(open_err("file not found".into()));
    }
    let mut b = cpu_builder(env, opts, &open_err)?;
    if !arena {
        b = without_arena(b, &open_err)?;
    }
    if let Some(p) = &opts.optimized_model_path {
        b = b
            .with_optimized_model_path(p)
            .map_err(|e| open_err(e.to_string()))?;
    }
    let (mut b, _) = with_device(b, opts.device, &model.display().to_string())?;
    b.commit_from_file(model)
        .map_err(|e| open_err(first_line(&e.to_string())))
}

/// No CPU memory arena and no memory pattern: what a run allocates goes back to the system when
/// it ends.
fn without_arena(
    b: SessionBuilder,
    open_err: &dyn Fn(String) -> EngineError,
) -> Result<SessionBuilder, EngineError> {
    b.with_memory_pattern(false)
        .map_err(|e| open_err(e.to_string()))?
        .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
        .map_err(|e| open_err(e.to_string()))
}

/// Opens `model` with the given TensorRT execution provider (no fallback: a failure of the
/// provider is the error) for builds that need provider options.
pub fn trt_session(model: &Path, ep: ort::ep::TensorRT) -> Result<Session, EngineError> {
    use ort::ep::ExecutionProvider;
    let env = environment()?;
    let open_err = |reason: String| EngineError::Open {
        path: model.to_path_buf(),
        reason,
    };
    if !ort::ep::TensorRT::is_available().unwrap_or(false) {
        return Err(EngineError::Device(format!(
            "{}: this ONNX Runtime build has no TensorrtExecutionProvider",
            model.display()
        )));
    }
    let mut b = Session::builder(env)
        .map_err(|e| open_err(e.to_string()))?
        .with_execution_providers([ep.build().error_on_failure()])
        .map_err(|e| open_err(first_line(&e.to_string())))?;
    let s = b
        .commit_from_file(model)
        .map_err(|e| open_err(first_line(&e.to_string())))?;
    log::info!("{}: served by TensorrtExecutionProvider", model.display());
    Ok(s)
}

/// Opens a model held in memory in an ONNX Runtime CPU session; `name` is used in errors.
pub fn cpu_session_from_bytes(
    name: &str,
    bytes: &[u8],
    opts: &CpuOptions,
) -> Result<Session, EngineError> {
    open_bytes(name, bytes, opts, true)
}

/// Opens a model held in memory for runs that return many large outputs of varying shapes
/// (calibration, with every activation exposed): without ONNX Runtime's arena, so each run's
/// outputs go back to the system once they have been read instead of growing the arena to the
/// largest utterance's total.
pub fn cpu_session_from_bytes_variable_shapes(
    name: &str,
    bytes: &[u8],
    opts: &CpuOptions,
) -> Result<Session, EngineError> {
    open_bytes(name, bytes, opts, false)
}

fn open_bytes(
    name: &str,
    bytes: &[u8],
    opts: &CpuOptions,
    arena: bool,
) -> Result<Session, EngineError> {
    let env = environment()?;
    let open_err = |reason: String| EngineError::Open {
        path: PathBuf::from(name),
        reason,
    };
    let mut b = cpu_builder(env, opts, &open_err)?;
    if !arena {
        b = without_arena(b, &open_err)?;
    }
    let (mut b, _) = with_device(b, opts.device, name)?;
    b.commit_from_memory(bytes)
        .map_err(|e| open_err(first_line(&e.to_string())))
}
