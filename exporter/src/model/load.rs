//! Loading: parse a model file (or bytes), check it is an ONNX model and structurally sound,
//! and resolve its external data into memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use protobuf::Message;

use super::external::{is_external, ExternalFiles};
use super::sniff::{explain_failure, file_head, head};
use super::visit::visit_tensors_mut;
use super::{ModelProto, Result};
use crate::ExportError;

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
