//! ONNX element types: the `TensorProto.DataType` codes, their names and widths, and the
//! element and byte counts of a tensor's shape.

/// ONNX `TensorProto.DataType` codes, including those newer than the IR-10 schema we compile.
pub mod elem {
    pub const UNDEFINED: i32 = 0;
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const COMPLEX64: i32 = 14;
    pub const COMPLEX128: i32 = 15;
    pub const BFLOAT16: i32 = 16;
    pub const FLOAT8E4M3FN: i32 = 17;
    pub const FLOAT8E4M3FNUZ: i32 = 18;
    pub const FLOAT8E5M2: i32 = 19;
    pub const FLOAT8E5M2FNUZ: i32 = 20;
    pub const UINT4: i32 = 21;
    pub const INT4: i32 = 22;
    pub const FLOAT4E2M1: i32 = 23;
    pub const FLOAT8E8M0: i32 = 24;
    pub const UINT2: i32 = 25;
    pub const INT2: i32 = 26;
}

/// A short lower-case name of an ONNX element type code (`float32`, `int64`, …).
pub fn elem_type_name(code: i32) -> &'static str {
    match code {
        elem::FLOAT => "float32",
        elem::UINT8 => "uint8",
        elem::INT8 => "int8",
        elem::UINT16 => "uint16",
        elem::INT16 => "int16",
        elem::INT32 => "int32",
        elem::INT64 => "int64",
        elem::STRING => "string",
        elem::BOOL => "bool",
        elem::FLOAT16 => "float16",
        elem::DOUBLE => "float64",
        elem::UINT32 => "uint32",
        elem::UINT64 => "uint64",
        elem::COMPLEX64 => "complex64",
        elem::COMPLEX128 => "complex128",
        elem::BFLOAT16 => "bfloat16",
        elem::FLOAT8E4M3FN => "float8e4m3fn",
        elem::FLOAT8E4M3FNUZ => "float8e4m3fnuz",
        elem::FLOAT8E5M2 => "float8e5m2",
        elem::FLOAT8E5M2FNUZ => "float8e5m2fnuz",
        elem::UINT4 => "uint4",
        elem::INT4 => "int4",
        elem::FLOAT4E2M1 => "float4e2m1",
        elem::FLOAT8E8M0 => "float8e8m0",
        elem::UINT2 => "uint2",
        elem::INT2 => "int2",
        elem::UNDEFINED => "undefined",
        _ => "unknown",
    }
}

/// Bits per element of a fixed-size ONNX element type; `None` for strings and unknown codes.
pub fn elem_bits(code: i32) -> Option<u64> {
    Some(match code {
        elem::UINT2 | elem::INT2 => 2,
        elem::UINT4 | elem::INT4 | elem::FLOAT4E2M1 => 4,
        elem::UINT8
        | elem::INT8
        | elem::BOOL
        | elem::FLOAT8E4M3FN
        | elem::FLOAT8E4M3FNUZ
        | elem::FLOAT8E5M2
        | elem::FLOAT8E5M2FNUZ
        | elem::FLOAT8E8M0 => 8,
        elem::UINT16 | elem::INT16 | elem::FLOAT16 | elem::BFLOAT16 => 16,
        elem::FLOAT | elem::INT32 | elem::UINT32 => 32,
        elem::INT64 | elem::UINT64 | elem::DOUBLE | elem::COMPLEX64 => 64,
        elem::COMPLEX128 => 128,
        _ => return None,
    })
}

/// Number of elements of a tensor with these dims; `None` for negative dims or overflow.
pub fn num_elements(dims: &[i64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, &d| {
        u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// Bytes the packed little-endian data (`raw_data` layout) of such a tensor occupies.
pub fn tensor_byte_len(data_type: i32, dims: &[i64]) -> Option<u64> {
    let bits = elem_bits(data_type)?;
    let n = num_elements(dims)?;
    Some(n.checked_mul(bits)?.div_ceil(8))
}
