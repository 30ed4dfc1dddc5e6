//! The speech check of enroll, verify and identify: digital silence, faint noise, a short blip
//! and too-short audio are refused with one line naming the file (before this check, silence
//! enrolled fine and every near-silent clip then verified as that speaker at 0.999); real speech
//! (fixtures and every trial utterance of the corpus) passes.

use std::path::{Path, PathBuf};

use crate::common::*;
use runtime::speaker::speech::{check_speech, SpeechCheck};

/// Deterministic white noise of RMS `dbfs`, as 16-bit samples.
fn noise16(n: usize, dbfs: f64, seed: u64) -> Vec<i16> {
    let rms = 10f64.powf(dbfs / 20.0) * 32767.0;
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0; // [-1, 1): RMS 1/sqrt(3)
            (u * rms * 3f64.sqrt()).round() as i16
        })
        .collect()
}

/// 16 kHz samples of the committed speech fixture.
fn speech16() -> Vec<i16> {
    hound::WavReader::open(root().join("fixtures/audio/speech_16k.wav"))
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

/// The refused clips: (file, what the error must say).
fn refused_clips(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let silence = dir.join("silence.wav");
    write_wav16(&silence, vec![0i16; 32000]);
    let hum = dir.join("hum70.wav");
    write_wav16(&hum, noise16(32000, -70.0, 1));
    // 0.2 s of real speech in the middle of 2 s of digital silence
    let blip = dir.join("blip.wav");
    let sp = speech16();
    let mut b = vec![0i16; 32000];
    b[12000..15200].copy_from_slice(&sp[8000..11200]);
    write_wav16(&blip, b);
    // 0.2 s of real speech on its own
    let short = dir.join("short.wav");
    write_wav16(&short, sp[8000..11200].to_vec());
    vec![
        (silence, "0.00 s of its 2.00 s is speech-level audio"),
        (hum, "0.00 s of its 2.00 s is speech-level audio"),
        (blip, "s of its 2.00 s is speech-level audio"),
        (short, "the audio is 0.20 s long"),
    ]
}

fn store_args<'a>(cmd: &'a str, store: &'a Path) -> Vec<&'a str> {
    vec![
        cmd,
        "--model",
        "fixtures/models/campplus.json",
        "--store",
        s(store),
    ]
}

#[test]
fn enroll_verify_and_identify_refuse_audio_without_speech() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("speakers.json");
    let clips = refused_clips(tmp.path());
    for (clip, why) in &clips {
        let mut args = store_args("enroll", &store);
        args.extend(["--speaker", "quiet", s(clip)]);
        let o = voxq(&args);
        assert_one_line_error(&o, &[s(clip), "no speech", why]);
        assert!(!store.exists(), "a refused enrollment wrote the store");
    }
    // a real speaker, then near-silence scored against them
    let speech = root().join("fixtures/audio/speech_16k.wav");
    let mut args = store_args("enroll", &store);
    args.extend(["--speaker", "allison", s(&speech)]);
    let o = voxq(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    for (clip, why) in &clips {
        let mut args = store_args("verify", &store);
        args.extend(["--speaker", "allison", s(clip)]);
        assert_one_line_error(&voxq(&args), &[s(clip), "no speech", why]);
        let mut args = store_args("identify", &store);
        args.push(s(clip));
        assert_one_line_error(&voxq(&args), &[s(clip), "no speech", why]);
    }
    // the speech itself still verifies and identifies
    let mut args = store_args("verify", &store);
    args.extend(["--speaker", "allison", "--json", s(&speech)]);
    let o = voxq(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"accept\""), "{}", stdout(&o));
}

#[test]
fn min_speech_s_is_the_setting_and_zero_turns_the_check_off() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.json");
    let clips = refused_clips(tmp.path());
    let blip = &clips[2].0;
    let mut args = store_args("enroll", &store);
    args.extend(["--speaker", "x", "--min-speech-s", "0.1", s(blip)]);
    let o = voxq(&args);
    assert!(
        o.status.success(),
        "a 0.2 s blip has 0.1 s of speech: {}",
        stderr(&o)
    );
    let mut args = store_args("enroll", &store);
    args.extend(["--speaker", "x", "--min-speech-s", "0", s(&clips[0].0)]);
    let o = voxq(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    for bad in ["-1", "NaN", "61", "x"] {
        let mut args = store_args("enroll", &store);
        let opt = format!("--min-speech-s={bad}");
        args.extend(["--speaker", "x", &opt, s(blip)]);
        let o = voxq(&args);
        // a value outside the range is a usage error: one line, exit 1 (README)
        assert_eq!(o.status.code(), Some(1), "{bad}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains("--min-speech-s"), "{}", stderr(&o));
    }
}

/// Every utterance of the committed trial lists (real prompts of 2 s or more, and the shorter
/// ones too) and every speech fixture passes the default check.
#[test]
fn real_speech_passes_the_check() {
    let check = SpeechCheck::default();
    let mut names: Vec<String> = Vec::new();
    for list in [
        "fixtures/trials/trials.txt",
        "fixtures/trials/demo_trials.txt",
    ] {
        let text = std::fs::read_to_string(root().join(list)).unwrap();
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = l.split_whitespace().collect();
            names.extend([f[1].to_string(), f[2].to_string()]);
        }
    }
    names.sort();
    names.dedup();
    let sp = speech();
    let mut paths: Vec<PathBuf> = names.iter().map(|n| sp.join(n)).collect();
    for f in [
        "speech_16k.wav",
        "speech_16k.flac",
        "speech_16k.mp3",
        "speech_16k.ogg",
    ] {
        paths.push(root().join("fixtures/audio").join(f));
    }
    assert!(paths.len() > 300, "{} utterances", paths.len());
    let mut least = f64::INFINITY;
    for p in &paths {
        let a = runtime::audio::read_audio(p).unwrap();
        let st = check_speech(p, &a, &check).unwrap_or_else(|e| panic!("{e}"));
        least = least.min(st.speech_s);
    }
    eprintln!("{} utterances pass; least speech {least:.2} s", paths.len());
}
