//! End-to-end tests of `voxq serve` (docs/server.md): every test starts its own server process
//! on a free port (`--port 0`, the port read from its `voxq: listening on` line), waits for
//! `GET /health` to answer 200, and talks to it over HTTP with the real CAM++ model on real
//! speech, the tiny Whisper fixture and the tiny audio-LLM fixture. The server is killed when
//! its guard is dropped; its stderr is kept for failure messages.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{json, Value};

use common::{cosine, list, root, s, speech, stderr, stdout, voxq, write_wav16};

const WHISPER: &str = "fixtures/whisper-tiny-test";
const AUDIO_LLM_DIR: &str = "fixtures/audio-llm-tiny-test";
const READY_TIMEOUT: Duration = Duration::from_secs(120);

// ------------------------------------------------------------------------------------------
// The server process
// ------------------------------------------------------------------------------------------

/// A running `voxq serve`; killed (SIGKILL) and reaped on drop.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
    /// Holds the default `--store` when the test gives none (never the working tree).
    _tmp: tempfile::TempDir,
}

impl Server {
    /// Starts `voxq serve --host 127.0.0.1 --port 0 ARGS` and waits until `/health` is 200.
    fn start(args: &[&str]) -> Server {
        Self::start_env(args, &[])
    }

    fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut srv = Self::spawn(args, env).unwrap_or_else(|log| {
            panic!("voxq serve {args:?} exited before listening; stderr:\n{log}")
        });
        srv.wait_ready();
        srv
    }

    /// Spawns the server and waits for its `voxq: listening on http://HOST:PORT` line; `Err`
    /// with the captured stderr when the process ends before printing it. Without `--store` in
    /// `args` the server gets one in a temporary folder.
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
        let tmp = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxq"));
        cmd.arg("serve")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args);
        if !args.contains(&"--store") {
            cmd.arg("--store").arg(tmp.path().join("speakers.db"));
        }
        cmd.current_dir(root())
            .env_remove("VOXQ_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("voxq serve starts");
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let log = log.clone();
            // Drains stderr for the whole life of the process so that the pipe never fills.
            thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("voxq: listening on ") {
                        let url = rest.split_whitespace().next().unwrap_or("");
                        let url = url.trim_end_matches('/').to_string();
                        let port = url
                            .strip_prefix("http://127.0.0.1:")
                            .and_then(|p| p.parse::<u16>().ok());
                        if port.is_none_or(|p| p == 0) {
                            let _ = child.kill();
                            let _ = child.wait();
                            panic!("listening line {line:?}: want http://127.0.0.1:PORT with the port --port 0 picked");
                        }
                        break url;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    thread::sleep(Duration::from_millis(50));
                    let text = log.lock().unwrap().join("\n");
                    return Err(format!("(exit {status:?})\n{text}"));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "voxq serve {args:?}: no `voxq: listening on` line within {READY_TIMEOUT:?}; stderr:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            }
        };
        Ok(Server {
            child,
            base,
            log,
            _tmp: tmp,
        })
    }

    /// Polls `GET /health` until 200 `{"status":"ok"}`; a 503 before that must say `loading`.
    fn wait_ready(&mut self) {
        let c = client();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(r) = c
                .get(self.url("/health"))
                .timeout(Duration::from_secs(5))
                .send()
            {
                let status = r.status().as_u16();
                let body = r.text().unwrap_or_default();
                match status {
                    200 => {
                        let v: Value = serde_json::from_str(&body)
                            .unwrap_or_else(|e| panic!("/health body {body:?}: {e}"));
                        assert_eq!(v, json!({"status": "ok"}), "{}", self.log());
                        return;
                    }
                    503 => {
                        let v: Value = serde_json::from_str(&body)
                            .unwrap_or_else(|e| panic!("/health 503 body {body:?}: {e}"));
                        assert_eq!(v["status"], "loading", "/health 503 body {body}");
                    }
                    other => panic!("/health answered {other}: {body}\n{}", self.log()),
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "voxq serve exited ({st:?}) before it was ready; stderr:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "voxq serve not ready within {READY_TIMEOUT:?}; stderr:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The last lines of stderr, for assertion messages.
    fn tail(&self) -> String {
        let l = self.log.lock().unwrap();
        let n = l.len().saturating_sub(30);
        format!("--- server stderr (tail) ---\n{}", l[n..].join("\n"))
    }

    fn get(&self, path: &str) -> Resp {
        send(client().get(self.url(path)))
    }

    fn post_form(&self, path: &str, form: Form) -> Resp {
        send(client().post(self.url(path)).form_data(form))
    }

    fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "/metrics: {}", r.body);
        let ct = r.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("text/plain"),
            "/metrics content-type {ct:?} (Prometheus text format 0.0.4)"
        );
        r.body
    }

    /// POST /v1/embeddings of one file: the embedding, checked for shape and finiteness.
    fn embed(&self, file: &Path) -> Vec<f64> {
        let r = self.post_form("/v1/embeddings", file_form(file));
        assert_eq!(
            r.status,
            200,
            "{}: {}\n{}",
            file.display(),
            r.body,
            self.tail()
        );
        embedding_of(&r.json())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------
// HTTP helpers
// ------------------------------------------------------------------------------------------

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_string())
    }
}

