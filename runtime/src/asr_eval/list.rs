//! Evaluation lists: `audio<TAB>reference text` per line for ASR, `audio<TAB>question<TAB>
//! answer` for spoken-content QA; audio paths relative to an audio root; blank lines skipped.

use std::path::Path;

use crate::error::{Result, RuntimeError};

/// One utterance of an ASR list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsrItem {
    pub audio: String,
    pub reference: String,
}

/// One question of a QA list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaItem {
    pub audio: String,
    pub question: String,
    pub answer: String,
}

/// Lists longer than this are refused (a wrong file, not an evaluation list).
const MAX_LIST_BYTES: u64 = 64 << 20;

fn fields(path: &Path, want: usize, form: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let io = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_LIST_BYTES {
        return Err(RuntimeError::Config {
            path: path.to_path_buf(),
            reason: format!("{len} bytes: an evaluation list is at most {MAX_LIST_BYTES} bytes"),
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let text = String::from_utf8(bytes).map_err(|e| RuntimeError::Config {
        path: path.to_path_buf(),
        reason: format!("not UTF-8 text ({e})"),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<String> = line.split('\t').map(|x| x.trim().to_string()).collect();
        if f.len() != want || f[0].is_empty() {
            return Err(RuntimeError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                reason: format!(
                    "expected `{form}` ({want} tab-separated fields, got {})",
                    f.len()
                ),
            });
        }
        out.push((i + 1, f));
    }
    if out.is_empty() {
        return Err(RuntimeError::Config {
            path: path.to_path_buf(),
            reason: format!("no utterances (expected `{form}` lines)"),
        });
    }
    Ok(out)
}

/// Reads an ASR list: `audio<TAB>reference text` per line.
pub fn read_asr_list(path: &Path) -> Result<Vec<AsrItem>> {
    Ok(fields(path, 2, "audio<TAB>reference text")?
        .into_iter()
        .map(|(_, mut f)| AsrItem {
            reference: f.pop().unwrap_or_default(),
            audio: f.pop().unwrap_or_default(),
        })
        .collect())
}

/// Reads a QA list: `audio<TAB>question<TAB>answer` per line (question and answer not empty).
pub fn read_qa_list(path: &Path) -> Result<Vec<QaItem>> {
    let rows = fields(path, 3, "audio<TAB>question<TAB>answer")?;
    let mut out = Vec::with_capacity(rows.len());
    for (line, f) in rows {
        if f[1].is_empty() || f[2].is_empty() {
            return Err(RuntimeError::Parse {
                path: path.to_path_buf(),
                line,
                reason: "empty question or answer".into(),
            });
        }
        out.push(QaItem {
            audio: f[0].clone(),
            question: f[1].clone(),
            answer: f[2].clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_refuse_bad_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.tsv");
        std::fs::write(&p, "a.wav\thello world\r\n\n b/c.wav \t [beep] \n").unwrap();
        let l = read_asr_list(&p).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[1].audio.as_str(), l[1].reference.as_str()),
            ("b/c.wav", "[beep]")
        );
        std::fs::write(&p, "a.wav\thello\nno tab here\n").unwrap();
        let e = read_asr_list(&p).unwrap_err().to_string();
        assert!(
            e.contains("l.tsv: line 2") && e.contains("audio<TAB>reference"),
            "{e}"
        );
        std::fs::write(&p, "\n\n").unwrap();
        assert!(read_asr_list(&p)
            .unwrap_err()
            .to_string()
            .contains("no utterances"));
        std::fs::write(&p, "a.wav\twhat?\tyes\n").unwrap();
        assert_eq!(read_qa_list(&p).unwrap()[0].answer, "yes");
        std::fs::write(&p, "a.wav\twhat?\t\n").unwrap();
        let e = read_qa_list(&p).unwrap_err().to_string();
        assert!(e.contains("line 1: empty question or answer"), "{e}");
    }
}
