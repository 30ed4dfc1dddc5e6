//! File helpers: atomic writes (through `exporter::atomic`) and hashing.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Result, RuntimeError};

/// Writes `bytes` to `path` atomically: a failed write leaves no file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(exporter::atomic::write_atomic(path, bytes)?)
}

/// Longest line accepted in a list file (trial lists, calibration lists): a path longer than
/// PATH_MAX (4096 bytes) cannot be opened anyway.
pub const MAX_LINE_BYTES: usize = 4096;

/// Why a line of a list file cannot name a file, if it cannot: longer than
/// [`MAX_LINE_BYTES`], or holding a NUL byte.
pub fn check_list_line(line: &str) -> std::result::Result<(), String> {
    if line.len() > MAX_LINE_BYTES {
        return Err(format!(
            "line is {} bytes long, more than {MAX_LINE_BYTES}",
            line.len()
        ));
    }
    if line.contains('\0') {
        return Err("line holds a NUL byte".into());
    }
    Ok(())
}

/// Reads a text input of at most [`exporter::textfile::MAX_TEXT_BYTES`]; `what` names its kind
/// with its article ("a trial list").
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    exporter::textfile::read_text(path, what).map_err(|e| RuntimeError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| RuntimeError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| RuntimeError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(format!("{:x}", h.finalize()))
}
