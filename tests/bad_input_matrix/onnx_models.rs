//! ONNX models: cycles, missing inputs, duplicate outputs, huge claims, external data,
//! hand-written protobuf and deep nesting.

use crate::common::*;
use crate::files::*;
use crate::harness::*;

use std::ffi::OsString;

use onnx_protobuf::{ModelProto, NodeProto, StringStringEntryProto};
use protobuf::Message;

// ---------------------------------------------------------------------------------------------
// ONNX models

fn campplus_proto() -> ModelProto {
    ModelProto::parse_from_bytes(&std::fs::read(campplus_onnx()).unwrap()).unwrap()
}

fn to_bytes(m: &ModelProto) -> Vec<u8> {
    m.write_to_bytes().unwrap()
}

/// Index of the first Conv node whose first input is produced by another node.
fn inner_conv(m: &ModelProto) -> usize {
    let g = &m.graph;
    g.node
        .iter()
        .enumerate()
        .position(|(i, n)| {
            n.op_type == "Conv"
                && g.node[..i]
                    .iter()
                    .any(|p| p.output.iter().any(|o| *o == n.input[0]))
        })
        .expect("an inner Conv")
}

/// CAM++ with a 2-node cycle: a Conv now reads the output of its own consumer.
fn onnx_cycle() -> Vec<u8> {
    let mut m = campplus_proto();
    let k = inner_conv(&m);
    let out = m.graph.node[k].output[0].clone();
    let c = m
        .graph
        .node
        .iter()
        .position(|n| n.input.contains(&out))
        .unwrap();
    let back = m.graph.node[c].output[0].clone();
    m.graph.as_mut().unwrap().node[k].input[0] = back;
    to_bytes(&m)
}

/// CAM++ with a Conv reading a tensor nothing produces.
fn onnx_missing_input() -> Vec<u8> {
    let mut m = campplus_proto();
    let k = inner_conv(&m);
    m.graph.as_mut().unwrap().node[k].input[0] = "no_such_tensor".into();
    to_bytes(&m)
}

/// CAM++ with a second node producing an existing tensor.
fn onnx_duplicate_output() -> Vec<u8> {
    let mut m = campplus_proto();
    let k = inner_conv(&m);
    let out = m.graph.node[k].output[0].clone();
    let g = m.graph.as_mut().unwrap();
    g.node.push(NodeProto {
        name: "dup".into(),
        op_type: "Identity".into(),
        input: vec![g.node[k].input[0].clone()],
        output: vec![out],
        ..Default::default()
    });
    to_bytes(&m)
}

/// CAM++ whose first Conv weight claims 10^10 × the rest of its shape elements (40+ GB of
/// float32) and holds no data.
fn onnx_tensor_claims_10gb() -> Vec<u8> {
    let mut m = campplus_proto();
    let k = inner_conv(&m);
    let w = m.graph.node[k].input[1].clone();
    let g = m.graph.as_mut().unwrap();
    let t = g.initializer.iter_mut().find(|t| t.name == w).unwrap();
    t.dims[0] = 10_000_000_000;
    t.raw_data.clear();
    t.float_data.clear();
    to_bytes(&m)
}

