//! `voxq sensitivity` and `voxq autoquant`: set-up (model, calibration table, evaluator,
//! cache) around the exporter's driver, progress bar, and the report files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use calibration::Method;
use engines::ort::CpuOptions;
use exporter::calib_tensors::calibration_tensors;
use exporter::groups::LayerGroups;
use exporter::model::{load, save, to_bytes, SaveOptions};
use exporter::pipeline::read_table;
use exporter::policy::QuantPolicy;
use exporter::sensitivity::{
    autoquant, default_cache_dir, sha256_hex, table_sha256, Budget, Evaluate, Progress,
    SensitivityReport, Study,
};
use indicatif::{ProgressBar, ProgressStyle};
use runtime::calibrate::{calibrate_speaker, read_list};
use runtime::evaluate::{sensitivity_png, OutputEvaluator, TrialsEvaluator};
use runtime::fsutil::{sha256_file, write_atomic};
use runtime::speaker::config::SpeakerModel;
use runtime::speaker::metrics::DcfParams;
use runtime::speaker::trials::read_trials;

use crate::quant::copy_config;
use crate::{AutoquantArgs, SensitivityArgs};

/// Everything a sensitivity run needs, built from the command line.
struct Setup {
    model: SpeakerModel,
    proto: onnx_protobuf::ModelProto,
    model_sha256: String,
    table: calibration::CalibrationTable,
    method: String,
    groups: LayerGroups,
    policy: QuantPolicy,
}

fn opts(threads: usize) -> CpuOptions {
    CpuOptions {
        intra_threads: threads,
        ..CpuOptions::default()
    }
}

/// The calibration table: the one given, else computed on --calib with --method and cached.
fn table_for(
    a: &SensitivityArgs,
    model: &SpeakerModel,
    proto: &onnx_protobuf::ModelProto,
    sha: &str,
    cache: &Path,
) -> Result<(calibration::CalibrationTable, String)> {
    if let Some(t) = &a.table {
        return Ok((read_table(t)?, format!("table {}", t.display())));
    }
    let method: Method = a.method.parse()?;
    let list = read_list(&a.calib, &a.audio_root)?;
    let list_text: String = list.iter().map(|(n, _)| format!("{n}\n")).collect();
    let key = sha256_hex(
        format!(
            "calib-v1|{sha}|{}|{method}|{}|{}",
            sha256_hex(list_text.as_bytes()),
            a.min_channels,
            a.audio_root
                .canonicalize()
                .unwrap_or(a.audio_root.clone())
                .display()
        )
        .as_bytes(),
    );
    let path = cache.join(format!("table-{}.json", &key[..32]));
    if path.is_file() {
        log::info!("calibration table from the cache: {}", path.display());
        return Ok((read_table(&path)?, method.to_string()));
    }
    let tensors = calibration_tensors(proto, a.min_channels)?;
    let (cal, info) = calibrate_speaker(
        model,
        proto,
        &tensors,
        &list,
        2048,
        true,
        &opts(a.threads),
        !a.quiet,
    )?;
    let table = cal.compute(method)?;
    std::fs::create_dir_all(cache)
        .with_context(|| format!("{}: cannot create folder", cache.display()))?;
    write_atomic(&path, table.to_json().as_bytes())?;
    eprintln!(
        "calibrated ({method}) on {} utterances in {:.0} s; table cached at {}",
        info.utterances,
        info.wall_seconds,
        path.display()
    );
    Ok((table, method.to_string()))
}

/// `eer` or `sqnr`, from --metric and whether --trials is given.
fn metric_of(a: &SensitivityArgs) -> Result<&'static str> {
    Ok(match (&a.metric[..], &a.trials) {
        ("eer", Some(_)) | ("auto", Some(_)) => "eer",
        ("eer", None) => bail!("--metric eer needs --trials"),
        ("sqnr", _) | ("auto", None) => "sqnr",
        (m, _) => bail!("--metric: '{m}' is not one of auto, eer, sqnr"),
    })
}

