//! The `voxq serve` process under test: started on a free port, waited for, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::root;
use crate::support::*;

// ------------------------------------------------------------------------------------------
// The server process
// ------------------------------------------------------------------------------------------

/// A running `voxq serve`; killed (SIGKILL) and reaped on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Holds the default `--store` when the test gives none (never the working tree).
    pub _tmp: tempfile::TempDir,
}

impl Server {
    /// Starts `voxq serve --host 127.0.0.1 --port 0 ARGS` and waits until `/health` is 200.
    pub fn start(args: &[&str]) -> Server {
        Self::start_env(args, &[])
    }

    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut srv = Self::spawn(args, env).unwrap_or_else(|log| {
            panic!("voxq serve {args:?} exited before listening; stderr:\n{log}")
        });
        srv.wait_ready();
        srv
    }

    /// Spawns the server and waits for its `voxq: listening on http://HOST:PORT` line; `Err`
    /// with the captured stderr when the process ends before printing it. Without `--store` in
    /// `args` the server gets one in a temporary folder.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
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
    pub fn wait_ready(&mut self) {
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The last lines of stderr, for assertion messages.
    pub fn tail(&self) -> String {
        let l = self.log.lock().unwrap();
        let n = l.len().saturating_sub(30);
        format!("--- server stderr (tail) ---\n{}", l[n..].join("\n"))
    }

    pub fn get(&self, path: &str) -> Resp {
        send(client().get(self.url(path)))
    }

    pub fn post_form(&self, path: &str, form: Form) -> Resp {
        send(client().post(self.url(path)).form_data(form))
    }

    pub fn metrics(&self) -> String {
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
    pub fn embed(&self, file: &Path) -> Vec<f64> {
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
