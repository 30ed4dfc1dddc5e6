//! `voxq sensitivity`: quantize one layer group at a time and measure the metric and size of
//! each. Also the set-up `voxq autoquant` shares (model, calibration table, evaluator, cache)
//! around the exporter's driver, the progress bar, and the report files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use calibration::Method;
use clap::Args;
use engines::manifest::OpenvinoSettings;
use engines::ort::CpuOptions;
use exporter::calib_tensors::calibration_tensors;
use exporter::groups::LayerGroups;
use exporter::model::{load, to_bytes};
use exporter::pipeline::read_table;
use exporter::policy::{QuantMode, QuantPolicy};
use exporter::sensitivity::{
    default_cache_dir, sha256_hex, table_sha256, Evaluate, Progress, SensitivityReport, Study,
};
use runtime::calibrate::{calibrate_speaker, read_list};
use runtime::evaluate::{
    sensitivity_png_bytes, EvalEngine, LatencySpec, OutputEvaluator, TrialsEvaluator,
    VariantRunner, WerEvaluator,
};
use runtime::fsutil::{sha256_file, write_atomic};
use runtime::progress::Progress as ProgressBar;
use runtime::speaker::config::SpeakerModel;
use runtime::speaker::metrics::DcfParams;
use runtime::speaker::trials::read_trials;

use super::sensitivity_asr::AsrTarget;
use crate::args::{max_new_tokens, min_channels, threads, threads_help, Metric, QuantTarget};
use crate::outputs::{self, Form, Input, Output};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq sensitivity fixtures/models/campplus.json --calib fixtures/trials/demo_calib.txt --trials fixtures/trials/demo_trials.txt --audio-root .cache/speech --groups preset:campplus --out report/\n  voxq sensitivity fixtures/models/campplus.json --calib fixtures/trials/demo_calib.txt --audio-root .cache/speech --metric sqnr --target ort-cpu --out report/\n  voxq sensitivity .cache/whisper/tiny.en/onnx --part decoder --list asr.tsv --audio-root . --groups preset:whisper-tiny --mode weight-only --out report/\n  voxq sensitivity audio_llm.json --part llm --list asr.tsv --audio-root . --groups preset:smollm2 --mode weight-only --out report/";

