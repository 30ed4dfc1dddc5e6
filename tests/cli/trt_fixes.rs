//! The TensorRT/Triton fixes of issue 19 that a GPU-less machine can check end to end:
//! `export-triton` of a `tensorrt-ort` engine is served on GPUs with TensorRT whatever
//! `--gpu` says (its EPContext node runs nowhere else); `max_batch_size` comes from, and is
//! checked against, the engine's TensorRT profile max batch; the TensorRT targets name every
//! place they looked for `trtexec`, `/usr/src/tensorrt/bin` (Debian packages) included. The
//! engine folders are written here as `voxq build` leaves them on a GPU machine (the engine
//! bytes are placeholders: exporting copies them, nothing runs them).

use crate::common;

use std::path::Path;

use common::{assert_one_line_error, campplus_onnx, root, s, stderr, voxq};
use engines::tensorrt::epcontext::{self, EpContext, CTX_FILE};
use engines::triton::{parse_pbtxt, PbMessage, PbValue};

/// An engine folder with `manifest.json` for `target`, built with the feats profile
/// `1x100x80 : 8x300x80 : {max_batch}x3000x80` (none for `cpu`), and its engine files.
fn engine_folder(dir: &Path, target: &str, max_batch: i64) {
    std::fs::create_dir_all(dir).unwrap();
    let source = exporter::model::load(campplus_onnx()).unwrap();
    let ctx = EpContext {
        engine_file: "model.plan".into(),
        hardware_architecture: "90".into(),
        sdk_version: "10.13.0".into(),
        onnx_model_filename: "campplus.qdq.onnx".into(),
    };
    let (engine_file, builder) = match target {
        "tensorrt" => {
            std::fs::write(dir.join("model.plan"), b"engine bytes").unwrap();
            epcontext::write(&dir.join(CTX_FILE), &source, &ctx).unwrap();
            ("model.plan", "trtexec")
        }
        "tensorrt-ort" => {
            // ONNX Runtime's TensorRT EP keeps its engine in trt_cache/, named in the
            // EPContext model relative to it
            let cache = dir.join(engines::tensorrt::ORT_CACHE_DIR);
            std::fs::create_dir_all(&cache).unwrap();
            std::fs::write(cache.join("campplus_sm90.engine"), b"engine bytes").unwrap();
            let ctx = EpContext {
                engine_file: "trt_cache/campplus_sm90.engine".into(),
                ..ctx
            };
            epcontext::write(&dir.join(CTX_FILE), &source, &ctx).unwrap();
            (CTX_FILE, "onnxruntime-tensorrt")
        }
        _ => {
            std::fs::copy(campplus_onnx(), dir.join("model.onnx")).unwrap();
            ("model.onnx", "onnxruntime")
        }
    };
    let mut feats = serde_json::json!({"name": "feats", "dtype": "float32",
        "shape": [-1, -1, 80], "dim_names": ["batch", "frames", ""]});
    if target != "cpu" {
        feats["profile"] = serde_json::json!({"min": [1, 100, 80], "opt": [8, 300, 80], "max": [max_batch, 3000, 80]});
    }
    let m = serde_json::json!({
        "format": 1, "voxq_version": "0.1.0", "created_unix": 1790000000u64,
        "target": target, "precision": "int8",
        "source_model": {"file": "campplus.qdq.onnx", "sha256": "ab".repeat(32)},
        "engine_file": engine_file,
        "builder": {"name": builder, "version": "10.13.0"},
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
        "inputs": [feats],
        "outputs": [{"name": "embedding", "dtype": "float32", "shape": [-1, 192]}]
    });
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
}

fn one(msg: &PbMessage, k: &str) -> String {
    match msg.get(k).and_then(|v| v.first()) {
        Some(PbValue::Scalar(x)) => x.clone(),
        other => panic!("{k}: {other:?}"),
    }
}

fn sub(msg: &PbMessage, k: &str) -> PbMessage {
    match msg.get(k).and_then(|v| v.first()) {
        Some(PbValue::Message(x)) => x.clone(),
        other => panic!("{k}: {other:?}"),
    }
}

