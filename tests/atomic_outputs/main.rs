//! Atomic outputs (issue 8): models, engine folders, tables, reports, plots and score files are
//! written to a temporary name beside the destination and renamed, so an interrupted or failed
//! run never leaves a partial file under the final name.
//!
//! - killed: each writer is SIGKILLed at random moments (10–90% of its measured duration) and
//!   once the moment a temporary name appears (mid-write); afterwards every final name is
//!   absent or holds a complete, valid output; leftovers are only recognisable temporary
//!   names, and the next complete run removes them.
//! - failing: a destination whose rename must fail (an existing non-empty folder under the
//!   final name) gives a one-line error, leaves that folder untouched and no temp file behind.
//! - rerun: an existing good output survives, byte for byte, a rerun that fails midway.
//!
//! Modules: `support` (inputs, output validity, temporary names, the kill loop), `killed`,
//! `renames`, `rerun`.

#[path = "../common/mod.rs"]
mod common;

mod killed;
mod renames;
mod rerun;
mod support;
