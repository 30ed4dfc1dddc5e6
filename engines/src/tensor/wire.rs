//! Sequences and optionals of the ONNX backend test data (`SequenceProto` / `OptionalProto`
//! files, onnx-data.proto), read with a minimal protobuf wire decoder.

use exporter::model::ValueType;

use super::host::{rename, terr, HostTensor, HostValue, Result};

struct Wire<'a> {
    b: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Bytes(&'a [u8]),
    Skipped,
}

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// The next (field number, value), `Ok(None)` at the end, `Err` on malformed input.
    fn next(&mut self) -> std::result::Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let bad = || "malformed protobuf".to_string();
        let tag = self.varint().ok_or_else(bad)?;
        let field = tag >> 3;
        let value = match tag & 7 {
            0 => {
                self.varint().ok_or_else(bad)?;
                Field::Skipped
            }
            1 => {
                self.pos = self.pos.checked_add(8).ok_or_else(bad)?;
                Field::Skipped
            }
            2 => {
                let len = usize::try_from(self.varint().ok_or_else(bad)?).map_err(|_| bad())?;
                let end = self.pos.checked_add(len).ok_or_else(bad)?;
                let s = self.b.get(self.pos..end).ok_or_else(bad)?;
                self.pos = end;
                Field::Bytes(s)
            }
            5 => {
                self.pos = self.pos.checked_add(4).ok_or_else(bad)?;
                Field::Skipped
            }
            _ => return Err(bad()),
        };
        if self.pos > self.b.len() {
            return Err(bad());
        }
        Ok(Some((field, value)))
    }
}

const MAX_DEPTH: usize = 32;
impl HostValue {
    /// Parses a serialized test-data value whose declared type is `ty`: a `TensorProto`, a
    /// `SequenceProto` or an `OptionalProto`. `name` is used in errors.
    pub fn from_pb(name: &str, bytes: &[u8], ty: &ValueType) -> Result<HostValue> {
        Self::from_pb_depth(name, bytes, ty, 0)
    }

    fn from_pb_depth(name: &str, bytes: &[u8], ty: &ValueType, depth: usize) -> Result<HostValue> {
        if depth > MAX_DEPTH {
            return Err(terr(name, "values nested too deeply"));
        }
        let wire_err = |e: String| terr(name, e);
        // A `TensorProto` item, named after the value it belongs to.
        let tensor = |b: &[u8]| -> Result<HostValue> {
            let mut t = HostTensor::from_pb(b).map_err(|e| rename(e, name))?;
            t.name = name.to_string();
            Ok(HostValue::Tensor(t))
        };
        match ty {
            ValueType::Tensor { .. } | ValueType::Unknown => tensor(bytes),
            ValueType::Sequence { elem: elem_ty } => {
                // SequenceProto: 1 name, 2 elem_type, 3 tensor_values, 4 sparse, 5 sequence_values,
                // 6 map_values, 7 optional_values.
                let mut items = Vec::new();
                let mut w = Wire { b: bytes, pos: 0 };
                while let Some((field, v)) = w.next().map_err(wire_err)? {
                    match (field, v) {
                        (3, Field::Bytes(b)) => items.push(tensor(b)?),
                        (5 | 7, Field::Bytes(b)) => {
                            items.push(Self::from_pb_depth(name, b, elem_ty, depth + 1)?)
                        }
                        (4 | 6, _) => {
                            return Err(terr(
                                name,
                                "sequences of sparse tensors or maps are not supported",
                            ))
                        }
                        _ => {}
                    }
                }
                Ok(HostValue::Sequence(items))
            }
            ValueType::Optional { elem: elem_ty } => {
                // OptionalProto: 1 name, 2 elem_type, 3 tensor_value, 4 sparse, 5 sequence_value,
                // 6 map_value, 7 optional_value.
                let mut inner = None;
                let mut w = Wire { b: bytes, pos: 0 };
                while let Some((field, v)) = w.next().map_err(wire_err)? {
                    match (field, v) {
                        (3, Field::Bytes(b)) => inner = Some(Box::new(tensor(b)?)),
                        (5 | 7, Field::Bytes(b)) => {
                            inner =
                                Some(Box::new(Self::from_pb_depth(name, b, elem_ty, depth + 1)?))
                        }
                        (4 | 6, _) => {
                            return Err(terr(
                                name,
                                "optional sparse tensors or maps are not supported",
                            ))
                        }
                        _ => {}
                    }
                }
                Ok(HostValue::Optional(inner))
            }
            ValueType::Map { .. } => Err(terr(name, "map values are not supported")),
            ValueType::SparseTensor { .. } => Err(terr(name, "sparse tensors are not supported")),
        }
    }
}
