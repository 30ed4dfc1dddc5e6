//! TensorRT build fixes of issue 19 checked with ONNX Runtime on this machine: the float16
//! cast an fp16 build makes where trtexec has no `--fp16` (TensorRT 11) is a real float16
//! model that runs and keeps the embedding, so the manifest's "fp16" is what is built; the
//! per-tensor ConvTranspose weights of the `tensorrt` placement run and keep the output.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use calibration::{CalibrationTable, TensorRange};
use engines::ort::{cpu_session, cpu_session_from_bytes, CpuOptions};
use engines::tensor::{HostTensor, HostValue};
use engines::tensorrt::{build_plan, write_fp16_cast, TrtPrecision};
use exporter::model::to_bytes;
use exporter::onnx::builders::{model, node, tensor_f32, value_info};
use exporter::policy::{plan, QuantPolicy, Target};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, GraphProto, ModelProto};
use ort::session::Session;
use ort::value::DynValue;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/models")
        .join(name)
}

fn opts() -> CpuOptions {
    CpuOptions {
        intra_threads: 1,
        ..CpuOptions::default()
    }
}

fn floats(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

fn run(s: &mut Session, x: &HostTensor) -> BTreeMap<String, Vec<f32>> {
    let feed: Vec<(String, DynValue)> = vec![(x.name.clone(), x.to_ort().unwrap())];
    let out = s.run(feed).unwrap();
    out.iter()
        .map(|(n, v)| match HostValue::from_ort(n, &v).unwrap() {
            HostValue::Tensor(t) => (n.to_string(), t.to_f32().unwrap()),
            other => panic!("{n}: {other:?}"),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// An fp16 TensorRT 11 build of fp32 CAM++: the plan builds the float16 cast, which is
/// float16 (what the manifest says) and runs in ONNX Runtime with the fp32 model's embedding
/// (cosine printed). The ECAPA fixture (a float `Range`, an `If`) is checked below.
#[test]
fn fp16_build_on_tensorrt_11_builds_a_float16_cast_that_keeps_the_embedding() {
    let src = fixture("campplus.onnx");
    let proto = exporter::model::load(&src).unwrap();
    assert_eq!(engines::build::precision_of(&proto), "fp32");
    let tmp = tempfile::tempdir().unwrap();
    let p = build_plan(&src, "fp32", tmp.path(), TrtPrecision::Fp16, &[], 11);
    let cast = p
        .cast_fp16
        .clone()
        .expect("TensorRT 11 fp16 build casts the model");
    assert_eq!(p.args[0], format!("--onnx={}", cast.display()));
    assert!(!p.args.iter().any(|a| a == "--fp16"), "{:?}", p.args);
    write_fp16_cast(&proto, &cast).unwrap();
    let f16 = exporter::model::load(&cast).unwrap();
    assert_eq!(
        engines::build::precision_of(&f16),
        p.precision,
        "label = what is built"
    );
    let n16 = f16
        .graph
        .initializer
        .iter()
        .filter(|t| t.data_type == exporter::model::elem::FLOAT16)
        .count();
    assert!(n16 > 10, "{n16} float16 initializers");

    let x = HostTensor::from_f32("feats", &[1, 200, 80], &floats(200 * 80, 7));
    let want = run(&mut cpu_session(&src, &opts()).unwrap(), &x);
    let got = run(&mut cpu_session(&cast, &opts()).unwrap(), &x);
    let c = cosine(&got["embedding"], &want["embedding"]);
    println!("campplus float16 cast vs fp32: embedding cosine {c:.6}");
    assert!(c > 0.999, "cosine {c}");
}

/// The distilled ECAPA-TDNN has a `Range` over float values (attentive pooling's length mask):
/// ONNX defines no float16 `Range`, so the float16 pass keeps it in float32 between Casts, and
/// the cast model loads in ONNX Runtime and keeps the embedding.
#[test]
fn float16_cast_of_ecapa_keeps_range_in_float32_and_runs() {
    let src = fixture("ecapa_distil.onnx");
    let proto = exporter::model::load(&src).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cast = tmp.path().join("ecapa.fp16.onnx");
    write_fp16_cast(&proto, &cast).unwrap();
    let f16 = exporter::model::load(&cast).unwrap();
    let ranges: Vec<_> = f16
        .graph
        .node
        .iter()
        .filter(|n| n.op_type == "Range")
        .collect();
    assert!(!ranges.is_empty(), "the fixture has a Range node");
    for r in &ranges {
        for i in &r.input {
            let producer = f16.graph.node.iter().find(|n| n.output.contains(i));
            let to = producer
                .filter(|n| n.op_type == "Cast")
                .and_then(|n| n.attribute.iter().find(|a| a.name == "to"))
                .map(|a| a.i as i32);
            assert_eq!(to, Some(exporter::model::elem::FLOAT), "Range input {i}");
        }
    }
    let x = HostTensor::from_f32("feats", &[1, 200, 80], &floats(200 * 80, 9));
    let want = run(&mut cpu_session(&src, &opts()).unwrap(), &x);
    let got = run(&mut cpu_session(&cast, &opts()).unwrap(), &x);
    let c = cosine(&got["embedding"], &want["embedding"]);
    println!("ecapa_distil float16 cast vs fp32: embedding cosine {c:.6}");
    assert!(c > 0.99, "cosine {c}");
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// x[1,32,8] → ConvTranspose(w [32, 16, 2], stride 2) → y[1,16,16].
fn conv_transpose_model() -> ModelProto {
    let mut g = GraphProto::new();
    g.input.push(value_info("x", elem(), &[1, 32, 8]));
    g.output.push(value_info("y", elem(), &[1, 16, 16]));
    g.initializer
        .push(tensor_f32("wt", &[32, 16, 2], &floats(32 * 16 * 2, 1)));
    g.initializer.push(tensor_f32("bt", &[16], &floats(16, 2)));
    let mut ct = node("ConvTranspose", &["x", "wt", "bt"], &["y"]);
    ct.name = "deconv".into();
    ct.attribute.push(ints("strides", &[2]));
    ct.attribute.push(ints("kernel_shape", &[2]));
    g.node.push(ct);
    model(g, 17)
}

fn elem() -> i32 {
    exporter::model::elem::FLOAT
}

/// The `tensorrt` placement's per-tensor ConvTranspose weight runs in ONNX Runtime and keeps
/// the output of the float model.
#[test]
fn per_tensor_conv_transpose_runs_and_keeps_the_output() {
    let m = conv_transpose_model();
    let p = plan(
        &m,
        &QuantPolicy {
            target: Target::Tensorrt,
            ..QuantPolicy::default()
        },
    )
    .unwrap();
    assert!(!p.quantized[0].per_channel);
    let x = floats(32 * 8, 3);
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let table = CalibrationTable {
        format: "voxq-calibration/1".into(),
        method: "max".into(),
        tensors: [(
            "x".to_string(),
            TensorRange {
                amax,
                scale: amax / 127.0,
                fallback: None,
                stats: None,
            },
        )]
        .into(),
    };
    let (q, _) = exporter::passes::insert_qdq(&m, &p, &table).unwrap();
    let input = HostTensor::from_f32("x", &[1, 32, 8], &x);
    let mut fs = cpu_session_from_bytes("deconv fp32", &to_bytes(&m).unwrap(), &opts()).unwrap();
    let mut qs = cpu_session_from_bytes("deconv qdq", &to_bytes(&q).unwrap(), &opts()).unwrap();
    let (want, got) = (run(&mut fs, &input), run(&mut qs, &input));
    let c = cosine(&got["y"], &want["y"]);
    println!("ConvTranspose per-tensor int8 vs fp32: cosine {c:.6}");
    assert!(c > 0.999, "cosine {c}");
}
