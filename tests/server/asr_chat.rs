//! Transcriptions (same text as the CLI) and chat completions with audio.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::{root, s, stderr, stdout, voxq};
use crate::process::Server;
use crate::support::*;

#[test]
fn transcriptions_match_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = Server::start(&["--whisper", WHISPER, "--device", "cpu"]);
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(WHISPER).join("expected.json")).unwrap(),
    )
    .unwrap();
    let wav_rel = exp["clips"][0]["wav"].as_str().unwrap();
    let wav = root().join(wav_rel);
    let secs = exp["clips"][0]["seconds"].as_f64().unwrap();

    let o = voxq(&["transcribe", "--model", WHISPER, "--device", "cpu", s(&wav)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let cli_text = out
        .trim_end_matches('\n')
        .split_once('\t')
        .expect("path<TAB>text")
        .1
        .to_string();
    assert!(!cli_text.is_empty());

    let form = |fmt: Option<&str>| {
        let f = file_form(&wav).text("model", "whisper-1");
        match fmt {
            Some(x) => f.text("response_format", x),
            None => f,
        }
    };
    // default and explicit json
    for fmt in [None, Some("json")] {
        let r = srv.post_form("/v1/audio/transcriptions", form(fmt));
        assert_eq!(r.status, 200, "{fmt:?}: {}\n{}", r.body, srv.tail());
        assert!(r
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"));
        assert_eq!(r.json(), json!({"text": cli_text}), "{fmt:?}");
    }
    // text
    let r = srv.post_form("/v1/audio/transcriptions", form(Some("text")));
    assert_eq!(r.status, 200, "{}", r.body);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "content-type {ct:?}");
    assert_eq!(r.body.trim_end_matches('\n'), cli_text, "text body");
    // verbose_json
    let r = srv.post_form("/v1/audio/transcriptions", form(Some("verbose_json")));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["task"], "transcribe", "{v}");
    assert!(v.get("language").is_some(), "language: {v}");
    assert_eq!(v["text"], cli_text.as_str(), "{v}");
    let d = v["duration"].as_f64().expect("duration");
    assert!((d - secs).abs() < 0.01, "duration {d} vs {secs}");
    let segs = v["segments"].as_array().expect("segments");
    assert_eq!(segs.len(), 1, "one 30 s window: {v}");
    assert_eq!(segs[0]["id"], 0, "{v}");
    assert_eq!(segs[0]["start"].as_f64(), Some(0.0), "{v}");
    let end = segs[0]["end"].as_f64().unwrap();
    assert!((end - secs).abs() < 0.01, "segment end {end}: {v}");
    assert_eq!(
        segs[0]["text"].as_str().unwrap().trim(),
        cli_text.trim(),
        "{v}"
    );
    // 35 s: two windows, two segments
    let long = long_speech(tmp.path(), 35.0);
    let r = srv.post_form(
        "/v1/audio/transcriptions",
        file_form(&long)
            .text("model", "whisper-1")
            .text("response_format", "verbose_json"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let segs = v["segments"].as_array().expect("segments");
    assert_eq!(segs.len(), 2, "{v}");
    assert_eq!(segs[1]["id"], 1, "{v}");
    assert_eq!(segs[1]["start"].as_f64(), Some(30.0), "{v}");
    assert!(
        (segs[1]["end"].as_f64().unwrap() - 35.0).abs() < 0.01,
        "{v}"
    );
    assert!((v["duration"].as_f64().unwrap() - 35.0).abs() < 0.01, "{v}");
    // errors
    assert_error(
        &send(
            client()
                .post(srv.url("/v1/audio/transcriptions"))
                .json(&json!({"model": "whisper-1", "file": "x"})),
        ),
        415,
        "unsupported_media_type",
        "JSON to transcriptions",
    );
    assert_error(
        &srv.post_form(
            "/v1/audio/transcriptions",
            Form::new().text("model", "whisper-1"),
        ),
        400,
        "bad_request",
        "transcription without file",
    );
    assert_error(
        &srv.post_form("/v1/audio/transcriptions", form(Some("srt-ish"))),
        400,
        "bad_request",
        "unknown response_format",
    );
    assert_error(
        &srv.post_form("/v1/embeddings", file_form(&wav)),
        404,
        "model_not_loaded",
        "embeddings without --speaker-model",
    );
}

fn chat_request(b64: &str, stream: bool) -> Value {
    json!({
        "model": "audio-llm",
        "messages": [{
            "role": "user",
            "content": [{"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}]
        }],
        "max_tokens": 8,
        "stream": stream
    })
}

#[test]
fn chat_completions_with_audio() {
    let cfg = root().join(AUDIO_LLM_DIR).join("audio_llm.json");
    let srv = Server::start(&["--audio-llm", s(&cfg), "--device", "cpu"]);
    let wav = sp("allison/en/all-circuits-busy-now.wav");
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&wav).unwrap());
    let post = |body: &Value| send(client().post(srv.url("/v1/chat/completions")).json(body));

    // non-streaming, greedy
    let r = post(&chat_request(&b64, false));
    assert_eq!(r.status, 200, "{}\n{}", r.body, srv.tail());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert!(v["id"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(v["created"].as_i64().is_some(), "{v}");
    assert!(v["model"].is_string(), "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 1, "{v}");
    let ch = &v["choices"][0];
    assert_eq!(ch["index"], 0, "{v}");
    assert_eq!(ch["message"]["role"], "assistant", "{v}");
    let content = ch["message"]["content"]
        .as_str()
        .expect("content string")
        .to_string();
    let finish = ch["finish_reason"].as_str().expect("finish_reason");
    assert!(finish == "stop" || finish == "length", "{v}");
    let u = &v["usage"];
    let (p, c, t) = (
        u["prompt_tokens"].as_u64().expect("prompt_tokens"),
        u["completion_tokens"].as_u64().expect("completion_tokens"),
        u["total_tokens"].as_u64().expect("total_tokens"),
    );
    assert!(p > 88, "the prompt holds 88 audio positions and text: {v}");
    assert!(c <= 8 && t == p + c, "{v}");
    if finish == "length" {
        assert_eq!(c, 8, "{v}");
    }
    // the same as `voxq generate` (asr task, greedy, 8 tokens)
    let o = voxq(&[
        "generate",
        "--model",
        AUDIO_LLM_DIR,
        "--device",
        "cpu",
        "--max-new-tokens",
        "8",
        s(&wav),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let generated = stdout(&o);
    assert_eq!(
        content,
        generated.strip_suffix('\n').unwrap_or(&generated),
        "chat content vs `voxq generate`"
    );
    // greedy is deterministic
    let again = post(&chat_request(&b64, false)).json();
    assert_eq!(again["choices"][0]["message"]["content"], content.as_str());

    // streaming: one chunk per token, then [DONE]; the deltas add up to the content
    let r = post(&chat_request(&b64, true));
    assert_eq!(r.status, 200, "{}", r.body);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/event-stream"), "content-type {ct:?}");
    let data: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{}", r.body);
    assert_eq!(
        data.iter().filter(|d| **d == "[DONE]").count(),
        1,
        "{}",
        r.body
    );
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("chunk {d:?}: {e}")))
        .collect();
    assert!(chunks.len() >= 2, "several chunks: {}", r.body);
    let mut text = String::new();
    let mut finishes = Vec::new();
    for ch in &chunks {
        assert_eq!(ch["object"], "chat.completion.chunk", "{ch}");
        assert_eq!(ch["id"], chunks[0]["id"], "one id per stream");
        if let Some(t) = ch["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if let Some(f) = ch["choices"][0]["finish_reason"].as_str() {
            finishes.push(f.to_string());
        }
    }
    assert_eq!(text, content, "streamed deltas vs non-streaming content");
    assert_eq!(
        finishes,
        [finish],
        "one finish_reason, the same: {}",
        r.body
    );

    // a text part is the instruction
    let mut req = chat_request(&b64, false);
    req["messages"][0]["content"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "text", "text": "Describe the audio."}));
    let r = post(&req);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["object"], "chat.completion");
    // sampling with a seed is reproducible
    let mut req = chat_request(&b64, false);
    req["temperature"] = json!(0.8);
    req["top_p"] = json!(0.9);
    req["seed"] = json!(7);
    let a = post(&req);
    let b = post(&req);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json()["choices"][0]["message"]["content"],
        b.json()["choices"][0]["message"]["content"],
        "same seed, same sample"
    );

    // errors
    let no_audio = json!({
        "model": "audio-llm",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Transcribe."}]}],
        "max_tokens": 8
    });
    assert_error(&post(&no_audio), 400, "bad_request", "no audio part");
    let bad = chat_request("@@@ not base64 @@@", false);
    let r = post(&bad);
    assert_eq!(r.status, 400, "bad base64: {}", r.body);
    let code = r.json()["error"]["code"].as_str().unwrap_or("").to_string();
    assert!(
        code == "bad_request" || code == "bad_audio",
        "bad base64: {}",
        r.body
    );
    let mut two = chat_request(&b64, false);
    two["messages"][0]["content"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}));
    assert_error(&post(&two), 400, "bad_request", "two audio parts");
    assert_error(
        &send(
            client()
                .post(srv.url("/v1/chat/completions"))
                .header("content-type", "application/json")
                .body("{\"messages\": ["),
        ),
        400,
        "bad_request",
        "malformed JSON",
    );
    assert_error(
        &srv.post_form("/v1/chat/completions", file_form(&wav)),
        415,
        "unsupported_media_type",
        "multipart to chat",
    );
    assert_error(
        &srv.post_form("/v1/verify", verify_form("x", &wav)),
        404,
        "model_not_loaded",
        "verify without --speaker-model",
    );
}

/// The server on a Whisper folder built for OpenVINO (`voxq build DIR --target openvino`): it
/// says so when ready and transcribes as the CLI does on the ONNX folder.
#[test]
fn transcriptions_on_openvino_match_the_onnx_runtime_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let ov = tmp.path().join("whisper-ov");
    let o = voxq(&["build", WHISPER, "--target", "openvino", "--out", s(&ov)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(WHISPER).join("expected.json")).unwrap(),
    )
    .unwrap();
    let wav = root().join(exp["clips"][0]["wav"].as_str().unwrap());
    let o = voxq(&["transcribe", "--model", WHISPER, "--device", "cpu", s(&wav)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cli_text = stdout(&o)
        .trim_end_matches('\n')
        .split_once('\t')
        .expect("path<TAB>text")
        .1
        .to_string();
    let srv = Server::start(&["--whisper", s(&ov)]);
    assert!(
        srv.log()
            .lines()
            .any(|l| l.starts_with("voxq: ready") && l.contains("on openvino")),
        "{}",
        srv.log()
    );
    let r = srv.post_form(
        "/v1/audio/transcriptions",
        file_form(&wav).text("model", "whisper-1"),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.body, srv.tail());
    assert_eq!(r.json(), json!({"text": cli_text}));
}
