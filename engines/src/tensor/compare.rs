//! Comparing values the way ONNX's backend test runner does: same kind, element type and
//! shape; floats within rtol/atol (NaN equals NaN); everything else exactly.

use exporter::model::elem_type_name;

use super::host::{HostTensor, HostValue, TypedArray};

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
