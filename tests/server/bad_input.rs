//! Bad requests refused with JSON errors, and compressed uploads (FLAC, MP3, OGG).

use std::process::Command;

use serde_json::json;

use crate::common::{cosine, root, stderr, write_wav16};
use crate::process::Server;
use crate::support::*;

#[test]
fn bad_input_is_refused_with_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let base = campplus_args();
    let srv = Server::start(&args_with(
        &base,
        &["--max-upload-mb", "1", "--max-audio-s", "2"],
    ));
    let ok = sp("allison/en/all-circuits-busy-now.wav"); // 1.8 s: under --max-audio-s 2
    srv.embed(&ok);

    // an empty WAV (header, no samples)
    let empty = tmp.path().join("empty.wav");
    write_wav16(&empty, []);
    assert_error(
        &srv.post_form("/v1/embeddings", file_form(&empty)),
        400,
        "empty_audio",
        "empty WAV",
    );
    // a zero-byte upload
    assert_error(
        &srv.post_form(
            "/v1/embeddings",
            Form::new().bytes("file", &[], "zero.wav", "audio/wav"),
        ),
        400,
        "empty_audio",
        "zero-byte file",
    );
    // random bytes
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    assert_error(
        &srv.post_form(
            "/v1/embeddings",
            Form::new().bytes("file", &noise, "noise.wav", "audio/wav"),
        ),
        400,
        "bad_audio",
        "random bytes",
    );
    // far too short for one feature frame
    let tiny = tmp.path().join("tiny.wav");
    write_wav16(&tiny, [100i16, -100, 200, -200, 50, 0, 10, -10, 5, 1]);
    assert_error(
        &srv.post_form("/v1/embeddings", file_form(&tiny)),
        400,
        "audio_too_short",
        "10 samples",
    );
    // no `file` field
    assert_error(
        &srv.post_form("/v1/embeddings", Form::new().text("other", "x")),
        400,
        "bad_request",
        "missing file",
    );
    // malformed multipart
    assert_error(
        &send(
            client()
                .post(srv.url("/v1/embeddings"))
                .header("content-type", "multipart/form-data; boundary=XyZ")
                .body("this is not multipart at all"),
        ),
        400,
        "bad_request",
        "malformed multipart",
    );
    // JSON instead of multipart
    assert_error(
        &send(
            client()
                .post(srv.url("/v1/embeddings"))
                .json(&json!({"file": "x"})),
        ),
        415,
        "unsupported_media_type",
        "JSON body",
    );
    // over --max-upload-mb 1: a valid 2 MB WAV (64 s)
    let big = tmp.path().join("big.wav");
    write_wav16(&big, read_i16(&ok).into_iter().cycle().take(64 * 16000));
    assert!(std::fs::metadata(&big).unwrap().len() > 2_000_000);
    assert_error(
        &srv.post_form("/v1/embeddings", file_form(&big)),
        413,
        "upload_too_large",
        "2 MB upload",
    );
    // over --max-audio-s 2 (3.3 s, 105 kB)
    let r = srv.post_form(
        "/v1/embeddings",
        file_form(&sp("allison/en/agent-pass.wav")),
    );
    assert_error(&r, 413, "audio_too_long", "3.3 s clip");
    // the same limits apply to enrollment, nothing is stored
    let r = srv.post_form(
        "/v1/speakers",
        enroll_form("x", &[&ok, &sp("allison/en/agent-pass.wav")]),
    );
    assert_error(&r, 413, "audio_too_long", "enroll with a long clip");
    assert_error(
        &srv.get("/v1/speakers/x"),
        404,
        "not_found",
        "failed enrollment stored nothing",
    );
    // speaker endpoints: missing fields and bad parameters
    assert_error(
        &srv.post_form("/v1/speakers", file_form(&ok)),
        400,
        "bad_request",
        "enroll without name",
    );
    assert_error(
        &srv.post_form("/v1/speakers", Form::new().text("name", "x")),
        400,
        "bad_request",
        "enroll without file",
    );
    assert_error(
        &srv.post_form("/v1/verify", file_form(&ok)),
        400,
        "bad_request",
        "verify without speaker",
    );
    assert_error(
        &srv.post_form("/v1/verify", verify_form("nobody", &ok)),
        404,
        "not_found",
        "verify unknown speaker",
    );
    let r = srv.post_form("/v1/speakers", enroll_form("x", &[&ok]));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_error(
        &srv.post_form(
            "/v1/verify",
            verify_form("x", &ok).text("threshold", "high"),
        ),
        400,
        "bad_request",
        "threshold=high",
    );
    assert_error(
        &srv.post_form("/v1/identify", file_form(&ok).text("top", "-3")),
        400,
        "bad_request",
        "top=-3",
    );
    // unknown routes, and endpoints whose model was not given
    assert_error(&srv.get("/v2/whatever"), 404, "not_found", "unknown route");
    assert_error(
        &srv.post_form("/v1/nothing", file_form(&ok)),
        404,
        "not_found",
        "unknown POST route",
    );
    assert_error(
        &srv.post_form(
            "/v1/audio/transcriptions",
            file_form(&ok).text("model", "whisper-1"),
        ),
        404,
        "model_not_loaded",
        "transcriptions without --whisper",
    );
    assert_error(
        &send(
            client()
                .post(srv.url("/v1/chat/completions"))
                .json(&json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]})),
        ),
        404,
        "model_not_loaded",
        "chat without --audio-llm",
    );
    // still serving
    srv.embed(&ok);
}

