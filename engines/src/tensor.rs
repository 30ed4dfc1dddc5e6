//! Conversion between ONNX TensorProto values and ONNX Runtime tensors.
//!
//! A [`HostTensor`] holds an ONNX element type, dims and the data in ONNX `raw_data` layout
//! (little-endian, sub-byte types packed) or as strings. It is read from a `TensorProto`
//! (raw or typed fields), turned into an ONNX Runtime value and back, and decoded into a
//! [`TypedArray`] for comparison. [`HostValue`] adds the sequences and optionals of the ONNX
//! backend test data (`SequenceProto` / `OptionalProto` files). [`compare`] checks two values
//! the way ONNX's backend test runner does (rtol/atol for floats, NaN equals NaN, exact
//! otherwise).

use exporter::model::{elem, elem_bits, elem_type_name, num_elements, ValueType};
use onnx_protobuf::{Message, TensorProto};
use ort::memory::Allocator;
use ort::value::{
    DynSequenceValueType, DynTensor, DynTensorValueType, DynValue, DynValueTypeMarker, Sequence,
    Tensor, TensorElementType,
};

use crate::EngineError;

type Result<T> = std::result::Result<T, EngineError>;

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

fn terr(name: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Tensor {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// The ONNX Runtime element type of an ONNX element type code.
pub fn ort_elem_type(code: i32) -> Option<TensorElementType> {
    Some(match code {
        elem::FLOAT => TensorElementType::Float32,
        elem::UINT8 => TensorElementType::Uint8,
        elem::INT8 => TensorElementType::Int8,
        elem::UINT16 => TensorElementType::Uint16,
        elem::INT16 => TensorElementType::Int16,
        elem::INT32 => TensorElementType::Int32,
        elem::INT64 => TensorElementType::Int64,
        elem::STRING => TensorElementType::String,
        elem::BOOL => TensorElementType::Bool,
        elem::FLOAT16 => TensorElementType::Float16,
        elem::DOUBLE => TensorElementType::Float64,
        elem::UINT32 => TensorElementType::Uint32,
        elem::UINT64 => TensorElementType::Uint64,
        elem::COMPLEX64 => TensorElementType::Complex64,
        elem::COMPLEX128 => TensorElementType::Complex128,
        elem::BFLOAT16 => TensorElementType::Bfloat16,
        elem::FLOAT8E4M3FN => TensorElementType::Float8E4M3FN,
        elem::FLOAT8E4M3FNUZ => TensorElementType::Float8E4M3FNUZ,
        elem::FLOAT8E5M2 => TensorElementType::Float8E5M2,
        elem::FLOAT8E5M2FNUZ => TensorElementType::Float8E5M2FNUZ,
        elem::UINT4 => TensorElementType::Uint4,
        elem::INT4 => TensorElementType::Int4,
        elem::FLOAT4E2M1 => TensorElementType::Float4E2M1,
        elem::FLOAT8E8M0 => TensorElementType::Float8E8M0,
        elem::UINT2 => TensorElementType::Uint2,
        elem::INT2 => TensorElementType::Int2,
        _ => return None,
    })
}

/// The ONNX element type code of an ONNX Runtime element type.
pub fn onnx_elem_type(t: TensorElementType) -> Option<i32> {
    Some(match t {
        TensorElementType::Float32 => elem::FLOAT,
        TensorElementType::Uint8 => elem::UINT8,
        TensorElementType::Int8 => elem::INT8,
        TensorElementType::Uint16 => elem::UINT16,
        TensorElementType::Int16 => elem::INT16,
        TensorElementType::Int32 => elem::INT32,
        TensorElementType::Int64 => elem::INT64,
        TensorElementType::String => elem::STRING,
        TensorElementType::Bool => elem::BOOL,
        TensorElementType::Float16 => elem::FLOAT16,
        TensorElementType::Float64 => elem::DOUBLE,
        TensorElementType::Uint32 => elem::UINT32,
        TensorElementType::Uint64 => elem::UINT64,
        TensorElementType::Complex64 => elem::COMPLEX64,
        TensorElementType::Complex128 => elem::COMPLEX128,
        TensorElementType::Bfloat16 => elem::BFLOAT16,
        TensorElementType::Float8E4M3FN => elem::FLOAT8E4M3FN,
        TensorElementType::Float8E4M3FNUZ => elem::FLOAT8E4M3FNUZ,
        TensorElementType::Float8E5M2 => elem::FLOAT8E5M2,
        TensorElementType::Float8E5M2FNUZ => elem::FLOAT8E5M2FNUZ,
        TensorElementType::Uint4 => elem::UINT4,
        TensorElementType::Int4 => elem::INT4,
        TensorElementType::Float4E2M1 => elem::FLOAT4E2M1,
        TensorElementType::Float8E8M0 => elem::FLOAT8E8M0,
        TensorElementType::Uint2 => elem::UINT2,
        TensorElementType::Int2 => elem::INT2,
        _ => return None,
    })
}

fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
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

    fn expected_bytes(&self) -> Result<usize> {
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

    /// Creates an ONNX Runtime tensor with a copy of the data.
    pub fn to_ort(&self) -> Result<DynValue> {
        let ort_err = |e: ort::Error| terr(&self.name, crate::ort_env::first_line(&e.to_string()));
        match &self.data {
            TensorData::Strings(s) => {
                let strs = s
                    .iter()
                    .map(|b| {
                        if b.contains(&0) {
                            return Err(terr(&self.name, "string contains a NUL byte"));
                        }
                        String::from_utf8(b.clone())
                            .map_err(|_| terr(&self.name, "string is not valid UTF-8"))
                    })
                    .collect::<Result<Vec<String>>>()?;
                let t = Tensor::from_string_array((self.dims.clone(), strs.as_slice()))
                    .map_err(ort_err)?;
                Ok(t.into_dyn())
            }
            TensorData::Raw(bytes) => {
                let ty = ort_elem_type(self.elem_type).ok_or_else(|| {
                    terr(
                        &self.name,
                        format!(
                            "element type {} ({}) has no ONNX Runtime equivalent",
                            self.elem_type,
                            elem_type_name(self.elem_type)
                        ),
                    )
                })?;
                let want = self.expected_bytes()?;
                if bytes.len() != want {
                    return Err(terr(
                        &self.name,
                        format!("{} data bytes, dims need {want}", bytes.len()),
                    ));
                }
                let mut t = DynTensor::new(&Allocator::default(), ty, self.dims.clone())
                    .map_err(ort_err)?;
                if !bytes.is_empty() {
                    if t.size() != Some(want) {
                        return Err(terr(
                            &self.name,
                            format!(
                                "ONNX Runtime allocated {:?} bytes, expected {want}",
                                t.size()
                            ),
                        ));
                    }
                    let dst = t.data_ptr_mut().cast::<u8>();
                    if dst.is_null() {
                        return Err(terr(&self.name, "ONNX Runtime gave no data buffer"));
                    }
                    // SAFETY: `dst` points to the CPU buffer ONNX Runtime allocated for this
                    // tensor, whose size (`t.size()`) was checked to equal `bytes.len()`.
                    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
                }
                Ok(t.into_dyn())
            }
        }
    }

    /// Copies an ONNX Runtime tensor (in CPU memory) into host memory.
    pub fn from_ort(name: &str, v: &DynValue) -> Result<HostTensor> {
        let ort_err = |e: ort::Error| terr(name, crate::ort_env::first_line(&e.to_string()));
        let (ty, dims) = match v.dtype() {
            ort::value::ValueType::Tensor { ty, shape, .. } => (*ty, shape.to_vec()),
            other => return Err(terr(name, format!("is a {other}, not a tensor"))),
        };
        let code = onnx_elem_type(ty)
            .ok_or_else(|| terr(name, format!("unsupported element type {ty:?}")))?;
        let mut out = HostTensor {
            name: name.to_string(),
            elem_type: code,
            dims,
            data: TensorData::Raw(Vec::new()),
        };
        if ty == TensorElementType::String {
            let (_, strs) = v.try_extract_strings().map_err(ort_err)?;
            out.data = TensorData::Strings(strs.into_iter().map(String::into_bytes).collect());
            return Ok(out);
        }
        let want = out.expected_bytes()?;
        if want == 0 {
            return Ok(out);
        }
        let view = v.view();
        let t = view.downcast::<DynTensorValueType>().map_err(ort_err)?;
        if !t.memory_info().is_cpu_accessible() {
            return Err(terr(name, "tensor is not in CPU memory"));
        }
        let src = t.data_ptr().cast::<u8>();
        if src.is_null() {
            return Err(terr(name, "ONNX Runtime tensor has no data buffer"));
        }
        // SAFETY: the tensor is CPU-accessible and holds `want` bytes: ONNX Runtime sizes a
        // tensor's buffer from its element type and shape, the same computation as `want`.
        let bytes = unsafe { std::slice::from_raw_parts(src, want) }.to_vec();
        out.data = TensorData::Raw(bytes);
        Ok(out)
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
                f32::from_bits((u16::from_le_bytes(a) as u32) << 16) as f64
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

/// IEEE half precision to f64.
pub fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as f64;
    sign * match exp {
        0 => man * 2f64.powi(-24),
        31 if man == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + man / 1024.0) * 2f64.powi(e - 15),
    }
}

/// The 8-bit float formats of ONNX (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, E8M0) to f64.
pub fn f8_to_f64(code: i32, x: u8) -> f64 {
    let neg = x & 0x80 != 0;
    let sign = if neg { -1.0 } else { 1.0 };
    let (ebits, bias, uz) = match code {
        elem::FLOAT8E4M3FN => (4, 7, false),
        elem::FLOAT8E4M3FNUZ => (4, 8, true),
        elem::FLOAT8E5M2 => (5, 15, false),
        elem::FLOAT8E5M2FNUZ => (5, 16, true),
        elem::FLOAT8E8M0 => {
            return if x == 0xff {
                f64::NAN
            } else {
                2f64.powi(x as i32 - 127)
            }
        }
        _ => return f64::NAN,
    };
    let mbits = 7 - ebits;
    let exp = ((x >> mbits) & ((1 << ebits) - 1)) as i32;
    let man = (x & ((1 << mbits) - 1)) as f64;
    let emax = (1 << ebits) - 1;
    if uz && x == 0x80 {
        return f64::NAN;
    }
    if !uz {
        if ebits == 4 && exp == emax && man == 7.0 {
            return f64::NAN;
        }
        if ebits == 5 && exp == emax {
            return if man == 0.0 {
                sign * f64::INFINITY
            } else {
                f64::NAN
            };
        }
    }
    let scale = (1u32 << mbits) as f64;
    sign * if exp == 0 {
        man / scale * 2f64.powi(1 - bias)
    } else {
        (1.0 + man / scale) * 2f64.powi(exp - bias)
    }
}

/// FLOAT4E2M1 (one nibble) to f64.
pub fn f4_to_f64(v: u8) -> f64 {
    const MAG: [f64; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
    let m = MAG[(v & 0x7) as usize];
    if v & 0x8 != 0 {
        -m
    } else {
        m
    }
}

// ---------------------------------------------------------------------------------------------
// Sequences and optionals (onnx-data.proto), read with a minimal protobuf wire decoder.

struct Wire<'a> {
    b: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Bytes(&'a [u8]),
    Skipped,
}

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// The next (field number, value), `Ok(None)` at the end, `Err` on malformed input.
    fn next(&mut self) -> std::result::Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let bad = || "malformed protobuf".to_string();
        let tag = self.varint().ok_or_else(bad)?;
        let field = tag >> 3;
        let value = match tag & 7 {
            0 => {
                self.varint().ok_or_else(bad)?;
                Field::Skipped
            }
            1 => {
                self.pos = self.pos.checked_add(8).ok_or_else(bad)?;
                Field::Skipped
            }
            2 => {
                let len = usize::try_from(self.varint().ok_or_else(bad)?).map_err(|_| bad())?;
                let end = self.pos.checked_add(len).ok_or_else(bad)?;
                let s = self.b.get(self.pos..end).ok_or_else(bad)?;
                self.pos = end;
                Field::Bytes(s)
            }
            5 => {
                self.pos = self.pos.checked_add(4).ok_or_else(bad)?;
                Field::Skipped
            }
            _ => return Err(bad()),
        };
        if self.pos > self.b.len() {
            return Err(bad());
        }
        Ok(Some((field, value)))
    }
}

const MAX_DEPTH: usize = 32;

impl HostValue {
    /// Parses a serialized test-data value whose declared type is `ty`: a `TensorProto`, a
    /// `SequenceProto` or an `OptionalProto`. `name` is used in errors.
    pub fn from_pb(name: &str, bytes: &[u8], ty: &ValueType) -> Result<HostValue> {
        Self::from_pb_depth(name, bytes, ty, 0)
    }

    fn from_pb_depth(name: &str, bytes: &[u8], ty: &ValueType, depth: usize) -> Result<HostValue> {
        if depth > MAX_DEPTH {
            return Err(terr(name, "values nested too deeply"));
        }
        let wire_err = |e: String| terr(name, e);
        match ty {
            ValueType::Tensor { .. } | ValueType::Unknown => {
                let mut t = HostTensor::from_pb(bytes).map_err(|e| rename(e, name))?;
                t.name = name.to_string();
                Ok(HostValue::Tensor(t))
            }
            ValueType::Sequence { elem: elem_ty } => {
                // SequenceProto: 1 name, 2 elem_type, 3 tensor_values, 4 sparse, 5 sequence_values,
                // 6 map_values, 7 optional_values.
                let mut items = Vec::new();
                let mut w = Wire { b: bytes, pos: 0 };
                while let Some((field, v)) = w.next().map_err(wire_err)? {
                    match (field, v) {
                        (3, Field::Bytes(b)) => {
                            let mut t = HostTensor::from_pb(b).map_err(|e| rename(e, name))?;
                            t.name = name.to_string();
                            items.push(HostValue::Tensor(t));
                        }
                        (5, Field::Bytes(b)) => {
                            items.push(Self::from_pb_depth(name, b, elem_ty, depth + 1)?)
                        }
                        (7, Field::Bytes(b)) => {
                            items.push(Self::from_pb_depth(name, b, elem_ty, depth + 1)?)
                        }
                        (4 | 6, _) => {
                            return Err(terr(
                                name,
                                "sequences of sparse tensors or maps are not supported",
                            ))
                        }
                        _ => {}
                    }
                }
                Ok(HostValue::Sequence(items))
            }
            ValueType::Optional { elem: elem_ty } => {
                // OptionalProto: 1 name, 2 elem_type, 3 tensor_value, 4 sparse, 5 sequence_value,
                // 6 map_value, 7 optional_value.
                let mut inner = None;
                let mut w = Wire { b: bytes, pos: 0 };
                while let Some((field, v)) = w.next().map_err(wire_err)? {
                    match (field, v) {
                        (3, Field::Bytes(b)) => {
                            let mut t = HostTensor::from_pb(b).map_err(|e| rename(e, name))?;
                            t.name = name.to_string();
                            inner = Some(Box::new(HostValue::Tensor(t)));
                        }
                        (5 | 7, Field::Bytes(b)) => {
                            inner =
                                Some(Box::new(Self::from_pb_depth(name, b, elem_ty, depth + 1)?))
                        }
                        (4 | 6, _) => {
                            return Err(terr(
                                name,
                                "optional sparse tensors or maps are not supported",
                            ))
                        }
                        _ => {}
                    }
                }
                Ok(HostValue::Optional(inner))
            }
            ValueType::Map { .. } => Err(terr(name, "map values are not supported")),
            ValueType::SparseTensor { .. } => Err(terr(name, "sparse tensors are not supported")),
        }
    }

    /// Creates the ONNX Runtime value; `Ok(None)` for an empty optional (ONNX Runtime takes
    /// that as an omitted input).
    pub fn to_ort(&self) -> Result<Option<DynValue>> {
        match self {
            HostValue::Tensor(t) => t.to_ort().map(Some),
            HostValue::Optional(None) => Ok(None),
            HostValue::Optional(Some(v)) => v.to_ort(),
            HostValue::Sequence(items) => {
                let mut tensors = Vec::with_capacity(items.len());
                for it in items {
                    match it {
                        HostValue::Tensor(t) => {
                            let v = t.to_ort()?;
                            let name = t.name.clone();
                            tensors.push(v.downcast::<DynTensorValueType>().map_err(|e| {
                                terr(&name, crate::ort_env::first_line(&e.to_string()))
                            })?);
                        }
                        _ => {
                            return Err(terr(
                                "<sequence>",
                                "only sequences of tensors can be given to ONNX Runtime",
                            ))
                        }
                    }
                }
                if tensors.is_empty() {
                    return Err(terr(
                        "<sequence>",
                        "ONNX Runtime cannot create an empty sequence value",
                    ));
                }
                let s = Sequence::new(tensors)
                    .map_err(|e| terr("<sequence>", crate::ort_env::first_line(&e.to_string())))?;
                Ok(Some(s.into_dyn()))
            }
        }
    }

    /// Copies an ONNX Runtime output (tensor or sequence of tensors) into host memory.
    pub fn from_ort(name: &str, v: &DynValue) -> Result<HostValue> {
        match v.dtype() {
            ort::value::ValueType::Tensor { .. } => {
                HostTensor::from_ort(name, v).map(HostValue::Tensor)
            }
            ort::value::ValueType::Sequence(_) => {
                let ort_err =
                    |e: ort::Error| terr(name, crate::ort_env::first_line(&e.to_string()));
                let view = v.view();
                let seq = view.downcast::<DynSequenceValueType>().map_err(ort_err)?;
                let items = seq
                    .try_extract_sequence::<DynValueTypeMarker>()
                    .map_err(ort_err)?;
                items
                    .iter()
                    .map(|it| HostValue::from_ort(name, it))
                    .collect::<Result<Vec<_>>>()
                    .map(HostValue::Sequence)
            }
            other => Err(terr(name, format!("{other} values are not supported"))),
        }
    }
}

fn rename(e: EngineError, name: &str) -> EngineError {
    match e {
        EngineError::Tensor { reason, .. } => terr(name, reason),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison

/// Tolerances for float comparison: |actual − expected| ≤ atol + rtol·|expected|.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Default for Tolerance {
    /// ONNX's backend test defaults.
    fn default() -> Self {
        Tolerance {
            rtol: 1e-3,
            atol: 1e-7,
        }
    }
}

fn close(e: f64, a: f64, tol: Tolerance) -> bool {
    if e.is_nan() || a.is_nan() {
        return e.is_nan() && a.is_nan();
    }
    if e.is_infinite() || a.is_infinite() {
        return e == a;
    }
    (a - e).abs() <= tol.atol + tol.rtol * e.abs()
}

/// Checks `actual` against `expected`: same kind, element type and shape; floats within `tol`
/// (NaN equals NaN); integers, bools and strings exactly. The error says where they differ.
pub fn compare(
    expected: &HostValue,
    actual: &HostValue,
    tol: Tolerance,
) -> std::result::Result<(), String> {
    match (expected, actual) {
        (HostValue::Optional(Some(e)), a) => compare(e, a, tol),
        (HostValue::Optional(None), HostValue::Optional(None)) => Ok(()),
        (HostValue::Optional(None), _) => Err("expected an empty optional, got a value".into()),
        (e, HostValue::Optional(Some(a))) => compare(e, a, tol),
        (HostValue::Tensor(e), HostValue::Tensor(a)) => compare_tensors(e, a, tol),
        (HostValue::Sequence(e), HostValue::Sequence(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "sequence of {} items, expected {}",
                    a.len(),
                    e.len()
                ));
            }
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                compare(x, y, tol).map_err(|m| format!("item {i}: {m}"))?;
            }
            Ok(())
        }
        (e, a) => Err(format!("expected {}, got {}", kind(e), kind(a))),
    }
}

