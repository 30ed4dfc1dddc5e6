//! `voxq quantize-whisper`'s per-group recipes on the tiny Whisper fixture
//! (fixtures/whisper-tiny-test, groups of `preset:whisper-tiny`; 2 encoder and 2 decoder
//! blocks, so enc.block2/3 match nothing): the default recipe (autoquant's choice for tiny.en:
//! full int8 stem and blocks 0-1, dynamic elsewhere, dynamic decoder), tableless recipes
//! without `--calib`, a recipe taken from an autoquant report, and bad input in one line.

use crate::common;

use std::path::{Path, PathBuf};

use common::{assert_one_line_error, root, s, stderr, stdout, voxq};
use onnx_protobuf::ModelProto;
use serde_json::Value;

const FIXTURE: &str = "fixtures/whisper-tiny-test";

pub(crate) fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

pub(crate) fn calib(dir: &Path) -> PathBuf {
    let c = dir.join("calib.txt");
    std::fs::write(
        &c,
        "allison/en/vm-repeat.wav\nallison/en/all-circuits-busy-now.wav\n",
    )
    .unwrap();
    c
}

pub(crate) fn count(m: &ModelProto, op: &str) -> usize {
    m.graph.node.iter().filter(|n| n.op_type == op).count()
}

/// QuantizeLinear nodes whose input tensor starts with `prefix`.
pub(crate) fn q_under(m: &ModelProto, prefix: &str) -> usize {
    m.graph
        .node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear" && n.input[0].starts_with(prefix))
        .count()
}

/// Every MatMul/Conv of `m` reads its weight from a DequantizeLinear (int8 weights), none
/// from a float initializer.
pub(crate) fn weights_behind_dq(m: &ModelProto) -> bool {
    let dq: std::collections::BTreeSet<&str> = m
        .graph
        .node
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear")
        .map(|n| n.output[0].as_str())
        .collect();
    m.graph
        .node
        .iter()
        .filter(|n| matches!(n.op_type.as_str(), "MatMul" | "Conv"))
        .filter(|n| {
            let w = &n.input[1];
            m.graph.initializer.iter().any(|t| &t.name == w) || dq.contains(w.as_str())
        })
        .all(|n| dq.contains(n.input[1].as_str()))
}

