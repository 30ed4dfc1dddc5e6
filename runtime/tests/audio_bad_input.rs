//! Odd and broken WAV input: each case gives the right error variant naming the file, never a
//! panic; valid but unusual formats (8/24/32-bit, float, stereo) decode to the right samples.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};
use hound::{SampleFormat, WavSpec, WavWriter};
use runtime::audio::{read_wav, read_wav_bytes, Fbank, FbankConfig};
use runtime::RuntimeError;

fn spec(channels: u16, rate: u32, bits: u16, format: SampleFormat) -> WavSpec {
    WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: format,
    }
}

fn write_i32(path: &Path, spec: WavSpec, samples: &[i32]) -> Result<()> {
    let mut w = WavWriter::create(path, spec)?;
    for &s in samples {
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}

fn write_f32(path: &Path, spec: WavSpec, samples: &[f32]) -> Result<()> {
    let mut w = WavWriter::create(path, spec)?;
    for &s in samples {
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}

/// A canonical 44-byte header (PCM or float) followed by `data`, with `data_len` as claimed.
fn raw_wav(
    format_tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    data_len: u32,
    data: &[u8],
) -> Vec<u8> {
    let block_align = channels * bits.div_ceil(8);
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36u32.wrapping_add(data_len)).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&format_tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    v.extend_from_slice(&block_align.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn names_file(err: &RuntimeError, path: &Path) -> Result<()> {
    let msg = err.to_string();
    ensure!(
        msg.contains(&path.display().to_string()),
        "error does not name {}: {msg}",
        path.display()
    );
    ensure!(!msg.contains('\n'), "error is not one line: {msg}");
    Ok(())
}

fn tmp() -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let p = dir.path().to_path_buf();
    Ok((dir, p))
}

#[test]
fn truncated_file() -> Result<()> {
    let (_d, dir) = tmp()?;
    let path = dir.join("truncated.wav");
    let samples: Vec<i32> = (0..2000).map(|i| (i % 100) * 100).collect();
    write_i32(&path, spec(1, 16000, 16, SampleFormat::Int), &samples)?;
    let bytes = std::fs::read(&path)?;
    std::fs::write(&path, &bytes[..bytes.len() / 2])?;
    match read_wav(&path) {
        Err(e @ RuntimeError::WavRead { .. }) => names_file(&e, &path)?,
        other => bail!("expected WavRead, got {other:?}"),
    }
    // Cut inside the header too.
    std::fs::write(&path, &bytes[..30])?;
    match read_wav(&path) {
        Err(e @ RuntimeError::WavRead { .. }) => names_file(&e, &path),
        other => bail!("expected WavRead, got {other:?}"),
    }
}

#[test]
fn garbage_and_missing() -> Result<()> {
    let (_d, dir) = tmp()?;
    let path = dir.join("garbage.wav");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &junk)?;
    match read_wav(&path) {
        Err(e @ RuntimeError::WavRead { .. }) => names_file(&e, &path)?,
        other => bail!("expected WavRead, got {other:?}"),
    }
    let empty = dir.join("empty-file.wav");
    std::fs::write(&empty, b"")?;
    match read_wav(&empty) {
        Err(e @ RuntimeError::WavRead { .. }) => names_file(&e, &empty)?,
        other => bail!("expected WavRead, got {other:?}"),
    }
    let missing = dir.join("missing.wav");
    match read_wav(&missing) {
        Err(e @ RuntimeError::Io { .. }) => names_file(&e, &missing)?,
        other => bail!("expected Io, got {other:?}"),
    }
    match read_wav_bytes("upload.wav", &junk) {
        Err(e @ RuntimeError::WavRead { .. }) => names_file(&e, Path::new("upload.wav")),
        other => bail!("expected WavRead, got {other:?}"),
    }
}

#[test]
fn zero_length_audio() -> Result<()> {
    let (_d, dir) = tmp()?;
    let path = dir.join("zero.wav");
    write_i32(&path, spec(1, 16000, 16, SampleFormat::Int), &[])?;
    match read_wav(&path) {
        Err(e @ RuntimeError::EmptyAudio { .. }) => names_file(&e, &path),
        other => bail!("expected EmptyAudio, got {other:?}"),
    }
}

#[test]
fn shorter_than_one_frame() -> Result<()> {
    let (_d, dir) = tmp()?;
    let path = dir.join("short.wav");
    write_i32(&path, spec(1, 16000, 16, SampleFormat::Int), &[1000; 300])?;
    let audio = read_wav(&path)?;
    ensure!(audio.samples.len() == 300);
    let fbank = Fbank::new(&FbankConfig::default())?;
    match fbank.compute_named(&path, &audio.samples) {
        Err(
            e @ RuntimeError::TooShort {
                samples: 300,
                needed: 400,
                ..
            },
        ) => names_file(&e, &path),
        other => bail!("expected TooShort, got {other:?}"),
    }
}

#[test]
fn unusual_formats_decode_correctly() -> Result<()> {
    let (_d, dir) = tmp()?;
    let close = |a: &[f32], b: &[f32], tol: f32| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    };

    // 24-bit.
    let p24 = dir.join("pcm24.wav");
    write_i32(
        &p24,
        spec(1, 16000, 24, SampleFormat::Int),
        &[0, 4_194_304, -8_388_608, 8_388_607],
    )?;
    let a = read_wav(&p24)?;
    ensure!(a.sample_rate == 16000);
    ensure!(
        close(
            &a.samples,
            &[0.0, 0.5, -1.0, 8_388_607.0 / 8_388_608.0],
            1e-7
        ),
        "{:?}",
        a.samples
    );

    // 8-bit (unsigned on disk).
    let p8 = dir.join("pcm8.wav");
    write_i32(
        &p8,
        spec(1, 8000, 8, SampleFormat::Int),
        &[0, 64, -128, 127],
    )?;
    let a = read_wav(&p8)?;
    ensure!(a.sample_rate == 8000);
    ensure!(
        close(&a.samples, &[0.0, 0.5, -1.0, 127.0 / 128.0], 1e-7),
        "{:?}",
        a.samples
    );

    // 32-bit integer.
    let p32 = dir.join("pcm32.wav");
    write_i32(
        &p32,
        spec(1, 16000, 32, SampleFormat::Int),
        &[1 << 30, i32::MIN],
    )?;
    let a = read_wav(&p32)?;
    ensure!(close(&a.samples, &[0.5, -1.0], 1e-7), "{:?}", a.samples);

    // 32-bit float.
    let pf = dir.join("float.wav");
    write_f32(
        &pf,
        spec(1, 22050, 32, SampleFormat::Float),
        &[0.25, -0.75, 0.0],
    )?;
    let a = read_wav(&pf)?;
    ensure!(a.sample_rate == 22050);
    ensure!(
        close(&a.samples, &[0.25, -0.75, 0.0], 0.0),
        "{:?}",
        a.samples
    );

    // Stereo 16-bit: frames are averaged.
    let ps = dir.join("stereo.wav");
    write_i32(
        &ps,
        spec(2, 16000, 16, SampleFormat::Int),
        &[16384, 0, -16384, -16384, 8192, 24576],
    )?;
    let a = read_wav(&ps)?;
    ensure!(
        close(&a.samples, &[0.25, -0.5, 0.5], 1e-7),
        "{:?}",
        a.samples
    );

    // Stereo float, read from memory.
    let pfs = dir.join("stereo-float.wav");
    write_f32(
        &pfs,
        spec(2, 48000, 32, SampleFormat::Float),
        &[1.0, 0.0, -0.5, 0.5],
    )?;
    let a = read_wav_bytes("stereo-float.wav", &std::fs::read(&pfs)?)?;
    ensure!(a.sample_rate == 48000);
    ensure!(close(&a.samples, &[0.5, 0.0], 0.0), "{:?}", a.samples);
    Ok(())
}

