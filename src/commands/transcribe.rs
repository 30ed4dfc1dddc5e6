//! `voxq transcribe`: speech to text with a Whisper model folder, `path<TAB>text` per file,
//! with Whisper's decoding safeguards (temperature fallback, no-speech detection) unless
//! turned off.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use runtime::fsutil::write_atomic;

use crate::args::{
    beams, max_new_tokens, session_options, threads, threads_help, Device, SafeguardArgs,
};
use crate::outputs;

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq transcribe --model fixtures/whisper-tiny-test a.wav b.wav\n  voxq transcribe --model WHISPER_DIR --beams 5 --out transcripts.tsv a.wav\n  voxq transcribe --model WHISPER_DIR --no-safeguards a.wav";

#[derive(Args)]
pub(crate) struct TranscribeArgs {
    /// Whisper model folder.
    #[arg(long)]
    model: PathBuf,
    /// Beam search with this many beams (1 = greedy) [range: [1, 16]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 1, value_parser = beams())]
    beams: usize,
    /// Most tokens per 30 s window (capped at half the text context) [range: [1, 4096]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 224, value_parser = max_new_tokens())]
    max_new_tokens: usize,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("ONNX Runtime intra-op threads (0 = ONNX Runtime's default)"))]
    threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU), cpu, cuda, tensorrt.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    #[arg(long, default_value = "full", help = crate::args::AUDIO_CTX_HELP)]
    audio_ctx: runtime::whisper::AudioCtx,
    #[command(flatten)]
    safeguards: SafeguardArgs,
    /// Write `path<TAB>text` lines here (atomically) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Audio files: WAV, FLAC, MP3 or Ogg Vorbis.
    #[arg(required = true)]
    audio: Vec<PathBuf>,
}

pub(crate) fn run(a: &TranscribeArgs) -> Result<()> {
    let o = runtime::generation::GenerateOptions::from_choices(
        &runtime::generation::GenerationChoices {
            beams: a.beams,
            max_new_tokens: a.max_new_tokens,
            ..Default::default()
        },
    )?;
    let mut inputs = outputs::whisper_model(&a.model);
    inputs.extend(outputs::audio(&a.audio));
    outputs::check(
        &inputs,
        &outputs::stream("--out", &a.out)
            .into_iter()
            .collect::<Vec<_>>(),
    )?;
    let mut w = runtime::whisper::Whisper::open(&a.model, &session_options(a.threads, a.device))?;
    w.set_audio_ctx(a.audio_ctx)?;
    let sg = a.safeguards.safeguards();
    let mut lines = String::new();
    for p in &a.audio {
        let text = w.transcribe_file_with(p, &o, &sg)?;
        lines.push_str(&format!("{}\t{}\n", p.display(), text));
    }
    match &a.out {
        Some(f) => write_atomic(f, lines.as_bytes())?,
        None => print!("{lines}"),
    }
    Ok(())
}
