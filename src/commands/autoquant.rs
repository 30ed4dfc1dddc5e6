//! `voxq autoquant`: choose the layer groups to quantize — the smallest model within a metric
//! budget — and write that model with its report (set-up shared with `voxq sensitivity`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use exporter::model::to_bytes;
use exporter::policy::QuantMode;
use exporter::sensitivity::{autoquant, AutoquantReport, Budget, Objective};
use runtime::evaluate::{LatencySpec, LATENCY_KEY};

use super::quantize::{config_for, model_outputs};
use super::sensitivity::{
    cached_summary, inputs, metric_of, model_onnx, progress_bar, report_outputs, sensitivity_files,
    setup, study, write_report, SensitivityArgs,
};
use super::sensitivity_asr::AsrTarget;
use crate::args::{int, real, Metric};
use crate::outputs::{self, Form, Output};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq autoquant fixtures/models/campplus.json --calib fixtures/trials/demo_calib.txt --trials fixtures/trials/demo_trials.txt --audio-root .cache/speech --groups preset:campplus --table out/demo/entropy.json --target ort-cpu --max-increase 0.10 --out out/demo/autoquant\n  voxq autoquant fixtures/models/campplus.json --calib fixtures/trials/demo_calib.txt --audio-root .cache/speech --metric sqnr --min-sqnr 30 --out report/";

#[derive(Args)]
pub(crate) struct AutoquantArgs {
    #[command(flatten)]
    common: SensitivityArgs,
    /// Largest allowed EER or WER increase in percentage points (0.10 = +0.10% absolute)
    /// [range: [0, 100]].
    #[arg(long, allow_hyphen_values = true, value_parser = real(0.0, 100.0))]
    max_increase: Option<f64>,
    /// Smallest allowed output SQNR in dB (with --metric sqnr) [range: [0, 200]].
    #[arg(long, allow_hyphen_values = true, value_parser = real(0.0, 200.0))]
    min_sqnr: Option<f64>,
    /// What to make smallest within the budget: size (deployable bytes) or latency (median
    /// of measured runs on --engine with --threads, batch 1, --latency-frames long).
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Size)]
    objective: ObjectiveArg,
    /// Input length the latency objective times, in 10 ms frames [range: [1, 30000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 300, value_parser = int(1usize, 30000))]
    latency_frames: usize,
    /// Timed runs per variant for the latency objective (the median counts) [range: [1, 1000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 30, value_parser = int(1usize, 1000))]
    latency_runs: usize,
}

/// `--objective` of autoquant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ObjectiveArg {
    Size,
    Latency,
}

