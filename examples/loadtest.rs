//! Load generator for `voxq serve` (docs/server.md): `clients` concurrent tasks POST /v1/verify
//! in a loop with a (seeded) random enrolled speaker and a random test WAV, until `--duration-s`
//! has passed or `--max-requests` requests were sent. 503 (`overloaded`, documented back-pressure)
//! is counted apart and the client sleeps for Retry-After (or 100 ms); any other non-200 or
//! transport error is an error. Prints a summary and writes it as JSON (`--json`).
//!
//! ```text
//! cargo run --release --example loadtest -- --url http://127.0.0.1:8080 --clients 200 \
//!   --duration-s 60 --speakers allison,june --files test.txt --audio-root .cache/speech \
//!   --json out/loadtest/run.json
//! ```
//!
//! `--files` lists one WAV per line (`#` comments allowed), relative to `--audio-root` when given.
//! A file's true speaker is the first folder of that relative path (`SPEAKER/...`, the corpus
//! layout, whose folder names are the enrolled names); without `--audio-root` it is the first path
//! component equal to one of `--speakers`. A trial whose claimed and true speakers agree is a
//! target trial; otherwise non-target. Accept rates of both are reported.
//!
//! Requests in flight at the deadline finish and count: `duration_s` runs until the last one, and
//! throughput is ok responses over that. Latency percentiles are of ok responses only and include
//! the server's queue wait.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

const USAGE: &str = "usage: loadtest --url URL --speakers A,B,... --files LIST [--audio-root DIR] \
[--clients 200] [--duration-s 60] [--max-requests N] [--api-key K] [--json OUT] [--seed 42] \
[--timeout-s 60] [--threads N] [--label TEXT] [--quiet]";

const MAX_ERROR_SAMPLES: usize = 5;

struct Args {
    url: String,
    clients: usize,
    duration_s: f64,
    max_requests: u64,
    speakers: Vec<String>,
    files: PathBuf,
    audio_root: Option<PathBuf>,
    api_key: Option<String>,
    json: Option<PathBuf>,
    seed: u64,
    timeout_s: f64,
    threads: Option<usize>,
    label: Option<String>,
    quiet: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        url: String::new(),
        clients: 200,
        duration_s: 60.0,
        max_requests: u64::MAX,
        speakers: Vec::new(),
        files: PathBuf::new(),
        audio_root: None,
        api_key: std::env::var("VOXQ_API_KEY").ok().filter(|k| !k.is_empty()),
        json: None,
        seed: 42,
        timeout_s: 60.0,
        threads: None,
        label: None,
        quiet: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--quiet" {
            a.quiet = true;
            continue;
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), v.to_string()),
            _ => {
                let v = it
                    .next()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
                (flag.clone(), v)
            }
        };
        let bad =
            |e: &dyn std::fmt::Display| anyhow::anyhow!("bad value for {name}: {value:?} ({e})");
        match name.as_str() {
            "--url" => a.url = value.trim_end_matches('/').to_string(),
            "--clients" => a.clients = value.parse().map_err(|e| bad(&e))?,
            "--duration-s" => a.duration_s = value.parse().map_err(|e| bad(&e))?,
            "--max-requests" => a.max_requests = value.parse().map_err(|e| bad(&e))?,
            "--speakers" => {
                a.speakers = value
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "--files" => a.files = PathBuf::from(value),
            "--audio-root" => a.audio_root = Some(PathBuf::from(value)),
            "--api-key" => a.api_key = Some(value).filter(|k| !k.is_empty()),
            "--json" => a.json = Some(PathBuf::from(value)),
            "--seed" => a.seed = value.parse().map_err(|e| bad(&e))?,
            "--timeout-s" => a.timeout_s = value.parse().map_err(|e| bad(&e))?,
            "--threads" => a.threads = Some(value.parse().map_err(|e| bad(&e))?),
            "--label" => a.label = Some(value),
            _ => bail!("unknown option {name}\n{USAGE}"),
        }
    }
    if a.url.is_empty() || a.speakers.is_empty() || a.files.as_os_str().is_empty() {
        bail!("--url, --speakers and --files are required\n{USAGE}");
    }
    if a.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(a.duration_s) || !positive(a.timeout_s) {
        bail!("--duration-s and --timeout-s must be positive");
    }
    Ok(a)
}

/// One test utterance, read once; `bytes` is leaked so every request borrows it without copying.
struct TestFile {
    name: String,
    bytes: &'static [u8],
    speaker: Option<String>,
}

