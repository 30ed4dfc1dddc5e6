//! `voxq generate`: an audio LLM answers a task about an audio file, tokens streamed to standard
//! output as they are generated.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::args::{
    as_f32, beams, int, max_new_tokens, real, real_gt, session_options, threads, threads_help,
    Device,
};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq generate --model fixtures/audio-llm-tiny-test/audio_llm.json a.wav\n  voxq generate --model audio_llm.json --task qa --question \"Who is speaking?\" a.wav\n  voxq generate --model audio_llm.json --task caption --temperature 0.7 --top-p 0.9 --seed 1 a.wav";

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
    /// The question about the audio, for --task qa.
    #[arg(long)]
    question: Option<String>,
    /// Beam search with this many beams (1 = greedy or sampling) [range: [1, 16]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 1, value_parser = beams())]
    beams: usize,
    /// Sampling temperature (0 = greedy) [range: [0, 2]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0, value_parser = as_f32(real(0.0, 2.0)))]
    temperature: f32,
    /// Sample only from the K most likely tokens (0 = all) [range: [0, 1000000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = int(0usize, 1_000_000))]
    top_k: usize,
    /// Sample only from the smallest set of tokens whose probability reaches P (1 = all)
    /// [range: (0, 1]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 1.0, value_parser = as_f32(real_gt(0.0, 1.0)))]
    top_p: f32,
    /// Random seed of sampling [range: [0, 18446744073709551615]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = int(0, u64::MAX))]
    seed: u64,
    /// Above 1 discourages tokens already generated (1 = off) [range: (0, 10]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 1.0, value_parser = as_f32(real_gt(0.0, 10.0)))]
    repetition_penalty: f32,
    /// Most tokens to generate [range: [1, 4096]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 64, value_parser = max_new_tokens())]
    max_new_tokens: usize,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("ONNX Runtime intra-op threads (0 = ONNX Runtime's default)"))]
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
