//! `voxq eval-asr` and the WER evaluator on the committed tiny fixtures, whose outputs are known
//! (their expected.json): lists whose references are those outputs with one word changed,
//! dropped or added give hand-computed substitution/deletion/insertion counts and WER, for a
//! Whisper folder and an audio LLM; `--task qa` counts exact and contained answers; bad inputs
//! fail in one line before any model loads; the evaluator behind `Evaluate` measures the same
//! WER from a part's bytes and fingerprints model + list.

use crate::common;

use common::{assert_one_line_error, root, s, stderr, stdout, voxq};
use exporter::sensitivity::Evaluate;
use runtime::asr_eval::read_asr_list;
use runtime::evaluate::WerEvaluator;
use serde_json::Value;

const WHISPER: &str = "fixtures/whisper-tiny-test";
const LLM: &str = "fixtures/audio-llm-tiny-test";
const TRIM: &str = "fixtures/audio-llm-tiny-trim";

fn expected(dir: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join(dir).join("expected.json")).unwrap())
        .unwrap()
}

/// The fixture's known output as lower-case words (the test checks it holds only letters and
/// spaces, so that this is what the normaliser must give too).
fn plain_words(text: &str) -> Vec<String> {
    assert!(
        text.chars().all(|c| c.is_ascii_alphabetic() || c == ' '),
        "{text:?}"
    );
    text.split_whitespace().map(|w| w.to_lowercase()).collect()
}

/// The Whisper list: clip A with its first word changed (1 substitution / 9 words), clip A
/// without its first word (1 insertion / 8), clip B with a word added (1 deletion / 12), and a
/// bracketed non-speech reference (left out): 3 errors / 29 words = 10.34%.
fn whisper_list(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    let exp = expected(WHISPER);
    let (a, b) = (&exp["clips"][0], &exp["clips"][1]);
    let wa = plain_words(a["text"].as_str().unwrap());
    // clip B's text: "... doctorsMechMech... Watergate": letters and spaces only too
    let wb = plain_words(b["text"].as_str().unwrap());
    assert_eq!((wa.len(), wb.len()), (9, 11), "{wa:?} {wb:?}");
    let (ca, cb) = (a["wav"].as_str().unwrap(), b["wav"].as_str().unwrap());
    let sub = format!("kosmos {}", wa[1..].join(" "));
    let ins = wa[1..].join(" ");
    let del = format!("{} extra", wb.join(" "));
    let list = dir.join("asr.tsv");
    std::fs::write(
        &list,
        format!("{ca}\t{sub}\n{ca}\t{ins}\n\n{cb}\t{del}\n{ca}\t[beep tone]\n"),
    )
    .unwrap();
    (
        list,
        vec![
            a["text"].as_str().unwrap().trim().to_string(),
            b["text"].as_str().unwrap().trim().to_string(),
        ],
    )
}

#[test]
fn whisper_wer_of_a_hand_computed_list() {
    let tmp = tempfile::tempdir().unwrap();
    let (list, hyps) = whisper_list(tmp.path());
    let (tsv, json) = (tmp.path().join("u.tsv"), tmp.path().join("w.json"));
    let o = voxq(&[
        "eval-asr",
        "--model",
        WHISPER,
        "--list",
        s(&list),
        "--audio-root",
        ".",
        "--max-new-tokens",
        "20",
        // the greedy outputs of expected.json (with the safeguards, clip B's looping decode
        // would be replaced by a sampled one)
        "--no-safeguards",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        s(&tsv),
        "--json",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("WER 10.34% (3 errors / 29 reference words: 1 substitution, 1 deletion, 1 insertion) over 3 utterances (1 non-speech left out)"),
        "{out}"
    );
    let rows: Vec<Vec<String>> = std::fs::read_to_string(&tsv)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    assert_eq!(
        rows[0],
        ["audio", "reference", "hypothesis", "errors", "words"]
    );
    assert_eq!(rows.len(), 4);
    let got: Vec<(&str, &str)> = rows[1..]
        .iter()
        .map(|r| (r[3].as_str(), r[4].as_str()))
        .collect();
    assert_eq!(got, [("1", "9"), ("1", "8"), ("1", "12")]);
    assert_eq!(rows[1][2], hyps[0]);
    assert_eq!(rows[3][2], hyps[1]);
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        (
            &j["substitutions"],
            &j["deletions"],
            &j["insertions"],
            &j["words"],
            &j["utterances"],
            &j["skipped_non_speech"]
        ),
        (
            &Value::from(1),
            &Value::from(1),
            &Value::from(1),
            &Value::from(29),
            &Value::from(3),
            &Value::from(1)
        )
    );
    assert!((j["wer_percent"].as_f64().unwrap() - 300.0 / 29.0).abs() < 1e-9);
}

