//! Models saved with external data load in ONNX Runtime and give the same outputs as the
//! original: a synthetic model (initializers in the main graph and in If branches, a Constant
//! value) and the real CAM++ fixture when it is present.

use std::path::{Path, PathBuf};

use engines::ort_env::{cpu_session, CpuOptions};
use engines::tensor::{compare, HostTensor, HostValue, TensorData, Tolerance};
use exporter::model::{self, elem, SaveOptions};
use onnx_protobuf::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use ort::value::DynValue;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
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

fn raw_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    HostTensor::from_f32(name, dims, data).to_proto()
}

fn value_info(name: &str, elem_type: i32, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in dims {
        let mut dim = onnx_protobuf::tensor_shape_proto::Dimension::new();
        dim.value = Some(onnx_protobuf::tensor_shape_proto::dimension::Value::DimValue(d));
        shape.dim.push(dim);
    }
    let tt = type_proto::Tensor {
        elem_type,
        shape: Some(shape).into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tt)),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Y = X·W + B + C (C from a Constant node); Z = If(cond, Y + T, Y − E) with T and E
/// initializers of the branches.
fn synthetic_model() -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "synthetic".into();
    g.input.push(value_info("X", elem::FLOAT, &[1, 16]));
    g.input.push(value_info("cond", elem::BOOL, &[]));
    g.output.push(value_info("Y", elem::FLOAT, &[1, 512]));
    g.output.push(value_info("Z", elem::FLOAT, &[1, 512]));
    g.initializer
        .push(raw_f32("W", &[16, 512], &floats(16 * 512, 1)));
    g.initializer.push(raw_f32("B", &[512], &floats(512, 2)));
    let mut constant = node("Constant", &[], &["C"]);
    constant.attribute.push(AttributeProto {
        name: "value".into(),
        type_: AttributeType::TENSOR.into(),
        t: Some(raw_f32("C_value", &[512], &floats(512, 3))).into(),
        ..Default::default()
    });
    g.node.push(node("MatMul", &["X", "W"], &["XW"]));
    g.node.push(node("Add", &["XW", "B"], &["Y0"]));
    g.node.push(constant);
    g.node.push(node("Add", &["Y0", "C"], &["Y"]));
    let branch = |name: &str, op: &str, init: &str, seed: u32| {
        let mut b = GraphProto::new();
        b.name = name.into();
        b.initializer
            .push(raw_f32(init, &[512], &floats(512, seed)));
        b.node
            .push(node(op, &["Y", init], &[&format!("{name}_out")]));
        b.output
            .push(value_info(&format!("{name}_out"), elem::FLOAT, &[1, 512]));
        b
    };
    let mut iff = node("If", &["cond"], &["Z"]);
    for (attr, g) in [
        ("then_branch", branch("then", "Add", "T", 4)),
        ("else_branch", branch("else", "Sub", "E", 5)),
    ] {
        iff.attribute.push(AttributeProto {
            name: attr.into(),
            type_: AttributeType::GRAPH.into(),
            g: Some(g).into(),
            ..Default::default()
        });
    }
    g.node.push(iff);
    ModelProto {
        ir_version: 8,
        producer_name: "voxq-test".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
            ..Default::default()
        }],
        graph: Some(g).into(),
        ..Default::default()
    }
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
    assert_eq!(saved.external_tensors, 4, "W, B, T, E");
    let ext_all = dir.path().join("ext_all.onnx");
    let all = SaveOptions {
        include_attribute_tensors: true,
        ..SaveOptions::external(1024)
    };
    assert_eq!(model::save(&m, &ext_all, &all).unwrap().external_tensors, 5);

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
    if !path.is_file() {
        eprintln!("skipped: {} not present", path.display());
        return;
    }
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
