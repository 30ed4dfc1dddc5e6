//! `voxq serve`: the command-line side of the HTTP server (speaker verification,
//! transcription, audio-LLM chat).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use runtime::server::{BatchPolicy, ServeConfig};

use crate::args::{
    int, real_gt, session_options, threads, threads_help, threshold, top, Device, SpeechArgs,
};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq serve --speaker-model fixtures/models/campplus.json --store speakers.db\n  voxq serve --speaker-model M --store speakers.db --whisper WHISPER_DIR --audio-llm audio_llm.json --port 8080 --api-key KEY --max-concurrent 16 --max-queue 64 --max-batch 8";

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Speaker model: model JSON, ONNX file with its JSON beside it, or an engine folder.
    #[arg(long)]
    speaker_model: Option<PathBuf>,
    /// SQLite enrollment store (created if missing).
    #[arg(long, default_value = "speakers.db")]
    store: PathBuf,
    /// Whisper model folder (for /v1/audio/transcriptions).
    #[arg(long)]
    whisper: Option<PathBuf>,
    /// Audio-LLM config, audio_llm.json (for /v1/chat/completions).
    #[arg(long)]
    audio_llm: Option<PathBuf>,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 = any free port; the chosen one is printed) [range: [0, 65535]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 8080, value_parser = int(0u16, 65535))]
    port: u16,
    /// Bearer token required by mutating endpoints (enroll, delete).
    #[arg(long, env = "VOXQ_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest request body, in MB (10^6 bytes) [range: (0, 1024]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 25.0, value_parser = real_gt(0.0, 1024.0))]
    max_upload_mb: f64,
    /// Longest audio accepted, in seconds [range: (0, 600]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 60.0, value_parser = real_gt(0.0, 600.0))]
    max_audio_s: f64,
    /// Time limit per request, queue wait included, in seconds [range: (0, 3600]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 30.0, value_parser = real_gt(0.0, 3600.0))]
    timeout_s: f64,
    /// Requests processed at once [range: [1, 256]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 16, value_parser = int(1usize, 256))]
    max_concurrent: usize,
    /// Requests that may wait for a slot; more get 503 with Retry-After [range: [0, 10000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 64, value_parser = int(0usize, 10_000))]
    max_queue: usize,
    /// Most utterances per embedding run (1 = no batching) [range: [1, 256]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 8, value_parser = int(1usize, 256))]
    max_batch: usize,
    /// Longest wait for a batch to fill, in milliseconds [range: [0, 1000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 5, value_parser = int(0u64, 1000))]
    batch_delay_ms: u64,
    /// Crop utterances to a multiple of this many frames so more share a batch (0 = off)
    /// [range: [0, 3000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = int(0usize, 3000))]
    batch_bucket_frames: usize,
    /// Verification threshold on the cosine score (default: the model config's `threshold`)
    /// [range: [-1, 1]].
    #[arg(long, allow_hyphen_values = true, value_parser = threshold())]
    threshold: Option<f64>,
    /// Candidates returned by /v1/identify unless the request says [range: [1, 1000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 5, value_parser = top())]
    top: usize,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("Intra-op threads per ONNX Runtime session (0 = ONNX Runtime's choice)"))]
    threads: usize,
    /// Execution provider: auto = TensorRT, else CUDA, else CPU.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    #[command(flatten)]
    speech: SpeechArgs,
    /// Let /v1/verify take a client `threshold`, within 0.2 of the server's (refused otherwise).
    #[arg(long)]
    allow_client_threshold: bool,
    /// With --api-key: every /v1 endpoint needs the key (not only enroll and delete).
    #[arg(long)]
    api_key_all: bool,
    /// No access-log line per request on stderr (500s are still logged).
    #[arg(long)]
    no_access_log: bool,
    /// Longest wait for a request's headers, in seconds; the connection is then closed
    /// [range: (0, 3600]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 10.0, value_parser = real_gt(0.0, 3600.0))]
    header_timeout_s: f64,
    /// Longest wait for a request's body, in seconds; then 408 [range: (0, 3600]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 30.0, value_parser = real_gt(0.0, 3600.0))]
    body_timeout_s: f64,
}

pub(crate) fn run(a: &ServeArgs) -> Result<()> {
    let positive = |v: f64, flag: &str| -> Result<f64> {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            bail!("{flag} must be a positive number, got {v}")
        }
    };
    let seconds = |v: f64, flag: &str| -> Result<Duration> {
        Ok(Duration::from_secs_f64(positive(v, flag)?.min(86400.0)))
    };
    let cfg = ServeConfig {
        speaker_model: a.speaker_model.clone(),
        store: a.store.clone(),
        whisper: a.whisper.clone(),
        audio_llm: a.audio_llm.clone(),
        host: a.host.clone(),
        port: a.port,
        api_key: a.api_key.clone(),
        max_upload_bytes: (positive(a.max_upload_mb, "--max-upload-mb")? * 1e6) as usize,
        max_audio_s: positive(a.max_audio_s, "--max-audio-s")?,
        timeout: Duration::from_secs_f64(positive(a.timeout_s, "--timeout-s")?.min(86400.0)),
        max_concurrent: a.max_concurrent,
        max_queue: a.max_queue,
        batch: BatchPolicy {
            max_batch: a.max_batch,
            max_delay: Duration::from_millis(a.batch_delay_ms),
        },
        batch_bucket_frames: a.batch_bucket_frames,
        threshold: a.threshold,
        allow_client_threshold: a.allow_client_threshold,
        api_key_all: a.api_key_all,
        access_log: !a.no_access_log,
        header_timeout: seconds(a.header_timeout_s, "--header-timeout-s")?,
        body_timeout: seconds(a.body_timeout_s, "--body-timeout-s")?,
        top: a.top,
        session: session_options(a.threads, a.device),
        speech: a.speech.check(),
    };
    runtime::server::serve(cfg)?;
    Ok(())
}
