//! `voxq verify`: score a WAV file against an enrolled speaker and decide accept/reject.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::args::{speaker_lookup, threshold, SpeechArgs, StoreArgs};

/// Exit status of a reject under `--exit-code`.
pub(crate) const REJECT_EXIT: i32 = 3;

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq verify --model fixtures/models/campplus.json --store speakers.db --speaker alice test.wav\n  voxq verify --model out/demo/engines/autoquant --store speakers.db --speaker alice --threshold 0.5 --json test.wav";

#[derive(Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    at: StoreArgs,
    #[command(flatten)]
    speech: SpeechArgs,
    /// The enrolled speaker to verify against (looked up trimmed and in Unicode NFC).
    #[arg(long, value_parser = speaker_lookup)]
    speaker: String,
    /// Decision threshold on the cosine score (default: the model config's `threshold`)
    /// [range: [-1, 1]].
    #[arg(long, allow_hyphen_values = true, value_parser = threshold())]
    threshold: Option<f64>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Exit with status 3 when the decision is reject (0: accept, 1: error or bad arguments).
    /// Without it a reject exits 0 too: read the decision from the output.
    #[arg(long)]
    exit_code: bool,
    /// The audio file (WAV, FLAC, MP3 or Ogg Vorbis) to score.
    audio: PathBuf,
}

pub(crate) fn run(a: &VerifyArgs) -> Result<()> {
    let emb = a.at.model.open()?;
    let store = a.at.open_store(&emb, false)?;
    let threshold = match a.threshold.or(emb.model().config.threshold) {
        Some(t) => t,
        None => bail!(
            "{}: the model config has no calibrated `threshold`; pass --threshold",
            emb.model().config_path.display()
        ),
    };
    let e = emb.embed_speech_file(&a.audio, &a.speech.check())?;
    let score = store.score(&a.speaker, emb.model_sha256()?, &e)?;
    let accept = score >= threshold;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"speaker": a.speaker, "score": score, "threshold": threshold,
                "decision": if accept {"accept"} else {"reject"}})
        );
    } else {
        println!(
            "speaker={} score={score:.4} threshold={threshold:.4} decision={}",
            a.speaker,
            if accept { "accept" } else { "reject" }
        );
    }
    if a.exit_code && !accept {
        std::io::stdout().flush()?;
        std::process::exit(REJECT_EXIT);
    }
    Ok(())
}
