//! Decoding of audio files and uploads (WAV, FLAC, MP3, Ogg Vorbis) into mono `f32`, under a length
//! limit: [`read_audio`] for files on disk (every command line reader), [`decode_upload`] for bytes
//! held in memory (the server).
//!
//! WAV (`RIFF....WAVE`) goes to [`read_wav_bytes`], which bounds memory by the bytes it is given.
//! Everything else is probed and decoded by symphonia: the default audio track is decoded packet by
//! packet, channels are averaged into mono, and decoding stops with [`RuntimeError::TooLong`] as
//! soon as the decoded audio passes the limit, so a small file that expands to hours of audio is
//! never fully allocated. A packet that fails to decode is skipped (with a log line), like
//! symphonia's own examples do; a stream that cannot be read further, a codec change midway, or a
//! decoder that stops making progress is an error. A panic inside the decoder on hostile input is
//! caught and reported as [`RuntimeError::BadAudio`].

use std::fs::File;
use std::io::{Cursor, ErrorKind, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use exporter::onnx::one_line;
use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::conv::IntoSample;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::sample::Sample;

use crate::audio::resample::MAX_SAMPLE_RATE;
use crate::audio::wav::{read_wav, read_wav_bytes, Audio, MAX_FRAMES, MIN_SAMPLE_RATE};
use crate::error::{Result, RuntimeError};

/// Packets in a row (of the decoded track) that may yield no audio before we give up: a decoder
/// that keeps consuming packets without producing samples is broken or fed garbage.
const MAX_IDLE_PACKETS: u32 = 1000;

/// Upper bound on the samples reserved up front from a length the container declares (the
/// declaration may be a lie; the vector still grows as needed below the length limit).
const MAX_RESERVE: u64 = 1 << 22;

/// Most bytes of a compressed (non-WAV) audio file that [`read_audio`] reads into memory to
/// decode: 512 MiB is over 7 hours of 16 kHz FLAC, longer than the [`MAX_FRAMES`] decoded anyway.
pub const MAX_COMPRESSED_BYTES: u64 = 512 << 20;

/// Reads an audio file from disk: WAV (streamed by [`read_wav`], which checks the header's
/// claims against the file before allocating), or FLAC, MP3 or Ogg Vorbis (the upload decoder,
/// [`decode_upload`], on at most [`MAX_COMPRESSED_BYTES`] of the file). The format is told by
/// the content, not the name; at most [`MAX_FRAMES`] samples per channel are decoded.
pub fn read_audio(path: impl AsRef<Path>) -> Result<Audio> {
    let path = path.as_ref();
    let io = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut reader = file.take(MAX_COMPRESSED_BYTES + 1);
    let mut head = Vec::with_capacity(12);
    (&mut reader).take(12).read_to_end(&mut head).map_err(io)?;
    if is_wav(&head) {
        return read_wav(path);
    }
    let mut bytes = head;
    reader.read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_COMPRESSED_BYTES {
        return Err(bad(
            path,
            format!(
                "compressed audio files over {} MiB are not read (convert it to WAV or split it)",
                MAX_COMPRESSED_BYTES >> 20
            ),
        ));
    }
    decode_upload(path, &bytes, f64::INFINITY)
}

/// Decodes an uploaded audio file held in memory into mono samples at the file's own rate.
///
/// `name` is used in error messages and, through its extension, as a hint to the probe.
/// `max_seconds` is the longest audio accepted (`f64::INFINITY` for no limit); longer audio is
/// [`RuntimeError::TooLong`], detected while decoding. Samples from compressed formats are clamped
/// to [-1, 1] (lossy decoders overshoot slightly); WAV samples are as [`read_wav_bytes`] gives them.
pub fn decode_upload(name: &Path, bytes: &[u8], max_seconds: f64) -> Result<Audio> {
    if bytes.is_empty() {
        return Err(RuntimeError::EmptyAudio {
            path: name.to_path_buf(),
        });
    }
    if max_seconds.is_nan() || max_seconds <= 0.0 {
        return Err(RuntimeError::Config {
            path: name.to_path_buf(),
            reason: format!(
                "the audio length limit must be a positive number of seconds, got {max_seconds}"
            ),
        });
    }
    if is_wav(bytes) {
        let audio = read_wav_bytes(name, bytes)?;
        check_length(name, audio.samples.len(), audio.sample_rate, max_seconds)?;
        return Ok(audio);
    }
    match catch_unwind(AssertUnwindSafe(|| {
        decode_compressed(name, bytes, max_seconds)
    })) {
        Ok(result) => result,
        Err(_) => Err(bad(
            name,
            "the decoder crashed on this data (corrupt or hostile file)",
        )),
    }
}

/// True when the bytes start like a RIFF WAVE file.
fn is_wav(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE"
}

fn bad(path: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::BadAudio {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The sample rates WAV files are held to: a 1 Hz FLAC header would make 30 samples into 30 s
/// of audio that resampling to 16 kHz blows up 16000-fold.
fn check_rate(path: &Path, rate: u32) -> Result<()> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(bad(
            path,
            format!("sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"),
        ))
    }
}

/// Fails with `TooLong` when `frames` at `rate` is longer than `max_seconds`.
fn check_length(path: &Path, frames: usize, rate: u32, max_seconds: f64) -> Result<()> {
    let rate = f64::from(rate.max(1));
    if frames as f64 > max_seconds * rate {
        return Err(RuntimeError::TooLong {
            path: path.to_path_buf(),
            seconds: frames as f64 / rate,
            limit: max_seconds,
        });
    }
    Ok(())
}

/// Probes and decodes a non-WAV upload with symphonia.
fn decode_compressed(path: &Path, bytes: &[u8], max_seconds: f64) -> Result<Audio> {
    let mut data = bytes.to_vec();
    neutralize_flac_tags(&mut data);
    let mss = MediaSourceStream::new(
        Box::new(Cursor::new(data)),
        MediaSourceStreamOptions::default(),
    );
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let format_opts = FormatOptions {
        enable_gapless: true,
        ..FormatOptions::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &format_opts, &MetadataOptions::default())
        .map_err(|e| bad(path, probe_failure(&e)))?;
    let mut format = probed.format;

    let track = match format.default_track() {
        Some(t) if t.codec_params.codec != CODEC_TYPE_NULL => t,
        _ => format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| bad(path, "the file has no audio track"))?,
    };
    let track_id = track.id;
    let params = track.codec_params.clone();
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| {
            bad(
                path,
                format!("unsupported codec: {}", one_line(&e.to_string())),
            )
        })?;

    let mut rate = params.sample_rate;
    if let Some(r) = rate {
        check_rate(path, r)?;
    }
    let mut samples: Vec<f32> = Vec::new();
    if let (Some(n), Some(r)) = (params.n_frames, rate) {
        // Reserve what the container announces, but never more than the limit allows.
        let limit = (max_seconds * f64::from(r)).min(MAX_RESERVE as f64) as u64 + 1;
        samples.reserve(n.min(limit).min(MAX_RESERVE) as usize);
    }

    // Every read consumes input, so a well-behaved demuxer yields at most about one packet per
    // byte (Ogg allows empty packets at a cost of one lacing byte each); more means it is stuck.
    let max_reads = (bytes.len() as u64).saturating_mul(2).saturating_add(1024);
    let mut reads = 0u64;
    let mut packets = 0u64;
    let mut idle = 0u32;
    let mut skipped = 0u64;
    let mut last_skip = String::new();

    loop {
        reads += 1;
        if reads > max_reads {
            return Err(bad(
                path,
                format!(
                    "the demuxer makes no progress ({reads} packets from {} bytes)",
                    bytes.len()
                ),
            ));
        }
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(SymphoniaError::ResetRequired) => {
                return Err(bad(
                    path,
                    "the stream changes its format midway (chained streams are not supported)",
                ));
            }
            Err(e) => {
                return Err(bad(
                    path,
                    format!(
                        "cannot read the stream after {} decoded samples: {}",
                        samples.len(),
                        one_line(&e.to_string())
                    ),
                ));
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        packets += 1;
        let before = samples.len();
        match decoder.decode(&packet) {
            Ok(decoded) => {
                let spec = *decoded.spec();
                if spec.rate == 0 {
                    return Err(bad(path, "sample rate is 0"));
                }
                match rate {
                    None => {
                        check_rate(path, spec.rate)?;
                        rate = Some(spec.rate);
                    }
                    Some(r) if r != spec.rate => {
                        return Err(bad(
                            path,
                            format!(
                                "sample rate changes midway, from {r} Hz to {} Hz",
                                spec.rate
                            ),
                        ));
                    }
                    Some(_) => {}
                }
                if spec.channels.count() == 0 {
                    return Err(bad(path, "the stream declares 0 channels"));
                }
                append_mono(&decoded, &mut samples);
            }
            // A malformed packet (symphonia reports reads past a packet's end as IO errors too):
            // skip it, as symphonia's examples do.
            Err(SymphoniaError::DecodeError(msg)) => {
                skipped += 1;
                last_skip = msg.to_string();
            }
            Err(SymphoniaError::IoError(e)) => {
                skipped += 1;
                last_skip = one_line(&e.to_string());
            }
            Err(e) => {
                return Err(bad(
                    path,
                    format!(
                        "decoding failed after {} samples: {}",
                        samples.len(),
                        one_line(&e.to_string())
                    ),
                ));
            }
        }

        let new = samples.get_mut(before..).unwrap_or_default();
        if new.is_empty() {
            idle += 1;
            if idle > MAX_IDLE_PACKETS {
                return Err(bad(
                    path,
                    format!("{idle} packets in a row decoded to no audio; giving up"),
                ));
            }
            continue;
        }
        idle = 0;
        for s in new.iter_mut() {
            if !s.is_finite() {
                return Err(RuntimeError::NonFinite {
                    path: path.to_path_buf(),
                });
            }
            *s = s.clamp(-1.0, 1.0);
        }
        if let Some(r) = rate {
            check_length(path, samples.len(), r, max_seconds)?;
        }
        if samples.len() as u64 > MAX_FRAMES {
            return Err(bad(
                path,
                format!("more than the {MAX_FRAMES} samples per channel voxq decodes from one file; split it"),
            ));
        }
    }

    if samples.is_empty() {
        if skipped > 0 {
            return Err(bad(
                path,
                format!("none of its {packets} audio packets could be decoded (last error: {last_skip})"),
            ));
        }
        if params.n_frames.is_some_and(|n| n > 0) {
            return Err(bad(
                path,
                "the file ends before its first audio frame (truncated?)",
            ));
        }
        return Err(RuntimeError::EmptyAudio {
            path: path.to_path_buf(),
        });
    }
    if skipped > 0 {
        log::warn!(
            "{}: skipped {skipped} of {packets} audio packets that failed to decode (last error: {last_skip})",
            path.display()
        );
    }
    let sample_rate = rate.ok_or_else(|| bad(path, "the stream does not say its sample rate"))?;
    Ok(Audio {
        samples,
        sample_rate,
    })
}

