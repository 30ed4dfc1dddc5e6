//! The OpenVINO C library: where `libopenvino_c.so` is found and loading it once per process.
//!
//! It is looked for in `OPENVINO_DYLIB_PATH` (the file, or the folder holding it), then in the
//! project's install folder (`.cache/openvino/`, filled by `tools/setup_openvino.sh`, which
//! `make setup-openvino` runs), then next to the `voxq` executable. The CPU plugin and the ONNX
//! front end are found by OpenVINO beside the library.

use std::path::PathBuf;
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
    crate::dylib::candidates("OPENVINO_DYLIB_PATH", "openvino", LIB_NAME, true)
}

/// Finds the OpenVINO C library or says where it looked and how to install it.
pub fn find_dylib() -> Result<PathBuf, EngineError> {
    crate::dylib::first_file(&dylib_candidates()).map_err(|looked| {
        EngineError::Openvino(format!(
            "OpenVINO library {LIB_NAME} not found (looked in {looked}): {INSTALL}"
        ))
    })
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
