//! Host tensors and values, independent of ONNX Runtime: a [`HostTensor`] holds an ONNX
//! element type, dims and the data in ONNX `raw_data` layout (little-endian, sub-byte types
//! packed) or as strings; it is read from a `TensorProto` (raw or typed fields) and decoded
//! into a [`TypedArray`]. [`HostValue`] adds the sequences and optionals of the ONNX backend
//! test data.

use exporter::model::{elem, elem_bits, elem_type_name, num_elements};
use exporter::onnx::bf16_bits_to_f32;
use onnx_protobuf::{Message, TensorProto};

use super::float::{f16_to_f64, f4_to_f64, f8_to_f64};
use crate::EngineError;

pub(super) type Result<T> = std::result::Result<T, EngineError>;

/// The data of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// ONNX `raw_data` layout: little-endian, 4-bit and 2-bit types packed low nibble first.
    Raw(Vec<u8>),
    /// One byte string per element.
    Strings(Vec<Vec<u8>>),
}

/// A tensor held in host memory, independent of ONNX Runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Name (from the `TensorProto`, or the graph input/output it belongs to).
    pub name: String,
    /// ONNX element type code (`exporter::model::elem`).
    pub elem_type: i32,
    pub dims: Vec<i64>,
    pub data: TensorData,
}

/// A model input or output value: a tensor, a sequence of values, or an optional one.
#[derive(Debug, Clone, PartialEq)]
pub enum HostValue {
    Tensor(HostTensor),
    Sequence(Vec<HostValue>),
    Optional(Option<Box<HostValue>>),
}

/// Tensor data decoded to a common type per kind, for comparison and inspection.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedArray {
    /// float32/64, float16, bfloat16, float8, float4 — all widened to f64.
    Float(Vec<f64>),
    /// complex64/128 as (re, im).
    Complex(Vec<(f64, f64)>),
    /// Signed integers of any width (int2 … int64).
    Int(Vec<i64>),
    /// Unsigned integers of any width (uint2 … uint64).
    UInt(Vec<u64>),
    Bool(Vec<bool>),
    Str(Vec<Vec<u8>>),
}
pub(super) fn terr(name: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Tensor {
        name: name.to_string(),
        reason: reason.into(),
    }
}

pub(super) fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * N);
    for &x in v {
        out.extend_from_slice(&f(x));
    }
    out
}

impl HostTensor {
    /// A float32 tensor.
    pub fn from_f32(name: &str, dims: &[i64], data: &[f32]) -> HostTensor {
        HostTensor {
            name: name.to_string(),
            elem_type: elem::FLOAT,
            dims: dims.to_vec(),
            data: TensorData::Raw(le_bytes(data, f32::to_le_bytes)),
        }
    }

    /// Number of elements the dims describe.
    pub fn num_elements(&self) -> Option<u64> {
        num_elements(&self.dims)
    }