fn setup(a: &SensitivityArgs) -> Result<(Setup, Box<dyn Evaluate>)> {
    let model = SpeakerModel::locate(&a.model)?;
    let proto = load(&model.onnx_path)?;
    let model_sha256 = sha256_file(&model.onnx_path)?;
    if !a.audio_root.is_dir() {
        bail!("{}: audio root is not a folder", a.audio_root.display());
    }
    let groups = LayerGroups::resolve(&proto.graph, &a.groups)?;
    if groups.groups.is_empty() {
        bail!(
            "{}: no layer groups from '{}'",
            model.onnx_path.display(),
            a.groups
        );
    }
    let policy = QuantPolicy {
        target: a.target.parse()?,
        min_channels: a.min_channels,
        ..QuantPolicy::default()
    };
    let metric = metric_of(a)?;
    // every argument is checked above, before the (slow) calibration
    let cache = a.cache.clone().unwrap_or_else(default_cache_dir);
    let (table, method) = table_for(a, &model, &proto, &model_sha256, &cache)?;
    let evaluator: Box<dyn Evaluate> = if metric == "eer" {
        let t = a.trials.as_ref().expect("checked");
        let trials = read_trials(t)?;
        Box::new(TrialsEvaluator::new(
            model.clone(),
            trials,
            &a.audio_root,
            DcfParams::default(),
            opts(a.threads),
            !a.quiet,
        )?)
    } else {
        let list = read_list(&a.calib, &a.audio_root)?;
        Box::new(OutputEvaluator::new(
            model.clone(),
            &to_bytes(&proto)?,
            &list,
            opts(a.threads),
            !a.quiet,
        )?)
    };
    Ok((
        Setup {
            model,
            proto,
            model_sha256,
            table,
            method,
            groups,
            policy,
        },
        evaluator,
    ))
}

fn study<'a>(s: &'a Setup, a: &SensitivityArgs) -> Study<'a> {
    Study {
        model: &s.proto,
        model_name: s.model.config.name.clone(),
        model_sha256: s.model_sha256.clone(),
        table: &s.table,
        table_sha256: table_sha256(&s.table),
        method: s.method.clone(),
        groups: &s.groups,
        policy: s.policy.clone(),
        float16: a.float16,
        cache: if a.no_cache {
            None
        } else {
            Some(a.cache.clone().unwrap_or_else(default_cache_dir))
        },
    }
}

/// A progress callback drawing an indicatif bar over the planned measurements.
fn progress_bar(quiet: bool) -> (ProgressBar, impl FnMut(Progress)) {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("measuring {bar:30} {pos}/{len} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let b2 = bar.clone();
    let mut cached = 0usize;
    let f = move |p: Progress| match p {
        Progress::Start { total } => b2.set_length(total as u64),
        Progress::Done { label, cached: c } => {
            if c {
                cached += 1;
            }
            if b2.position() >= b2.length().unwrap_or(0) {
                b2.inc_length(1);
            }
            b2.inc(1);
            b2.set_message(format!("{label} ({cached} from cache)"));
        }
    };
    (bar, f)
}

fn write_sensitivity(dir: &Path, r: &SensitivityReport) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    write_atomic(&dir.join("sensitivity.md"), r.markdown().as_bytes())?;
    write_atomic(
        &dir.join("sensitivity.json"),
        serde_json::to_string_pretty(r)?.as_bytes(),
    )?;
    sensitivity_png(&dir.join("sensitivity.png"), r)?;
    Ok(())
}

fn cached_summary(r: &SensitivityReport) -> String {
    let rows = std::iter::once(&r.fp32)
        .chain(std::iter::once(&r.all_int8))
        .chain(r.groups.iter());
    let (n, c) = rows.fold((0, 0), |(n, c), x| (n + 1, c + x.cached as usize));
    format!("{c} of {n} measurements from the cache")
}

pub fn cmd_sensitivity(a: &SensitivityArgs) -> Result<()> {
    let (s, mut evaluator) = setup(a)?;
    let st = study(&s, a);
    let (bar, mut cb) = progress_bar(a.quiet);
    let r = st.sensitivity(evaluator.as_mut(), &mut cb)?;
    bar.finish_and_clear();
    print!("{}", r.markdown());
    println!("\n{}", cached_summary(&r));
    write_sensitivity(&a.out, &r)?;
    println!("wrote {}/sensitivity.{{md,json,png}}", a.out.display());
    Ok(())
}

pub fn cmd_autoquant(q: &AutoquantArgs) -> Result<()> {
    let a = &q.common;
    let budget = match (q.max_increase, q.min_sqnr, metric_of(a)?) {
        (Some(x), None, "eer") => Budget::MaxIncrease(x),
        (None, Some(db), "sqnr") => Budget::MinSnrDb(db),
        (_, _, "eer") => {
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
