//! Domain checks and typed attribute access on ONNX nodes.

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

/// The node's op as tables show it: `Op` in the default domain, `domain:Op` elsewhere.
pub fn qualified_op(n: &NodeProto) -> String {
    if is_default_op(n) {
        n.op_type.clone()
    } else {
        format!("{}:{}", n.domain, n.op_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::one_line;

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
