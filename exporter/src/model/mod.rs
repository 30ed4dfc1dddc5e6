//! ONNX model files: load and save `ModelProto`, including tensors kept in external data files.
//!
//! [`load`] returns a self-contained model: every tensor whose data lives in an external file
//! (ONNX `data_location = EXTERNAL`, `location`/`offset`/`length` entries) is read into
//! `raw_data`, after checking the claimed range against the real file size. [`save`] writes
//! atomically (temp file in the same folder, fsync, rename) and can move large initializers
//! into one external data file beside the model, which is the only way past protobuf's 2 GiB
//! limit on a single message. [`summary`] describes a model's interface for `voxq inspect`.
//!
//! Files by job: `dtype` (element type codes and sizes), `load` (parse and check), `sniff`
//! (what a non-model file looks like), `external` (external data), `visit` (every tensor of a
//! model), `save` (atomic write, external data out), `summary` (`voxq inspect`'s interface view).

mod dtype;
mod external;
mod load;
mod save;
mod sniff;
mod summary;
mod visit;

pub use onnx_protobuf::ModelProto;

pub use dtype::{elem, elem_bits, elem_type_name, num_elements, tensor_byte_len};
pub use load::{load, load_bytes};
pub use save::{same_model, save, to_bytes, SaveOptions, SavedModel};
pub use summary::{
    summary, tensor_data_bytes, Dim, ElemType, IoSummary, ModelSummary, OpsetSummary, ValueType,
};

use crate::ExportError;

type Result<T> = std::result::Result<T, ExportError>;

/// The largest message protobuf can serialise or parse (2 GiB − 1 bytes).
pub const PROTOBUF_LIMIT: u64 = i32::MAX as u64;
