//! Small tensor and node helpers the passes share: reading float32 data, building int8/int64
//! initializers, naming nodes, reading a value's element type, collecting the names in use.

use std::collections::BTreeSet;

use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{type_proto, GraphProto, NodeProto, TensorProto, TypeProto, ValueInfoProto};

use super::{graph_err, Result};
use crate::model::{elem, elem_type_name, num_elements};

/// The float32 values of a tensor (raw_data or float_data).
pub fn f32_data(t: &TensorProto) -> Result<Vec<f32>> {
    if t.data_type != elem::FLOAT {
        return Err(graph_err(
            &t.name,
            format!("tensor is {}, not float32", elem_type_name(t.data_type)),
        ));
    }
    if t.data_location.value() == DataLocation::EXTERNAL as i32 {
        return Err(graph_err(
            &t.name,
            "tensor data is in an external file; load the model with exporter::model::load",
        ));
    }
    let n = num_elements(&t.dims)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| graph_err(&t.name, format!("invalid dims {:?}", t.dims)))?;
    let data: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    if data.len() != n {
        return Err(graph_err(
            &t.name,
            format!("{} values for dims {:?} ({n} elements)", data.len(), t.dims),
        ));
    }
    Ok(data)
}

fn tensor_raw(name: &str, data_type: i32, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type,
        dims: dims.to_vec(),
        raw_data: raw,
        ..Default::default()
    }
}

/// An int8 tensor stored in `raw_data`.
pub(crate) fn tensor_i8(name: &str, dims: &[i64], data: &[i8]) -> TensorProto {
    tensor_raw(
        name,
        elem::INT8,
        dims,
        data.iter().map(|&x| x as u8).collect(),
    )
}

/// An int64 tensor stored little-endian in `raw_data`.
pub(crate) fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    tensor_raw(
        name,
        elem::INT64,
        dims,
        data.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// `n` with its name set.
pub(crate) fn named(mut n: NodeProto, name: &str) -> NodeProto {
    n.name = name.to_string();
    n
}

/// The element type of a tensor type (None for sequences, maps, …).
pub(crate) fn tensor_elem_type(t: &TypeProto) -> Option<i32> {
    match &t.value {
        Some(type_proto::Value::TensorType(tt)) => Some(tt.elem_type),
        _ => None,
    }
}

/// The element type a value info declares, if it is a tensor.
pub(crate) fn value_elem(v: &ValueInfoProto) -> Option<i32> {
    v.type_.as_ref().and_then(tensor_elem_type)
}

/// Every name in use in `g` (and its subgraphs, with `recurse`): node names, node inputs and
/// outputs, initializers, graph inputs and outputs.
pub(crate) fn collect_names(g: &GraphProto, recurse: bool, used: &mut BTreeSet<String>) {
    for n in &g.node {
        used.extend(n.input.iter().chain(&n.output).cloned());
        used.insert(n.name.clone());
        if recurse {
            for a in &n.attribute {
                for sg in a.g.iter().chain(&a.graphs) {
                    collect_names(sg, true, used);
                }
            }
        }
    }
    used.extend(g.initializer.iter().map(|t| t.name.clone()));
    used.extend(g.input.iter().chain(&g.output).map(|v| v.name.clone()));
}

/// The names in use in a graph; the names a pass gives new nodes and initializers must be
/// free (passes never rename).
pub(crate) struct NameSet(BTreeSet<String>);

impl NameSet {
    /// The names in `g` (and its subgraphs, with `recurse`).
    pub(crate) fn new(g: &GraphProto, recurse: bool) -> Self {
        let mut used = BTreeSet::new();
        collect_names(g, recurse, &mut used);
        NameSet(used)
    }

    /// Takes `name`, or fails with `taken` (naming it) when the graph has it already.
    pub(crate) fn fresh(&mut self, name: String, taken: &str) -> Result<String> {
        if !self.0.insert(name.clone()) {
            return Err(graph_err(&name, taken));
        }
        Ok(name)
    }
}
