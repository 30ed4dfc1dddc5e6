//! `voxq build --target openvino`: OpenVINO engine folders (manifest with the OpenVINO version,
//! CPU, instruction sets and an explicit precision; compiled-model cache), loaded by every
//! runtime path through the same engine interface as ONNX Runtime; their embeddings against
//! ONNX Runtime running the same model file; refusals of another OpenVINO version, a CPU
//! without the engine's instruction sets, and a missing library; `bench engines` with both
//! backends side by side.

use std::path::Path;

use crate::common::{assert_one_line_error, cosine, list, root, s, stderr, stdout, voxq};
use crate::engines_cpu::{ecapa_qdq, embed, ECAPA};
use serde_json::Value;

fn build_ov(model: &Path, out: &Path, precision: &str) -> Value {
    let o = voxq(&[
        "build",
        s(model),
        "--target",
        "openvino",
        "--precision",
        precision,
        "--threads",
        "1",
        "--out",
        s(out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("built openvino engine"),
        "{}",
        stdout(&o)
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn openvino_fp32_engine_matches_onnx_runtime_and_says_what_serves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let eng = d.join("openvino-fp32");
    let m = build_ov(&root().join(ECAPA), &eng, "fp32");
    assert_eq!(m["target"], "openvino");
    assert_eq!(m["precision"], "fp32");
    assert_eq!(m["builder"]["name"], "openvino");
    assert!(
        m["builder"]["version"]
            .as_str()
            .unwrap()
            .starts_with(engines::openvino::OPENVINO_VERSION),
        "{}",
        m["builder"]
    );
    let ov = &m["openvino"];
    assert_eq!(ov["inference_precision"], "f32", "{ov}");
    assert_eq!(ov["threads"], 1);
    assert_eq!(
        m["rewrites"],
        serde_json::json!(["Tile→Expand /asp/Tile", "Tile→Expand /asp/Tile_1"])
    );
    assert!(!ov["cpu"].as_str().unwrap().is_empty());
    // the vector width is always relied on; no bf16 feature for an f32 engine
    let isa: Vec<&str> = ov["isa"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(isa.iter().any(|f| f.starts_with("avx")), "{isa:?}");
    assert!(!isa.iter().any(|f| f.contains("bf16")), "{isa:?}");
    // the compiled-model cache was filled by the build
    let cache = eng.join(ov["cache_dir"].as_str().unwrap());
    assert!(
        std::fs::read_dir(&cache).unwrap().count() > 0,
        "empty compiled-model cache"
    );
    let wavs = list("fixtures/trials/calib.txt", 3);
    let a = embed(&root().join(ECAPA), &wavs, &d.join("ort.tsv"));
    let b = embed(&eng, &wavs, &d.join("ov.tsv"));
    for (x, y) in a.iter().zip(&b) {
        let c = cosine(x, y);
        assert!(c > 0.9999, "OpenVINO f32 vs ONNX Runtime fp32 cosine {c}");
    }
    // the log says which backend and precision serve the model
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_voxq"))
        .args(["embed", "--model", s(&eng), s(&wavs[0])])
        .env("RUST_LOG", "info")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("served by openvino CPU fp32"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn openvino_int8_engine_runs_the_qdq_model_like_onnx_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let qdq = ecapa_qdq(d, "openvino");
    let eng = d.join("openvino-int8");
    let m = build_ov(&qdq, &eng, "auto");
    assert_eq!(m["precision"], "int8");
    assert_eq!(m["openvino"]["inference_precision"], "f32");
    let wavs = list("fixtures/trials/calib.txt", 4);
    let a = embed(&qdq, &wavs, &d.join("ort.tsv"));
    let b = embed(&eng, &wavs, &d.join("ov.tsv"));
    for (x, y) in a.iter().zip(&b) {
        let c = cosine(x, y);
        assert!(
            c >= 0.999,
            "OpenVINO vs ONNX Runtime on the same QDQ model: cosine {c}"
        );
    }
}

#[test]
fn openvino_engines_for_another_version_or_cpu_or_without_the_library_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let eng = tmp.path().join("e");
    let m = build_ov(&root().join(ECAPA), &eng, "fp32");
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
    edit(&|v| v["builder"]["version"] = "2025.1.0-17911".into());
    let o = voxq(&["embed", "--model", s(&eng), s(&wav)]);
    assert_one_line_error(&o, &["manifest.json", "built with openvino 2025.1.0-17911"]);
    edit(&|v| {
        v["openvino"]["isa"]
            .as_array_mut()
            .unwrap()
            .push("amx_fp8".into())
    });
    let o = voxq(&["embed", "--model", s(&eng), s(&wav)]);
    assert_one_line_error(&o, &["manifest.json", "amx_fp8", "lacks"]);
    edit(&|_| {});
    // no library: one line naming what installs it, for the build and for loading
    let missing = tmp.path().join("no-such-lib.so");
    for args in [
        vec!["embed", "--model", s(&eng), s(&wav)],
        vec![
            "build",
            ECAPA,
            "--target",
            "openvino",
            "--out",
            s(&tmp.path().join("x")),
        ],
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_voxq"))
            .args(&args)
            .env("OPENVINO_DYLIB_PATH", &missing)
            .current_dir(root())
            .output()
            .unwrap();
        assert_one_line_error(&o, &["no-such-lib.so", "make setup-openvino"]);
    }
    assert!(!tmp.path().join("x").exists());
    // bf16 is refused for TensorRT, fp16 for OpenVINO
    let o = voxq(&[
        "build",
        ECAPA,
        "--target",
        "openvino",
        "--precision",
        "fp16",
        "--out",
        s(&tmp.path().join("y")),
    ]);
    assert_one_line_error(&o, &["--precision fp16", "openvino"]);
}

#[test]
fn bench_engines_puts_both_backends_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cpu = d.join("cpu-fp32");
    crate::engines_cpu::build(&root().join(ECAPA), &cpu);
    let ov = d.join("openvino-fp32");
    build_ov(&root().join(ECAPA), &ov, "fp32");
    let json = d.join("bench.json");
    let o = voxq(&[
        "bench",
        "engines",
        s(&cpu),
        s(&ov),
        "--batches",
        "1,2",
        "--frames",
        "100,200",
        "--threads",
        "1",
        "--seconds",
        "0.2",
        "--json",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // 2 engines x 2 batches x 2 lengths x 1 thread count
    assert_eq!(rows.len(), 8, "{rows:?}");
    for r in &rows {
        assert_eq!(r["threads"], 1);
        assert!(r["runs"].as_u64().unwrap() >= 5, "{r}");
        assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    let runners: Vec<&str> = rows.iter().map(|r| r["runner"].as_str().unwrap()).collect();
    assert!(runners
        .iter()
        .any(|r| r.starts_with("onnxruntime CPUExecutionProvider")));
    assert!(runners.iter().any(|r| r.starts_with("openvino CPU fp32")));
    assert!(stdout(&o).contains("| threads |"), "{}", stdout(&o));
}