#[derive(Args)]
pub(crate) struct SensitivityArgs {
    /// Speaker model (its JSON config, or its ONNX file with a JSON config beside it), or a
    /// speech-to-text model: a Whisper folder or an audio-LLM config (audio_llm.json), one
    /// --part of which is quantized and judged by WER on --list.
    pub(crate) model: PathBuf,
    /// Speaker models: calibration list (audio paths relative to --audio-root); calibrates the
    /// table (unless --table) and feeds the label-free SQNR metric.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Speech-to-text models: the ASR list for the WER metric (`audio<TAB>reference text`,
    /// audio relative to --audio-root).
    #[arg(long)]
    list: Option<PathBuf>,
    /// Speech-to-text models: the part to quantize (Whisper: encoder, decoder; audio LLM:
    /// encoder, projector, llm).
    #[arg(long)]
    pub(crate) part: Option<String>,
    /// full (int8 weights and activations; needs a calibration table), smooth (SmoothQuant
    /// scale migration from each LayerNorm into the weights that read it, then full int8;
    /// needs a table with per-channel maxima), dynamic (per-column int8 MatMul weights, the
    /// activation quantized per run from its own range: DynamicQuantizeLinear + MatMulInteger;
    /// no table; ort-cpu/openvino) or weight-only (per-channel int8 weights, float
    /// activations; no table). Several, comma-separated (e.g. weight-only,smooth,full): every
    /// group is measured in each and autoquant picks a mode per group.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "full")]
    pub(crate) mode: Vec<ModeArg>,
    /// WER metric: most tokens per utterance, greedy [range: [1, 4096]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 224, value_parser = max_new_tokens())]
    max_new_tokens: usize,
    /// Trial list for the EER metric (`<1|0> <enroll> <test> [xlang]`).
    #[arg(long)]
    trials: Option<PathBuf>,
    /// Folder the calibration and trial lists are relative to.
    #[arg(long)]
    audio_root: PathBuf,
    /// eer (needs --trials), sqnr (output SQNR and cosine vs fp32 on the calibration audio),
    /// wer (speech-to-text models, on --list), or auto (wer for a speech-to-text model, eer
    /// when --trials is given, else sqnr).
    #[arg(long, value_enum, default_value_t = Metric::Auto)]
    metric: Metric,
    /// Layer groups: preset:NAME, depth=N, or a group spec JSON file.
    #[arg(long, default_value = "depth=2")]
    groups: String,
    /// Calibration method when the table is computed here: max, percentile[:P], entropy, mse.
    /// autoquant takes several, comma-separated, and keeps the method whose choice is best.
    #[arg(long, value_delimiter = ',', default_value = "entropy")]
    method: Vec<Method>,
    /// Use this calibration table instead of calibrating.
    #[arg(long)]
    table: Option<PathBuf>,
    /// QDQ placement: tensorrt, ort-cpu or openvino.
    #[arg(long, value_enum, ignore_case = true, default_value_t = QuantTarget::Tensorrt)]
    pub(crate) target: QuantTarget,
    /// Convs with fewer input or output channels are left in float [range: [0, 65536]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 16, value_parser = min_channels())]
    min_channels: usize,
    /// Cast the parts left in float to float16.
    #[arg(long)]
    float16: bool,
    /// Folder of cached measurements and tables (default .voxq-cache/sensitivity).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Measure everything again (the cache is neither read nor written).
    #[arg(long)]
    no_cache: bool,
    /// Report folder: sensitivity.{md,json,png} (autoquant adds its model and report).
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("Threads of the engine that evaluates the variants (0 = its default)"))]
    threads: usize,
    /// Engine that evaluates (and, for autoquant's latency objective, times) every variant:
    /// ort (ONNX Runtime) or openvino (OpenVINO on the CPU, f32).
    #[arg(long, value_enum, default_value_t = EvalBackend::Ort)]
    pub(crate) engine: EvalBackend,
    /// Hide progress bars.
    #[arg(long)]
    pub(crate) quiet: bool,
}

/// `--mode` of sensitivity and autoquant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ModeArg {
    Full,
    Smooth,
    Dynamic,
    WeightOnly,
}

impl From<ModeArg> for QuantMode {
    fn from(m: ModeArg) -> QuantMode {
        match m {
            ModeArg::Full => QuantMode::Full,
            ModeArg::Smooth => QuantMode::Smooth,
            ModeArg::Dynamic => QuantMode::Dynamic,
            ModeArg::WeightOnly => QuantMode::WeightOnly,
        }
    }
}

impl SensitivityArgs {
    /// The `--mode` values, each once, in the order given.
    pub(crate) fn modes(&self) -> Vec<QuantMode> {
        let mut v: Vec<QuantMode> = Vec::new();
        for &m in &self.mode {
            let m = QuantMode::from(m);
            if !v.contains(&m) {
                v.push(m);
            }
        }
        if v.is_empty() {
            v.push(QuantMode::Full);
        }
        v
    }

    /// Whether only modes without calibrated ranges (weight-only, dynamic) are asked for: no
    /// table needed or taken.
    pub(crate) fn tableless(&self) -> bool {
        self.modes().iter().all(|m| !m.needs_table())
    }
}

/// `--engine` of sensitivity and autoquant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EvalBackend {
    Ort,
    Openvino,
}

/// Everything a sensitivity run needs, built from the command line.
pub(crate) struct Setup {
    /// The speech-to-text part being quantized (`None`: a speaker model).
    pub(crate) asr: Option<AsrTarget>,
    /// The ONNX file quantized and its name in reports.
    pub(crate) onnx_path: PathBuf,
    name: String,
    proto: onnx_protobuf::ModelProto,
    model_sha256: String,
    /// One calibration table per method (or the one `--table`; none in weight-only mode),
    /// with its method's name.
    pub(crate) tables: Vec<(Option<calibration::CalibrationTable>, String)>,
    groups: LayerGroups,
    policy: QuantPolicy,
}

