//! ONNX Runtime: find the shared library, initialise the environment once, open sessions on
//! the CPU or, by `--device`, on TensorRT / CUDA execution providers with the CPU fallback.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`). It is looked for in
//! `ORT_DYLIB_PATH`, then in the project's install folder (`.cache/onnxruntime/`, filled by
//! `tools/setup_ort.sh`), then next to the `voxq` executable.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::EngineError;

/// The ONNX Runtime version the project installs and is tested against.
pub const ORT_VERSION: &str = "1.31.1";
const LIB_NAME: &str = "libonnxruntime.so";

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Candidate locations of `libonnxruntime.so`, in search order.
pub fn dylib_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        // An explicit setting is the only candidate: silently using another library would
        // change results without saying so.
        out.push(PathBuf::from(p));
        return out;
    }
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    out.push(project.join(".cache/onnxruntime").join(LIB_NAME));
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            out.push(dir.join(LIB_NAME));
        }
    }
    out
}

/// Finds the ONNX Runtime shared library or says where it looked.
pub fn find_dylib() -> Result<PathBuf, EngineError> {
    let cands = dylib_candidates();
    for c in &cands {
        if c.is_file() {
            return Ok(c.canonicalize().unwrap_or_else(|_| c.clone()));
        }
    }
    Err(EngineError::OrtMissing {
        looked: cands
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Loads ONNX Runtime (once per process) and returns the shared environment.
pub fn environment() -> Result<&'static ort::environment::Environment, EngineError> {
    // Find the library before touching the OnceLock so a missing library is reported with the
    // paths that were searched, every time it is asked for.
    let res = ENV.get_or_init(|| {
        let path = find_dylib().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&path)
            .map_err(|e| format!("{}: cannot load ONNX Runtime library: {e}", path.display()))?;
        // ONNX Runtime's own log lines would land on standard error beside voxq's one-line
        // error; what it logs as an error also comes back to us as the failed call's status.
        // So its messages go to `log` (RUST_LOG=info shows warnings and errors).
        let logger: ort::logging::LoggerFunction = std::sync::Arc::new(
            |level: ort::logging::LogLevel,
             category: &str,
             _id: &str,
             location: &str,
             message: &str| {
                use ort::logging::LogLevel;
                let lvl = match level {
                    LogLevel::Fatal => log::Level::Error,
                    LogLevel::Error | LogLevel::Warning => log::Level::Info,
                    LogLevel::Info => log::Level::Debug,
                    LogLevel::Verbose => log::Level::Trace,
                };
                log::log!(target: "onnxruntime", lvl, "[{category}] {location}: {message}");
            },
        );
        let env = builder
            .with_name("voxq")
            .with_logger(logger)
            .build()
            .map_err(|e| format!("ONNX Runtime environment: {e}"))?;
        env.set_log_level(ort::logging::LogLevel::Warning);
        Ok(env)
    });
    res.as_ref().map_err(|e| EngineError::OrtInit(e.clone()))
}

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

/// Which execution provider serves a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// TensorRT, else CUDA, else CPU: the first this ONNX Runtime build has.
    Auto,
    #[default]
    Cpu,
    Cuda,
    Tensorrt,
}

impl std::str::FromStr for Device {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Device, EngineError> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "tensorrt" => Ok(Device::Tensorrt),
            other => Err(EngineError::Device(format!(
                "unknown device '{other}' (auto, cpu, cuda, tensorrt)"
            ))),
        }
    }
}

/// Execution providers this ONNX Runtime build offers, in voxq's preference order.
pub fn available_devices() -> Result<Vec<Device>, EngineError> {
    use ort::ep::ExecutionProvider;
    environment()?;
    let mut v = Vec::new();
    if ort::ep::TensorRT::is_available().unwrap_or(false) {
        v.push(Device::Tensorrt);
    }
    if ort::ep::CUDA::is_available().unwrap_or(false) {
        v.push(Device::Cuda);
    }
    v.push(Device::Cpu);
    Ok(v)
}

