//! `/v1/chat/completions` and the LLM's context: a prompt over the context (1 MB of text) and
//! a prompt + `max_tokens` over it get 400 `context_length_exceeded` naming the limit (not a
//! 500 with ONNX Runtime internals), and the memory a long prompt takes is returned after it.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::{root, s};
use crate::process::Server;
use crate::support::*;

/// The tiny audio LLM's `max_position_embeddings`.
const CONTEXT: u64 = 8192;

fn chat(b64: &str, text: &str, max_tokens: u64) -> Value {
    json!({
        "messages": [{
            "role": "user",
            "content": [
                {"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}},
                {"type": "text", "text": text},
            ]
        }],
        "max_tokens": max_tokens,
    })
}

fn start() -> (Server, String) {
    let cfg = root().join(AUDIO_LLM_DIR).join("audio_llm.json");
    let srv = Server::start(&["--audio-llm", s(&cfg), "--device", "cpu"]);
    let wav = sp("allison/en/all-circuits-busy-now.wav");
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&wav).unwrap());
    (srv, b64)
}

fn post(srv: &Server, body: &Value) -> Resp {
    send(client().post(srv.url("/v1/chat/completions")).json(body))
}

fn prompt_tokens(srv: &Server, b64: &str, text: &str) -> u64 {
    let r = post(srv, &chat(b64, text, 1));
    assert_eq!(r.status, 200, "{}\n{}", r.body, srv.tail());
    r.json()["usage"]["prompt_tokens"].as_u64().unwrap()
}

#[test]
fn chat_prompt_and_max_tokens_are_capped_at_the_context() {
    let (srv, b64) = start();
    // 1 MB of text
    let r = post(&srv, &chat(&b64, &"hello ".repeat(175_000), 8));
    assert_error(&r, 400, "context_length_exceeded", "1 MB prompt");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains(&CONTEXT.to_string()), "names the limit: {msg}");
    assert!(!msg.contains(".cc"), "no library internals: {msg}");

    // a prompt that fits, with max_tokens that do not
    let p100 = prompt_tokens(&srv, &b64, &"hello ".repeat(100));
    let p200 = prompt_tokens(&srv, &b64, &"hello ".repeat(200));
    let per_word = (p200 - p100) as f64 / 100.0;
    assert!(per_word > 0.0, "{p100} {p200}");
    let words = 100 + ((CONTEXT - 60 - p100) as f64 / per_word) as usize;
    let r = post(&srv, &chat(&b64, &"hello ".repeat(words), 100));
    assert_error(&r, 400, "context_length_exceeded", "prompt + max_tokens");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains(&CONTEXT.to_string()) && msg.contains("max_tokens"),
        "{msg}"
    );
    // still serving
    prompt_tokens(&srv, &b64, "hello");
}

/// Resident and peak resident memory of a process, in MB (from /proc/PID/status).
fn rss_and_peak_mb(pid: i32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status"));
        let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn memory_returns_after_a_long_prompt() {
    let (srv, b64) = start();
    prompt_tokens(&srv, &b64, "hello");
    let (before, _) = rss_and_peak_mb(srv.pid());
    let p = prompt_tokens(&srv, &b64, &"hello ".repeat(3000));
    assert!(p > 3000, "prompt of {p} tokens");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (after, peak) = rss_and_peak_mb(srv.pid());
    eprintln!("server RSS {before:.0} MB before, {after:.0} MB after a {p}-token prompt (peak {peak:.0} MB)");
    assert!(
        peak > before + 300.0,
        "the long prompt should have taken memory (logits of every position): peak {peak:.0} MB, before {before:.0} MB"
    );
    assert!(
        after < before + 100.0,
        "memory not returned: RSS {before:.0} MB before, {after:.0} MB after (peak {peak:.0} MB)"
    );
}

/// With `trim_to_audio` (fixtures/audio-llm-tiny-trim) the prompt holds as many audio tokens as
/// the clip needs: `usage.prompt_tokens` is expected.json's prompt length for a 1.8 s and a
/// 6.9 s clip (6 and 21 audio tokens), and the content is `voxq generate`'s; the untrimmed
/// fixture gives both clips the same 88.
#[test]
fn trimmed_audio_tokens_follow_the_clip_length() {
    let dir = root().join("fixtures/audio-llm-tiny-trim");
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let b64 = |wav: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(root().join(wav)).unwrap())
    };
    let asr: Vec<&Value> = exp["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["task"] == "asr")
        .collect();
    assert_eq!(asr.len(), 2);
    let body = |wav: &str| {
        json!({
            "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": b64(wav), "format": "wav"}},
            ]}],
            "max_tokens": 12,
        })
    };
    let cfg = dir.join("audio_llm.json");
    let srv = Server::start(&["--audio-llm", s(&cfg), "--device", "cpu"]);
    let mut got = Vec::new();
    for c in &asr {
        let wav = c["wav"].as_str().unwrap();
        let r = post(&srv, &body(wav));
        assert_eq!(r.status, 200, "{}\n{}", r.body, srv.tail());
        let v = r.json();
        assert_eq!(
            v["usage"]["prompt_tokens"], c["n_prompt_embeddings"],
            "{wav}: {v}"
        );
        let o = crate::common::voxq(&[
            "generate",
            "--model",
            s(&dir),
            "--device",
            "cpu",
            "--max-new-tokens",
            "12",
            s(&root().join(wav)),
        ]);
        assert!(o.status.success(), "{}", crate::common::stderr(&o));
        let text = crate::common::stdout(&o);
        assert_eq!(
            v["choices"][0]["message"]["content"],
            text.trim_end_matches('\n')
        );
        got.push(v["usage"]["prompt_tokens"].as_u64().unwrap());
    }
    let n_audio = |i: usize| asr[i]["n_audio_tokens"].as_u64().unwrap();
    assert_eq!(got[1] - got[0], n_audio(1) - n_audio(0), "{got:?}");
    assert!(got[0] < got[1], "{got:?}");
    drop(srv);
    let (fixed, _) = start();
    let p: Vec<u64> = asr
        .iter()
        .map(|c| {
            let r = post(&fixed, &body(c["wav"].as_str().unwrap()));
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["usage"]["prompt_tokens"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(
        p[0], p[1],
        "untrimmed: the same 88 audio tokens for both clips"
    );
    assert_eq!(p[0], got[0] - n_audio(0) + 88);
}
