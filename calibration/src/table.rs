//! Calibration tables: per-tensor ranges and their JSON and TensorRT calibration-cache text forms.
//!
//! JSON (`voxq-calibration/1`) is the project's own format: pretty, keys sorted, floats written
//! in shortest round-trip form, so the same table always gives the same bytes.
//!
//! The TensorRT calibration cache is a text file whose first line names the TensorRT version and
//! calibrator (`TRT-8601-EntropyCalibration2`), followed by one `tensor_name: hex` line per
//! tensor, `hex` being the big-endian IEEE-754 bit pattern of the float32 *scale*
//! (`amax / 127`), e.g. `input: 3c010a14`. Tensor names may contain spaces and colons; the value
//! follows the last colon. TensorRT rejects a cache whose header does not match its calibrator
//! type and version, so callers that target another TensorRT can pick the header with
//! [`CalibrationTable::to_trt_cache_with_header`]. A table read from a cache keeps the header
//! as its `method`, and writing it back reuses that header.
//!
//! Only strings are produced and parsed here; writing files (atomically) is the callers' job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CalibError, Result};
use crate::observer::{check_tensor_name, QMAX};
use crate::stats::TensorStats;

/// Format tag of the JSON table.
pub const TABLE_FORMAT: &str = "voxq-calibration/1";
/// Header written by [`CalibrationTable::to_trt_cache`] (TensorRT 8.6.1, entropy calibrator 2,
/// the calibrator type `trtexec --calib` uses).
pub const TRT_CACHE_HEADER: &str = "TRT-8601-EntropyCalibration2";
/// Relative tolerance of the `scale ≈ amax / 127` check.
const SCALE_REL_TOL: f32 = 1e-5;

/// The quantization range of one tensor (symmetric int8: zero point 0).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TensorRange {
    /// Clipping range: values are clipped to `[-amax, amax]`.
    pub amax: f32,
    /// `amax / 127`, always positive and finite.
    pub scale: f32,
    /// Why a degenerate-tensor rule replaced the requested method, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Statistics of the observed values (absent in tables read from a TensorRT cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<TensorStats>,
}

/// Ranges for every calibrated tensor, keyed by tensor name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CalibrationTable {
    /// Always [`TABLE_FORMAT`].
    pub format: String,
    /// The method that produced the ranges (`max`, `percentile:99.99`, `entropy`, `mse`), or
    /// the TensorRT cache header for tables read from a cache.
    pub method: String,
    pub tensors: BTreeMap<String, TensorRange>,
}

fn check_scale(scale: f32) -> std::result::Result<(), String> {
    if scale.is_finite() && scale > 0.0 && scale.is_normal() {
        Ok(())
    } else {
        Err(format!(
            "scale {scale:e} is not a positive, finite, normal float"
        ))
    }
}

fn is_trt_header(line: &str) -> bool {
    let mut parts = line.splitn(3, '-');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("TRT"), Some(v), Some(algo))
            if !v.is_empty()
                && v.bytes().all(|b| b.is_ascii_digit())
                && !algo.is_empty()
                && algo.bytes().all(|b| b.is_ascii_alphanumeric())
    )
}

impl CalibrationTable {
    /// An empty table in the current format.
    pub fn new(method: impl Into<String>) -> CalibrationTable {
        CalibrationTable {
            format: TABLE_FORMAT.to_string(),
            method: method.into(),
            tensors: BTreeMap::new(),
        }
    }

    /// Pretty, deterministic JSON (ends with a newline).
    pub fn to_json(&self) -> String {
        // Strings, finite floats and a string-keyed map: serde_json cannot fail on these.
        let mut s = serde_json::to_string_pretty(self)
            .expect("serialising a calibration table to JSON cannot fail");
        s.push('\n');
        s
    }

    /// Parses and validates a JSON table (format tag, names, amax and scale of every tensor).
    pub fn from_json(text: &str) -> Result<CalibrationTable> {
        let table: CalibrationTable = serde_json::from_str(text)
            .map_err(|e| CalibError::Table(format!("malformed JSON: {e}")))?;
        if table.format != TABLE_FORMAT {
            let what = if table.format.starts_with("voxq-calibration/") {
                "unsupported version"
            } else {
                "not a voxq calibration table: format"
            };
            return Err(CalibError::Table(format!(
                "{what} '{}' (this build reads '{TABLE_FORMAT}')",
                table.format
            )));
        }
        table.validate()?;
        Ok(table)
    }

