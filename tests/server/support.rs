//! HTTP, multipart, error-body, metrics and audio helpers shared by the server tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;

use crate::common;
use crate::common::{s, speech, stderr, stdout, voxq, write_wav16};

pub const WHISPER: &str = "fixtures/whisper-tiny-test";
pub const AUDIO_LLM_DIR: &str = "fixtures/audio-llm-tiny-test";
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

// ------------------------------------------------------------------------------------------
// HTTP helpers
// ------------------------------------------------------------------------------------------

pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_string())
    }
}

pub fn send(rb: RequestBuilder) -> Resp {
    let r = rb
        .send()
        .unwrap_or_else(|e| panic!("request failed: {e:?}"));
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().unwrap(),
    }
}

pub fn mime_of(p: &Path) -> &'static str {
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
pub struct Form {
    pub boundary: String,
    pub body: Vec<u8>,
}

impl Form {
    pub fn new() -> Form {
        Form {
            boundary: "voxq-test-boundary-7MA4YWxkTrZu0gW".to_string(),
            body: Vec::new(),
        }
    }

    pub fn field(mut self, name: &str, file: Option<(&str, &str)>, data: &[u8]) -> Form {
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

    pub fn text(self, name: &str, value: impl AsRef<str>) -> Form {
        self.field(name, None, value.as_ref().as_bytes())
    }

    pub fn bytes(self, name: &str, data: &[u8], filename: &str, mime: &str) -> Form {
        self.field(name, Some((filename, mime)), data)
    }

    pub fn file(self, name: &str, p: &Path) -> Form {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let filename = p.file_name().unwrap().to_str().unwrap();
        self.bytes(name, &data, filename, mime_of(p))
    }

    pub fn encode(mut self) -> (String, Vec<u8>) {
        let end = format!("--{}--\r\n", self.boundary);
        self.body.extend_from_slice(end.as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

pub trait FormData {
    fn form_data(self, f: Form) -> Self;
}

impl FormData for RequestBuilder {
    fn form_data(self, f: Form) -> Self {
        let (ct, body) = f.encode();
        self.header("content-type", ct).body(body)
    }
}

pub fn file_form(p: &Path) -> Form {
    Form::new().file("file", p)
}

pub fn enroll_form(name: &str, files: &[&Path]) -> Form {
    let mut f = Form::new().text("name", name);
    for p in files {
        f = f.file("file", p);
    }
    f
}

pub fn verify_form(speaker: &str, file: &Path) -> Form {
    Form::new().text("speaker", speaker).file("file", file)
}

/// The response is `status` with a JSON body `{"error": {"code": code, "message": "..."}}`.
pub fn assert_error(r: &Resp, status: u16, code: &str, what: &str) {
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

pub fn embedding_of(v: &Value) -> Vec<f64> {
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
pub fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
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

pub fn sample_sum(text: &str, name: &str, label_needle: &str) -> f64 {
    samples(text, name)
        .iter()
        .filter(|(l, _)| l.contains(label_needle))
        .map(|(_, v)| v)
        .sum()
}

// ------------------------------------------------------------------------------------------
// Audio
// ------------------------------------------------------------------------------------------

pub fn sp(rel: &str) -> PathBuf {
    let p = speech().join(rel);
    assert!(p.is_file(), "{} missing", p.display());
    p
}

pub fn read_i16(p: &Path) -> Vec<i16> {
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
pub fn long_speech(dir: &Path, seconds: f64) -> PathBuf {
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

pub fn campplus_args() -> Vec<String> {
    vec![
        "--speaker-model".into(),
        s(&common::campplus()).into(),
        "--device".into(),
        "cpu".into(),
    ]
}

pub fn args_with<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// `voxq embed` of one file on the CPU: the CLI's embedding.
pub fn cli_embedding(file: &Path) -> Vec<f64> {
    let model = common::campplus();
    let o = voxq(&["embed", "--model", s(&model), "--device", "cpu", s(file)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let (_, vals) = out.trim_end().split_once('\t').expect("name<TAB>values");
    vals.split(' ').map(|v| v.parse().unwrap()).collect()
}

pub fn normalized(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / n).collect()
}

pub fn check_record(r: &Value, name: &str, utterances: u64) {
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
