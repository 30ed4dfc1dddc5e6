//! The decision threshold of `/v1/verify` is the server's: a client `threshold` is refused by
//! default (`threshold=-1` used to accept anyone as anyone), and with
//! `--allow-client-threshold` taken only within 0.2 of the server's threshold.

use crate::process::Server;
use crate::support::*;

const MODEL_THRESHOLD: f64 = 0.4167;

fn enroll_allison(srv: &Server) {
    let r = srv.post_form(
        "/v1/speakers",
        enroll_form("allison", &[&sp("allison/en/agent-pass.wav")]),
    );
    assert_eq!(r.status, 201, "{}\n{}", r.body, srv.tail());
}

#[test]
fn client_threshold_is_refused_unless_allowed_and_near_the_servers() {
    let base = campplus_args();
    // June's voice claimed as Allison's
    let june = sp("june/fr/agent-pass.wav");
    {
        let srv = Server::start(&args_with(&base, &[]));
        enroll_allison(&srv);
        let r = srv.post_form(
            "/v1/verify",
            verify_form("allison", &june).text("threshold", "-1"),
        );
        assert_error(&r, 400, "bad_request", "threshold=-1 without the flag");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("--allow-client-threshold"), "{msg}");
        // without a client threshold: the model's, and June is rejected
        let r = srv.post_form("/v1/verify", verify_form("allison", &june));
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert!(
            (v["threshold"].as_f64().unwrap() - MODEL_THRESHOLD).abs() < 1e-9,
            "{v}"
        );
        assert_eq!(v["accepted"], false, "{v}");
    }
    let srv = Server::start(&args_with(&base, &["--allow-client-threshold"]));
    enroll_allison(&srv);
    for t in ["-1", "0.2", "0.62", "1", "2", "NaN", "-inf", "inf"] {
        let r = srv.post_form(
            "/v1/verify",
            verify_form("allison", &june).text("threshold", t),
        );
        assert_error(&r, 400, "bad_request", &format!("threshold={t}"));
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        if t != "NaN" && !t.ends_with("inf") {
            assert!(msg.contains("[0.2167, 0.6167]"), "threshold={t}: {msg}");
        }
    }
    for t in [0.25, 0.6] {
        let r = srv.post_form(
            "/v1/verify",
            verify_form("allison", &june).text("threshold", t.to_string()),
        );
        assert_eq!(r.status, 200, "threshold={t}: {}", r.body);
        let v = r.json();
        assert!((v["threshold"].as_f64().unwrap() - t).abs() < 1e-9, "{v}");
    }
}
