//! Health and metrics, the speaker flow (enroll, verify, identify, delete), the API key,
//! speakers of another model, and a CPU engine folder as the speaker model.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common;
use crate::common::{cosine, list, root, s, stderr, voxq};
use crate::process::Server;
use crate::support::*;

#[test]
fn health_and_metrics() {
    let base = campplus_args();
    let srv = Server::start(&args_with(&base, &[]));
    let r = srv.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok"}));
    // the ready line follows the listening line
    let deadline = Instant::now() + Duration::from_secs(5);
    while !srv.log().lines().any(|l| l.starts_with("voxq: ready")) {
        assert!(
            Instant::now() < deadline,
            "no `voxq: ready` line:\n{}",
            srv.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // some traffic: two embeddings (one batch each at least) and a 404
    let wav = sp("allison/en/agent-pass.wav");
    srv.embed(&wav);
    srv.embed(&wav);
    assert_error(&srv.get("/v1/nowhere"), 404, "not_found", "unknown route");

    let m = srv.metrics();
    let req = samples(&m, "voxq_requests_total");
    assert!(
        req.iter()
            .any(|(l, v)| l.contains("endpoint=") && l.contains("status=\"200\"") && *v >= 2.0),
        "voxq_requests_total{{endpoint,status=\"200\"}} >= 2 missing:\n{m}"
    );
    let info = samples(&m, "voxq_engine_info");
    assert!(
        info.iter().any(|(l, v)| l.contains("model=")
            && l.contains("role=")
            && l.contains("provider=")
            && *v == 1.0),
        "voxq_engine_info{{model,role,provider}} 1 missing:\n{m}"
    );
    let count = sample_sum(&m, "voxq_batch_size_count", "");
    let sum = sample_sum(&m, "voxq_batch_size_sum", "");
    assert!(
        count >= 2.0 && sum >= 2.0,
        "voxq_batch_size histogram:\n{m}"
    );
    assert!(
        !samples(&m, "voxq_batch_size_bucket").is_empty(),
        "voxq_batch_size is a histogram:\n{m}"
    );
    assert!(
        !samples(&m, "voxq_request_duration_seconds_count").is_empty(),
        "voxq_request_duration_seconds histogram missing:\n{m}"
    );
    for g in [
        "voxq_in_flight",
        "voxq_queue_depth",
        "voxq_enrolled_speakers",
    ] {
        assert_eq!(samples(&m, g).len(), 1, "{g} missing:\n{m}");
    }
    assert_eq!(samples(&m, "voxq_enrolled_speakers")[0].1, 0.0);
    assert!(m.contains("# TYPE voxq_batch_size histogram"), "{m}");
    assert!(m.contains("# TYPE voxq_requests_total counter"), "{m}");
}

#[test]
fn speaker_flow_enroll_verify_identify_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("speakers.db");
    let base = campplus_args();
    let srv = Server::start(&args_with(&base, &["--store", s(&store)]));

    let a = list("fixtures/trials/demo_enroll_allison.txt", 3);
    let b = list("fixtures/trials/demo_enroll_june.txt", 3);
    let a_test = list("fixtures/trials/demo_test_allison.txt", 1).remove(0);
    let b_test = b[2].clone(); // held out of June's enrollment

    // /v1/embeddings: shape, duration, and the same vector as `voxq embed`
    let r = srv.post_form("/v1/embeddings", file_form(&a_test));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["dim"], 192, "{v}");
    assert!(
        v["model"].as_str().is_some_and(|m| !m.is_empty()),
        "model: {v}"
    );
    let dur = v["duration_s"].as_f64().expect("duration_s");
    assert!((dur - 4.0824).abs() < 0.01, "duration_s {dur}");
    let e_test = embedding_of(&v);
    assert_eq!(e_test.len(), 192);
    let cli = cli_embedding(&a_test);
    let c = cosine(&e_test, &cli);
    assert!(c > 0.9999, "server vs `voxq embed` cosine {c}");

    // enroll Allison with two files (new: 201), then one more (200, 3 utterances)
    let r = srv.post_form("/v1/speakers", enroll_form("allison", &[&a[0], &a[1]]));
    assert_eq!(r.status, 201, "{}\n{}", r.body, srv.tail());
    let rec_a = r.json();
    check_record(&rec_a, "allison", 2);
    let id_a = rec_a["id"].as_i64().unwrap();
    let r = srv.post_form("/v1/speakers", enroll_form("allison", &[&a[2]]));
    assert_eq!(r.status, 200, "{}", r.body);
    let rec_a = r.json();
    check_record(&rec_a, "allison", 3);
    assert_eq!(rec_a["id"], id_a, "same speaker, same id");
    // June with two files
    let r = srv.post_form("/v1/speakers", enroll_form("june", &[&b[0], &b[1]]));
    assert_eq!(r.status, 201, "{}", r.body);
    let rec_b = r.json();
    check_record(&rec_b, "june", 2);
    let id_b = rec_b["id"].as_i64().unwrap();
    assert_ne!(id_a, id_b);

    // list, get by id and by name
    let r = srv.get("/v1/speakers");
    assert_eq!(r.status, 200, "{}", r.body);
    let all = r.json();
    let names: Vec<&str> = all["speakers"]
        .as_array()
        .expect("speakers array")
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{all}");
    assert!(
        names.contains(&"allison") && names.contains(&"june"),
        "{all}"
    );
    for key in [id_a.to_string(), "allison".to_string()] {
        let r = srv.get(&format!("/v1/speakers/{key}"));
        assert_eq!(r.status, 200, "GET /v1/speakers/{key}: {}", r.body);
        assert_eq!(r.json(), rec_a, "GET /v1/speakers/{key}");
    }
    assert_error(
        &srv.get("/v1/speakers/nobody"),
        404,
        "not_found",
        "unknown name",
    );
    assert_error(
        &srv.get("/v1/speakers/987654"),
        404,
        "not_found",
        "unknown id",
    );

    // verify: Allison's held-out (Spanish) file is accepted, June's file is rejected
    let r = srv.post_form("/v1/verify", verify_form("allison", &a_test));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["speaker"], "allison", "{v}");
    assert_eq!(v["speaker_id"], id_a, "{v}");
    assert_eq!(v["accepted"], true, "{v}");
    assert_eq!(v["decision"], "accept", "{v}");
    let thr = v["threshold"].as_f64().unwrap();
    assert!(
        (thr - 0.4167).abs() < 1e-9,
        "default threshold = the model's: {v}"
    );
    let score_a = v["score"].as_f64().unwrap();
    assert!(score_a > thr, "{v}");
    // the score is the cosine with the mean of the L2-normalised enrollment embeddings
    let embs: Vec<Vec<f64>> = a.iter().map(|p| normalized(&srv.embed(p))).collect();
    let mean: Vec<f64> = (0..192)
        .map(|i| embs.iter().map(|e| e[i]).sum::<f64>() / 3.0)
        .collect();
    let want = cosine(&mean, &e_test);
    assert!(
        (score_a - want).abs() < 1e-4,
        "verify score {score_a} vs cosine with the enrolled mean {want}"
    );
    let r = srv.post_form("/v1/verify", verify_form("allison", &b_test));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["accepted"], false, "{v}");
    assert_eq!(v["decision"], "reject", "{v}");
    assert!(v["score"].as_f64().unwrap() < thr, "{v}");
    // by id; a client threshold is the server's decision to make (issue 18: refused unless
    // the server runs with --allow-client-threshold, see client_threshold.rs)
    let r = srv.post_form("/v1/verify", verify_form(&id_b.to_string(), &b_test));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["speaker"], "june", "{v}");
    assert_eq!(v["accepted"], true, "{v}");
    assert_error(
        &srv.post_form(
            "/v1/verify",
            verify_form("june", &b_test).text("threshold", "0.99"),
        ),
        400,
        "bad_request",
        "client threshold without --allow-client-threshold",
    );

    // identify: Allison first, scores best first; `top` limits
    let r = srv.post_form("/v1/identify", file_form(&a_test));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let cands = v["candidates"].as_array().expect("candidates");
    assert_eq!(cands.len(), 2, "{v}");
    assert_eq!(cands[0]["speaker"], "allison", "{v}");
    assert!(
        cands[0]["score"].as_f64() >= cands[1]["score"].as_f64(),
        "{v}"
    );
    assert!((cands[0]["score"].as_f64().unwrap() - score_a).abs() < 1e-6);
    let r = srv.post_form("/v1/identify", file_form(&a_test).text("top", "1"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["candidates"].as_array().unwrap().len(), 1);

    // delete June: gone everywhere
    let r = send(client().delete(srv.url("/v1/speakers/june")));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"deleted": true, "id": id_b}));
    assert_error(
        &srv.get("/v1/speakers/june"),
        404,
        "not_found",
        "deleted name",
    );
    assert_error(
        &srv.get(&format!("/v1/speakers/{id_b}")),
        404,
        "not_found",
        "deleted id",
    );
    assert_error(
        &srv.post_form("/v1/verify", verify_form("june", &b_test)),
        404,
        "not_found",
        "verify deleted",
    );
    assert_error(
        &send(client().delete(srv.url(&format!("/v1/speakers/{id_b}")))),
        404,
        "not_found",
        "delete twice",
    );
    let r = srv.post_form("/v1/identify", file_form(&b_test));
    let v = r.json();
    assert_eq!(v["candidates"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["candidates"][0]["speaker"], "allison", "{v}");
    let r = srv.get("/v1/speakers");
    assert_eq!(r.json()["speakers"].as_array().unwrap().len(), 1);
    let m = srv.metrics();
    assert_eq!(
        samples(&m, "voxq_enrolled_speakers"),
        [(String::new(), 1.0)],
        "{m}"
    );
}

