//! `voxq generate`: an audio LLM answers a task about an audio file, tokens streamed to standard
//! output as they are generated.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::args::{session_options, Device};

#[derive(Args)]
pub(crate) struct GenerateArgs {
    /// Audio-LLM config (audio_llm.json) or its folder.
    #[arg(long)]
    model: PathBuf,
    /// asr, caption or qa (qa needs --question).
    #[arg(long, default_value = "asr")]
    task: String,
    /// A custom user prompt holding <SpeechHere> exactly once (instead of the task's).
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long)]
    question: Option<String>,
    /// Beam search with this many beams (1 = greedy or sampling).
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU), cpu, cuda, tensorrt.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// Audio file: WAV, FLAC, MP3 or Ogg Vorbis (at most 30 s).
    audio: PathBuf,
}

pub(crate) fn run(a: &GenerateArgs) -> Result<()> {
    let o = runtime::generation::GenerateOptions::from_choices(
        &runtime::generation::GenerationChoices {
            beams: a.beams,
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            seed: a.seed,
            repetition_penalty: a.repetition_penalty,
            max_new_tokens: a.max_new_tokens,
        },
    )?;
    let m = runtime::audio_llm::AudioLlm::open(&a.model, &session_options(a.threads, a.device))?;
    let user = m.user_turn(&a.task, a.prompt.as_deref(), a.question.as_deref())?;
    let audio = runtime::audio::read_audio(&a.audio)?;
    use std::io::Write;
    let mut shown = String::new();
    let mut so_far = Vec::new();
    let mut failed = None;
    let ids = m.generate(
        &a.audio,
        &audio.samples,
        audio.sample_rate,
        &user,
        &o,
        &mut |t| {
            so_far.push(t);
            match m.llm.decode(&so_far) {
                Ok(text) => {
                    if let Some(rest) = text.strip_prefix(&shown) {
                        print!("{rest}");
                        let _ = std::io::stdout().flush();
                    }
                    shown = text;
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    println!();
    log::info!("{} new tokens: {ids:?}", ids.len());
    Ok(())
}
