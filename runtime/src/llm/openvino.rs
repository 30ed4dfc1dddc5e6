//! The LLM's decoder step on OpenVINO: each step's present keys and values are written by
//! OpenVINO straight into tensors the caller allocated and bound as outputs, which the next
//! step binds as its past by reference (copied out only if OpenVINO used buffers of its own);
//! only the last position's logits are read.

use std::sync::Arc;

use engines::openvino::{OvEngine, OvTensor};

use super::model::Llm;
use crate::error::Result;

/// One step over `x` (`[n, hidden]` embeddings) after `past` positions: the last position's
/// logits; `kv` becomes this step's present KV.
pub(super) fn step(
    llm: &Llm,
    dec: &mut OvEngine,
    kv: &mut Vec<Arc<OvTensor>>,
    past: usize,
    x: Vec<f32>,
) -> Result<Vec<f32>> {
    let c = &llm.config;
    let n = x.len() / c.hidden_size;
    let total = past + n;
    dec.bind(
        "inputs_embeds",
        &OvTensor::new("inputs_embeds", &[1, n as i64, c.hidden_size as i64], &x)?,
    )?;
    dec.bind(
        "attention_mask",
        &OvTensor::new("attention_mask", &[1, total as i64], &vec![1i64; total])?,
    )?;
    let positions: Vec<i64> = (past as i64..total as i64).collect();
    dec.bind(
        "position_ids",
        &OvTensor::new("position_ids", &[1, n as i64], &positions)?,
    )?;
    // the first step: a zero-length past
    let empty = OvTensor::new::<f32>(
        "past_key_values",
        &[1, c.n_kv_heads as i64, 0, c.head_dim as i64],
        &[],
    )?;
    for (j, name) in llm.past_names.iter().enumerate() {
        dec.bind(name, kv.get(j).map_or(&empty, |t| t.as_ref()))?;
    }
    // this step's present KV is written straight into tensors the next step binds
    let present = dec.bind_new_outputs(
        &llm.present_names,
        &[1, c.n_kv_heads as i64, total as i64, c.head_dim as i64],
    )?;
    dec.infer()?;
    let (dims, last) = dec.output_tail("logits", c.vocab_size)?;
    llm.check_vocab(dims.last().copied().unwrap_or(0) as usize, last.len())?;
    *kv = dec
        .keep_outputs(&llm.present_names, present)?
        .into_iter()
        .map(Arc::new)
        .collect();
    Ok(last)
}