/// The device a session asked for `device` gets on this ONNX Runtime build (auto: the first
/// available), or the error an explicit missing device gives.
pub fn resolve_device(device: Device) -> Result<Device, EngineError> {
    let have = available_devices()?;
    match device {
        Device::Auto => Ok(have[0]),
        d if have.contains(&d) => Ok(d),
        d => Err(EngineError::Device(format!(
            "--device {} asked for the {} but this ONNX Runtime {} build has only {}; use --device cpu or auto, or an onnxruntime-gpu build with it",
            match d {
                Device::Cuda => "cuda",
                _ => "tensorrt",
            },
            ep_name(d),
            crate::ort_env::ORT_VERSION,
            have.iter().map(|d| ep_name(*d)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// ONNX Runtime's name of the execution provider of a device.
pub fn ep_name(d: Device) -> &'static str {
    match d {
        Device::Tensorrt => "TensorrtExecutionProvider",
        Device::Cuda => "CUDAExecutionProvider",
        Device::Cpu | Device::Auto => "CPUExecutionProvider",
    }
}

/// Registers the execution provider for `device` on a session builder; returns the device
/// chosen. An explicit device this build lacks is an error, never a silent fallback.
fn with_device(
    b: ort::session::builder::SessionBuilder,
    device: Device,
    name: &str,
) -> Result<(ort::session::builder::SessionBuilder, Device), EngineError> {
    let chosen = resolve_device(device).map_err(|e| match e {
        EngineError::Device(m) => EngineError::Device(format!("{name}: {m}")),
        e => e,
    })?;
    let b = match chosen {
        Device::Tensorrt => b.with_execution_providers([
            ort::ep::TensorRT::default().build().error_on_failure(),
            ort::ep::CPU::default().build(),
        ]),
        Device::Cuda => b.with_execution_providers([
            ort::ep::CUDA::default().build().error_on_failure(),
            ort::ep::CPU::default().build(),
        ]),
        _ => Ok(b),
    }
    .map_err(|e| {
        EngineError::Device(format!(
            "{name}: {}: {}",
            ep_name(chosen),
            first_line(&e.to_string())
        ))
    })?;
    log::info!("{name}: served by {}", ep_name(chosen));
    Ok((b, chosen))
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

/// Opens a model file in an ONNX Runtime CPU session.
pub fn cpu_session(model: &Path, opts: &CpuOptions) -> Result<Session, EngineError> {
    let env = environment()?;
    let open_err = |reason: String| EngineError::Open {
        path: model.to_path_buf(),
        reason,
    };
    if !model.is_file() {
        return Err(open_err("file not found".into()));
    }
    let mut b = Session::builder(env)
        .map_err(|e| open_err(e.to_string()))?
        .with_optimization_level(level(opts.opt_level))
        .map_err(|e| open_err(e.to_string()))?;
    if opts.intra_threads > 0 {
        b = b
            .with_intra_threads(opts.intra_threads)
            .map_err(|e| open_err(e.to_string()))?;
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
    let env = environment()?;
    let open_err = |reason: String| EngineError::Open {
        path: PathBuf::from(name),
        reason,
    };
    let mut b = Session::builder(env)
        .map_err(|e| open_err(e.to_string()))?
        .with_optimization_level(level(opts.opt_level))
        .map_err(|e| open_err(e.to_string()))?;
    if opts.intra_threads > 0 {
        b = b
            .with_intra_threads(opts.intra_threads)
            .map_err(|e| open_err(e.to_string()))?;
    }
    let (mut b, _) = with_device(b, opts.device, name)?;
    b.commit_from_memory(bytes)
        .map_err(|e| open_err(first_line(&e.to_string())))
}

/// ONNX Runtime messages can span lines; errors in voxq are one line.
pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}
