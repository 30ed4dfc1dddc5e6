//! TensorRT engines on a real GPU: a `trt-int8` engine built from the CAM++ QDQ model gives
//! embeddings within cosine 0.99 of ONNX Runtime CPU fp32 on real speech, and the latency
//! table int8 vs fp16 vs fp32 by batch size. Both tests are ignored by default: they need a GPU
//! that `nvidia-smi` lists and `trtexec` (PATH or `TENSORRT_ROOT/bin`); `make test-gpu` runs
//! them with `--ignored`, and run so where either is missing they fail and say which. The ONNX
//! Runtime TensorRT execution provider path runs where this ONNX Runtime build has it.

mod common;

use std::path::{Path, PathBuf};

use common::{list, s, stderr, stdout, voxq};
use engines::tensorrt::TrtExec;
use runtime::speaker::config::SpeakerModel;
use runtime::speaker::embed::{cosine, Embedder};

const CAMPPLUS: &str = "fixtures/models/campplus.onnx";

const NEEDS: &str =
    "needs an NVIDIA GPU (nvidia-smi) and TensorRT's trtexec (PATH or TENSORRT_ROOT/bin)";

/// `trtexec` and a GPU; the test fails saying which is missing.
fn gpu_and_tensorrt() -> TrtExec {
    assert!(
        !engines::tensorrt::gpu::gpus().is_empty(),
        "no NVIDIA GPU (nvidia-smi lists none): this test {NEEDS}"
    );
    TrtExec::detect().unwrap_or_else(|e| panic!("{e}: this test {NEEDS}"))
}

/// CAM++ calibrated (entropy, 16 utterances) and quantized with the TensorRT placement.
fn campplus_qdq(dir: &Path) -> PathBuf {
    let calib = common::calib_list(dir, 16);
    let table = dir.join("entropy.json");
    let o = voxq(&[
        "calibrate",
        "--model",
        "fixtures/models/campplus.json",
        "--calib",
        s(&calib),
        "--audio-root",
        s(&common::speech()),
        "--method",
        "entropy",
        "--out",
        s(&table),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let qdq = dir.join("campplus.qdq.onnx");
    let o = voxq(&[
        "quantize",
        CAMPPLUS,
        "--table",
        s(&table),
        "--target",
        "tensorrt",
        "--out",
        s(&qdq),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    qdq
}

fn build(model: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["build", s(model), "--target", "tensorrt", "--out", s(out)];
    args.extend(extra);
    let o = voxq(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    println!("{}", stdout(&o));
}

#[test]
#[ignore = "needs an NVIDIA GPU (nvidia-smi) and TensorRT's trtexec (make test-gpu)"]
fn trt_int8_campplus_matches_ort_cpu_fp32() {
    let tool = gpu_and_tensorrt();
    let tmp = tempfile::tempdir().unwrap();
    let qdq = campplus_qdq(tmp.path());
    let eng = tmp.path().join("trt-int8");
    build(&qdq, &eng, &[]);
    let m = engines::manifest::Manifest::read(&eng).unwrap();
    assert_eq!(
        (m.target.as_str(), m.precision.as_str()),
        ("tensorrt", "int8")
    );
    assert_eq!(m.builder.version, tool.version);
    assert_eq!(m.gpu.as_ref(), engines::tensorrt::gpu::gpus().first());
    assert!(eng.join("layers.md").is_file() && eng.join("model_ctx.onnx").is_file());
    engines::tensorrt::epcontext::read(&eng.join("model_ctx.onnx")).unwrap();

    // the same features through the plan (trtexec) and through ONNX Runtime CPU fp32
    let model = SpeakerModel::locate(&common::campplus()).unwrap();
    let cpu = Embedder::open(model, &Default::default()).unwrap();
    let scratch = tmp.path().join("io");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut worst: f64 = 1.0;
    for wav in list("fixtures/trials/trials.txt", 40).iter().step_by(4) {
        let audio = runtime::audio::wav::read_wav(wav).unwrap();
        let f = cpu.features(wav, &audio).unwrap();
        if f.frames < 100 {
            continue; // below the engine's profile minimum
        }
        let want = cpu.embed_features(&f).unwrap();
        let out = tool
            .infer(
                &eng.join("model.plan"),
                &[(
                    "feats".into(),
                    vec![1, f.frames as i64, f.dim as i64],
                    f.data.clone(),
                )],
                &scratch,
            )
            .unwrap();
        let got = &out.iter().find(|o| o.name == "embedding").unwrap().values;
        let c = cosine(&want, got);
        println!("{}: cosine {c:.5}", wav.display());
        worst = worst.min(c);
    }
    println!("worst cosine trt-int8 vs ORT CPU fp32: {worst:.5}");
    assert!(worst >= 0.99, "worst cosine {worst}");

    // served through ONNX Runtime's TensorRT execution provider, where this build has it
    if engines::ort::available_devices()
        .unwrap()
        .contains(&engines::ort::Device::Tensorrt)
    {
        let wav = list("fixtures/trials/calib.txt", 1).remove(0);
        let o = voxq(&["embed", "--model", s(&eng), "--device", "tensorrt", s(&wav)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let ort_eng = tmp.path().join("trt-ort-int8");
        let o = voxq(&[
            "build",
            s(&qdq),
            "--target",
            "tensorrt-ort",
            "--out",
            s(&ort_eng),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        engines::tensorrt::epcontext::read(&ort_eng.join("model_ctx.onnx")).unwrap();
        let o = voxq(&["embed", "--model", s(&ort_eng), s(&wav)]);
        assert!(o.status.success(), "{}", stderr(&o));
    } else {
        println!("ONNX Runtime TensorRT EP part skipped: this ONNX Runtime build has no TensorrtExecutionProvider");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (nvidia-smi) and TensorRT's trtexec (make test-gpu)"]
fn trt_latency_int8_vs_fp16_vs_fp32_by_batch() {
    gpu_and_tensorrt();
    let tmp = tempfile::tempdir().unwrap();
    let qdq = campplus_qdq(tmp.path());
    let int8 = tmp.path().join("trt-int8");
    let fp16 = tmp.path().join("trt-fp16");
    let fp32 = tmp.path().join("trt-fp32");
    build(&qdq, &int8, &[]);
    build(Path::new(CAMPPLUS), &fp16, &[]);
    build(Path::new(CAMPPLUS), &fp32, &["--precision", "fp32"]);
    let json = tmp.path().join("latency.json");
    let o = voxq(&[
        "bench",
        "engines",
        s(&int8),
        s(&fp16),
        s(&fp32),
        "--batches",
        "1,8,32",
        "--frames",
        "300",
        "--seconds",
        "2",
        "--json",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    println!("{}", stdout(&o));
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(rows.len(), 9);
    for r in &rows {
        assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["items_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    let precisions: Vec<&str> = rows
        .iter()
        .map(|r| r["precision"].as_str().unwrap())
        .collect();
    assert_eq!(&precisions[..3], ["int8", "fp16", "fp32"]);
}