/// FLAC metadata block types (the 7 low bits of a block header's first byte).
const FLAC_PADDING: u8 = 1;
const FLAC_VORBIS_COMMENT: u8 = 4;
const FLAC_PICTURE: u8 = 6;

/// Turns the tag (Vorbis comment) and picture blocks of a native FLAC stream into padding
/// blocks of the same length, which symphonia skips. symphonia 0.5 allocates the buffers of
/// those blocks from length fields inside them before reading (up to 4 GiB for a few bytes of
/// input: pdeljanov/Symphonia#508, found by `fuzz/` target `upload_decode`); decoding never
/// needs them. Blocks are walked by their own 24-bit lengths; a walk that leaves the data stops.
fn neutralize_flac_tags(data: &mut [u8]) {
    if !data.starts_with(b"fLaC") {
        return;
    }
    let mut pos = 4usize;
    while let Some(h) = data.get(pos..pos + 4) {
        let (last, kind) = (h[0] & 0x80, h[0] & 0x7f);
        let len = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
        if kind == FLAC_VORBIS_COMMENT || kind == FLAC_PICTURE {
            data[pos] = last | FLAC_PADDING;
        }
        if last != 0 {
            break;
        }
        pos += 4 + len;
    }
}

/// Why the probe (finding the container and reading its headers) failed, in words.
fn probe_failure(e: &SymphoniaError) -> String {
    match e {
        SymphoniaError::Unsupported(_) => {
            "not a recognised audio format (WAV, FLAC, MP3 or Ogg Vorbis expected)".to_string()
        }
        SymphoniaError::IoError(io) if io.kind() == ErrorKind::UnexpectedEof => {
            "the data ends before a complete audio header (truncated file, or not audio)"
                .to_string()
        }
        other => format!(
            "cannot read the audio header: {}",
            one_line(&other.to_string())
        ),
    }
}

