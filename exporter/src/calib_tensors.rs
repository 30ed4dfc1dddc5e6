//! Which activation tensors to calibrate: every tensor either placement may quantize.

use std::collections::BTreeSet;

use onnx_protobuf::ModelProto;

use crate::policy::{plan, QuantPolicy, Target};
use crate::ExportError;

/// The activation tensors that get a Q/DQ pair under any [`Target`] (TensorRT and ONNX Runtime
/// CPU) with the default policy and this channel floor, so that one calibration table serves
/// both placements (`voxq calibrate`, and the tables `voxq sensitivity` computes).
pub fn calibration_tensors(
    model: &ModelProto,
    min_channels: usize,
) -> Result<BTreeSet<String>, ExportError> {
    let mut tensors = BTreeSet::new();
    for target in [Target::Tensorrt, Target::OrtCpu] {
        let policy = QuantPolicy {
            target,
            min_channels,
            ..QuantPolicy::default()
        };
        tensors.extend(plan(model, &policy)?.activations);
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::elem;
    use crate::onnx::builders::{model, node, tensor_f32, value_info};
    use onnx_protobuf::GraphProto;

    /// X → Conv(W: 16 input and 16 output channels) → Y → Relu → Z.
    fn conv_relu() -> ModelProto {
        let mut g = GraphProto::new();
        g.input.push(value_info("X", elem::FLOAT, &[1, 16, 8, 8]));
        g.output.push(value_info("Z", elem::FLOAT, &[1, 16, 8, 8]));
        g.initializer
            .push(tensor_f32("W", &[16, 16, 1, 1], &[0.5; 16 * 16]));
        let mut conv = node("Conv", &["X", "W"], &["Y"]);
        conv.name = "conv".into();
        g.node.push(conv);
        g.node.push(node("Relu", &["Y"], &["Z"]));
        model(g, 17)
    }

    #[test]
    fn union_of_both_placements() {
        let m = conv_relu();
        let trt = plan(&m, &QuantPolicy::default()).unwrap().activations;
        let all = calibration_tensors(&m, 16).unwrap();
        assert!(trt.contains("X"));
        assert!(all.is_superset(&trt));
        // ONNX Runtime CPU also quantizes the Conv's output.
        assert!(all.contains("Y"), "{all:?}");
        // Above the channel floor nothing is quantized.
        assert!(calibration_tensors(&m, 32).unwrap().is_empty());
    }
}