fn send(rb: RequestBuilder) -> Resp {
    let r = rb
        .send()
        .unwrap_or_else(|e| panic!("request failed: {e:?}"));
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().unwrap(),
    }
}

fn mime_of(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

/// A multipart/form-data body, encoded in memory. (reqwest's blocking multipart form is a
/// streamed body: when the server answers before reading it all, e.g. 401/413/503, the blocking
/// client reports the body channel's error instead of the response. A complete byte body is
/// handed to hyper at once, which returns such early responses.)
struct Form {
    boundary: String,
    body: Vec<u8>,
}

impl Form {
    fn new() -> Form {
        Form {
            boundary: "voxq-test-boundary-7MA4YWxkTrZu0gW".to_string(),
            body: Vec::new(),
        }
    }

    fn field(mut self, name: &str, file: Option<(&str, &str)>, data: &[u8]) -> Form {
        let b = &self.boundary;
        let mut head = format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"");
        if let Some((filename, mime)) = file {
            head += &format!("; filename=\"{filename}\"\r\nContent-Type: {mime}");
        }
        head += "\r\n\r\n";
        self.body.extend_from_slice(head.as_bytes());
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    fn text(self, name: &str, value: impl AsRef<str>) -> Form {
        self.field(name, None, value.as_ref().as_bytes())
    }

    fn bytes(self, name: &str, data: &[u8], filename: &str, mime: &str) -> Form {
        self.field(name, Some((filename, mime)), data)
    }

    fn file(self, name: &str, p: &Path) -> Form {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let filename = p.file_name().unwrap().to_str().unwrap();
        self.bytes(name, &data, filename, mime_of(p))
    }

    fn encode(mut self) -> (String, Vec<u8>) {
        let end = format!("--{}--\r\n", self.boundary);
        self.body.extend_from_slice(end.as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

trait FormData {
    fn form_data(self, f: Form) -> Self;
}

impl FormData for RequestBuilder {
    fn form_data(self, f: Form) -> Self {
        let (ct, body) = f.encode();
        self.header("content-type", ct).body(body)
    }
}

fn file_form(p: &Path) -> Form {
    Form::new().file("file", p)
}

fn enroll_form(name: &str, files: &[&Path]) -> Form {
    let mut f = Form::new().text("name", name);
    for p in files {
        f = f.file("file", p);
    }
    f
}

fn verify_form(speaker: &str, file: &Path) -> Form {
    Form::new().text("speaker", speaker).file("file", file)
}

/// The response is `status` with a JSON body `{"error": {"code": code, "message": "..."}}`.
fn assert_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: status; body {}", r.body);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{what}: error content-type {ct:?}, body {}",
        r.body
    );
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{what}: body {}", r.body);
    let msg = v["error"]["message"].as_str();
    assert!(
        msg.is_some_and(|m| !m.trim().is_empty()),
        "{what}: error.message must be a non-empty string: {}",
        r.body
    );
    assert_eq!(
        v.as_object().unwrap().len(),
        1,
        "{what}: only `error` at the top: {}",
        r.body
    );
}

fn embedding_of(v: &Value) -> Vec<f64> {
    let e: Vec<f64> = v["embedding"]
        .as_array()
        .unwrap_or_else(|| panic!("no embedding array: {v}"))
        .iter()
        .map(|x| x.as_f64().expect("embedding values are numbers"))
        .collect();
    assert_eq!(
        v["dim"].as_u64(),
        Some(e.len() as u64),
        "dim vs length: {v}"
    );
    assert!(e.iter().all(|x| x.is_finite()), "non-finite embedding");
    assert!(e.iter().any(|x| *x != 0.0), "all-zero embedding");
    e
}

/// Samples named `name` in a Prometheus text exposition: (labels, value).
fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (lhs, val) = l.rsplit_once(' ')?;
            let (n, labels) = match lhs.find('{') {
                Some(i) => (&lhs[..i], &lhs[i..]),
                None => (lhs, ""),
            };
            if n != name {
                return None;
            }
            Some((labels.to_string(), val.parse().ok()?))
        })
        .collect()
}