/// The audio LLM's known output for the asr prompt, `aceansWIDTH Jo Female Female Female rhy
/// Joircon != Jo Female` (9 words once `!=` is dropped): against a reference with the last
/// word changed (1 substitution / 9) and one without the last word (1 insertion / 8):
/// 2 errors / 17 words = 11.76%.
#[test]
fn audio_llm_wer_and_qa() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = expected(LLM);
    let case = exp["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "audio")
        .unwrap();
    assert_eq!(
        case["text"],
        "aceansWIDTH Jo Female Female Female rhy Joircon != Jo Female"
    );
    let wav = case["wav"].as_str().unwrap();
    let list = tmp.path().join("asr.tsv");
    std::fs::write(
        &list,
        format!(
            "{wav}\tAceanswidth jo female female female rhy joircon jo MALE\n\
             {wav}\taceanswidth jo female female female rhy joircon jo\n"
        ),
    )
    .unwrap();
    let o = voxq(&[
        "eval-asr",
        "--model",
        LLM,
        "--list",
        s(&list),
        "--max-new-tokens",
        "12",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("(audio-llm on onnxruntime): WER 11.76% (2 errors / 17 reference words: 1 substitution, 0 deletions, 1 insertion) over 2 utterances (0 non-speech left out)"),
        "{}",
        stdout(&o)
    );

    // QA on the trimmed fixture's qa case (its known answer to the question)
    let qa = &expected(TRIM)["cases"][2];
    assert_eq!(qa["task"], "qa");
    let (q, wav) = (
        qa["question"].as_str().unwrap(),
        qa["wav"].as_str().unwrap(),
    );
    let text = qa["text"].as_str().unwrap().trim();
    assert_eq!(
        text,
        "boiled recycling Jo Jo Jo courageous]+roubage americisot Britannica"
    );
    let list = tmp.path().join("qa.tsv");
    std::fs::write(
        &list,
        format!(
            "{wav}\t{q}\tBoiled recycling jo jo jo courageous roubage americisot Britannica.\n\
             {wav}\t{q}\tcourageous\n{wav}\t{q}\tseven\n"
        ),
    )
    .unwrap();
    let tsv = tmp.path().join("qa_out.tsv");
    let o = voxq(&[
        "eval-asr",
        "--model",
        TRIM,
        "--task",
        "qa",
        "--list",
        s(&list),
        "--max-new-tokens",
        "12",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        s(&tsv),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("QA exact match 1/3 = 33.33%, answer contained 2/3 = 66.67%"),
        "{}",
        stdout(&o)
    );
    let lines: Vec<String> = std::fs::read_to_string(&tsv)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines[1].ends_with(&format!("\t{text}\t1\t1")),
        "{}",
        lines[1]
    );
    assert!(lines[2].ends_with("\t0\t1"), "{}", lines[2]);
    assert!(lines[3].ends_with("\t0\t0"), "{}", lines[3]);
}

#[test]
fn eval_asr_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (list, _) = whisper_list(tmp.path());
    let base = ["eval-asr", "--model", WHISPER, "--list"];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend(extra);
        voxq(&v)
    };
    let o = with(&[s(&list), "--task", "qa"]);
    assert_one_line_error(&o, &["--task qa needs an audio-LLM config"]);
    let bad = tmp.path().join("bad.tsv");
    std::fs::write(&bad, "a.wav\tok\njust one field\n").unwrap();
    let o = with(&[s(&bad)]);
    assert_one_line_error(&o, &["bad.tsv: line 2", "audio<TAB>reference text"]);
    let o = voxq(&[
        "eval-asr",
        "--model",
        LLM,
        "--task",
        "qa",
        "--list",
        s(&list),
    ]);
    assert_one_line_error(&o, &["asr.tsv: line 1", "audio<TAB>question<TAB>answer"]);
    std::fs::write(&bad, "missing.wav\thello\n").unwrap();
    let o = with(&[s(&bad), "--audio-root", s(tmp.path()), "--quiet"]);
    assert_one_line_error(&o, &["missing.wav"]);
    let o = with(&[s(&list), "--out", s(&list)]);
    assert_one_line_error(&o, &["--out", "asr.tsv"]);
    let o = with(&[
        s(&list),
        "--json",
        s(&tmp.path().join("no/such/dir/w.json")),
    ]);
    assert_one_line_error(&o, &["--json", "no/such/dir"]);
    let o = voxq(&["eval-asr", "--model", "fixtures/audio", "--list", s(&list)]);
    assert_one_line_error(&o, &["fixtures/audio", "neither a Whisper model folder"]);
    let o = with(&[s(&list), "--audio-root", s(&list)]);
    assert_one_line_error(&o, &["--audio-root is not a folder"]);
}

