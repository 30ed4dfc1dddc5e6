//! Bad input to calibrate/quantize/inspect: clear one-line errors, no output left behind.

use crate::common;
use common::*;
use std::path::Path;
use std::process::Output;

/// `voxq quantize` of the CAM++ fixture with `table`, writing `out`.
fn quantize_campplus(table: &Path, out: &Path) -> Output {
    voxq(&[
        "quantize",
        "fixtures/models/campplus.onnx",
        "--table",
        s(table),
        "--out",
        s(out),
    ])
}

#[test]
fn empty_calibration_list() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("calib.txt");
    std::fs::write(&list, "\n# nothing here\n").unwrap();
    let out = dir.path().join("t.json");
    let o = voxq(&[
        "calibrate",
        "--model",
        s(&campplus()),
        "--calib",
        s(&list),
        "--audio-root",
        s(&speech()),
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert_one_line_error(&o, &[s(&list), "empty"]);
    assert!(!out.exists());
}

#[test]
fn calibration_features_of_the_wrong_shape() {
    // A config whose front end makes 64 bins for a model that wants 80.
    let dir = tempfile::tempdir().unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(campplus()).unwrap()).unwrap();
    v["onnx"] = s(&root().join("fixtures/models/campplus.onnx")).into();
    v["fbank"]["num_mel_bins"] = 64.into();
    let cfg = dir.path().join("m.json");
    std::fs::write(&cfg, v.to_string()).unwrap();
    let out = dir.path().join("t.json");
    let o = voxq(&[
        "calibrate",
        "--model",
        s(&cfg),
        "--calib",
        "fixtures/trials/demo_enroll_june.txt",
        "--audio-root",
        s(&speech()),
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert_one_line_error(&o, &["campplus.onnx", "64"]);
    assert!(!out.exists());
}

#[test]
fn table_naming_tensors_not_in_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.json");
    std::fs::write(
        &table,
        r#"{"format": "voxq-calibration/1", "method": "max", "tensors": {"no_such_tensor": {"amax": 1.0, "scale": 0.007874016, "fallback": null, "stats": null}}}"#,
    )
    .unwrap();
    let out = dir.path().join("q.onnx");
    let o = quantize_campplus(&table, &out);
    assert_one_line_error(&o, &["no_such_tensor", "not in the model"]);
    assert!(!out.exists());
}

#[test]
fn malformed_table_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.json");
    std::fs::write(&table, "{ not json").unwrap();
    let out = dir.path().join("q.onnx");
    let o = quantize_campplus(&table, &out);
    assert_one_line_error(&o, &[s(&table)]);
    assert!(!out.exists());
}

#[test]
fn inspect_qdq_on_a_float_model_fails() {
    let o = voxq(&["inspect", "fixtures/models/campplus.onnx", "--qdq"]);
    assert_one_line_error(&o, &["campplus.onnx", "violation"]);
}
