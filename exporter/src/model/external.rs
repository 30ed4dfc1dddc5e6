//! External data: where a tensor's `external_data` entries say its bytes are, checking that
//! location, and reading the bytes into `raw_data`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::TensorProto;

use super::dtype::{elem, elem_type_name, tensor_byte_len};
use super::Result;
use crate::ExportError;

pub(super) fn is_external(t: &TensorProto) -> bool {
    t.data_location.value() == DataLocation::EXTERNAL as i32
}

/// Where a tensor's external data is, as written in its `external_data` entries.
pub(super) struct ExternalRef {
    pub(super) location: String,
    pub(super) offset: u64,
    pub(super) length: Option<u64>,
}

pub(super) fn external_ref(t: &TensorProto) -> std::result::Result<ExternalRef, String> {
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
pub(super) fn check_location(location: &str) -> std::result::Result<(), String> {
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

pub(super) struct ExternalFiles<'a> {
    pub(super) model_path: &'a Path,
    pub(super) base: PathBuf,
    pub(super) open: HashMap<String, (File, u64)>,
}

impl ExternalFiles<'_> {
    pub(super) fn resolve(&mut self, t: &mut TensorProto) -> Result<()> {
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
