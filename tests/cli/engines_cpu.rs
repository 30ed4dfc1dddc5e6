//! `voxq build --target cpu`: engine folders with manifests, loaded back by the runtime, with
//! the same embeddings as the source model (after the build's exact Tile→Expand rewrite); mismatched manifests are refused; a failed build
//! leaves nothing behind.

use crate::common;

use std::path::Path;

use common::{assert_one_line_error, cosine, list, root, s, stderr, stdout, voxq};
use serde_json::Value;

pub(crate) const ECAPA: &str = "fixtures/models/ecapa_distil.onnx";

pub(crate) fn build(model: &Path, out: &Path) -> Value {
    let o = voxq(&["build", s(model), "--target", "cpu", "--out", s(out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("built cpu engine"), "{}", stdout(&o));
    serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
}

pub(crate) fn embed(model: &Path, wavs: &[std::path::PathBuf], out: &Path) -> Vec<Vec<f64>> {
    let mut args = vec!["embed", "--model", s(model), "--out", s(out)];
    args.extend(wavs.iter().map(|w| s(w)));
    let o = voxq(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    common::embeddings(out).into_values().collect()
}

/// The ECAPA fixture calibrated on 4 utterances and quantized for `target` into `dir`.
pub(crate) fn ecapa_qdq(dir: &Path, target: &str) -> std::path::PathBuf {
    let calib = common::calib_list(dir, 4);
    let table = dir.join("table.json");
    let o = voxq(&[
        "calibrate",
        "--model",
        ECAPA,
        "--calib",
        s(&calib),
        "--audio-root",
        s(&common::speech()),
        "--out",
        s(&table),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let qdq = dir.join(format!("ecapa.{target}.onnx"));
    let o = voxq(&[
        "quantize",
        ECAPA,
        "--table",
        s(&table),
        "--target",
        target,
        "--out",
        s(&qdq),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    qdq
}

#[test]
fn cpu_engines_load_by_manifest_and_match_the_source_model() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // an int8 QDQ model of the same network
    let qdq = ecapa_qdq(d, "tensorrt");

    let wavs = list("fixtures/trials/calib.txt", 3);
    for (src, name, precision) in [
        (root().join(ECAPA), "cpu-fp32", "fp32"),
        (qdq.clone(), "cpu-int8", "int8"),
    ] {
        let eng = d.join(name);
        let m = build(&src, &eng);
        assert_eq!(m["target"], "cpu");
        assert_eq!(m["precision"], precision);
        assert_eq!(m["builder"]["name"], "onnxruntime");
        assert_eq!(m["builder"]["version"], engines::ort::ORT_VERSION);
        assert_eq!(
            m["source_model"]["sha256"],
            runtime::fsutil::sha256_file(&src).unwrap()
        );
        assert_eq!(m["inputs"][0]["name"], "feats");
        assert_eq!(m["inputs"][0]["shape"], serde_json::json!([-1, -1, 80]));
        assert_eq!(m["outputs"][0]["name"], "embedding");
        // ECAPA's pooling repeats its statistics with Tile: deployed as Expand (exact)
        assert_eq!(
            m["rewrites"],
            serde_json::json!(["Tile→Expand /asp/Tile", "Tile→Expand /asp/Tile_1"]),
            "{name}"
        );
        for f in ["manifest.json", "model.onnx", "model.json"] {
            assert!(eng.join(f).is_file(), "{name}: {f} missing");
        }
        let a = embed(&src, &wavs, &d.join(format!("{name}-src.tsv")));
        let b = embed(&eng, &wavs, &d.join(format!("{name}-eng.tsv")));
        for (x, y) in a.iter().zip(&b) {
            let c = cosine(x, y);
            assert!(c > 0.99999, "{name}: engine vs source cosine {c}");
        }
    }
    // --as-is: the source graph unchanged (a benchmark baseline), nothing listed
    let asis = d.join("cpu-fp32-as-is");
    let o = voxq(&[
        "build",
        ECAPA,
        "--target",
        "cpu",
        "--as-is",
        "--out",
        s(&asis),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(asis.join("manifest.json")).unwrap())
            .unwrap();
    assert!(m.get("rewrites").is_none(), "{m}");
    let deployed = exporter::model::load(asis.join("model.onnx")).unwrap();
    let tiles = deployed
        .graph
        .node
        .iter()
        .filter(|n| n.op_type == "Tile")
        .count();
    assert_eq!(tiles, 2, "the source's two Tiles are deployed as given");
    // nothing but the engines and the inputs: no scratch folders left
    let partial: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(partial.is_empty());
}

#[test]
fn mismatched_manifests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let eng = tmp.path().join("e");
    let m = build(&root().join(ECAPA), &eng);
    let wav = list("fixtures/trials/calib.txt", 1).remove(0);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = m.clone();
        f(&mut v);
        std::fs::write(
            eng.join("manifest.json"),
            serde_json::to_string(&v).unwrap(),
        )
        .unwrap();
    };
    edit(&|v| v["builder"]["version"] = "1.16.0".into());
    let o = voxq(&["embed", "--model", s(&eng), s(&wav)]);
    assert_one_line_error(
        &o,
        &[
            "manifest.json",
            "onnxruntime 1.16.0",
            engines::ort::ORT_VERSION,
        ],
    );
    edit(&|v| v["format"] = 7.into());
    let o = voxq(&["embed", "--model", s(&eng), s(&wav)]);
    assert_one_line_error(&o, &["manifest.json", "format 7"]);
    edit(&|v| v["target"] = "quantum".into());
    let o = voxq(&["embed", "--model", s(&eng), s(&wav)]);
    assert_one_line_error(&o, &["manifest.json", "unknown engine target 'quantum'"]);
}

#[test]
fn a_failed_build_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.onnx");
    std::fs::write(&bad, b"not a model").unwrap();
    let out = tmp.path().join("engine");
    let o = voxq(&["build", s(&bad), "--out", s(&out)]);
    assert_one_line_error(&o, &["bad.onnx"]);
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only bad.onnx remains"
    );
}

#[test]
fn devices_auto_falls_back_to_cpu_and_explicit_missing_devices_fail() {
    let wav = list("fixtures/trials/calib.txt", 1).remove(0);
    for (dev, ep) in [
        ("tensorrt", "TensorrtExecutionProvider"),
        ("cuda", "CUDAExecutionProvider"),
    ] {
        let o = voxq(&["embed", "--model", ECAPA, "--device", dev, s(&wav)]);
        if engines::ort::available_devices()
            .unwrap()
            .iter()
            .any(|d| format!("{d:?}").eq_ignore_ascii_case(dev))
        {
            println!("{dev} is available here: the missing-device error cannot be checked");
            continue;
        }
        assert_one_line_error(&o, &[ep, "--device cpu"]);
        assert!(stdout(&o).is_empty());
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_voxq"))
        .args(["embed", "--model", ECAPA, "--device", "auto", s(&wav)])
        .current_dir(root())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let served = stderr(&o);
    let first = engines::ort::available_devices().unwrap()[0];
    let want = match first {
        engines::ort::Device::Tensorrt => "TensorrtExecutionProvider",
        engines::ort::Device::Cuda => "CUDAExecutionProvider",
        _ => "CPUExecutionProvider",
    };
    assert!(served.contains(&format!("served by {want}")), "{served}");
}

#[test]
fn triton_repository_config_matches_the_manifest() {
    use engines::triton::{parse_pbtxt, PbValue};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // an fp32 engine and an int8 QDQ engine (the committed ONNX Runtime quantizer output)
    let fp32 = d.join("ecapa").join("cpu-fp32");
    let int8 = d.join("auralis").join("cpu-int8");
    build(&root().join(ECAPA), &fp32);
    build(
        &root().join("fixtures/models/ecapa_auralis.ort_qdq.onnx"),
        &int8,
    );
    let repo = d.join("repo");
    for (gpu, eng, name) in [
        (false, &fp32, "ecapa_cpu-fp32"),
        (true, &int8, "auralis_cpu-int8"),
    ] {
        let mut args = vec![
            "export-triton",
            s(eng),
            "--repo",
            s(&repo),
            "--max-batch-size",
            "16",
            "--instances",
            "2",
        ];
        if gpu {
            args.push("--gpu");
        }
        let o = voxq(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let m: Value =
            serde_json::from_str(&std::fs::read_to_string(eng.join("manifest.json")).unwrap())
                .unwrap();
        let cfg =
            parse_pbtxt(&std::fs::read_to_string(repo.join(name).join("config.pbtxt")).unwrap())
                .unwrap();
        assert!(repo.join(name).join("1/model.onnx").is_file());
        let one = |msg: &engines::triton::PbMessage, k: &str| -> String {
            match msg.get(k).and_then(|v| v.first()) {
                Some(PbValue::Scalar(x)) => x.clone(),
                other => panic!("{k}: {other:?}"),
            }
        };
        let sub =
            |msg: &engines::triton::PbMessage, k: &str, i: usize| -> engines::triton::PbMessage {
                match msg.get(k).and_then(|v| v.get(i)) {
                    Some(PbValue::Message(x)) => x.clone(),
                    other => panic!("{k}[{i}]: {other:?}"),
                }
            };
        assert_eq!(one(&cfg, "name"), name);
        assert_eq!(one(&cfg, "platform"), "onnxruntime_onnx");
        assert_eq!(one(&cfg, "max_batch_size"), "16");
        for (key, specs) in [("input", &m["inputs"]), ("output", &m["outputs"])] {
            let specs = specs.as_array().unwrap();
            assert_eq!(cfg[key].len(), specs.len());
            for (i, spec) in specs.iter().enumerate() {
                let t = sub(&cfg, key, i);
                assert_eq!(one(&t, "name"), spec["name"].as_str().unwrap());
                assert_eq!(one(&t, "data_type"), "TYPE_FP32");
                let dims: Vec<i64> = t["dims"]
                    .iter()
                    .map(|v| match v {
                        PbValue::Scalar(x) => x.parse().unwrap(),
                        _ => panic!(),
                    })
                    .collect();
                let shape: Vec<i64> = spec["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect();
                assert_eq!(shape[0], -1, "batch axis is dynamic");
                assert_eq!(dims, shape[1..], "{key} {i}: dims without the batch axis");
            }
        }
        assert_eq!(
            one(
                &sub(&cfg, "dynamic_batching", 0),
                "max_queue_delay_microseconds"
            ),
            "1000"
        );
        let ig = sub(&cfg, "instance_group", 0);
        assert_eq!(one(&ig, "count"), "2");
        assert_eq!(one(&ig, "kind"), if gpu { "KIND_GPU" } else { "KIND_CPU" });
        if gpu {
            assert_eq!(m["precision"], "int8");
            let acc = sub(
                &sub(&sub(&cfg, "optimization", 0), "execution_accelerators", 0),
                "gpu_execution_accelerator",
                0,
            );
            assert_eq!(one(&acc, "name"), "tensorrt");
            let params: Vec<(String, String)> = acc["parameters"]
                .iter()
                .map(|p| match p {
                    PbValue::Message(p) => (one(p, "key"), one(p, "value")),
                    _ => panic!(),
                })
                .collect();
            assert!(
                params.contains(&("precision_mode".into(), "INT8".into())),
                "{params:?}"
            );
        } else {
            assert!(!cfg.contains_key("optimization"));
        }
    }
}

#[test]
fn ort_cpu_placement_of_ecapa_loads_in_onnx_runtime() {
    // ONNX Runtime 1.31 aborted (C++ assertion, process killed) on this model when the final
    // fc Conv had an output Q/DQ that reaches the If body through a Transpose.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let qdq = ecapa_qdq(d, "ort-cpu");
    let eng = d.join("cpu-int8");
    let m = build(&qdq, &eng);
    assert_eq!(m["precision"], "int8");
    let wavs = list("fixtures/trials/calib.txt", 2);
    let a = embed(&root().join(ECAPA), &wavs, &d.join("fp32.tsv"));
    let b = embed(&eng, &wavs, &d.join("int8.tsv"));
    for (x, y) in a.iter().zip(&b) {
        let c = cosine(x, y);
        assert!(c > 0.95, "int8 (ort-cpu placement) vs fp32 cosine {c}");
    }
}

#[test]
fn bench_engines_times_each_engine_at_each_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let eng = tmp.path().join("cpu-fp32");
    build(&root().join(ECAPA), &eng);
    let json = tmp.path().join("lat.json");
    let o = voxq(&[
        "bench",
        "engines",
        s(&eng),
        s(&eng),
        "--batches",
        "1,2",
        "--frames",
        "200",
        "--seconds",
        "0.2",
        "--json",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["runner"], "onnxruntime CPUExecutionProvider fp32");
        assert!(r["runs"].as_u64().unwrap() >= 5, "{r}");
        assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(rows[2]["batch"], 2);
    assert!(
        stdout(&o)
            .contains("| onnxruntime CPUExecutionProvider fp32 | fp32 | 2 | 200 | engine's |"),
        "{}",
        stdout(&o)
    );
    let o = voxq(&["bench", "engines", s(&eng), "--batches", "0"]);
    assert_one_line_error(&o, &["--batches"]);
    let o = voxq(&["bench", "engines", s(&tmp.path().join("nowhere"))]);
    assert_one_line_error(&o, &["nowhere", "manifest.json"]);
}
