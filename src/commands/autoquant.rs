//! `voxq autoquant`: choose the layer groups to quantize — the smallest model within a metric
//! budget — and write that model with its report (set-up shared with `voxq sensitivity`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use exporter::model::{save, SaveOptions};
use exporter::sensitivity::{autoquant, Budget};
use runtime::fsutil::write_atomic;

use super::quantize::copy_config;
use super::sensitivity::{
    cached_summary, metric_of, progress_bar, setup, study, write_sensitivity, SensitivityArgs,
};
use crate::args::{real, Metric};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq autoquant fixtures/models/campplus.json --calib fixtures/trials/demo_calib.txt --trials fixtures/trials/demo_trials.txt --audio-root .cache/speech --groups preset:campplus --table out/demo/entropy.json --target ort-cpu --max-increase 0.10 --out out/demo/autoquant\n  voxq autoquant fixtures/models/campplus.json --calib fixtures/trials/demo_calib.txt --audio-root .cache/speech --metric sqnr --min-sqnr 30 --out report/";

#[derive(Args)]
pub(crate) struct AutoquantArgs {
    #[command(flatten)]
    common: SensitivityArgs,
    /// Largest allowed EER increase in percentage points (0.10 = +0.10% absolute)
    /// [range: [0, 100]].
    #[arg(long, allow_hyphen_values = true, value_parser = real(0.0, 100.0))]
    max_increase: Option<f64>,
    /// Smallest allowed output SQNR in dB (with --metric sqnr) [range: [0, 200]].
    #[arg(long, allow_hyphen_values = true, value_parser = real(0.0, 200.0))]
    min_sqnr: Option<f64>,
}

pub(crate) fn run(q: &AutoquantArgs) -> Result<()> {
    let a = &q.common;
    let budget = match (q.max_increase, q.min_sqnr, metric_of(a)?) {
        (Some(x), None, Metric::Eer) => Budget::MaxIncrease(x),
        (None, Some(db), Metric::Sqnr) => Budget::MinSnrDb(db),
        (_, _, Metric::Eer) => {
            bail!("the EER metric takes its budget as --max-increase X (percentage points)")
        }
        _ => bail!("the SQNR metric takes its budget as --min-sqnr DB"),
    };
    let (s, mut evaluator) = setup(a)?;
    let st = study(&s, a);
    let (bar, mut cb) = progress_bar(a.quiet);
    let r = autoquant(&st, evaluator.as_mut(), budget, &mut cb)?;
    bar.finish_and_clear();
    write_sensitivity(&a.out, &r.sensitivity)?;
    let chosen = st.quantized_model(&r.chosen)?;
    let stem = s
        .model
        .onnx_path
        .file_stem()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let out_model: PathBuf = a.out.join(format!("{stem}-autoquant-{}.onnx", a.target));
    save(&chosen, &out_model, &SaveOptions::inline())?;
    copy_config(
        &s.model.onnx_path,
        &out_model,
        &format!("autoquant-{}", a.target),
    )?;
    write_atomic(&a.out.join("autoquant.md"), r.markdown().as_bytes())?;
    write_atomic(
        &a.out.join("autoquant.json"),
        serde_json::to_string_pretty(&r)?.as_bytes(),
    )?;
    print!("{}", r.markdown());
    println!("\n{}", cached_summary(&r.sensitivity));
    println!(
        "wrote {} and {}/autoquant.{{md,json}}, sensitivity.{{md,json,png}}",
        out_model.display(),
        a.out.display()
    );
    Ok(())
}
