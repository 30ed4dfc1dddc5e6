//! `voxq enroll`: add a speaker's utterances to an enrollment store (JSON or SQLite).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::args::{speaker_name, store_model, SpeechArgs, StoreArgs};
use crate::outputs;

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq enroll --model fixtures/models/campplus.json --store speakers.db --speaker alice a1.wav a2.wav";

#[derive(Args)]
pub(crate) struct EnrollArgs {
    #[command(flatten)]
    at: StoreArgs,
    #[command(flatten)]
    speech: SpeechArgs,
    /// Speaker name (stored trimmed and in Unicode NFC; control, format and separator
    /// characters are refused, as by the server).
    #[arg(long, value_parser = speaker_name)]
    speaker: String,
    /// The speaker's audio files (WAV), one embedding each.
    #[arg(required = true)]
    audio: Vec<PathBuf>,
}

pub(crate) fn run(a: &EnrollArgs) -> Result<()> {
    let mut inputs = outputs::speaker_model(&a.at.model.model);
    inputs.extend(outputs::audio(&a.audio));
    let store = outputs::Output::new("--store", a.at.store.clone(), outputs::Form::File);
    outputs::check(&inputs, &[store])?;
    let emb = a.at.model.open()?;
    // Embed everything first: a bad file (or one without speech) leaves the store untouched.
    let check = a.speech.check();
    let embs = a
        .audio
        .iter()
        .map(|p| emb.embed_speech_file(p, &check))
        .collect::<Result<Vec<_>, _>>()?;
    let mut store = a.at.open_store(&emb, true)?;
    let total = store.enroll(&a.speaker, &store_model(&emb)?, &embs)?;
    println!(
        "enrolled '{}': {} utterance(s) in total, store {}",
        a.speaker,
        total,
        a.at.store.display()
    );
    Ok(())
}
