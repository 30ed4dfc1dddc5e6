//! Shared ONNX helpers for every crate: domain checks, typed attribute access, float16 and
//! bfloat16 conversion, and one-line error text.

use onnx_protobuf::{AttributeProto, NodeProto};

pub use onnx_protobuf::attribute_proto::AttributeType;

/// Whether `domain` is ONNX's default operator domain (`""` or `"ai.onnx"`).
pub fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// Whether the node's op is in the default domain.
pub fn is_default_op(n: &NodeProto) -> bool {
    is_default_domain(&n.domain)
}

/// The node's attribute called `name`, of whatever type.
pub fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn typed<'a>(n: &'a NodeProto, name: &str, t: AttributeType) -> Option<&'a AttributeProto> {
    attr(n, name).filter(|a| a.type_.enum_value() == Ok(t))
}

/// The integer attribute `name`, if the node has one of type INT.
pub fn attr_int(n: &NodeProto, name: &str) -> Option<i64> {
    typed(n, name, AttributeType::INT).map(|a| a.i)
}

/// The float attribute `name`, if the node has one of type FLOAT.
pub fn attr_float(n: &NodeProto, name: &str) -> Option<f32> {
    typed(n, name, AttributeType::FLOAT).map(|a| a.f)
}

/// The integer-list attribute `name`, if the node has one of type INTS.
pub fn attr_ints<'a>(n: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    typed(n, name, AttributeType::INTS).map(|a| a.ints.as_slice())
}

/// The string attribute `name` (bytes read as UTF-8, lossily), if the node has one of type STRING.
pub fn attr_str(n: &NodeProto, name: &str) -> Option<String> {
    typed(n, name, AttributeType::STRING).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// Converts bfloat16 bits to float32 (exact).
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Converts a float32 to bfloat16 bits, rounding to nearest even; NaN stays NaN.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// Text on one line: the non-empty lines of `s`, trimmed and joined with "; " (engine and
/// decoder errors can span several lines).
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Converts a float32 to IEEE float16 bits, rounding to nearest even; out-of-range values
/// become ±infinity (callers clamp first where that matters).
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;
    if exp == 0xff {
        let nan = if man != 0 {
            0x0200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -11 {
            return sign;
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut r = m >> shift;
        let rem = m & ((1u32 << shift) - 1);
        if rem > half || (rem == half && (r & 1) == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1) {
        h += 1;
    }
    sign | h as u16
}

/// Converts IEEE float16 bits to float32 (exact).
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x03ff) as f32;
    match exp {
        0 => sign * man * 2f32.powi(-24),
        0x1f if man == 0.0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        _ => sign * (1.0 + man / 1024.0) * 2f32.powi(exp - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_and_brain_floats_round_trip() {
        for x in [0.0f32, 1.0, -2.0, 0.5, 65504.0, 2f32.powi(-24), -3.140625] {
            assert_eq!(f16_bits_to_f32(f32_to_f16_bits(x)), x);
            assert_eq!(bf16_bits_to_f32(f32_to_bf16_bits(x)), x.max(-3.140625));
        }
        assert_eq!(f16_bits_to_f32(0x3c00), 1.0);
        assert_eq!(f16_bits_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_bits_to_f32(0x7e00).is_nan());
        assert_eq!(f16_bits_to_f32(0xfc00), f32::NEG_INFINITY);
        assert_eq!(f32_to_bf16_bits(1.0 + 2f32.powi(-8)), 0x3f80); // tie to even
        assert!(bf16_bits_to_f32(f32_to_bf16_bits(f32::NAN)).is_nan());
    }

    #[test]
    fn attributes_are_read_by_type() {
        let mut n = NodeProto::new();
        let mut a = AttributeProto::new();
        a.name = "axis".into();
        a.type_ = AttributeType::INT.into();
        a.i = 3;
        n.attribute.push(a);
        assert_eq!(attr_int(&n, "axis"), Some(3));
        assert_eq!(attr_float(&n, "axis"), None);
        assert_eq!(attr_int(&n, "missing"), None);
        assert!(is_default_domain("") && is_default_domain("ai.onnx"));
        assert!(!is_default_domain("com.microsoft"));
        assert_eq!(one_line("a\n\n  b  \n"), "a; b");
    }
}