fn sample_sum(text: &str, name: &str, label_needle: &str) -> f64 {
    samples(text, name)
        .iter()
        .filter(|(l, _)| l.contains(label_needle))
        .map(|(_, v)| v)
        .sum()
}

// ------------------------------------------------------------------------------------------
// Audio
// ------------------------------------------------------------------------------------------

fn sp(rel: &str) -> PathBuf {
    let p = speech().join(rel);
    assert!(p.is_file(), "{} missing", p.display());
    p
}

fn read_i16(p: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(p).unwrap();
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 16000, 16),
        "{}",
        p.display()
    );
    r.samples::<i16>().map(|x| x.unwrap()).collect()
}

/// A 16 kHz WAV of at least `seconds` of real speech (several Allison prompts back to back).
fn long_speech(dir: &Path, seconds: f64) -> PathBuf {
    let parts = [
        "allison/en/conf-usermenu-162.wav",
        "allison/en/conf-usermenu.wav",
        "allison/es/conf-usermenu-162.wav",
        "allison/es/conf-usermenu.wav",
    ];
    let want = (seconds * 16000.0) as usize;
    let mut all = Vec::with_capacity(want);
    'outer: loop {
        for p in parts {
            all.extend(read_i16(&sp(p)));
            if all.len() >= want {
                break 'outer;
            }
        }
    }
    all.truncate(want);
    let out = dir.join(format!("speech_{}s.wav", seconds as u32));
    write_wav16(&out, all);
    out
}

fn campplus_args() -> Vec<String> {
    vec![
        "--speaker-model".into(),
        s(&common::campplus()).into(),
        "--device".into(),
        "cpu".into(),
    ]
}

