//! TensorRT layer information (`trtexec --profilingVerbosity=detailed --exportLayerInfo`):
//! the precision each engine layer runs in, and the report of layers that did not run in int8
//! in an int8 build — float convolutions and matrix multiplies, and reformat layers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// The precision of a tensor format string such as `Row major linear FP32`,
/// `Thirty-two wide channel vectorized row major Int8 format` or `Float`.
pub fn format_precision(fmt: &str) -> &'static str {
    let f = fmt.to_ascii_lowercase();
    if f.contains("int8") {
        "int8"
    } else if f.contains("fp8") {
        "fp8"
    } else if f.contains("bf16") {
        "bf16"
    } else if f.contains("fp16") || f.contains("half") {
        "fp16"
    } else if f.contains("fp32") || f.contains("float") {
        "fp32"
    } else if f.contains("int32") {
        "int32"
    } else if f.contains("int64") {
        "int64"
    } else if f.contains("bool") {
        "bool"
    } else {
        "unknown"
    }
}

/// One engine layer as the report sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    pub name: String,
    pub layer_type: String,
    /// Precision of the first input (what the kernel reads).
    pub input: String,
    /// Precision of the first output.
    pub output: String,
    /// Weight type for layers with weights (`Int8`, `Half`, `Float`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
}

/// What an engine's layers ran in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub layers: usize,
    /// Layer count by input precision.
    pub by_precision: BTreeMap<String, usize>,
    /// Convolutions / matrix multiplies whose input is not int8.
    pub float_compute: Vec<LayerRow>,
    /// Reformat (copy/convert) layers TensorRT inserted.
    pub reformats: Vec<LayerRow>,
}

fn is_compute(layer_type: &str, param_type: &str) -> bool {
    let t = format!("{layer_type} {param_type}").to_ascii_lowercase();
    [
        "convolution",
        "gemm",
        "matrixmultiply",
        "fullyconnected",
        "deconvolution",
        "matmul",
    ]
    .iter()
    .any(|k| t.contains(k))
}

fn first_format(v: &serde_json::Value, key: &str) -> String {
    v.get(key)
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|t| t.get("Format/Datatype"))
        .and_then(|f| f.as_str())
        .map(|f| format_precision(f).to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Parses the layer information JSON (`{"Layers": [...], "Bindings": [...]}`). Layers given
/// as plain names (a build without detailed verbosity) are refused: the report needs formats.
pub fn parse(path: &Path, text: &str) -> Result<LayerReport, EngineError> {
    let bad = |reason: String| EngineError::Manifest {
        path: path.to_path_buf(),
        reason,
    };
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("not TensorRT layer information: {e}")))?;
    let layers = v
        .get("Layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| bad("no \"Layers\" array: not TensorRT layer information".into()))?;
    let mut r = LayerReport {
        layers: layers.len(),
        by_precision: BTreeMap::new(),
        float_compute: Vec::new(),
        reformats: Vec::new(),
    };
    for l in layers {
        if l.is_string() {
            return Err(bad(
                "layers are names only: build with --profilingVerbosity=detailed".into(),
            ));
        }
        let s = |k: &str| l.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let row = LayerRow {
            name: s("Name"),
            layer_type: s("LayerType"),
            input: first_format(l, "Inputs"),
            output: first_format(l, "Outputs"),
            weights: l
                .get("Weights")
                .and_then(|w| w.get("Type"))
                .and_then(|t| t.as_str())
                .map(str::to_string),
        };
        *r.by_precision.entry(row.input.clone()).or_default() += 1;
        if row.layer_type == "Reformat" {
            r.reformats.push(row);
        } else if is_compute(&row.layer_type, &s("ParameterType")) && row.input != "int8" {
            r.float_compute.push(row);
        }
    }
    Ok(r)
}

