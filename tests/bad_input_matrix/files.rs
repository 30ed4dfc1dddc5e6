//! Scratch folders, generic malformed/truncated/oversized variants, the speaker model and
//! audio root of the matrices, and WAV builders.

use crate::common::*;
use crate::harness::*;

use std::path::PathBuf;

// ---------------------------------------------------------------------------------------------
// Files

/// A scratch folder with an `out/` folder that failing runs must leave empty.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Env { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn out(&self) -> PathBuf {
        self.path("out")
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// `head`, then zeros up to [`HUGE`] bytes without writing them (a sparse file).
    pub fn sparse(&self, name: &str, head: &[u8], len: u64) -> PathBuf {
        let p = self.write(name, head);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len)
            .unwrap();
        p
    }

    pub fn folder(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

/// Deterministic noise bytes.
pub fn garbage(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

/// The first bytes of a real PNG (signature, IHDR) and some noise.
pub fn png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x02\xd0\0\0\x02\xd0\x08\x02\0\0\0".to_vec();
    v.extend(garbage(2000, 7));
    v
}

/// JSON nested `depth` arrays deep.
pub fn deep_json(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

pub fn half(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len() / 2]
}

/// Malformed / truncated / empty / oversized / wrong-type files of one kind, named `stem.ext`
/// variants in `env`: (case name, path). `good` is a valid file of the kind, `malformed` an
/// invalid one that is not truncated.
pub fn generic_cases(
    env: &Env,
    ext: &str,
    good: &[u8],
    malformed: &[u8],
) -> Vec<(&'static str, PathBuf)> {
    vec![
        (
            "malformed",
            env.write(&format!("malformed.{ext}"), malformed),
        ),
        (
            "truncated",
            env.write(&format!("truncated.{ext}"), half(good)),
        ),
        ("empty", env.write(&format!("empty.{ext}"), b"")),
        (
            "oversized",
            env.sparse(
                &format!("oversized.{ext}"),
                &good[..good.len().min(65536)],
                HUGE,
            ),
        ),
        ("wrong-type-png", env.write(&format!("png.{ext}"), png())),
        ("wrong-type-folder", env.folder(&format!("folder.{ext}"))),
    ]
}

/// The speaker model of the audio, trial-list, store and calibration-list matrices: the small
/// distilled ECAPA loads in a fifth of CAM++'s time and reads its inputs through the same code.
pub fn speaker() -> PathBuf {
    root().join("fixtures/models/ecapa_distil.json")
}

/// The CAM++ config pointing at `onnx` (a file name beside it).
pub fn speaker_config(onnx: &str) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(campplus()).unwrap()).unwrap();
    v["onnx"] = onnx.into();
    v
}

/// An audio root with two short real utterances, `a.wav` and `b.wav`.
pub fn audio_root(env: &Env) -> PathBuf {
    let r = env.folder("audio");
    two_utterances(&r);
    r
}

/// A WAV file with every header field given: format tag (1 PCM, 3 float), channels, rate,
/// bits, the data size the header claims, and the data bytes that follow.
pub fn wav_bytes(
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    claim: u32,
    data: &[u8],
) -> Vec<u8> {
    let align = channels.wrapping_mul(bits.div_ceil(8));
    let mut v = b"RIFF".to_vec();
    v.extend(
        (36u64 + u64::from(claim))
            .min(u64::from(u32::MAX))
            .to_le_bytes()[..4]
            .iter(),
    );
    v.extend(b"WAVEfmt ");
    v.extend(16u32.to_le_bytes());
    v.extend(tag.to_le_bytes());
    v.extend(channels.to_le_bytes());
    v.extend(rate.to_le_bytes());
    v.extend(rate.wrapping_mul(u32::from(align)).to_le_bytes());
    v.extend(align.to_le_bytes());
    v.extend(bits.to_le_bytes());
    v.extend(b"data");
    v.extend(claim.to_le_bytes());
    v.extend_from_slice(data);
    v
}

pub fn pcm16(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    wav_bytes(1, 1, rate, 16, data.len() as u32, &data)
}

pub fn float32(rate: u32, samples: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    wav_bytes(3, 1, rate, 32, data.len() as u32, &data)
}

/// 0.5 s of real speech as float samples.
pub fn speech_f32() -> Vec<f32> {
    hound::WavReader::open(root().join("fixtures/audio/speech_16k.wav"))
        .unwrap()
        .samples::<i16>()
        .take(8000)
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect()
}
