//! Caller-owned OpenVINO tensors for step decoding: an [`OvTensor`] is made once from host
//! data (or copied once out of an infer request's output) and then bound to a request's input
//! by reference as often as needed (OpenVINO shares its buffer; nothing is copied at binding),
//! so a decoder's KV cache and encoder output can live between steps without a host round trip.

use openvino::{ElementType, Shape, Tensor};

use super::engine::ov_text;
use crate::EngineError;

/// A tensor the caller owns: bound to infer requests by reference; written only by the one
/// inference it is bound to as an output (before anyone shares it), then read-only.
pub struct OvTensor(pub(super) Tensor);

// SAFETY: no `&mut` access to an `OvTensor`'s buffer leaves this module; OpenVINO writes into
// one only during the inference it was bound to as an output (`OvEngine::bind_output`), which
// the step that made it runs before the tensor is shared (step decoders put it behind an `Arc`
// afterwards). OpenVINO's tensor is a shared pointer to a host buffer: reading that buffer or
// binding it to a request (which copies the shared pointer, an atomic count) from several
// threads at once is what OpenVINO's own multi-request use does.
unsafe impl Sync for OvTensor {}

fn terr(name: &str, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Tensor {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

/// Element types an [`OvTensor`] is made from.
pub trait OvElement: Copy {
    const TYPE: ElementType;
    const NAME: &'static str;
    fn to_ne(self) -> [u8; 8];
    fn width() -> usize;
}

impl OvElement for f32 {
    const TYPE: ElementType = ElementType::F32;
    const NAME: &'static str = "float32";
    fn to_ne(self) -> [u8; 8] {
        let b = self.to_ne_bytes();
        [b[0], b[1], b[2], b[3], 0, 0, 0, 0]
    }
    fn width() -> usize {
        4
    }
}

impl OvElement for i64 {
    const TYPE: ElementType = ElementType::I64;
    const NAME: &'static str = "int64";
    fn to_ne(self) -> [u8; 8] {
        self.to_ne_bytes()
    }
    fn width() -> usize {
        8
    }
}

impl OvTensor {
    /// A tensor of `dims` holding `data` (row-major); `name` labels errors.
    pub fn new<T: OvElement>(
        name: &str,
        dims: &[i64],
        data: &[T],
    ) -> Result<OvTensor, EngineError> {
        let n = dims
            .iter()
            .try_fold(1i64, |a, &d| if d < 0 { None } else { a.checked_mul(d) });
        if n.map(|n| n as usize) != Some(data.len()) {
            return Err(terr(
                name,
                format!("shape {dims:?} does not hold {} values", data.len()),
            ));
        }
        let shape = Shape::new(dims).map_err(|e| terr(name, ov_text(e)))?;
        let mut t = Tensor::new(T::TYPE, &shape).map_err(|e| terr(name, ov_text(e)))?;
        // an empty tensor has no buffer to fill (and may have no pointer at all)
        if !data.is_empty() {
            let raw = t.get_raw_data_mut().map_err(|e| terr(name, ov_text(e)))?;
            let w = T::width();
            for (dst, v) in raw.chunks_exact_mut(w).zip(data) {
                dst.copy_from_slice(&v.to_ne()[..w]);
            }
        }
        Ok(OvTensor(t))
    }

    /// A copy of a request's tensor (an output the request will overwrite at its next run).
    pub(super) fn copy_of(name: &str, t: &Tensor) -> Result<OvTensor, EngineError> {
        let e = |e: openvino::InferenceError| terr(name, ov_text(e));
        let ty = t.get_element_type().map_err(e)?;
        let shape = t.get_shape().map_err(e)?;
        let mut own = Tensor::new(ty, &shape).map_err(e)?;
        if t.get_byte_size().map_err(e)? > 0 {
            own.get_raw_data_mut()
                .map_err(e)?
                .copy_from_slice(t.get_raw_data().map_err(e)?);
        }
        Ok(OvTensor(own))
    }

    /// A zero-filled tensor of `dims` (an output buffer the caller binds before a run).
    pub fn zeros<T: OvElement>(name: &str, dims: &[i64]) -> Result<OvTensor, EngineError> {
        let shape = Shape::new(dims).map_err(|e| terr(name, ov_text(e)))?;
        Tensor::new(T::TYPE, &shape)
            .map(OvTensor)
            .map_err(|e| terr(name, ov_text(e)))
    }

    /// Where its data starts (null for an empty tensor): tells whether a request wrote into
    /// this tensor or into a buffer of its own.
    pub(super) fn data_ptr(t: &Tensor) -> *const u8 {
        match t.get_byte_size() {
            Ok(n) if n > 0 => t.get_raw_data().map_or(std::ptr::null(), |d| d.as_ptr()),
            _ => std::ptr::null(),
        }
    }

    /// The tensor's dims.
    pub fn dims(&self) -> Result<Vec<i64>, EngineError> {
        Ok(self
            .0
            .get_shape()
            .map_err(|e| terr("tensor", ov_text(e)))?
            .get_dimensions()
            .to_vec())
    }
}

/// The dims and last `count` f32 values of a request tensor named `name` (an error names any
/// other element type).
pub(super) fn f32_values(
    name: &str,
    t: &Tensor,
    count: usize,
) -> Result<(Vec<i64>, Vec<f32>), EngineError> {
    let e = |e: openvino::InferenceError| terr(name, ov_text(e));
    let ty = t.get_element_type().map_err(e)?;
    if ty != ElementType::F32 {
        return Err(terr(
            name,
            format!("is {}, not {}", super::engine::elem_name(ty), f32::NAME),
        ));
    }
    let dims = t.get_shape().map_err(e)?.get_dimensions().to_vec();
    if t.get_byte_size().map_err(e)? == 0 {
        return Ok((dims, Vec::new()));
    }
    let raw = t.get_raw_data().map_err(e)?;
    let skip = (raw.len() / 4).saturating_sub(count);
    let data = raw[4 * skip..]
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((dims, data))
}
