//! The default-domain opset history as data: when each op's schema changed
//! (`history.txt`) and which of those changes ONNX's version converter treats as compatible
//! (`compatible.txt`). Both files are compiled in and parsed once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

const HISTORY: &str = include_str!("history.txt");
const COMPATIBLE: &str = include_str!("compatible.txt");

/// The parsed tables.
pub(crate) struct OpsetHistory {
    /// Op → the opsets at which its schema changed (ascending).
    since: BTreeMap<&'static str, Vec<i64>>,
    /// (opset, op) pairs whose change the newer schema accepts unchanged.
    compatible: BTreeSet<(i64, &'static str)>,
}

impl OpsetHistory {
    /// The opsets at which `op`'s schema changed, or None for an op outside the default
    /// domain's history.
    pub(crate) fn versions(&self, op: &str) -> Option<&[i64]> {
        self.since.get(op).map(Vec::as_slice)
    }

    /// Whether `op`'s schema change at `version` keeps an older node valid unchanged.
    pub(crate) fn compatible_bump(&self, op: &str, version: i64) -> bool {
        self.compatible.contains(&(version, op))
    }
}

/// Lines of a table file without comments and blank lines, split into words.
fn rows(text: &'static str) -> impl Iterator<Item = (usize, Vec<&'static str>)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("")))
        .map(|(i, l)| (i, l.split_whitespace().collect::<Vec<_>>()))
        .filter(|(_, w)| !w.is_empty())
}

fn version(file: &str, line: usize, word: &str) -> Result<i64, String> {
    word.parse()
        .map_err(|_| format!("{file}:{line}: '{word}' is not an opset version"))
}

/// Parses both tables; an error names the file and line.
fn parse(history: &'static str, compatible: &'static str) -> Result<OpsetHistory, String> {
    let mut since = BTreeMap::new();
    for (line, words) in rows(history) {
        let (op, vs) = words.split_first().ok_or("empty row")?;
        let vs = vs
            .iter()
            .map(|w| version("history.txt", line, w))
            .collect::<Result<Vec<_>, _>>()?;
        if vs.is_empty() || since.insert(*op, vs).is_some() {
            return Err(format!(
                "history.txt:{line}: op {op} has no versions or is listed twice"
            ));
        }
    }
    let mut compat = BTreeSet::new();
    for (line, words) in rows(compatible) {
        let (v, ops) = words.split_first().ok_or("empty row")?;
        let v = version("compatible.txt", line, v)?;
        compat.extend(ops.iter().map(|op| (v, *op)));
    }
    Ok(OpsetHistory {
        since,
        compatible: compat,
    })
}

/// The compiled-in tables, parsed on first use.
pub(crate) fn history() -> &'static OpsetHistory {
    static TABLES: OnceLock<OpsetHistory> = OnceLock::new();
    TABLES.get_or_init(|| {
        parse(HISTORY, COMPATIBLE)
            .expect("the compiled-in opset tables parse (checked by a unit test)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_tables_parse() {
        let h = parse(HISTORY, COMPATIBLE).unwrap();
        assert_eq!(h.since.len(), 187);
        assert_eq!(h.versions("Conv"), Some(&[1, 11][..]));
        assert_eq!(h.versions("Frobnicate"), None);
        assert!(h.compatible_bump("Conv", 11));
        assert!(h.compatible_bump("GRU", 14));
        assert!(!h.compatible_bump("Softmax", 13));
        assert!(!h.compatible_bump("Conv", 17));
        assert_eq!(h.compatible.len(), 188);
        // Every compatible bump names an op of the history.
        for (_, op) in &h.compatible {
            assert!(h.versions(op).is_some(), "{op} not in history");
        }
    }
}
