//! WAV bytes → mono samples → resample to the front end's rate → Kaldi fbank features.
//!
//! The front end is one of the shipped fbank settings (default, the speaker models' configs
//! and the fbank fixtures), picked by the input's last byte. Audio longer than 30 s is left
//! out, as the server does, so one input cannot take seconds. Invariants: decoded audio is
//! non-empty and finite; resampling between accepted rates succeeds with the promised length;
//! features have the promised shape and are finite whenever they are returned.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use runtime::audio::fbank::{Fbank, FbankConfig};
use runtime::audio::resample::{resample, MAX_SAMPLE_RATE};
use runtime::audio::wav::read_wav_bytes;
use runtime::error::RuntimeError;

const MAX_SECONDS: f64 = 30.0;

/// `fbank` objects of the model configs and the fbank fixtures shipped in the repository.
fn front_ends() -> &'static [Fbank] {
    static ALL: OnceLock<Vec<Fbank>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut configs = vec![FbankConfig::default()];
        for text in [
            include_str!("../../fixtures/models/campplus.json"),
            include_str!("../../fixtures/models/ecapa_auralis.json"),
            include_str!("../../fixtures/models/ecapa_distil.json"),
        ] {
            let v: serde_json::Value = serde_json::from_str(text).expect("model config JSON");
            configs.push(serde_json::from_value(v["fbank"].clone()).expect("fbank settings"));
        }
        let index: serde_json::Value =
            serde_json::from_str(include_str!("../../fixtures/fbank/index.json"))
                .expect("fbank fixture index");
        for (_, s) in index["settings"].as_object().expect("settings").iter() {
            configs.push(serde_json::from_value(s.clone()).expect("fbank settings"));
        }
        configs
            .iter()
            .map(|c| Fbank::new(c).expect("shipped fbank settings are valid"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(audio) = read_wav_bytes("fuzz.wav", data) else {
        return;
    };
    assert!(audio.sample_rate > 0);
    assert!(!audio.samples.is_empty());
    assert!(
        audio.samples.iter().all(|s| s.is_finite()),
        "non-finite sample"
    );
    if audio.duration_s() > MAX_SECONDS {
        return;
    }
    let fronts = front_ends();
    let fb = &fronts[usize::from(*data.last().unwrap_or(&0)) % fronts.len()];
    let rate = fb.config().sample_rate;

    let samples = if audio.sample_rate == rate {
        audio.samples
    } else {
        let from = audio.sample_rate;
        let out = resample(&audio.samples, from, rate);
        if from > MAX_SAMPLE_RATE {
            assert!(matches!(out, Err(RuntimeError::Resample { .. })));
            return;
        }
        let out = out.unwrap_or_else(|e| panic!("resample {from} -> {rate} Hz failed: {e}"));
        let n = audio.samples.len() as u128;
        let want = (n * u128::from(rate) + u128::from(from / 2)) / u128::from(from);
        assert_eq!(out.len() as u128, want, "resampled length");
        out
    };

    match fb.compute(&samples) {
        Ok(f) => {
            assert_eq!(f.frames, fb.num_frames(samples.len()));
            assert_eq!(f.dim, fb.dim());
            assert_eq!(f.data.len(), f.frames * f.dim);
            assert!(
                f.data.iter().all(|v| v.is_finite()),
                "fbank returned non-finite features"
            );
        }
        Err(RuntimeError::TooShort { .. }) => assert_eq!(fb.num_frames(samples.len()), 0),
        Err(RuntimeError::EmptyAudio { .. }) => assert!(samples.is_empty()),
        Err(RuntimeError::NonFinite { .. }) => {
            assert!(
                samples.iter().any(|s| !s.is_finite()),
                "NonFinite for finite samples"
            );
        }
        // Samples far outside [-1, 1] (float WAVs) may overflow the energies: refused.
        Err(RuntimeError::BadAudio { .. }) => {
            assert!(
                samples.iter().any(|s| s.abs() > 1.0),
                "BadAudio for audio in [-1, 1]"
            );
        }
        Err(e) => panic!("unexpected fbank error: {e}"),
    }
});
