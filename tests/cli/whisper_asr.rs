//! Whisper ASR through voxq: the tiny random-weight fixture (fixtures/whisper-tiny-test,
//! exported by `tools/whisper_ct2.py tiny-fixture` through the same code path as the real
//! model) must give exactly the greedy token ids and first-step logits that onnxruntime in
//! Python gave (expected.json, rules recorded there); bad inputs fail in one line.

use crate::common;

use std::path::Path;

use common::{assert_one_line_error, root, s, stdout, voxq};
use runtime::generation::{GenerateOptions, Strategy};
use runtime::whisper::Whisper;

const FIXTURE: &str = "fixtures/whisper-tiny-test";

fn expected() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(root().join(FIXTURE).join("expected.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn greedy_tokens_match_onnxruntime_python_with_kv_cache() {
    let w = Whisper::open(&root().join(FIXTURE), &Default::default()).unwrap();
    let exp = expected();
    let max_new = exp["max_new_tokens"].as_u64().unwrap() as usize;
    for clip in exp["clips"].as_array().unwrap() {
        let wav = root().join(clip["wav"].as_str().unwrap());
        let audio = runtime::audio::wav::read_wav(&wav).unwrap();
        let o = GenerateOptions {
            max_new_tokens: max_new,
            ..Default::default()
        };
        let mut streamed = Vec::new();
        let ids = w
            .transcribe_window(&wav, &audio.samples, &o, &mut |t| {
                streamed.push(t);
                true
            })
            .unwrap();
        let want: Vec<u32> = clip["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, want, "{}", wav.display());
        assert_eq!(streamed, want, "tokens are streamed as they are chosen");
        assert_eq!(
            w.decode(&ids).unwrap(),
            clip["text"].as_str().unwrap().trim()
        );
        // beam search runs on the same cache and returns a hypothesis of the allowed length
        let beam = GenerateOptions {
            strategy: Strategy::Beam {
                beams: 3,
                length_penalty: 1.0,
            },
            max_new_tokens: 6,
            ..Default::default()
        };
        let b = w
            .transcribe_window(&wav, &audio.samples, &beam, &mut |_| true)
            .unwrap();
        assert!(!b.is_empty() && b.len() <= 6, "{b:?}");
    }
}

#[test]
fn transcribe_cli_and_bad_inputs() {
    let exp = expected();
    let wav = exp["clips"][0]["wav"].as_str().unwrap().to_string();
    let o = voxq(&[
        "transcribe",
        "--model",
        FIXTURE,
        "--max-new-tokens",
        "20",
        &wav,
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let line = stdout(&o);
    assert_eq!(
        line.trim_end(),
        format!(
            "{wav}\t{}",
            exp["clips"][0]["text"].as_str().unwrap().trim()
        )
    );

    let tmp = tempfile::tempdir().unwrap();
    // empty audio
    let empty = tmp.path().join("empty.wav");
    common::write_wav16(&empty, []);
    let o = voxq(&["transcribe", "--model", FIXTURE, s(&empty)]);
    assert_one_line_error(&o, &["empty.wav", "empty"]);
    // 65 s of audio: cut into three 30 s windows (not refused)
    let long = tmp.path().join("long.wav");
    let a = runtime::audio::wav::read_wav(root().join(&wav)).unwrap();
    common::write_wav16(
        &long,
        (0..65 * 16000).map(|i| (a.samples[i % a.samples.len()] * 32767.0) as i16),
    );
    let o = voxq(&[
        "transcribe",
        "--model",
        FIXTURE,
        "--max-new-tokens",
        "3",
        s(&long),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    // a model folder with a missing file, and one whose sizes do not match its graphs
    let broken = tmp.path().join("model");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["whisper.json", "encoder.onnx", "tokenizer.json"] {
        std::fs::copy(root().join(FIXTURE).join(f), broken.join(f)).unwrap();
    }
    let o = voxq(&["transcribe", "--model", s(&broken), &wav]);
    assert_one_line_error(&o, &["decoder.onnx", "missing"]);
    std::fs::copy(
        root().join(FIXTURE).join("decoder.onnx"),
        broken.join("decoder.onnx"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(broken.join("whisper.json")).unwrap())
            .unwrap();
    cfg["n_layers"] = 4.into();
    std::fs::write(broken.join("whisper.json"), cfg.to_string()).unwrap();
    let o = voxq(&["transcribe", "--model", s(&broken), &wav]);
    assert_one_line_error(&o, &["decoder.onnx", "past_key_values.2.decoder.key"]);
    cfg["n_layers"] = 2.into();
    cfg["d_model"] = 32.into();
    cfg["head_dim"] = 16.into();
    std::fs::write(broken.join("whisper.json"), cfg.to_string()).unwrap();
    let o = voxq(&["transcribe", "--model", s(&broken), &wav]);
    assert_one_line_error(&o, &["encoder.onnx", "mismatched sizes"]);
    let o = voxq(&["transcribe", "--model", s(Path::new("nowhere")), &wav]);
    assert_one_line_error(&o, &["nowhere", "whisper.json"]);
}

#[test]
fn quantize_whisper_writes_a_complete_int8_folder_that_transcribes() {
    let tmp = tempfile::tempdir().unwrap();
    let calib = tmp.path().join("calib.txt");
    std::fs::write(
        &calib,
        "allison/en/vm-repeat.wav\nallison/en/all-circuits-busy-now.wav\n",
    )
    .unwrap();
    let out = tmp.path().join("int8");
    let o = voxq(&[
        "quantize-whisper",
        "--model",
        FIXTURE,
        "--calib",
        s(&calib),
        "--audio-root",
        s(&common::speech()),
        "--decoder-include",
        "op:MatMul",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    for f in [
        "encoder.onnx",
        "decoder.onnx",
        "whisper.json",
        "tokenizer.json",
        "encoder.table.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let size = |d: &Path, f: &str| std::fs::metadata(d.join(f)).unwrap().len();
    assert!(size(&out, "decoder.onnx") < size(&root().join(FIXTURE), "decoder.onnx"));
    let wav = expected()["clips"][0]["wav"].as_str().unwrap().to_string();
    let o = voxq(&[
        "transcribe",
        "--model",
        s(&out),
        "--max-new-tokens",
        "5",
        &wav,
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    // a calibration list naming a missing file fails in one line and leaves no folder
    std::fs::write(&calib, "allison/en/no-such-prompt.wav\n").unwrap();
    let bad = tmp.path().join("bad");
    let o = voxq(&[
        "quantize-whisper",
        "--model",
        FIXTURE,
        "--calib",
        s(&calib),
        "--audio-root",
        s(&common::speech()),
        "--out",
        s(&bad),
    ]);
    assert_one_line_error(&o, &["no-such-prompt.wav"]);
    assert!(!bad.exists());
}

/// A shorter audio context needs an encoder that takes any number of frames; the committed
/// fixture (like any 30 s-only export) has a fixed 3000-frame input, so `--audio-ctx` other
/// than `full` is refused in one line naming the encoder file before any audio is decoded,
/// and a malformed value names the option.
#[test]
fn audio_ctx_needs_a_dynamic_export_and_a_valid_value() {
    let exp = expected();
    let wav = exp["clips"][0]["wav"].as_str().unwrap().to_string();
    for ctx in ["auto", "auto+10", "750"] {
        let o = voxq(&["transcribe", "--model", FIXTURE, "--audio-ctx", ctx, &wav]);
        assert_one_line_error(&o, &["encoder.onnx", "--audio-ctx", "fixed length"]);
    }
    for bad in ["half", "0", "1501", "auto+31"] {
        let o = voxq(&[
            "eval-asr",
            "--model",
            FIXTURE,
            "--list",
            "fixtures/whisper/lists/asterisk_librivox_every7.tsv",
            "--audio-ctx",
            bad,
        ]);
        assert_one_line_error(&o, &["--audio-ctx", bad]);
    }
    // `full` is the default and changes nothing
    let o = voxq(&[
        "transcribe",
        "--model",
        FIXTURE,
        "--audio-ctx",
        "full",
        "--max-new-tokens",
        "20",
        &wav,
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(
        stdout(&o).trim_end(),
        format!(
            "{wav}\t{}",
            exp["clips"][0]["text"].as_str().unwrap().trim()
        )
    );
}
