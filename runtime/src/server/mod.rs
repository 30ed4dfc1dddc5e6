//! HTTP server (`voxq serve`, axum on tokio): speaker verification with a durable SQLite
//! enrollment store, Whisper transcription and audio-LLM chat, behind readiness, upload and
//! duration limits, header and body read timeouts, a concurrency limit with a bounded queue,
//! timeouts, bearer-token auth of mutating (or all) endpoints, dynamic batching of embeddings,
//! Prometheus metrics and an access log. The API is described in docs/server.md.

mod access;
mod api;
mod asr;
mod auth;
mod batcher;
mod chat;
mod limits;
mod listen;
mod metrics;
mod speaker;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engines::ort::{ep_name, resolve_device, CpuOptions};
use serde_json::json;

pub use api::ApiError;
pub use batcher::BatchPolicy;

use crate::audio_llm::AudioLlm;
use crate::error::RuntimeError;
use crate::speaker::config::SpeakerModel;
use crate::speaker::db::SpeakerDb;
use crate::speaker::embed::Embedder;
use crate::whisper::Whisper;

/// Everything `voxq serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub speaker_model: Option<PathBuf>,
    pub store: PathBuf,
    pub whisper: Option<PathBuf>,
    pub audio_llm: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    pub max_upload_bytes: usize,
    pub max_audio_s: f64,
    pub timeout: Duration,
    pub max_concurrent: usize,
    pub max_queue: usize,
    pub batch: BatchPolicy,
    pub batch_bucket_frames: usize,
    pub threshold: Option<f64>,
    /// Let `/v1/verify` take a client `threshold` (within `speaker::CLIENT_THRESHOLD_RANGE`
    /// of the server's); refused otherwise.
    pub allow_client_threshold: bool,
    /// With `api_key`: every `/v1` endpoint needs the key, not only enroll and delete.
    pub api_key_all: bool,
    /// One stderr line per request (method, path, status, duration).
    pub access_log: bool,
    /// Longest wait for a request's head (request line and headers).
    pub header_timeout: Duration,
    /// Longest wait for a request's whole body.
    pub body_timeout: Duration,
    pub top: usize,
    pub session: CpuOptions,
    /// What enroll, verify and identify uploads must hold (400 `no_speech` otherwise).
    pub speech: crate::speaker::speech::SpeechCheck,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serve: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// The loaded, warmed-up engines.
pub(crate) struct Engines {
    speaker: Option<speaker::SpeakerEngine>,
    whisper: Option<Arc<Whisper>>,
    llm: Option<Arc<AudioLlm>>,
}

pub(crate) struct AppState {
    cfg: ServeConfig,
    engines: OnceLock<Engines>,
    metrics: metrics::Metrics,
    admission: limits::Admission,
}

pub(crate) type Shared = Arc<AppState>;

/// Runs blocking work (decoding, features, SQLite) on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

impl ServeConfig {
    fn check(&self) -> Result<(), ServeError> {
        let bad = |m: &str| Err(ServeError::Config(m.to_string()));
        if self.speaker_model.is_none() && self.whisper.is_none() && self.audio_llm.is_none() {
            return bad("nothing to serve: give --speaker-model, --whisper and/or --audio-llm");
        }
        if self.max_concurrent == 0 || self.batch.max_batch == 0 || self.top == 0 {
            return bad("--max-concurrent, --max-batch and --top must be at least 1");
        }
        if self.max_upload_bytes == 0 {
            return bad("--max-upload-mb must be above 0");
        }
        if !(self.max_audio_s > 0.0 && self.max_audio_s.is_finite()) {
            return bad("--max-audio-s must be above 0");
        }
        if self.timeout.is_zero() {
            return bad("--timeout-s must be above 0");
        }
        if let Err(m) = self.speech.validate() {
            return Err(ServeError::Config(m));
        }
        if self.header_timeout.is_zero() || self.body_timeout.is_zero() {
            return bad("--header-timeout-s and --body-timeout-s must be above 0");
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return bad("--api-key (or VOXQ_API_KEY) is empty");
        }
        if self.api_key_all && self.api_key.is_none() {
            return bad("--api-key-all needs --api-key (or VOXQ_API_KEY)");
        }
        Ok(())
    }
}

/// Starts the server and runs it until SIGINT/SIGTERM. It listens first (`/health` says 503),
/// then loads and warms up the engines.
pub fn serve(cfg: ServeConfig) -> Result<(), ServeError> {
    cfg.check()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("voxq-http")
        .build()?;
    rt.block_on(run(cfg))
}

fn router(st: Shared) -> Router {
    let limit = st.cfg.max_upload_bytes;
    // The last route layer runs first: auth (headers only), then the guard (body, admission).
    let v1 = Router::new()
        .route("/v1/embeddings", post(speaker::embeddings))
        .route("/v1/speakers", post(speaker::enroll).get(speaker::list))
        .route(
            "/v1/speakers/{id}",
            axum::routing::delete(speaker::delete).get(speaker::get),
        )
        .route("/v1/verify", post(speaker::verify))
        .route("/v1/identify", post(speaker::identify))
        .route("/v1/audio/transcriptions", post(asr::transcriptions))
        .route("/v1/chat/completions", post(chat::completions))
        .route_layer(from_fn_with_state(st.clone(), limits::guard))
        .route_layer(from_fn_with_state(st.clone(), auth::auth));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(v1)
        .fallback(|| async { ApiError::not_found("no such endpoint (see docs/server.md)") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state(st.clone(), access::track))
        .with_state(st)
}

async fn health(State(st): State<Shared>) -> Response {
    if st.engines.get().is_some() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"status": "loading"})),
        )
            .into_response()
    }
}

