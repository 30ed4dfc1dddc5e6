//! `voxq eval-asr`: word error rate of a Whisper folder or an audio LLM on a list of audio and
//! reference texts (greedy, Whisper with its decoding safeguards unless turned off; text
//! normalised as `tools/whisper_wer.py` does), or, with
//! `--task qa`, an audio LLM's accuracy on spoken-content questions; per-utterance TSV and
//! JSON on request.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use runtime::asr_eval::{
    asr_tsv, evaluate_asr, evaluate_qa, is_audio_llm, load_clips, qa_tsv, read_asr_list,
    read_qa_list, AsrModel,
};
use runtime::generation::{GenerateOptions, GenerationChoices};

use crate::args::{max_new_tokens, session_options, threads, threads_help, Device, SafeguardArgs};
use crate::outputs::{self, Input, Output};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq eval-asr --model fixtures/whisper-tiny-test --list asr.tsv --audio-root .cache/speech\n  voxq eval-asr --model audio_llm.json --list asr.tsv --audio-root .cache/speech --out per_utt.tsv --json wer.json\n  voxq eval-asr --model audio_llm.json --task qa --list qa.tsv --audio-root .cache/speech";

/// `--task`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum EvalTask {
    /// Transcription: WER on `audio<TAB>reference` lines.
    Asr,
    /// Spoken-content questions (audio LLM): accuracy on `audio<TAB>question<TAB>answer` lines.
    Qa,
}

#[derive(Args)]
pub(crate) struct EvalAsrArgs {
    /// Whisper model folder, or audio-LLM config (audio_llm.json or its folder).
    #[arg(long)]
    model: PathBuf,
    /// The list: `audio<TAB>reference text` per line (asr) or `audio<TAB>question<TAB>answer`
    /// (qa); references in [brackets] (non-speech) are left out of WER.
    #[arg(long)]
    list: PathBuf,
    /// Folder the list's audio paths are relative to.
    #[arg(long, default_value = ".")]
    audio_root: PathBuf,
    /// asr (WER) or qa (audio LLM: exact-match and answer-contained accuracy).
    #[arg(long, value_enum, default_value_t = EvalTask::Asr)]
    task: EvalTask,
    /// Most tokens per utterance (Whisper: per 30 s window, capped at half the text context)
    /// [range: [1, 4096]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 224, value_parser = max_new_tokens())]
    max_new_tokens: usize,
    #[arg(long, default_value = "full", help = crate::args::AUDIO_CTX_HELP)]
    audio_ctx: runtime::whisper::AudioCtx,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("ONNX Runtime intra-op threads (0 = ONNX Runtime's default)"))]
    threads: usize,
    /// Execution provider: auto (TensorRT, else CUDA, else CPU), cpu, cuda, tensorrt.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    #[command(flatten)]
    safeguards: SafeguardArgs,
    /// Write per-utterance results here as TSV (asr: audio, reference, hypothesis, errors,
    /// words; qa: audio, question, answer, output, exact, contained).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the totals and per-utterance results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// `1 deletion`, `2 deletions`.
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

pub(crate) fn run(a: &EvalAsrArgs) -> Result<()> {
    let llm = match is_audio_llm(&a.model) {
        Some(x) => x,
        None if !a.model.exists() => bail!("{}: --model does not exist", a.model.display()),
        None => bail!(
            "{}: --model is neither a Whisper model folder (whisper.json) nor an audio-LLM \
             config (audio_llm.json)",
            a.model.display()
        ),
    };
    if a.task == EvalTask::Qa && !llm {
        bail!(
            "{}: --task qa needs an audio-LLM config (a Whisper model only transcribes)",
            a.model.display()
        );
    }
    let (asr, qa) = match a.task {
        EvalTask::Asr => (read_asr_list(&a.list)?, Vec::new()),
        EvalTask::Qa => (Vec::new(), read_qa_list(&a.list)?),
    };
    let audio: Vec<&str> = match a.task {
        EvalTask::Asr => asr.iter().map(|i| i.audio.as_str()).collect(),
        EvalTask::Qa => qa.iter().map(|i| i.audio.as_str()).collect(),
    };
    let mut inputs = if llm {
        outputs::audio_llm_model(&a.model)
    } else {
        outputs::whisper_model(&a.model)
    };
    inputs.push(Input::new("the evaluation list", &a.list));
    let mut seen = std::collections::BTreeSet::new();
    for u in &audio {
        if seen.insert(*u) {
            inputs.push(Input::new(
                "an audio file of the list",
                a.audio_root.join(u),
            ));
        }
    }
    let outs: Vec<Output> = [("--out", &a.out), ("--json", &a.json)]
        .into_iter()
        .filter_map(|(label, p)| outputs::stream(label, p))
        .collect();
    outputs::check(&inputs, &outs)?;
    if !a.audio_root.is_dir() {
        bail!("{}: --audio-root is not a folder", a.audio_root.display());
    }
    let opts = GenerateOptions::from_choices(&GenerationChoices {
        max_new_tokens: a.max_new_tokens,
        ..Default::default()
    })?;
    let mut model = AsrModel::open(&a.model, &session_options(a.threads, a.device), None)?
        .with_safeguards(a.safeguards.safeguards());
    model.set_audio_ctx(a.audio_ctx)?;
    let clips = load_clips(audio.iter().copied(), &a.audio_root, !a.quiet)?;
    let label = a.model.display().to_string();
    let mut say = outputs::summary(&outs);
    let (tsv, json) = match a.task {
        EvalTask::Asr => {
            let r = evaluate_asr(&model, &label, &asr, &clips, &opts, !a.quiet)?;
            let c = &r.counts;
            writeln!(
                say,
                "model {label} ({} on {}): WER {:.2}% ({} / {}: {}, {}, {}) over {} ({} \
                 non-speech left out); {:.1} s of audio decoded in {:.1} s",
                r.kind,
                r.backend,
                r.wer_percent,
                count(r.errors, "error"),
                count(c.words, "reference word"),
                count(c.substitutions, "substitution"),
                count(c.deletions, "deletion"),
                count(c.insertions, "insertion"),
                count(r.utterances, "utterance"),
                r.skipped_non_speech,
                r.audio_seconds,
                r.decode_seconds
            )?;
            (asr_tsv(&r), serde_json::to_string_pretty(&r)?)
        }
        EvalTask::Qa => {
            let r = evaluate_qa(&model, &label, &qa, &clips, &opts, !a.quiet)?;
            writeln!(
                say,
                "model {label} (audio-llm): QA exact match {}/{} = {:.2}%, answer contained \
                 {}/{} = {:.2}%; {:.1} s of audio decoded in {:.1} s",
                r.exact,
                r.questions,
                r.exact_percent,
                r.contained,
                r.questions,
                r.contained_percent,
                r.audio_seconds,
                r.decode_seconds
            )?;
            (qa_tsv(&r), serde_json::to_string_pretty(&r)?)
        }
    };
    let json = json + "\n";
    let mut files: Vec<(&Path, &[u8])> = Vec::new();
    if let Some(p) = &a.out {
        files.push((p, tsv.as_bytes()));
    }
    if let Some(p) = &a.json {
        files.push((p, json.as_bytes()));
    }
    outputs::write_all(&files)
}
