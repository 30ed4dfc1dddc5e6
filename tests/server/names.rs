//! Speaker names have one form (NFC, trimmed): look-alike spellings are one speaker; names with
//! control or format characters (zero-width, bidi overrides), blank names and a request with
//! two `name` fields are refused, and nothing is stored for them.

use crate::process::Server;
use crate::support::*;

#[test]
fn speaker_names_are_normalised_and_checked() {
    let base = campplus_args();
    let srv = Server::start(&args_with(&base, &[]));
    let one = sp("allison/en/agent-pass.wav");
    let two = sp("allison/es/agent-pass.wav");
    let enroll = |name: &str, file: &std::path::Path| {
        srv.post_form("/v1/speakers", enroll_form(name, &[file]))
    };

    let r = enroll(" alice\t", &one);
    assert_eq!(r.status, 201, "{}\n{}", r.body, srv.tail());
    assert_eq!(r.json()["name"], "alice", "trimmed: {}", r.body);

    // NFD "Jose" + combining acute, then NFC "José": one speaker, stored as NFC
    let nfd = "Jose\u{301}";
    let nfc = "Jos\u{e9}";
    let r = enroll(nfd, &one);
    assert_eq!(r.status, 201, "{}", r.body);
    let rec = r.json();
    assert_eq!(rec["name"], nfc, "stored in NFC: {rec}");
    let r = enroll(nfc, &two);
    assert_eq!(
        r.status, 200,
        "the NFC spelling is the same speaker: {}",
        r.body
    );
    assert_eq!(r.json()["id"], rec["id"], "{}", r.body);
    assert_eq!(r.json()["utterances"], 2, "{}", r.body);
    for key in [nfd, nfc] {
        let r = srv.get(&format!("/v1/speakers/{key}"));
        assert_eq!(r.status, 200, "GET {key:?}: {}", r.body);
        assert_eq!(r.json()["id"], rec["id"]);
    }
    let r = srv.post_form("/v1/verify", verify_form(nfd, &two));
    assert_eq!(r.status, 200, "verify by the NFD spelling: {}", r.body);

    for (name, what) in [
        ("al\u{200B}ice", "zero-width space"),
        ("\u{202E}ecila", "right-to-left override"),
        ("bob\u{2066}", "left-to-right isolate"),
        ("a\u{FEFF}b", "byte order mark"),
        ("car\u{7}ol", "control character"),
        ("   ", "blank"),
    ] {
        let r = enroll(name, &one);
        assert_error(&r, 400, "bad_request", what);
    }

    // two `name` fields: refused, neither stored
    let form = Form::new()
        .text("name", "bob")
        .text("name", "carol")
        .file("file", &one);
    let r = srv.post_form("/v1/speakers", form);
    assert_error(&r, 400, "bad_request", "two name fields");
    assert!(r.body.contains("more than once"), "{}", r.body);
    for n in ["bob", "carol"] {
        assert_eq!(srv.get(&format!("/v1/speakers/{n}")).status, 404, "{n}");
    }
    let r = srv.get("/v1/speakers");
    let all = r.json();
    let names: Vec<&str> = all["speakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "only alice and José: {all}");
    assert!(names.contains(&"alice") && names.contains(&nfc), "{all}");
}
