//! Saving: serialise a self-contained model, atomically, optionally moving large tensors
//! into one external data file beside it.

use std::io::Write;
use std::path::{Path, PathBuf};

use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{
    AttributeProto, FunctionProto, GraphProto, NodeProto, StringStringEntryProto, TensorProto,
};
use protobuf::{Message, MessageField};

use super::dtype::elem;
use super::external::check_location;
use super::visit::first_external;
use super::{ModelProto, Result, PROTOBUF_LIMIT};
use crate::atomic::{parent_dir, AtomicFile};
use crate::ExportError;

/// How [`save`] writes a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveOptions {
    /// Move every tensor whose `raw_data` holds at least this many bytes into one external data
    /// file; `None` keeps all data inside the model file. Tensors held in typed fields
    /// (`float_data`, …) stay inline.
    pub external_threshold: Option<usize>,
    /// Name of the external data file, relative to the model's folder; default
    /// `<model file name>.data`.
    pub external_location: Option<String>,
    /// Each external tensor starts at an offset that is a multiple of this (bytes; 0 means 1).
    pub alignment: u64,
    /// Also move tensors held in node attributes (e.g. `Constant` values), not only
    /// initializers.
    pub include_attribute_tensors: bool,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            external_threshold: None,
            external_location: None,
            alignment: 4096,
            include_attribute_tensors: false,
        }
    }
}

impl SaveOptions {
    /// Everything inside the model file.
    pub fn inline() -> Self {
        Self::default()
    }

    /// Initializers of at least `threshold` bytes go to `<model file name>.data`.
    pub fn external(threshold: usize) -> Self {
        SaveOptions {
            external_threshold: Some(threshold),
            ..Self::default()
        }
    }
}

/// What [`save`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedModel {
    /// Size of the model file.
    pub model_bytes: u64,
    /// The external data file, when at least one tensor was moved there.
    pub external_file: Option<PathBuf>,
    /// Number of tensors moved to the external data file.
    pub external_tensors: usize,
    /// Size of the external data file (alignment padding included).
    pub external_bytes: u64,
}

