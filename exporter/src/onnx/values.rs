//! Tensor value readers: the numbers a `TensorProto` (raw or typed fields) or a `Constant`
//! node holds.

use std::borrow::Cow;

use onnx_protobuf::{NodeProto, TensorProto};

use super::float::{bf16_bits_to_f32, f16_bits_to_f32};
use crate::model::{elem, elem_type_name, num_elements};

/// Every stored value is zero (an empty tensor counts as zero).
pub fn all_zero(t: &TensorProto) -> bool {
    t.raw_data.iter().all(|&b| b == 0)
        && t.int32_data.iter().all(|&x| x == 0)
        && t.int64_data.iter().all(|&x| x == 0)
        && t.uint64_data.iter().all(|&x| x == 0)
        && t.float_data.iter().all(|&x| x == 0.0)
        && t.double_data.iter().all(|&x| x == 0.0)
}

/// The values of a float-typed tensor (float32, float64, float16, bfloat16).
pub fn tensor_floats(t: &TensorProto) -> Result<Vec<f32>, String> {
    let n = num_elements(&t.dims).ok_or("bad dims")? as usize;
    let raw = !t.raw_data.is_empty();
    let v: Vec<f32> = match t.data_type {
        elem::FLOAT if raw => t
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        elem::FLOAT => t.float_data.clone(),
        elem::DOUBLE if raw => t
            .raw_data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        elem::DOUBLE => t.double_data.iter().map(|&x| x as f32).collect(),
        elem::FLOAT16 | elem::BFLOAT16 => {
            let bits: Vec<u16> = if raw {
                t.raw_data
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect()
            } else {
                t.int32_data.iter().map(|&x| x as u16).collect()
            };
            if t.data_type == elem::FLOAT16 {
                bits.into_iter().map(f16_bits_to_f32).collect()
            } else {
                bits.into_iter().map(bf16_bits_to_f32).collect()
            }
        }
        other => return Err(format!("type {}", elem_type_name(other))),
    };
    if v.len() != n {
        return Err(format!("{} values for {n} elements", v.len()));
    }
    Ok(v)
}

/// The values of an 8/16/32/64-bit integer tensor (raw, or in `int32_data` / `int64_data`).
pub fn tensor_ints(t: &TensorProto) -> Option<Vec<i64>> {
    let raw = &t.raw_data;
    if raw.is_empty() {
        return match t.data_type {
            elem::INT64 => Some(t.int64_data.clone()),
            elem::INT8 | elem::UINT8 | elem::INT16 | elem::UINT16 | elem::INT32 => {
                Some(t.int32_data.iter().map(|&x| x as i64).collect())
            }
            _ => None,
        };
    }
    Some(match t.data_type {
        elem::INT8 => raw.iter().map(|&b| b as i8 as i64).collect(),
        elem::UINT8 => raw.iter().map(|&b| b as i64).collect(),
        elem::INT16 => raw
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        elem::UINT16 => raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        elem::INT32 => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        elem::INT64 => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        _ => return None,
    })
}

/// The value of a `Constant` node as a tensor: its `value` attribute, or a tensor made from
/// `value_float(s)` / `value_int(s)`; `None` for other ops and other value kinds.
pub fn constant_value(n: &NodeProto) -> Option<Cow<'_, TensorProto>> {
    if n.op_type != "Constant" {
        return None;
    }
    for a in &n.attribute {
        match a.name.as_str() {
            "value" => return a.t.as_ref().map(Cow::Borrowed),
            "value_float" => return Some(Cow::Owned(float_tensor(&[a.f], &[]))),
            "value_floats" => {
                return Some(Cow::Owned(float_tensor(
                    &a.floats,
                    &[a.floats.len() as i64],
                )))
            }
            "value_int" => return Some(Cow::Owned(int_tensor(&[a.i], &[]))),
            "value_ints" => return Some(Cow::Owned(int_tensor(&a.ints, &[a.ints.len() as i64]))),
            _ => {}
        }
    }
    None
}

fn float_tensor(v: &[f32], dims: &[i64]) -> TensorProto {
    TensorProto {
        data_type: elem::FLOAT,
        dims: dims.to_vec(),
        float_data: v.to_vec(),
        ..Default::default()
    }
}

fn int_tensor(v: &[i64], dims: &[i64]) -> TensorProto {
    TensorProto {
        data_type: elem::INT64,
        dims: dims.to_vec(),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from `inspect` with the readers it checks.
    #[test]
    fn zero_checks() {
        let mut t = TensorProto {
            data_type: elem::UINT8,
            dims: vec![2],
            raw_data: vec![0, 0],
            ..Default::default()
        };
        assert!(all_zero(&t));
        t.raw_data = vec![0, 128];
        assert!(!all_zero(&t));
        assert_eq!(tensor_ints(&t), Some(vec![0, 128]));
        t.data_type = elem::INT8;
        assert_eq!(tensor_ints(&t), Some(vec![0, -128]));
    }
}
