//! Guessing what a file that is not an ONNX model really is, from its first bytes, so a
//! load error can say "the file looks like a WAV audio file".

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub(super) fn file_head(path: &Path) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = File::open(path) {
        let _ = f.take(512).read_to_end(&mut buf);
    }
    buf
}

pub(super) fn head(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(512)]
}

/// Appends a guess at what the file really is, when its first bytes say so.
pub(super) fn explain_failure(reason: &str, head: &[u8]) -> String {
    match sniff(head) {
        Some(kind) => format!("{reason}; the file looks like {kind}"),
        None => reason.to_string(),
    }
}

fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.is_empty() {
        return None;
    }
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"RIFF") && head.len() >= 12 && &head[8..12] == b"WAVE" {
        return Some("a WAV audio file");
    }
    if starts(b"fLaC") || starts(b"OggS") || starts(b"ID3") {
        return Some("an audio file");
    }
    if starts(b"PK\x03\x04") {
        return Some("a zip archive (a PyTorch checkpoint?)");
    }
    if starts(b"GGUF") {
        return Some("a GGUF model");
    }
    if starts(b"\x89HDF") {
        return Some("an HDF5 file");
    }
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Some("a Python pickle");
    }
    if let Ok(text) = std::str::from_utf8(trim_partial_utf8(head)) {
        if text
            .chars()
            .all(|c| !c.is_control() || c.is_ascii_whitespace())
        {
            return Some("a text file");
        }
    }
    None
}

/// Drops a UTF-8 sequence cut at the end of a 512-byte head.
fn trim_partial_utf8(b: &[u8]) -> &[u8] {
    match std::str::from_utf8(b) {
        Ok(_) => b,
        Err(e) if e.error_len().is_none() => &b[..e.valid_up_to()],
        Err(_) => b,
    }
}