#[test]
fn api_key_guards_mutating_endpoints_only() {
    let tmp = tempfile::tempdir().unwrap();
    let base = campplus_args();
    let wav = sp("allison/en/agent-pass.wav");
    let test = sp("allison/es/agent-pass.wav");
    {
        let store = tmp.path().join("a.db");
        let srv = Server::start(&args_with(
            &base,
            &["--store", s(&store), "--api-key", "secret"],
        ));
        let post = || {
            client()
                .post(srv.url("/v1/speakers"))
                .form_data(enroll_form("allison", &[&wav]))
        };
        assert_error(&send(post()), 401, "unauthorized", "enroll without key");
        assert_error(
            &send(post().bearer_auth("wrong")),
            401,
            "unauthorized",
            "enroll with wrong key",
        );
        assert_error(
            &send(post().header("authorization", "secret")),
            401,
            "unauthorized",
            "key without Bearer",
        );
        assert_error(
            &send(post().basic_auth("secret", Some("secret"))),
            401,
            "unauthorized",
            "basic auth",
        );
        assert_error(
            &srv.get("/v1/speakers/allison"),
            404,
            "not_found",
            "refused enrollment stored nothing",
        );
        let r = send(post().bearer_auth("secret"));
        assert_eq!(r.status, 201, "{}", r.body);
        // open endpoints
        let r = srv.get("/v1/speakers");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["speakers"].as_array().unwrap().len(), 1);
        assert_eq!(srv.get("/v1/speakers/allison").status, 200);
        let r = srv.post_form("/v1/verify", verify_form("allison", &test));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(srv.post_form("/v1/identify", file_form(&test)).status, 200);
        srv.embed(&test);
        assert_eq!(srv.get("/health").status, 200);
        assert_eq!(srv.get("/metrics").status, 200);
        // delete
        let del = || client().delete(srv.url("/v1/speakers/allison"));
        assert_error(&send(del()), 401, "unauthorized", "delete without key");
        assert_error(
            &send(del().bearer_auth("secreT")),
            401,
            "unauthorized",
            "delete with wrong key",
        );
        assert_eq!(srv.get("/v1/speakers/allison").status, 200, "still there");
        let r = send(del().bearer_auth("secret"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["deleted"], true);
        assert_eq!(srv.get("/v1/speakers/allison").status, 404);
    }
    // the key from the environment
    let store = tmp.path().join("b.db");
    let srv = Server::start_env(
        &args_with(&base, &["--store", s(&store)]),
        &[("VOXQ_API_KEY", "from-env")],
    );
    let post = || {
        client()
            .post(srv.url("/v1/speakers"))
            .form_data(enroll_form("june", &[&wav]))
    };
    assert_error(&send(post()), 401, "unauthorized", "env key: no header");
    assert_error(
        &send(post().bearer_auth("secret")),
        401,
        "unauthorized",
        "env key: wrong key",
    );
    let r = send(post().bearer_auth("from-env"));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(srv.get("/v1/speakers").status, 200);
}

