//! int8 weights behind a DequantizeLinear, requantized against their float16-rounded scales so
//! `q × scale` stays closest to the original weight.

use std::collections::BTreeSet;

use onnx_protobuf::GraphProto;

use super::super::tensors::f32_data;
use super::super::weights::f16_scale;
use super::super::Result;
use crate::model::elem;
use crate::onnx::attr_int;

/// Requantizes the int8 weight `qname` read by a DequantizeLinear with scale `sname`; `Ok(Some)`
/// says why it was left as it is.
fn requantize(
    g: &mut GraphProto,
    qname: &str,
    sname: &str,
    keep32: &BTreeSet<String>,
) -> Result<Option<&'static str>> {
    if keep32.contains(sname) {
        return Ok(Some("its scale stays float32 (a float weight behind Q→DQ)"));
    }
    let Some(si) = g.initializer.iter().position(|t| t.name == sname) else {
        return Ok(Some("its scale is not an initializer"));
    };
    let Some(qi) = g.initializer.iter().position(|t| t.name == qname) else {
        return Ok(Some("its input is not an initializer (an activation)"));
    };
    if g.initializer[qi].data_type != elem::INT8 || g.initializer[si].data_type != elem::FLOAT {
        return Ok(Some("not an int8 weight with float32 scales"));
    }
    let old = f32_data(&g.initializer[si])?;
    let new: Vec<f32> = old.iter().map(|&s| f16_scale(s)).collect();
    if old == new {
        return Ok(Some("its scales are float16 values already"));
    }
    let n = g.initializer[qi].raw_data.len();
    if n == 0 || (old.len() != 1 && !n.is_multiple_of(old.len())) {
        return Ok(Some(
            "its int8 data is not in raw_data or does not match the number of scales",
        ));
    }
    // Per-tensor: one scale; per-axis: channel c of n/len(old) blocks … find the axis.
    let axis_len = old.len();
    let dims = g.initializer[qi].dims.clone();
    let axis = g
        .node
        .iter()
        .find(|d| d.op_type == "DequantizeLinear" && d.input.first().is_some_and(|x| x == qname))
        .and_then(|d| attr_int(d, "axis"))
        .unwrap_or(1);
    let axis = if axis < 0 {
        axis + dims.len() as i64
    } else {
        axis
    } as usize;
    let inner: usize = dims
        .get(axis + 1..)
        .map_or(1, |r| r.iter().map(|&x| x.max(0) as usize).product());
    let q = &mut g.initializer[qi];
    for (k, b) in q.raw_data.iter_mut().enumerate() {
        let c = if axis_len == 1 {
            0
        } else {
            (k / inner.max(1)) % axis_len
        };
        let w = (*b as i8) as f32 * old[c];
        *b = ((w / new[c]).round_ties_even().clamp(-127.0, 127.0) as i8) as u8;
    }
    Ok(None)
}

/// Requantizes every int8 weight behind a DequantizeLinear whose scale becomes float16; each
/// one left alone gets a debug line saying why.
pub(super) fn requantize_weights(g: &mut GraphProto, keep32: &BTreeSet<String>) -> Result<()> {
    let dq_weights: Vec<(String, String)> = g
        .node
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear" && n.input.len() >= 2)
        .map(|n| (n.input[0].clone(), n.input[1].clone()))
        .collect();
    for (qname, sname) in dq_weights {
        if let Some(why) = requantize(g, &qname, &sname, keep32)? {
            log::debug!("float16: '{qname}' (scale '{sname}') not requantized: {why}");
        }
    }
    Ok(())
}
