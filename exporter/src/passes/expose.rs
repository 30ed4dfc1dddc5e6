//! The expose-activations pass: extra graph outputs for the tensors a calibration run reads.

use std::collections::{BTreeMap, BTreeSet};

use onnx_protobuf::{type_proto, ModelProto, TypeProto, ValueInfoProto};

use super::tensors::tensor_elem_type;
use super::Result;
use crate::model::{elem, elem_type_name};
use crate::ExportError;

fn float_type(shape_from: Option<&TypeProto>) -> TypeProto {
    let shape = shape_from.and_then(|t| match &t.value {
        Some(type_proto::Value::TensorType(tt)) => tt.shape.clone().into_option(),
        _ => None,
    });
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: elem::FLOAT,
            shape: shape.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A copy of `model` whose graph outputs also include each of `tensors` (as float32, with the
/// shape its value_info declares, if any). Existing outputs keep their place; tensors that are
/// outputs already are not added twice. A tensor the graph does not have, or one declared with
/// a non-float type, is an error.
pub fn expose_activations(model: &ModelProto, tensors: &BTreeSet<String>) -> Result<ModelProto> {
    let mut m = model.clone();
    let g = m.graph.mut_or_insert_default();
    let mut known: BTreeSet<&str> = BTreeSet::new();
    for n in &g.node {
        known.extend(
            n.output
                .iter()
                .filter(|s| !s.is_empty())
                .map(String::as_str),
        );
    }
    known.extend(g.input.iter().map(|v| v.name.as_str()));
    let declared: BTreeMap<&str, &ValueInfoProto> = g
        .value_info
        .iter()
        .chain(g.input.iter())
        .chain(g.output.iter())
        .map(|v| (v.name.as_str(), v))
        .collect();
    let outputs: BTreeSet<&str> = g.output.iter().map(|v| v.name.as_str()).collect();
    let mut add = Vec::new();
    for t in tensors {
        if !known.contains(t.as_str()) {
            let what = if g.initializer.iter().any(|i| &i.name == t) {
                "is an initializer (a constant), not an activation"
            } else {
                "is not produced by any node or graph input"
            };
            return Err(ExportError::Graph {
                node: format!("tensor '{t}'"),
                reason: format!("cannot expose it: it {what}"),
            });
        }
        if outputs.contains(t.as_str()) {
            log::debug!("expose: '{t}' is a graph output already; not added twice");
            continue;
        }
        let ty = declared.get(t.as_str()).and_then(|v| v.type_.as_ref());
        if let Some(e) = ty.and_then(tensor_elem_type) {
            if e != elem::FLOAT && e != elem::UNDEFINED {
                return Err(ExportError::Graph {
                    node: format!("tensor '{t}'"),
                    reason: format!(
                        "cannot expose it for calibration: it is {}, not float32",
                        elem_type_name(e)
                    ),
                });
            }
        }
        add.push(ValueInfoProto {
            name: t.clone(),
            type_: Some(float_type(ty)).into(),
            ..Default::default()
        });
    }
    g.output.extend(add);
    Ok(m)
}