fn args_with<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// `voxq embed` of one file on the CPU: the CLI's embedding.
fn cli_embedding(file: &Path) -> Vec<f64> {
    let model = common::campplus();
    let o = voxq(&["embed", "--model", s(&model), "--device", "cpu", s(file)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let (_, vals) = out.trim_end().split_once('\t').expect("name<TAB>values");
    vals.split(' ').map(|v| v.parse().unwrap()).collect()
}

fn normalized(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn check_record(r: &Value, name: &str, utterances: u64) {
    assert_eq!(r["name"], name, "{r}");
    assert!(r["id"].as_i64().is_some(), "numeric id: {r}");
    assert_eq!(r["model_name"], "campplus_cn_en_common", "{r}");
    let sha = r["model_sha256"].as_str().expect("model_sha256");
    assert!(
        sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
        "model_sha256 {sha:?}"
    );
    assert_eq!(r["utterances"].as_u64(), Some(utterances), "{r}");
    let c = r["created_unix"].as_i64().expect("created_unix");
    let u = r["updated_unix"].as_i64().expect("updated_unix");
    assert!(c > 1_600_000_000 && u >= c, "{r}");
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

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
    // by id, and with an explicit threshold
    let r = srv.post_form(
        "/v1/verify",
        verify_form(&id_b.to_string(), &b_test).text("threshold", "0.99"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["speaker"], "june", "{v}");
    assert!(
        (v["threshold"].as_f64().unwrap() - 0.99).abs() < 1e-6,
        "threshold parameter echoed: {v}"
    );
    assert_eq!(v["decision"], "reject", "{v}");
    let r = srv.post_form(
        "/v1/verify",
        verify_form("june", &b_test).text("threshold", "0.5"),
    );
    let v = r.json();
    assert_eq!(v["accepted"], true, "{v}");

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

#[test]
fn overload_gives_503_with_retry_after() {
    let base = campplus_args();
    let srv = Server::start(&args_with(
        &base,
        &[
            "--max-concurrent",
            "1",
            "--max-queue",
            "1",
            "--max-batch",
            "1",
        ],
    ));
    let long = sp("allison/es/conf-usermenu-162.wav"); // 27.4 s
    let n = 12;
    let bar = Arc::new(Barrier::new(n));
    let srv = Arc::new(srv);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (bar, srv, long) = (bar.clone(), srv.clone(), long.clone());
            thread::spawn(move || {
                let form = file_form(&long);
                let c = client();
                bar.wait();
                send(c.post(srv.url("/v1/embeddings")).form_data(form))
            })
        })
        .collect();
    let res: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut n503 = 0;
    for r in &res {
        match r.status {
            200 => {
                embedding_of(&r.json());
            }
            503 => {
                n503 += 1;
                assert_error(r, 503, "overloaded", "overload");
                assert_eq!(
                    r.header("retry-after").as_deref(),
                    Some("1"),
                    "Retry-After on 503"
                );
            }
            s => panic!("status {s} under overload: {}\n{}", r.body, srv.tail()),
        }
    }
    let statuses: Vec<u16> = res.iter().map(|r| r.status).collect();
    assert!(
        n503 >= 1,
        "no 503 from 12 concurrent requests: {statuses:?}"
    );
    assert!(n503 < n, "every request refused: {statuses:?}");
    let m = srv.metrics();
    let rejected = sample_sum(&m, "voxq_rejected_total", "reason=\"overloaded\"");
    assert_eq!(
        rejected, n503 as f64,
        "voxq_rejected_total{{reason=\"overloaded\"}} ({statuses:?}):\n{m}"
    );
    // nothing is stuck afterwards
    assert_eq!(sample_sum(&m, "voxq_queue_depth", ""), 0.0, "{m}");
    srv.embed(&sp("allison/en/agent-pass.wav"));
}

#[test]
fn slow_work_gives_504_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let base = campplus_args();
    let common_args = [
        "--max-concurrent",
        "1",
        "--max-queue",
        "16",
        "--max-batch",
        "1",
    ];
    // A fractional --timeout-s if the CLI takes one; else 1 s, and the queue wait behind
    // seven ~55 s clips on one worker does the rest.
    let mut a = args_with(&base, &common_args);
    a.extend(["--timeout-s", "0.05"]);
    let (srv, timeout) = match Server::spawn(&a, &[]) {
        Ok(mut srv) => {
            srv.wait_ready();
            (srv, 0.05)
        }
        Err(log) => {
            eprintln!("--timeout-s 0.05 refused, using 1:\n{log}");
            let mut a = args_with(&base, &common_args);
            a.extend(["--timeout-s", "1"]);
            (Server::start(&a), 1.0)
        }
    };
    let long = long_speech(tmp.path(), 55.0);
    let n = 8;
    let bar = Arc::new(Barrier::new(n));
    let srv = Arc::new(srv);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (bar, srv, long) = (bar.clone(), srv.clone(), long.clone());
            thread::spawn(move || {
                let form = file_form(&long);
                let c = client();
                bar.wait();
                let t = Instant::now();
                let r = send(c.post(srv.url("/v1/embeddings")).form_data(form));
                (r, t.elapsed())
            })
        })
        .collect();
    let res: Vec<(Resp, Duration)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let statuses: Vec<u16> = res.iter().map(|(r, _)| r.status).collect();
    let mut n504 = 0;
    for (r, took) in &res {
        match r.status {
            200 => {}
            504 => {
                n504 += 1;
                assert_error(r, 504, "timeout", "timeout");
                // answered at the deadline, not after the work it gave up on
                assert!(
                    took.as_secs_f64() < timeout + 5.0,
                    "504 after {took:?} with --timeout-s {timeout}"
                );
            }
            s => panic!(
                "status {s} (timeout test, --timeout-s {timeout}): {}\n{}",
                r.body,
                srv.tail()
            ),
        }
    }
    assert!(
        n504 >= 1,
        "no 504 with --timeout-s {timeout}: {statuses:?}\n{}",
        srv.tail()
    );
    let m = srv.metrics();
    let rejected = sample_sum(&m, "voxq_rejected_total", "reason=\"timeout\"");
    assert_eq!(
        rejected, n504 as f64,
        "voxq_rejected_total{{reason=\"timeout\"}} ({statuses:?}):\n{m}"
    );
}

