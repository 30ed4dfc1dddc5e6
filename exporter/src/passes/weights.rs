//! Symmetric int8 weight quantization and the float16 rounding of scales.

use super::{graph_err, Result};
use crate::onnx::{f16_bits_to_f32, f32_to_f16_bits};

/// The scale given to a weight channel whose values are all zero. Any positive scale
/// quantizes zeros to 0; this one is the smallest normal float16, so the scale stays positive
/// (and normal) after [`super::to_float16`]. TensorRT rejects scales that are not > 0.
pub const ZERO_CHANNEL_SCALE: f32 = 6.103_515_6e-5; // 2^-14

/// The largest finite float16.
pub(crate) const F16_MAX: f32 = 65504.0;

/// Rounds a positive scale to the float16 value it will have, kept normal and finite.
pub(crate) fn f16_scale(s: f32) -> f32 {
    f16_bits_to_f32(f32_to_f16_bits(s.clamp(ZERO_CHANNEL_SCALE, F16_MAX)))
}

/// Symmetric int8 quantization of a weight: per channel along `axis` (or one scale), values
/// rounded half to even and clamped to [-127, 127]. Returns (int8 values, scales).
pub fn quantize_weight(
    name: &str,
    data: &[f32],
    dims: &[i64],
    axis: Option<usize>,
) -> Result<(Vec<i8>, Vec<f32>)> {
    if let Some(bad) = data.iter().find(|x| !x.is_finite()) {
        return Err(graph_err(
            name,
            format!("weight holds a non-finite value ({bad})"),
        ));
    }
    let (outer, channels, inner) = match axis {
        Some(a) => {
            let d = |r: &[i64]| r.iter().map(|&x| x.max(0) as usize).product::<usize>();
            let c = dims.get(a).copied().ok_or_else(|| {
                graph_err(name, format!("axis {a} out of range for dims {dims:?}"))
            })?;
            (d(&dims[..a]), c.max(0) as usize, d(&dims[a + 1..]))
        }
        None => (1, 1, data.len()),
    };
    if outer * channels * inner != data.len() {
        return Err(graph_err(
            name,
            format!("{} values do not match dims {dims:?}", data.len()),
        ));
    }
    let mut amax = vec![0f32; channels];
    for o in 0..outer {
        for (c, m) in amax.iter_mut().enumerate() {
            let base = (o * channels + c) * inner;
            for &x in &data[base..base + inner] {
                *m = m.max(x.abs());
            }
        }
    }
    let scales: Vec<f32> = amax
        .iter()
        .map(|&m| {
            let s = m / 127.0;
            if s > 0.0 && s.is_finite() {
                s
            } else {
                ZERO_CHANNEL_SCALE
            }
        })
        .collect();
    let mut q = vec![0i8; data.len()];
    for o in 0..outer {
        for (c, &s) in scales.iter().enumerate() {
            let base = (o * channels + c) * inner;
            for k in base..base + inner {
                q[k] = (data[k] / s).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
        }
    }
    Ok((q, scales))
}