/// Appends the average of the buffer's channels to `out`, converted to `f32`.
fn append_mono(decoded: &AudioBufferRef<'_>, out: &mut Vec<f32>) {
    match decoded {
        AudioBufferRef::U8(b) => mix_planes(b, out),
        AudioBufferRef::U16(b) => mix_planes(b, out),
        AudioBufferRef::U24(b) => mix_planes(b, out),
        AudioBufferRef::U32(b) => mix_planes(b, out),
        AudioBufferRef::S8(b) => mix_planes(b, out),
        AudioBufferRef::S16(b) => mix_planes(b, out),
        AudioBufferRef::S24(b) => mix_planes(b, out),
        AudioBufferRef::S32(b) => mix_planes(b, out),
        AudioBufferRef::F32(b) => mix_planes(b, out),
        AudioBufferRef::F64(b) => mix_planes(b, out),
    }
}

fn mix_planes<S>(buf: &AudioBuffer<S>, out: &mut Vec<f32>)
where
    S: Sample + IntoSample<f32>,
{
    let frames = buf.frames();
    let planes = buf.planes();
    let planes = planes.planes();
    if planes.is_empty() || frames == 0 {
        return;
    }
    let start = out.len();
    out.resize(start + frames, 0.0);
    let dst = &mut out[start..];
    if let [only] = planes {
        for (d, &s) in dst.iter_mut().zip(only.iter()) {
            *d = s.into_sample();
        }
        return;
    }
    for plane in planes {
        for (d, &s) in dst.iter_mut().zip(plane.iter()) {
            let v: f32 = s.into_sample();
            *d += v;
        }
    }
    let inv = 1.0 / planes.len() as f32;
    for d in dst.iter_mut() {
        *d *= inv;
    }
}

#[cfg(test)]
mod tests;
