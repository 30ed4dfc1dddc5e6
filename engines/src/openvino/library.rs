//! The OpenVINO C library: where `libopenvino_c.so` is found and loading it once per process.
//!
//! It is looked for in `OPENVINO_DYLIB_PATH` (the file, or the folder holding it), then in the
//! project's install folder (`.cache/openvino/`, filled by `tools/setup_openvino.sh`, which
//! `make setup-openvino` runs), then next to the `voxq` executable. The CPU plugin and the ONNX
//! front end are found by OpenVINO beside the library.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::EngineError;

/// The OpenVINO release the project installs and is tested against.
pub const OPENVINO_VERSION: &str = "2026.4.1";
const LIB_NAME: &str = "libopenvino_c.so";
/// What installs the library, named in the error when it is missing.
const INSTALL: &str = "run `make setup-openvino` (tools/setup_openvino.sh) to install it";

static LOADED: OnceLock<Result<String, String>> = OnceLock::new();

/// Candidate locations of `libopenvino_c.so`, in search order.
pub fn dylib_candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("OPENVINO_DYLIB_PATH") {
        // An explicit setting is the only candidate (as for ONNX Runtime).
        let p = PathBuf::from(p);
        return vec![if p.is_dir() { p.join(LIB_NAME) } else { p }];
    }
    let mut out = vec![Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".cache/openvino")
        .join(LIB_NAME)];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            out.push(dir.join(LIB_NAME));
        }
    }
    out
}

/// Finds the OpenVINO C library or says where it looked and how to install it.
pub fn find_dylib() -> Result<PathBuf, EngineError> {
    let cands = dylib_candidates();
    if let Some(c) = cands.iter().find(|c| c.is_file()) {
        return Ok(c.canonicalize().unwrap_or_else(|_| c.clone()));
    }
    Err(EngineError::Openvino(format!(
        "OpenVINO library {LIB_NAME} not found (looked in {}): {INSTALL}",
        cands
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Loads the OpenVINO library (once per process) and returns its version (`2026.4.1-…`).
pub fn load() -> Result<&'static str, EngineError> {
    let res = LOADED.get_or_init(|| {
        let path = find_dylib().map_err(|e| e.to_string())?;
        openvino_sys::library::load_from(&path)
            .map_err(|e| format!("{}: cannot load OpenVINO: {e}", path.display()))?;
        Ok(openvino::version().build_number)
    });
    res.as_deref()
        .map_err(|e| EngineError::Openvino(e.to_string()))
}

/// The version of the OpenVINO library in use, as it reports it (`2026.4.1-22982-…`).
pub fn openvino_version() -> Result<String, EngineError> {
    load().map(str::to_string)
}