/// The folder transcribes the fixture's first clip.
fn transcribes(dir: &Path) {
    let exp = json(&root().join(FIXTURE).join("expected.json"));
    let wav = exp["clips"][0]["wav"].as_str().unwrap().to_string();
    let o = voxq(&[
        "transcribe",
        "--model",
        s(dir),
        "--max-new-tokens",
        "5",
        &wav,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with(&wav), "{}", stdout(&o));
}

fn load(dir: &Path, f: &str) -> ModelProto {
    exporter::model::load(dir.join(f)).unwrap()
}

/// The default recipe: the decoder runs dynamic int8 (MatMulInteger behind
/// DynamicQuantizeLinear, no QuantizeLinear, no decoder table), the encoder's stem and blocks
/// 0-1 are full int8 (QuantizeLinear on their activations, a table written); the record names
/// each group's mode; the folder transcribes. An explicit encoder recipe puts block 1 in
/// weight-only: its weights stay behind DequantizeLinear but no activation is quantized.
#[test]
fn default_recipe_is_autoquants_choice_full_encoder_stem_dynamic_decoder() {
    let tmp = tempfile::tempdir().unwrap();
    let calib = calib(tmp.path());
    let out = tmp.path().join("int8");
    let o = voxq(&[
        "quantize-whisper",
        "--model",
        FIXTURE,
        "--calib",
        s(&calib),
        "--audio-root",
        s(&common::speech()),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(
            "encoder (default: autoquant's tiny.en choice): dynamic: (other); full: enc.block0, enc.block1, enc.conv"
        ),
        "{text}"
    );
    // the dynamic decoder's MatMulInteger weights count as int8 in the size line
    let line = text.lines().find(|l| l.starts_with("decoder: deployable"));
    assert!(
        line.is_some_and(|l| !l.contains("(0 int8 weights")),
        "{text}"
    );
    let dec = load(&out, "decoder.onnx");
    assert_eq!(count(&dec, "QuantizeLinear"), 0);
    assert!(
        count(&dec, "MatMulInteger") >= 12,
        "{}",
        count(&dec, "MatMulInteger")
    );
    assert!(count(&dec, "DynamicQuantizeLinear") >= 1);
    let enc = load(&out, "encoder.onnx");
    for p in [
        "/enc/conv1/",
        "/enc/conv2/",
        "/enc/layers.0/",
        "/enc/layers.1/",
    ] {
        assert!(q_under(&enc, p) >= 1, "{p}");
    }
    assert!(weights_behind_dq(&enc));
    assert!(out.join("encoder.table.json").is_file());
    assert!(
        !out.join("decoder.table.json").exists(),
        "dynamic needs no table"
    );
    let rec = &json(&out.join("whisper.json"))["quantization"];
    assert_eq!(rec["encoder_modes"]["enc.conv"], "full");
    assert_eq!(rec["encoder_modes"]["enc.block1"], "full");
    assert_eq!(rec["decoder_modes"]["dec.block1.mlp"], "dynamic");
    assert_eq!(rec["decoder_groups"], "preset:whisper-tiny");
    assert_eq!(
        rec["method"], "percentile:99.99",
        "the recipe's calibration method"
    );
    transcribes(&out);

    let mixed = tmp.path().join("mixed");
    let o = voxq(&[
        "quantize-whisper",
        "--model",
        FIXTURE,
        "--calib",
        s(&calib),
        "--audio-root",
        s(&common::speech()),
        "--encoder-modes",
        "enc.block1=weight-only,*=full",
        "--decoder-modes",
        "dec.block0.cross_attn=weight-only,*=float",
        "--out",
        s(&mixed),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let enc = load(&mixed, "encoder.onnx");
    assert!(q_under(&enc, "/enc/layers.0/") >= 1);
    assert_eq!(q_under(&enc, "/enc/layers.1/"), 0, "block 1 is weight-only");
    assert!(weights_behind_dq(&enc));
    let dec = load(&mixed, "decoder.onnx");
    assert_eq!(count(&dec, "QuantizeLinear"), 0);
    assert_eq!(count(&dec, "MatMulInteger"), 0);
    assert!(
        count(&dec, "DequantizeLinear") >= 4,
        "the cross-attention's weights"
    );
    let rec = &json(&mixed.join("whisper.json"))["quantization"];
    assert_eq!(rec["decoder_modes"]["dec.block1.mlp"], "float");
    transcribes(&mixed);
}

/// Weight-only everywhere needs no table: no --calib, nothing calibrated, no table files,
/// every weight behind DequantizeLinear and no activation quantized.
#[test]
fn weight_only_recipes_run_without_calib() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("wo");
    let o = voxq(&[
        "quantize-whisper",
        "--model",
        FIXTURE,
        "--encoder-modes",
        "*=weight-only",
        "--decoder-modes",
        "*=weight-only",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("calibrated"), "{}", stdout(&o));
    for f in ["encoder.onnx", "decoder.onnx"] {
        let m = load(&out, f);
        assert_eq!(count(&m, "QuantizeLinear"), 0, "{f}");
        assert!(count(&m, "DequantizeLinear") >= 4, "{f}");
        assert!(weights_behind_dq(&m), "{f}");
    }
    for f in ["encoder.table.json", "decoder.table.json"] {
        assert!(!out.join(f).exists(), "{f}");
    }
    let rec = &json(&out.join("whisper.json"))["quantization"];
    assert_eq!(rec["calibration"], Value::Null);
    assert_eq!(rec["encoder_modes"]["enc.conv"], "weight-only");
    transcribes(&out);
}

/// A recipe from an autoquant report: autoquant searches the fixture's decoder in dynamic and
/// weight-only int8 (budget 100 points: every group chosen, a mode each); quantize-whisper
/// --from-autoquant writes a decoder with exactly the report's modes (the same ops as the
/// model autoquant wrote) and records them. A report of another model is refused in one line.
#[test]
fn from_autoquant_takes_the_reports_part_groups_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let list = common::tiny_whisper_asr_list(tmp.path());
    let aq = tmp.path().join("aq");
    let o = voxq(&[
        "autoquant",
        FIXTURE,
        "--part",
        "decoder",
        "--list",
        s(&list),
        "--audio-root",
        ".",
        "--groups",
        "preset:whisper-tiny",
        "--mode",
        "dynamic,weight-only",
        "--target",
        "ort-cpu",
        "--max-new-tokens",
        "10",
        "--max-increase",
        "100",
        "--no-cache",
        "--quiet",
        "--out",
        s(&aq),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&aq.join("autoquant.json"));
    let chosen: Vec<String> = r["chosen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect();
    assert!(!chosen.is_empty());
    let out = tmp.path().join("int8");
    let o = voxq(&[
        "quantize-whisper",
        "--model",
        FIXTURE,
        "--from-autoquant",
        s(&aq),
        "--encoder-modes",
        "*=weight-only",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rec = &json(&out.join("whisper.json"))["quantization"];
    for g in &chosen {
        assert_eq!(rec["decoder_modes"][g], r["chosen_modes"][g], "{g}");
    }
    for g in r["kept_float"].as_array().unwrap() {
        assert_eq!(rec["decoder_modes"][g.as_str().unwrap()], "float", "{g}");
    }
    let (mine, theirs) = (
        load(&out, "decoder.onnx"),
        load(&aq.join("model"), "decoder.onnx"),
    );
    for op in [
        "MatMulInteger",
        "DynamicQuantizeLinear",
        "DequantizeLinear",
        "MatMul",
    ] {
        assert_eq!(count(&mine, op), count(&theirs, op), "{op}");
    }
    assert!(
        stdout(&o).contains(&format!(
            "decoder ({}, measured as ",
            s(&aq.join("autoquant.json"))
        )),
        "{}",
        stdout(&o)
    );
    transcribes(&out);

    // the same report with another model's hash
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let mut r2 = r.clone();
    r2["sensitivity"]["model_sha256"] = "00".repeat(32).into();
    std::fs::write(other.join("autoquant.json"), r2.to_string()).unwrap();
    let bad = tmp.path().join("bad");
    let o = voxq(&[
        "quantize-whisper",
        "--model",
        FIXTURE,
        "--from-autoquant",
        s(&other),
        "--out",
        s(&bad),
    ]);
    assert_one_line_error(
        &o,
        &[
            &format!("{}", other.join("autoquant.json").display()),
            "another model",
        ],
    );
    assert!(!bad.exists());
}

/// Bad recipes fail in one line before any calibration, and write nothing.
#[test]
fn bad_recipes_fail_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let calib = calib(tmp.path());
    let out = tmp.path().join("never");
    let run = |extra: &[&str]| {
        let mut v = vec!["quantize-whisper", "--model", FIXTURE, "--out", s(&out)];
        v.extend_from_slice(extra);
        voxq(&v)
    };
    let o = run(&[
        "--calib",
        s(&calib),
        "--decoder-modes",
        "dec.block9.mlp=full",
    ]);
    assert_one_line_error(&o, &["--decoder-modes", "no group 'dec.block9.mlp'"]);
    let o = run(&["--calib", s(&calib), "--encoder-modes", "enc.conv=int4"]);
    assert_one_line_error(&o, &["--encoder-modes", "unknown mode 'int4'"]);
    let o = run(&["--calib", s(&calib), "--encoder-modes", "enc.conv"]);
    assert_one_line_error(&o, &["--encoder-modes", "GROUP=MODE"]);
    // dynamic (the default decoder and encoder rest) for TensorRT, refused before calibrating
    let o = run(&["--calib", s(&calib), "--target", "tensorrt"]);
    // the default recipe's first dynamic part is the encoder (blocks 2-3, none in the fixture)
    assert_one_line_error(&o, &["encoder.onnx", "TensorRT has no MatMulInteger"]);
    assert!(!stdout(&o).contains("calibrated"));
    // full int8 (the default encoder) without a calibration list
    let o = run(&[]);
    assert_one_line_error(&o, &["--calib", "encoder"]);
    let o = run(&[
        "--encoder-modes",
        "*=weight-only",
        "--decoder-modes",
        "*=smooth",
    ]);
    assert_one_line_error(&o, &["--calib", "decoder"]);
    assert!(!out.exists());
}