/// Serialises a self-contained model to bytes (no external data; at most 2 GiB).
pub fn to_bytes(model: &ModelProto) -> Result<Vec<u8>> {
    let path = Path::new("<memory>");
    refuse_external(model, path)?;
    let size = model.compute_size();
    if size > PROTOBUF_LIMIT {
        return Err(ExportError::TooLarge {
            path: path.to_path_buf(),
            bytes: size,
        });
    }
    model.write_to_bytes().map_err(|e| ExportError::Serialize {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Structural equality of two models, with NaN equal to NaN (float attributes such as tree
/// ensemble thresholds may hold NaN, which `==` on the protobuf structs never equates).
pub fn same_model(a: &ModelProto, b: &ModelProto) -> bool {
    if a == b {
        return true;
    }
    // Identical encodings mean identical content (NaN bit patterns included). Unknown fields
    // are kept in hash maps whose write order can vary, so this can only miss, not mislead.
    match (a.write_to_bytes(), b.write_to_bytes()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn refuse_external(model: &ModelProto, path: &Path) -> Result<()> {
    match first_external(model) {
        Some(name) => Err(ExportError::ExternalData {
            path: path.to_path_buf(),
            tensor: name,
            reason: "still refers to external data; load the model with model::load so its data is in memory".into(),
        }),
        None => Ok(()),
    }
}

/// Writes `model` to `path` atomically. With `opts.external_threshold`, large initializers go
/// to one external data file beside the model (written, fsynced and renamed first, so the
/// model file never points at a missing file). When no tensor reaches the threshold no data
/// file is written (an existing one of that name is left alone).
pub fn save(model: &ModelProto, path: impl AsRef<Path>, opts: &SaveOptions) -> Result<SavedModel> {
    let path = path.as_ref();
    refuse_external(model, path)?;
    let Some(threshold) = opts.external_threshold else {
        let bytes = write_model(model, path)?;
        return Ok(SavedModel {
            model_bytes: bytes,
            external_file: None,
            external_tensors: 0,
            external_bytes: 0,
        });
    };
    let opt_err = |reason: String| ExportError::SaveOptions {
        path: path.to_path_buf(),
        reason,
    };
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| opt_err("model path has no UTF-8 file name".into()))?;
    let location = match &opts.external_location {
        Some(l) => l.clone(),
        None => format!("{file_name}.data"),
    };
    check_location(&location).map_err(opt_err)?;
    let dir = parent_dir(path);
    let data_path = dir.join(&location);
    if data_path == path {
        return Err(opt_err(
            "external data file would overwrite the model file".into(),
        ));
    }

    let mut data_file = AtomicFile::create(&data_path)?;
    let mut ext = Externalizer {
        out: &mut data_file,
        offset: 0,
        threshold,
        align: opts.alignment.max(1),
        location: location.clone(),
        attrs: opts.include_attribute_tensors,
        moved: 0,
    };
    let stripped = ext.model(model).map_err(|source| ExportError::Io {
        path: data_path.clone(),
        source,
    })?;
    let (moved, data_bytes) = (ext.moved, ext.offset);
    let size = stripped.compute_size();
    if size > PROTOBUF_LIMIT {
        // Dropping `data_file` removes its temp file: nothing is left behind.
        return Err(ExportError::TooLarge {
            path: path.to_path_buf(),
            bytes: size,
        });
    }
    let external_file = if moved > 0 {
        data_file.commit()?;
        Some(data_path)
    } else {
        drop(data_file);
        None
    };
    let model_bytes = write_model(&stripped, path)?;
    Ok(SavedModel {
        model_bytes,
        external_file,
        external_tensors: moved,
        external_bytes: data_bytes,
    })
}

fn write_model(model: &ModelProto, path: &Path) -> Result<u64> {
    let size = model.compute_size();
    if size > PROTOBUF_LIMIT {
        return Err(ExportError::TooLarge {
            path: path.to_path_buf(),
            bytes: size,
        });
    }
    let mut f = AtomicFile::create(path)?;
    model
        .write_to_writer(&mut f)
        .map_err(|e| ExportError::Serialize {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    f.commit()?;
    Ok(size)
}

/// Clones a model, writing large tensor data to `out` instead of copying it (so a model of
/// several GiB is never held twice in memory).
struct Externalizer<'a> {
    out: &'a mut AtomicFile,
    offset: u64,
    threshold: usize,
    align: u64,
    location: String,
    attrs: bool,
    moved: usize,
}

impl Externalizer<'_> {
    fn model(&mut self, m: &ModelProto) -> std::io::Result<ModelProto> {
        Ok(ModelProto {
            ir_version: m.ir_version,
            opset_import: m.opset_import.clone(),
            producer_name: m.producer_name.clone(),
            producer_version: m.producer_version.clone(),
            domain: m.domain.clone(),
            model_version: m.model_version,
            doc_string: m.doc_string.clone(),
            graph: self.graph_field(&m.graph)?,
            metadata_props: m.metadata_props.clone(),
            training_info: m.training_info.clone(),
            functions: m
                .functions
                .iter()
                .map(|f| self.function(f))
                .collect::<std::io::Result<_>>()?,
            special_fields: m.special_fields.clone(),
        })
    }

    fn graph_field(
        &mut self,
        g: &MessageField<GraphProto>,
    ) -> std::io::Result<MessageField<GraphProto>> {
        Ok(match g.as_ref() {
            Some(g) => MessageField::some(self.graph(g)?),
            None => MessageField::none(),
        })
    }

    fn graph(&mut self, g: &GraphProto) -> std::io::Result<GraphProto> {
        Ok(GraphProto {
            node: g
                .node
                .iter()
                .map(|n| self.node(n))
                .collect::<std::io::Result<_>>()?,
            name: g.name.clone(),
            initializer: g
                .initializer
                .iter()
                .map(|t| self.tensor(t))
                .collect::<std::io::Result<_>>()?,
            sparse_initializer: g.sparse_initializer.clone(),
            doc_string: g.doc_string.clone(),
            input: g.input.clone(),
            output: g.output.clone(),
            value_info: g.value_info.clone(),
            quantization_annotation: g.quantization_annotation.clone(),
            metadata_props: g.metadata_props.clone(),
            special_fields: g.special_fields.clone(),
        })
    }

    fn function(&mut self, f: &FunctionProto) -> std::io::Result<FunctionProto> {
        let mut out = FunctionProto {
            node: Vec::with_capacity(f.node.len()),
            ..FunctionProto::default()
        };
        for n in &f.node {
            out.node.push(self.node(n)?);
        }
        out.name = f.name.clone();
        out.input = f.input.clone();
        out.output = f.output.clone();
        out.attribute = f.attribute.clone();
        out.attribute_proto = f.attribute_proto.clone();
        out.doc_string = f.doc_string.clone();
        out.opset_import = f.opset_import.clone();
        out.domain = f.domain.clone();
        out.overload = f.overload.clone();
        out.value_info = f.value_info.clone();
        out.metadata_props = f.metadata_props.clone();
        out.special_fields = f.special_fields.clone();
        Ok(out)
    }

    fn node(&mut self, n: &NodeProto) -> std::io::Result<NodeProto> {
        Ok(NodeProto {
            input: n.input.clone(),
            output: n.output.clone(),
            name: n.name.clone(),
            op_type: n.op_type.clone(),
            domain: n.domain.clone(),
            overload: n.overload.clone(),
            attribute: n
                .attribute
                .iter()
                .map(|a| self.attribute(a))
                .collect::<std::io::Result<_>>()?,
            doc_string: n.doc_string.clone(),
            metadata_props: n.metadata_props.clone(),
            special_fields: n.special_fields.clone(),
        })
    }

    fn attribute(&mut self, a: &AttributeProto) -> std::io::Result<AttributeProto> {
        let (t, tensors) = if self.attrs {
            (
                match a.t.as_ref() {
                    Some(t) => MessageField::some(self.tensor(t)?),
                    None => MessageField::none(),
                },
                a.tensors
                    .iter()
                    .map(|t| self.tensor(t))
                    .collect::<std::io::Result<_>>()?,
            )
        } else {
            (a.t.clone(), a.tensors.clone())
        };
        Ok(AttributeProto {
            name: a.name.clone(),
            ref_attr_name: a.ref_attr_name.clone(),
            doc_string: a.doc_string.clone(),
            type_: a.type_,
            f: a.f,
            i: a.i,
            s: a.s.clone(),
            t,
            g: self.graph_field(&a.g)?,
            sparse_tensor: a.sparse_tensor.clone(),
            tp: a.tp.clone(),
            floats: a.floats.clone(),
            ints: a.ints.clone(),
            strings: a.strings.clone(),
            tensors,
            graphs: a
                .graphs
                .iter()
                .map(|g| self.graph(g))
                .collect::<std::io::Result<_>>()?,
            sparse_tensors: a.sparse_tensors.clone(),
            type_protos: a.type_protos.clone(),
            special_fields: a.special_fields.clone(),
        })
    }

    fn tensor(&mut self, t: &TensorProto) -> std::io::Result<TensorProto> {
        // String tensors stay inline even when they carry `raw_data`: ONNX has no external
        // form for them and `load` refuses one (found by the `onnx_model` fuzz target).
        if t.raw_data.is_empty() || t.raw_data.len() < self.threshold || t.data_type == elem::STRING
        {
            return Ok(t.clone());
        }
        let pad = (self.align - self.offset % self.align) % self.align;
        if pad > 0 {
            self.out.write_all(&vec![0u8; pad as usize])?;
            self.offset += pad;
        }
        let offset = self.offset;
        let length = t.raw_data.len() as u64;
        self.out.write_all(&t.raw_data)?;
        self.offset += length;
        self.moved += 1;
        let entry = |k: &str, v: String| StringStringEntryProto {
            key: k.to_string(),
            value: v,
            ..Default::default()
        };
        Ok(TensorProto {
            dims: t.dims.clone(),
            data_type: t.data_type,
            segment: t.segment.clone(),
            float_data: t.float_data.clone(),
            int32_data: t.int32_data.clone(),
            string_data: t.string_data.clone(),
            int64_data: t.int64_data.clone(),
            name: t.name.clone(),
            doc_string: t.doc_string.clone(),
            raw_data: Vec::new(),
            external_data: vec![
                entry("location", self.location.clone()),
                entry("offset", offset.to_string()),
                entry("length", length.to_string()),
            ],
            data_location: DataLocation::EXTERNAL.into(),
            double_data: t.double_data.clone(),
            uint64_data: t.uint64_data.clone(),
            metadata_props: t.metadata_props.clone(),
            special_fields: t.special_fields.clone(),
        })
    }
}
