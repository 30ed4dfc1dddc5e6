//! WAV decoding (files and in-memory uploads) into mono `f32` samples, with bounded memory.
//!
//! Integer PCM of 8, 16, 24 and 32 bits and 32-bit float are read; several channels are mixed
//! down by averaging. The sample count a header claims is checked against the bytes that really
//! follow it before anything is allocated, so a forged header cannot make us allocate gigabytes.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{BufReader, Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use hound::{SampleFormat, WavReader};

use crate::audio::resample::MAX_SAMPLE_RATE;
use crate::error::{Result, RuntimeError};

/// Lowest sample rate accepted (Hz). Below it a short file would stand for hours of audio
/// once resampled to a model's rate (a 1 Hz header makes 0.5 s of samples into 2 hours).
pub const MIN_SAMPLE_RATE: u32 = 1_000;
/// Most frames (samples per channel) decoded from one file: 2^28, 1 GiB of mono `f32`
/// (4.6 hours at 16 kHz). A longer file is refused before anything is allocated.
pub const MAX_FRAMES: u64 = 1 << 28;

/// Decoded mono audio: samples nominally in [-1, 1) and the sample rate in Hz.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    /// Mono samples (channels averaged), integer PCM scaled by 2^-(bits-1).
    pub samples: Vec<f32>,
    /// Sample rate in Hz (never 0).
    pub sample_rate: u32,
}

impl Audio {
    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Reads a WAV file from disk.
pub fn read_wav(path: impl AsRef<Path>) -> Result<Audio> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| RuntimeError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    decode(path, BufReader::new(file), size)
}

/// Reads a WAV held in memory (an upload); `name` is used in error messages.
pub fn read_wav_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<Audio> {
    decode(name.as_ref(), Cursor::new(bytes), bytes.len() as u64)
}

/// Bytes of the file start kept for error messages (the header fields hound does not report).
const HEAD_BYTES: usize = 512;

/// A reader that counts the bytes taken from it, so we know where the WAV header ends, and
/// keeps the first [`HEAD_BYTES`] of them.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    head: Rc<RefCell<Vec<u8>>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut head = self.head.borrow_mut();
        let keep = HEAD_BYTES.saturating_sub(head.len()).min(n);
        head.extend_from_slice(&buf[..keep]);
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// The `fmt ` chunk's format tag and bits per sample, read from the start of a RIFF file.
fn fmt_fields(head: &[u8]) -> Option<(u16, u16)> {
    let le16 = |b: &[u8], i: usize| Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]));
    let mut pos = 12usize;
    while let Some(id) = head.get(pos..pos + 4) {
        let len = u32::from_le_bytes(head.get(pos + 4..pos + 8)?.try_into().ok()?) as usize;
        if id == b"fmt " {
            return Some((le16(head, pos + 8)?, le16(head, pos + 22)?));
        }
        pos = pos.checked_add(8)?.checked_add(len + (len & 1))?;
    }
    None
}

/// What a header hound refuses for its bit depth holds, in words.
fn bit_depth_reason(head: &[u8]) -> String {
    const IEEE_FLOAT: u16 = 3;
    const SUPPORTED: &str = "voxq reads 8/16/24/32-bit integer PCM and 32-bit float";
    match fmt_fields(head) {
        Some((IEEE_FLOAT, bits)) => format!("{bits}-bit float samples ({SUPPORTED})"),
        Some((_, bits)) => format!(
            "{bits}-bit integer PCM in an 18-byte (WAVEFORMATEX) fmt chunk, where only 8, 16 and 24 bits are read"
        ),
        None => format!("unsupported bit depth ({SUPPORTED})"),
    }
}

