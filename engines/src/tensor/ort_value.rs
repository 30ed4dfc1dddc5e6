//! The bridge between host values and ONNX Runtime: element type codes both ways, and copying
//! tensors, sequences and optionals into ONNX Runtime values and back.

use exporter::model::{elem, elem_type_name};
use ort::memory::Allocator;
use ort::value::{
    DynSequenceValueType, DynTensor, DynTensorValueType, DynValue, DynValueTypeMarker, Sequence,
    Tensor, TensorElementType,
};

use super::host::{terr, HostTensor, HostValue, Result, TensorData};
use crate::ort::first_line;

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

impl HostTensor {
    /// Creates an ONNX Runtime tensor with a copy of the data.
    pub fn to_ort(&self) -> Result<DynValue> {
        let ort_err = |e: ort::Error| terr(&self.name, first_line(&e.to_string()));
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
        let ort_err = |e: ort::Error| terr(name, first_line(&e.to_string()));
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
}

impl HostValue {
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
                            tensors.push(
                                v.downcast::<DynTensorValueType>()
                                    .map_err(|e| terr(&name, first_line(&e.to_string())))?,
                            );
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
                    .map_err(|e| terr("<sequence>", first_line(&e.to_string())))?;
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
                let ort_err = |e: ort::Error| terr(name, first_line(&e.to_string()));
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
