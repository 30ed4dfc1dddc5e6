//! Engine folders with a corrupt manifest, and model configs (speaker JSON, whisper.json).

use crate::common::*;
use crate::files::*;
use crate::harness::*;

use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Engine folders with a corrupt manifest (`embed --model DIR`)

#[test]
fn engine_manifests() {
    let env = Env::new();
    let out = env.out();
    let engine = env.path("engine");
    must_succeed(&os(&[
        &"build",
        &campplus_onnx(),
        &"--target",
        &"cpu",
        &"--out",
        &engine,
    ]));
    let wav = root().join("fixtures/audio/speech_16k.wav");
    must_succeed(&os(&[&"embed", &"--model", &engine, &wav]));
    let manifest = std::fs::read_to_string(engine.join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let with = |key: &str, val: serde_json::Value| {
        let mut m = v.clone();
        m[key] = val;
        m.to_string()
    };
    let mut builder = v.clone();
    builder["builder"]["version"] = "0.0.1-another".into();

    /// A copy of the engine folder (model hard-linked) whose manifest is `f(dir)`.
    fn copy_engine(env: &Env, engine: &Path, name: &str) -> PathBuf {
        let d = env.folder(name);
        for e in std::fs::read_dir(engine).unwrap() {
            let e = e.unwrap();
            if e.file_name() == "manifest.json" {
                continue;
            }
            std::fs::hard_link(e.path(), d.join(e.file_name())).unwrap();
        }
        d
    }
    let text_cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{\"format\": 1, \"target\": ".to_vec()),
        ("truncated", half(manifest.as_bytes()).to_vec()),
        ("empty", Vec::new()),
        ("wrong-type-png", png()),
        (
            "adversarial-future-format",
            with("format", 999.into()).into_bytes(),
        ),
        (
            "adversarial-unknown-target",
            with("target", "quantum".into()).into_bytes(),
        ),
        (
            "adversarial-engine-file-escapes",
            with("engine_file", "../../../../../../etc/passwd".into()).into_bytes(),
        ),
        (
            "adversarial-config-file-escapes",
            with("config_file", "/etc/passwd".into()).into_bytes(),
        ),
        (
            "adversarial-config-file-missing",
            with("config_file", "nope.json".into()).into_bytes(),
        ),
        (
            "adversarial-other-builder",
            builder.to_string().into_bytes(),
        ),
        ("adversarial-deep-nesting", deep_json(100_000).into_bytes()),
    ];
    let mut dirs = Vec::new();
    for (i, (case, bytes)) in text_cases.into_iter().enumerate() {
        let d = copy_engine(&env, &engine, &format!("e{i}"));
        std::fs::write(d.join("manifest.json"), bytes).unwrap();
        dirs.push((case, d));
    }
    let d = copy_engine(&env, &engine, "eoversized");
    let f = std::fs::File::create(d.join("manifest.json")).unwrap();
    f.set_len(HUGE).unwrap();
    dirs.push(("oversized", d));
    let d = copy_engine(&env, &engine, "efolder");
    std::fs::create_dir(d.join("manifest.json")).unwrap();
    dirs.push(("wrong-type-folder", d));
    dirs.push((
        "wrong-type-no-manifest",
        copy_engine(&env, &engine, "enone"),
    ));
    let cases: Vec<Case> = dirs
        .iter()
        .map(|(case, d)| {
            Case::naming(
                format!("embed/manifest/{case}"),
                os(&[&"embed", &"--model", d, &wav]),
                d,
            )
        })
        .collect();
    run_matrix("manifest", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// Model configs: speaker model JSON (embed, calibrate) and whisper.json (transcribe)

#[test]
fn model_configs() {
    let env = Env::new();
    let out = env.out();
    let audio = audio_root(&env);
    let calib = env.write("calib.txt", "a.wav\n");
    let wav = audio.join("a.wav");
    std::fs::hard_link(campplus_onnx(), env.path("campplus.onnx")).unwrap();
    let good = speaker_config("campplus.onnx");
    let good_text = serde_json::to_string_pretty(&good).unwrap();
    let with = |path: &[&str], val: serde_json::Value| {
        let mut v = good.clone();
        let mut at = &mut v;
        for k in path {
            at = &mut at[*k];
        }
        *at = val;
        v.to_string()
    };
    let mut files = generic_cases(&env, "json", good_text.as_bytes(), b"{\"name\": 3, ");
    let adv: Vec<(&str, String)> = vec![
        (
            "adversarial-mel-bins-1e9",
            with(&["fbank", "num_mel_bins"], 1_000_000_000.into()),
        ),
        (
            "adversarial-mel-bins-0",
            with(&["fbank", "num_mel_bins"], 0.into()),
        ),
        (
            "adversarial-frame-1e9-ms",
            with(&["fbank", "frame_length_ms"], 1e9.into()),
        ),
        (
            "adversarial-shift-0",
            with(&["fbank", "frame_shift_ms"], 0.0.into()),
        ),
        (
            "adversarial-rate-0",
            with(&["fbank", "sample_rate"], 0.into()),
        ),
        (
            "adversarial-rate-4ghz",
            with(&["fbank", "sample_rate"], u32::MAX.into()),
        ),
        (
            "adversarial-dim-1e12",
            with(&["embedding_dim"], 1_000_000_000_000u64.into()),
        ),
        (
            "adversarial-wrong-input",
            with(&["input"], "no_such_input".into()),
        ),
        (
            "adversarial-onnx-missing",
            with(&["onnx"], "missing.onnx".into()),
        ),
        (
            "adversarial-onnx-is-text",
            with(&["onnx"], "calib.txt".into()),
        ),
        ("adversarial-task", with(&["task"], "asr".into())),
        ("adversarial-deep-nesting", deep_json(100_000)),
    ];
    for (i, (case, text)) in adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.json"), text)));
    }
    let good_cfg = env.write("good.json", &good_text);
    must_succeed(&os(&[&"embed", &"--model", &good_cfg, &wav]));
    let mut cases = Vec::new();
    let text_model = env.path("calib.txt");
    for (case, p) in &files {
        // A config pointing at a text file as its model: the error names that file.
        let f = s(p);
        let bad = if *case == "adversarial-onnx-is-text" {
            s(&text_model)
        } else {
            f
        };
        cases.push(Case {
            label: format!("embed/config/{case}"),
            args: os(&[&"embed", &"--model", &f, &wav]),
            needles: vec![bad.to_string()],
        });
        cases.push(Case {
            label: format!("calibrate/config/{case}"),
            args: os(&[
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
            needles: vec![bad.to_string()],
        });
    }
    // whisper.json of a Whisper model folder (model files hard-linked).
    let whisper = root().join("fixtures/whisper-tiny-test");
    let wtext = std::fs::read_to_string(whisper.join("whisper.json")).unwrap();
    let wv: serde_json::Value = serde_json::from_str(&wtext).unwrap();
    let wwith = |key: &str, val: serde_json::Value| {
        let mut v = wv.clone();
        v[key] = val;
        v.to_string().into_bytes()
    };
    let wcases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{\"model\": ".to_vec()),
        ("truncated", half(wtext.as_bytes()).to_vec()),
        ("empty", Vec::new()),
        ("wrong-type-png", png()),
        ("adversarial-hop-0", wwith("hop_length", 0.into())),
        ("adversarial-n-fft-0", wwith("n_fft", 0.into())),
        (
            "adversarial-n-mels-1e9",
            wwith("n_mels", 1_000_000_000.into()),
        ),
        ("adversarial-n-mels-0", wwith("n_mels", 0.into())),
        ("adversarial-rate-0", wwith("sample_rate", 0.into())),
        ("adversarial-chunk-0", wwith("chunk_length_s", 0.into())),
        (
            "adversarial-n-samples-1e12",
            wwith("n_samples", 1_000_000_000_000u64.into()),
        ),
        ("adversarial-text-ctx-0", wwith("n_text_ctx", 0.into())),
        ("adversarial-heads-overflow", {
            let mut v = wv.clone();
            v["n_heads"] = (1u64 << 32).into();
            v["head_dim"] = (1u64 << 32).into();
            v["d_model"] = 0.into();
            v.to_string().into_bytes()
        }),
        (
            "adversarial-encoder-escapes",
            wwith("encoder_file", "../../../../etc/passwd".into()),
        ),
        ("adversarial-deep-nesting", deep_json(100_000).into_bytes()),
    ];
    let link_whisper = |name: &str| {
        let d = env.folder(name);
        for f in ["encoder.onnx", "decoder.onnx", "tokenizer.json"] {
            std::fs::hard_link(whisper.join(f), d.join(f)).unwrap();
        }
        d
    };
    let mut wdirs = Vec::new();
    for (i, (case, bytes)) in wcases.into_iter().enumerate() {
        let d = link_whisper(&format!("w{i}"));
        std::fs::write(d.join("whisper.json"), bytes).unwrap();
        wdirs.push((case, d));
    }
    let d = link_whisper("woversized");
    std::fs::File::create(d.join("whisper.json"))
        .unwrap()
        .set_len(HUGE)
        .unwrap();
    wdirs.push(("oversized", d));
    let d = link_whisper("wfolder");
    std::fs::create_dir(d.join("whisper.json")).unwrap();
    wdirs.push(("wrong-type-folder", d));
    for (case, d) in &wdirs {
        cases.push(Case::naming(
            format!("transcribe/whisper-config/{case}"),
            os(&[
                &"transcribe",
                &"--model",
                d,
                &"--max-new-tokens",
                &"4",
                &wav,
            ]),
            d,
        ));
    }
    run_matrix("config", &cases, &out);
}
