//! `POST /v1/chat/completions`: OpenAI-style chat with one `input_audio` part, answered by the
//! audio LLM (Whisper encoder → projector → LLM with KV cache), whole or streamed as
//! server-sent events.

use std::convert::Infallible;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api::{one_line, ApiError, Upload};
use super::limits::Cancel;
use super::{blocking, Shared};
use crate::audio::decode::decode_upload;
use crate::audio_llm::AudioLlm;
use crate::generation::{GenerateOptions, Strategy};

const SPEECH: &str = "<SpeechHere>";
const DEFAULT_MAX_TOKENS: usize = 256;
const MAX_TOKENS: usize = 4096;

/// What a chat request asks for, checked.
struct ChatRequest {
    model: String,
    audio: Upload,
    /// The user turn with `<SpeechHere>` in it.
    user: String,
    opts: GenerateOptions,
    stream: bool,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

fn parse(body: &[u8], llm: &AudioLlm) -> Result<ChatRequest, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("request body is not JSON: {e}")))?;
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("'messages' must be a non-empty array"))?;
    if v.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(bad("only n = 1 is supported"));
    }
    let mut audio: Vec<Upload> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" {
            continue;
        }
        match m.get("content") {
            Some(Value::String(s)) => texts.push(s.clone()),
            Some(Value::Array(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    match p.get("type").and_then(Value::as_str) {
                        Some("text") => texts.push(
                            p.get("text")
                                .and_then(Value::as_str)
                                .ok_or_else(|| bad(format!("messages[{i}].content[{j}]: text part without 'text'")))?
                                .to_string(),
                        ),
                        Some("input_audio") => {
                            let ia = p.get("input_audio").ok_or_else(|| {
                                bad(format!("messages[{i}].content[{j}]: missing 'input_audio'"))
                            })?;
                            let data = ia.get("data").and_then(Value::as_str).ok_or_else(|| {
                                bad(format!("messages[{i}].content[{j}].input_audio: missing 'data' (base64 audio)"))
                            })?;
                            let fmt = ia.get("format").and_then(Value::as_str).unwrap_or("wav");
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(data.trim())
                                .map_err(|e| {
                                    bad(format!("messages[{i}].content[{j}].input_audio.data is not base64: {e}"))
                                })?;
                            audio.push(Upload {
                                filename: format!("messages[{i}].content[{j}].{fmt}"),
                                bytes: Bytes::from(bytes),
                            });
                        }
                        other => {
                            return Err(bad(format!(
                                "messages[{i}].content[{j}]: unsupported part type {other:?} (text, input_audio)"
                            )))
                        }
                    }
                }
            }
            _ => {
                return Err(bad(format!(
                    "messages[{i}]: 'content' must be a string or a list of parts"
                )))
            }
        }
    }
    let audio = match audio.len() {
        1 => audio.remove(0),
        0 => {
            return Err(bad(
                "no input_audio part: the audio LLM needs one audio clip",
            ))
        }
        n => return Err(bad(format!("{n} input_audio parts; one is supported"))),
    };
    let text = texts.join("\n").trim().to_string();
    let user = if text.is_empty() {
        llm.user_turn("asr", None, None)
    } else if text.contains(SPEECH) {
        llm.user_turn("", Some(&text), None)
    } else {
        Ok(format!("{SPEECH}\n{text}"))
    }
    .map_err(|e| bad(one_line(&e.to_string())))?;
    let max = v
        .get("max_completion_tokens")
        .or_else(|| v.get("max_tokens"))
        .filter(|x| !x.is_null());
    let max_new_tokens = match max {
        None => DEFAULT_MAX_TOKENS,
        Some(x) => match x.as_u64() {
            Some(n) if (1..=MAX_TOKENS as u64).contains(&n) => n as usize,
            _ => return Err(bad(format!("max_tokens must be 1..{MAX_TOKENS}, got {x}"))),
        },
    };
    let num = |k: &str| -> Result<Option<f64>, ApiError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| bad(format!("'{k}' must be a number"))),
        }
    };
    let temperature = num("temperature")?.unwrap_or(0.0);
    let top_p = num("top_p")?.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) || !(0.0..=1.0).contains(&top_p) || top_p == 0.0 {
        return Err(bad("temperature must be in [0, 2] and top_p in (0, 1]"));
    }
    let seed = match v.get("seed") {
        None | Some(Value::Null) => None,
        Some(x) => Some(
            x.as_u64()
                .ok_or_else(|| bad("'seed' must be a non-negative integer"))?,
        ),
    };
    let strategy = if temperature == 0.0 {
        Strategy::Greedy
    } else {
        Strategy::Sample {
            temperature: temperature as f32,
            top_k: 0,
            top_p: top_p as f32,
            seed: seed.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            }),
        }
    };
    Ok(ChatRequest {
        model: v
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| llm.config.model.clone()),
        audio,
        user,
        opts: GenerateOptions {
            strategy,
            max_new_tokens,
            ..Default::default()
        },
        stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn completion_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "chatcmpl-{:x}{:04x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        N.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

/// The text `ids` add to what was already sent (held back while it ends in a partial
/// UTF-8 character).
fn delta(llm: &AudioLlm, ids: &[u32], sent: &mut String) -> Result<Option<String>, ApiError> {
    let text = llm.llm.decode(ids)?;
    if text.ends_with('\u{fffd}') || !text.starts_with(sent.as_str()) {
        return Ok(None);
    }
    let d = text[sent.len()..].to_string();
    *sent = text;
    Ok((!d.is_empty()).then_some(d))
}

pub async fn completions(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let llm = st
        .engines
        .get()
        .and_then(|e| e.llm.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "model_not_loaded",
                "no audio LLM loaded (start the server with --audio-llm audio_llm.json)",
            )
        })?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("application/json") {
        return Err(ApiError::unsupported_media(format!(
            "expected Content-Type application/json, got '{ctype}'"
        )));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::upload_too_large(st.cfg.max_upload_bytes)
        } else {
            bad(format!("cannot read the body: {}", e.body_text()))
        }
    })?;
    let req = parse(&body, &llm)?;
    let max_s = st.cfg.max_audio_s;
    let (cancel, cancel_on_drop) = Cancel::new(Instant::now() + st.cfg.timeout);
    let (id, created) = (completion_id(), unix_now());
    let prompt_tokens = llm.prompt_tokens(&req.user)?;
    if !req.stream {
        let (llm2, user, opts, up) = (llm.clone(), req.user.clone(), req.opts.clone(), req.audio);
        let c = cancel.clone();
        let ids = blocking(move || {
            let name = up.label();
            let audio = decode_upload(&name, &up.bytes, max_s)?;
            Ok(llm2.generate(
                &name,
                &audio.samples,
                audio.sample_rate,
                &user,
                &opts,
                &mut |_| !c.stopped(),
            )?)
        })
        .await?;
        drop(cancel_on_drop);
        if cancel.timed_out() {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "generation not finished within --timeout-s",
            ));
        }
        let text = llm.llm.decode(&ids)?;
        let finish = if ids.len() >= req.opts.max_new_tokens {
            "length"
        } else {
            "stop"
        };
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": ids.len(),
                "total_tokens": prompt_tokens + ids.len(),
            },
        }))
        .into_response());
    }
    // Streaming: the generation runs on the blocking pool and sends chunks as tokens come;
    // a client that leaves closes the channel, which stops the generation.
    let (tx, rx) = mpsc::channel::<Value>(64);
    let chunk = {
        let (id, model) = (id.clone(), req.model.clone());
        move |delta: Value, finish: Option<&str>| {
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
        }
    };
    let _ = tx
        .send(chunk(json!({"role": "assistant", "content": ""}), None))
        .await;
    let max_new = req.opts.max_new_tokens;
    let (up, user, opts) = (req.audio, req.user, req.opts);
    tokio::task::spawn_blocking(move || {
        let _cancel_on_drop = cancel_on_drop;
        let run = || -> Result<Vec<u32>, ApiError> {
            let name = up.label();
            let audio = decode_upload(&name, &up.bytes, max_s)?;
            let mut ids = Vec::new();
            let mut sent = String::new();
            let mut failed = None;
            let out = llm.generate(
                &name,
                &audio.samples,
                audio.sample_rate,
                &user,
                &opts,
                &mut |t| {
                    ids.push(t);
                    match delta(&llm, &ids, &mut sent) {
                        Ok(Some(d)) => {
                            if tx
                                .blocking_send(chunk(json!({"content": d}), None))
                                .is_err()
                            {
                                return false;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failed = Some(e);
                            return false;
                        }
                    }
                    !cancel.stopped()
                },
            )?;
            if let Some(e) = failed {
                return Err(e);
            }
            if cancel.timed_out() {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "generation not finished within --timeout-s",
                ));
            }
            Ok(out)
        };
        match run() {
            Ok(out) => {
                let finish = if out.len() >= max_new {
                    "length"
                } else {
                    "stop"
                };
                let _ = tx.blocking_send(chunk(json!({}), Some(finish)));
            }
            Err(e) => {
                let _ = tx.blocking_send(json!({"error": {"code": e.code, "message": e.message}}));
            }
        }
    });
    let stream = futures_util::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            Some(v) => Some((
                Ok::<_, Infallible>(Event::default().data(v.to_string())),
                (rx, false),
            )),
            None => Some((Ok(Event::default().data("[DONE]")), (rx, true))),
        }
    });
    Ok(Sse::new(stream).into_response())
}
