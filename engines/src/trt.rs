//! TensorRT builds through `trtexec`: finding it, its version, shape profiles (given or from
//! the model's dynamic axes) and the exact command line for fp32, fp16 and int8 QDQ builds.

use std::path::{Path, PathBuf};

use crate::manifest::{ShapeProfile, TensorSpec};
use crate::EngineError;

/// Default profile for a dynamic batch axis (axis 0): min, opt, max.
pub const BATCH_PROFILE: (i64, i64, i64) = (1, 8, 32);
/// Default profile for other dynamic axes (frames at 10 ms: 1 s, 3 s, 30 s).
pub const FRAMES_PROFILE: (i64, i64, i64) = (100, 300, 3000);

/// What a TensorRT build is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrtPrecision {
    /// A QDQ model: precision comes from its Q/DQ nodes (strongly typed network).
    Int8Qdq,
    /// A float model built with fp16 kernels allowed.
    Fp16,
    /// A float model in fp32 (TF32 as TensorRT's default allows).
    Fp32,
}

/// `trtexec` on PATH, else `$TENSORRT_ROOT/bin/trtexec`.
pub fn find_trtexec() -> Option<PathBuf> {
    let exe = "trtexec";
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(exe);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let root = std::env::var_os("TENSORRT_ROOT")?;
    let p = Path::new(&root).join("bin").join(exe);
    p.is_file().then_some(p)
}