/// The evaluator behind `Evaluate`: the WER the CLI reports, measured from the bytes of the
/// part under study; the fingerprint follows the list and the part; a part that is not the
/// model's, or bytes that are not that part, are errors.
#[test]
fn wer_evaluator_on_the_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let (list, _) = whisper_list(tmp.path());
    let items = read_asr_list(&list).unwrap();
    let new = |model: &str, part: &str, items| {
        WerEvaluator::new(
            &root().join(model),
            part,
            items,
            &root(),
            20,
            Default::default(),
            false,
        )
    };
    let mut ev = new(WHISPER, "decoder", items.clone()).unwrap();
    assert_eq!(ev.metric().name, "WER");
    assert!(ev.metric().lower_is_better);
    let dec = std::fs::read(root().join(WHISPER).join("decoder.onnx")).unwrap();
    let m = ev.evaluate("fp32", &dec).unwrap();
    assert!((m.value - 300.0 / 29.0).abs() < 1e-9, "{m:?}");
    assert_eq!(m.extra["words"], 29.0);
    assert_eq!(m.extra["insertions"], 1.0);
    let fp = ev.fingerprint();
    assert_eq!(
        new(WHISPER, "decoder", items.clone())
            .unwrap()
            .fingerprint(),
        fp
    );
    assert_ne!(
        new(WHISPER, "encoder", items.clone())
            .unwrap()
            .fingerprint(),
        fp
    );
    assert_ne!(
        new(WHISPER, "decoder", items[..2].to_vec())
            .unwrap()
            .fingerprint(),
        fp
    );
    // the bytes are what runs: the encoder's bytes as the decoder fail
    let enc = std::fs::read(root().join(WHISPER).join("encoder.onnx")).unwrap();
    assert!(ev.evaluate("wrong", &enc).is_err());
    let e = new(WHISPER, "projector", items.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no model part 'projector'"), "{e}");

    // audio LLM, projector part: the trimmed projector's bytes in the untrimmed fixture
    let exp = expected(LLM);
    let wav = exp["cases"][2]["wav"].as_str().unwrap().to_string();
    let llm_items = vec![runtime::asr_eval::AsrItem {
        audio: wav,
        reference: "aceanswidth jo female female female rhy joircon jo male".into(),
    }];
    let mut ev = WerEvaluator::new(
        &root().join(LLM),
        "projector",
        llm_items,
        &root(),
        12,
        Default::default(),
        false,
    )
    .unwrap();
    let p = std::fs::read(root().join(LLM).join("projector.onnx")).unwrap();
    let one_in_nine = 100.0 / 9.0;
    assert!((ev.evaluate("fp32", &p).unwrap().value - one_in_nine).abs() < 1e-9);
    // same weights, dynamic frames axis: fed all 1500 states it gives the same 88 tokens
    let t = std::fs::read(root().join(TRIM).join("projector.onnx")).unwrap();
    assert!((ev.evaluate("trim", &t).unwrap().value - one_in_nine).abs() < 1e-9);
}
