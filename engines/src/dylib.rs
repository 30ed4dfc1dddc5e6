//! Where a runtime's shared library (ONNX Runtime, OpenVINO) is looked for: the file an
//! environment variable names (the only candidate when set: silently using another library
//! would change results without saying so), else the project's install folder under `.cache/`,
//! else next to the `voxq` executable.

use std::path::{Path, PathBuf};

/// Candidate locations of `lib`, in search order. `folder_ok`: the variable may also name the
/// folder holding the library.
pub(crate) fn candidates(
    var: &str,
    cache_folder: &str,
    lib: &str,
    folder_ok: bool,
) -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        return vec![if folder_ok && p.is_dir() {
            p.join(lib)
        } else {
            p
        }];
    }
    let mut out = vec![Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".cache")
        .join(cache_folder)
        .join(lib)];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            out.push(dir.join(lib));
        }
    }
    out
}

/// The first candidate that is a file (canonical where possible), or the places looked in.
pub(crate) fn first_file(cands: &[PathBuf]) -> Result<PathBuf, String> {
    match cands.iter().find(|c| c.is_file()) {
        Some(c) => Ok(c.canonicalize().unwrap_or_else(|_| c.clone())),
        None => Err(cands
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")),
    }
}