#[test]
fn speakers_of_another_model_give_409() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("speakers.db");
    let a = list("fixtures/trials/demo_enroll_allison.txt", 2);
    let test = list("fixtures/trials/demo_test_allison.txt", 1).remove(0);
    {
        let base = campplus_args();
        let srv = Server::start(&args_with(&base, &["--store", s(&store)]));
        let r = srv.post_form("/v1/speakers", enroll_form("allison", &[&a[0], &a[1]]));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let ecapa = root().join("fixtures/models/ecapa_distil.json");
    let srv = Server::start(&[
        "--speaker-model",
        s(&ecapa),
        "--device",
        "cpu",
        "--store",
        s(&store),
    ]);
    let r = srv.get("/v1/speakers/allison");
    assert_eq!(r.status, 200, "the record is still listed: {}", r.body);
    assert_eq!(r.json()["model_name"], "campplus_cn_en_common");
    assert_error(
        &srv.post_form("/v1/verify", verify_form("allison", &test)),
        409,
        "model_mismatch",
        "verify with ecapa",
    );
    assert_error(
        &srv.post_form("/v1/speakers", enroll_form("allison", &[&test])),
        409,
        "model_mismatch",
        "enroll more with ecapa",
    );
    assert_eq!(
        srv.get("/v1/speakers/allison").json()["utterances"],
        2,
        "refused enrollment changed nothing"
    );
    // re-enroll: delete, enroll with this model, verify
    let r = send(client().delete(srv.url("/v1/speakers/allison")));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = srv.post_form("/v1/speakers", enroll_form("allison", &[&a[0], &a[1]]));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["model_name"], "ecapa_tdnn_c256_distil_campplus");
    let r = srv.post_form("/v1/verify", verify_form("allison", &test));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The server takes a CAM++ CPU engine folder from `voxq build` as its speaker model: same
