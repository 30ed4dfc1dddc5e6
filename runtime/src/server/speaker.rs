//! Speaker endpoints: embeddings, enrollment (SQLite store; names in one normal form),
//! listing, deletion, verification (at the server's threshold; a client's only with
//! `--allow-client-threshold`, near the server's) and identification; every embedding goes
//! through the dynamic batcher.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::api::{read_form, ApiError, Upload};
use super::batcher::{crop_to_bucket, Batcher};
use super::{blocking, Shared};
use crate::audio::decode::decode_upload;
use crate::speaker::db::{SpeakerDb, SpeakerRecord};
use crate::speaker::embed::{cosine, Embedder};
use crate::speaker::name::{lookup_form, normalize_name};
use crate::speaker::speech::check_speech;

/// How far a client threshold may be from the server's (with `--allow-client-threshold`); it
/// must also lie in [-1, 1].
pub const CLIENT_THRESHOLD_RANGE: f64 = 0.2;

/// The speaker model, its store and its batcher.
pub struct SpeakerEngine {
    pub embedder: Arc<Embedder>,
    pub batcher: Batcher,
    pub db: Arc<SpeakerDb>,
    pub sha256: String,
    pub model_name: String,
    pub threshold: Option<f64>,
}

fn engine(st: &Shared) -> Result<&SpeakerEngine, ApiError> {
    st.engines
        .get()
        .and_then(|e| e.speaker.as_ref())
        .ok_or_else(|| {
            ApiError::model_not_loaded(
                "no speaker model loaded (start the server with --speaker-model)",
            )
        })
}

/// Decodes an upload, computes its features (blocking pool) and embeds it (batcher); returns
/// the embedding and the audio's duration. With `speech` (enroll, verify, identify) audio
/// without enough speech is refused first (400 `no_speech`, [`check_speech`]).
async fn embed_upload(st: &Shared, up: &Upload, speech: bool) -> Result<(Vec<f32>, f64), ApiError> {
    let se = engine(st)?;
    let (emb, up2) = (se.embedder.clone(), up.clone());
    let (max_s, bucket) = (st.cfg.max_audio_s, st.cfg.batch_bucket_frames);
    let check = speech.then_some(st.cfg.speech);
    let (feats, duration) = blocking(move || {
        let name = up2.label();
        let audio = decode_upload(&name, &up2.bytes, max_s)?;
        if let Some(c) = &check {
            check_speech(&name, &audio, c)?;
        }
        let mut f = emb.features(&name, &audio)?;
        crop_to_bucket(&mut f, bucket);
        Ok((f, audio.duration_s()))
    })
    .await?;
    let v = se
        .batcher
        .embed(feats)
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", up.label().display())))?;
    Ok((v, duration))
}

fn record_json(r: &SpeakerRecord) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_default()
}

/// Finds a speaker by numeric id or by name (in its normal form; as given for a name stored
/// before names were normalised).
fn lookup(db: &SpeakerDb, key: &str) -> Result<Option<SpeakerRecord>, ApiError> {
    if let Ok(id) = key.trim().parse::<i64>() {
        if let Some(r) = db.get_id(id)? {
            return Ok(Some(r));
        }
    }
    let name = lookup_form(key);
    match db.get(&name)? {
        Some(r) => Ok(Some(r)),
        None if name != key => Ok(db.get(key)?),
        None => Ok(None),
    }
}

fn unknown(key: &str) -> ApiError {
    ApiError::not_found(format!("speaker '{key}' is not enrolled"))
}

fn mismatch(r: &SpeakerRecord, sha: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "model_mismatch",
        format!(
            "speaker '{}' was enrolled with model '{}' (sha256 {}…), not with this server's model (sha256 {}…); re-enroll it",
            r.name,
            r.model_name,
            short_sha(&r.model_sha256),
            short_sha(sha)
        ),
    )
}

/// The first 12 characters of a digest (the whole text when shorter).
fn short_sha(sha: &str) -> &str {
    sha.char_indices().nth(12).map_or(sha, |(i, _)| &sha[..i])
}

