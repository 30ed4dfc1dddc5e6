//! File helpers: atomic writes (temp file in the same folder, fsync, rename) and hashing.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Result, RuntimeError};

/// Writes `bytes` to `path` atomically: a failed write leaves no file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| RuntimeError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
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