/// TensorRT version from trtexec's banner: `[TensorRT v100300]` → `10.3.0`,
/// `[TensorRT v8501]` → `8.5.1`.
pub fn parse_trtexec_version(banner: &str) -> Option<String> {
    let i = banner.find("[TensorRT v")? + "[TensorRT v".len();
    let digits: String = banner[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some(crate::gpu::decode_trt_version(digits.parse().ok()?))
}

/// Parses `name:MIN:OPT:MAX` with shapes written `1x100x80`.
pub fn parse_profile(s: &str) -> Result<(String, ShapeProfile), EngineError> {
    let bad = |reason: &str| EngineError::Profile {
        profile: s.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = s.rsplitn(4, ':').collect();
    if parts.len() != 4 {
        return Err(bad(
            "expected name:MIN:OPT:MAX, e.g. feats:1x100x80:8x300x80:32x3000x80",
        ));
    }
    let dims = |t: &str| -> Result<Vec<i64>, EngineError> {
        t.split('x')
            .map(|d| d.parse::<i64>().ok().filter(|v| *v > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(&format!("'{t}' is not a shape like 1x100x80")))
    };
    let (max, opt, min, name) = (dims(parts[0])?, dims(parts[1])?, dims(parts[2])?, parts[3]);
    if name.is_empty() {
        return Err(bad("empty input name"));
    }
    if min.len() != opt.len() || opt.len() != max.len() {
        return Err(bad("MIN, OPT and MAX must have the same rank"));
    }
    if min
        .iter()
        .zip(&opt)
        .zip(&max)
        .any(|((a, b), c)| a > b || b > c)
    {
        return Err(bad("need MIN <= OPT <= MAX on every axis"));
    }
    Ok((name.to_string(), ShapeProfile { min, opt, max }))
}

/// Profiles for every input with a dynamic axis: the given ones, else the defaults
/// ([`BATCH_PROFILE`] for axis 0, [`FRAMES_PROFILE`] for the others). A given profile must
/// name a model input and agree with its static axes.
pub fn profiles(
    inputs: &[TensorSpec],
    given: &[(String, ShapeProfile)],
) -> Result<Vec<(String, ShapeProfile)>, EngineError> {
    for (name, p) in given {
        let Some(spec) = inputs.iter().find(|i| &i.name == name) else {
            return Err(EngineError::Profile {
                profile: name.clone(),
                reason: format!(
                    "the model has no input '{name}' (inputs: {})",
                    inputs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        let fits = p.min.len() == spec.shape.len()
            && spec
                .shape
                .iter()
                .enumerate()
                .all(|(k, &d)| d < 0 || (p.min[k] == d && p.max[k] == d));
        if !fits {
            return Err(EngineError::Profile {
                profile: name.clone(),
                reason: format!("does not fit the input's shape {:?}", spec.shape),
            });
        }
    }
    let mut out = Vec::new();
    for spec in inputs {
        if let Some((n, p)) = given.iter().find(|(n, _)| n == &spec.name) {
            out.push((n.clone(), p.clone()));
            continue;
        }
        if spec.shape.iter().all(|&d| d >= 0) {
            continue;
        }
        let pick = |k: usize, d: i64, which: fn((i64, i64, i64)) -> i64| {
            if d >= 0 {
                d
            } else if k == 0 {
                which(BATCH_PROFILE)
            } else {
                which(FRAMES_PROFILE)
            }
        };
        let axis = |which: fn((i64, i64, i64)) -> i64| -> Vec<i64> {
            spec.shape
                .iter()
                .enumerate()
                .map(|(k, &d)| pick(k, d, which))
                .collect()
        };
        out.push((
            spec.name.clone(),
            ShapeProfile {
                min: axis(|t| t.0),
                opt: axis(|t| t.1),
                max: axis(|t| t.2),
            },
        ));
    }
    Ok(out)
}

/// `name:1x100x80,other:...` for one of a profile's shapes (trtexec's and the TensorRT
/// execution provider's shape syntax).
pub fn shape_list(
    profiles: &[(String, ShapeProfile)],
    pick: fn(&ShapeProfile) -> &Vec<i64>,
) -> String {
    profiles
        .iter()
        .map(|(n, p)| {
            format!(
                "{n}:{}",
                pick(p)
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn shapes_arg(
    flag: &str,
    profiles: &[(String, ShapeProfile)],
    pick: fn(&ShapeProfile) -> &Vec<i64>,
) -> String {
    format!("--{flag}={}", shape_list(profiles, pick))
}

/// Files a TensorRT build writes into its engine folder.
pub const PLAN_FILE: &str = "model.plan";
pub const TIMING_CACHE_FILE: &str = "timing.cache";
pub const LAYER_INFO_FILE: &str = "layers.json";

/// The `trtexec` arguments for building `model` into `dir` (see the module docs of each flag):
///
/// - int8 QDQ: `--stronglyTyped` on TensorRT 10 (precision from the Q/DQ nodes and the
///   model's types; no `--int8`/`--fp16`); TensorRT 11 builds strongly typed networks by
///   default, so no flag; before 10, `--int8 --fp16` (explicit quantization honours the Q/DQ
///   nodes, fp16 for the float rest);
/// - fp16: `--fp16` (on TensorRT 11, where weakly typed builds are gone, give a float16 model
///   instead: `voxq quantize --float16`, and no flag is added);
/// - fp32: no precision flag;
/// - shape profiles for the dynamic inputs, a timing cache, and detailed layer information
///   exported beside the plan.
pub fn trtexec_args(
    model: &Path,
    dir: &Path,
    precision: TrtPrecision,
    profiles: &[(String, ShapeProfile)],
    trt_major: u32,
) -> Vec<String> {
    let mut a = vec![
        format!("--onnx={}", model.display()),
        format!("--saveEngine={}", dir.join(PLAN_FILE).display()),
    ];
    match precision {
        TrtPrecision::Int8Qdq if trt_major == 10 => a.push("--stronglyTyped".into()),
        TrtPrecision::Int8Qdq if trt_major >= 11 => {}
        TrtPrecision::Int8Qdq => {
            a.push("--int8".into());
            a.push("--fp16".into());
        }
        TrtPrecision::Fp16 if trt_major < 11 => a.push("--fp16".into()),
        TrtPrecision::Fp16 | TrtPrecision::Fp32 => {}
    }
    if !profiles.is_empty() {
        a.push(shapes_arg("minShapes", profiles, |p| &p.min));
        a.push(shapes_arg("optShapes", profiles, |p| &p.opt));
        a.push(shapes_arg("maxShapes", profiles, |p| &p.max));
    }
    a.push(format!(
        "--timingCacheFile={}",
        dir.join(TIMING_CACHE_FILE).display()
    ));
    a.push("--profilingVerbosity=detailed".into());
    a.push(format!(
        "--exportLayerInfo={}",
        dir.join(LAYER_INFO_FILE).display()
    ));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats() -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: "feats".into(),
            dtype: "float32".into(),
            shape: vec![-1, -1, 80],
            dim_names: vec!["batch".into(), "frames".into(), String::new()],
            profile: None,
        }]
    }

    #[test]
    fn golden_qdq_tensorrt10_dynamic() {
        let p = profiles(&feats(), &[]).unwrap();
        let a = trtexec_args(
            Path::new("m/campplus.qdq.onnx"),
            Path::new("e/trt-int8"),
            TrtPrecision::Int8Qdq,
            &p,
            10,
        );
        assert_eq!(
            a,
            [
                "--onnx=m/campplus.qdq.onnx",
                "--saveEngine=e/trt-int8/model.plan",
                "--stronglyTyped",
                "--minShapes=feats:1x100x80",
                "--optShapes=feats:8x300x80",
                "--maxShapes=feats:32x3000x80",
                "--timingCacheFile=e/trt-int8/timing.cache",
                "--profilingVerbosity=detailed",
                "--exportLayerInfo=e/trt-int8/layers.json",
            ]
        );
    }

    #[test]
    fn golden_float_builds() {
        let given = vec![parse_profile("feats:1x200x80:4x400x80:16x1000x80").unwrap()];
        let p = profiles(&feats(), &given).unwrap();
        let a = trtexec_args(
            Path::new("m.onnx"),
            Path::new("e"),
            TrtPrecision::Fp16,
            &p,
            10,
        );
        assert_eq!(
            a,
            [
                "--onnx=m.onnx",
                "--saveEngine=e/model.plan",
                "--fp16",
                "--minShapes=feats:1x200x80",
                "--optShapes=feats:4x400x80",
                "--maxShapes=feats:16x1000x80",
                "--timingCacheFile=e/timing.cache",
                "--profilingVerbosity=detailed",
                "--exportLayerInfo=e/layers.json",
            ]
        );
        // fp32 on a static model: no precision flag, no shapes
        let fixed = vec![TensorSpec {
            shape: vec![1, 300, 80],
            dim_names: vec![String::new(); 3],
            ..feats()[0].clone()
        }];
        let p = profiles(&fixed, &[]).unwrap();
        assert!(p.is_empty());
        let a = trtexec_args(
            Path::new("m.onnx"),
            Path::new("e"),
            TrtPrecision::Fp32,
            &p,
            10,
        );
        assert_eq!(
            a,
            [
                "--onnx=m.onnx",
                "--saveEngine=e/model.plan",
                "--timingCacheFile=e/timing.cache",
                "--profilingVerbosity=detailed",
                "--exportLayerInfo=e/layers.json",
            ]
        );
    }

    #[test]
    fn qdq_flags_follow_the_tensorrt_version() {
        let p = profiles(&feats(), &[]).unwrap();
        let flags = |v| {
            trtexec_args(Path::new("m"), Path::new("e"), TrtPrecision::Int8Qdq, &p, v)
                .into_iter()
                .filter(|a| matches!(a.as_str(), "--stronglyTyped" | "--int8" | "--fp16"))
                .collect::<Vec<_>>()
        };
        assert_eq!(flags(8), ["--int8", "--fp16"]);
        assert_eq!(flags(10), ["--stronglyTyped"]);
        assert!(flags(11).is_empty());
    }

    #[test]
    fn versions_from_the_banner() {
        assert_eq!(
            parse_trtexec_version(
                "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=m.onnx"
            )
            .as_deref(),
            Some("10.3.0")
        );
        assert_eq!(
            parse_trtexec_version("[TensorRT v8501] # trtexec").as_deref(),
            Some("8.5.1")
        );
        assert_eq!(parse_trtexec_version("no banner"), None);
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(parse_profile("feats:1x100x80:8x300x80").is_err());
        assert!(parse_profile("feats:1x100x80:8x30x80:32x3000x80")
            .unwrap_err()
            .to_string()
            .contains("MIN <= OPT"));
        assert!(parse_profile("feats:1x100:8x300x80:32x3000x80").is_err());
        assert!(parse_profile("feats:0x100x80:8x300x80:32x3000x80").is_err());
        let wrong_name = vec![parse_profile("input:1x100x80:8x300x80:32x3000x80").unwrap()];
        assert!(profiles(&feats(), &wrong_name)
            .unwrap_err()
            .to_string()
            .contains("no input 'input'"));
        let wrong_bins = vec![parse_profile("feats:1x100x40:8x300x40:32x3000x40").unwrap()];
        assert!(profiles(&feats(), &wrong_bins)
            .unwrap_err()
            .to_string()
            .contains("does not fit"));
    }
}
