//! The ONNX Runtime library: where `libonnxruntime.so` is found, the process-wide environment
//! (loaded once, its log routed to `log`) and the version the library reports.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`). It is looked for in
//! `ORT_DYLIB_PATH`, then in the project's install folder (`.cache/onnxruntime/`, filled by
//! `tools/setup_ort.sh`), then next to the `voxq` executable.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::EngineError;

/// The ONNX Runtime version the project installs and is tested against.
pub const ORT_VERSION: &str = "1.31.1";
const LIB_NAME: &str = "libonnxruntime.so";

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Candidate locations of `libonnxruntime.so`, in search order.
pub fn dylib_candidates() -> Vec<PathBuf> {
    crate::dylib::candidates("ORT_DYLIB_PATH", "onnxruntime", LIB_NAME, false)
}

/// Finds the ONNX Runtime shared library or says where it looked.
pub fn find_dylib() -> Result<PathBuf, EngineError> {
    crate::dylib::first_file(&dylib_candidates())
        .map_err(|looked| EngineError::OrtMissing { looked })
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

/// The version of the ONNX Runtime library in use (`1.31.1`), as the library reports it
/// (`OrtGetApiBase()->GetVersionString()`).
pub fn ort_version() -> Result<String, EngineError> {
    environment()?;
    let path = find_dylib()?;
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

/// The first line of an ONNX Runtime message, trimmed: ONNX Runtime messages can span lines
/// (the rest is context such as stack frames); errors in voxq are one line. Unlike
/// `exporter::onnx::one_line`, which joins every line, this keeps only the first.
pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}
