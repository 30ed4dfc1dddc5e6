//! TensorRT shape profiles: parsing `--profile name:MIN:OPT:MAX`, the default profiles for an
//! input's dynamic axes, and the `name:1x100x80,...` shape lists trtexec and ONNX Runtime's
//! TensorRT execution provider take.

use crate::manifest::{ShapeProfile, TensorSpec};
use crate::EngineError;

/// Default profile for a dynamic batch axis (axis 0): min, opt, max.
pub const BATCH_PROFILE: (i64, i64, i64) = (1, 8, 32);
/// Default profile for other dynamic axes (frames at 10 ms: 1 s, 3 s, 30 s).
pub const FRAMES_PROFILE: (i64, i64, i64) = (100, 300, 3000);

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
        .map(|(n, p)| format!("{n}:{}", shape_text(pick(p))))
        .collect::<Vec<_>>()
        .join(",")
}

/// A shape written `1x100x80`.
pub(crate) fn shape_text(d: &[i64]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::tensorrt) fn feats() -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: "feats".into(),
            dtype: "float32".into(),
            shape: vec![-1, -1, 80],
            dim_names: vec!["batch".into(), "frames".into(), String::new()],
            profile: None,
        }]
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
