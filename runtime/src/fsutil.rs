//! File helpers: atomic writes (through `exporter::atomic`) and hashing.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Result, RuntimeError};

/// Writes `bytes` to `path` atomically: a failed write leaves no file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(exporter::atomic::write_atomic(path, bytes)?)
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
