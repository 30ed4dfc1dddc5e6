//! ONNX model files: load and save `ModelProto`, including tensors kept in external data files.
//!
//! [`load`] returns a self-contained model: every tensor whose data lives in an external file
//! (ONNX `data_location = EXTERNAL`, `location`/`offset`/`length` entries) is read into
//! `raw_data`, after checking the claimed range against the real file size. [`save`] writes
//! atomically (temp file in the same folder, fsync, rename) and can move large initializers
//! into one external data file beside the model, which is the only way past protobuf's 2 GiB
//! limit on a single message. [`summary`] describes a model's interface for `voxq inspect`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{
    type_proto, AttributeProto, FunctionProto, GraphProto, NodeProto, StringStringEntryProto,
    TensorProto, TypeProto,
};
use protobuf::{Message, MessageField};
use serde::Serialize;

pub use onnx_protobuf::ModelProto;

use crate::atomic::{parent_dir, AtomicFile};
use crate::ExportError;

type Result<T> = std::result::Result<T, ExportError>;

/// The largest message protobuf can serialise or parse (2 GiB − 1 bytes).
pub const PROTOBUF_LIMIT: u64 = i32::MAX as u64;

/// ONNX `TensorProto.DataType` codes, including those newer than the IR-10 schema we compile.
pub mod elem {
    pub const UNDEFINED: i32 = 0;
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const COMPLEX64: i32 = 14;
    pub const COMPLEX128: i32 = 15;
    pub const BFLOAT16: i32 = 16;
    pub const FLOAT8E4M3FN: i32 = 17;
    pub const FLOAT8E4M3FNUZ: i32 = 18;
    pub const FLOAT8E5M2: i32 = 19;
    pub const FLOAT8E5M2FNUZ: i32 = 20;
    pub const UINT4: i32 = 21;
    pub const INT4: i32 = 22;
    pub const FLOAT4E2M1: i32 = 23;
    pub const FLOAT8E8M0: i32 = 24;
    pub const UINT2: i32 = 25;
    pub const INT2: i32 = 26;
}

/// A short lower-case name of an ONNX element type code (`float32`, `int64`, …).
pub fn elem_type_name(code: i32) -> &'static str {
    match code {
        elem::FLOAT => "float32",
        elem::UINT8 => "uint8",
        elem::INT8 => "int8",
        elem::UINT16 => "uint16",
        elem::INT16 => "int16",
        elem::INT32 => "int32",
        elem::INT64 => "int64",
        elem::STRING => "string",
        elem::BOOL => "bool",
        elem::FLOAT16 => "float16",
        elem::DOUBLE => "float64",
        elem::UINT32 => "uint32",
        elem::UINT64 => "uint64",
        elem::COMPLEX64 => "complex64",
        elem::COMPLEX128 => "complex128",
        elem::BFLOAT16 => "bfloat16",
        elem::FLOAT8E4M3FN => "float8e4m3fn",
        elem::FLOAT8E4M3FNUZ => "float8e4m3fnuz",
        elem::FLOAT8E5M2 => "float8e5m2",
        elem::FLOAT8E5M2FNUZ => "float8e5m2fnuz",
        elem::UINT4 => "uint4",
        elem::INT4 => "int4",
        elem::FLOAT4E2M1 => "float4e2m1",
        elem::FLOAT8E8M0 => "float8e8m0",
        elem::UINT2 => "uint2",
        elem::INT2 => "int2",
        elem::UNDEFINED => "undefined",
        _ => "unknown",
    }
}

/// Bits per element of a fixed-size ONNX element type; `None` for strings and unknown codes.
pub fn elem_bits(code: i32) -> Option<u64> {
    Some(match code {
        elem::UINT2 | elem::INT2 => 2,
        elem::UINT4 | elem::INT4 | elem::FLOAT4E2M1 => 4,
        elem::UINT8
        | elem::INT8
        | elem::BOOL
        | elem::FLOAT8E4M3FN
        | elem::FLOAT8E4M3FNUZ
        | elem::FLOAT8E5M2
        | elem::FLOAT8E5M2FNUZ
        | elem::FLOAT8E8M0 => 8,
        elem::UINT16 | elem::INT16 | elem::FLOAT16 | elem::BFLOAT16 => 16,
        elem::FLOAT | elem::INT32 | elem::UINT32 => 32,
        elem::INT64 | elem::UINT64 | elem::DOUBLE | elem::COMPLEX64 => 64,
        elem::COMPLEX128 => 128,
        _ => return None,
    })
}

