//! What `voxq inspect` shows about a model: its interface (typed inputs and outputs), opsets,
//! op histogram and initializer sizes.

use std::collections::BTreeMap;
use std::fmt;

use onnx_protobuf::{type_proto, GraphProto, TensorProto, TypeProto};
use protobuf::MessageField;
use serde::Serialize;

use super::dtype::{elem, elem_type_name, tensor_byte_len};
use super::external::{external_ref, is_external};
use super::ModelProto;
use crate::onnx::qualified_op;

/// An ONNX element type code that prints (and serialises) as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ElemType(pub i32);

impl ElemType {
    pub fn name(self) -> &'static str {
        elem_type_name(self.0)
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for ElemType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One dimension of a declared tensor shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named free dimension (`batch`, `T`, …).
    Symbolic(String),
    /// Neither a size nor a name.
    Unknown,
}

impl Dim {
    /// The size, when fixed.
    pub fn value(&self) -> Option<i64> {
        match self {
            Dim::Fixed(v) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Symbolic(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// The declared type of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ValueType {
    /// `dims` is `None` when the rank is not declared.
    Tensor {
        elem_type: ElemType,
        dims: Option<Vec<Dim>>,
    },
    SparseTensor {
        elem_type: ElemType,
        dims: Option<Vec<Dim>>,
    },
    Sequence {
        elem: Box<ValueType>,
    },
    Optional {
        elem: Box<ValueType>,
    },
    Map {
        key: ElemType,
        value: Box<ValueType>,
    },
    /// No type given.
    Unknown,
}

impl ValueType {
    /// Reads an ONNX `TypeProto`.
    pub fn from_proto(t: &TypeProto) -> ValueType {
        fn shape(s: &MessageField<onnx_protobuf::TensorShapeProto>) -> Option<Vec<Dim>> {
            s.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| {
                        use onnx_protobuf::tensor_shape_proto::dimension::Value;
                        match &d.value {
                            Some(Value::DimValue(v)) => Dim::Fixed(*v),
                            Some(Value::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
                            _ => Dim::Unknown,
                        }
                    })
                    .collect()
            })
        }
        let elem = |e: &MessageField<TypeProto>| {
            Box::new(e.as_ref().map_or(ValueType::Unknown, ValueType::from_proto))
        };
        match &t.value {
            Some(type_proto::Value::TensorType(tt)) => ValueType::Tensor {
                elem_type: ElemType(tt.elem_type),
                dims: shape(&tt.shape),
            },
            Some(type_proto::Value::SparseTensorType(tt)) => ValueType::SparseTensor {
                elem_type: ElemType(tt.elem_type),
                dims: shape(&tt.shape),
            },
            Some(type_proto::Value::SequenceType(s)) => ValueType::Sequence {
                elem: elem(&s.elem_type),
            },
            Some(type_proto::Value::OptionalType(o)) => ValueType::Optional {
                elem: elem(&o.elem_type),
            },
            Some(type_proto::Value::MapType(m)) => ValueType::Map {
                key: ElemType(m.key_type),
                value: elem(&m.value_type),
            },
            _ => ValueType::Unknown,
        }
    }

    /// Declared rank of a tensor type.
    pub fn rank(&self) -> Option<usize> {
        match self {
            ValueType::Tensor { dims: Some(d), .. }
            | ValueType::SparseTensor { dims: Some(d), .. } => Some(d.len()),
            _ => None,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims = |f: &mut fmt::Formatter<'_>, d: &Option<Vec<Dim>>| match d {
            Some(d) => {
                let s: Vec<String> = d.iter().map(|x| x.to_string()).collect();
                write!(f, "[{}]", s.join(","))
            }
            None => f.write_str("[?]"),
        };
        match self {
            ValueType::Tensor { elem_type, dims: d } => {
                write!(f, "{elem_type}")?;
                dims(f, d)
            }
            ValueType::SparseTensor { elem_type, dims: d } => {
                write!(f, "sparse {elem_type}")?;
                dims(f, d)
            }
            ValueType::Sequence { elem } => write!(f, "seq({elem})"),
            ValueType::Optional { elem } => write!(f, "optional({elem})"),
            ValueType::Map { key, value } => write!(f, "map({key}, {value})"),
            ValueType::Unknown => f.write_str("?"),
        }
    }
}

/// A named graph input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ValueType,
}

impl fmt::Display for IoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.ty)
    }
}

/// An operator set the model imports (`""` is the default ONNX domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpsetSummary {
    pub domain: String,
    pub version: i64,
}

/// What `voxq inspect` shows about a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelSummary {
    pub ir_version: i64,
    pub producer: String,
    pub opsets: Vec<OpsetSummary>,
    /// Graph inputs that are not initializers (what a caller must feed).
    pub inputs: Vec<IoSummary>,
    pub outputs: Vec<IoSummary>,
    /// Nodes of the main graph (subgraph nodes not included).
    pub node_count: usize,
    /// Op types of the main graph's nodes; ops outside the default domain are `domain:Op`.
    pub op_types: BTreeMap<String, usize>,
    pub initializer_count: usize,
    /// Data bytes of the main graph's initializers (inline or external).
    pub initializer_bytes: u64,
    pub function_count: usize,
}

/// Describes a model's interface and contents.
pub fn summary(m: &ModelProto) -> ModelSummary {
    let empty = GraphProto::default();
    let g = m.graph.as_ref().unwrap_or(&empty);
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let io = |v: &onnx_protobuf::ValueInfoProto| IoSummary {
        name: v.name.clone(),
        ty: v
            .type_
            .as_ref()
            .map_or(ValueType::Unknown, ValueType::from_proto),
    };
    let mut op_types = BTreeMap::new();
    for n in &g.node {
        *op_types.entry(qualified_op(n)).or_insert(0) += 1;
    }
    let producer = match (m.producer_name.is_empty(), m.producer_version.is_empty()) {
        (false, false) => format!("{} {}", m.producer_name, m.producer_version),
        _ => format!("{}{}", m.producer_name, m.producer_version),
    };
    ModelSummary {
        ir_version: m.ir_version,
        producer,
        opsets: m
            .opset_import
            .iter()
            .map(|o| OpsetSummary {
                domain: o.domain.clone(),
                version: o.version,
            })
            .collect(),
        inputs: g
            .input
            .iter()
            .filter(|v| !inits.contains(v.name.as_str()))
            .map(io)
            .collect(),
        outputs: g.output.iter().map(io).collect(),
        node_count: g.node.len(),
        op_types,
        initializer_count: g.initializer.len(),
        initializer_bytes: g.initializer.iter().map(tensor_data_bytes).sum(),
        function_count: m.functions.len(),
    }
}

/// Bytes of a tensor's data wherever it is held.
pub fn tensor_data_bytes(t: &TensorProto) -> u64 {
    if !t.raw_data.is_empty() {
        return t.raw_data.len() as u64;
    }
    if is_external(t) {
        if let Ok(r) = external_ref(t) {
            if let Some(l) = r.length {
                return l;
            }
        }
    }
    if t.data_type == elem::STRING {
        return t.string_data.iter().map(|s| s.len() as u64).sum();
    }
    tensor_byte_len(t.data_type, &t.dims).unwrap_or(0)
}
