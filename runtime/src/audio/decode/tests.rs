//! Unit tests of upload decoding: fixtures in every container, limits, hostile and truncated inputs.

use super::*;
use crate::audio::read_wav;
use crate::audio::resample;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/audio")
        .join(name)
}

fn bytes_of(name: &str) -> Vec<u8> {
    let path = fixture(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decode(name: &str, max_seconds: f64) -> Result<Audio> {
    decode_upload(Path::new(name), &bytes_of(name), max_seconds)
}

/// The source clip every fixture was made from (16 kHz mono 16-bit).
fn source() -> Audio {
    read_wav(fixture("speech_16k.wav")).expect("source WAV")
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Best normalised correlation of `a` against `b` over lags in [-max_lag, max_lag].
fn best_correlation(a: &[f32], b: &[f32], max_lag: isize) -> f64 {
    let mut best = -1.0f64;
    for lag in -max_lag..=max_lag {
        let (a0, b0) = if lag >= 0 {
            (lag as usize, 0)
        } else {
            (0, (-lag) as usize)
        };
        if a0 >= a.len() || b0 >= b.len() {
            continue;
        }
        let n = (a.len() - a0).min(b.len() - b0);
        let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..n {
            let x = f64::from(a[a0 + i]);
            let y = f64::from(b[b0 + i]);
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        if aa > 0.0 && bb > 0.0 {
            best = best.max(ab / (aa * bb).sqrt());
        }
    }
    best
}

/// Checks a lossy decode against the source scaled by `gain` (the channel mix), at 16 kHz.
fn check_lossy(name: &str, rate: u32, gain: f64) {
    let src = source();
    let audio = decode(name, 60.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(audio.sample_rate, rate, "{name}");
    let diff = (audio.duration_s() - src.duration_s()).abs();
    assert!(
        diff < 0.1,
        "{name}: {} s vs {} s",
        audio.duration_s(),
        src.duration_s()
    );
    let at16 = if rate == 16_000 {
        audio.samples.clone()
    } else {
        resample(&audio.samples, rate, 16_000).expect("resample")
    };
    let corr = best_correlation(&at16, &src.samples, 2000);
    assert!(corr > 0.9, "{name}: correlation {corr}");
    let ratio = rms(&at16) / (rms(&src.samples) * gain);
    assert!((0.8..1.2).contains(&ratio), "{name}: RMS ratio {ratio}");
    assert!(audio.samples.iter().all(|s| (-1.0..=1.0).contains(s)));
}

#[test]
fn decode_flac_is_lossless() {
    let src = source();
    let audio = decode("speech_16k.flac", 60.0).expect("flac");
    assert_eq!(audio.sample_rate, 16_000);
    assert_eq!(audio.samples.len(), src.samples.len());
    let max_diff = audio
        .samples
        .iter()
        .zip(&src.samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-4, "max diff {max_diff}");
}

#[test]
fn decode_stereo_flac_averages_channels() {
    // Left = source, right = silence: the mono mix is half the source, exactly.
    let src = source();
    let audio = decode("speech_stereo_16k.flac", 60.0).expect("stereo flac");
    assert_eq!(audio.sample_rate, 16_000);
    assert_eq!(audio.samples.len(), src.samples.len());
    let max_diff = audio
        .samples
        .iter()
        .zip(&src.samples)
        .map(|(a, b)| (a - 0.5 * b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-4, "max diff {max_diff}");
}

#[test]
fn decode_mp3_matches_source() {
    check_lossy("speech_16k.mp3", 16_000, 1.0);
    // The LAME tag's encoder delay and padding are removed (gapless): exactly the source length.
    let audio = decode("speech_16k.mp3", 60.0).expect("mp3");
    assert_eq!(audio.samples.len(), source().samples.len());
}

#[test]
fn decode_ogg_vorbis_matches_source() {
    check_lossy("speech_16k.ogg", 16_000, 1.0);
}

#[test]
fn decode_stereo_44k_ogg_to_mono() {
    // Left = source, right = silence.
    check_lossy("speech_stereo_44k.ogg", 44_100, 0.5);
}

#[test]
fn decode_stereo_44k_mp3_to_mono() {
    // Left = source, right = half the source.
    check_lossy("speech_stereo_44k.mp3", 44_100, 0.75);
}

#[test]
fn decode_wav_goes_through_wav_reader() {
    let name = "speech_stereo_44k.wav";
    let audio = decode(name, 60.0).expect("wav");
    assert_eq!(audio, read_wav(fixture(name)).expect("read_wav"));
    assert_eq!(audio.sample_rate, 44_100);
    assert_eq!(audio.samples.len(), 13_230);
    // 0.3 s from 0.6 s into the source; left = source, right = half of it.
    let src = source();
    let seg = &src.samples[9_600..14_400];
    let at16 = resample(&audio.samples, 44_100, 16_000).expect("resample");
    let corr = best_correlation(&at16, seg, 200);
    assert!(corr > 0.9, "correlation {corr}");
    let ratio = rms(&at16) / (rms(seg) * 0.75);
    assert!((0.8..1.2).contains(&ratio), "RMS ratio {ratio}");
    let src_wav = decode("speech_16k.wav", 60.0).expect("source via upload");
    assert_eq!(src_wav, src);
}

#[test]
fn decode_limit_stops_early() {
    for name in [
        "speech_16k.flac",
        "speech_16k.mp3",
        "speech_16k.ogg",
        "speech_stereo_44k.ogg",
        "speech_16k.wav",
    ] {
        match decode(name, 1.0) {
            Err(RuntimeError::TooLong {
                path,
                seconds,
                limit,
            }) => {
                assert_eq!(path, Path::new(name));
                assert_eq!(limit, 1.0);
                assert!(seconds > 1.0 && seconds < 1.9, "{name}: {seconds}");
                let msg = RuntimeError::TooLong {
                    path,
                    seconds,
                    limit,
                }
                .to_string();
                assert!(msg.starts_with(name) && !msg.contains('\n'), "{msg}");
            }
            other => panic!("{name}: expected TooLong, got {other:?}"),
        }
        // Just above the clip's length passes.
        decode(name, 2.0).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Compressed input stops within a packet or so of the limit (not the whole file).
    match decode("speech_16k.flac", 0.5) {
        Err(RuntimeError::TooLong { seconds, .. }) => assert!(seconds < 0.5 + 0.3, "{seconds}"),
        other => panic!("expected TooLong, got {other:?}"),
    }
}

#[test]
fn decode_bad_limit_is_an_error() {
    let bytes = bytes_of("speech_16k.flac");
    for limit in [f64::NAN, 0.0, -1.0] {
        assert!(matches!(
            decode_upload(Path::new("x.flac"), &bytes, limit),
            Err(RuntimeError::Config { .. })
        ));
    }
    decode_upload(Path::new("x.flac"), &bytes, f64::INFINITY).expect("no limit");
}

#[test]
fn decode_empty_is_empty_audio() {
    assert!(matches!(
        decode_upload(Path::new("empty.mp3"), &[], 60.0),
        Err(RuntimeError::EmptyAudio { .. })
    ));
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn assert_one_line_naming(err: &RuntimeError, name: &str) {
    let msg = err.to_string();
    assert!(msg.starts_with(name), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn decode_garbage_is_bad_audio() {
    for seed in 0..40u64 {
        for (n, name) in [
            (1usize, "a.bin"),
            (100, "b.mp3"),
            (4096, "c.ogg"),
            (65_536, "d"),
        ] {
            let bytes = noise(seed, n);
            match decode_upload(Path::new(name), &bytes, 60.0) {
                Err(e) => assert_one_line_naming(&e, name),
                Ok(a) => panic!(
                    "{name} seed {seed}: random bytes decoded to {} samples",
                    a.samples.len()
                ),
            }
        }
    }
    let text = b"Hello, this is not audio at all.\nJust a text file.\n".repeat(50);
    let err = decode_upload(Path::new("notes.txt"), &text, 60.0).expect_err("text");
    assert!(matches!(err, RuntimeError::BadAudio { .. }), "{err}");
    assert_one_line_naming(&err, "notes.txt");
}

#[test]
fn decode_truncated_flac_is_bad_audio() {
    let bytes = bytes_of("speech_16k.flac");
    let err = decode_upload(Path::new("cut.flac"), &bytes[..100], 60.0).expect_err("cut");
    assert!(matches!(err, RuntimeError::BadAudio { .. }), "{err}");
    assert_one_line_naming(&err, "cut.flac");
}

#[test]
fn decode_zero_rate_flac_is_an_error() {
    // STREAMINFO: "fLaC", block header (4), block sizes (4), frame sizes (6), then 20 bits of rate.
    let mut bytes = bytes_of("speech_16k.flac");
    bytes[18] = 0;
    bytes[19] = 0;
    bytes[20] &= 0x0f;
    let err = decode_upload(Path::new("zero.flac"), &bytes, 60.0).expect_err("rate 0");
    assert_one_line_naming(&err, "zero.flac");
}

/// A compressed stream may declare any rate (FLAC: 1 Hz to 655 kHz; Vorbis: any u32): 30
/// samples at 1 Hz would pass a 30 s limit and then be resampled 16000-fold. Uploads are
/// held to the WAV reader's range.
#[test]
fn rates_outside_the_wav_range_are_refused() {
    assert!(check_rate(Path::new("a.ogg"), 16000).is_ok());
    assert!(check_rate(Path::new("a.ogg"), MIN_SAMPLE_RATE).is_ok());
    for r in [0, 1, MIN_SAMPLE_RATE - 1, MAX_SAMPLE_RATE + 1] {
        let e = check_rate(Path::new("a.ogg"), r).unwrap_err();
        assert_one_line_naming(&e, "a.ogg");
        assert!(
            e.to_string()
                .contains(&format!("sample rate {r} Hz is outside")),
            "{e}"
        );
    }
    // A FLAC header that says 1 Hz is refused (symphonia's FLAC reader stops first).
    let mut bytes = bytes_of("speech_16k.flac");
    bytes[18] = 0;
    bytes[19] = 0;
    bytes[20] = (bytes[20] & 0x0f) | 0x10;
    let err = decode_upload(Path::new("slow.flac"), &bytes, 60.0).expect_err("rate 1");
    assert_one_line_naming(&err, "slow.flac");
}

#[test]
fn decode_huge_wav_claim_is_an_error() {
    // 8-bit mono PCM whose data chunk claims 2^31 samples, followed by 100 bytes.
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&u32::MAX.to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(1u32 << 31).to_le_bytes());
    wav.extend(std::iter::repeat_n(128u8, 100));
    let err = decode_upload(Path::new("huge.wav"), &wav, 60.0).expect_err("huge");
    assert!(matches!(err, RuntimeError::WavRead { .. }), "{err}");
    assert_one_line_naming(&err, "huge.wav");
}

#[test]
fn decode_nan_wav_is_non_finite() {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut cursor = Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).expect("writer");
        for s in [0.0f32, 0.5, f32::NAN, 0.1] {
            w.write_sample(s).expect("write");
        }
        w.finalize().expect("finalize");
    }
    let err = decode_upload(Path::new("nan.wav"), cursor.get_ref(), 60.0).expect_err("nan");
    assert!(matches!(err, RuntimeError::NonFinite { .. }), "{err}");
}

/// Prefixes and bit-flipped copies of every fixture: any result is fine, a crash is not.
/// `upload_decode` fuzz finding: FLAC picture and Vorbis-comment blocks whose inner lengths
/// say 3–4 GiB made symphonia allocate that much before failing to read it. The tag blocks
/// are skipped now, so a file with a hostile comment decodes like the clean one.
#[test]
fn decode_flac_with_hostile_comment_lengths() {
    let clean = bytes_of("speech_16k.flac");
    let mut hostile = clean.clone();
    let mut pos = 4;
    let mut patched = false;
    while pos + 4 <= hostile.len() {
        let (h, kind) = (hostile[pos], hostile[pos] & 0x7f);
        let len = usize::from(hostile[pos + 1]) << 16
            | usize::from(hostile[pos + 2]) << 8
            | usize::from(hostile[pos + 3]);
        if kind == FLAC_VORBIS_COMMENT {
            let body = pos + 4;
            let vendor = u32::from_le_bytes(hostile[body..body + 4].try_into().unwrap());
            let at = body + 4 + vendor as usize;
            assert!(at + 8 <= body + len, "comment block too short to patch");
            hostile[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
            hostile[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
            patched = true;
        }
        if h & 0x80 != 0 {
            break;
        }
        pos += 4 + len;
    }
    assert!(patched, "speech_16k.flac has no Vorbis comment block");
    let want = decode_upload(Path::new("a.flac"), &clean, 60.0).unwrap();
    let got = decode_upload(Path::new("a.flac"), &hostile, 60.0).unwrap();
    assert_eq!(got, want);
    // The minimised fuzz input (16 bytes: a FLAC picture block whose media type claims
    // 3 GiB): an error, without the allocation.
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/fuzz-regressions/upload_decode-flac-picture-3gib.flac");
    let bytes = std::fs::read(&path).unwrap();
    let e = decode_upload(&path, &bytes, 30.0).unwrap_err();
    assert!(matches!(e, RuntimeError::BadAudio { .. }), "{e}");
}

#[test]
fn decode_damaged_fixtures_never_crash() {
    for name in [
        "speech_16k.flac",
        "speech_16k.mp3",
        "speech_16k.ogg",
        "speech_stereo_16k.flac",
        "speech_stereo_44k.ogg",
        "speech_stereo_44k.mp3",
    ] {
        let bytes = bytes_of(name);
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for k in 1..40 {
            cases.push(bytes[..bytes.len() * k / 40].to_vec());
        }
        for seed in 0..40u64 {
            let mut damaged = bytes.clone();
            let flips = noise(seed + 1000, 64);
            for pair in flips.chunks(4) {
                let pos =
                    (usize::from(pair[0]) << 16 | usize::from(pair[1]) << 8 | usize::from(pair[2]))
                        % damaged.len();
                damaged[pos] ^= 1 << (pair[3] % 8);
            }
            cases.push(damaged);
        }
        for (i, case) in cases.iter().enumerate() {
            if let Err(e) = decode_upload(Path::new(name), case, 60.0) {
                assert_one_line_naming(&e, name);
                assert!(
                    !e.to_string().contains("crashed"),
                    "{name} case {i}: symphonia panicked: {e}"
                );
            }
        }
    }
}
