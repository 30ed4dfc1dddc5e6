//! Whisper's log-mel front end against transformers' `WhisperFeatureExtractor` on real speech:
//! fixtures/whisper/all-circuits-busy-now.logmel80x200.f32 holds the reference's first 200
//! frames (80 x 200, row-major, little-endian float32) for the Asterisk prompt
//! `allison/en/all-circuits-busy-now.wav` (1.8 s, 16 kHz), written by
//! `tools/whisper_ct2.py reference` (transformers 5.23.0).

use crate::common;

use std::path::Path;

use runtime::audio::logmel::LogMelExtractor;
use runtime::audio::wav::read_wav;

#[test]
fn logmel_matches_transformers_on_real_speech() {
    let wav = common::speech().join("allison/en/all-circuits-busy-now.wav");
    let audio = read_wav(&wav).unwrap();
    assert_eq!(audio.sample_rate, 16_000);
    let m = LogMelExtractor::new(80)
        .unwrap()
        .compute(&wav, &audio.samples)
        .unwrap();
    assert_eq!((m.n_mels, m.frames), (80, 3000));
    let bytes = std::fs::read(
        common::root().join("fixtures/whisper/all-circuits-busy-now.logmel80x200.f32"),
    )
    .unwrap();
    let want: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(want.len(), 80 * 200);
    let mut worst = 0f32;
    for b in 0..80 {
        for t in 0..200 {
            let d = (m.data[b * 3000 + t] - want[b * 200 + t]).abs();
            worst = worst.max(d);
        }
    }
    println!("max |voxq - transformers| over 80 x 200 frames: {worst:.2e}");
    assert!(worst < 1e-3, "max abs difference {worst}");
    // the padded tail sits at the clamp floor, as in the reference (-0.6362)
    let tail = m.data[40 * 3000 + 2500];
    assert!((tail - -0.636_239_8).abs() < 1e-3, "{tail}");
    let e = LogMelExtractor::new(80)
        .unwrap()
        .compute(Path::new("nan.wav"), &[f32::NAN; 100])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nan.wav") && e.contains("NaN"), "{e}");
}
