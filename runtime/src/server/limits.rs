//! Admission control and request guards: readiness, upload size, the body read in full (within
//! `--body-timeout-s`, 408 for a slow client) before a concurrency limit with a bounded queue
//! (503 + Retry-After when full), the per-request timeout, and cancellation of abandoned
//! generation.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api::ApiError;
use super::metrics::Metrics;
use super::Shared;

/// At most `max_concurrent` requests run; at most `max_queue` wait for a slot.
pub struct Admission {
    slots: Arc<Semaphore>,
    /// Requests whose body is being received (before admission).
    reading: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queue: usize,
}

impl Admission {
    pub fn new(max_concurrent: usize, max_queue: usize) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            reading: Arc::new(Semaphore::new(
                max_concurrent
                    .saturating_add(max_queue)
                    .min(Semaphore::MAX_PERMITS),
            )),
            waiting: AtomicUsize::new(0),
            max_queue,
        }
    }

    /// A processing slot, after waiting in the queue if there is room in it.
    pub async fn admit(&self, m: &Metrics) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        if before >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            m.rejected.with_label_values(&["overloaded"]).inc();
            return Err(ApiError::unavailable(
                "overloaded",
                format!(
                    "server busy: {} requests waiting (--max-queue {}); retry later",
                    before, self.max_queue
                ),
            ));
        }
        m.queue_depth.inc();
        // Leaves the queue whether the wait ends or the request is dropped (timeout).
        struct Leave<'a>(&'a AtomicUsize, &'a Metrics);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
                self.1.queue_depth.dec();
            }
        }
        let _leave = Leave(&self.waiting, m);
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("admission semaphore closed"))
    }
}

/// Set when the request that started some blocking work is gone (finished, timed out or the
/// client left), so token generation can stop; also carries the request's deadline.
#[derive(Clone)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    deadline: Instant,
}

/// Sets the flag of its [`Cancel`] when dropped.
pub struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Cancel {
    pub fn new(deadline: Instant) -> (Cancel, CancelOnDrop) {
        let flag = Arc::new(AtomicBool::new(false));
        (
            Cancel {
                flag: flag.clone(),
                deadline,
            },
            CancelOnDrop(flag),
        )
    }

    /// True when the work should stop.
    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    pub fn timed_out(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// Guard of the `/v1` endpoints: ready, upload size, the whole body read (within
/// `--body-timeout-s`, holding only a reading slot), then admission and the timeout. The
/// processing slot is held until the response body is sent (streams included).
pub async fn guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    if st.engines.get().is_none() {
        return ApiError::unavailable("loading", "engines are loading; retry shortly")
            .into_response();
    }
    let limit = st.cfg.max_upload_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return reject(req, ApiError::upload_too_large(limit), 2 * limit).await;
    }
    let req = match read_body(&st, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let deadline = tokio::time::Instant::now() + st.cfg.timeout;
    let timed_out = || {
        st.metrics.rejected.with_label_values(&["timeout"]).inc();
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "request not finished within {:.3} s (--timeout-s)",
                st.cfg.timeout.as_secs_f64()
            ),
        )
    };
    let permit = match tokio::time::timeout_at(deadline, st.admission.admit(&st.metrics)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return e.into_response(),
        Err(_) => return timed_out().into_response(),
    };
    match tokio::time::timeout_at(deadline, next.run(req)).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
                let _held = &permit;
                chunk
            }));
            Response::from_parts(parts, body)
        }
        Err(_) => timed_out().into_response(),
    }
}

/// Reads the whole request body into memory before the request may take a processing slot: a
/// client that sends slowly holds one of the reading slots (as many as `--max-concurrent` +
/// `--max-queue`) until `--body-timeout-s`, then gets 408 and the connection is closed.
async fn read_body(st: &Shared, req: Request) -> Result<Request, Response> {
    let limit = st.cfg.max_upload_bytes;
    let Ok(_reading) = st.admission.reading.clone().try_acquire_owned() else {
        st.metrics.rejected.with_label_values(&["overloaded"]).inc();
        let e = ApiError::unavailable(
            "overloaded",
            "server busy: too many request bodies being received; retry later",
        );
        return Err(reject(req, e, limit).await);
    };
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let read = async {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            if buf.len() + chunk.len() > limit {
                return Err(ApiError::upload_too_large(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    let close = |e: ApiError| {
        let mut r = e.into_response();
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        r
    };
    match tokio::time::timeout(st.cfg.body_timeout, read).await {
        Ok(Ok(buf)) => Ok(Request::from_parts(parts, Body::from(buf))),
        Ok(Err(e)) => Err(close(e)),
        Err(_) => {
            st.metrics
                .rejected
                .with_label_values(&["slow_client"])
                .inc();
            Err(close(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "request body not received within {:.3} s (--body-timeout-s)",
                    st.cfg.body_timeout.as_secs_f64()
                ),
            )))
        }
    }
}

/// Answers `e` after draining the request body.
pub(super) async fn reject(req: Request, e: ApiError, cap: usize) -> Response {
    drain(req, cap).await;
    e.into_response()
}

/// Reads and drops the request body (at most `cap` bytes, at most 2 s): a server that closes
/// a connection with unread upload data makes the client's kernel reset it, and the client
/// then sees a broken pipe instead of the JSON error sent before.
async fn drain(req: Request, cap: usize) {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut body = req.into_body().into_data_stream();
    let mut read = 0usize;
    while read <= cap {
        match tokio::time::timeout_at(until, body.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len(),
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_is_bounded() {
        let m = Metrics::new();
        let a = Arc::new(Admission::new(1, 1));
        let first = a.admit(&m).await.unwrap();
        // One may wait ...
        let a2 = a.clone();
        let waiter = tokio::spawn(async move {
            let m = Metrics::new();
            a2.admit(&m).await.map(|_| ())
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // ... a second waiter is refused with 503 and Retry-After.
        let e = a.admit(&m).await.unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after, Some(1));
        drop(first);
        waiter.await.unwrap().unwrap();
        assert_eq!(a.waiting.load(Ordering::SeqCst), 0);
    }
}