    /// Checks every entry: valid name, amax > 0 finite, scale > 0 finite, scale ≈ amax/127.
    pub fn validate(&self) -> Result<()> {
        for (name, r) in &self.tensors {
            check_tensor_name(name)?;
            let bad = |reason: String| CalibError::Tensor {
                tensor: name.clone(),
                reason,
            };
            check_scale(r.scale).map_err(bad)?;
            if !(r.amax.is_finite() && r.amax > 0.0) {
                return Err(bad(format!("amax {:e} is not positive and finite", r.amax)));
            }
            let expect = r.amax / QMAX as f32;
            if (r.scale - expect).abs() > SCALE_REL_TOL * expect {
                return Err(bad(format!(
                    "scale {:e} does not match amax/127 = {expect:e}",
                    r.scale
                )));
            }
        }
        Ok(())
    }

    /// TensorRT calibration-cache text with this table's header if it came from a cache,
    /// else [`TRT_CACHE_HEADER`].
    pub fn to_trt_cache(&self) -> String {
        let header = if is_trt_header(&self.method) {
            self.method.as_str()
        } else {
            TRT_CACHE_HEADER
        };
        self.to_trt_cache_with_header(header)
    }

    /// TensorRT calibration-cache text with the given header line (e.g. `TRT-100300-EntropyCalibration2`).
    pub fn to_trt_cache_with_header(&self, header: &str) -> String {
        let mut out = String::with_capacity(header.len() + 1 + self.tensors.len() * 48);
        out.push_str(header);
        out.push('\n');
        for (name, r) in &self.tensors {
            out.push_str(&format!("{name}: {:08x}\n", r.scale.to_bits()));
        }
        out
    }

    /// Parses TensorRT calibration-cache text; amax is recovered as `scale * 127`.
    pub fn from_trt_cache(text: &str) -> Result<CalibrationTable> {
        let mut lines = text.lines().enumerate();
        let header = match lines.next() {
            Some((_, h)) => h.trim(),
            None => return Err(CalibError::Table("empty TensorRT calibration cache".into())),
        };
        if !is_trt_header(header) {
            return Err(CalibError::TableLine {
                line: 1,
                reason: format!(
                    "expected a TensorRT calibration cache header like '{TRT_CACHE_HEADER}', \
                     found '{}'",
                    header.chars().take(80).collect::<String>()
                ),
            });
        }
        let mut table = CalibrationTable::new(header);
        for (idx, raw) in lines {
            let line = idx + 1;
            let l = raw.strip_suffix('\r').unwrap_or(raw);
            if l.trim().is_empty() {
                continue;
            }
            let err = |reason: String| CalibError::TableLine { line, reason };
            let (name, hex) = l
                .rsplit_once(':')
                .ok_or_else(|| err("missing ':' between tensor name and hex scale".into()))?;
            if name.is_empty() {
                return Err(err("empty tensor name".into()));
            }
            check_tensor_name(name).map_err(|e| err(e.to_string()))?;
            let hex = hex.trim();
            if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(format!(
                    "tensor '{name}': '{hex}' is not a float32 bit pattern of 1 to 8 hex digits"
                )));
            }
            let bits = u32::from_str_radix(hex, 16)
                .map_err(|e| err(format!("tensor '{name}': bad hex '{hex}': {e}")))?;
            let scale = f32::from_bits(bits);
            check_scale(scale).map_err(|r| err(format!("tensor '{name}': {r}")))?;
            let amax = scale * QMAX as f32;
            if !amax.is_finite() {
                return Err(err(format!(
                    "tensor '{name}': scale {scale:e} overflows amax = scale*127"
                )));
            }
            let entry = TensorRange {
                amax,
                scale,
                fallback: None,
                stats: None,
            };
            if table.tensors.insert(name.to_string(), entry).is_some() {
                return Err(err(format!("tensor '{name}' listed twice")));
            }
        }
        Ok(table)
    }
}