/// The engine and timing every variant is evaluated with.
pub(crate) fn runner(a: &SensitivityArgs, latency: Option<LatencySpec>) -> VariantRunner {
    let engine = match a.engine {
        EvalBackend::Ort => EvalEngine::Ort(opts(a.threads)),
        EvalBackend::Openvino => EvalEngine::Openvino(OpenvinoSettings {
            inference_precision: "f32".into(),
            threads: a.threads,
            cpu: engines::openvino::cpu_model(),
            isa: engines::openvino::cpu_isa(),
            cache_dir: String::new(),
        }),
    };
    VariantRunner { engine, latency }
}

fn opts(threads: usize) -> CpuOptions {
    CpuOptions {
        intra_threads: threads,
        ..CpuOptions::default()
    }
}

/// The calibration table: the one given, else computed on --calib with `method` and cached.
fn table_for(
    a: &SensitivityArgs,
    method: Method,
    model: &SpeakerModel,
    proto: &onnx_protobuf::ModelProto,
    sha: &str,
    cache: &Path,
) -> Result<(calibration::CalibrationTable, String)> {
    if let Some(t) = &a.table {
        return Ok((read_table(t)?, format!("table {}", t.display())));
    }
    let calib = a
        .calib
        .as_ref()
        .context("--calib: a speaker model calibrates on a calibration list (or give --table)")?;
    let list = read_list(calib, &a.audio_root)?;
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

/// [`Metric::Eer`], [`Metric::Sqnr`] or [`Metric::Wer`], from --metric, the kind of model
/// and whether --trials is given.
pub(crate) fn metric_of(a: &SensitivityArgs) -> Result<Metric> {
    let asr = super::sensitivity_asr::asr_kind(&a.model).is_some();
    Ok(match (a.metric, asr, &a.trials) {
        (Metric::Wer | Metric::Auto, true, _) => Metric::Wer,
        (m, true, _) => bail!(
            "--metric {}: a speech-to-text model is judged by WER (--metric wer)",
            format!("{m:?}").to_lowercase()
        ),
        (Metric::Wer, false, _) => {
            bail!("--metric wer needs a Whisper folder or an audio-LLM config as the model")
        }
        (Metric::Eer | Metric::Auto, false, Some(_)) => Metric::Eer,
        (Metric::Eer, false, None) => bail!("--metric eer needs --trials"),
        (Metric::Sqnr, false, _) | (Metric::Auto, false, None) => Metric::Sqnr,
    })
}

pub(crate) fn setup(
    a: &SensitivityArgs,
    latency: Option<LatencySpec>,
) -> Result<(Setup, Box<dyn Evaluate>)> {
    if a.table.is_some() && a.method.len() > 1 {
        bail!("--table and several --method values: the table's method is fixed; give one or the other");
    }
    if a.tableless() && a.table.is_some() {
        bail!(
            "--table: weight-only and dynamic int8 use no calibrated range, so they take no calibration table"
        );
    }
    if a.modes().contains(&QuantMode::Dynamic) && a.target == QuantTarget::Tensorrt {
        bail!("--mode dynamic: dynamic int8 runs on ONNX Runtime or OpenVINO CPU (--target ort-cpu or openvino); TensorRT has no MatMulInteger/DynamicQuantizeLinear");
    }
    if a.engine == EvalBackend::Openvino {
        engines::openvino::load()?;
    }
    let asr = AsrTarget::locate(&a.model, a.part.as_deref())?;
    let speaker = match &asr {
        Some(_) => None,
        None => {
            if a.part.is_some() {
                bail!(
                    "--part: {} is a speaker model (one ONNX file, no parts)",
                    a.model.display()
                );
            }
            Some(SpeakerModel::locate(&a.model)?)
        }
    };
    let onnx_path = match (&asr, &speaker) {
        (Some(t), _) => t.onnx.clone(),
        (None, Some(m)) => m.onnx_path.clone(),
        (None, None) => bail!("{}: no model", a.model.display()),
    };
    let proto = load(&onnx_path)?;
    let model_sha256 = sha256_file(&onnx_path)?;
    if !a.audio_root.is_dir() {
        bail!("{}: audio root is not a folder", a.audio_root.display());
    }
    let groups = LayerGroups::resolve(&proto.graph, &a.groups)?;
    if groups.groups.is_empty() {
        bail!(
            "{}: no layer groups from '{}'",
            onnx_path.display(),
            a.groups
        );
    }
    let policy = QuantPolicy {
        target: a.target.into(),
        min_channels: a.min_channels,
        mode: a.modes()[0],
        ..QuantPolicy::default()
    };
    let metric = metric_of(a)?;
    if let Some(t) = &asr {
        if !a.tableless() && a.table.is_none() {
            bail!(
                "--table: full int8 of the {} part needs a calibration table of {} (or use --mode weight-only)",
                t.part,
                t.onnx.display()
            );
        }
        if a.trials.is_some() || a.calib.is_some() {
            bail!("--trials/--calib: a speech-to-text model is judged by WER on --list");
        }
    }
    // every argument is checked above, before the (slow) calibration
    let cache = a.cache.clone().unwrap_or_else(default_cache_dir);
    let mut tables = Vec::new();
    if a.tableless() {
        tables.push((None, "none (weight-only/dynamic)".to_string()));
    } else if let (Some(_), Some(t)) = (&asr, &a.table) {
        tables.push((Some(read_table(t)?), format!("table {}", t.display())));
    } else if let Some(m) = &speaker {
        for &meth in &a.method {
            let (t, name) = table_for(a, meth, m, &proto, &model_sha256, &cache)?;
            tables.push((Some(t), name));
        }
    }
    let evaluator: Box<dyn Evaluate> = match (&asr, &speaker, metric, &a.trials) {
        (Some(t), _, _, _) => {
            let list = a
                .list
                .as_ref()
                .context("--list: the WER metric needs an ASR list (audio<TAB>reference)")?;
            let items = runtime::asr_eval::read_asr_list(list)?;
            Box::new(WerEvaluator::new(
                &t.path,
                &t.part,
                items,
                &a.audio_root,
                a.max_new_tokens,
                opts(a.threads),
                !a.quiet,
            )?)
        }
        (None, Some(m), Metric::Eer, Some(tr)) => {
            let trials = read_trials(tr)?;
            Box::new(TrialsEvaluator::new(
                m.clone(),
                trials,
                &a.audio_root,
                DcfParams::default(),
                runner(a, latency),
                !a.quiet,
            )?)
        }
        (None, Some(m), _, _) => {
            let calib = a
                .calib
                .as_ref()
                .context("--calib: the SQNR metric runs the calibration list")?;
            let list = read_list(calib, &a.audio_root)?;
            Box::new(OutputEvaluator::new(
                m.clone(),
                &to_bytes(&proto)?,
                &list,
                runner(a, latency),
                !a.quiet,
            )?)
        }
        (None, None, _, _) => bail!("{}: no model", a.model.display()),
    };
    let name = match (&asr, &speaker) {
        (Some(t), _) => t.name(),
        (None, Some(m)) => m.config.name.clone(),
        (None, None) => String::new(),
    };
    Ok((
        Setup {
            asr,
            onnx_path,
            name,
            proto,
            model_sha256,
            tables,
            groups,
            policy,
        },
        evaluator,
    ))
}

/// The study over calibration table `k` of the setup.
pub(crate) fn study<'a>(s: &'a Setup, a: &SensitivityArgs, k: usize) -> Study<'a> {
    let (table, method) = &s.tables[k];
    Study {
        model: &s.proto,
        model_name: s.name.clone(),
        model_sha256: s.model_sha256.clone(),
        table: table.as_ref(),
        table_sha256: table.as_ref().map(table_sha256).unwrap_or_default(),
        method: method.clone(),
        groups: &s.groups,
        policy: s.policy.clone(),
        modes: a.modes(),
        float16: a.float16,
        cache: if a.no_cache {
            None
        } else {
            Some(a.cache.clone().unwrap_or_else(default_cache_dir))
        },
    }
}