fn load_files(a: &Args) -> Result<Vec<TestFile>> {
    let list = std::fs::read_to_string(&a.files)
        .with_context(|| format!("reading {}", a.files.display()))?;
    let mut out = Vec::new();
    for line in list.lines() {
        let rel = line.trim();
        if rel.is_empty() || rel.starts_with('#') {
            continue;
        }
        let rel = rel.split('\t').next().unwrap_or(rel);
        let path = match &a.audio_root {
            Some(root) => root.join(rel),
            None => PathBuf::from(rel),
        };
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let speaker = file_speaker(Path::new(rel), a.audio_root.is_some(), &a.speakers);
        out.push(TestFile {
            name: rel.to_string(),
            bytes: Box::leak(bytes.into_boxed_slice()),
            speaker,
        });
    }
    if out.is_empty() {
        bail!("{} lists no files", a.files.display());
    }
    Ok(out)
}

fn file_speaker(rel: &Path, relative_to_root: bool, speakers: &[String]) -> Option<String> {
    let mut comps = rel
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Vec<_>>();
    comps.pop(); // the file name itself
    if relative_to_root {
        comps.first().map(|s| s.to_string())
    } else {
        comps
            .iter()
            .find(|c| speakers.iter().any(|s| s == *c))
            .map(|s| s.to_string())
    }
}

/// splitmix64: small, deterministic, good enough to pick trials.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Default)]
struct TrialStats {
    n: u64,
    accepted: u64,
    score_sum: f64,
}

impl TrialStats {
    fn add(&mut self, accepted: bool, score: Option<f64>) {
        self.n += 1;
        self.accepted += accepted as u64;
        self.score_sum += score.unwrap_or(0.0);
    }
    fn merge(&mut self, o: &TrialStats) {
        self.n += o.n;
        self.accepted += o.accepted;
        self.score_sum += o.score_sum;
    }
    fn to_json(&self) -> Value {
        let rate = (self.n > 0).then(|| self.accepted as f64 / self.n as f64);
        let mean = (self.n > 0).then(|| self.score_sum / self.n as f64);
        json!({"trials": self.n, "accepted": self.accepted, "accept_rate": rate, "mean_score": mean})
    }
}

/// What one client saw.
#[derive(Default)]
struct ClientStats {
    requests: u64,
    ok: u64,
    rejected_503: u64,
    /// 503s by their `error.code` (`overloaded`, `loading`), and those without Retry-After.
    rejected_by_code: BTreeMap<String, u64>,
    rejected_without_retry_after: u64,
    errors: u64,
    errors_by_kind: BTreeMap<String, u64>,
    latencies_ms: Vec<f64>,
    target: TrialStats,
    nontarget: TrialStats,
    unknown: u64,
}

/// Counters shared with the progress printer.
#[derive(Default)]
struct Live {
    issued: AtomicU64,
    ok: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
}

struct Shared {
    url: String,
    speakers: Vec<String>,
    files: Vec<TestFile>,
    api_key: Option<String>,
    deadline: Instant,
    max_requests: u64,
    live: Live,
    error_samples: Mutex<Vec<String>>,
}

impl Shared {
    fn sample_error(&self, msg: String) {
        let mut s = self.error_samples.lock().unwrap();
        if s.len() < MAX_ERROR_SAMPLES {
            eprintln!("loadtest: error: {msg}");
            s.push(msg);
        }
    }
}

/// `error.code` of an error body (docs/server.md), or "" when there is none.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/code")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// An error with its sources (reqwest's Display stops at "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn retry_after(resp: &reqwest::Response) -> Duration {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(60.0)))
        .unwrap_or(Duration::from_millis(100))
}

