//! `voxq calibrate`: activation ranges from real audio into calibration table(s), one per
//! method, and optionally a TensorRT calibration cache.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use calibration::Method;
use clap::Args;
use engines::ort::CpuOptions;
use exporter::calib_tensors::calibration_tensors;
use exporter::model::load;
use runtime::calibrate::{calibrate_speaker, read_list};
use runtime::speaker::config::SpeakerModel;

use super::mib;
use crate::args::{bins, min_channels, ModelArgs};
use crate::outputs::{self, Form, Input, Output};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq calibrate --model fixtures/models/campplus.json --calib fixtures/trials/demo_calib.txt --audio-root .cache/speech --method entropy --out out/demo/entropy.json\n  voxq calibrate --model fixtures/models/campplus.json --calib fixtures/trials/calib.txt --audio-root .cache/speech --method entropy,percentile:99.999,mse,max --out tables/ --trt-cache c.cache";

#[derive(Args)]
pub(crate) struct CalibrateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Calibration list: one audio path per line, relative to --audio-root.
    #[arg(long)]
    calib: PathBuf,
    /// Folder the calibration list's paths are relative to.
    #[arg(long)]
    audio_root: PathBuf,
    /// Calibration method(s): max, percentile[:P] (P in (0, 100], default 99.99), entropy, mse
    /// (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_value = "entropy")]
    method: Vec<Method>,
    /// Output table (one method), or a folder that gets `<method>.json` per method.
    #[arg(long)]
    out: PathBuf,
    /// Also write the first method's table as a TensorRT calibration cache.
    #[arg(long)]
    trt_cache: Option<PathBuf>,
    /// Histogram bins per tensor [range: [128, 65536]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 2048, value_parser = bins())]
    bins: usize,
    /// One pass instead of two (abs-max, then histograms at that range): half the time,
    /// coarser histograms for entropy/MSE/percentile.
    #[arg(long)]
    single_pass: bool,
    /// Convs with fewer input or output channels are left in float [range: [0, 65536]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 16, value_parser = min_channels())]
    min_channels: usize,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Whether `--out` is a folder of `<method>.json` tables: several methods, or a path ending in
/// `/` (README: `--out tables/`). Otherwise it is the one table file (an existing folder there
/// is refused, never written into by surprise).
fn out_is_folder(a: &CalibrateArgs) -> bool {
    a.method.len() > 1 || a.out.to_string_lossy().ends_with('/')
}

/// The table file of method `m` under `--out`.
fn table_path(a: &CalibrateArgs, m: &Method) -> PathBuf {
    if out_is_folder(a) {
        a.out
            .join(format!("{}.json", m.to_string().replace(':', "-")))
    } else {
        a.out.clone()
    }
}

pub(crate) fn run(a: &CalibrateArgs) -> Result<()> {
    let methods = &a.method;
    if methods.is_empty() {
        bail!("--method: give at least one calibration method");
    }
    let list = read_list(&a.calib, &a.audio_root)?;
    let mut inputs = outputs::speaker_model(&a.model.model);
    inputs.push(Input::new("the calibration list", &a.calib));
    inputs.extend(
        list.iter()
            .map(|(_, p)| Input::new("an audio file of the calibration list", p)),
    );
    let mut outs = Vec::new();
    if out_is_folder(a) {
        outs.push(Output::new("--out", a.out.clone(), Form::Into));
    }
    for m in methods {
        let label = if out_is_folder(a) {
            format!("the {m} table in --out")
        } else {
            "--out".into()
        };
        outs.push(Output::new(label, table_path(a, m), Form::File));
    }
    if let Some(p) = &a.trt_cache {
        outs.push(Output::new("--trt-cache", p.clone(), Form::File));
    }
    outputs::check(&inputs, &outs)?;
    let model = SpeakerModel::locate(&a.model.model)?;
    let proto = load(&model.onnx_path)?;
    // Ranges for every tensor either placement may quantize, so one table serves both.
    let tensors = calibration_tensors(&proto, a.min_channels)?;
    let opts = CpuOptions {
        intra_threads: a.model.threads,
        ..CpuOptions::default()
    };
    let (cal, info) = calibrate_speaker(
        &model,
        &proto,
        &tensors,
        &list,
        a.bins,
        !a.single_pass,
        &opts,
        !a.quiet,
    )?;
    // Every table computed first, then all written as one: a failure leaves none of them.
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut done = Vec::new();
    for (i, m) in methods.iter().enumerate() {
        let table = cal.compute(*m)?;
        let path = table_path(a, m);
        done.push(format!(
            "wrote {} ({m}, {} tensors)",
            path.display(),
            table.tensors.len()
        ));
        files.push((path, table.to_json().into_bytes()));
        if i == 0 {
            if let Some(p) = &a.trt_cache {
                files.push((p.clone(), table.to_trt_cache().into_bytes()));
                done.push(format!(
                    "wrote {} (TensorRT calibration cache, {m})",
                    p.display()
                ));
            }
        }
    }
    if out_is_folder(a) {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("{}: cannot create folder", a.out.display()))?;
    }
    let refs: Vec<(&Path, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_path(), b.as_slice()))
        .collect();
    outputs::write_all(&refs)?;
    for line in done {
        println!("{line}");
    }
    println!(
        "calibration: {} utterances ({:.0} s of audio) x {} pass(es), {} tensors, {:.1} s wall, peak RSS {:.0} MiB, observers {:.1} MiB",
        info.utterances,
        info.audio_seconds,
        info.passes,
        info.tensors,
        info.wall_seconds,
        info.peak_rss_mb,
        mib(info.observer_bytes as u64)
    );
    Ok(())
}
