//! Bounded reads of the text inputs (calibration tables, group specs, trial and calibration
//! lists, model configs, engine manifests, enrollment stores): the size is checked before
//! anything is read, so a huge or endless file (a sparse 2 GB file, `/dev/zero`) is refused
//! at once instead of being pulled into memory.

use std::io::Read;
use std::path::Path;

/// The largest text input read (256 MiB: a trial list of millions of lines fits easily).
pub const MAX_TEXT_BYTES: u64 = 256 << 20;

/// Reads `path` as UTF-8 text of at most [`MAX_TEXT_BYTES`]; `what` names the kind of file,
/// with its article ("a trial list"). The errors do not name the path: callers add it.
pub fn read_text(path: &Path, what: &str) -> std::io::Result<String> {
    read_text_limited(path, what, MAX_TEXT_BYTES)
}

/// [`read_text`] with another limit.
pub fn read_text_limited(path: &Path, what: &str, limit: u64) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a folder, not a file".to_string(),
        ));
    }
    let too_big = |n: String| {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("{n} bytes, more than the {limit}-byte limit for {what}"),
        )
    };
    if meta.len() > limit {
        return Err(too_big(meta.len().to_string()));
    }
    // The length a special file reports (0 for a pipe or /dev/zero) is no bound: read at most
    // one byte past the limit.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(format!("more than {limit}")));
    }
    String::from_utf8(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not a text file (invalid UTF-8 at byte {}), so not {what}",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_big_and_endless_files_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.txt");
        std::fs::File::create(&p)
            .unwrap()
            .set_len(MAX_TEXT_BYTES + 1)
            .unwrap();
        let e = read_text(&p, "a trial list").unwrap_err().to_string();
        assert_eq!(
            e,
            "268435457 bytes, more than the 268435456-byte limit for a trial list"
        );
        let e = read_text_limited(Path::new("/dev/zero"), "a list", 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 1000"), "{e}");
        let e = read_text(dir.path(), "a list").unwrap_err().to_string();
        assert_eq!(e, "is a folder, not a file");
        std::fs::write(&p, b"ok\xff").unwrap();
        let e = read_text(&p, "a list").unwrap_err().to_string();
        assert_eq!(
            e,
            "not a text file (invalid UTF-8 at byte 2), so not a list"
        );
        std::fs::write(&p, "fine\n").unwrap();
        assert_eq!(read_text(&p, "a list").unwrap(), "fine\n");
    }
}
