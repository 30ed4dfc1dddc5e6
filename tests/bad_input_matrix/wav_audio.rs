//! WAV audio: every header field wrong in turn, truncated and oversized files.

use crate::common::*;
use crate::files::*;
use crate::harness::*;

use std::ffi::OsString;
use std::path::PathBuf;

// ---------------------------------------------------------------------------------------------
// WAV audio

#[test]
fn wav_audio() {
    let env = Env::new();
    let out = env.out();
    let audio = audio_root(&env);
    let good = std::fs::read(audio.join("a.wav")).unwrap();
    let speech = speech_f32();
    let speech16: Vec<i16> = speech.iter().map(|x| (x * 32767.0) as i16).collect();
    let w = |name: &str, bytes: Vec<u8>| {
        let p = audio.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut riff_junk = b"RIFF\x00\x10\x00\x00WAVE".to_vec();
    riff_junk.extend(garbage(4096, 3));

    // (case, path, on every command or only on embed and transcribe)
    let mut files: Vec<(&str, PathBuf, bool)> = vec![
        ("malformed", w("garbage.wav", garbage(4096, 2)), true),
        ("malformed-riff", w("riffjunk.wav", riff_junk), false),
        ("truncated", w("truncated.wav", half(&good).to_vec()), true),
        (
            "truncated-header",
            w("cuthead.wav", good[..30].to_vec()),
            false,
        ),
        ("empty", w("empty.wav", Vec::new()), true),
        ("empty-audio", w("nosamples.wav", pcm16(16000, &[])), false),
        ("wrong-type-png", w("png.wav", png()), true),
        (
            "wrong-type-text",
            w("text.wav", b"RIFF? no: text\n".to_vec()),
            false,
        ),
        (
            "adversarial-claims-2^31-samples",
            w(
                "claims2g.wav",
                wav_bytes(1, 1, 16000, 8, 1 << 31, &garbage(1000, 4)),
            ),
            false,
        ),
        (
            "adversarial-rate-0",
            w("rate0.wav", pcm16(0, &speech16)),
            false,
        ),
        (
            "adversarial-rate-1hz",
            w("rate1.wav", pcm16(1, &speech16)),
            false,
        ),
        (
            "adversarial-rate-4ghz",
            w("rate4g.wav", pcm16(u32::MAX, &speech16)),
            false,
        ),
        (
            "adversarial-nan",
            w("nan.wav", {
                let mut v = speech.clone();
                v[4000] = f32::NAN;
                float32(16000, &v)
            }),
            true,
        ),
        (
            "adversarial-inf",
            w("inf.wav", {
                let mut v = speech.clone();
                v[100] = f32::NEG_INFINITY;
                float32(16000, &v)
            }),
            false,
        ),
        (
            "adversarial-huge-floats",
            w(
                "huge.wav",
                float32(16000, &speech.iter().map(|x| x * 3e38).collect::<Vec<_>>()),
            ),
            false,
        ),
        (
            "adversarial-0-channels",
            w("ch0.wav", wav_bytes(1, 0, 16000, 16, 16000, &[0u8; 16000])),
            false,
        ),
        (
            "adversarial-12-bit",
            w(
                "bits12.wav",
                wav_bytes(1, 1, 16000, 12, 16000, &[0u8; 16000]),
            ),
            false,
        ),
    ];
    // One sample is too short for a speaker model's first frame; Whisper pads any audio to
    // 30 s, so for transcribe it is valid input (not a case).
    let one = w("one.wav", pcm16(16000, &[1000]));
    // Oversized: a real header claiming ~4 GiB of 16-bit samples (37 hours), all present as a
    // sparse file.
    let claim = u32::MAX - 15;
    let head = wav_bytes(1, 1, 16000, 16, claim, &[]);
    let huge = audio.join("oversized.wav");
    std::fs::write(&huge, &head).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(head.len() as u64 + u64::from(claim))
        .unwrap();
    files.push(("oversized", huge, true));
    files.push(("wrong-type-folder", env.folder("audio/folder.wav"), true));

    // A store with speaker x enrolled, for verify.
    let store = env.path("store.json");
    let model = speaker();
    must_succeed(&os(&[
        &"enroll",
        &"--model",
        &model,
        &"--store",
        &store,
        &"--speaker",
        &"x",
        &audio.join("a.wav"),
    ]));
    let good_wav = audio.join("a.wav");
    must_succeed(&os(&[&"embed", &"--model", &model, &good_wav]));
    // FLAC content under a .wav name is audio the command line decodes (by content, like the
    // server), not a wrong-type case.
    let flac = w(
        "flac.wav",
        std::fs::read(root().join("fixtures/audio/speech_16k.flac")).unwrap(),
    );
    must_succeed(&os(&[&"embed", &"--model", &model, &flac]));
    let whisper = root().join("fixtures/whisper-tiny-test");
    must_succeed(&os(&[
        &"transcribe",
        &"--model",
        &whisper,
        &"--max-new-tokens",
        &"4",
        &good_wav,
    ]));
    let store_bytes = std::fs::read(&store).unwrap();

    let mut cases = Vec::new();
    for (i, (case, p, all)) in files.iter().enumerate() {
        let f = s(p);
        let name = p.file_name().unwrap().to_str().unwrap();
        let trials = env.write(
            &format!("trials{i}.txt"),
            format!("1 a.wav {name}\n0 b.wav {name}\n"),
        );
        let mut cmds: Vec<(&str, Vec<OsString>)> = vec![
            ("embed", os(&[&"embed", &"--model", &model, &f])),
            (
                "transcribe",
                os(&[
                    &"transcribe",
                    &"--model",
                    &whisper,
                    &"--max-new-tokens",
                    &"4",
                    &f,
                ]),
            ),
        ];
        if *all {
            cmds.push((
                "enroll",
                os(&[
                    &"enroll",
                    &"--model",
                    &model,
                    &"--store",
                    &out.join("new.json"),
                    &"--speaker",
                    &"y",
                    &good_wav,
                    &f,
                ]),
            ));
            cmds.push((
                "verify",
                os(&[
                    &"verify",
                    &"--model",
                    &model,
                    &"--store",
                    &store,
                    &"--speaker",
                    &"x",
                    &f,
                ]),
            ));
            cmds.push((
                "eval",
                os(&[
                    &"eval",
                    &"--model",
                    &model,
                    &"--trials",
                    &trials,
                    &"--audio-root",
                    &audio,
                    &"--scores",
                    &out.join("scores.txt"),
                    &"--quiet",
                ]),
            ));
        }
        for (cmd, args) in cmds {
            cases.push(Case {
                label: format!("{cmd}/wav/{case}"),
                args,
                needles: vec![f.to_string()],
            });
        }
    }
    cases.push(Case {
        label: "embed/wav/adversarial-one-sample".into(),
        args: os(&[&"embed", &"--model", &model, &one]),
        needles: vec![s(&one).to_string(), "too short".into()],
    });
    run_matrix("wav", &cases, &out);
    assert_eq!(std::fs::read(&store).unwrap(), store_bytes, "store changed");
}