async fn client_loop(id: usize, seed: u64, timeout: Duration, sh: Arc<Shared>) -> ClientStats {
    let mut st = ClientStats::default();
    let http = match reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            sh.sample_error(format!("client {id}: building HTTP client: {e}"));
            st.errors += 1;
            return st;
        }
    };
    let mut rng = Rng(seed ^ (id as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let verify = format!("{}/v1/verify", sh.url);
    loop {
        if Instant::now() >= sh.deadline {
            break;
        }
        if sh.live.issued.fetch_add(1, Ordering::Relaxed) >= sh.max_requests {
            break;
        }
        let speaker = &sh.speakers[rng.below(sh.speakers.len())];
        let file = &sh.files[rng.below(sh.files.len())];
        st.requests += 1;
        let part = reqwest::multipart::Part::bytes(file.bytes)
            .file_name(
                Path::new(&file.name)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("audio.wav")
                    .to_string(),
            )
            .mime_str("audio/wav")
            .expect("static mime type");
        let form = reqwest::multipart::Form::new()
            .text("speaker", speaker.clone())
            .part("file", part);
        let mut req = http.post(&verify).multipart(form);
        if let Some(k) = &sh.api_key {
            req = req.bearer_auth(k);
        }
        let t0 = Instant::now();
        let resp = req.send().await;
        let mut pause = None;
        match resp {
            Err(e) => {
                let kind = if e.is_timeout() {
                    "transport_timeout"
                } else if e.is_connect() {
                    "transport_connect"
                } else {
                    "transport_other"
                };
                *st.errors_by_kind.entry(kind.into()).or_default() += 1;
                st.errors += 1;
                sh.live.errors.fetch_add(1, Ordering::Relaxed);
                sh.sample_error(format!(
                    "POST /v1/verify speaker={speaker} file={}: {}",
                    file.name,
                    error_chain(&e)
                ));
                // Do not spin on a dead server.
                pause = Some(Duration::from_millis(100));
            }
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                st.rejected_503 += 1;
                sh.live.rejected.fetch_add(1, Ordering::Relaxed);
                if r.headers().get(reqwest::header::RETRY_AFTER).is_none() {
                    st.rejected_without_retry_after += 1;
                }
                pause = Some(retry_after(&r));
                let body = r.bytes().await.unwrap_or_default();
                *st.rejected_by_code.entry(error_code(&body)).or_default() += 1;
            }
            Ok(r) if r.status() == reqwest::StatusCode::OK => match r.json::<Value>().await {
                Ok(body) => {
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    match body.get("accepted").and_then(Value::as_bool) {
                        Some(accepted) => {
                            st.ok += 1;
                            sh.live.ok.fetch_add(1, Ordering::Relaxed);
                            st.latencies_ms.push(ms);
                            let score = body.get("score").and_then(Value::as_f64);
                            match &file.speaker {
                                Some(s) if s == speaker => st.target.add(accepted, score),
                                Some(_) => st.nontarget.add(accepted, score),
                                None => st.unknown += 1,
                            }
                        }
                        None => {
                            *st.errors_by_kind.entry("200_bad_body".into()).or_default() += 1;
                            st.errors += 1;
                            sh.live.errors.fetch_add(1, Ordering::Relaxed);
                            sh.sample_error(format!(
                                "POST /v1/verify speaker={speaker} file={}: 200 without \
                                 boolean \"accepted\": {body}",
                                file.name
                            ));
                        }
                    }
                }
                Err(e) => {
                    *st.errors_by_kind.entry("200_bad_body".into()).or_default() += 1;
                    st.errors += 1;
                    sh.live.errors.fetch_add(1, Ordering::Relaxed);
                    sh.sample_error(format!(
                        "POST /v1/verify speaker={speaker} file={}: 200 with unreadable \
                         JSON body: {}",
                        file.name,
                        error_chain(&e)
                    ));
                }
            },
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_else(|e| format!("<body: {e}>"));
                let code = error_code(body.as_bytes());
                let kind = if code.is_empty() {
                    status.as_u16().to_string()
                } else {
                    format!("{} {code}", status.as_u16())
                };
                *st.errors_by_kind.entry(kind).or_default() += 1;
                st.errors += 1;
                sh.live.errors.fetch_add(1, Ordering::Relaxed);
                let body: String = body.chars().take(500).collect();
                sh.sample_error(format!(
                    "POST /v1/verify speaker={speaker} file={}: HTTP {status}: {body}",
                    file.name
                ));
            }
        }
        if let Some(p) = pause {
            let left = sh.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(p.min(left)).await;
        }
    }
    st
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

