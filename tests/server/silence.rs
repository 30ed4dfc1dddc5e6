//! The speech check on the server: enrolling, verifying or identifying digital silence, faint
//! noise, a 0.2 s blip or a too-short clip is a 400 `no_speech` naming the upload (before it,
//! silence enrolled and every near-silent clip verified as that speaker at 0.999); real speech
//! still enrolls and verifies, and `/v1/embeddings` still embeds anything decodable.

use std::path::{Path, PathBuf};

use crate::common::{root, s, write_wav16};
use crate::process::Server;
use crate::support::*;

/// Deterministic white noise of RMS `dbfs`, as 16-bit samples.
fn noise16(n: usize, dbfs: f64) -> Vec<i16> {
    let rms = 10f64.powf(dbfs / 20.0) * 32767.0;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0;
            (u * rms * 3f64.sqrt()).round() as i16
        })
        .collect()
}

fn clips(dir: &Path) -> Vec<PathBuf> {
    let speech = read_i16(&root().join("fixtures/audio/speech_16k.wav"));
    let silence = dir.join("silence.wav");
    write_wav16(&silence, vec![0i16; 32000]);
    let hum = dir.join("hum70.wav");
    write_wav16(&hum, noise16(32000, -70.0));
    let blip = dir.join("blip.wav");
    let mut b = vec![0i16; 32000];
    b[12000..15200].copy_from_slice(&speech[8000..11200]);
    write_wav16(&blip, b);
    let short = dir.join("short.wav");
    write_wav16(&short, speech[8000..11200].to_vec());
    vec![silence, hum, blip, short]
}

#[test]
fn speaker_endpoints_refuse_audio_without_speech() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("speakers.db");
    let base = campplus_args();
    let srv = Server::start(&args_with(&base, &["--store", s(&store)]));
    let clips = clips(tmp.path());
    let speech = root().join("fixtures/audio/speech_16k.wav");

    for c in &clips {
        let name = c.file_name().unwrap().to_str().unwrap();
        let r = srv.post_form("/v1/speakers", enroll_form("quiet", &[c]));
        assert_error(&r, 400, "no_speech", &format!("enroll {name}"));
        assert!(r.body.contains(name), "names the upload: {}", r.body);
        // one bad file among good ones refuses the whole enrollment
        let r = srv.post_form("/v1/speakers", enroll_form("quiet", &[&speech, c]));
        assert_error(&r, 400, "no_speech", &format!("enroll speech + {name}"));
    }
    assert_error(
        &srv.get("/v1/speakers/quiet"),
        404,
        "not_found",
        "nothing enrolled",
    );

    let r = srv.post_form("/v1/speakers", enroll_form("allison", &[&speech]));
    assert_eq!(r.status, 201, "{}", r.body);
    for c in &clips {
        let name = c.file_name().unwrap().to_str().unwrap();
        assert_error(
            &srv.post_form("/v1/verify", verify_form("allison", c)),
            400,
            "no_speech",
            &format!("verify {name}"),
        );
        assert_error(
            &srv.post_form("/v1/identify", file_form(c)),
            400,
            "no_speech",
            &format!("identify {name}"),
        );
        // an embedding is not a decision: still computed
        assert_eq!(
            srv.post_form("/v1/embeddings", file_form(c)).status,
            200,
            "embed {name}"
        );
    }
    let r = srv.post_form("/v1/verify", verify_form("allison", &speech));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["decision"], "accept", "{}", r.body);
}

#[test]
fn min_speech_s_zero_turns_the_server_check_off() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("speakers.db");
    let base = campplus_args();
    let srv = Server::start(&args_with(
        &base,
        &["--store", s(&store), "--min-speech-s", "0"],
    ));
    let clips = clips(tmp.path());
    let r = srv.post_form("/v1/speakers", enroll_form("quiet", &[&clips[0]]));
    assert_eq!(r.status, 201, "{}", r.body);
}
