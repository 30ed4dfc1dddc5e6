//! Issue 18's "also found" list: compressed audio on the command line, store kinds by
//! extension in any case, quantizations that quantize nothing, builds whose config contradicts
//! the model (and errors that name the user's folder, not the scratch one), single-prefix error
//! wording, list paths that leave `--audio-root`, `verify --exit-code`, the `embed --out` line,
//! and plain progress lines when standard error is not a terminal.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

fn embed_one(file: &Path) -> Vec<f64> {
    let o = voxq(&["embed", "--model", s(&campplus()), s(file)]);
    assert!(o.status.success(), "{}: {}", file.display(), stderr(&o));
    let out = stdout(&o);
    let (_, vals) = out.trim_end().split_once('\t').expect("name<TAB>values");
    vals.split(' ').map(|v| v.parse().unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// Audio formats on the command line

#[test]
fn embed_reads_flac_mp3_and_ogg_like_the_server() {
    let dir = root().join("fixtures/audio");
    let wav = embed_one(&dir.join("speech_16k.wav"));
    // FLAC is lossless: the same samples, the same embedding.
    let c = cosine(&wav, &embed_one(&dir.join("speech_16k.flac")));
    assert!(c > 0.999, "FLAC vs WAV cosine {c}");
    for (f, min) in [("speech_16k.mp3", 0.9), ("speech_16k.ogg", 0.9)] {
        let c = cosine(&wav, &embed_one(&dir.join(f)));
        assert!(c > min, "{f} vs WAV cosine {c}");
    }
    // the format is read from the content: a FLAC named .wav decodes too
    let tmp = tempfile::tempdir().unwrap();
    let renamed = tmp.path().join("flac.wav");
    std::fs::copy(dir.join("speech_16k.flac"), &renamed).unwrap();
    assert!(cosine(&wav, &embed_one(&renamed)) > 0.999);
}

// ---------------------------------------------------------------------------------------------
// Store kind by extension, in any case

#[test]
fn capital_db_extension_makes_a_sqlite_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("S.DB");
    let o = voxq(&[
        "enroll",
        "--model",
        s(&campplus()),
        "--store",
        s(&store),
        "--speaker",
        "allison",
        s(&root().join("fixtures/audio/speech_16k.wav")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let head = std::fs::read(&store).unwrap();
    assert!(
        head.starts_with(b"SQLite format 3\0"),
        "S.DB is not a SQLite database: {:?}",
        String::from_utf8_lossy(&head[..head.len().min(40)])
    );
    let o = voxq(&["store-check", s(&store)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "ok");
}

// ---------------------------------------------------------------------------------------------
// Quantizations that quantize nothing; the violation line

fn quantize(model: &Path, table: &Path, out: &Path, more: &[&str]) -> Output {
    let mut args = vec!["quantize", s(model), "--table", s(table), "--out", s(out)];
    args.extend(more);
    voxq(&args)
}

#[test]
fn quantizing_nothing_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t.json");
    std::fs::write(&table, unit_range_table(&campplus_onnx())).unwrap();
    let qdq = tmp.path().join("q.onnx");
    let o = quantize(&campplus_onnx(), &table, &qdq, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let out = tmp.path().join("again.onnx");
    let o = quantize(&qdq, &table, &out, &[]);
    assert_one_line_error(&o, &[s(&qdq), "nothing to quantize", "already quantized"]);
    assert!(!out.exists());
    for sel in [
        ["--include", "op:LSTM"],
        ["--include", "node:^no_such_node$"],
        ["--exclude", "op:Conv"],
    ] {
        let o = quantize(&campplus_onnx(), &table, &out, &sel);
        let e = stderr(&o);
        assert_one_line_error(&o, &["campplus.onnx", "nothing to quantize"]);
        assert!(!out.exists(), "{sel:?} wrote {}", out.display());
        assert!(!e.contains("int8"), "{e}");
    }
}

#[test]
fn violation_lines_leave_out_empty_fields() {
    let o = voxq(&["inspect", "fixtures/models/campplus.onnx", "--qdq"]);
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.contains("no-qdq"))
        .unwrap_or_else(|| panic!("no no-qdq line: {out}"));
    assert!(
        line.starts_with("- no-qdq: the model has no QuantizeLinear"),
        "{line}"
    );
    assert!(!line.contains("``") && !line.contains("''"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// build: config vs model, and errors naming the user's folder

/// The CAM++ model copied into `dir` as `m.onnx` with its config edited by `edit` as `m.json`.
fn model_with_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let m = dir.join("m.onnx");
    std::fs::copy(campplus_onnx(), &m).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(campplus()).unwrap()).unwrap();
    v["onnx"] = "m.onnx".into();
    edit(&mut v);
    std::fs::write(dir.join("m.json"), v.to_string()).unwrap();
    m
}

#[test]
fn build_refuses_a_config_that_contradicts_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("eng");
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 5] = [
        (|v| v["output"] = "nope".into(), "no output"),
        (|v| v["input"] = "wave".into(), "no input"),
        (|v| v["embedding_dim"] = 256.into(), "embedding_dim"),
        (|v| v["fbank"]["num_mel_bins"] = 64.into(), "num_mel_bins"),
        (|v| v["onnx"] = "other.onnx".into(), "names another model"),
    ];
    std::fs::copy(
        root().join("fixtures/models/ecapa_distil.onnx"),
        tmp.path().join("other.onnx"),
    )
    .unwrap();
    for (edit, why) in cases {
        let m = model_with_config(tmp.path(), edit);
        let o = voxq(&["build", s(&m), "--target", "cpu", "--out", s(&out)]);
        assert_one_line_error(&o, &["m.json", why]);
        assert!(!out.exists(), "{why}: engine written");
    }
    // the consistent config builds
    let m = model_with_config(tmp.path(), |_| {});
    let o = voxq(&["build", s(&m), "--target", "cpu", "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn build_errors_name_the_engine_folder_not_the_scratch_folder() {
    use exporter::onnx::builders::{model, node, value_info};
    let tmp = tempfile::tempdir().unwrap();
    // An int64 model: ONNX Runtime builds it, the warm-up (float32 inputs only) refuses it.
    let g = onnx_protobuf::GraphProto {
        name: "g".into(),
        node: vec![node("Identity", &["x"], &["y"])],
        input: vec![value_info("x", 7, &[1, 4])],
        output: vec![value_info("y", 7, &[1, 4])],
        ..Default::default()
    };
    let m = tmp.path().join("int64.onnx");
    exporter::model::save(&model(g, 17), &m, &exporter::model::SaveOptions::inline()).unwrap();
    let out = tmp.path().join("eng");
    let o = voxq(&["build", s(&m), "--target", "cpu", "--out", s(&out)]);
    let e = stderr(&o);
    assert_one_line_error(&o, &["int64", "warm-up"]);
    assert!(!e.contains(".partial-"), "names the scratch folder: {e}");
    assert!(e.contains(&format!("{}/model.onnx", out.display())), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Wording

#[test]
fn errors_say_each_thing_once() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t.json");
    std::fs::write(&table, "{ not json").unwrap();
    let o = quantize(&campplus_onnx(), &table, &tmp.path().join("q.onnx"), &[]);
    let e = stderr(&o);
    assert_one_line_error(&o, &[s(&table), "malformed JSON"]);
    assert_eq!(e.matches("calibration table").count(), 1, "{e}");

    // a list of comments only: no "line 0"
    let trials = tmp.path().join("trials.txt");
    std::fs::write(&trials, "# nothing\n").unwrap();
    let o = voxq(&[
        "eval",
        "--model",
        s(&campplus()),
        "--trials",
        s(&trials),
        "--audio-root",
        s(tmp.path()),
        "--quiet",
    ]);
    assert_one_line_error(&o, &[s(&trials), "no trials"]);
    assert!(!stderr(&o).contains("line 0"), "{}", stderr(&o));

    // a 64-bit float WAV says so
    let f64wav = tmp.path().join("f64.wav");
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36u32 + 64).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    for x in [
        16u32.to_le_bytes().as_slice(),
        &3u16.to_le_bytes(),
        &1u16.to_le_bytes(),
    ] {
        v.extend_from_slice(x);
    }
    v.extend_from_slice(&16000u32.to_le_bytes());
    v.extend_from_slice(&(16000u32 * 8).to_le_bytes());
    v.extend_from_slice(&8u16.to_le_bytes());
    v.extend_from_slice(&64u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&64u32.to_le_bytes());
    v.extend_from_slice(&[0u8; 64]);
    std::fs::write(&f64wav, v).unwrap();
    let o = voxq(&["embed", "--model", s(&campplus()), s(&f64wav)]);
    assert_one_line_error(&o, &[s(&f64wav), "64-bit float samples"]);
    assert!(!stderr(&o).contains("is not 32"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------------------------
// List paths stay under --audio-root

#[test]
fn list_paths_cannot_leave_the_audio_root() {
    let tmp = tempfile::tempdir().unwrap();
    let audio = tmp.path().join("audio");
    std::fs::create_dir(&audio).unwrap();
    two_utterances(&audio);
    // a readable WAV outside the root: before the check, eval read it
    std::fs::copy(audio.join("b.wav"), tmp.path().join("secret.wav")).unwrap();
    let secret = tmp.path().join("secret.wav");
    for (i, line) in [
        "0 a.wav ../secret.wav".to_string(),
        format!("0 a.wav {}", secret.display()),
        "0 a.wav sub/../../secret.wav".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let trials = tmp.path().join(format!("t{i}.txt"));
        std::fs::write(&trials, format!("1 a.wav b.wav\n{line}\n")).unwrap();
        let o = voxq(&[
            "eval",
            "--model",
            s(&campplus()),
            "--trials",
            s(&trials),
            "--audio-root",
            s(&audio),
            "--quiet",
        ]);
        assert_one_line_error(&o, &[s(&trials), "line 2", "--audio-root"]);
    }
    // `./x/../b.wav` stays inside
    std::fs::create_dir(audio.join("x")).unwrap();
    let trials = tmp.path().join("ok.txt");
    std::fs::write(&trials, "1 a.wav a.wav\n0 a.wav ./x/../b.wav\n").unwrap();
    let o = voxq(&[
        "eval",
        "--model",
        s(&campplus()),
        "--trials",
        s(&trials),
        "--audio-root",
        s(&audio),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // calibration lists too
    let list = tmp.path().join("calib.txt");
    std::fs::write(&list, "a.wav\n../secret.wav\n").unwrap();
    let out = tmp.path().join("table.json");
    let o = voxq(&[
        "calibrate",
        "--model",
        s(&campplus()),
        "--calib",
        s(&list),
        "--audio-root",
        s(&audio),
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert_one_line_error(&o, &[s(&list), "line 2", "leaves --audio-root"]);
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------------
// verify --exit-code, the embed --out line, progress without a terminal

#[test]
fn verify_exit_code_tells_reject_from_accept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.json");
    let allison = root().join("fixtures/audio/speech_16k.wav");
    let june = list("fixtures/trials/demo_enroll_june.txt", 1).remove(0);
    let o = voxq(&[
        "enroll",
        "--model",
        s(&campplus()),
        "--store",
        s(&store),
        "--speaker",
        "allison",
        s(&allison),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let model = campplus();
    let verify = |file: &Path, more: &[&str]| {
        let mut args = vec![
            "verify",
            "--model",
            s(&model),
            "--store",
            s(&store),
            "--speaker",
            "allison",
        ];
        args.extend(more);
        args.push(s(file));
        voxq(&args)
    };
    let o = verify(&june, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("decision=reject"), "{}", stdout(&o));
    let o = verify(&june, &["--exit-code"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("decision=reject"),
        "printed before exit"
    );
    let o = verify(&allison, &["--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("decision=accept"), "{}", stdout(&o));
    let o = voxq(&["verify", "--help"]);
    assert!(stdout(&o).contains("--exit-code"), "{}", stdout(&o));
}

#[test]
fn embed_out_says_what_it_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("e.tsv");
    let dir = root().join("fixtures/audio");
    let o = voxq(&[
        "embed",
        "--model",
        s(&campplus()),
        "--out",
        s(&out),
        s(&dir.join("speech_16k.wav")),
        s(&dir.join("speech_16k.flac")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).trim(),
        format!("wrote 2 embeddings to {}", out.display())
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn progress_is_printed_as_lines_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    two_utterances(tmp.path());
    let trials = tmp.path().join("t.txt");
    std::fs::write(&trials, "1 a.wav a.wav\n0 a.wav b.wav\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_voxq"))
        .args([
            "eval",
            "--model",
            s(&campplus()),
            "--trials",
            s(&trials),
            "--audio-root",
            s(tmp.path()),
        ])
        .env("VOXQ_PROGRESS_INTERVAL_S", "0")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("voxq: embedding 1/2 utterances"), "{e}");
    assert!(e.contains("voxq: embedding 2/2 utterances"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Speaker names on the command line follow the server's rules

#[test]
fn cli_speaker_names_are_normalized_like_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let wav = root().join("fixtures/audio/speech_16k.wav");
    let run = |cmd: &str, name: &str| {
        voxq(&[
            cmd,
            "--model",
            s(&campplus()),
            "--store",
            s(&store),
            "--speaker",
            name,
            s(&wav),
        ])
    };
    // a zero-width space makes a look-alike name: refused in one line, nothing created
    let o = run("enroll", "ali\u{200B}ce");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains("--speaker") && e.contains("U+200B"), "{e}");
    assert!(!store.exists(), "a refused name created the store");
    // enrolled precomposed with surrounding spaces, verified decomposed: the same speaker
    let o = run("enroll", "  Jos\u{e9} ");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run("verify", "Jose\u{301}");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("speaker=Jos\u{e9} "), "{}", stdout(&o));
}
