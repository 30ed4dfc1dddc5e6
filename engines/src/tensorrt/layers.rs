//! TensorRT layer information (`trtexec --profilingVerbosity=detailed --exportLayerInfo`):
//! the precision each engine layer runs in, and the report of layers that did not run in int8
//! in an int8 build — float convolutions and matrix multiplies, and reformat layers.
//!
//! Two layouts of a layer's input/output tensors are read:
//!
//! - TensorRT 8.2–10: one `"Format/Datatype"` string per tensor, e.g. `"Thirty-two wide
//!   channel vectorized row major Int8 format"` or, for Myelin (kgen) layers, a bare type name
//!   such as `"Half"` (the strings NVIDIA's TREx tool maps, NVIDIA/TensorRT
//!   `tools/experimental/trt-engine-explorer/trex/activations.py`; Polygraphy reads the same
//!   key, `tools/Polygraphy/polygraphy/backend/trt/util.py`);
//! - TensorRT 11: that field is split in two (NVIDIA, "Migrating from TensorRT 10.x to 11.x",
//!   <https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/api/migration/tensorrt-10x-to-11x.html>:
//!   "the split of the Format/DataType field"). The keys are those of TensorRT 11's documented
//!   tensor objects, `"DataType"` (a `DataType` name: `Float`, `Half`, `BFloat16`, `Int8`, …)
//!   and `"Format"` (`"Row major linear FP32 format (kLINEAR)"`), from the `I/O Tensors`
//!   example of <https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/api/migration/tensorrt-10x-to-11x-IEngineInspector.html>;
//!   no per-layer TensorRT 11 sample was available, so the reader takes `DataType` first,
//!   then the old combined key, then `Format`, whichever names a precision.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// The precision of a tensor format or data type string such as `Row major linear FP32`,
/// `Thirty-two wide channel vectorized row major Int8 format`, `Row major linear BFloat16
/// format` or `Float`. BFloat16 is checked before `float` (as Polygraphy's
/// `dtype_from_fmt_dtype` does): every BFloat16 string contains "Float".
pub fn format_precision(fmt: &str) -> &'static str {
    let f = fmt.to_ascii_lowercase();
    if f.contains("int8") {
        "int8"
    } else if f.contains("fp8") {
        "fp8"
    } else if f.contains("bf16") || f.contains("bfloat16") {
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

/// Keys of a layer tensor that name its precision, in the order they are read: TensorRT 11's
/// `DataType`, TensorRT 8.2–10's `Format/Datatype`, TensorRT 11's `Format` (module docs).
const PRECISION_KEYS: [&str; 3] = ["DataType", "Format/Datatype", "Format"];

/// The precision of one layer tensor in either layout.
pub fn tensor_precision(t: &serde_json::Value) -> &'static str {
    PRECISION_KEYS
        .iter()
        .filter_map(|k| t.get(*k).and_then(|f| f.as_str()))
        .map(format_precision)
        .find(|p| *p != "unknown")
        .unwrap_or("unknown")
}

fn first_format(v: &serde_json::Value, key: &str) -> String {
    v.get(key)
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .map_or("unknown", tensor_precision)
        .to_string()
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

    /// The TensorRT 11 layout: `Format/Datatype` split into `Format` and `DataType` (module
    /// docs for the source of the keys), with BFloat16 tensors; `I/O Tensors` replaces
    /// `Bindings`. Read as the old layout is, and BFloat16 is bf16, not fp32.
    const SAMPLE_TRT11: &str = r#"{"Layers": [
      {"Name": "Reformatting CopyNode for Input Tensor 0 to /xvector/tdnn/conv",
       "LayerType": "Reformat",
       "Inputs": [{"Name": "feats", "Location": "Device", "Dimensions": [8,80,300],
                   "Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"}],
       "Outputs": [{"Name": "r0", "Location": "Device", "Dimensions": [8,80,300],
                    "Format": "Thirty-two wide channel vectorized row major Int8 format (kCHW32)",
                    "DataType": "Int8"}]},
      {"Name": "/xvector/tdnn/conv + relu", "LayerType": "CaskConvolution",
       "Inputs": [{"Name": "r0", "Dimensions": [8,80,300],
                   "Format": "Thirty-two wide channel vectorized row major Int8 format (kCHW32)",
                   "DataType": "Int8"}],
       "Outputs": [{"Name": "t", "Dimensions": [8,128,300],
                    "Format": "Thirty-two wide channel vectorized row major Int8 format (kCHW32)",
                    "DataType": "Int8"}],
       "ParameterType": "Convolution", "Weights": {"Type": "Int8", "Count": 30720}},
      {"Name": "/head/fc", "LayerType": "CaskGemmConvolution",
       "Inputs": [{"Name": "p", "Dimensions": [8,1024],
                   "Format": "Channel major BFloat16 format where channel % 8 == 0 (kHWC8)",
                   "DataType": "BFloat16"}],
       "Outputs": [{"Name": "embedding", "Dimensions": [8,192],
                    "Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"}],
       "ParameterType": "Convolution", "Weights": {"Type": "BFloat16", "Count": 196608}},
      {"Name": "/pool/mean", "LayerType": "Reduce",
       "Inputs": [{"Name": "t", "Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"}],
       "Outputs": [{"Name": "p", "Format": "Row major linear BFloat16 format (kLINEAR)",
                    "DataType": "BFloat16"}]}
    ], "I/O Tensors": [
      {"Name": "feats", "IOMode": "Input", "DataType": "Float", "Dimensions": [-1,80,-1]},
      {"Name": "embedding", "IOMode": "Output", "DataType": "Float", "Dimensions": [-1,192]}
    ]}"#;

    #[test]
    fn tensorrt_11_layout_reads_like_the_old_one() {
        let r = parse(Path::new("layers.json"), SAMPLE_TRT11).unwrap();
        assert_eq!(r.layers, 4);
        let by: Vec<(&str, usize)> = r
            .by_precision
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(by, [("bf16", 1), ("fp32", 2), ("int8", 1)]);
        let names: Vec<&str> = r.float_compute.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["/head/fc"],
            "the int8 conv is not reported as float"
        );
        assert_eq!(r.float_compute[0].input, "bf16");
        assert_eq!(r.reformats[0].output, "int8");
        // the same engine in the TensorRT 10 layout gives the same classes
        let old = parse(Path::new("layers.json"), SAMPLE).unwrap();
        assert_eq!(old.by_precision.get("int8"), r.by_precision.get("int8"));
        assert_eq!(old.float_compute[0].name, r.float_compute[0].name);
    }

    #[test]
    fn bfloat16_is_bf16_in_every_spelling() {
        for f in [
            "Row major linear BFloat16 format",
            "Channel major BFloat16 format where channel % 8 == 0",
            "Two wide channel vectorized row major BFloat16 format",
            "BFloat16",
        ] {
            assert_eq!(format_precision(f), "bf16", "{f}");
        }
        assert_eq!(format_precision("Half"), "fp16");
        let t: serde_json::Value =
            serde_json::from_str(r#"{"Format": "N/A due to dynamic shapes", "DataType": "Half"}"#)
                .unwrap();
        assert_eq!(tensor_precision(&t), "fp16");
        let t: serde_json::Value =
            serde_json::from_str(r#"{"Format/Datatype": "N/A due to dynamic shapes"}"#).unwrap();
        assert_eq!(tensor_precision(&t), "unknown");
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
