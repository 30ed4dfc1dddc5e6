//! `voxq identify`: rank the enrolled speakers by similarity to an audio file.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::args::{SpeechArgs, StoreArgs};

#[derive(Args)]
pub(crate) struct IdentifyArgs {
    #[command(flatten)]
    at: StoreArgs,
    #[command(flatten)]
    speech: SpeechArgs,
    /// How many candidates to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[arg(long)]
    json: bool,
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
