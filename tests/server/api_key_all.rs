//! `--api-key-all`: with the key set, every `/v1` endpoint needs it (listing speakers, verify,
//! identify, embeddings, transcription and chat included); `/health` and `/metrics` stay open.
//! Without `--api-key` the flag is refused at start.

use serde_json::json;

use crate::process::Server;
use crate::support::*;

#[test]
fn api_key_all_guards_every_v1_endpoint() {
    let base = campplus_args();
    let log = match Server::spawn(&args_with(&base, &["--api-key-all"]), &[]) {
        Err(log) => log,
        Ok(_) => panic!("--api-key-all without --api-key was accepted"),
    };
    assert!(
        log.contains("--api-key-all needs --api-key"),
        "refusal names the missing key:\n{log}"
    );

    let srv = Server::start(&args_with(&base, &["--api-key", "k3y", "--api-key-all"]));
    let wav = sp("allison/en/agent-pass.wav");
    let c = client();
    let requests = || {
        vec![
            ("GET /v1/speakers", c.get(srv.url("/v1/speakers"))),
            ("GET /v1/speakers/x", c.get(srv.url("/v1/speakers/x"))),
            (
                "POST /v1/embeddings",
                c.post(srv.url("/v1/embeddings")).form_data(file_form(&wav)),
            ),
            (
                "POST /v1/verify",
                c.post(srv.url("/v1/verify"))
                    .form_data(verify_form("x", &wav)),
            ),
            (
                "POST /v1/identify",
                c.post(srv.url("/v1/identify")).form_data(file_form(&wav)),
            ),
            (
                "POST /v1/audio/transcriptions",
                c.post(srv.url("/v1/audio/transcriptions"))
                    .form_data(file_form(&wav)),
            ),
            (
                "POST /v1/chat/completions",
                c.post(srv.url("/v1/chat/completions"))
                    .json(&json!({"messages": []})),
            ),
            (
                "POST /v1/speakers",
                c.post(srv.url("/v1/speakers"))
                    .form_data(enroll_form("x", &[&wav])),
            ),
            ("DELETE /v1/speakers/x", c.delete(srv.url("/v1/speakers/x"))),
        ]
    };
    for (what, rb) in requests() {
        assert_error(&send(rb), 401, "unauthorized", what);
    }
    for (what, rb) in requests() {
        let r = send(rb.bearer_auth("k3y"));
        assert_ne!(r.status, 401, "{what} with the key: {}", r.body);
    }
    let r = send(c.get(srv.url("/v1/speakers")).bearer_auth("k3y"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(srv.get("/health").status, 200);
    assert_eq!(srv.get("/metrics").status, 200);
}