/// embeddings as the source model, the engine's provider in the metrics.
#[test]
fn serves_a_cpu_engine_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = tmp.path().join("campplus-cpu");
    let o = voxq(&[
        "build",
        s(&common::campplus().with_extension("onnx")),
        "--target",
        "cpu",
        "--out",
        s(&engine),
    ]);
    assert!(o.status.success(), "voxq build: {}", stderr(&o));
    let srv = Server::start(&["--speaker-model", s(&engine), "--device", "cpu"]);
    let wav = list("fixtures/trials/demo_test_allison.txt", 1).remove(0);
    let e = srv.embed(&wav);
    let c = cosine(&e, &cli_embedding(&wav));
    assert!(c > 0.9999, "engine folder vs source model cosine {c}");
    let m = srv.metrics();
    assert!(
        m.lines().any(|l| l.starts_with("voxq_engine_info{")
            && l.contains("role=\"speaker\"")
            && l.contains("provider=\"CPUExecutionProvider\"")),
        "{m}"
    );
}

/// The server takes an OpenVINO engine folder (`voxq build --target openvino`) as its speaker
/// model: enroll and verify work, embeddings match ONNX Runtime's on the same model, and the
/// metrics say OpenVINO and its precision serve it.
#[test]
fn serves_an_openvino_engine_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = tmp.path().join("campplus-openvino");
    let o = voxq(&[
        "build",
        s(&common::campplus().with_extension("onnx")),
        "--target",
        "openvino",
        "--out",
        s(&engine),
    ]);
    assert!(o.status.success(), "voxq build: {}", stderr(&o));
    let store = tmp.path().join("s.db");
    let srv = Server::start(&["--speaker-model", s(&engine), "--store", s(&store)]);
    let wavs = [
        "allison/en/agent-pass.wav",
        "allison/en/check-number-dial-again.wav",
        "allison/en/conf-usermenu-162.wav",
    ]
    .map(sp);
    let e = srv.embed(&wavs[0]);
    let c = cosine(&e, &cli_embedding(&wavs[0]));
    assert!(c > 0.9999, "OpenVINO engine vs ONNX Runtime cosine {c}");
    let r = srv.post_form("/v1/speakers", enroll_form("allison", &[wavs[1].as_path()]));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = srv.post_form("/v1/verify", verify_form("allison", &wavs[2]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], true, "{}", r.body);
    let m = srv.metrics();
    assert!(
        m.lines().any(|l| l.starts_with("voxq_engine_info{")
            && l.contains("role=\"speaker\"")
            && l.contains("provider=\"openvino CPU fp32\"")),
        "{m}"
    );
}
