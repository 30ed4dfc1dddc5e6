//! Whisper's decoder step on OpenVINO: the encoder output and the cross-attention keys and
//! values are caller-owned OpenVINO tensors bound by reference at every step (the cross KV
//! copied out of the request once per window); each step's present self-attention keys and
//! values are written by OpenVINO straight into tensors the caller allocated and bound as
//! outputs, which the next step binds as its past (copied out only if OpenVINO used buffers of
//! its own); only the last position's logits are read.

use std::sync::Arc;

use engines::openvino::{OvEngine, OvTensor};

use super::model::{Kv, Whisper};
use crate::error::Result;

/// One decoder step over `st` with `new` tokens; returns the last position's logits.
pub(super) fn step(
    w: &Whisper,
    dec: &mut OvEngine,
    st: &mut Kv<OvTensor>,
    new: &[u32],
) -> Result<Vec<f32>> {
    let c = &w.config;
    let n = &w.names;
    let ids: Vec<i64> = new.iter().map(|&t| t as i64).collect();
    dec.bind(
        "input_ids",
        &OvTensor::new("input_ids", &[1, ids.len() as i64], &ids)?,
    )?;
    dec.bind("encoder_hidden_states", &st.encoder_out)?;
    // zero-length past: the first step (no tensor to share yet)
    let empty = OvTensor::new::<f32>(
        "past_key_values",
        &[1, c.n_heads as i64, 0, c.head_dim as i64],
        &[],
    )?;
    for j in 0..2 * c.n_layers {
        dec.bind(
            &n.past_self[j],
            st.self_kv.get(j).map_or(&empty, |t| t.as_ref()),
        )?;
        dec.bind(&n.past_cross[j], st.cross_kv.get(j).unwrap_or(&empty))?;
    }
    // this step's present self-attention KV is written straight into tensors the next step
    // binds
    let past = match st.self_kv.first() {
        Some(t) => t.dims()?.get(2).copied().unwrap_or(0),
        None => 0,
    };
    let present = dec.bind_new_outputs(
        &n.present_self,
        &[
            1,
            c.n_heads as i64,
            past + ids.len() as i64,
            c.head_dim as i64,
        ],
    )?;
    dec.infer()?;
    let (dims, last) = dec.output_tail("logits", c.vocab_size)?;
    w.check_vocab(dims.last().copied().unwrap_or(0), last.len())?;
    st.self_kv = dec
        .keep_outputs(&n.present_self, present)?
        .into_iter()
        .map(Arc::new)
        .collect();
    if st.cross_kv.is_empty() {
        st.cross_kv = Arc::new(
            n.present_cross
                .iter()
                .map(|p| dec.take_output(p))
                .collect::<std::result::Result<Vec<_>, _>>()?,
        );
    }
    Ok(last)
}
