//! Both real speaker models through the runtime: batch > 1 at a length other than the export
//! length must give the same embeddings as one utterance at a time (a classic export bug).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use engines::ort::CpuOptions;
use runtime::audio::fbank::Features;
use runtime::speaker::config::SpeakerModel;
use runtime::speaker::embed::{cosine, Embedder};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Three real utterances cropped to the same `frames`.
fn crops(emb: &Embedder, frames: usize) -> Vec<Features> {
    let list = std::fs::read_to_string(root().join("fixtures/trials/calib.txt")).unwrap();
    let speech = root().join(".cache/speech");
    assert!(speech.is_dir(), "run `make setup` (tools/setup_speech.sh)");
    list.lines()
        .step_by(40) // different speakers
        .take(3)
        .map(|rel| {
            let audio = runtime::audio::wav::read_wav(speech.join(rel)).unwrap();
            let f = emb.features(Path::new(rel), &audio).unwrap();
            assert!(f.frames >= frames, "{rel}: {} frames", f.frames);
            Features {
                frames,
                dim: f.dim,
                data: f.data[..frames * f.dim].to_vec(),
            }
        })
        .collect()
}

fn check_batch_equals_single(config: &str) {
    let model = SpeakerModel::locate(&root().join(config)).unwrap();
    let emb = Embedder::open(model, &CpuOptions::default()).unwrap();
    for frames in [97, 131] {
        let feats = crops(&emb, frames);
        let refs: Vec<&Features> = feats.iter().collect();
        let batch = emb.embed_batch(&refs).unwrap();
        assert_eq!(batch.len(), 3);
        for (f, b) in feats.iter().zip(&batch) {
            let single = emb.embed_features(f).unwrap();
            let c = cosine(&single, b);
            assert!(
                c > 0.99999,
                "{config}: batch vs single cosine {c} at {frames} frames"
            );
        }
        // The three utterances are different speakers: their embeddings must differ.
        assert!(cosine(&batch[0], &batch[1]) < 0.99);
    }
}

#[test]
fn campplus_batch_equals_single() {
    check_batch_equals_single("fixtures/models/campplus.json");
}

#[test]
fn speechbrain_ecapa_batch_equals_single() {
    check_batch_equals_single("fixtures/models/ecapa_auralis.json");
}
