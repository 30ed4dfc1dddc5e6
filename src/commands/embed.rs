//! `voxq embed`: speaker embeddings of audio files (WAV, FLAC, MP3, Ogg Vorbis), as `path<TAB>values` lines.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use runtime::speaker::eval::{embedding_line, write_embeddings};

use crate::args::ModelArgs;
use crate::outputs;

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq embed --model fixtures/models/campplus.json a.wav b.wav\n  voxq embed --model out/demo/engines/autoquant --out emb.tsv a.wav b.wav";

#[derive(Args)]
pub(crate) struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Write `path<TAB>values` lines here (atomically) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Audio files: WAV, FLAC, MP3 or Ogg Vorbis.
    #[arg(required = true)]
    audio: Vec<PathBuf>,
}

pub(crate) fn run(a: &EmbedArgs) -> Result<()> {
    let mut inputs = outputs::speaker_model(&a.model.model);
    inputs.extend(outputs::audio(&a.audio));
    outputs::check(
        &inputs,
        &outputs::stream("--out", &a.out)
            .into_iter()
            .collect::<Vec<_>>(),
    )?;
    let emb = a.model.open()?;
    let mut all = std::collections::BTreeMap::new();
    let mut order = Vec::new();
    for p in &a.audio {
        let name = p.display().to_string();
        all.insert(name.clone(), emb.embed_file(p)?);
        order.push(name);
    }
    match &a.out {
        Some(path) => {
            write_embeddings(path, &all)?;
            eprintln!("wrote {} embeddings to {}", all.len(), path.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            for name in order {
                writeln!(out, "{}", embedding_line(&name, &all[&name]))?;
            }
        }
    }
    Ok(())
}
