//! `voxq autoquant`: choose the layer groups to quantize — the smallest model within a metric
//! budget — and write that model with its report (set-up shared with `voxq sensitivity`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use exporter::model::to_bytes;
use exporter::sensitivity::{autoquant, Budget};

use super::quantize::{config_for, model_outputs};
use super::sensitivity::{
    cached_summary, inputs, metric_of, model_onnx, progress_bar, report_outputs, sensitivity_files,
    setup, study, write_report, SensitivityArgs,
};
use crate::args::{real, Metric};
use crate::outputs::{self, Form, Output};

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

/// The model autoquant writes into `--out`: `<stem>-autoquant-<target>.onnx`.
fn out_model(a: &SensitivityArgs, onnx: &Path) -> PathBuf {
    let stem = onnx
        .file_stem()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    a.out.join(format!("{stem}-autoquant-{}.onnx", a.target))
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
    let onnx = model_onnx(a)?;
    let mut outs = report_outputs(a);
    outs.extend(model_outputs("--out's model", &onnx, &out_model(a, &onnx)));
    for f in ["autoquant.md", "autoquant.json"] {
        outs.push(Output::new(
            format!("--out's {f}"),
            a.out.join(f),
            Form::File,
        ));
    }
    outputs::check(&inputs(a), &outs)?;
    let (s, mut evaluator) = setup(a)?;
    let st = study(&s, a);
    let (bar, mut cb) = progress_bar(a.quiet);
    let r = autoquant(&st, evaluator.as_mut(), budget, &mut cb)?;
    bar.finish_and_clear();
    // Every report file and the model rendered first, then written as one.
    let mut files = sensitivity_files(&a.out, &r.sensitivity)?;
    let chosen = st.quantized_model(&r.chosen)?;
    let model_path = out_model(a, &s.model.onnx_path);
    files.push((model_path.clone(), to_bytes(&chosen)?));
    if let Some(cfg) = config_for(
        &s.model.onnx_path,
        &model_path,
        &format!("autoquant-{}", a.target),
    )? {
        files.push((model_path.with_extension("json"), cfg));
    }
    files.push((a.out.join("autoquant.md"), r.markdown().into_bytes()));
    files.push((
        a.out.join("autoquant.json"),
        serde_json::to_string_pretty(&r)?.into_bytes(),
    ));
    write_report(&a.out, &files)?;
    print!("{}", r.markdown());
    println!("\n{}", cached_summary(&r.sensitivity));
    println!(
        "wrote {} and {}/autoquant.{{md,json}}, sensitivity.{{md,json,png}}",
        model_path.display(),
        a.out.display()
    );
    Ok(())
}
