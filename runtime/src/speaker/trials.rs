//! Trial lists: `<1|0> <enroll> <test> [xlang]` per line, paths relative to an audio root (and
//! never leaving it).

use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// One verification trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub target: bool,
    pub enroll: String,
    pub test: String,
    /// Same-speaker trial whose two utterances are in different languages.
    pub cross_language: bool,
}

/// Reads a trial list. Blank lines and lines starting with `#` are skipped.
pub fn read_trials(path: &Path) -> Result<Vec<Trial>> {
    let text = crate::fsutil::read_text(path, "a trial list")?;
    parse_trials(path, &text)
}

/// Parses trial-list text; `path` names the source in errors. A list needs both target and
/// non-target trials (EER and minDCF are undefined otherwise).
pub fn parse_trials(path: &Path, text: &str) -> Result<Vec<Trial>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| RuntimeError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        crate::fsutil::check_list_line(line).map_err(err)?;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f.len() > 4 {
            return Err(err(format!(
                "expected '<1|0> <enroll> <test> [xlang]', got {} fields",
                f.len()
            )));
        }
        let target = match f[0] {
            "1" | "target" => true,
            "0" | "nontarget" => false,
            other => return Err(err(format!("label '{other}' is not 1/0/target/nontarget"))),
        };
        let cross_language = match f.get(3) {
            None => false,
            Some(&"xlang") => true,
            Some(other) => return Err(err(format!("unknown 4th field '{other}'"))),
        };
        for name in &f[1..3] {
            crate::fsutil::check_under_root(name).map_err(err)?;
        }
        out.push(Trial {
            target,
            enroll: f[1].to_string(),
            test: f[2].to_string(),
            cross_language,
        });
    }
    if out.is_empty() {
        return Err(RuntimeError::Config {
            path: path.to_path_buf(),
            reason: "the trial list has no trials (only blank and comment lines)".into(),
        });
    }
    let targets = out.iter().filter(|t| t.target).count();
    if targets == 0 || targets == out.len() {
        return Err(RuntimeError::Config {
            path: path.to_path_buf(),
            reason: format!(
                "need both target and non-target trials (got {targets} target, {} non-target)",
                out.len() - targets
            ),
        });
    }
    Ok(out)
}

/// The distinct utterances of a trial list, sorted, as paths under `root`.
pub fn utterances(trials: &[Trial], root: &Path) -> Vec<(String, PathBuf)> {
    let mut names: Vec<&str> = trials
        .iter()
        .flat_map(|t| [t.enroll.as_str(), t.test.as_str()])
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|n| (n.to_string(), root.join(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_cross_language_marks() {
        let t = parse_trials(
            Path::new("t.txt"),
            "# header\n1 a.wav b.wav xlang\n0 a.wav c.wav\n\ntarget b.wav d.wav\n",
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        assert!(t[0].target && t[0].cross_language);
        assert!(!t[1].target && !t[1].cross_language);
        assert!(t[2].target);
        let u = utterances(&t, Path::new("/r"));
        assert_eq!(u.len(), 4);
        assert_eq!(u[0].1, PathBuf::from("/r/a.wav"));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = parse_trials(Path::new("t.txt"), "1 a.wav b.wav\n2 a b\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.txt: line 2: label '2' is not 1/0/target/nontarget"
        );
        let e = parse_trials(Path::new("t.txt"), "1 a.wav\n").unwrap_err();
        assert!(e.to_string().contains("line 1"));
        let e = parse_trials(Path::new("t.txt"), "\n# nothing\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.txt: the trial list has no trials (only blank and comment lines)"
        );
        let e = parse_trials(
            Path::new("t.txt"),
            "1 a.wav b.wav\n0 a.wav ../../etc/passwd\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.txt: line 2: path '../../etc/passwd' leaves --audio-root (through '..')"
        );
        let e = parse_trials(Path::new("t.txt"), "1 /etc/passwd b.wav\n0 a b\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("line 1: path '/etc/passwd' is absolute"),
            "{e}"
        );
        let long = format!("1 a.wav {}\n0 a.wav b.wav\n", "x".repeat(5000));
        let e = parse_trials(Path::new("t.txt"), &long)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.txt: line 1: line is 5008 bytes long"),
            "{e}"
        );
        let e = parse_trials(Path::new("t.txt"), "1 a.wav b\0.wav\n0 a b\n").unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
        let e = parse_trials(Path::new("t.txt"), "1 a.wav b.wav\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.txt: need both target and non-target trials (got 1 target, 0 non-target)"
        );
    }
}