/// Number of elements of a tensor with these dims; `None` for negative dims or overflow.
pub fn num_elements(dims: &[i64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, &d| {
        u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// Bytes the packed little-endian data (`raw_data` layout) of such a tensor occupies.
pub fn tensor_byte_len(data_type: i32, dims: &[i64]) -> Option<u64> {
    let bits = elem_bits(data_type)?;
    let n = num_elements(dims)?;
    Some(n.checked_mul(bits)?.div_ceil(8))
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Reads an ONNX model file and resolves its external data (relative to the model's folder)
/// into `raw_data`, so the returned model is self-contained. The main graph's structure is
/// checked ([`crate::graph::check_graph`]: no cycle, no dangling input, data as large as the
/// shapes claim).
pub fn load(path: impl AsRef<Path>) -> Result<ModelProto> {
    let path = path.as_ref();
    let io_err = |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        return Err(parse_err(path, "is a folder, not a model file".into()));
    }
    let file = File::open(path).map_err(io_err)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    if let Err(reason) = check_top_level(&mut reader, meta.len()) {
        return Err(parse_err(path, explain_failure(&reason, &file_head(path))));
    }
    reader.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let parsed = ModelProto::parse_from_reader(&mut reader);
    drop(reader);
    let mut model = match parsed {
        Ok(m) => m,
        Err(e) => {
            return Err(parse_err(
                path,
                explain_failure(&format!("protobuf decoding failed: {e}"), &file_head(path)),
            ))
        }
    };
    if let Err(reason) = check_model(&model, meta.len()) {
        return Err(parse_err(path, explain_failure(&reason, &file_head(path))));
    }
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut files = ExternalFiles {
        model_path: path,
        base,
        open: HashMap::new(),
    };
    visit_tensors_mut(&mut model, &mut |t| files.resolve(t))?;
    check_structure(path, &mut model)?;
    Ok(model)
}

/// The checks every loaded model passes: the main graph's structure
/// ([`crate::graph::check_graph`], whose errors name nodes), then every tensor the model holds
/// (subgraphs, functions, training graphs, sparse tensors; the main graph's again, a length
/// comparison each) against its dims, so that no tensor is accepted in memory that its own
/// external-data form would refuse.
fn check_structure(path: &Path, model: &mut ModelProto) -> Result<()> {
    crate::graph::check_graph(&model.graph).map_err(|reason| parse_err(path, reason))?;
    visit_tensors_mut(model, &mut |t| {
        crate::graph::check_tensor(t, &|| {
            if t.name.is_empty() {
                "an unnamed tensor (a node attribute, in a subgraph or function)".to_string()
            } else {
                format!("tensor '{}'", t.name)
            }
        })
        .map_err(|reason| parse_err(path, reason))
    })
}

/// Parses a model held in memory; `name` is used in errors. A model whose tensors refer to
/// external data files is refused (there is no folder to resolve them against): use [`load`].
pub fn load_bytes(name: &str, bytes: &[u8]) -> Result<ModelProto> {
    let path = Path::new(name);
    if let Err(reason) = check_top_level(&mut std::io::Cursor::new(bytes), bytes.len() as u64) {
        return Err(parse_err(path, explain_failure(&reason, head(bytes))));
    }
    let mut model = ModelProto::parse_from_bytes(bytes).map_err(|e| {
        parse_err(
            path,
            explain_failure(&format!("protobuf decoding failed: {e}"), head(bytes)),
        )
    })?;
    if let Err(reason) = check_model(&model, bytes.len() as u64) {
        return Err(parse_err(path, explain_failure(&reason, head(bytes))));
    }
    visit_tensors_mut(&mut model, &mut |t| {
        if is_external(t) {
            Err(ExportError::ExternalData {
                path: path.to_path_buf(),
                tensor: t.name.clone(),
                reason: "data lives in an external file, which an in-memory model cannot resolve; load the model from its file".into(),
            })
        } else {
            Ok(())
        }
    })?;
    check_structure(path, &mut model)?;
    Ok(model)
}

/// Walks the top-level protobuf fields, checking that each one fits in the file.
///
/// rust-protobuf does not notice a top-level length-delimited field (the graph) that runs past
/// the end of its input: it stops at EOF and returns what it has. A truncated file would then
/// load as a smaller model, so the field lengths are checked here first (only the top level is
/// walked; nested messages are bounded by their parent and checked by the parser).
fn check_top_level<R: Read + Seek>(r: &mut R, len: u64) -> std::result::Result<(), String> {
    fn varint<R: Read>(r: &mut R) -> std::result::Result<(u64, u64), String> {
        let mut v = 0u64;
        for i in 0..10u64 {
            let mut b = [0u8; 1];
            r.read_exact(&mut b)
                .map_err(|_| "file ends inside a protobuf varint (truncated?)".to_string())?;
            v |= ((b[0] & 0x7f) as u64) << (7 * i);
            if b[0] & 0x80 == 0 {
                return Ok((v, i + 1));
            }
        }
        Err("malformed protobuf varint".into())
    }
    let mut pos = 0u64;
    while pos < len {
        let (tag, n) = varint(r)?;
        pos += n;
        let field = tag >> 3;
        if field == 0 {
            return Err(format!(
                "not a protobuf message (field number 0 at byte {})",
                pos - n
            ));
        }
        let skip = match tag & 7 {
            0 => {
                let (_, n) = varint(r)?;
                pos += n;
                0
            }
            1 => 8,
            2 => {
                let (l, n) = varint(r)?;
                pos += n;
                l
            }
            5 => 4,
            w => {
                return Err(format!(
                    "not a protobuf message (wire type {w} at byte {})",
                    pos - n
                ))
            }
        };
        let left = len.saturating_sub(pos);
        if skip > left {
            return Err(format!(
                "field {field} needs {skip} bytes at byte {pos} but the file ends {left} bytes later (truncated?)"
            ));
        }
        r.seek(SeekFrom::Current(skip as i64))
            .map_err(|e| format!("seek: {e}"))?;
        pos += skip;
    }
    Ok(())
}

fn parse_err(path: &Path, reason: String) -> ExportError {
    ExportError::Parse {
        path: path.to_path_buf(),
        reason,
    }
}

/// What makes a parsed protobuf an ONNX model rather than bytes that happened to decode.
fn check_model(m: &ModelProto, file_len: u64) -> std::result::Result<(), String> {
    if file_len == 0 {
        return Err("empty file".into());
    }
    if m.ir_version <= 0 {
        return Err("no ir_version".into());
    }
    let Some(g) = m.graph.as_ref() else {
        return Err("no graph".into());
    };
    if m.opset_import.is_empty() && m.ir_version >= 3 {
        return Err("no opset_import (file truncated?)".into());
    }
    if g.node.is_empty() && g.output.is_empty() {
        return Err("graph has no nodes and no outputs".into());
    }
    Ok(())
}

fn file_head(path: &Path) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = File::open(path) {
        let _ = f.take(512).read_to_end(&mut buf);
    }
    buf
}

fn head(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(512)]
}

/// Appends a guess at what the file really is, when its first bytes say so.
fn explain_failure(reason: &str, head: &[u8]) -> String {
    match sniff(head) {
        Some(kind) => format!("{reason}; the file looks like {kind}"),
        None => reason.to_string(),
    }
}

fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.is_empty() {
        return None;
    }
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"RIFF") && head.len() >= 12 && &head[8..12] == b"WAVE" {
        return Some("a WAV audio file");
    }
    if starts(b"fLaC") || starts(b"OggS") || starts(b"ID3") {
        return Some("an audio file");
    }
    if starts(b"PK\x03\x04") {
        return Some("a zip archive (a PyTorch checkpoint?)");
    }
    if starts(b"GGUF") {
        return Some("a GGUF model");
    }
    if starts(b"\x89HDF") {
        return Some("an HDF5 file");
    }
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Some("a Python pickle");
    }
    if let Ok(text) = std::str::from_utf8(trim_partial_utf8(head)) {
        if text
            .chars()
            .all(|c| !c.is_control() || c.is_ascii_whitespace())
        {
            return Some("a text file");
        }
    }
    None
}

