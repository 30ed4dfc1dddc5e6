//! Request metrics and the access log: every request is counted by route and status and timed;
//! `voxq_in_flight` counts the `/v1` requests being processed (not `/health` or the `/metrics`
//! scrape that reads it); each request gets one stderr line — method, path, status, duration
//! and, for an error, its code and message — unless `--no-access-log`, which keeps only the
//! lines of 500s (their details never go to the client).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::IntGauge;

use super::api::ErrorNote;
use super::Shared;

/// Longest message kept on a log line.
const MAX_LOGGED: usize = 300;

/// Decrements `voxq_in_flight` when the request ends, also when its client leaves early.
struct InFlight(IntGauge);

impl InFlight {
    fn enter(g: &IntGauge) -> InFlight {
        g.inc();
        InFlight(g.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts and times every request, and writes its access-log line.
pub async fn track(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| format!("{} {}", req.method(), p.as_str()))
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let in_flight = path
        .starts_with("/v1/")
        .then(|| InFlight::enter(&st.metrics.in_flight));
    let resp = next.run(req).await;
    drop(in_flight);
    let took = start.elapsed();
    st.metrics
        .requests
        .with_label_values(&[endpoint.as_str(), resp.status().as_str()])
        .inc();
    st.metrics
        .duration
        .with_label_values(&[endpoint.as_str()])
        .observe(took.as_secs_f64());
    let status = resp.status();
    if st.cfg.access_log || status == StatusCode::INTERNAL_SERVER_ERROR {
        let note = resp.extensions().get::<ErrorNote>();
        eprintln!(
            "{}",
            line(method.as_str(), &path, status.as_u16(), took, note)
        );
    }
    resp
}

/// `voxq: POST /v1/verify 400 12.3 ms bad_request: form field 'threshold' ...`, on one line
/// whatever the client sent (control characters are replaced, long text is cut).
fn line(
    method: &str,
    path: &str,
    status: u16,
    took: std::time::Duration,
    note: Option<&ErrorNote>,
) -> String {
    let mut l = format!(
        "voxq: {method} {} {status} {:.1} ms",
        clean(path, 200),
        took.as_secs_f64() * 1e3
    );
    if let Some(n) = note {
        l += &format!(" {}: {}", n.code, clean(&n.message, MAX_LOGGED));
    }
    l
}

fn clean(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_request() {
        let note = ErrorNote {
            code: "bad_audio",
            message: "upload 'a\nb.wav': undecodable".into(),
        };
        let l = line(
            "POST",
            "/v1/embeddings",
            400,
            std::time::Duration::from_millis(12),
            Some(&note),
        );
        assert_eq!(
            l,
            "voxq: POST /v1/embeddings 400 12.0 ms bad_audio: upload 'a?b.wav': undecodable"
        );
        let long = clean(&"x".repeat(500), MAX_LOGGED);
        assert_eq!(long.chars().count(), MAX_LOGGED + 1);
    }
}