/// Markdown: the choice per calibration method, the kept one marked.
fn methods_table(
    rs: &[(String, AutoquantReport, f64)],
    best: usize,
    objective: &Objective,
) -> String {
    let mut s = String::from(
        "\nCalibration methods compared (the search ran once per method):\n\n| method | chosen groups | metric | objective | kept |\n|---|---:|---:|---:|---|\n",
    );
    for (k, (m, r, c)) in rs.iter().enumerate() {
        let (v, unit) = objective.shown(*c);
        s.push_str(&format!(
            "| {m} | {} of {} | {:.4} {} | {v:.2} {unit} | {} |\n",
            r.chosen.len(),
            r.chosen.len() + r.kept_float.len(),
            r.chosen_row.metric,
            r.sensitivity.metric.unit,
            if k == best { "yes" } else { "" }
        ));
    }
    s
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
        (Some(x), None, Metric::Eer | Metric::Wer) => Budget::MaxIncrease(x),
        (_, _, Metric::Wer) => {
            bail!("the WER metric takes its budget as --max-increase X (percentage points)")
        }
        (None, Some(db), Metric::Sqnr) => Budget::MinSnrDb(db),
        (_, _, Metric::Eer) => {
            bail!("the EER metric takes its budget as --max-increase X (percentage points)")
        }
        _ => bail!("the SQNR metric takes its budget as --min-sqnr DB"),
    };
    let onnx = model_onnx(a)?;
    let mut outs = report_outputs(a);
    let asr = AsrTarget::locate(&a.model, a.part.as_deref())?;
    if asr.is_some() {
        outs.push(Output::new(
            "--out's model folder",
            a.out.join("model"),
            Form::Into,
        ));
    } else {
        outs.extend(model_outputs("--out's model", &onnx, &out_model(a, &onnx)));
    }
    for f in ["autoquant.md", "autoquant.json"] {
        outs.push(Output::new(
            format!("--out's {f}"),
            a.out.join(f),
            Form::File,
        ));
    }
    outputs::check(&inputs(a), &outs)?;
    let (objective, latency) = match q.objective {
        ObjectiveArg::Size => (Objective::Size, None),
        ObjectiveArg::Latency => (
            Objective::Latency {
                key: LATENCY_KEY.into(),
            },
            Some(LatencySpec {
                frames: q.latency_frames,
                runs: q.latency_runs,
            }),
        ),
    };
    let (s, mut evaluator) = setup(a, latency)?;
    // one search per calibration method; the cheapest choice wins (then the better metric)
    let mut results = Vec::new();
    for k in 0..s.tables.len() {
        let st = study(&s, a, k);
        let (bar, mut cb) = progress_bar(a.quiet);
        let r = autoquant(&st, evaluator.as_mut(), budget, &objective, &mut cb)?;
        bar.finish_and_clear();
        let c = objective.cost(&r.chosen_row)?;
        results.push((s.tables[k].1.clone(), r, c));
    }
    let lower = |r: &AutoquantReport| {
        if r.sensitivity.metric.lower_is_better {
            r.chosen_row.metric
        } else {
            -r.chosen_row.metric
        }
    };
    let best = (0..results.len())
        .min_by(|&i, &j| {
            let (a, b) = (&results[i], &results[j]);
            a.2.total_cmp(&b.2)
                .then(lower(&a.1).total_cmp(&lower(&b.1)))
        })
        .unwrap_or(0);
    let comparison = (results.len() > 1).then(|| methods_table(&results, best, &objective));
    let st = study(&s, a, best);
    let r = results.swap_remove(best).1;
    // Every report file and the model rendered first, then written as one.
    let mut files = sensitivity_files(&a.out, &r.sensitivity)?;
    let chosen_modes: Vec<(String, QuantMode)> = r
        .chosen
        .iter()
        .map(|g| {
            let m = r.chosen_modes.get(g).and_then(|m| m.parse().ok());
            (g.clone(), m.unwrap_or(st.policy.mode))
        })
        .collect();
    let chosen = st.quantized_model_modes(&chosen_modes)?;
    let model_path = match &s.asr {
        Some(t) => {
            let dir = a.out.join("model");
            let note = format!(
                "voxq autoquant: part {} quantized ({}, {} of {} groups: {}); WER {:.2}% vs fp32 {:.2}%",
                t.part,
                match a.modes().as_slice() {
                    [QuantMode::WeightOnly] => "weight-only int8".to_string(),
                    [QuantMode::Full] => format!("int8, {} placement", a.target),
                    [QuantMode::Smooth] => format!("smooth int8, {} placement", a.target),
                    [QuantMode::Dynamic] => "dynamic int8".to_string(),
                    _ => format!(
                        "a mode per group ({}), {} placement",
                        r.chosen_modes
                            .iter()
                            .map(|(g, m)| format!("{g}: {m}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        a.target
                    ),
                },
                r.chosen.len(),
                r.chosen.len() + r.kept_float.len(),
                r.chosen.join(", "),
                r.chosen_row.metric,
                r.sensitivity.fp32.metric
            );
            files.extend(t.folder_files(&dir, to_bytes(&chosen)?, &note)?);
            dir
        }
        None => {
            let model_path = out_model(a, &s.onnx_path);
            files.push((model_path.clone(), to_bytes(&chosen)?));
            if let Some(cfg) = config_for(
                &s.onnx_path,
                &model_path,
                &format!("autoquant-{}", a.target),
            )? {
                files.push((model_path.with_extension("json"), cfg));
            }
            model_path
        }
    };
    let mut md = r.markdown();
    if let Some(c) = &comparison {
        md.push_str(c);
    }
    files.push((a.out.join("autoquant.md"), md.clone().into_bytes()));
    files.push((
        a.out.join("autoquant.json"),
        serde_json::to_string_pretty(&r)?.into_bytes(),
    ));
    write_report(&a.out, &files)?;
    print!("{md}");
    println!("\n{}", cached_summary(&r.sensitivity));
    println!(
        "wrote {} and {}/autoquant.{{md,json}}, sensitivity.{{md,json,png}}",
        model_path.display(),
        a.out.display()
    );
    Ok(())
}
