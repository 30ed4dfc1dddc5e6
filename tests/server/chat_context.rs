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
