//! voxq command line: parses the arguments, dispatches to the subcommand (`commands/`), and
//! prints an error as one line with its whole cause chain (exit status 1); a command line the
//! parser refuses (an option out of its range, an unknown argument) gets the same one line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod commands;
mod outputs;

use commands::*;

#[derive(Parser)]
#[command(
    name = "voxq",
    version,
    about = "Quantize audio models to int8, build engines, serve them"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compute speaker embeddings of audio files (WAV, FLAC, MP3, Ogg Vorbis).
    #[command(after_help = embed::EXAMPLES)]
    Embed(embed::EmbedArgs),
    /// Enroll a speaker from one or more audio files (mean of L2-normalised embeddings).
    #[command(after_help = enroll::EXAMPLES)]
    Enroll(enroll::EnrollArgs),
    /// Score an audio file against an enrolled speaker and decide accept/reject.
    #[command(after_help = verify::EXAMPLES)]
    Verify(verify::VerifyArgs),
    /// Rank enrolled speakers by similarity to an audio file.
    #[command(after_help = identify::EXAMPLES)]
    Identify(identify::IdentifyArgs),
    /// Evaluate a model on a trial list: EER, minDCF, score file, DET curve.
    #[command(after_help = eval::EXAMPLES)]
    Eval(eval::EvalArgs),
    /// Collect activation ranges from real audio into calibration table(s).
    #[command(after_help = calibrate::EXAMPLES)]
    Calibrate(calibrate::CalibrateArgs),
    /// Insert int8 QuantizeLinear/DequantizeLinear nodes from a calibration table.
    #[command(after_help = quantize::EXAMPLES)]
    Quantize(quantize::QuantizeArgs),
    /// List a model's layer groups, ops and sizes; with --qdq check it against TensorRT's rules.
    #[command(after_help = inspect::EXAMPLES)]
    Inspect(inspect::InspectArgs),
    /// Build a deployable engine folder (model + manifest) from an fp32 or QDQ ONNX model.
    #[command(after_help = build::EXAMPLES)]
    Build(build::BuildArgs),
    /// Write a Triton Inference Server model repository from engine folders.
    #[command(after_help = export_triton::EXAMPLES)]
    ExportTriton(export_triton::ExportTritonArgs),
    /// Quantize one layer group at a time and measure the metric and size of each.
    #[command(after_help = sensitivity::EXAMPLES)]
    Sensitivity(sensitivity::SensitivityArgs),
    /// Choose the groups to quantize: the smallest model within a metric budget.
    #[command(after_help = autoquant::EXAMPLES)]
    Autoquant(autoquant::AutoquantArgs),
    /// Benchmarks.
    #[command(subcommand, after_help = bench::EXAMPLES)]
    Bench(bench::BenchCmd),
    /// Speech to text with a Whisper model folder (whisper.json, encoder.onnx, decoder.onnx
    /// with KV cache, tokenizer.json); audio over 30 s is cut into 30 s windows.
    #[command(after_help = transcribe::EXAMPLES)]
    Transcribe(transcribe::TranscribeArgs),
    /// Audio LLM (Whisper encoder -> projector -> LLM): answer a task about the audio, tokens
    /// streamed to standard output as they are generated.
    #[command(after_help = generate::EXAMPLES)]
    Generate(generate::GenerateArgs),
    /// Word error rate of a Whisper folder or an audio LLM on a list of audio and reference
    /// texts (greedy), or an audio LLM's spoken-content QA accuracy (--task qa).
    #[command(after_help = eval_asr::EXAMPLES)]
    EvalAsr(eval_asr::EvalAsrArgs),
    /// Whisper int8: calibrate encoder and decoder on real audio (greedy decoding with the KV
    /// cache), insert Q/DQ with per-channel weights, write a new model folder.
    #[command(after_help = quantize_whisper::EXAMPLES)]
    QuantizeWhisper(quantize_whisper::QuantizeWhisperArgs),
    /// HTTP server: speaker verification, transcription and audio-LLM chat (docs/server.md).
    #[command(after_help = serve::EXAMPLES)]
    Serve(serve::ServeArgs),
    /// Check an enrollment store (SQLite `PRAGMA integrity_check`); prints `ok`.
    #[command(after_help = store_check::EXAMPLES)]
    StoreCheck(store_check::StoreCheckArgs),
}

/// The error and its causes on one line, `outer: cause: root`. A cause is left out when the
/// text before it already holds it: library errors often print their source themselves
/// (`path: No such file or directory`) as well as returning it from `source()`.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.replace('\n', " ")
}

/// A command line clap refuses: help and version go out as clap prints them; an error (an
/// option's value out of its range, an unknown or missing argument) as one `voxq: error:` line,
/// exit status 1, like every other error.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
    }
    eprintln!("voxq: error: {}", clap_one_line(&e.render().to_string()));
    ExitCode::FAILURE
}

/// clap's error text on one line: its message and tips, without the usage and the
/// `For more information` lines.
fn clap_one_line(text: &str) -> String {
    let mut msg = String::new();
    // after a line ending in ':', the lines below are its list: "a: x, y"
    let (mut list, mut items) = (false, 0);
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() {
            continue;
        }
        if msg.is_empty() {
            msg.push_str(line.strip_prefix("error: ").unwrap_or(line));
        } else if list && !line.starts_with("tip:") {
            msg.push_str(if items == 0 { " " } else { ", " });
            msg.push_str(line);
            items += 1;
            continue;
        } else {
            msg.push_str("; ");
            msg.push_str(line);
        }
        (list, items) = (line.ends_with(':'), 0);
    }
    msg
}

fn main() -> ExitCode {
    // A closed pipe (`voxq ... | head -1`) ends the process quietly, as for other Unix tools,
    // instead of a panic on the next write to standard output.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,symphonia=off,symphonia_core=off"),
    )
    .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let res = match &cli.cmd {
        Cmd::Embed(a) => embed::run(a),
        Cmd::Enroll(a) => enroll::run(a),
        Cmd::Verify(a) => verify::run(a),
        Cmd::Identify(a) => identify::run(a),
        Cmd::Eval(a) => eval::run(a),
        Cmd::Calibrate(a) => calibrate::run(a),
        Cmd::Quantize(a) => quantize::run(a),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Build(a) => build::run(a),
        Cmd::ExportTriton(a) => export_triton::run(a),
        Cmd::Sensitivity(a) => sensitivity::run(a),
        Cmd::Autoquant(a) => autoquant::run(a),
        Cmd::Bench(b) => bench::run(b),
        Cmd::Transcribe(a) => transcribe::run(a),
        Cmd::Generate(a) => generate::run(a),
        Cmd::EvalAsr(a) => eval_asr::run(a),
        Cmd::QuantizeWhisper(a) => quantize_whisper::run(a),
        Cmd::Serve(a) => serve::run(a),
        Cmd::StoreCheck(a) => store_check::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxq: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}
