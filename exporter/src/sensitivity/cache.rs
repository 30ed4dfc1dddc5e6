//! The measurement cache: every measurement is a JSON file named by the hash of everything
//! it depends on (model, table, method, evaluator, policy, quantized nodes).

use std::path::{Path, PathBuf};

use calibration::CalibrationTable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Evaluate, Measurement, Result, Study};
use crate::atomic::write_atomic;
use crate::policy::QuantMode;
use crate::ExportError;

/// What a cache file holds.
#[derive(Serialize, Deserialize)]
pub(super) struct CacheEntry {
    pub(super) key_material: serde_json::Value,
    pub(super) label: String,
    pub(super) measurement: Measurement,
    pub(super) deployable_bytes: u64,
    pub(super) onnx_bytes: u64,
    pub(super) quantized_nodes: usize,
    pub(super) seconds: f64,
}

impl CacheEntry {
    /// The entry cached at `path` when it is readable and was made for exactly `material`.
    pub(super) fn read(path: &Path, material: &serde_json::Value) -> Option<CacheEntry> {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<CacheEntry>(&t).ok())
            .filter(|e| &e.key_material == material)
    }

    /// Writes the entry to `path` (atomically), creating its folder.
    pub(super) fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|err| ExportError::Policy(err.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ExportError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        write_atomic(path, text.as_bytes())
    }
}

/// sha256 (hex) of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a calibration table's canonical JSON (independent of the file it came from).
pub fn table_sha256(table: &CalibrationTable) -> String {
    sha256_hex(table.to_json().as_bytes())
}

impl Study<'_> {
    pub(super) fn key_material(
        &self,
        eval: &dyn Evaluate,
        groups: Option<&[(String, QuantMode)]>,
    ) -> Result<serde_json::Value> {
        let p = &self.policy;
        let mut v = serde_json::json!({
            "version": 1,
            "model_sha256": self.model_sha256,
            "evaluator": eval.fingerprint(),
            "metric": eval.metric().name,
        });
        if let Some(gs) = groups {
            let names: Vec<String> = gs.iter().map(|(g, _)| g.clone()).collect();
            let nodes: Vec<String> = self.nodes_of(&names)?.into_iter().collect();
            let one_mode = gs.first().map(|(_, m)| *m).unwrap_or(p.mode);
            let mixed = gs.iter().any(|(_, m)| *m != one_mode);
            let o = v.as_object_mut().expect("object");
            o.insert("table_sha256".into(), self.table_sha256.clone().into());
            o.insert("method".into(), self.method.clone().into());
            o.insert("target".into(), p.target.name().into());
            o.insert("ops".into(), serde_json::json!(p.ops));
            o.insert("min_channels".into(), p.min_channels.into());
            o.insert("per_channel".into(), p.per_channel.into());
            if mixed {
                // a mode per group: the mode of every node
                let pol = self.policy_for(gs)?;
                let lines: Vec<String> = nodes
                    .iter()
                    .map(|n| format!("{n}\t{}", pol.mode_of(n)))
                    .collect();
                o.insert("mode".into(), "mixed".into());
                o.insert(
                    "modes_sha256".into(),
                    sha256_hex(lines.join("\n").as_bytes()).into(),
                );
            } else if one_mode != QuantMode::Full {
                // absent for full int8, so caches written before modes existed stay valid
                o.insert("mode".into(), one_mode.name().into());
            }
            o.insert("float16".into(), self.float16.into());
            o.insert(
                "nodes_sha256".into(),
                sha256_hex(nodes.join("\n").as_bytes()).into(),
            );
        }
        Ok(v)
    }

    pub(super) fn cache_path(&self, material: &serde_json::Value) -> Option<PathBuf> {
        let dir = self.cache.as_ref()?;
        let key = sha256_hex(material.to_string().as_bytes());
        Some(dir.join(format!("{}.json", &key[..32])))
    }
}

/// Where measurements are cached by default: `.voxq-cache/sensitivity` under the current folder.
pub fn default_cache_dir() -> PathBuf {
    Path::new(".voxq-cache").join("sensitivity")
}
