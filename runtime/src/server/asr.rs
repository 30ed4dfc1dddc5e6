//! `POST /v1/audio/transcriptions`: OpenAI-compatible transcription with Whisper (json, text
//! and verbose_json responses; language and text prompt honoured). Each window is decoded with
//! Whisper's safeguards: temperature 0 (or absent) falls back to higher temperatures when a
//! decode is repetitive or unlikely, as OpenAI's API does; a temperature above 0 samples once
//! at it; silent windows give no text.

use std::time::Instant;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::api::{read_form, ApiError};
use super::limits::Cancel;
use super::{blocking, Shared};
use crate::audio::decode::decode_upload;
use crate::audio::logmel::{to_16k, LogMelExtractor};
use crate::generation::GenerateOptions;
use crate::whisper::Safeguards;

/// Tokens per 30 s window (Whisper's own limit is half the text context).
const MAX_NEW_TOKENS: usize = 224;

pub async fn transcriptions(
    State(st): State<Shared>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let w = st
        .engines
        .get()
        .and_then(|e| e.whisper.clone())
        .ok_or_else(|| {
            ApiError::model_not_loaded(
                "no Whisper model loaded (start the server with --whisper DIR)",
            )
        })?;
    let form = read_form(mp, st.cfg.max_upload_bytes).await?;
    let up = form.one_file()?.clone();
    let format = form
        .fields
        .get("response_format")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "text" | "verbose_json") {
        return Err(ApiError::bad_request(format!(
            "response_format '{format}' is not supported (json, text, verbose_json)"
        )));
    }
    let language = form
        .fields
        .get("language")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let prompt_text = form.fields.get("prompt").cloned();
    let prompt = w
        .prompt(language.as_deref(), prompt_text.as_deref())
        .map_err(|e| ApiError::bad_request(exporter::onnx::one_line(&e.to_string())))?;
    let sg = match form.parse::<f32>("temperature")? {
        Some(t) if !(0.0..=2.0).contains(&t) => {
            return Err(ApiError::bad_request(format!(
                "temperature must be in [0, 2], got {t}"
            )))
        }
        Some(t) if t > 0.0 => Safeguards {
            temperatures: vec![t],
            ..Default::default()
        },
        _ => Safeguards::default(),
    };
    let opts = GenerateOptions {
        max_new_tokens: MAX_NEW_TOKENS,
        ..Default::default()
    };
    let (cancel, _cancel_on_drop) = Cancel::new(Instant::now() + st.cfg.timeout);
    let max_s = st.cfg.max_audio_s;
    let (segments, duration) = blocking(move || {
        let name = up.label();
        let audio = decode_upload(&name, &up.bytes, max_s)?;
        let samples = to_16k(&name, &audio.samples, audio.sample_rate)?;
        let mut segs = Vec::new();
        for (i, win) in LogMelExtractor::windows(&samples).into_iter().enumerate() {
            if cancel.stopped() {
                break;
            }
            let d = w.transcribe_window_safe(&name, win, &prompt, &opts, &sg, &mut |_| {
                !cancel.stopped()
            })?;
            let start = i as f64 * 30.0;
            segs.push((start, start + win.len() as f64 / 16000.0, d));
        }
        Ok((segs, audio.duration_s()))
    })
    .await?;
    let text = segments
        .iter()
        .map(|s| s.2.text.as_str())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(match format.as_str() {
        "text" => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        "verbose_json" => Json(json!({
            "task": "transcribe",
            "language": language.unwrap_or_else(|| "en".into()),
            "duration": duration,
            "text": text,
            "segments": segments.iter().enumerate().map(|(i, (s, e, d))| json!({
                "id": i, "start": s, "end": e, "text": d.text,
                "temperature": d.temperature,
                "avg_logprob": finite(d.avg_logprob),
                "compression_ratio": d.compression_ratio,
                "no_speech_prob": d.no_speech_prob,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        _ => Json(json!({ "text": text })).into_response(),
    })
}

/// A JSON number, or null where it has none (-inf: a token with no probability).
fn finite(x: f32) -> Option<f32> {
    x.is_finite().then_some(x)
}
