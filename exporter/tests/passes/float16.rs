//! The float16 pass: float32 interface kept, the rest cast, scales and int8 weights requantized.

use exporter::graph::dump;
use exporter::model::elem;
use exporter::onnx::f16_bits_to_f32;
use exporter::passes::{f32_data, to_float16};
use exporter::policy::Target;

use super::fixtures::*;

#[test]
fn float16_keeps_io_float32_and_casts_the_rest() {
    let m = residual_model();
    let (_, q, _) = quantize(&m, &policy(Target::Tensorrt));
    let h = to_float16(&q).unwrap();
    assert_eq!(
        h.opset_import[0].version, 19,
        "float16 scales need opset 19"
    );
    assert_eq!(h.graph.input, m.graph.input);
    assert_eq!(h.graph.output, m.graph.output);
    assert_topological(&h);
    snapshot("qdq_residual_tensorrt_fp16.txt", &dump(&h.graph));
    for t in &h.graph.initializer {
        let want = if t.name.ends_with("_quantized") || t.name.ends_with("_zero_point") {
            elem::INT8
        } else {
            elem::FLOAT16
        };
        assert_eq!(t.data_type, want, "{}", t.name);
    }
    assert_eq!(
        count_op(&h, "Cast"),
        2,
        "one at the input, one at the output"
    );
    // Requantized weights reconstruct the original within one step (two roundings).
    let w = f32_data(init(&m, "w1").unwrap()).unwrap();
    let q8: Vec<i8> = init(&h, "w1_quantized")
        .unwrap()
        .raw_data
        .iter()
        .map(|&b| b as i8)
        .collect();
    let s: Vec<f32> = init(&h, "w1_scale")
        .unwrap()
        .raw_data
        .chunks(2)
        .map(|c| f16_bits_to_f32(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    for (k, (&v, &orig)) in q8.iter().zip(&w).enumerate() {
        let c = k / (16 * 3);
        assert!(
            (v as f32 * s[c] - orig).abs() <= s[c] * 1.001,
            "element {k}"
        );
    }
    // A model without Q/DQ keeps its opset.
    let h = to_float16(&m).unwrap();
    assert_eq!(h.opset_import[0].version, 17);
    assert_topological(&h);
}