/// Drops a UTF-8 sequence cut at the end of a 512-byte head.
fn trim_partial_utf8(b: &[u8]) -> &[u8] {
    match std::str::from_utf8(b) {
        Ok(_) => b,
        Err(e) if e.error_len().is_none() => &b[..e.valid_up_to()],
        Err(_) => b,
    }
}

fn is_external(t: &TensorProto) -> bool {
    t.data_location.value() == DataLocation::EXTERNAL as i32
}

/// Where a tensor's external data is, as written in its `external_data` entries.
struct ExternalRef {
    location: String,
    offset: u64,
    length: Option<u64>,
}

fn external_ref(t: &TensorProto) -> std::result::Result<ExternalRef, String> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        match kv.key.as_str() {
            "location" => location = Some(kv.value.clone()),
            "offset" => {
                offset = kv
                    .value
                    .trim()
                    .parse()
                    .map_err(|_| format!("offset '{}' is not a byte count", kv.value))?
            }
            "length" => {
                length = Some(
                    kv.value
                        .trim()
                        .parse()
                        .map_err(|_| format!("length '{}' is not a byte count", kv.value))?,
                )
            }
            _ => {}
        }
    }
    let location = location.ok_or("no 'location' entry")?;
    Ok(ExternalRef {
        location,
        offset,
        length,
    })
}