async fn run(a: Args) -> Result<()> {
    let files = load_files(&a)?;
    let known = files.iter().filter(|f| f.speaker.is_some()).count();
    eprintln!(
        "loadtest: {} files ({} with a known speaker), {} speakers, {} clients, {} s{}, {}",
        files.len(),
        known,
        a.speakers.len(),
        a.clients,
        a.duration_s,
        if a.max_requests == u64::MAX {
            String::new()
        } else {
            format!(" or {} requests", a.max_requests)
        },
        a.url
    );
    let start = Instant::now();
    let sh = Arc::new(Shared {
        url: a.url.clone(),
        speakers: a.speakers.clone(),
        files,
        api_key: a.api_key.clone(),
        deadline: start + Duration::from_secs_f64(a.duration_s),
        max_requests: a.max_requests,
        live: Live::default(),
        error_samples: Mutex::new(Vec::new()),
    });

    let progress = (!a.quiet).then(|| {
        let sh = sh.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
                    "loadtest: {:5.0} s  ok {}  503 {}  errors {}",
                    start.elapsed().as_secs_f64(),
                    sh.live.ok.load(Ordering::Relaxed),
                    sh.live.rejected.load(Ordering::Relaxed),
                    sh.live.errors.load(Ordering::Relaxed)
                );
            }
        })
    });

    let timeout = Duration::from_secs_f64(a.timeout_s);
    let tasks: Vec<_> = (0..a.clients)
        .map(|id| tokio::spawn(client_loop(id, a.seed, timeout, sh.clone())))
        .collect();
    let mut all = ClientStats::default();
    for t in tasks {
        let c = t.await.context("client task panicked")?;
        all.requests += c.requests;
        all.ok += c.ok;
        all.rejected_503 += c.rejected_503;
        all.rejected_without_retry_after += c.rejected_without_retry_after;
        for (k, v) in c.rejected_by_code {
            *all.rejected_by_code.entry(k).or_default() += v;
        }
        all.errors += c.errors;
        for (k, v) in c.errors_by_kind {
            *all.errors_by_kind.entry(k).or_default() += v;
        }
        all.latencies_ms.extend(c.latencies_ms);
        all.target.merge(&c.target);
        all.nontarget.merge(&c.nontarget);
        all.unknown += c.unknown;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(p) = progress {
        p.abort();
    }

    let mut lat = std::mem::take(&mut all.latencies_ms);
    lat.sort_by(f64::total_cmp);
    let mean = (!lat.is_empty()).then(|| lat.iter().sum::<f64>() / lat.len() as f64);
    let (p50, p95, p99) = (
        percentile(&lat, 50.0),
        percentile(&lat, 95.0),
        percentile(&lat, 99.0),
    );
    let max = lat.last().copied();
    let throughput = all.ok as f64 / elapsed;
    let samples = sh.error_samples.lock().unwrap().clone();

    let report = json!({
        "label": a.label,
        "url": a.url,
        "endpoint": "POST /v1/verify",
        "clients": a.clients,
        "duration_target_s": a.duration_s,
        "max_requests": (a.max_requests != u64::MAX).then_some(a.max_requests),
        "seed": a.seed,
        "speakers": a.speakers,
        "files": sh.files.len(),
        "requests": all.requests,
        "ok": all.ok,
        "rejected_503": all.rejected_503,
        "rejected_503_by_code": all.rejected_by_code,
        "rejected_503_without_retry_after": all.rejected_without_retry_after,
        "errors": all.errors,
        "errors_by_kind": all.errors_by_kind,
        "first_errors": samples,
        "duration_s": elapsed,
        "throughput_ok_per_s": throughput,
        "latency_ms": {"p50": p50, "p95": p95, "p99": p99, "max": max, "mean": mean},
        "target": all.target.to_json(),
        "nontarget": all.nontarget.to_json(),
        "unknown_speaker_trials": all.unknown,
    });

    println!(
        "requests {}  ok {}  rejected_503 {}  errors {}  duration {:.1} s  throughput {:.1} ok/s",
        all.requests, all.ok, all.rejected_503, all.errors, elapsed, throughput
    );
    println!(
        "latency ms (ok): p50 {}  p95 {}  p99 {}  max {}  mean {}",
        fmt_opt(p50, 1),
        fmt_opt(p95, 1),
        fmt_opt(p99, 1),
        fmt_opt(max, 1),
        fmt_opt(mean, 1)
    );
    let rate =
        |t: &TrialStats| fmt_opt((t.n > 0).then(|| 100.0 * t.accepted as f64 / t.n as f64), 1);
    println!(
        "accepted: target {}% of {}  non-target {}% of {}  (unknown speaker: {})",
        rate(&all.target),
        all.target.n,
        rate(&all.nontarget),
        all.nontarget.n,
        all.unknown
    );
    if all.rejected_503 > 0 {
        println!(
            "503 by code: {:?}  without Retry-After: {}",
            all.rejected_by_code, all.rejected_without_retry_after
        );
    }
    if !all.errors_by_kind.is_empty() {
        println!("errors by kind: {:?}", all.errors_by_kind);
    }
    if let Some(path) = &a.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = a.threads {
        rt.worker_threads(n.max(1));
    }
    rt.build()?.block_on(run(a))
}