fn kind(v: &HostValue) -> &'static str {
    match v {
        HostValue::Tensor(_) => "a tensor",
        HostValue::Sequence(_) => "a sequence",
        HostValue::Optional(Some(_)) => "an optional with a value",
        HostValue::Optional(None) => "an empty optional",
    }
}

/// Checks one tensor against another (see [`compare`]).
pub fn compare_tensors(
    e: &HostTensor,
    a: &HostTensor,
    tol: Tolerance,
) -> std::result::Result<(), String> {
    if e.elem_type != a.elem_type {
        return Err(format!(
            "element type {}, expected {}",
            elem_type_name(a.elem_type),
            elem_type_name(e.elem_type)
        ));
    }
    if e.dims != a.dims {
        return Err(format!("shape {:?}, expected {:?}", a.dims, e.dims));
    }
    let ea = e.to_array().map_err(|x| x.to_string())?;
    let aa = a.to_array().map_err(|x| x.to_string())?;
    let mismatch = |i: usize, x: String, y: String, count: usize, total: usize| {
        Err(format!(
            "{count} of {total} elements differ; first at flat index {i}: got {y}, expected {x}"
        ))
    };
    match (&ea, &aa) {
        (TypedArray::Float(x), TypedArray::Float(y)) => {
            let bad: Vec<usize> = (0..x.len()).filter(|&i| !close(x[i], y[i], tol)).collect();
            match bad.first() {
                Some(&i) => mismatch(i, x[i].to_string(), y[i].to_string(), bad.len(), x.len()),
                None => Ok(()),
            }
        }
        (TypedArray::Complex(x), TypedArray::Complex(y)) => {
            let bad: Vec<usize> = (0..x.len())
                .filter(|&i| !(close(x[i].0, y[i].0, tol) && close(x[i].1, y[i].1, tol)))
                .collect();
            match bad.first() {
                Some(&i) => mismatch(
                    i,
                    format!("{:?}", x[i]),
                    format!("{:?}", y[i]),
                    bad.len(),
                    x.len(),
                ),
                None => Ok(()),
            }
        }
        _ => {
            fn exact<T: PartialEq + std::fmt::Debug>(
                x: &[T],
                y: &[T],
            ) -> std::result::Result<(), String> {
                let bad: Vec<usize> = (0..x.len()).filter(|&i| x[i] != y[i]).collect();
                match bad.first() {
                    Some(&i) => Err(format!(
                        "{} of {} elements differ; first at flat index {i}: got {:?}, expected {:?}",
                        bad.len(),
                        x.len(),
                        y[i],
                        x[i]
                    )),
                    None => Ok(()),
                }
            }
            match (&ea, &aa) {
                (TypedArray::Int(x), TypedArray::Int(y)) => exact(x, y),
                (TypedArray::UInt(x), TypedArray::UInt(y)) => exact(x, y),
                (TypedArray::Bool(x), TypedArray::Bool(y)) => exact(x, y),
                (TypedArray::Str(x), TypedArray::Str(y)) => {
                    let xs: Vec<String> = x
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect();
                    let ys: Vec<String> = y
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect();
                    if x == y {
                        Ok(())
                    } else {
                        exact(&xs, &ys)
                    }
                }
                _ => Err("data kinds differ".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_values() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert!(f16_to_f64(0x7e00).is_nan());
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
    }

    #[test]
    fn f8_values() {
        assert_eq!(f8_to_f64(elem::FLOAT8E4M3FN, 0x38), 1.0);
        assert_eq!(f8_to_f64(elem::FLOAT8E4M3FN, 0x7e), 448.0);
        assert!(f8_to_f64(elem::FLOAT8E4M3FN, 0x7f).is_nan());
        assert_eq!(f8_to_f64(elem::FLOAT8E5M2, 0x3c), 1.0);
        assert_eq!(f8_to_f64(elem::FLOAT8E5M2, 0x7c), f64::INFINITY);
        assert_eq!(f8_to_f64(elem::FLOAT8E4M3FNUZ, 0x40), 1.0);
        assert!(f8_to_f64(elem::FLOAT8E4M3FNUZ, 0x80).is_nan());
        assert_eq!(f8_to_f64(elem::FLOAT8E5M2FNUZ, 0x40), 1.0);
        assert_eq!(f8_to_f64(elem::FLOAT8E8M0, 127), 1.0);
    }

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

    #[test]
    fn comparison_rules() {
        let a = HostValue::Tensor(HostTensor::from_f32("y", &[3], &[1.0, f32::NAN, 3.0]));
        let b = HostValue::Tensor(HostTensor::from_f32("y", &[3], &[1.0005, f32::NAN, 3.0]));
        let c = HostValue::Tensor(HostTensor::from_f32("y", &[3], &[1.1, f32::NAN, 3.0]));
        assert!(compare(&a, &b, Tolerance::default()).is_ok());
        let e = compare(&a, &c, Tolerance::default()).unwrap_err();
        assert!(e.contains("1 of 3") && e.contains("index 0"), "{e}");
        let d = HostValue::Tensor(HostTensor::from_f32("y", &[1, 3], &[1.0, f32::NAN, 3.0]));
        assert!(compare(&a, &d, Tolerance::default()).is_err());
    }
}
