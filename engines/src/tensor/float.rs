//! Narrow float formats widened to f64: float16 (through `exporter::onnx`), the 8-bit float
//! formats of ONNX and FLOAT4E2M1.

use exporter::model::elem;
use exporter::onnx::f16_bits_to_f32;

/// IEEE half precision to f64.
pub fn f16_to_f64(h: u16) -> f64 {
    f16_bits_to_f32(h) as f64
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
}
