//! Calibration runs over real audio, one file per model kind: [`speaker`] (speaker-embedding
//! models, one or two passes) and [`whisper`] (encoder + decoder observed while the float
//! model transcribes, and the int8 model folder), plus the calibration list they read.

pub mod speaker;
pub mod whisper;

use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

pub use speaker::{calibrate_speaker, CalibrationRunInfo};

/// Reads a calibration list: one audio path per line, relative to `root` (a path that is
/// absolute or climbs out of `root` is refused).
pub fn read_list(path: &Path, root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let text = crate::fsutil::read_text(path, "a calibration list")?;
    let mut items: Vec<(String, PathBuf)> = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let err = |reason| RuntimeError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        crate::fsutil::check_list_line(l).map_err(err)?;
        crate::fsutil::check_under_root(l).map_err(err)?;
        items.push((l.to_string(), root.join(l)));
    }
    if items.is_empty() {
        return Err(RuntimeError::Config {
            path: path.to_path_buf(),
            reason: "the calibration list is empty (only blank and comment lines)".into(),
        });
    }
    Ok(items)
}