/// Reads and parses `layers.json`.
pub fn read(path: &Path) -> Result<LayerReport, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::Manifest {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

impl LayerReport {
    /// One line for the build output.
    pub fn summary(&self) -> String {
        let counts: Vec<String> = self
            .by_precision
            .iter()
            .map(|(p, n)| format!("{n} {p}"))
            .collect();
        format!(
            "{} layers ({}); {} float conv/matmul layers, {} reformat layers",
            self.layers,
            counts.join(", "),
            self.float_compute.len(),
            self.reformats.len()
        )
    }

    /// The report as Markdown (`layers.md` beside the plan).
    pub fn markdown(&self) -> String {
        let mut s = format!("# TensorRT layers\n\n{}\n", self.summary());
        let table = |s: &mut String, title: &str, rows: &[LayerRow]| {
            let _ = write!(s, "\n## {title} ({})\n\n", rows.len());
            if rows.is_empty() {
                s.push_str("none\n");
                return;
            }
            s.push_str("| layer | type | input | output | weights |\n|---|---|---|---|---|\n");
            for r in rows {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | {} | {} |",
                    r.name.replace('|', "\\|"),
                    r.layer_type,
                    r.input,
                    r.output,
                    r.weights.as_deref().unwrap_or("-")
                );
            }
        };
        table(
            &mut s,
            "Convolutions and matrix multiplies not in int8",
            &self.float_compute,
        );
        table(&mut s, "Reformat layers", &self.reformats);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"Layers": [
      {"Name": "Reformatting CopyNode for Input Tensor 0 to /xvector/tdnn/conv",
       "LayerType": "Reformat",
       "Inputs": [{"Name": "feats", "Location": "Device", "Dimensions": [8,80,300],
                   "Format/Datatype": "Row major linear FP32"}],
       "Outputs": [{"Name": "r0", "Location": "Device", "Dimensions": [8,80,300],
                    "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
       "TacticValue": "0x0000000000000000"},
      {"Name": "/xvector/tdnn/conv + relu", "LayerType": "CaskConvolution",
       "Inputs": [{"Name": "r0", "Dimensions": [8,80,300],
                   "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
       "Outputs": [{"Name": "t", "Dimensions": [8,128,300],
                    "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
       "ParameterType": "Convolution", "Weights": {"Type": "Int8", "Count": 30720}},
      {"Name": "/head/fc", "LayerType": "CaskGemmConvolution",
       "Inputs": [{"Name": "p", "Dimensions": [8,1024], "Format/Datatype": "Row major linear FP16 format"}],
       "Outputs": [{"Name": "embedding", "Dimensions": [8,192], "Format/Datatype": "Float"}],
       "ParameterType": "Convolution", "Weights": {"Type": "Half", "Count": 196608}},
      {"Name": "/pool/mean", "LayerType": "Reduce",
       "Inputs": [{"Name": "t", "Format/Datatype": "Row major linear FP32"}],
       "Outputs": [{"Name": "p", "Format/Datatype": "Row major linear FP16 format"}]}
    ], "Bindings": ["feats", "embedding"]}"#;

    #[test]
    fn report_lists_float_compute_and_reformats() {
        let r = parse(Path::new("layers.json"), SAMPLE).unwrap();
        assert_eq!(r.layers, 4);
        assert_eq!(r.by_precision["fp32"], 2);
        assert_eq!(r.by_precision["int8"], 1);
        assert_eq!(r.by_precision["fp16"], 1);
        assert_eq!(r.float_compute.len(), 1);
        assert_eq!(r.float_compute[0].name, "/head/fc");
        assert_eq!(r.float_compute[0].weights.as_deref(), Some("Half"));
        assert_eq!(r.reformats.len(), 1);
        assert_eq!(r.reformats[0].output, "int8");
        let md = r.markdown();
        assert!(
            md.contains("| `/head/fc` | CaskGemmConvolution | fp16 | fp32 | Half |"),
            "{md}"
        );
        assert!(
            r.summary()
                .starts_with("4 layers (1 fp16, 2 fp32, 1 int8); 1 float"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn formats_and_bad_files() {
        assert_eq!(
            format_precision("Channel major FP16 format where channel % 8 == 0"),
            "fp16"
        );
        assert_eq!(format_precision("Float"), "fp32");
        assert_eq!(format_precision("Int32"), "int32");
        assert_eq!(format_precision("N/A due to dynamic shapes"), "unknown");
        let e = parse(Path::new("l.json"), r#"{"Layers": ["a", "b"]}"#).unwrap_err();
        assert!(e.to_string().contains("detailed"), "{e}");
        let e = parse(Path::new("l.json"), "[1,2").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("l.json: not TensorRT layer information"),
            "{e}"
        );
        let e = parse(Path::new("l.json"), "{}").unwrap_err();
        assert!(e.to_string().contains("no \"Layers\""), "{e}");
    }
}