/// A relative path that stays inside the model's folder.
fn check_location(location: &str) -> std::result::Result<(), String> {
    if location.is_empty() {
        return Err("empty location".into());
    }
    let p = Path::new(location);
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => {
                return Err(format!(
                    "location '{location}' must be a relative path inside the model's folder"
                ))
            }
        }
    }
    Ok(())
}

struct ExternalFiles<'a> {
    model_path: &'a Path,
    base: PathBuf,
    open: HashMap<String, (File, u64)>,
}

impl ExternalFiles<'_> {
    fn resolve(&mut self, t: &mut TensorProto) -> Result<()> {
        if !is_external(t) {
            return Ok(());
        }
        let err = |reason: String| ExportError::ExternalData {
            path: self.model_path.to_path_buf(),
            tensor: t.name.clone(),
            reason,
        };
        let r = external_ref(t).map_err(err)?;
        check_location(&r.location).map_err(err)?;
        if t.data_type == elem::STRING {
            return Err(err(
                "string tensors cannot be stored as external data".into()
            ));
        }
        let expected = tensor_byte_len(t.data_type, &t.dims);
        if !self.open.contains_key(&r.location) {
            let full = self.base.join(&r.location);
            let file = File::open(&full).map_err(|e| {
                err(format!(
                    "cannot open external file '{}' ({}): {e}",
                    r.location,
                    full.display()
                ))
            })?;
            let meta = file
                .metadata()
                .map_err(|e| err(format!("external file '{}': {e}", r.location)))?;
            if !meta.is_file() {
                return Err(err(format!(
                    "external file '{}' is not a regular file",
                    r.location
                )));
            }
            self.open.insert(r.location.clone(), (file, meta.len()));
        }
        let Some((file, size)) = self.open.get_mut(&r.location) else {
            return Err(err(format!("external file '{}' vanished", r.location)));
        };
        let size = *size;
        if r.offset > size {
            return Err(err(format!(
                "offset {} is past the end of '{}' ({size} bytes)",
                r.offset, r.location
            )));
        }
        let length = match (r.length, expected) {
            (Some(l), Some(e)) if l != e => {
                return Err(err(format!(
                    "length {l} does not match dims {:?} of {} ({e} bytes)",
                    t.dims,
                    elem_type_name(t.data_type)
                )))
            }
            (Some(l), _) => l,
            (None, Some(e)) => e,
            (None, None) => size - r.offset,
        };
        match r.offset.checked_add(length) {
            Some(end) if end <= size => {}
            _ => {
                return Err(err(format!(
                    "offset {} + length {length} runs past the end of '{}' ({size} bytes)",
                    r.offset, r.location
                )))
            }
        }
        let read_err = |e: std::io::Error| err(format!("reading '{}': {e}", r.location));
        file.seek(SeekFrom::Start(r.offset)).map_err(read_err)?;
        // `length` is bounded by the real file size checked above, so this allocation is too.
        let mut data = Vec::with_capacity(length as usize);
        file.take(length).read_to_end(&mut data).map_err(read_err)?;
        if data.len() as u64 != length {
            return Err(err(format!(
                "'{}' ended after {} of {length} bytes",
                r.location,
                data.len()
            )));
        }
        t.raw_data = data;
        t.external_data.clear();
        t.data_location = DataLocation::DEFAULT.into();
        Ok(())
    }
}

type TensorVisitor<'a> = dyn FnMut(&mut TensorProto) -> Result<()> + 'a;

