//! `POST /v1/chat/completions`: OpenAI-style chat with one `input_audio` part, answered by the
//! audio LLM (Whisper encoder → projector → LLM with KV cache), whole or streamed as
//! server-sent events. The prompt (with the audio tokens of the decoded clip) and `max_tokens`
//! must fit the LLM's context.

use std::convert::Infallible;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api::ApiError;
use super::limits::Cancel;
use super::{blocking, Shared};
use crate::audio::decode::decode_upload;
use crate::audio::logmel::{to_16k, SAMPLE_RATE};
use crate::audio_llm::AudioLlm;

mod request;

use request::parse;

/// 504: the generation did not finish within `--timeout-s`.
fn timed_out() -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        "generation not finished within --timeout-s",
    )
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
    if text.ends_with('\u{fffd}') {
        return Ok(None);
    }
    let Some(d) = text.strip_prefix(sent.as_str()).map(str::to_string) else {
        return Ok(None);
    };
    *sent = text;
    Ok((!d.is_empty()).then_some(d))
}

/// Context length assumed for an LLM whose `llm.json` does not give `max_position_embeddings`.
const DEFAULT_CONTEXT: usize = 2048;

/// Checks that the prompt and the tokens to generate fit the LLM's context (400
/// `context_length_exceeded` naming the limit); a default `max_tokens` is cut to fit.
fn fit_context(
    llm: &AudioLlm,
    prompt_tokens: usize,
    req: &mut request::ChatRequest,
) -> Result<(), ApiError> {
    let ctx = llm
        .llm
        .config
        .max_position_embeddings
        .unwrap_or(DEFAULT_CONTEXT);
    let over = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "context_length_exceeded", m);
    if prompt_tokens >= ctx {
        return Err(over(format!(
            "the prompt is {prompt_tokens} tokens (audio included); the model's context is {ctx} tokens, \
             which must hold the prompt and at least one generated token"
        )));
    }
    let room = ctx - prompt_tokens;
    let max = &mut req.opts.max_new_tokens;
    if *max > room {
        if req.max_tokens_given {
            return Err(over(format!(
                "the prompt ({prompt_tokens} tokens) + max_tokens ({max}) is over the model's context of {ctx} tokens; \
                 ask for at most {room}"
            )));
        }
        *max = room;
    }
    Ok(())
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
            ApiError::model_not_loaded(
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
            ApiError::bad_request(format!("cannot read the body: {}", e.body_text()))
        }
    })?;
    let mut req = parse(&body, &llm)?;
    let max_s = st.cfg.max_audio_s;
    let (cancel, cancel_on_drop) = Cancel::new(Instant::now() + st.cfg.timeout);
    let (id, created) = (completion_id(), unix_now());
    // The audio is decoded (and brought to 16 kHz) first: with `trim_to_audio` its length
    // sets the number of audio tokens in the prompt.
    let (llm2, user, up) = (llm.clone(), req.user.clone(), req.audio.clone());
    let (name, samples, prompt_tokens) = blocking(move || {
        let name = up.label();
        let audio = decode_upload(&name, &up.bytes, max_s)?;
        let samples = to_16k(&name, &audio.samples, audio.sample_rate)?;
        let n = llm2.prompt_tokens(&user, Some(samples.len()))?;
        Ok((name, samples, n))
    })
    .await?;
    fit_context(&llm, prompt_tokens, &mut req)?;
    if !req.stream {
        let (llm2, user, opts) = (llm.clone(), req.user.clone(), req.opts.clone());
        let c = cancel.clone();
        let ids = blocking(move || {
            Ok(
                llm2.generate(&name, &samples, SAMPLE_RATE, &user, &opts, &mut |_| {
                    !c.stopped()
                })?,
            )
        })
        .await?;
        drop(cancel_on_drop);
        if cancel.timed_out() {
            return Err(timed_out());
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
    let (user, opts) = (req.user, req.opts);
    tokio::task::spawn_blocking(move || {
        let _cancel_on_drop = cancel_on_drop;
        let run = || -> Result<Vec<u32>, ApiError> {
            let mut ids = Vec::new();
            let mut sent = String::new();
            let mut failed = None;
            let out = llm.generate(&name, &samples, SAMPLE_RATE, &user, &opts, &mut |t| {
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
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            if cancel.timed_out() {
                return Err(timed_out());
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
                if e.status == StatusCode::INTERNAL_SERVER_ERROR {
                    eprintln!(
                        "voxq: POST /v1/chat/completions stream failed: {}: {}",
                        e.code,
                        exporter::onnx::one_line(&e.message)
                    );
                }
                let _ = tx.blocking_send(
                    json!({"error": {"code": e.code, "message": e.public_message()}}),
                );
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
