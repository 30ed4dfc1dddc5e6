//! Small builders for ONNX protobuf pieces: nodes, attributes, value infos, float tensors,
//! models.
//!
//! The attribute builders are named `int_attr`/`str_attr` (what they make), apart from the
//! readers `attr_int`/`attr_str` in [`crate::onnx`]. Rewrite passes use them to create the
//! nodes and initializers they insert; tests use them to write tiny graphs.

use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::AttributeType;
use crate::model::elem;

/// A node of the default domain with the given inputs and outputs (no name, no attributes).
pub fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i: v,
        ..Default::default()
    }
}

/// A string attribute.
pub fn str_attr(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::STRING.into(),
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A float32 tensor stored little-endian in `raw_data`.
pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: elem::FLOAT,
        dims: dims.to_vec(),
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A tensor value info; a negative dimension becomes a symbolic one named `d{index}`.
pub fn value_info(name: &str, elem_type: i32, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for (i, &d) in dims.iter().enumerate() {
        let mut dim = Dimension::new();
        dim.value = Some(if d >= 0 {
            dimension::Value::DimValue(d)
        } else {
            dimension::Value::DimParam(format!("d{i}"))
        });
        shape.dim.push(dim);
    }
    let tt = type_proto::Tensor {
        elem_type,
        shape: Some(shape).into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tt)),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

/// A model around `graph` importing the default domain at `opset` (IR version 8).
pub fn model(graph: GraphProto, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: 8,
        producer_name: "voxq".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
            ..Default::default()
        }],
        graph: Some(graph).into(),
        ..Default::default()
    }
}