/// A progress callback over the planned measurements (a bar on a terminal, else plain lines).
pub(crate) fn progress_bar(quiet: bool) -> (ProgressBar, impl FnMut(Progress)) {
    let bar = ProgressBar::new(0, "measuring", "variants", !quiet);
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

/// The report files of a sensitivity run in `dir`, rendered: sensitivity.{md,json,png}.
pub(crate) fn sensitivity_files(
    dir: &Path,
    r: &SensitivityReport,
) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let png = dir.join("sensitivity.png");
    Ok(vec![
        (dir.join("sensitivity.md"), r.markdown().into_bytes()),
        (
            dir.join("sensitivity.json"),
            serde_json::to_string_pretty(r)?.into_bytes(),
        ),
        (png.clone(), sensitivity_png_bytes(&png, r)?),
    ])
}

/// Creates the report folder `dir` and writes `files` into it as one (a failure leaves none).
pub(crate) fn write_report(dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    // autoquant's model folder (and an audio LLM's llm/ in it)
    for (p, _) in files {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create folder", parent.display()))?;
        }
    }
    let refs: Vec<(&Path, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_path(), b.as_slice()))
        .collect();
    outputs::write_all(&refs)
}

/// What a sensitivity or autoquant run reads: the model and its config, the calibration list
/// and its audio, the trial list and its audio, the table. A list that cannot be read adds no
/// audio here; the run's own error names it where the list is used.
pub(crate) fn inputs(a: &SensitivityArgs) -> Vec<Input> {
    if let Ok(Some(t)) = AsrTarget::locate(&a.model, a.part.as_deref()) {
        let mut v = t.inputs(a.list.as_deref().unwrap_or(Path::new("")), &a.audio_root);
        if a.list.is_none() {
            v.pop();
        }
        if let Some(t) = &a.table {
            v.push(Input::new("the calibration table (--table)", t));
        }
        return v;
    }
    let mut v = outputs::speaker_model(&a.model);
    if let Some(calib) = &a.calib {
        v.push(Input::new("the calibration list", calib));
        for (_, p) in read_list(calib, &a.audio_root).unwrap_or_default() {
            v.push(Input::new("an audio file of the calibration list", p));
        }
    }
    if let Some(t) = &a.trials {
        v.push(Input::new("the trial list", t));
        let mut seen = std::collections::BTreeSet::new();
        for t in read_trials(t).unwrap_or_default() {
            for u in [t.enroll, t.test] {
                if seen.insert(u.clone()) {
                    v.push(Input::new(
                        "an audio file of the trial list",
                        a.audio_root.join(u),
                    ));
                }
            }
        }
    }
    if let Some(t) = &a.table {
        v.push(Input::new("the calibration table (--table)", t));
    }
    v
}

