//! Uploaded audio bytes (WAV, FLAC, MP3, Ogg Vorbis) → `decode_upload` with a 30 s limit.
//!
//! `decode_upload` catches a panic inside symphonia and reports it as bad audio (symphonia
//! 0.5 panics on some corrupt streams). libFuzzer's panic hook would abort on such a panic
//! before it reaches that `catch_unwind`, so this target lets panics raised in symphonia's own
//! sources unwind (each distinct location is printed once); a panic anywhere else is a crash.
//!
//! Invariants: decoded audio is non-empty, finite, at a rate the WAV reader also accepts (so that
//! resampling cannot blow a few samples up 16000-fold), within the length limit, and
//! (compressed formats) clamped to [-1, 1].

#![no_main]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use runtime::audio::decode::decode_upload;
use runtime::audio::resample::MAX_SAMPLE_RATE;
use runtime::audio::wav::MIN_SAMPLE_RATE;

const MAX_SECONDS: f64 = 30.0;

/// Locations of the symphonia panics already reported.
static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn tolerate_symphonia_panics() {
    let fuzzer_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let loc = info.location();
        if loc.is_some_and(|l| l.file().contains("/symphonia-")) {
            let at = loc.map(|l| format!("{}:{}", l.file(), l.line()));
            let at = at.unwrap_or_default();
            let new = SEEN
                .lock()
                .map(|mut s| s.insert(at.clone()))
                .unwrap_or(false);
            if new {
                eprintln!(
                    "note: symphonia panicked at {at} (decode_upload reports it as bad audio)"
                );
            }
            return;
        }
        fuzzer_hook(info);
    }));
}

fuzz_target!(init: tolerate_symphonia_panics(), |data: &[u8]| {
    let is_wav = data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WAVE";
    let Ok(audio) = decode_upload(Path::new("upload"), data, MAX_SECONDS) else {
        return;
    };
    assert!(
        (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&audio.sample_rate),
        "sample rate {} Hz",
        audio.sample_rate
    );
    assert!(!audio.samples.is_empty());
    assert!(
        audio.samples.len() as f64 <= MAX_SECONDS * f64::from(audio.sample_rate),
        "{} samples at {} Hz pass the {MAX_SECONDS} s limit",
        audio.samples.len(),
        audio.sample_rate
    );
    assert!(audio.samples.iter().all(|s| s.is_finite()), "non-finite sample");
    if !is_wav {
        assert!(
            audio.samples.iter().all(|s| (-1.0..=1.0).contains(s)),
            "compressed audio outside [-1, 1]"
        );
    }
});
