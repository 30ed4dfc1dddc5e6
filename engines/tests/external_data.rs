//! Models saved with external data load in ONNX Runtime and give the same outputs as the
//! original: a synthetic model (initializers in the main graph and in If branches, a Constant
//! value) and the real CAM++ fixture when it is present.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

#[path = "../../exporter/tests/support/mod.rs"]
mod support;
use support::{floats, synthetic_model};

use engines::ort::{cpu_session, CpuOptions};
use engines::tensor::{compare, HostTensor, HostValue, TensorData, Tolerance};
use exporter::model::{self, elem, SaveOptions};
use ort::value::DynValue;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn opts() -> CpuOptions {
    CpuOptions {
        intra_threads: 1,
        ..CpuOptions::default()
    }
}

/// Runs a model file and returns its outputs by name.
fn run(path: &Path, inputs: &[HostTensor]) -> Vec<(String, HostValue)> {
    let mut s = cpu_session(path, &opts()).unwrap_or_else(|e| panic!("{e}"));
    let feed: Vec<(String, DynValue)> = inputs
        .iter()
        .map(|t| (t.name.clone(), t.to_ort().unwrap()))
        .collect();
    let out = s.run(feed).unwrap();
    out.iter()
        .map(|(n, v)| (n.to_string(), HostValue::from_ort(n, &v).unwrap()))
        .collect()
}

fn assert_same_outputs(a: &[(String, HostValue)], b: &[(String, HostValue)]) {
    assert_eq!(a.len(), b.len());
    let exact = Tolerance {
        rtol: 0.0,
        atol: 0.0,
    };
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        compare(va, vb, exact).unwrap_or_else(|m| panic!("output '{na}': {m}"));
    }
}

fn bool_scalar(name: &str, v: bool) -> HostTensor {
    HostTensor {
        name: name.into(),
        elem_type: elem::BOOL,
        dims: vec![],
        data: TensorData::Raw(vec![v as u8]),
    }
}

#[test]
fn synthetic_model_with_external_data_runs_in_ort() {
    let m = synthetic_model();
    let dir = tempfile::tempdir().unwrap();
    let inline = dir.path().join("inline.onnx");
    model::save(&m, &inline, &SaveOptions::inline()).unwrap();
    let ext = dir.path().join("ext.onnx");
    let saved = model::save(&m, &ext, &SaveOptions::external(1024)).unwrap();
    assert_eq!(saved.external_tensors, 5, "W, B, T, E, f16_raw");
    let ext_all = dir.path().join("ext_all.onnx");
    let all = SaveOptions {
        include_attribute_tensors: true,
        ..SaveOptions::external(1024)
    };
    assert_eq!(model::save(&m, &ext_all, &all).unwrap().external_tensors, 6);

    for cond in [true, false] {
        let inputs = [
            HostTensor::from_f32("X", &[1, 16], &floats(16, 9)),
            bool_scalar("cond", cond),
        ];
        let want = run(&inline, &inputs);
        assert_same_outputs(&want, &run(&ext, &inputs));
        assert_same_outputs(&want, &run(&ext_all, &inputs));
    }
}

#[test]
fn campplus_with_external_data_matches_original() {
    let path = repo_root().join("fixtures/models/campplus.onnx");
    assert!(
        path.is_file(),
        "{} is a committed fixture and must exist",
        path.display()
    );
    let m = model::load(&path).unwrap();
    let s = model::summary(&m);
    let input = &s.inputs[0];
    assert_eq!(input.ty.rank(), Some(3), "{input}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("campplus.onnx");
    let saved = model::save(&m, &out, &SaveOptions::external(1024)).unwrap();
    assert!(dir.path().join("campplus.onnx.data").is_file());
    assert!(saved.model_bytes < 2_000_000, "{saved:?}");
    let feats = HostTensor::from_f32(&input.name, &[1, 200, 80], &floats(200 * 80, 11));
    let want = run(&path, std::slice::from_ref(&feats));
    let got = run(&out, &[feats]);
    assert_same_outputs(&want, &got);
}
