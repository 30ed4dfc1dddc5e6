//! Typed errors of the calibration crate.

/// Everything that can go wrong while collecting statistics or reading/writing tables.
#[derive(Debug, thiserror::Error)]
pub enum CalibError {
    #[error("tensor '{tensor}': {reason}")]
    Tensor { tensor: String, reason: String },
    #[error("calibration table: {0}")]
    Table(String),
    #[error("calibration table line {line}: {reason}")]
    TableLine { line: usize, reason: String },
    #[error("calibration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, CalibError>;