pub async fn embeddings(
    State(st): State<Shared>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let se = engine(&st)?;
    let form = read_form(mp, st.cfg.max_upload_bytes).await?;
    let (v, duration) = embed_upload(&st, form.one_file()?, false).await?;
    Ok(Json(json!({
        "model": se.model_name,
        "dim": v.len(),
        "embedding": v,
        "duration_s": duration,
    }))
    .into_response())
}

const MAX_ENROLL_FILES: usize = 64;

pub async fn enroll(
    State(st): State<Shared>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let se = engine(&st)?;
    let form = read_form(mp, st.cfg.max_upload_bytes).await?;
    let raw = form
        .fields
        .get("name")
        .ok_or_else(|| ApiError::bad_request("missing form field 'name'"))?;
    let name = normalize_name(raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if form.files.is_empty() {
        return Err(ApiError::bad_request(
            "missing form field 'file' (one or more audio uploads)",
        ));
    }
    if form.files.len() > MAX_ENROLL_FILES {
        return Err(ApiError::bad_request(format!(
            "{} files in one enrollment; at most {MAX_ENROLL_FILES}",
            form.files.len()
        )));
    }
    let embs =
        futures_util::future::try_join_all(form.files.iter().map(|f| embed_upload(&st, f, true)))
            .await?
            .into_iter()
            .map(|(v, _)| v)
            .collect::<Vec<_>>();
    let (db, sha, model) = (se.db.clone(), se.sha256.clone(), se.model_name.clone());
    let (created, rec, count) = blocking(move || {
        let old = db.get(&name)?;
        if let Some(r) = &old {
            if r.model_sha256 != sha {
                return Ok(Err(mismatch(r, &sha)));
            }
        }
        let rec = db.enroll(&name, &model, &sha, &embs)?;
        let count = db.list()?.len();
        Ok(Ok((old.is_none(), rec, count)))
    })
    .await??;
    se_metrics(&st, count);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record_json(&rec))).into_response())
}

fn se_metrics(st: &Shared, count: usize) {
    st.metrics.enrolled.set(count as i64);
}

pub async fn list(State(st): State<Shared>) -> Result<Response, ApiError> {
    let db = engine(&st)?.db.clone();
    let all = blocking(move || Ok(db.list()?)).await?;
    let v: Vec<_> = all.iter().map(record_json).collect();
    Ok(Json(json!({ "speakers": v })).into_response())
}

pub async fn get(
    State(st): State<Shared>,
    UrlPath(key): UrlPath<String>,
) -> Result<Response, ApiError> {
    let db = engine(&st)?.db.clone();
    let k = key.clone();
    match blocking(move || lookup(&db, &k)).await? {
        Some(r) => Ok(Json(record_json(&r)).into_response()),
        None => Err(unknown(&key)),
    }
}

pub async fn delete(
    State(st): State<Shared>,
    UrlPath(key): UrlPath<String>,
) -> Result<Response, ApiError> {
    let db = engine(&st)?.db.clone();
    let k = key.clone();
    let out = blocking(move || {
        let Some(r) = lookup(&db, &k)? else {
            return Ok(None);
        };
        let gone = db.delete(r.id)?;
        Ok(Some((r.id, gone, db.list()?.len())))
    })
    .await?;
    match out {
        Some((id, true, count)) => {
            se_metrics(&st, count);
            Ok(Json(json!({"deleted": true, "id": id})).into_response())
        }
        _ => Err(unknown(&key)),
    }
}