#[test]
fn nan_and_inf_float_samples() -> Result<()> {
    let (_d, dir) = tmp()?;
    for (name, bad) in [("nan.wav", f32::NAN), ("inf.wav", f32::NEG_INFINITY)] {
        let path = dir.join(name);
        write_f32(
            &path,
            spec(1, 16000, 32, SampleFormat::Float),
            &[0.1, bad, 0.2],
        )?;
        match read_wav(&path) {
            Err(e @ RuntimeError::NonFinite { .. }) => names_file(&e, &path)?,
            other => bail!("{name}: expected NonFinite, got {other:?}"),
        }
    }
    // The fbank refuses NaN too, naming its source.
    let fbank = Fbank::new(&FbankConfig::default())?;
    let mut x = vec![0.0f32; 1000];
    x[500] = f32::NAN;
    match fbank.compute_named("clip.wav", &x) {
        Err(e @ RuntimeError::NonFinite { .. }) => names_file(&e, Path::new("clip.wav")),
        other => bail!("expected NonFinite, got {other:?}"),
    }
}

#[test]
fn sample_rate_zero() -> Result<()> {
    let (_d, dir) = tmp()?;
    let path = dir.join("rate0.wav");
    std::fs::write(&path, raw_wav(1, 1, 0, 16, 8, &[0u8; 8]))?;
    match read_wav(&path) {
        Err(e @ RuntimeError::WavFormat { .. }) => {
            names_file(&e, &path)?;
            ensure!(e.to_string().contains("sample rate"), "{e}");
            Ok(())
        }
        other => bail!("expected WavFormat, got {other:?}"),
    }
}