fn read_err(path: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::WavRead {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn format_err(path: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::WavFormat {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Maps a hound error to our error kinds; `head` is the start of the file.
fn map_hound(path: &Path, e: hound::Error, head: &[u8]) -> RuntimeError {
    match e {
        hound::Error::IoError(io) => {
            if io.kind() == std::io::ErrorKind::UnexpectedEof
                || io.to_string().contains("enough bytes")
            {
                read_err(
                    path,
                    "file is truncated (ends before the data it announces)",
                )
            } else {
                read_err(path, io.to_string())
            }
        }
        hound::Error::FormatError(msg)
            if msg == "bits per sample is not 32" || msg == "bits per sample is not 8 or 16" =>
        {
            format_err(path, bit_depth_reason(head))
        }
        hound::Error::FormatError(msg) if msg.starts_with("bits per sample is not") => {
            format_err(path, msg)
        }
        hound::Error::FormatError(msg) => read_err(path, format!("not a valid WAV file: {msg}")),
        hound::Error::Unsupported => format_err(
            path,
            "only integer PCM (8/16/24/32-bit) and 32-bit float are supported",
        ),
        hound::Error::TooWide => format_err(path, "sample width too wide"),
        hound::Error::InvalidSampleFormat => format_err(path, "invalid sample format"),
        hound::Error::UnfinishedSample => read_err(path, "file ends inside a sample"),
    }
}

fn decode<R: Read>(path: &Path, reader: R, total_bytes: u64) -> Result<Audio> {
    if total_bytes == 0 {
        return Err(read_err(path, "file is empty (0 bytes)"));
    }
    let count = Rc::new(Cell::new(0u64));
    let head = Rc::new(RefCell::new(Vec::new()));
    let counting = Counting {
        inner: reader,
        count: Rc::clone(&count),
        head: Rc::clone(&head),
    };
    let mut wav = WavReader::new(counting).map_err(|e| map_hound(path, e, &head.borrow()))?;
    let header_bytes = count.get();
    let spec = wav.spec();

    if spec.sample_rate == 0 {
        return Err(format_err(path, "sample rate is 0"));
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&spec.sample_rate) {
        return Err(format_err(
            path,
            format!(
                "sample rate {} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz",
                spec.sample_rate
            ),
        ));
    }
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(format_err(path, "file declares 0 channels"));
    }
    let bits = spec.bits_per_sample;
    let scale = match (spec.sample_format, bits) {
        (SampleFormat::Int, 8 | 16 | 24 | 32) => 1.0 / (1u64 << (bits - 1)) as f64,
        (SampleFormat::Float, 32) => 1.0,
        (SampleFormat::Int, b) => {
            return Err(format_err(path, format!("{b}-bit integer PCM")));
        }
        (SampleFormat::Float, b) => {
            return Err(format_err(path, format!("{b}-bit float samples")));
        }
    };

    // Bytes per stored sample (container width), to compare the claim against the file size.
    let container = u64::from(bits.div_ceil(8)).max(1);
    let claimed = u64::from(wav.len());
    let available = total_bytes.saturating_sub(header_bytes);
    // A sample in a wider container (e.g. 24 bits in 4 bytes) is at least `container` bytes.
    if claimed.saturating_mul(container) > available {
        return Err(read_err(
            path,
            format!(
                "file is truncated: header announces {claimed} samples ({} bytes) but only {available} bytes follow it",
                claimed.saturating_mul(container)
            ),
        ));
    }
    if claimed == 0 {
        return Err(RuntimeError::EmptyAudio {
            path: path.to_path_buf(),
        });
    }
    let frames = claimed / channels as u64;
    if frames > MAX_FRAMES {
        return Err(read_err(
            path,
            format!(
                "{frames} samples per channel ({:.1} hours at {} Hz) is more than the {MAX_FRAMES} voxq decodes from one file; split it",
                frames as f64 / f64::from(spec.sample_rate) / 3600.0,
                spec.sample_rate
            ),
        ));
    }
    let frames = frames as usize;
    let samples = match spec.sample_format {
        SampleFormat::Int => mix_down(path, wav.samples::<i32>(), frames, channels, scale)?,
        SampleFormat::Float => mix_down(path, wav.samples::<f32>(), frames, channels, scale)?,
    };
    if samples.is_empty() {
        return Err(RuntimeError::EmptyAudio {
            path: path.to_path_buf(),
        });
    }
    Ok(Audio {
        samples,
        sample_rate: spec.sample_rate,
    })
}

/// Averages interleaved channels into mono, scaling integer samples to [-1, 1).
fn mix_down<S, R>(
    path: &Path,
    mut it: hound::WavSamples<'_, R, S>,
    frames: usize,
    channels: usize,
    scale: f64,
) -> Result<Vec<f32>>
where
    S: hound::Sample + Into<f64>,
    R: std::io::Read,
{
    let mut samples = Vec::with_capacity(frames);
    let inv_ch = 1.0 / channels as f64;
    for _ in 0..frames {
        let mut acc = 0.0f64;
        for _ in 0..channels {
            let s: f64 = match it.next() {
                Some(s) => s.map_err(|e| map_hound(path, e, &[]))?.into(),
                None => return Err(read_err(path, "file ends inside a frame")),
            };
            if !s.is_finite() {
                return Err(RuntimeError::NonFinite {
                    path: path.to_path_buf(),
                });
            }
            acc += s;
        }
        samples.push((acc * scale * inv_ch) as f32);
    }
    Ok(samples)
}