#[test]
fn dynamic_batching_gives_the_same_embeddings() {
    let base = campplus_args();
    let srv = Server::start(&args_with(
        &base,
        &["--max-batch", "8", "--batch-delay-ms", "20"],
    ));
    let wav = sp("allison/en/agent-pass.wav");
    let single = srv.embed(&wav);
    let n = 16;
    let bar = Arc::new(Barrier::new(n));
    let srv = Arc::new(srv);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (bar, srv, wav) = (bar.clone(), srv.clone(), wav.clone());
            thread::spawn(move || {
                let form = file_form(&wav);
                let c = client();
                bar.wait();
                send(c.post(srv.url("/v1/embeddings")).form_data(form))
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.body, srv.tail());
        let e = embedding_of(&r.json());
        let c = cosine(&e, &single);
        assert!(c > 0.9999, "batched vs single embedding cosine {c}");
    }
    let m = srv.metrics();
    let sum = sample_sum(&m, "voxq_batch_size_sum", "");
    let count = sample_sum(&m, "voxq_batch_size_count", "");
    assert!(count >= 1.0 && sum == 17.0, "17 utterances embedded:\n{m}");
    assert!(
        sum / count > 1.0,
        "no batch bigger than 1 (sum {sum}, count {count}):\n{m}"
    );
    // no batch bigger than --max-batch
    let buckets = samples(&m, "voxq_batch_size_bucket");
    let le = |b: &str| {
        buckets
            .iter()
            .find(|(l, _)| l.contains(&format!("le=\"{b}\"")))
            .map(|(_, v)| *v)
    };
    assert_eq!(le("+Inf"), Some(count), "{m}");
    if let Some(under8) = le("8").or(le("8.0")) {
        assert_eq!(under8, count, "a batch over --max-batch 8:\n{m}");
    }
}

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