async fn metrics(State(st): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn run(cfg: ServeConfig) -> Result<(), ServeError> {
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr()?;
    let st = Arc::new(AppState {
        admission: limits::Admission::new(cfg.max_concurrent, cfg.max_queue),
        cfg,
        engines: OnceLock::new(),
        metrics: metrics::Metrics::new(),
    });
    let app = router(st.clone());
    let header_timeout = st.cfg.header_timeout;
    let server = tokio::spawn(listen::serve(
        listener,
        app,
        header_timeout,
        shutdown_signal(),
    ));
    eprintln!("voxq: listening on http://{local}");
    let loader = st.clone();
    let t0 = Instant::now();
    let engines = tokio::task::spawn_blocking(move || load(&loader))
        .await
        .map_err(|e| ServeError::Config(format!("loading failed: {e}")))?;
    let engines = match engines {
        Ok(e) => e,
        Err(e) => {
            server.abort();
            return Err(e);
        }
    };
    let what = [
        engines
            .speaker
            .as_ref()
            .map(|s| format!("speaker model {}", s.model_name)),
        engines
            .whisper
            .as_ref()
            .map(|w| format!("whisper {} on {}", w.config.model, w.backend())),
        engines
            .llm
            .as_ref()
            .map(|l| format!("audio LLM {} (LLM on {})", l.config.model, l.llm.backend())),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    let _ = st.engines.set(engines);
    eprintln!(
        "voxq: ready ({what}; loaded and warmed up in {:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    server
        .await
        .map_err(|e| ServeError::Config(format!("server task failed: {e}")))
}

/// One second of a quiet tone: the warm-up input (runs every engine once before `/health`
/// says ready, so the first request does not pay for lazy initialisation).
fn warmup_audio(rate: u32) -> Vec<f32> {
    (0..rate)
        .map(|i| 0.1 * (2.0 * std::f32::consts::PI * 220.0 * i as f32 / rate as f32).sin())
        .collect()
}

fn load(st: &AppState) -> Result<Engines, ServeError> {
    let cfg = &st.cfg;
    let m = &st.metrics;
    let provider = |device| -> Result<&'static str, ServeError> {
        Ok(ep_name(resolve_device(device).map_err(RuntimeError::from)?))
    };
    let speaker = match &cfg.speaker_model {
        None => None,
        Some(p) => {
            let model = SpeakerModel::locate(p)?;
            let emb = Arc::new(Embedder::open(model, &cfg.session)?);
            let sha256 = emb.model_sha256()?.to_string();
            let db = Arc::new(SpeakerDb::open(&cfg.store)?);
            let rate = emb.model().config.fbank.sample_rate;
            let audio = crate::audio::wav::Audio {
                samples: warmup_audio(rate),
                sample_rate: rate,
            };
            emb.embed_audio(std::path::Path::new("warm-up"), &audio)?;
            let model_name = emb.model().config.name.clone();
            let served = emb.served();
            log::info!("speaker model {model_name}: served by {served}");
            // ONNX Runtime: the execution provider, as for the other models; else the backend
            let provider = if served.backend == "onnxruntime" {
                served.device.clone()
            } else {
                served.to_string()
            };
            m.engine_info
                .with_label_values(&[model_name.as_str(), "speaker", provider.as_str()])
                .set(1);
            m.enrolled.set(db.list()?.len() as i64);
            Some(speaker::SpeakerEngine {
                threshold: cfg.threshold.or(emb.model().config.threshold),
                batcher: batcher::Batcher::start(emb.clone(), cfg.batch, m.batch_size.clone())?,
                embedder: emb,
                db,
                sha256,
                model_name,
            })
        }
    };
    let one_token = crate::generation::GenerateOptions {
        max_new_tokens: 1,
        ..Default::default()
    };
    let whisper = match &cfg.whisper {
        None => None,
        Some(p) => {
            let w = Whisper::open(p, &cfg.session)?;
            w.transcribe_window(
                std::path::Path::new("warm-up"),
                &warmup_audio(16000),
                &one_token,
                &mut |_| true,
            )?;
            m.engine_info
                .with_label_values(&[
                    w.config.model.as_str(),
                    "asr",
                    provider(cfg.session.device)?,
                ])
                .set(1);
            Some(Arc::new(w))
        }
    };
    let llm = match &cfg.audio_llm {
        None => None,
        Some(p) => {
            let l = AudioLlm::open(p, &cfg.session)?;
            let user = l
                .user_turn("asr", None, None)
                .or_else(|_| Ok::<_, RuntimeError>("<SpeechHere>".to_string()))?;
            l.generate(
                std::path::Path::new("warm-up"),
                &warmup_audio(16000),
                16000,
                &user,
                &one_token,
                &mut |_| true,
            )?;
            m.engine_info
                .with_label_values(&[
                    l.config.model.as_str(),
                    "audio-llm",
                    provider(cfg.session.device)?,
                ])
                .set(1);
            Some(Arc::new(l))
        }
    };
    Ok(Engines {
        speaker,
        whisper,
        llm,
    })
}