/// The ONNX file of the model argument (its config read, the model not loaded).
pub(crate) fn model_onnx(a: &SensitivityArgs) -> Result<PathBuf> {
    if let Some(t) = AsrTarget::locate(&a.model, a.part.as_deref())? {
        return Ok(t.onnx);
    }
    Ok(SpeakerModel::locate(&a.model)?.onnx_path)
}

/// The report folder `--out` and the sensitivity files in it.
pub(crate) fn report_outputs(a: &SensitivityArgs) -> Vec<Output> {
    let mut v = vec![Output::new("--out", a.out.clone(), Form::Into)];
    for f in ["sensitivity.md", "sensitivity.json", "sensitivity.png"] {
        v.push(Output::new(
            format!("--out's {f}"),
            a.out.join(f),
            Form::File,
        ));
    }
    v
}

pub(crate) fn cached_summary(r: &SensitivityReport) -> String {
    let rows = std::iter::once(&r.fp32)
        .chain(std::iter::once(&r.all_int8))
        .chain(r.groups.iter());
    let (n, c) = rows.fold((0, 0), |(n, c), x| (n + 1, c + x.cached as usize));
    format!("{c} of {n} measurements from the cache")
}

pub(crate) fn run(a: &SensitivityArgs) -> Result<()> {
    if a.method.len() > 1 {
        bail!("--method: sensitivity takes one calibration method (autoquant compares several)");
    }
    outputs::check(&inputs(a), &report_outputs(a))?;
    let (s, mut evaluator) = setup(a, None)?;
    let st = study(&s, a, 0);
    let (bar, mut cb) = progress_bar(a.quiet);
    let r = st.sensitivity(evaluator.as_mut(), &mut cb)?;
    bar.finish_and_clear();
    print!("{}", r.markdown());
    println!("\n{}", cached_summary(&r));
    write_report(&a.out, &sensitivity_files(&a.out, &r)?)?;
    println!("wrote {}/sensitivity.{{md,json,png}}", a.out.display());
    Ok(())
}
