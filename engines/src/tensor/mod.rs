//! Tensors in host memory and their conversions: ONNX `TensorProto` values read into a
//! [`HostTensor`] / [`HostValue`] (`host`), narrow float formats (`float`), the test-data
//! sequences and optionals read from the protobuf wire format (`wire`), ONNX Runtime values
//! both ways (`ort_value`), and the comparison of ONNX's backend test runner (`compare`).
//! Everything public is re-exported here: `engines::tensor::HostTensor`.

mod compare;
mod float;
mod host;
mod ort_value;
mod wire;

pub use compare::{compare, compare_tensors, Tolerance};
pub use float::{f16_to_f64, f4_to_f64, f8_to_f64};
pub use host::{HostTensor, HostValue, TensorData, TypedArray};
pub use ort_value::{onnx_elem_type, ort_elem_type};
