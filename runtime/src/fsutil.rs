//! File helpers: atomic writes (through `exporter::atomic`), list-file lines and paths, bounded
//! text reads and hashing.

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

/// Why `name`, a path in a list file (trial list, calibration list), would be read from
/// outside the audio root it is relative to, if it would: an absolute path, or one whose `..`
/// components climb above the root (checked on the path's components, before anything is
/// opened; `a/../b` stays inside).
pub fn check_under_root(name: &str) -> std::result::Result<(), String> {
    use std::path::Component;
    let mut depth = 0usize;
    for c in Path::new(name).components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                return Err(format!(
                    "path '{name}' is absolute; list paths are relative to --audio-root"
                ))
            }
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("path '{name}' leaves --audio-root (through '..')"))?;
            }
            Component::Normal(_) => depth += 1,
        }
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

#[cfg(test)]
mod tests {
    use super::check_under_root;

    #[test]
    fn list_paths_stay_under_the_root() {
        for ok in [
            "a.wav",
            "x/y.wav",
            "./a.wav",
            "x/../a.wav",
            "x/y/../../a.wav",
            "a..b.wav",
        ] {
            assert!(check_under_root(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../a.wav",
            "../../etc/passwd",
            "x/../../a.wav",
            "/etc/passwd",
            "./../a",
        ] {
            assert!(check_under_root(bad).is_err(), "{bad}");
        }
    }
}
