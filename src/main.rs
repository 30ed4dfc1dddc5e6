//! voxq command line: parses the arguments, dispatches to the subcommand (`commands/`), and
//! prints an error as one line with its whole cause chain (exit status 1).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod commands;

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
    /// Compute speaker embeddings of WAV files.
    Embed(embed::EmbedArgs),
    /// Enroll a speaker from one or more WAV files (mean of L2-normalised embeddings).
    Enroll(enroll::EnrollArgs),
    /// Score a WAV file against an enrolled speaker and decide accept/reject.
    Verify(verify::VerifyArgs),
    /// Rank enrolled speakers by similarity to a WAV file.
    Identify(identify::IdentifyArgs),
    /// Evaluate a model on a trial list: EER, minDCF, score file, DET curve.
    Eval(eval::EvalArgs),
    /// Collect activation ranges from real audio into calibration table(s).
    Calibrate(calibrate::CalibrateArgs),
    /// Insert int8 QuantizeLinear/DequantizeLinear nodes from a calibration table.
    Quantize(quantize::QuantizeArgs),
    /// List a model's layer groups, ops and sizes; with --qdq check it against TensorRT's rules.
    Inspect(inspect::InspectArgs),
    /// Build a deployable engine folder (model + manifest) from an fp32 or QDQ ONNX model.
    Build(build::BuildArgs),
    /// Write a Triton Inference Server model repository from engine folders.
    ExportTriton(export_triton::ExportTritonArgs),
    /// Quantize one layer group at a time and measure the metric and size of each.
    Sensitivity(sensitivity::SensitivityArgs),
    /// Choose the groups to quantize: the smallest model within a metric budget.
    Autoquant(autoquant::AutoquantArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Speech to text with a Whisper model folder (whisper.json, encoder.onnx, decoder.onnx
    /// with KV cache, tokenizer.json); audio over 30 s is cut into 30 s windows.
    Transcribe(transcribe::TranscribeArgs),
    /// Audio LLM (Whisper encoder -> projector -> LLM): answer a task about the audio, tokens
    /// streamed to standard output as they are generated.
    Generate(generate::GenerateArgs),
    /// Whisper int8: calibrate encoder and decoder on real audio (greedy decoding with the KV
    /// cache), insert Q/DQ with per-channel weights, write a new model folder.
    QuantizeWhisper(quantize_whisper::QuantizeWhisperArgs),
    /// HTTP server: speaker verification, transcription and audio-LLM chat (docs/server.md).
    Serve(serve::ServeArgs),
    /// Check an enrollment store (SQLite `PRAGMA integrity_check`); prints `ok`.
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

fn main() -> ExitCode {
    // A closed pipe (`voxq ... | head -1`) ends the process quietly, as for other Unix tools,
    // instead of a panic on the next write to standard output.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // symphonia warns once per damaged frame (thousands of lines for one junk upload); the
    // decoder's own line sums up what it skipped. RUST_LOG=symphonia=warn brings them back.
    env_logger::Builder::new()
        .filter_module("symphonia", log::LevelFilter::Error)
        .parse_env(env_logger::Env::default().default_filter_or("warn"))
        .init();
    let cli = Cli::parse();
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
