//! Unit tests of the fbank: config defaults and JSON keys, validation, Kaldi parity details.

use super::*;

#[test]
fn defaults_and_json_keys() {
    let c: FbankConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, FbankConfig::default());
    let v = serde_json::to_value(&c).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for k in [
        "sample_rate",
        "num_mel_bins",
        "frame_length_ms",
        "frame_shift_ms",
        "window",
        "preemph_coeff",
        "remove_dc_offset",
        "low_freq",
        "high_freq",
        "dither",
        "snip_edges",
        "round_to_power_of_two",
        "input_scale",
        "use_energy",
        "raw_energy",
        "energy_floor",
        "use_log_fbank",
        "use_power",
        "mean_norm",
    ] {
        assert!(keys.contains(&k), "missing key {k}");
    }
    assert_eq!(keys.len(), 19);
    assert_eq!(v["window"], "povey");
    assert_eq!(v["mean_norm"], "none");
    let c: FbankConfig =
        serde_json::from_str(r#"{"window": "hamming", "mean_norm": "utterance"}"#).unwrap();
    assert_eq!(c.window, WindowType::Hamming);
    assert_eq!(c.mean_norm, MeanNorm::Utterance);
    assert!(serde_json::from_str::<FbankConfig>(r#"{"num_mel_bin": 40}"#).is_err());
    assert!(serde_json::from_str::<FbankConfig>(r#"{"window": "hann"}"#).is_err());
}

#[test]
fn validation_errors() {
    let bad = |f: &dyn Fn(&mut FbankConfig)| {
        let mut c = FbankConfig::default();
        f(&mut c);
        match c.validate() {
            Err(RuntimeError::FbankConfig(msg)) => msg,
            other => panic!("expected FbankConfig error, got {other:?}"),
        }
    };
    assert!(bad(&|c| c.num_mel_bins = 0).contains("num_mel_bins"));
    assert!(bad(&|c| c.frame_length_ms = 0.0).contains("frame_length_ms"));
    assert!(bad(&|c| c.frame_shift_ms = 0.0).contains("frame_shift_ms"));
    assert!(bad(&|c| c.low_freq = 8000.0).contains("low_freq"));
    assert!(bad(&|c| {
        c.low_freq = 7700.0;
        c.high_freq = -400.0;
    })
    .contains("high_freq"));
    assert!(bad(&|c| c.high_freq = 9000.0).contains("high_freq"));
    assert!(bad(&|c| c.high_freq = -8000.0).contains("high_freq"));
    assert!(bad(&|c| c.sample_rate = 0).contains("sample_rate"));
    assert!(bad(&|c| c.preemph_coeff = 1.5).contains("preemph_coeff"));
    assert!(bad(&|c| c.dither = f32::NAN).contains("dither"));
    assert!(bad(&|c| c.input_scale = 0.0).contains("input_scale"));
    assert!(bad(&|c| c.num_mel_bins = 1_000_000_000).contains("num_mel_bins"));
    let c = FbankConfig {
        num_mel_bins: 400,
        ..FbankConfig::default()
    };
    assert!(matches!(Fbank::new(&c), Err(RuntimeError::FbankConfig(_))));
    assert!(FbankConfig::default().validate().is_ok());
}

/// `wav_fbank` fuzz finding: a float WAV holding finite samples far outside [-1, 1]
/// overflowed the energies to inf/NaN, and `compute` returned those as features.
#[test]
fn samples_far_outside_unit_range_are_bad_audio() {
    for cfg in [
        FbankConfig::default(),
        FbankConfig {
            input_scale: 1.0,
            mean_norm: MeanNorm::Utterance,
            ..FbankConfig::default()
        },
    ] {
        let fb = Fbank::new(&cfg).unwrap();
        let mut x = vec![0.25f32; 1600];
        x[700] = 1e30;
        match fb.compute(&x) {
            Err(RuntimeError::BadAudio { reason, .. }) => {
                assert!(reason.contains("1e30"), "{reason}")
            }
            other => panic!("expected BadAudio, got {other:?}"),
        }
        x[700] = 0.5;
        let f = fb.compute(&x).unwrap();
        assert!(f.data.iter().all(|v| v.is_finite()));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/fuzz-regressions/wav_fbank-float-overflow.wav");
    let audio = crate::audio::wav::read_wav(&path).unwrap();
    let x = crate::audio::resample::resample(&audio.samples, audio.sample_rate, 16000).unwrap();
    let fb = Fbank::new(&FbankConfig::default()).unwrap();
    let e = fb.compute(&x).unwrap_err();
    assert!(matches!(e, RuntimeError::BadAudio { .. }), "{e}");
}

#[test]
fn frame_geometry() {
    let fb = Fbank::new(&FbankConfig::default()).unwrap();
    assert_eq!(fb.frame_length(), 400);
    assert_eq!(fb.frame_shift(), 160);
    assert_eq!(fb.num_frames(399), 0);
    assert_eq!(fb.num_frames(400), 1);
    assert_eq!(fb.num_frames(16000), 98);
    let c8 = FbankConfig {
        sample_rate: 8000,
        ..FbankConfig::default()
    };
    assert_eq!(c8.frame_length(), 200);
    assert_eq!(c8.frame_shift(), 80);
    assert_eq!(c8.padded_length(), 256);
}

#[test]
fn window_shapes() {
    let w = make_window(WindowType::Povey, 400);
    assert_eq!(w[0], 0.0);
    assert!((w[200] - 1.0).abs() < 1e-4);
    let h = make_window(WindowType::Hamming, 400);
    assert!((h[0] - 0.08).abs() < 1e-6);
    let r = make_window(WindowType::Rectangular, 10);
    assert!(r.iter().all(|&v| v == 1.0));
}

#[test]
fn dither_is_deterministic() {
    let c = FbankConfig {
        dither: 1.0,
        ..FbankConfig::default()
    };
    let fb = Fbank::new(&c).unwrap();
    let x = vec![0.0f32; 4000];
    let a = fb.compute(&x).unwrap();
    let b = fb.compute(&x).unwrap();
    assert_eq!(a, b);
    // Dither lifts digital silence off the log floor.
    assert!(a.data.iter().all(|&v| v > f32::EPSILON.ln() + 1.0));
}
