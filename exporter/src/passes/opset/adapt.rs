//! Upgrading one node across one schema change: the compatible bumps, and the
//! attribute-to-input moves (`axes`, `split`, Dropout `ratio`) ONNX's converter also does.

use std::collections::BTreeSet;

use onnx_protobuf::{NodeProto, TensorProto};

use super::super::tensors::tensor_i64;
use super::history::history;
use crate::onnx::builders::tensor_f32;
use crate::onnx::{attr, attr_int};

/// Moves an `ints` attribute (`axes`, `split`) into a new int64 initializer input at `slot`.
fn attribute_to_input(
    n: &mut NodeProto,
    attr_name: &str,
    slot: usize,
    inits: &mut Vec<TensorProto>,
    used: &mut BTreeSet<String>,
) -> Result<(), String> {
    let Some(k) = n.attribute.iter().position(|a| a.name == attr_name) else {
        return Ok(());
    };
    let values = n.attribute[k].ints.clone();
    let base = n.output.first().cloned().unwrap_or_else(|| n.name.clone());
    let name = format!("{base}_{attr_name}");
    if !used.insert(name.clone()) {
        return Err(format!(
            "the name '{name}' for its new '{attr_name}' input is taken"
        ));
    }
    inits.push(tensor_i64(&name, &[values.len() as i64], &values));
    n.attribute.remove(k);
    while n.input.len() < slot {
        n.input.push(String::new());
    }
    if n.input.len() == slot {
        n.input.push(name);
    } else {
        n.input[slot] = name;
    }
    Ok(())
}

/// Upgrades one node across the schema change at `version`, or says why it cannot.
pub(super) fn adapt(
    n: &mut NodeProto,
    version: i64,
    inits: &mut Vec<TensorProto>,
    used: &mut BTreeSet<String>,
) -> Result<(), String> {
    let op = n.op_type.clone();
    match (op.as_str(), version) {
        _ if history().compatible_bump(&op, version) => Ok(()),
        ("ReduceSum" | "Squeeze" | "Unsqueeze", 13)
        | (
            "ReduceL1" | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceMax"
            | "ReduceMean" | "ReduceMin" | "ReduceProd" | "ReduceSumSquare",
            18,
        ) => attribute_to_input(n, "axes", 1, inits, used),
        ("Split", 13) => attribute_to_input(n, "split", 1, inits, used),
        ("Split", 18) => {
            if n.input.get(1).is_none_or(|s| s.is_empty()) && attr(n, "num_outputs").is_none() {
                let k = n.output.len() as i64;
                n.attribute
                    .push(crate::onnx::builders::int_attr("num_outputs", k));
            }
            Ok(())
        }
        ("BatchNormalization", 9) => match attr_int(n, "spatial") {
            None => Ok(()),
            Some(1) => {
                n.attribute.retain(|a| a.name != "spatial");
                Ok(())
            }
            Some(_) => Err("spatial=0 has no equivalent in opset 9".into()),
        },
        ("BatchNormalization", 14) if n.output.len() == 1 => Ok(()),
        ("Softmax" | "LogSoftmax", 13) if attr_int(n, "axis") == Some(-1) => Ok(()),
        ("Dropout", 12) => {
            if let Some(k) = n.attribute.iter().position(|a| a.name == "ratio") {
                let ratio = n.attribute[k].f;
                let base = n.output.first().cloned().unwrap_or_default();
                let name = format!("{base}_ratio");
                if !used.insert(name.clone()) {
                    return Err(format!("the name '{name}' for its ratio input is taken"));
                }
                inits.push(tensor_f32(&name, &[], &[ratio]));
                n.attribute.remove(k);
                n.input.truncate(1);
                n.input.push(name);
            }
            Ok(())
        }
        _ => Err(format!(
            "its schema changed at opset {version} in a way voxq does not convert"
        )),
    }
}