#[test]
fn compressed_uploads_flac_mp3_ogg() {
    let dir = root().join("fixtures/audio");
    let flac = dir.join("speech_16k.flac");
    assert!(
        flac.is_file(),
        "{} missing (the committed FLAC/MP3/OGG fixture set)",
        flac.display()
    );
    let base = campplus_args();
    let srv = Server::start(&args_with(&base, &[]));
    // speech_16k.flac holds the same samples as allison/en/all-circuits-busy-now.wav
    let wav_emb = srv.embed(&sp("allison/en/all-circuits-busy-now.wav"));
    let r = srv.post_form("/v1/embeddings", file_form(&flac));
    assert_eq!(r.status, 200, "{}\n{}", r.body, srv.tail());
    let v = r.json();
    assert_eq!(v["dim"], 192);
    let d = v["duration_s"].as_f64().unwrap();
    assert!((d - 1.8014).abs() < 0.01, "FLAC duration_s {d}");
    let c = cosine(&embedding_of(&v), &wav_emb);
    assert!(c > 0.9999, "lossless FLAC vs WAV cosine {c}");
    // The other files of the set (fixtures/audio/README.md): stereo is averaged, 44.1 kHz
    // resampled, MP3 encoder delay/padding removed (LAME tag), so each decodes to its documented
    // length. Where sox is installed it is the reference decoder: its 16 kHz mono conversion
    // must embed like the server's own decoding (sox keeps the MP3 delay: a 0.07 s shift, hence
    // the lower bound there).
    let known: [(&str, f64, f64); 7] = [
        ("speech_16k.wav", 1.8014, 0.9999),
        ("speech_stereo_16k.flac", 1.8014, 0.999),
        ("speech_16k.mp3", 1.8014, 0.95),
        ("speech_16k.ogg", 1.8014, 0.995),
        ("speech_stereo_44k.mp3", 1.8014, 0.95),
        ("speech_stereo_44k.ogg", 1.8014, 0.99),
        ("speech_stereo_44k.wav", 0.3, 0.99),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let sox = Command::new("sox")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !sox {
        eprintln!("sox not installed: compressed uploads not compared with sox's decoding");
    }
    for (name, secs, min_cos) in known {
        let p = dir.join(name);
        if !p.is_file() {
            eprintln!("{} missing: not checked", p.display());
            continue;
        }
        let r = srv.post_form("/v1/embeddings", file_form(&p));
        assert_eq!(r.status, 200, "{name}: {}\n{}", r.body, srv.tail());
        let v = r.json();
        let e = embedding_of(&v);
        assert_eq!(e.len(), 192);
        let d = v["duration_s"].as_f64().unwrap();
        assert!(
            (d - secs).abs() < 0.01,
            "{name}: duration_s {d}, not {secs}"
        );
        if !sox {
            continue;
        }
        let conv = tmp.path().join(format!("{name}.wav"));
        let o = Command::new("sox")
            .arg(&p)
            .args(["-r", "16000", "-c", "1", "-b", "16"])
            .arg(&conv)
            .output()
            .unwrap();
        if !o.status.success() {
            eprintln!("sox cannot read {name} (no codec?): {}", stderr(&o));
            continue;
        }
        let r = srv.post_form("/v1/embeddings", file_form(&conv));
        assert_eq!(r.status, 200, "{}: {}", conv.display(), r.body);
        let c = cosine(&e, &embedding_of(&r.json()));
        eprintln!("{name}: duration_s {d:.4}, cosine with sox's decoding {c:.5}");
        assert!(
            c > min_cos,
            "{name}: cosine {c} with sox's decoding (want > {min_cos})"
        );
    }
}