#[test]
fn unsupported_encodings() -> Result<()> {
    let (_d, dir) = tmp()?;
    // A-law (format tag 6).
    let path = dir.join("alaw.wav");
    std::fs::write(&path, raw_wav(6, 1, 8000, 8, 4, &[0u8; 4]))?;
    match read_wav(&path) {
        Err(e @ (RuntimeError::WavFormat { .. } | RuntimeError::WavRead { .. })) => {
            names_file(&e, &path)?
        }
        other => bail!("expected WavFormat, got {other:?}"),
    }
    // 64-bit float.
    let path = dir.join("f64.wav");
    std::fs::write(&path, raw_wav(3, 1, 8000, 64, 16, &[0u8; 16]))?;
    match read_wav(&path) {
        Err(e @ (RuntimeError::WavFormat { .. } | RuntimeError::WavRead { .. })) => {
            names_file(&e, &path)?;
            // says what the file holds, not hound's "bits per sample is not 32"
            let msg = e.to_string();
            ensure!(msg.contains("64-bit float samples"), "{msg}");
            ensure!(!msg.contains("is not 32"), "{msg}");
            Ok(())
        }
        other => bail!("expected WavFormat, got {other:?}"),
    }
}

#[test]
fn huge_claimed_length_in_tiny_file() -> Result<()> {
    let (_d, dir) = tmp()?;
    // 8-bit mono claiming 2^31 samples, 16-bit claiming 2^31 - 1, 100 real bytes each.
    let cases = [
        ("huge8.wav", raw_wav(1, 1, 16000, 8, 1 << 31, &[128u8; 100])),
        (
            "huge16.wav",
            raw_wav(1, 1, 16000, 16, u32::MAX - 1, &[0u8; 100]),
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &bytes)?;
        let start = std::time::Instant::now();
        match read_wav(&path) {
            Err(e @ RuntimeError::WavRead { .. }) => {
                names_file(&e, &path)?;
                ensure!(e.to_string().contains("truncated"), "{e}");
            }
            other => bail!("{name}: expected WavRead, got {other:?}"),
        }
        match read_wav_bytes(name, &bytes) {
            Err(e @ RuntimeError::WavRead { .. }) => names_file(&e, Path::new(name))?,
            other => bail!("{name} (bytes): expected WavRead, got {other:?}"),
        }
        ensure!(
            start.elapsed().as_secs_f64() < 1.0,
            "{name}: took {:?}",
            start.elapsed()
        );
    }
    Ok(())
}