    pub(super) fn expected_bytes(&self) -> Result<usize> {
        let n = self
            .num_elements()
            .ok_or_else(|| terr(&self.name, format!("invalid dims {:?}", self.dims)))?;
        let bits = elem_bits(self.elem_type).ok_or_else(|| {
            terr(
                &self.name,
                format!(
                    "element type {} ({}) has no fixed size",
                    self.elem_type,
                    elem_type_name(self.elem_type)
                ),
            )
        })?;
        n.checked_mul(bits)
            .map(|b| b.div_ceil(8))
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| terr(&self.name, format!("dims {:?} too large", self.dims)))
    }

    /// Reads a `TensorProto` (raw_data or the typed field its element type uses).
    pub fn from_proto(t: &TensorProto) -> Result<HostTensor> {
        let name = t.name.as_str();
        if t.data_location.value() == 1 {
            return Err(terr(
                name,
                "data is in an external file; load the model with exporter::model::load",
            ));
        }
        if t.segment.is_some() {
            return Err(terr(name, "segmented tensors are not supported"));
        }
        let mut out = HostTensor {
            name: t.name.clone(),
            elem_type: t.data_type,
            dims: t.dims.clone(),
            data: TensorData::Raw(Vec::new()),
        };
        let n = num_elements(&t.dims)
            .ok_or_else(|| terr(name, format!("invalid dims {:?}", t.dims)))?;
        if t.data_type == elem::STRING {
            if t.string_data.len() as u64 != n {
                return Err(terr(
                    name,
                    format!(
                        "{} strings for dims {:?} ({n} elements)",
                        t.string_data.len(),
                        t.dims
                    ),
                ));
            }
            out.data = TensorData::Strings(t.string_data.clone());
            return Ok(out);
        }
        let want = out.expected_bytes()?;
        let bytes = if !t.raw_data.is_empty() {
            t.raw_data.clone()
        } else {
            match t.data_type {
                elem::FLOAT | elem::COMPLEX64 => le_bytes(&t.float_data, f32::to_le_bytes),
                elem::DOUBLE | elem::COMPLEX128 => le_bytes(&t.double_data, f64::to_le_bytes),
                elem::INT64 => le_bytes(&t.int64_data, i64::to_le_bytes),
                elem::UINT64 => le_bytes(&t.uint64_data, u64::to_le_bytes),
                elem::UINT32 => le_bytes(&t.uint64_data, |x| (x as u32).to_le_bytes()),
                elem::INT32 => le_bytes(&t.int32_data, i32::to_le_bytes),
                elem::INT16 | elem::UINT16 | elem::FLOAT16 | elem::BFLOAT16 => {
                    le_bytes(&t.int32_data, |x| (x as u16).to_le_bytes())
                }
                elem::INT8
                | elem::UINT8
                | elem::BOOL
                | elem::FLOAT8E4M3FN
                | elem::FLOAT8E4M3FNUZ
                | elem::FLOAT8E5M2
                | elem::FLOAT8E5M2FNUZ
                | elem::FLOAT8E8M0
                | elem::INT4
                | elem::UINT4
                | elem::FLOAT4E2M1
                | elem::INT2
                | elem::UINT2 => t.int32_data.iter().map(|&x| x as u8).collect(),
                other => {
                    return Err(terr(
                        name,
                        format!(
                            "unsupported element type {other} ({})",
                            elem_type_name(other)
                        ),
                    ))
                }
            }
        };
        if bytes.len() != want {
            return Err(terr(
                name,
                format!(
                    "holds {} bytes of {} data, dims {:?} need {want}",
                    bytes.len(),
                    elem_type_name(t.data_type),
                    t.dims
                ),
            ));
        }
        out.data = TensorData::Raw(bytes);
        Ok(out)
    }

    /// Parses a serialized `TensorProto` (an ONNX test-data `.pb` file).
    pub fn from_pb(bytes: &[u8]) -> Result<HostTensor> {
        let t = TensorProto::parse_from_bytes(bytes)
            .map_err(|e| terr("<pb>", format!("not a TensorProto: {e}")))?;
        HostTensor::from_proto(&t)
    }

    /// A `TensorProto` holding this tensor (raw_data, or string_data for strings).
    pub fn to_proto(&self) -> TensorProto {
        let mut t = TensorProto::new();
        t.name = self.name.clone();
        t.data_type = self.elem_type;
        t.dims = self.dims.clone();
        match &self.data {
            TensorData::Raw(b) => t.raw_data = b.clone(),
            TensorData::Strings(s) => t.string_data = s.clone(),
        }
        t
    }

    /// Decodes the data into a [`TypedArray`].
    pub fn to_array(&self) -> Result<TypedArray> {
        let b = match &self.data {
            TensorData::Strings(s) => return Ok(TypedArray::Str(s.clone())),
            TensorData::Raw(b) => b,
        };
        let n = usize::try_from(
            self.num_elements()
                .ok_or_else(|| terr(&self.name, format!("invalid dims {:?}", self.dims)))?,
        )
        .map_err(|_| terr(&self.name, "too many elements"))?;
        if b.len() != self.expected_bytes()? {
            return Err(terr(&self.name, "data size does not match dims"));
        }
        fn chunks<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N)
                .map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    f(a)
                })
                .collect()
        }
        // Sub-byte integers (int4/uint4, int2/uint2), packed low bits first.
        let unpack = |bits: usize, signed: bool| -> Vec<i64> {
            let per_byte = 8 / bits;
            let mask = (1u8 << bits) - 1;
            let sign = 1u8 << (bits - 1);
            (0..n)
                .map(|i| {
                    let v = (b[i / per_byte] >> ((i % per_byte) * bits)) & mask;
                    if signed && v & sign != 0 {
                        v as i64 - (1i64 << bits)
                    } else {
                        v as i64
                    }
                })
                .collect()
        };
        Ok(match self.elem_type {
            elem::FLOAT => TypedArray::Float(chunks(b, |a| f32::from_le_bytes(a) as f64)),
            elem::DOUBLE => TypedArray::Float(chunks(b, f64::from_le_bytes)),
            elem::FLOAT16 => TypedArray::Float(chunks(b, |a| f16_to_f64(u16::from_le_bytes(a)))),
            elem::BFLOAT16 => TypedArray::Float(chunks(b, |a| {
                bf16_bits_to_f32(u16::from_le_bytes(a)) as f64
            })),
            elem::FLOAT8E4M3FN
            | elem::FLOAT8E4M3FNUZ
            | elem::FLOAT8E5M2
            | elem::FLOAT8E5M2FNUZ
            | elem::FLOAT8E8M0 => {
                TypedArray::Float(b.iter().map(|&x| f8_to_f64(self.elem_type, x)).collect())
            }
            elem::FLOAT4E2M1 => TypedArray::Float(
                unpack(4, false)
                    .into_iter()
                    .map(|v| f4_to_f64(v as u8))
                    .collect(),
            ),
            elem::COMPLEX64 => TypedArray::Complex(
                chunks(b, |a| f32::from_le_bytes(a) as f64)
                    .chunks_exact(2)
                    .map(|c| (c[0], c[1]))
                    .collect(),
            ),
            elem::COMPLEX128 => TypedArray::Complex(
                chunks(b, f64::from_le_bytes)
                    .chunks_exact(2)
                    .map(|c| (c[0], c[1]))
                    .collect(),
            ),
            elem::INT8 => TypedArray::Int(b.iter().map(|&x| x as i8 as i64).collect()),
            elem::INT16 => TypedArray::Int(chunks(b, |a| i16::from_le_bytes(a) as i64)),
            elem::INT32 => TypedArray::Int(chunks(b, |a| i32::from_le_bytes(a) as i64)),
            elem::INT64 => TypedArray::Int(chunks(b, i64::from_le_bytes)),
            elem::INT4 => TypedArray::Int(unpack(4, true)),
            elem::INT2 => TypedArray::Int(unpack(2, true)),
            elem::UINT8 => TypedArray::UInt(b.iter().map(|&x| x as u64).collect()),
            elem::UINT16 => TypedArray::UInt(chunks(b, |a| u16::from_le_bytes(a) as u64)),
            elem::UINT32 => TypedArray::UInt(chunks(b, |a| u32::from_le_bytes(a) as u64)),
            elem::UINT64 => TypedArray::UInt(chunks(b, u64::from_le_bytes)),
            elem::UINT4 => {
                TypedArray::UInt(unpack(4, false).into_iter().map(|v| v as u64).collect())
            }
            elem::UINT2 => {
                TypedArray::UInt(unpack(2, false).into_iter().map(|v| v as u64).collect())
            }
            elem::BOOL => TypedArray::Bool(b.iter().map(|&x| x != 0).collect()),
            other => {
                return Err(terr(
                    &self.name,
                    format!(
                        "cannot decode element type {other} ({})",
                        elem_type_name(other)
                    ),
                ))
            }
        })
    }

    /// The data as f32 (float32 tensors only).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        match (&self.data, self.elem_type) {
            (TensorData::Raw(b), elem::FLOAT) => Ok(b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()),
            _ => Err(terr(
                &self.name,
                format!("is {}, not float32", elem_type_name(self.elem_type)),
            )),
        }
    }
}

