//! Engine manifests: what an engine folder holds, what built it, for which model and machine,
//! and the check that refuses an engine built for another GPU, builder version or model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// File name of the manifest inside an engine folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Manifest format version this build writes and reads.
pub const FORMAT: u32 = 1;

/// The model an engine was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceModel {
    /// File name of the source model (for people; the hash is what is checked).
    pub file: String,
    pub sha256: String,
}

/// What built the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    /// `onnxruntime` or `trtexec`.
    pub name: String,
    pub version: String,
}

/// The GPU a TensorRT engine was built on (plans only run where these match).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub name: String,
    /// e.g. `9.0`.
    pub compute_capability: String,
}

/// One input or output: name, element type, shape (`-1` for a dynamic axis, with its name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    /// Names of the dynamic axes (`""` for static ones), same length as `shape`.
    #[serde(default)]
    pub dim_names: Vec<String>,
    /// Shape profile the engine was built for (inputs with dynamic axes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ShapeProfile>,
}

impl TensorSpec {
    /// The shape with its dynamic axes filled: `batch` for axis 0, `frames` for the others.
    pub fn concrete(&self, batch: i64, frames: i64) -> Vec<i64> {
        self.shape
            .iter()
            .enumerate()
            .map(|(k, &d)| match (d, k) {
                (d, _) if d >= 0 => d,
                (_, 0) => batch,
                _ => frames,
            })
            .collect()
    }
}

/// min/opt/max shapes of one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeProfile {
    pub min: Vec<i64>,
    pub opt: Vec<i64>,
    pub max: Vec<i64>,
}

/// ONNX Runtime session settings a CPU engine was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSettings {
    pub graph_optimization_level: u8,
    pub intra_threads: usize,
}

/// How an OpenVINO engine runs: the precision OpenVINO computes in (`f32` or `bf16`: its
/// `INFERENCE_PRECISION_HINT`, for the parts of an int8 model that stay float too), threads,
/// the CPU it was built on and the instruction-set features it relied on, and its compiled-model
/// cache folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenvinoSettings {
    pub inference_precision: String,
    /// `INFERENCE_NUM_THREADS` (0 = OpenVINO's choice).
    pub threads: usize,
    pub cpu: String,
    /// `/proc/cpuinfo` flags the engine relies on (vector width, VNNI for int8, bf16).
    pub isa: Vec<String>,
    /// Compiled-model cache, relative to the folder.
    pub cache_dir: String,
}

/// Everything `manifest.json` says about an engine folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub voxq_version: String,
    /// Creation time, seconds since the Unix epoch (UTC).
    pub created_unix: u64,
    /// `cpu`, `openvino`, `tensorrt` or `tensorrt-ort`.
    pub target: String,
    /// `fp32`, `fp16` or `int8`.
    pub precision: String,
    pub source_model: SourceModel,
    /// The engine itself, relative to the folder (an ONNX model, a plan, an EPContext model).
    pub engine_file: String,
    pub builder: Builder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSettings>,
    /// The model's JSON config (front end, I/O names), copied into the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// OpenVINO engines: precision, threads, CPU and its features, cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openvino: Option<OpenvinoSettings>,
    /// Exact graph rewrites the build applied to the source model (e.g. `Tile→Expand /asp/Tile`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<String>,
}

/// What the loading machine offers, to check a manifest against.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Version of the builder that would run this engine (ONNX Runtime or TensorRT), if present.
    pub builder_version: Option<String>,
    pub gpu: Option<Gpu>,
    /// The CPU's instruction-set features (OpenVINO engines).
    pub isa: Vec<String>,
}

impl Host {
    /// What this machine offers for an engine of `m`'s target: the ONNX Runtime version for
    /// `cpu` engines; the TensorRT library version and the first GPU for TensorRT engines.
    pub fn for_manifest(m: &Manifest) -> Result<Host, EngineError> {
        if m.target == "cpu" {
            return Ok(Host {
                builder_version: Some(crate::ort::ort_version()?),
                ..Host::default()
            });
        }
        if m.target == "openvino" {
            return Ok(Host {
                builder_version: Some(crate::openvino::openvino_version()?),
                gpu: None,
                isa: crate::openvino::cpu_isa(),
            });
        }
        Ok(Host {
            builder_version: crate::tensorrt::gpu::tensorrt_version(),
            gpu: crate::tensorrt::gpu::gpus().into_iter().next(),
            isa: Vec::new(),
        })
    }
}

fn bad(path: &Path, reason: String) -> EngineError {
    EngineError::Manifest {
        path: path.to_path_buf(),
        reason,
    }
}

