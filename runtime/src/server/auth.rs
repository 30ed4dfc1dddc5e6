//! Bearer-token auth of the `/v1` endpoints when `--api-key` is set: the mutating ones (enroll,
//! delete) always, every one with `--api-key-all`. Checked before the body is read, so a
//! client without the key cannot make the server receive an upload.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ApiError;
use super::limits::reject;
use super::Shared;

/// True when the request needs the key: with `--api-key-all` every `/v1` endpoint, else
/// enrollment and deletion.
fn needs_key(st: &Shared, req: &Request) -> bool {
    if st.cfg.api_key_all {
        return true;
    }
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    matches!(
        (req.method(), path),
        (&Method::POST, Some("/v1/speakers")) | (&Method::DELETE, Some("/v1/speakers/{id}"))
    )
}

/// Refuses a request that needs the key and does not carry it (401 with `WWW-Authenticate`).
pub async fn auth(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let Some(key) = &st.cfg.api_key else {
        return next.run(req).await;
    };
    if !needs_key(&st, &req) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
        return next.run(req).await;
    }
    let e = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        if given.is_some() {
            "wrong API key"
        } else {
            "this endpoint needs 'Authorization: Bearer <api key>'"
        },
    );
    let mut r = reject(req, e, st.cfg.max_upload_bytes)
        .await
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
