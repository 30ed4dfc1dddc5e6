//! `voxq quantize --mode`: dynamic and weight-only int8 without a calibration table on the tiny
//! LLM fixture's decoder (the dynamic model holds MatMulInteger and no QuantizeLinear, and an
//! LLM folder with it generates), and the refusals in one line before any output: full without
//! a table, a table with a tableless mode, dynamic for TensorRT.

use crate::common;

use common::{assert_one_line_error, s, stderr, stdout, voxq};

const DECODER: &str = "fixtures/audio-llm-tiny-test/decoder.onnx";

fn ops(path: &std::path::Path, op: &str) -> usize {
    let m = exporter::model::load(path).unwrap();
    m.graph.node.iter().filter(|n| n.op_type == op).count()
}

#[test]
fn dynamic_and_weight_only_need_no_table_and_the_dynamic_llm_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let dynq = tmp.path().join("llm/decoder.onnx");
    std::fs::create_dir_all(dynq.parent().unwrap()).unwrap();
    let o = voxq(&[
        "quantize",
        DECODER,
        "--mode",
        "dynamic",
        "--target",
        "ort-cpu",
        "--out",
        s(&dynq),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(dynamic)"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("MatMuls dynamic int8"),
        "{}",
        stdout(&o)
    );
    assert!(ops(&dynq, "MatMulInteger") > 0);
    assert!(ops(&dynq, "DynamicQuantizeLinear") > 0);
    assert_eq!(ops(&dynq, "QuantizeLinear"), 0);
    for f in ["llm.json", "embed_tokens.f32", "tokenizer.json"] {
        std::fs::copy(
            format!("fixtures/audio-llm-tiny-test/{f}"),
            tmp.path().join("llm").join(f),
        )
        .unwrap();
    }
    let o = voxq(&[
        "bench",
        "lm",
        "--model",
        s(&tmp.path().join("llm")),
        "--context",
        "8",
        "--max-new-tokens",
        "4",
        "--runs",
        "1",
        "--threads",
        "1",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let wo = tmp.path().join("wo.onnx");
    let o = voxq(&[
        "quantize",
        DECODER,
        "--mode",
        "weight-only",
        "--out",
        s(&wo),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ops(&wo, "QuantizeLinear"), 0);
    assert!(ops(&wo, "DequantizeLinear") > 0);
    assert_eq!(ops(&wo, "MatMulInteger"), 0);
}

#[test]
fn mode_and_table_mismatches_are_refused_before_any_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q.onnx");
    let table = tmp.path().join("t.json");
    std::fs::write(&table, "{}").unwrap();
    let o = voxq(&["quantize", DECODER, "--out", s(&out)]);
    assert_one_line_error(&o, &["--table", "full int8 needs a calibration table"]);
    let o = voxq(&[
        "quantize",
        DECODER,
        "--mode",
        "dynamic",
        "--target",
        "ort-cpu",
        "--table",
        s(&table),
        "--out",
        s(&out),
    ]);
    assert_one_line_error(&o, &["--table", "takes no calibration table"]);
    let o = voxq(&["quantize", DECODER, "--mode", "dynamic", "--out", s(&out)]);
    assert_one_line_error(&o, &[DECODER, "TensorRT has no MatMulInteger"]);
    assert!(!out.exists(), "a refused run writes nothing");
}