impl Manifest {
    /// Reads `DIR/manifest.json` (or the file itself when given one).
    pub fn read(path: &Path) -> Result<Manifest, EngineError> {
        if !path.exists() {
            return Err(bad(
                path,
                format!("no such engine folder (expected {MANIFEST_FILE} in it)"),
            ));
        }
        let file: PathBuf = if path.is_dir() {
            path.join(MANIFEST_FILE)
        } else {
            path.to_path_buf()
        };
        let text = exporter::textfile::read_text(&file, "an engine manifest")
            .map_err(|e| bad(&file, format!("cannot read: {e}")))?;
        Manifest::from_json(&file, &text)
    }

    /// Parses manifest JSON text; `path` names the file in errors. Refuses other format
    /// versions.
    pub fn from_json(path: &Path, text: &str) -> Result<Manifest, EngineError> {
        let m: Manifest = serde_json::from_str(text)
            .map_err(|e| bad(path, format!("not an engine manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(bad(
                path,
                format!(
                    "manifest format {} (this voxq reads format {FORMAT})",
                    m.format
                ),
            ));
        }
        // The files it names live in the engine folder: a name that leads out of it (absolute,
        // `..`) would make loading the engine read some other file.
        let files = std::iter::once(("engine_file", &m.engine_file))
            .chain(m.config_file.as_ref().map(|c| ("config_file", c)));
        for (key, f) in files {
            let p = Path::new(f);
            if f.is_empty()
                || !p
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                return Err(bad(
                    path,
                    format!("{key} '{f}' must be a file inside the engine folder (no '..', not absolute)"),
                ));
            }
        }
        Ok(m)
    }

    /// Writes `DIR/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), EngineError> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| bad(&path, e.to_string()))?;
        exporter::atomic::write_atomic(&path, text.as_bytes())
            .map_err(|e| bad(&path, e.to_string()))
    }

    /// Refuses an engine that does not fit: another source model (when `model_sha256` is
    /// given), another builder version, or another GPU. The error says what differs.
    pub fn check(
        &self,
        dir: &Path,
        model_sha256: Option<&str>,
        host: &Host,
    ) -> Result<(), EngineError> {
        let mut diffs = Vec::new();
        if let Some(want) = model_sha256 {
            if want != self.source_model.sha256 {
                diffs.push(format!(
                    "built from model sha256 {}…, this model is {}…",
                    short(&self.source_model.sha256),
                    short(want)
                ));
            }
        }
        match &host.builder_version {
            Some(v) if *v != self.builder.version => diffs.push(format!(
                "built with {} {}, this machine has {v}",
                self.builder.name, self.builder.version
            )),
            None if self.target != "cpu" => diffs.push(format!(
                "built with {} {}, which this machine does not have",
                self.builder.name, self.builder.version
            )),
            _ => {}
        }
        if let Some(ov) = &self.openvino {
            let missing: Vec<&str> = ov
                .isa
                .iter()
                .filter(|f| !host.isa.contains(f))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                diffs.push(format!(
                    "built on a CPU with {} ({}), this CPU lacks them",
                    missing.join(", "),
                    ov.cpu
                ));
            }
        }
        if let Some(g) = &self.gpu {
            match &host.gpu {
                Some(h) if h != g => diffs.push(format!(
                    "built for GPU {} (compute capability {}), this machine has {} ({})",
                    g.name, g.compute_capability, h.name, h.compute_capability
                )),
                None => diffs.push(format!(
                    "built for GPU {} (compute capability {}), this machine has no GPU",
                    g.name, g.compute_capability
                )),
                _ => {}
            }
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(bad(
                &dir.join(MANIFEST_FILE),
                format!("engine refused: {}", diffs.join("; ")),
            ))
        }
    }
}