pub async fn verify(
    State(st): State<Shared>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let se = engine(&st)?;
    let form = read_form(mp, st.cfg.max_upload_bytes).await?;
    let key = form.text("speaker")?.to_string();
    let threshold = decision_threshold(
        se.threshold,
        form.parse::<f64>("threshold")?,
        st.cfg.allow_client_threshold,
    )?;
    let up = form.one_file()?;
    let db = se.db.clone();
    let k = key.clone();
    let rec = blocking(move || lookup(&db, &k))
        .await?
        .ok_or_else(|| unknown(&key))?;
    if rec.model_sha256 != se.sha256 {
        return Err(mismatch(&rec, &se.sha256));
    }
    let (v, _) = embed_upload(&st, up, true).await?;
    if v.len() != rec.mean.len() {
        return Err(mismatch(&rec, &se.sha256));
    }
    let score = cosine(&rec.mean, &v);
    let accepted = score >= threshold;
    Ok(Json(json!({
        "speaker": rec.name,
        "speaker_id": rec.id,
        "score": score,
        "threshold": threshold,
        "accepted": accepted,
        "decision": if accepted { "accept" } else { "reject" },
    }))
    .into_response())
}

pub async fn identify(
    State(st): State<Shared>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let se = engine(&st)?;
    let form = read_form(mp, st.cfg.max_upload_bytes).await?;
    let top = form.parse::<usize>("top")?.unwrap_or(st.cfg.top);
    if top == 0 || top > 1000 {
        return Err(ApiError::bad_request(format!(
            "form field 'top' must be 1..1000, got {top}"
        )));
    }
    let (v, _) = embed_upload(&st, form.one_file()?, true).await?;
    let (db, sha) = (se.db.clone(), se.sha256.clone());
    let cands = blocking(move || Ok(db.identify(&sha, &v, top)?)).await?;
    let c: Vec<_> = cands
        .iter()
        .map(|c| json!({"speaker": c.speaker, "score": c.score}))
        .collect();
    Ok(Json(json!({ "candidates": c })).into_response())
}

/// The threshold a verification decides at: the server's (`--threshold`, else the model
/// config's). A client's `threshold` is refused unless the server allows it, and then only
/// within [`CLIENT_THRESHOLD_RANGE`] of the server's and in [-1, 1].
fn decision_threshold(
    server: Option<f64>,
    client: Option<f64>,
    allow_client: bool,
) -> Result<f64, ApiError> {
    let Some(server) = server else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_threshold",
            "this server cannot decide: the model config has no calibrated threshold and the server was started without --threshold",
        ));
    };
    let Some(t) = client else {
        return Ok(server);
    };
    if !allow_client {
        return Err(ApiError::bad_request(format!(
            "form field 'threshold' is not accepted: the decision threshold is the server's ({server}); \
             a server started with --allow-client-threshold takes one within {CLIENT_THRESHOLD_RANGE} of it"
        )));
    }
    let lo = (server - CLIENT_THRESHOLD_RANGE).max(-1.0);
    let hi = (server + CLIENT_THRESHOLD_RANGE).min(1.0);
    if t.is_finite() && (lo..=hi).contains(&t) {
        Ok(t)
    } else {
        Err(ApiError::bad_request(format!(
            "form field 'threshold' must be in [{lo:.4}, {hi:.4}] (the server's {server} ± {CLIENT_THRESHOLD_RANGE}), got {t}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_thresholds() {
        assert_eq!(decision_threshold(Some(0.4), None, false).unwrap(), 0.4);
        let e = decision_threshold(Some(0.4), Some(0.5), false).unwrap_err();
        assert!(
            e.message.contains("--allow-client-threshold"),
            "{}",
            e.message
        );
        assert_eq!(decision_threshold(Some(0.4), Some(0.5), true).unwrap(), 0.5);
        for bad in [-1.0, 0.61, 0.19, f64::NAN, f64::NEG_INFINITY, 2.0] {
            let e = decision_threshold(Some(0.4), Some(bad), true).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        // the range stays inside [-1, 1]
        assert!(decision_threshold(Some(0.9), Some(1.05), true).is_err());
        assert_eq!(decision_threshold(Some(0.9), Some(1.0), true).unwrap(), 1.0);
        assert_eq!(
            decision_threshold(None, Some(0.5), true)
                .unwrap_err()
                .status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
