//! The server's stderr: one access-log line per request (method, path, status, duration; the
//! error code and message for a refusal), none with `--no-access-log`; an 8 MB junk upload
//! gives one line, not one per frame the MP3 decoder rejects; and `voxq_in_flight` does not
//! count the `/metrics` scrape that reads it.

use std::thread;
use std::time::Duration;

use crate::process::Server;
use crate::support::*;

/// 8 MB that look like MPEG-1 Layer III frames (a valid frame header every 417 bytes) filled
/// with noise: the decoder finds ~20,000 frames and rejects each.
fn junk_mp3ish() -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut out = Vec::with_capacity(8 << 20);
    while out.len() < 8 << 20 {
        out.extend_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
        for _ in 0..413 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push((x >> 24) as u8);
        }
    }
    out.truncate(8 << 20);
    out
}

/// The stderr lines the server wrote since `from`, after a short wait for them to arrive.
fn lines_since(srv: &Server, from: usize) -> Vec<String> {
    thread::sleep(Duration::from_millis(300));
    srv.log.lock().unwrap()[from..].to_vec()
}

#[test]
fn one_line_per_request_and_junk_does_not_flood_the_log() {
    let base = campplus_args();
    let srv = Server::start(&args_with(&base, &[]));
    let start = lines_since(&srv, 0).len();

    let junk = junk_mp3ish();
    let r = srv.post_form(
        "/v1/embeddings",
        Form::new().bytes("file", &junk, "junk.mp3", "audio/mpeg"),
    );
    assert!(
        (400..500).contains(&r.status),
        "junk upload: {} {}",
        r.status,
        r.body
    );
    let lines = lines_since(&srv, start);
    assert!(
        lines.len() <= 3,
        "{} stderr lines for one junk upload; first ones:\n{}",
        lines.len(),
        lines
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let status = r.status.to_string();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("POST /v1/embeddings") && l.contains(&status)),
        "an access-log line for the refused upload:\n{}",
        lines.join("\n")
    );

    // one line per request: method, path, status, duration
    let from = srv.log.lock().unwrap().len();
    srv.embed(&sp("allison/en/agent-pass.wav"));
    assert_eq!(srv.get("/v1/nowhere").status, 404);
    let lines = lines_since(&srv, from);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("voxq: POST /v1/embeddings 200 ") && lines[0].contains(" ms"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("voxq: GET /v1/nowhere 404 ") && lines[1].contains("not_found"),
        "{lines:?}"
    );
}

#[test]
fn no_access_log_writes_no_line_per_request() {
    let base = campplus_args();
    let srv = Server::start(&args_with(&base, &["--no-access-log"]));
    let from = lines_since(&srv, 0).len();
    srv.embed(&sp("allison/en/agent-pass.wav"));
    assert_eq!(srv.get("/v1/nowhere").status, 404);
    let junk = junk_mp3ish();
    let r = srv.post_form(
        "/v1/embeddings",
        Form::new().bytes("file", &junk, "junk.mp3", "audio/mpeg"),
    );
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
    let lines = lines_since(&srv, from);
    assert!(
        lines.iter().all(|l| !l.contains("/v1/")),
        "no access-log lines with --no-access-log:\n{}",
        lines.join("\n")
    );
    assert!(lines.len() <= 1, "{lines:?}");
}

#[test]
fn metrics_scrape_is_not_in_flight() {
    let base = campplus_args();
    let srv = Server::start(&args_with(&base, &[]));
    for _ in 0..2 {
        let m = srv.metrics();
        assert_eq!(
            samples(&m, "voxq_in_flight"),
            [(String::new(), 0.0)],
            "an idle server has nothing in flight:\n{m}"
        );
    }
}