/// The first 12 characters of a hash (whole characters: the manifest is outside data).
fn short(h: &str) -> &str {
    match h.char_indices().nth(12) {
        Some((i, _)) => &h[..i],
        None => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            voxq_version: "0.1.0".into(),
            created_unix: 1_790_000_000,
            target: "tensorrt".into(),
            precision: "int8".into(),
            source_model: SourceModel {
                file: "campplus.qdq.onnx".into(),
                sha256: "ab".repeat(32),
            },
            rewrites: vec![],
            engine_file: "model.plan".into(),
            builder: Builder {
                name: "trtexec".into(),
                version: "10.13.0".into(),
            },
            gpu: Some(Gpu {
                name: "NVIDIA H100 80GB HBM3".into(),
                compute_capability: "9.0".into(),
            }),
            inputs: vec![TensorSpec {
                name: "feats".into(),
                dtype: "float32".into(),
                shape: vec![-1, -1, 80],
                dim_names: vec!["batch".into(), "frames".into(), String::new()],
                profile: Some(ShapeProfile {
                    min: vec![1, 100, 80],
                    opt: vec![8, 300, 80],
                    max: vec![32, 3000, 80],
                }),
            }],
            outputs: vec![],
            session: None,
            config_file: None,
            openvino: None,
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        m.write(dir.path()).unwrap();
        let r = Manifest::read(dir.path()).unwrap();
        assert_eq!(r, m);
        let host = Host {
            builder_version: Some("10.13.0".into()),
            gpu: m.gpu.clone(),
            ..Host::default()
        };
        r.check(dir.path(), Some(&"ab".repeat(32)), &host).unwrap();

        let other_gpu = Host {
            gpu: Some(Gpu {
                name: "NVIDIA L4".into(),
                compute_capability: "8.9".into(),
            }),
            ..host.clone()
        };
        let e = r
            .check(dir.path(), None, &other_gpu)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("NVIDIA H100 80GB HBM3")
                && e.contains("NVIDIA L4")
                && e.contains("manifest.json"),
            "{e}"
        );

        let other_trt = Host {
            builder_version: Some("10.9.0".into()),
            ..host.clone()
        };
        let e = r
            .check(dir.path(), None, &other_trt)
            .unwrap_err()
            .to_string();
        assert!(e.contains("trtexec 10.13.0") && e.contains("10.9.0"), "{e}");

        let e = r
            .check(dir.path(), Some(&"cd".repeat(32)), &host)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("abababababab") && e.contains("cdcdcdcdcdcd"),
            "{e}"
        );

        let e = r
            .check(dir.path(), None, &Host::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not have") && e.contains("no GPU"), "{e}");
        assert_eq!(e.lines().count(), 1);
    }

    /// Found while writing the `manifest` fuzz target: a hash with multi-byte characters made
    /// `check` slice inside a character and panic.
    #[test]
    fn openvino_engines_are_refused_on_another_version_or_a_cpu_without_their_isa() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest {
            target: "openvino".into(),
            gpu: None,
            builder: Builder {
                name: "openvino".into(),
                version: "2026.4.1-22982".into(),
            },
            openvino: Some(OpenvinoSettings {
                inference_precision: "f32".into(),
                threads: 1,
                cpu: "AMD EPYC".into(),
                isa: vec!["avx512f".into(), "avx512_vnni".into()],
                cache_dir: "cache".into(),
            }),
            ..sample()
        };
        let host = |version: &str, isa: &[&str]| Host {
            builder_version: Some(version.into()),
            gpu: None,
            isa: isa.iter().map(|s| s.to_string()).collect(),
        };
        m.check(
            dir.path(),
            None,
            &host("2026.4.1-22982", &["avx2", "avx512f", "avx512_vnni"]),
        )
        .unwrap();
        let e = m
            .check(
                dir.path(),
                None,
                &host("2026.3.0-1", &["avx512f", "avx512_vnni"]),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("built with openvino 2026.4.1-22982, this machine has 2026.3.0-1"),
            "{e}"
        );
        let e = m
            .check(
                dir.path(),
                None,
                &host("2026.4.1-22982", &["avx2", "avx512f"]),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("avx512_vnni") && e.contains("lacks"), "{e}");
    }

    #[test]
    fn check_with_non_ascii_hash_does_not_panic() {
        let text = serde_json::to_string(&sample())
            .unwrap()
            .replace(&"ab".repeat(32), "aaaaaaaaaaaé");
        let m = Manifest::from_json(Path::new("m.json"), &text).unwrap();
        let host = Host {
            builder_version: Some("10.13.0".into()),
            gpu: m.gpu.clone(),
            ..Host::default()
        };
        let e = m
            .check(Path::new("d"), Some("0123456789abcdef"), &host)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("aaaaaaaaaaaé…") && e.contains("0123456789ab…"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_manifests_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("manifest.json") && e.contains("cannot read"),
            "{e}"
        );
        std::fs::write(dir.path().join(MANIFEST_FILE), "{\"format\": 1}").unwrap();
        let e = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not an engine manifest"), "{e}");
        let mut m = sample();
        m.format = 99;
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            serde_json::to_string(&m).unwrap(),
        )
        .unwrap();
        let e = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("format 99"), "{e}");
    }
}
