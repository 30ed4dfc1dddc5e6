//! float32 → float16 conversion of tensors, node attributes (Constant values, Cast targets,
//! dtype attributes) and value_info, over a graph body and its subgraphs.

use std::collections::BTreeSet;

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto,
};

use super::super::tensors::f32_data;
use super::super::weights::{f16_scale, F16_MAX};
use super::super::Result;
use crate::model::elem;
use crate::onnx::builders::tensor_f32;
use crate::onnx::{f32_to_f16_bits, is_default_op};

/// Rewrites a float32 tensor as float16 in place (`scale`: clamp to a normal float16 > 0).
fn tensor_to_f16(t: &mut TensorProto, scale: bool) -> Result<()> {
    let data = f32_data(t)?;
    t.raw_data = data
        .iter()
        .map(|&x| {
            let x = if scale {
                f16_scale(x)
            } else {
                x.clamp(-F16_MAX, F16_MAX)
            };
            f32_to_f16_bits(x)
        })
        .flat_map(u16::to_le_bytes)
        .collect();
    t.float_data.clear();
    t.data_type = elem::FLOAT16;
    Ok(())
}

/// Changes a tensor value info of element type `from` to `to`.
pub(super) fn retype(v: &mut ValueInfoProto, from: i32, to: i32) {
    if let Some(t) = v.type_.as_mut() {
        if let Some(type_proto::Value::TensorType(tt)) = t.value.as_mut() {
            if tt.elem_type == from {
                tt.elem_type = to;
            }
        }
    }
}

/// Converts Constant values, Cast targets and dtype attributes from float32 to float16.
fn node_attrs_to_f16(n: &mut NodeProto) -> Result<()> {
    let default = is_default_op(n);
    for a in n.attribute.iter_mut() {
        if let Some(t) = a.t.as_mut() {
            if t.data_type == elem::FLOAT {
                tensor_to_f16(t, false)?;
            }
        }
        if default {
            match (n.op_type.as_str(), a.name.as_str()) {
                ("Cast", "to") | (_, "dtype") if a.i == elem::FLOAT as i64 => {
                    a.i = elem::FLOAT16 as i64;
                }
                _ => {}
            }
        }
    }
    if default && n.op_type == "Constant" {
        // value_float / value_floats become a float16 `value` tensor.
        if let Some(k) = n
            .attribute
            .iter()
            .position(|a| a.name == "value_float" || a.name == "value_floats")
        {
            let a = n.attribute.remove(k);
            let (dims, vals) = if a.name == "value_float" {
                (vec![], vec![a.f])
            } else {
                (vec![a.floats.len() as i64], a.floats.clone())
            };
            let mut t = tensor_f32("", &dims, &vals);
            tensor_to_f16(&mut t, false)?;
            n.attribute.push(AttributeProto {
                name: "value".into(),
                type_: AttributeType::TENSOR.into(),
                t: Some(t).into(),
                ..Default::default()
            });
        }
    }
    Ok(())
}

/// The float16 pass over one graph body (initializers, node attributes, value_info),
/// recursing into subgraphs. `keep32` names initializers that stay float32; `scales` those
/// converted as Q/DQ scales.
pub(super) fn graph_to_f16(
    g: &mut GraphProto,
    keep32: &BTreeSet<String>,
    scales: &BTreeSet<String>,
) -> Result<()> {
    for t in g.initializer.iter_mut() {
        if t.data_type == elem::FLOAT && !keep32.contains(&t.name) {
            tensor_to_f16(t, scales.contains(&t.name))?;
        }
    }
    for n in g.node.iter_mut() {
        node_attrs_to_f16(n)?;
        for a in n.attribute.iter_mut() {
            for sg in a.g.as_mut().into_iter().chain(a.graphs.iter_mut()) {
                graph_to_f16(sg, keep32, scales)?;
                // a subgraph's interface is inside the float16 model (an If branch's outputs
                // become the If's float16 outputs); only the main graph keeps float32 at its
                // edges, through Casts
                for v in sg.input.iter_mut().chain(sg.output.iter_mut()) {
                    retype(v, elem::FLOAT, elem::FLOAT16);
                }
            }
        }
    }
    for v in g.value_info.iter_mut() {
        retype(v, elem::FLOAT, elem::FLOAT16);
    }
    Ok(())
}

/// Graph inputs that are initializers follow their initializer's new type.
pub(super) fn retype_initializer_inputs(g: &mut GraphProto) {
    let inits16: BTreeSet<String> = g
        .initializer
        .iter()
        .filter(|t| t.data_type == elem::FLOAT16)
        .map(|t| t.name.clone())
        .collect();
    for v in g.input.iter_mut() {
        if inits16.contains(&v.name) {
            retype(v, elem::FLOAT, elem::FLOAT16);
        }
    }
}
