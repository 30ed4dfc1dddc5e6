//! Shared ONNX helpers for every crate: domain checks, typed attribute access, float16 and
//! bfloat16 conversion, tensor value readers, protobuf builders, and one-line error text.

mod attrs;
pub mod builders;
mod float;
mod values;

pub use attrs::{
    attr, attr_float, attr_int, attr_ints, attr_str, is_default_domain, is_default_op,
    qualified_op, AttributeType,
};
pub use float::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};
pub use values::{all_zero, constant_value, tensor_floats, tensor_ints};

/// Text on one line: the non-empty lines of `s`, trimmed and joined with "; " (engine and
/// decoder errors can span several lines).
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
