//! Typed errors of the exporter crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, checking or writing an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid ONNX model ({reason})")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: cannot serialise model ({reason})")]
    Serialize { path: PathBuf, reason: String },
    #[error("{path}: external data for tensor '{tensor}': {reason}")]
    ExternalData {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    #[error(
        "{path}: model is {bytes} bytes, over protobuf's 2 GiB limit; save it with external data (SaveOptions::external)"
    )]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("{label} {}: {reason}", path.display())]
    Output {
        label: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{label} {} is {what}", path.display())]
    SameFile {
        label: String,
        path: PathBuf,
        what: String,
    },
    #[error("{path}: invalid save options ({reason})")]
    SaveOptions { path: PathBuf, reason: String },
    #[error("node '{node}': {reason}")]
    Graph { node: String, reason: String },
    #[error("{path}: {reason}")]
    GroupSpec { path: PathBuf, reason: String },
    #[error("quantization policy: {0}")]
    Policy(String),
    /// A table file that cannot be read as one (`reason` says what it is not, once).
    #[error("{path}: {reason}")]
    TableFile { path: PathBuf, reason: String },
    #[error("calibration table: tensor '{tensor}': {reason}")]
    Table { tensor: String, reason: String },
    /// A quantization that would quantize nothing (a QDQ model, or a selection that leaves no
    /// weighted node): the output would be an "int8" model that is not.
    #[error("nothing to quantize: {0}")]
    NothingToQuantize(String),
    #[error("evaluating {variant}: {reason}")]
    Evaluate { variant: String, reason: String },
    #[error(transparent)]
    Calibration(#[from] calibration::CalibError),
}
