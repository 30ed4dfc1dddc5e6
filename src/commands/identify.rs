//! `voxq identify`: rank the enrolled speakers by similarity to an audio file.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::args::{top, SpeechArgs, StoreArgs};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq identify --model fixtures/models/campplus.json --store speakers.db --top 3 test.wav";

#[derive(Args)]
pub(crate) struct IdentifyArgs {
    #[command(flatten)]
    at: StoreArgs,
    #[command(flatten)]
    speech: SpeechArgs,
    /// How many candidates to list [range: [1, 1000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 5, value_parser = top())]
    top: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The audio file (WAV, FLAC, MP3 or Ogg Vorbis) to identify.
    audio: PathBuf,
}

pub(crate) fn run(a: &IdentifyArgs) -> Result<()> {
    let emb = a.at.model.open()?;
    let store = a.at.open_store(&emb, false)?;
    let e = emb.embed_speech_file(&a.audio, &a.speech.check())?;
    let top = store.identify(emb.model_sha256()?, &e, a.top.max(1))?;
    if top.is_empty() {
        bail!(
            "{}: no speakers enrolled with this model",
            a.at.store.display()
        );
    }
    if a.json {
        println!("{}", serde_json::to_string(&top)?);
    } else {
        for (i, c) in top.iter().enumerate() {
            println!("{}. {} {:.4}", i + 1, c.speaker, c.score);
        }
    }
    Ok(())
}