/// Exports `engine` into `repo` with `extra` options and returns its parsed config.
fn export(engine: &Path, repo: &Path, extra: &[&str]) -> PbMessage {
    let mut args = vec!["export-triton", s(engine), "--repo", s(repo)];
    args.extend_from_slice(extra);
    let o = voxq(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let name = engines::triton::entry_name(engine);
    parse_pbtxt(&std::fs::read_to_string(repo.join(name).join("config.pbtxt")).unwrap()).unwrap()
}

/// Before: without `--gpu` a `tensorrt-ort` entry was `KIND_CPU` with no accelerator, which
/// Triton cannot load (the CPU provider refuses an EPContext node).
#[test]
fn tensorrt_ort_engines_are_served_on_gpus_with_tensorrt_without_gpu_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let eng = tmp.path().join("campplus").join("trt-ort-int8");
    engine_folder(&eng, "tensorrt-ort", 32);
    let repo = tmp.path().join("repo");
    for extra in [&[][..], &["--gpu"][..]] {
        let cfg = export(&eng, &repo, extra);
        assert_eq!(one(&cfg, "platform"), "onnxruntime_onnx");
        assert_eq!(
            one(&sub(&cfg, "instance_group"), "kind"),
            "KIND_GPU",
            "{extra:?}"
        );
        let acc = sub(
            &sub(&sub(&cfg, "optimization"), "execution_accelerators"),
            "gpu_execution_accelerator",
        );
        assert_eq!(one(&acc, "name"), "tensorrt", "{extra:?}");
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
        // the EPContext model and the engine it names, relative to it
        let v = repo.join("campplus_trt-ort-int8/1");
        assert!(v.join("model.onnx").is_file());
        assert!(v.join("trt_cache/campplus_sm90.engine").is_file());
    }
}

/// Before: `max_batch_size` was 32 whatever the engine's profile said, and any value was
/// written; Triton's TensorRT backend then refuses to load the model.
#[test]
fn max_batch_size_follows_the_engine_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let plan = tmp.path().join("campplus").join("trt-int8");
    engine_folder(&plan, "tensorrt", 16);
    // default: the profile's max batch
    let cfg = export(&plan, &repo, &[]);
    assert_eq!(one(&cfg, "platform"), "tensorrt_plan");
    assert_eq!(one(&cfg, "max_batch_size"), "16");
    // at most the profile's max batch is taken as given
    assert_eq!(
        one(
            &export(&plan, &repo, &["--max-batch-size", "8"]),
            "max_batch_size"
        ),
        "8"
    );
    assert_eq!(
        one(
            &export(&plan, &repo, &["--max-batch-size", "16"]),
            "max_batch_size"
        ),
        "16"
    );
    // larger is refused, naming the option, the engine and its profile max; the entry
    // written before is left as it was
    let o = voxq(&[
        "export-triton",
        s(&plan),
        "--repo",
        s(&repo),
        "--max-batch-size",
        "64",
    ]);
    assert_one_line_error(
        &o,
        &[
            "--max-batch-size 64",
            s(&plan),
            "profile max batch 16",
            "feats",
        ],
    );
    let kept = std::fs::read_to_string(repo.join("campplus_trt-int8/config.pbtxt")).unwrap();
    assert!(kept.contains("max_batch_size: 16"), "{kept}");

    // the same for an engine of ONNX Runtime's TensorRT execution provider
    let ort = tmp.path().join("campplus").join("trt-ort-int8");
    engine_folder(&ort, "tensorrt-ort", 4);
    assert_eq!(one(&export(&ort, &repo, &[]), "max_batch_size"), "4");
    let o = voxq(&[
        "export-triton",
        s(&ort),
        "--repo",
        s(&repo),
        "--max-batch-size",
        "5",
    ]);
    assert_one_line_error(&o, &["--max-batch-size 5", "profile max batch 4"]);

    // an engine without a TensorRT profile keeps the default 32, and takes larger values
    let cpu = tmp.path().join("campplus").join("cpu-int8");
    engine_folder(&cpu, "cpu", 0);
    let cfg = export(&cpu, &repo, &[]);
    assert_eq!(one(&cfg, "max_batch_size"), "32");
    assert_eq!(one(&sub(&cfg, "instance_group"), "kind"), "KIND_CPU");
    assert_eq!(
        one(
            &export(&cpu, &repo, &["--max-batch-size", "64"]),
            "max_batch_size"
        ),
        "64"
    );
}

/// Before: the error named PATH and $TENSORRT_ROOT/bin only, and /usr/src/tensorrt/bin (where
/// NVIDIA's Debian packages put trtexec) was not searched.
#[test]
fn trtexec_is_looked_for_in_the_debian_folder_and_the_error_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trt");
    let empty = tmp.path().join("no-tools");
    std::fs::create_dir_all(&empty).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_voxq"))
        .args([
            "build",
            s(&campplus_onnx()),
            "--target",
            "tensorrt",
            "--out",
            s(&out),
        ])
        .current_dir(root())
        .env("PATH", &empty)
        .env_remove("TENSORRT_ROOT")
        .output()
        .unwrap();
    let debian = Path::new(engines::tensorrt::trtexec::DEBIAN_TRTEXEC_DIR).join("trtexec");
    if debian.is_file() {
        // a Debian install of TensorRT: found there although PATH has nothing
        let e = stderr(&o);
        assert!(!e.contains("TensorRT not found"), "{e}");
    } else {
        assert_one_line_error(
            &o,
            &[
                "TensorRT not found",
                "no trtexec on PATH",
                "$TENSORRT_ROOT/bin (TENSORRT_ROOT is not set)",
                "/usr/src/tensorrt/bin",
                "--target cpu",
            ],
        );
    }
    assert!(!out.exists());
}
