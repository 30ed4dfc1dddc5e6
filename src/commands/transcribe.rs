//! `voxq transcribe`: speech to text with a Whisper model folder, `path<TAB>text` per file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use runtime::fsutil::write_atomic;

use crate::args::{session_options, Device};
use crate::outputs;

#[derive(Args)]
pub(crate) struct TranscribeArgs {
    /// Whisper model folder.
    #[arg(long)]
    model: PathBuf,
    /// Beam search with this many beams (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// Most tokens per 30 s window (capped at half the text context).
    #[arg(long, default_value_t = 224)]
    max_new_tokens: usize,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU), cpu, cuda, tensorrt.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// Write `path<TAB>text` lines here (atomically) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// WAV files.
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
    let w = runtime::whisper::Whisper::open(&a.model, &session_options(a.threads, a.device))?;
    let mut lines = String::new();
    for p in &a.audio {
        let text = w.transcribe_file(p, &o)?;
        lines.push_str(&format!("{}\t{}\n", p.display(), text));
    }
    match &a.out {
        Some(f) => write_atomic(f, lines.as_bytes())?,
        None => print!("{lines}"),
    }
    Ok(())
}
