//! `voxq eval`: EER and minDCF of a model on a trial list, with score file, metrics JSON,
//! embeddings and DET curve on request.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use runtime::speaker::det::split_scores;
use runtime::speaker::eval::{embeddings_text, evaluate, scores_text};
use runtime::speaker::metrics::{operating_points, DcfParams};
use runtime::speaker::plot::{det_png_bytes, DetCurve};
use runtime::speaker::trials::read_trials;

use crate::args::{real_open, ModelArgs};
use crate::outputs::{self, Input, Output};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq eval --model fixtures/models/campplus.json --trials fixtures/trials/trials.txt --audio-root .cache/speech\n  voxq eval --model out/demo/engines/autoquant --trials fixtures/trials/demo_trials.txt --audio-root .cache/speech --scores s.txt --det det.png --json metrics.json";

#[derive(Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Trial list: `<1|0> <enroll> <test> [xlang]` per line.
    #[arg(long)]
    trials: PathBuf,
    /// Folder the trial list's paths are relative to.
    #[arg(long)]
    audio_root: PathBuf,
    /// Write a score file here.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Write a DET-curve PNG here.
    #[arg(long)]
    det: Option<PathBuf>,
    /// Write the metrics as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write per-utterance embeddings (`name<TAB>values`) here.
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// Target prior for minDCF [range: (0, 1)].
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.01, value_parser = real_open(0.0, 1.0))]
    p_target: f64,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn run(a: &EvalArgs) -> Result<()> {
    let trials = read_trials(&a.trials)?;
    let mut inputs = outputs::speaker_model(&a.model.model);
    inputs.push(Input::new("the trial list", &a.trials));
    let mut seen = std::collections::BTreeSet::new();
    for t in &trials {
        for u in [&t.enroll, &t.test] {
            if seen.insert(u) {
                inputs.push(Input::new(
                    "an audio file of the trial list",
                    a.audio_root.join(u),
                ));
            }
        }
    }
    let outs: Vec<Output> = [
        ("--scores", &a.scores),
        ("--json", &a.json),
        ("--embeddings", &a.embeddings),
        ("--det", &a.det),
    ]
    .into_iter()
    .filter_map(|(label, p)| outputs::stream(label, p))
    .collect();
    outputs::check(&inputs, &outs)?;
    let emb = a.model.open()?;
    let mut say = outputs::summary(&outs);
    if !a.audio_root.is_dir() {
        bail!("{}: audio root is not a folder", a.audio_root.display());
    }
    let dcf = DcfParams {
        p_target: a.p_target,
        ..DcfParams::default()
    };
    let ev = evaluate(&emb, &trials, &a.audio_root, dcf, !a.quiet)?;
    writeln!(
        say,
        "model {}: {} trials ({} target, {} non-target) over {} utterances",
        ev.model, ev.trials, ev.all.targets, ev.all.nontargets, ev.utterances
    )?;
    writeln!(
        say,
        "EER = {:.3}%  minDCF(p={}) = {:.4}  EER threshold = {:.4}",
        ev.all.eer * 100.0,
        a.p_target,
        ev.all.min_dcf,
        ev.all.eer_threshold
    )?;
    if let Some(x) = &ev.cross_language {
        writeln!(
            say,
            "cross-language targets ({}): EER = {:.3}%  minDCF = {:.4}",
            x.targets,
            x.eer * 100.0,
            x.min_dcf
        )?;
    }
    // Every output rendered first, then all written as one: a failure leaves none of them.
    let mut files: Vec<(&Path, Vec<u8>)> = Vec::new();
    if let Some(p) = &a.scores {
        files.push((p, scores_text(&trials, &ev.scores)));
    }
    if let Some(p) = &a.json {
        files.push((p, serde_json::to_string_pretty(&ev)?.into_bytes()));
    }
    if let Some(p) = &a.embeddings {
        files.push((p, embeddings_text(&ev.embeddings)));
    }
    if let Some(p) = &a.det {
        let (tar, non) = split_scores(&trials, &ev.scores);
        let pts = operating_points(&tar, &non)?;
        let png = det_png_bytes(
            p,
            &format!("DET: {}", ev.model),
            &[DetCurve {
                label: ev.model.clone(),
                points: &pts,
                eer: ev.all.eer,
            }],
        )?;
        files.push((p, png));
    }
    let files: Vec<(&Path, &[u8])> = files.iter().map(|(p, b)| (*p, b.as_slice())).collect();
    outputs::write_all(&files)
}
