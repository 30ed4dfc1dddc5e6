//! `voxq store-check`: the enrollment database's integrity check (`PRAGMA integrity_check`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq store-check speakers.db";

#[derive(Args)]
pub(crate) struct StoreCheckArgs {
    /// SQLite enrollment store.
    store: PathBuf,
}

/// Runs `PRAGMA integrity_check` and lists the speakers; fails unless the check says `ok`.
pub(crate) fn run(a: &StoreCheckArgs) -> Result<()> {
    let db = runtime::speaker::db::SpeakerDb::open_existing(&a.store)?;
    let check = db.integrity_check()?;
    if check != "ok" {
        bail!(
            "{}: integrity check failed: {}",
            a.store.display(),
            check.replace('\n', "; ")
        );
    }
    let n = db.list()?.len();
    println!("ok");
    eprintln!("{}: integrity ok, {n} speakers", a.store.display());
    Ok(())
}