#[test]
fn compressed_uploads_flac_mp3_ogg() {
    let dir = root().join("fixtures/audio");
    let flac = dir.join("speech_16k.flac");
    if !flac.is_file() {
        eprintln!(
            "SKIPPED compressed_uploads_flac_mp3_ogg: {} missing (the FLAC/MP3/OGG fixture set)",
            flac.display()
        );
        return;
    }
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

#[test]
fn sigkill_loses_no_acknowledged_enrollment() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("speakers.db");
    let base = campplus_args();
    let wav = sp("allison/en/agent-pass.wav");
    let srv = Server::start(&args_with(&base, &["--store", s(&store)]));
    let url = srv.url("/v1/speakers");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(0usize));
    let client_thread = {
        let (acked, stop, sent, wav) = (acked.clone(), stop.clone(), sent.clone(), wav.clone());
        thread::spawn(move || {
            let c = Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut i = 0;
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let name = format!("s{i}");
                *sent.lock().unwrap() = i + 1;
                match c.post(&url).form_data(enroll_form(&name, &[&wav])).send() {
                    Ok(r) if r.status().as_u16() == 201 || r.status().as_u16() == 200 => {
                        acked.lock().unwrap().push(name)
                    }
                    Ok(r) => errors.push(format!("{name}: {}", r.status())),
                    Err(_) => thread::sleep(Duration::from_millis(5)), // server gone
                }
                i += 1;
            }
            errors
        })
    };
    let t0 = Instant::now();
    loop {
        let n = acked.lock().unwrap().len();
        if n >= 10 && t0.elapsed() > Duration::from_millis(1500) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "only {n} enrollments acknowledged in 60 s\n{}",
            srv.tail()
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(unsafe { libc::kill(srv.pid(), libc::SIGKILL) }, 0);
    thread::sleep(Duration::from_millis(300)); // the client keeps sending into the void
    stop.store(true, Ordering::SeqCst);
    let errors = client_thread.join().unwrap();
    assert!(
        errors.is_empty(),
        "non-2xx answers before the kill: {errors:?}"
    );
    drop(srv);
    let acked = acked.lock().unwrap().clone();
    let sent = *sent.lock().unwrap();
    // the database as the killed process left it (WAL and all) passes the integrity check
    let o = voxq(&["store-check", s(&store)]);
    assert!(o.status.success(), "store-check: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "ok");

    let srv = Server::start(&args_with(&base, &["--store", s(&store)]));
    let r = srv.get("/v1/speakers");
    assert_eq!(r.status, 200, "{}", r.body);
    let listed: Vec<(String, u64)> = r.json()["speakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["utterances"].as_u64().unwrap(),
            )
        })
        .collect();
    for name in &acked {
        assert!(
            listed.iter().any(|(n, u)| n == name && *u == 1),
            "acknowledged {name} lost after SIGKILL; listed {listed:?}"
        );
    }
    let sent_names: Vec<String> = (0..sent).map(|i| format!("s{i}")).collect();
    for (n, _) in &listed {
        assert!(sent_names.contains(n), "{n} was never sent");
    }
    eprintln!(
        "{} acknowledged, {} listed, {} sent",
        acked.len(),
        listed.len(),
        sent
    );
    // the restarted server still enrolls and verifies
    let r = srv.post_form("/v1/speakers", enroll_form("after", &[&wav]));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = srv.post_form("/v1/verify", verify_form(&acked[0], &wav));
    assert_eq!(r.status, 200, "{}", r.body);
    drop(srv);
    let db = runtime::speaker::db::SpeakerDb::open(&store).unwrap();
    assert_eq!(db.integrity_check().unwrap(), "ok");
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let base = campplus_args();
    let mut srv = Server::start(&args_with(&base, &[]));
    let long = long_speech(tmp.path(), 55.0);
    let url = srv.url("/v1/embeddings");
    // what voxq_in_flight reads with no other request (the /metrics request may count)
    let idle = sample_sum(&srv.metrics(), "voxq_in_flight", "");
    let h = {
        let long = long.clone();
        thread::spawn(move || send(client().post(url).form_data(file_form(&long))))
    };
    // wait until the request is being worked on
    let t0 = Instant::now();
    loop {
        let m = srv.metrics();
        if sample_sum(&m, "voxq_in_flight", "") > idle {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the embedding request never showed in voxq_in_flight:\n{m}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(unsafe { libc::kill(srv.pid(), libc::SIGTERM) }, 0);
    let r = h.join().unwrap();
    assert_eq!(r.status, 200, "in-flight request after SIGTERM: {}", r.body);
    embedding_of(&r.json());
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = srv.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGTERM\n{}",
            srv.tail()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.signal().is_none(),
        "SIGTERM is handled (graceful stop), not fatal: {status:?}\n{}",
        srv.tail()
    );
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
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
