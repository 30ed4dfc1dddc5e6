//! `voxq sensitivity` / `voxq autoquant` on speech-to-text models, judged by WER: the tiny
//! audio LLM's `llm` part in weight-only int8 with the smollm2 preset (the committed list
//! `fixtures/audio-llm-tiny-test/asr.tsv` holds the fixture's known output, so fp32 scores 0%),
//! the chosen model written as a folder that `voxq eval-asr` scores at the reported WER; the
//! tiny Whisper decoder per group with the whisper-tiny preset; bad inputs in one line.

use crate::common;

use common::{assert_one_line_error, s, stderr, stdout, voxq};
use serde_json::Value;

const LLM: &str = "fixtures/audio-llm-tiny-test/audio_llm.json";
const LIST: &str = "fixtures/audio-llm-tiny-test/asr.tsv";

/// `voxq eval-asr` of an autoquant model folder of the tiny audio LLM on [`LIST`]: its stdout.
fn eval_asr_llm(model: &std::path::Path) -> String {
    let o = voxq(&[
        "eval-asr",
        "--model",
        s(&model.join("audio_llm.json")),
        "--list",
        LIST,
        "--max-new-tokens",
        "12",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn json(p: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// With a budget of 100 points every group is chosen, so the written model is the all-int8
/// one (WER 55.56% on this random tiny model, 5 errors / 9 words); eval-asr on the written
/// folder must give exactly the WER the report gives, and its decoder holds int8 weights
/// behind DequantizeLinear and no QuantizeLinear (weight-only).
#[test]
fn autoquant_weight_only_audio_llm_writes_a_model_eval_asr_scores_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("aq");
    let o = voxq(&[
        "autoquant",
        LLM,
        "--part",
        "llm",
        "--list",
        LIST,
        "--audio-root",
        ".",
        "--groups",
        "preset:smollm2",
        "--mode",
        "weight-only",
        "--max-increase",
        "100",
        "--max-new-tokens",
        "12",
        "--no-cache",
        "--quiet",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&out.join("autoquant.json"));
    assert_eq!(r["sensitivity"]["fp32"]["metric"], 0.0);
    assert_eq!(r["sensitivity"]["metric"]["name"], "WER");
    assert_eq!(r["sensitivity"]["target"], "weight-only");
    let groups: Vec<&str> = r["sensitivity"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        [
            "block0.attn",
            "block0.mlp",
            "block1.attn",
            "block1.mlp",
            "lm_head",
            "(other)"
        ]
    );
    let wer = r["chosen_row"]["metric"].as_f64().unwrap();
    assert!((wer - 500.0 / 9.0).abs() < 1e-9, "{wer}");
    assert_eq!(r["chosen_row"]["quantized_nodes"], 15);
    let model = out.join("model");
    let cfg = json(&model.join("audio_llm.json"));
    assert_eq!(cfg["llm"]["dir"], "llm");
    let dec = exporter::model::load(model.join("llm/decoder.onnx")).unwrap();
    let count = |op: &str| dec.graph.node.iter().filter(|n| n.op_type == op).count();
    assert_eq!(
        (count("QuantizeLinear"), count("DequantizeLinear")),
        (0, 15)
    );
    let out = eval_asr_llm(&model);
    assert!(
        out.contains("WER 55.56% (5 errors / 9 reference words"),
        "{out}"
    );
}

/// The tiny Whisper decoder, weight-only, one group at a time: a row per group of the
/// whisper-tiny preset that matches the decoder, WER of fp32 on the fixture's own outputs 0%.
#[test]
fn sensitivity_of_the_whisper_decoder_per_group() {
    let tmp = tempfile::tempdir().unwrap();
    let list = common::tiny_whisper_asr_list(tmp.path());
    let out = tmp.path().join("sens");
    let o = voxq(&[
        "sensitivity",
        "fixtures/whisper-tiny-test",
        "--part",
        "decoder",
        "--list",
        s(&list),
        "--audio-root",
        ".",
        "--groups",
        "preset:whisper-tiny",
        "--mode",
        "weight-only",
        "--max-new-tokens",
        "20",
        "--no-cache",
        "--quiet",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&out.join("sensitivity.json"));
    assert_eq!(r["fp32"]["metric"], 0.0);
    let rows: Vec<(&str, u64)> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["label"].as_str().unwrap(),
                g["quantized_nodes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("dec.block0.self_attn", 4),
            ("dec.block0.cross_attn", 4),
            ("dec.block0.mlp", 2),
            ("dec.block1.self_attn", 4),
            ("dec.block1.cross_attn", 4),
            ("dec.block1.mlp", 2),
            ("dec.embed_out", 1),
            ("(other)", 0),
        ]
    );
    assert_eq!(r["all_int8"]["quantized_nodes"], 21);
    assert!(
        stdout(&o).contains("`dec.block1.cross_attn` only"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn asr_bad_inputs_fail_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let base = |extra: &[&str]| {
        let mut v = vec![
            "sensitivity",
            LLM,
            "--list",
            LIST,
            "--audio-root",
            ".",
            "--quiet",
            "--out",
            s(&out),
        ];
        v.extend_from_slice(extra);
        voxq(&v)
    };
    let o = base(&["--mode", "weight-only"]);
    assert_one_line_error(&o, &["--part", "encoder, projector, llm"]);
    let o = base(&["--mode", "weight-only", "--part", "decoder"]);
    assert_one_line_error(&o, &["--part", "no part 'decoder'"]);
    let o = base(&["--part", "llm"]);
    assert_one_line_error(&o, &["--table", "full int8 of the llm part", "weight-only"]);
    let o = base(&["--part", "llm", "--mode", "weight-only", "--metric", "eer"]);
    assert_one_line_error(&o, &["--metric eer", "WER"]);
    let o = base(&["--part", "llm", "--mode", "weight-only", "--table", LIST]);
    assert_one_line_error(&o, &["--table", "weight-only"]);
    let o = voxq(&[
        "sensitivity",
        LLM,
        "--part",
        "llm",
        "--mode",
        "weight-only",
        "--list",
        "no/such/list.tsv",
        "--audio-root",
        ".",
        "--out",
        s(&out),
    ]);
    assert_one_line_error(&o, &["no/such/list.tsv"]);
    assert!(!out.exists(), "nothing written on a refused run");
}

/// Several modes in one run: the tiny Whisper decoder calibrated by `quantize-whisper` (its
/// table keeps per-channel maxima), then every group measured in weight-only, smooth and full
/// int8 — one row per group and mode, the mode in the Markdown table; the groups whose
/// LayerNorm feeds them (self-attention, cross-attention, MLP) are smoothed.
#[test]
fn sensitivity_of_the_whisper_decoder_in_several_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let calib = tmp.path().join("calib.txt");
    std::fs::write(
        &calib,
        "allison/en/vm-repeat.wav\nallison/en/all-circuits-busy-now.wav\n",
    )
    .unwrap();
    let int8 = tmp.path().join("int8");
    let o = voxq(&[
        "quantize-whisper",
        "--model",
        "fixtures/whisper-tiny-test",
        "--calib",
        s(&calib),
        "--audio-root",
        s(&common::speech()),
        "--decoder-modes",
        "*=full",
        "--decoder-include",
        "op:MatMul",
        "--method",
        "max",
        "--out",
        s(&int8),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = int8.join("decoder.table.json");
    let t = json(&table);
    // the MLP's LayerNorm output: one maximum per channel of the 16-wide tiny decoder
    let ln = "/dec/layers.0/final_layer_norm/LayerNormalization_output_0";
    let per_channel = t["tensors"][ln]["stats"]["channel_abs_max"].as_array();
    assert_eq!(per_channel.map(Vec::len), Some(16), "{ln}");
    let list = common::tiny_whisper_asr_list(tmp.path());
    let out = tmp.path().join("sens");
    let cache = tmp.path().join("cache");
    let o = voxq(&[
        "sensitivity",
        "fixtures/whisper-tiny-test",
        "--part",
        "decoder",
        "--list",
        s(&list),
        "--audio-root",
        ".",
        "--groups",
        "preset:whisper-tiny",
        "--mode",
        "weight-only,smooth,full",
        "--table",
        s(&table),
        "--max-new-tokens",
        "20",
        "--cache",
        s(&cache),
        "--quiet",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&out.join("sensitivity.json"));
    assert_eq!(r["fp32"]["metric"], 0.0);
    let rows: Vec<(&str, &str)> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let label = g["label"].as_str().unwrap();
            let group = g["quantized_groups"][0].as_str().unwrap();
            (label, g["modes"][group].as_str().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 8 * 3);
    assert_eq!(
        rows[0],
        ("dec.block0.self_attn [weight-only]", "weight-only")
    );
    assert_eq!(rows[7], ("dec.block0.mlp [smooth]", "smooth"));
    assert_eq!(rows[8], ("dec.block0.mlp [full]", "full"));
    // all int8 in the preferred mode (full), and the modes named in the report
    assert_eq!(r["all_int8"]["modes"]["dec.block0.mlp"], "full");
    assert!(r["target"]
        .as_str()
        .unwrap()
        .contains("weight-only, smooth, full"));
    let md = std::fs::read_to_string(out.join("sensitivity.md")).unwrap();
    assert!(md.contains("`dec.block0.mlp` only, smooth |"), "{md}");
    assert!(md.contains("`dec.block0.mlp` only, full |"), "{md}");
    assert!(out.join("sensitivity.png").is_file());

    // autoquant over the same measurements (from the cache): a mode per chosen group,
    // written into the model folder's report
    let aq = tmp.path().join("aq");
    let o = voxq(&[
        "autoquant",
        "fixtures/whisper-tiny-test",
        "--part",
        "decoder",
        "--list",
        s(&list),
        "--audio-root",
        ".",
        "--groups",
        "preset:whisper-tiny",
        "--mode",
        "weight-only,smooth,full",
        "--table",
        s(&table),
        "--max-new-tokens",
        "20",
        "--max-increase",
        "100",
        "--cache",
        s(&cache),
        "--quiet",
        "--out",
        s(&aq),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&aq.join("autoquant.json"));
    let chosen = r["chosen"].as_array().unwrap();
    assert!(!chosen.is_empty());
    for g in chosen {
        let m = r["chosen_modes"][g.as_str().unwrap()].as_str();
        assert!(
            matches!(m, Some("full" | "smooth" | "weight-only")),
            "{g}: {m:?}"
        );
    }
    assert!(aq.join("model/decoder.onnx").is_file());
    assert!(std::fs::read_to_string(aq.join("autoquant.md"))
        .unwrap()
        .contains("modes: "));
}

/// Dynamic int8 of the tiny audio LLM's `llm` part: every group chosen (budget 100 points), the
/// written decoder runs its MatMuls as `DynamicQuantizeLinear → MatMulInteger` (no
/// QuantizeLinear, no table), and eval-asr on the folder gives the WER the report gives. The
/// mode is refused for TensorRT and with a table, before any work.
#[test]
fn autoquant_dynamic_audio_llm_writes_integer_matmuls_eval_asr_scores_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("aq");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "autoquant",
            LLM,
            "--part",
            "llm",
            "--list",
            LIST,
            "--audio-root",
            ".",
            "--groups",
            "preset:smollm2",
            "--mode",
            "dynamic",
            "--max-increase",
            "100",
            "--max-new-tokens",
            "12",
            "--no-cache",
            "--quiet",
            "--out",
            s(&out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let v = args(extra);
        voxq(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let o = run(&[]);
    assert_one_line_error(&o, &["--mode dynamic", "TensorRT has no MatMulInteger"]);
    let o = run(&["--target", "ort-cpu", "--table", LIST]);
    assert_one_line_error(&o, &["--table", "dynamic int8 use no calibrated range"]);
    assert!(!out.exists(), "a refused run writes nothing");

    let o = run(&["--target", "ort-cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&out.join("autoquant.json"));
    assert_eq!(r["sensitivity"]["target"], "dynamic (ort-cpu)");
    let model = out.join("model");
    let dec = exporter::model::load(model.join("llm/decoder.onnx")).unwrap();
    let count = |op: &str| dec.graph.node.iter().filter(|n| n.op_type == op).count();
    assert_eq!(count("QuantizeLinear"), 0);
    assert!(count("MatMulInteger") >= 14, "{}", count("MatMulInteger"));
    assert!(count("DynamicQuantizeLinear") >= 1);
    let wer = r["chosen_row"]["metric"].as_f64().unwrap();
    let out = eval_asr_llm(&model);
    assert!(
        out.contains(&format!("WER {wer:.2}%")),
        "report {wer}: {out}"
    );
}