/// Calls `f` on every tensor a model holds: initializers (also sparse ones), tensors in node
/// attributes, in subgraphs, in functions and in training graphs.
fn visit_tensors_mut(m: &mut ModelProto, f: &mut TensorVisitor<'_>) -> Result<()> {
    if let Some(g) = m.graph.as_mut() {
        visit_graph_mut(g, f)?;
    }
    for func in &mut m.functions {
        for n in &mut func.node {
            visit_node_mut(n, f)?;
        }
    }
    for ti in &mut m.training_info {
        if let Some(g) = ti.initialization.as_mut() {
            visit_graph_mut(g, f)?;
        }
        if let Some(g) = ti.algorithm.as_mut() {
            visit_graph_mut(g, f)?;
        }
    }
    Ok(())
}

fn visit_graph_mut(g: &mut GraphProto, f: &mut TensorVisitor<'_>) -> Result<()> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for s in &mut g.sparse_initializer {
        visit_sparse_mut(s, f)?;
    }
    for n in &mut g.node {
        visit_node_mut(n, f)?;
    }
    Ok(())
}

fn visit_sparse_mut(
    s: &mut onnx_protobuf::SparseTensorProto,
    f: &mut TensorVisitor<'_>,
) -> Result<()> {
    if let Some(t) = s.values.as_mut() {
        f(t)?;
    }
    if let Some(t) = s.indices.as_mut() {
        f(t)?;
    }
    Ok(())
}

fn visit_node_mut(n: &mut NodeProto, f: &mut TensorVisitor<'_>) -> Result<()> {
    for a in &mut n.attribute {
        if let Some(t) = a.t.as_mut() {
            f(t)?;
        }
        for t in &mut a.tensors {
            f(t)?;
        }
        if let Some(s) = a.sparse_tensor.as_mut() {
            visit_sparse_mut(s, f)?;
        }
        for s in &mut a.sparse_tensors {
            visit_sparse_mut(s, f)?;
        }
        if let Some(g) = a.g.as_mut() {
            visit_graph_mut(g, f)?;
        }
        for g in &mut a.graphs {
            visit_graph_mut(g, f)?;
        }
    }
    Ok(())
}

/// The first tensor that still points at external data, if any.
fn first_external(m: &ModelProto) -> Option<String> {
    // The visitor needs `&mut`; a clone of a model that has external tensors would copy only
    // small inline data, but to stay cheap we walk immutably by hand.
    fn graph(g: &GraphProto) -> Option<String> {
        for t in &g.initializer {
            if is_external(t) {
                return Some(t.name.clone());
            }
        }
        for s in &g.sparse_initializer {
            if let Some(n) = sparse(s) {
                return Some(n);
            }
        }
        g.node.iter().find_map(node)
    }
    fn sparse(s: &onnx_protobuf::SparseTensorProto) -> Option<String> {
        [s.values.as_ref(), s.indices.as_ref()]
            .into_iter()
            .flatten()
            .find(|t| is_external(t))
            .map(|t| t.name.clone())
    }
    fn node(n: &NodeProto) -> Option<String> {
        for a in &n.attribute {
            for t in a.t.as_ref().into_iter().chain(a.tensors.iter()) {
                if is_external(t) {
                    return Some(t.name.clone());
                }
            }
            for s in a
                .sparse_tensor
                .as_ref()
                .into_iter()
                .chain(a.sparse_tensors.iter())
            {
                if let Some(n) = sparse(s) {
                    return Some(n);
                }
            }
            for g in a.g.as_ref().into_iter().chain(a.graphs.iter()) {
                if let Some(n) = graph(g) {
                    return Some(n);
                }
            }
        }
        None
    }
    m.graph
        .as_ref()
        .and_then(graph)
        .or_else(|| {
            m.functions
                .iter()
                .find_map(|f| f.node.iter().find_map(node))
        })
        .or_else(|| {
            m.training_info.iter().find_map(|ti| {
                ti.initialization
                    .as_ref()
                    .and_then(graph)
                    .or_else(|| ti.algorithm.as_ref().and_then(graph))
            })
        })
}

// ---------------------------------------------------------------------------------------------
// Saving

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

// ---------------------------------------------------------------------------------------------
// Summary

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
        let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}:{}", n.domain, n.op_type)
        };
        *op_types.entry(key).or_insert(0) += 1;
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