/// CAM++ whose first Conv weight lives in an external file with the given entries.
fn onnx_external(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut m = campplus_proto();
    let k = inner_conv(&m);
    let w = m.graph.node[k].input[1].clone();
    let g = m.graph.as_mut().unwrap();
    let t = g.initializer.iter_mut().find(|t| t.name == w).unwrap();
    t.raw_data.clear();
    t.float_data.clear();
    t.data_location = onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into();
    t.external_data = entries
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: k.to_string(),
            value: v.to_string(),
            ..Default::default()
        })
        .collect();
    to_bytes(&m)
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A length-delimited protobuf field.
fn pb_bytes(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(buf, field << 3 | 2);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn pb_varint(buf: &mut Vec<u8>, field: u64, v: u64) {
    varint(buf, field << 3);
    varint(buf, v);
}

/// A ModelProto (IR 8, opset 17) around serialised graph bytes.
fn pb_model(graph: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    pb_varint(&mut m, 1, 8);
    let mut opset = Vec::new();
    pb_varint(&mut opset, 2, 17);
    pb_bytes(&mut m, 8, &opset);
    pb_bytes(&mut m, 7, graph);
    m
}

/// Hand-written protobuf: every enclosing length is right, but the initializer's raw_data
/// length prefix claims 10 GB and 16 bytes follow.
fn onnx_raw_data_claims_10gb() -> Vec<u8> {
    let mut tensor = Vec::new();
    pb_varint(&mut tensor, 1, 2_500_000_000); // dims
    pb_varint(&mut tensor, 2, 1); // float
    pb_bytes(&mut tensor, 8, b"w");
    varint(&mut tensor, 9 << 3 | 2); // raw_data
    varint(&mut tensor, 10_000_000_000);
    tensor.extend_from_slice(&[0u8; 16]);
    let mut vi = Vec::new();
    pb_bytes(&mut vi, 1, b"w");
    let mut graph = Vec::new();
    pb_bytes(&mut graph, 2, b"g");
    pb_bytes(&mut graph, 12, &vi); // output
    pb_bytes(&mut graph, 5, &tensor); // initializer
    pb_model(&graph)
}

/// A graph whose `If` node's then-branch holds an `If` node … `depth` levels deep.
fn onnx_nested(depth: usize) -> Vec<u8> {
    let mut vi = Vec::new();
    pb_bytes(&mut vi, 1, b"y");
    let mut graph = Vec::new();
    pb_bytes(&mut graph, 2, b"g");
    pb_bytes(&mut graph, 12, &vi);
    for _ in 0..depth {
        let mut attr = Vec::new();
        pb_bytes(&mut attr, 1, b"then_branch");
        pb_bytes(&mut attr, 6, &graph);
        pb_varint(&mut attr, 20, 5);
        let mut node = Vec::new();
        pb_bytes(&mut node, 1, b"c");
        pb_bytes(&mut node, 2, b"y");
        pb_bytes(&mut node, 4, b"If");
        pb_bytes(&mut node, 5, &attr);
        let mut g = Vec::new();
        pb_bytes(&mut g, 1, &node);
        pb_bytes(&mut g, 2, b"g");
        pb_bytes(&mut g, 12, &vi);
        graph = g;
    }
    pb_model(&graph)
}

#[test]
fn onnx_models() {
    let env = Env::new();
    let out = env.out();
    let good = std::fs::read(campplus_onnx()).unwrap();
    let audio = audio_root(&env);
    let calib = env.write("calib.txt", "a.wav\n");
    let table = env.write("table.json", unit_range_table(&campplus_onnx()));
    let wav = audio.join("a.wav");

    let mut files = generic_cases(&env, "onnx", &good, &garbage(4096, 1));
    files.push((
        "wrong-type-text",
        env.write("text.onnx", "this is a text file\n"),
    ));
    files.push((
        "wrong-type-wav",
        env.write("wav.onnx", std::fs::read(&wav).unwrap()),
    ));
    files.push(("adversarial-cycle", env.write("cycle.onnx", onnx_cycle())));
    files.push((
        "adversarial-missing-input",
        env.write("missing.onnx", onnx_missing_input()),
    ));
    files.push((
        "adversarial-duplicate-output",
        env.write("dup.onnx", onnx_duplicate_output()),
    ));
    files.push((
        "adversarial-tensor-claims-10gb",
        env.write("claims10g.onnx", onnx_tensor_claims_10gb()),
    ));
    files.push((
        "adversarial-raw-data-prefix-10gb",
        env.write("rawprefix.onnx", onnx_raw_data_claims_10gb()),
    ));
    files.push((
        "adversarial-nested-2000-deep",
        env.write("nested.onnx", onnx_nested(2000)),
    ));
    files.push((
        "adversarial-external-escapes",
        env.write(
            "escape.onnx",
            onnx_external(&[("location", "../../../../../../../../etc/passwd")]),
        ),
    ));
    env.write("w.bin", [0u8; 64]);
    files.push((
        "adversarial-external-claims-10gb",
        env.write(
            "ext10g.onnx",
            onnx_external(&[("location", "w.bin"), ("length", "10000000000")]),
        ),
    ));
    // embed and calibrate take the ONNX file with `<stem>.json` beside it.
    for (_, p) in &files {
        let name = p.file_name().unwrap().to_str().unwrap();
        let cfg = speaker_config(name);
        std::fs::write(p.with_extension("json"), cfg.to_string()).unwrap();
    }

    let mut cases = Vec::new();
    for (case, p) in &files {
        let f = s(p);
        let cmds: Vec<(&str, Vec<OsString>)> = vec![
            ("embed", os(&[&"embed", &"--model", &f, &wav])),
            ("inspect", os(&[&"inspect", &f])),
            (
                "calibrate",
                os(&[
                    &"calibrate",
                    &"--model",
                    &f,
                    &"--calib",
                    &calib,
                    &"--audio-root",
                    &audio,
                    &"--out",
                    &out.join("t.json"),
                    &"--quiet",
                ]),
            ),
            (
                "quantize",
                os(&[
                    &"quantize",
                    &f,
                    &"--table",
                    &table,
                    &"--out",
                    &out.join("q.onnx"),
                ]),
            ),
            (
                "build",
                os(&[
                    &"build",
                    &f,
                    &"--target",
                    &"cpu",
                    &"--out",
                    &out.join("engine"),
                ]),
            ),
        ];
        for (cmd, args) in cmds {
            cases.push(Case {
                label: format!("{cmd}/onnx/{case}"),
                args,
                needles: vec![f.to_string()],
            });
        }
    }
    // Good input under the same limits.
    must_succeed(&os(&[&"inspect", &campplus_onnx()]));
    must_succeed(&os(&[
        &"quantize",
        &campplus_onnx(),
        &"--table",
        &table,
        &"--out",
        &env.path("q.onnx"),
    ]));
    run_matrix("onnx", &cases, &out);
}