pub(super) fn rename(e: EngineError, name: &str) -> EngineError {
    match e {
        EngineError::Tensor { reason, .. } => terr(name, reason),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_match_raw() {
        let mut t = TensorProto::new();
        t.data_type = elem::FLOAT16;
        t.dims = vec![2];
        t.int32_data = vec![0x3c00, 0xc000];
        let h = HostTensor::from_proto(&t).unwrap();
        assert_eq!(h.data, TensorData::Raw(vec![0x00, 0x3c, 0x00, 0xc0]));
        assert_eq!(h.to_array().unwrap(), TypedArray::Float(vec![1.0, -2.0]));
        let mut t4 = TensorProto::new();
        t4.data_type = elem::INT4;
        t4.dims = vec![3];
        t4.int32_data = vec![0xf1, 0x07];
        let h4 = HostTensor::from_proto(&t4).unwrap();
        assert_eq!(h4.to_array().unwrap(), TypedArray::Int(vec![1, -1, 7]));
    }

    #[test]
    fn size_mismatch_is_an_error() {
        let mut t = TensorProto::new();
        t.name = "x".into();
        t.data_type = elem::FLOAT;
        t.dims = vec![3];
        t.float_data = vec![1.0, 2.0];
        let e = HostTensor::from_proto(&t).unwrap_err().to_string();
        assert!(e.contains("tensor 'x'") && e.contains("need 12"), "{e}");
    }
}
