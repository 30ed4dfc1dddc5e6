//! Evaluators for the exporter's sensitivity driver (EER/minDCF on trials; label-free output
//! SQNR and cosine to fp32 on calibration audio) and the sensitivity bar chart (PNG).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engines::ort::CpuOptions;
use exporter::sensitivity::{
    sha256_hex, EvalError, Evaluate, Measurement, MetricInfo, Row, SensitivityReport,
};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use sha2::{Digest, Sha256};

use crate::audio::fbank::Features;
use crate::audio::wav::read_wav;
use crate::error::Result;
use crate::speaker::config::SpeakerModel;
use crate::speaker::embed::{cosine, Embedder, FrontEnd};
use crate::speaker::eval::{metrics_of, score_trials};
use crate::speaker::metrics::DcfParams;
use crate::speaker::trials::{utterances, Trial};

fn bar(len: usize, what: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template(&format!("{what} {{bar:40}} {{pos}}/{{len}} ({{eta}})"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// Features of each named audio file through the model's front end, and a hash of them all.
fn features_of(
    model: &SpeakerModel,
    files: &[(String, PathBuf)],
    progress: bool,
) -> Result<(Vec<(String, Features)>, String)> {
    let front = FrontEnd::new(model)?;
    let b = bar(files.len(), "features", progress);
    let mut h = Sha256::new();
    let mut out = Vec::with_capacity(files.len());
    for (name, path) in files {
        let audio = read_wav(path)?;
        let f = front.features(path, &audio)?;
        h.update(name.as_bytes());
        h.update((f.frames as u64).to_le_bytes());
        for v in &f.data {
            h.update(v.to_le_bytes());
        }
        out.push((name.clone(), f));
        b.inc(1);
    }
    b.finish_and_clear();
    Ok((out, format!("{:x}", h.finalize())))
}

fn embed_all(
    model: &SpeakerModel,
    label: &str,
    bytes: &[u8],
    feats: &[(String, Features)],
    opts: &CpuOptions,
) -> Result<Vec<Vec<f32>>> {
    let e = Embedder::from_bytes(model.clone(), label, bytes, opts)?;
    feats.iter().map(|(_, f)| e.embed_features(f)).collect()
}

/// EER (percent, the budgeted metric) and minDCF of a speaker model on a trial list. The
/// front end runs once; each model variant only embeds the cached features.
pub struct TrialsEvaluator {
    model: SpeakerModel,
    trials: Vec<Trial>,
    feats: Vec<(String, Features)>,
    dcf: DcfParams,
    opts: CpuOptions,
    fingerprint: String,
}

impl TrialsEvaluator {
    pub fn new(
        model: SpeakerModel,
        trials: Vec<Trial>,
        root: &Path,
        dcf: DcfParams,
        opts: CpuOptions,
        progress: bool,
    ) -> Result<TrialsEvaluator> {
        let files = utterances(&trials, root);
        let (feats, fh) = features_of(&model, &files, progress)?;
        let mut t = String::new();
        for x in &trials {
            t.push_str(&format!("{} {} {}\n", x.target as u8, x.enroll, x.test));
        }
        let fingerprint = format!(
            "trials-eer:{}:{}:p{}-m{}-f{}",
            sha256_hex(t.as_bytes()),
            fh,
            dcf.p_target,
            dcf.c_miss,
            dcf.c_fa
        );
        Ok(TrialsEvaluator {
            model,
            trials,
            feats,
            dcf,
            opts,
            fingerprint,
        })
    }

    fn run(&self, label: &str, bytes: &[u8]) -> Result<Measurement> {
        let emb = embed_all(&self.model, label, bytes, &self.feats, &self.opts)?;
        let map: BTreeMap<String, Vec<f32>> =
            self.feats.iter().map(|(n, _)| n.clone()).zip(emb).collect();
        let scores = score_trials(&self.trials, &map)?;
        let (all, _) = metrics_of(&self.trials, &scores, self.dcf)?;
        let mut extra = BTreeMap::new();
        extra.insert("min_dcf".to_string(), all.min_dcf);
        Ok(Measurement {
            value: 100.0 * all.eer,
            extra,
        })
    }
}

impl Evaluate for TrialsEvaluator {
    fn metric(&self) -> MetricInfo {
        MetricInfo {
            name: "EER".into(),
            unit: "%".into(),
            lower_is_better: true,
            noise_db: false,
        }
    }
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
    fn evaluate(
        &mut self,
        label: &str,
        model: &[u8],
    ) -> std::result::Result<Measurement, EvalError> {
        Ok(self.run(label, model)?)
    }
}

/// Label-free: SQNR (dB, the budgeted metric; higher is better) of a variant's outputs against
/// the fp32 model's outputs on calibration audio, and their mean cosine.
pub struct OutputEvaluator {
    model: SpeakerModel,
    feats: Vec<(String, Features)>,
    reference: Vec<Vec<f32>>,
    opts: CpuOptions,
    fingerprint: String,
}

/// SQNR is capped here (identical outputs would be infinite).
pub const SQNR_CAP_DB: f64 = 200.0;

/// `10 log10(Σ ref² / Σ (ref − out)²)` over all values, and the mean per-row cosine.
pub fn sqnr_and_cosine(reference: &[Vec<f32>], out: &[Vec<f32>]) -> (f64, f64) {
    let (mut sig, mut noise, mut cos) = (0f64, 0f64, 0f64);
    for (r, o) in reference.iter().zip(out) {
        for (a, b) in r.iter().zip(o) {
            sig += (*a as f64).powi(2);
            noise += (*a as f64 - *b as f64).powi(2);
        }
        cos += cosine(r, o);
    }
    let sqnr = if noise == 0.0 {
        SQNR_CAP_DB
    } else {
        (10.0 * (sig / noise).log10()).min(SQNR_CAP_DB)
    };
    (sqnr, cos / reference.len().max(1) as f64)
}

impl OutputEvaluator {
    /// `fp32` is the float model's bytes: its outputs on `audio` are the reference.
    pub fn new(
        model: SpeakerModel,
        fp32: &[u8],
        audio: &[(String, PathBuf)],
        opts: CpuOptions,
        progress: bool,
    ) -> Result<OutputEvaluator> {
        let (feats, fh) = features_of(&model, audio, progress)?;
        let reference = embed_all(&model, "fp32 reference", fp32, &feats, &opts)?;
        Ok(OutputEvaluator {
            model,
            feats,
            reference,
            opts,
            fingerprint: format!("output-sqnr:{fh}"),
        })
    }
}

impl Evaluate for OutputEvaluator {
    fn metric(&self) -> MetricInfo {
        MetricInfo {
            name: "SQNR".into(),
            unit: "dB".into(),
            lower_is_better: false,
            noise_db: true,
        }
    }
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
    fn evaluate(
        &mut self,
        label: &str,
        model: &[u8],
    ) -> std::result::Result<Measurement, EvalError> {
        let out = embed_all(&self.model, label, model, &self.feats, &self.opts)?;
        let (sqnr, cos) = sqnr_and_cosine(&self.reference, &out);
        let mut extra = BTreeMap::new();
        extra.insert("cosine".to_string(), cos);
        Ok(Measurement { value: sqnr, extra })
    }
}

/// Bar chart of a sensitivity report: metric change vs fp32 (top) and deployable size
/// (bottom) for each group quantized alone, with all-int8 (grey) for reference and a line at
/// the fp32 size.
pub fn sensitivity_png(path: &Path, report: &SensitivityReport) -> Result<()> {
    crate::speaker::plot::png_atomic(path, |tmp| draw_sensitivity(tmp, report))
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// One bar panel: a bar per label, the first one grey, and an optional horizontal line.
struct Panel<'a> {
    caption: String,
    y_desc: String,
    values: &'a [f64],
    y: std::ops::Range<f64>,
    color: RGBColor,
    line: Option<f64>,
}

fn bar_panel(area: &Area, labels: &[&str], p: Panel) -> std::result::Result<(), String> {
    let Panel {
        caption,
        y_desc,
        values,
        y,
        color,
        line,
    } = p;
    let n = labels.len() as i32;
    let label_of = |x: &SegmentValue<i32>| match x {
        SegmentValue::CenterOf(i) => labels
            .get(*i as usize)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mut c = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n - 1).into_segmented(), y)
        .map_err(|e| e.to_string())?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len())
        .x_label_formatter(&label_of)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| e.to_string())?;
    c.draw_series(values.iter().enumerate().map(|(i, v)| {
        let fill = if i == 0 {
            RGBColor(120, 120, 120)
        } else {
            color
        };
        let mut b = Rectangle::new(
            [
                (SegmentValue::Exact(i as i32), 0.0),
                (SegmentValue::Exact(i as i32 + 1), *v),
            ],
            fill.filled(),
        );
        b.set_margin(0, 0, 12, 12);
        b
    }))
    .map_err(|e| e.to_string())?;
    if let Some(y) = line {
        c.draw_series(std::iter::once(PathElement::new(
            vec![(SegmentValue::Exact(0), y), (SegmentValue::Exact(n), y)],
            BLACK.stroke_width(2),
        )))
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn draw_sensitivity(tmp: &Path, r: &SensitivityReport) -> std::result::Result<(), String> {
    let rows: Vec<&Row> = std::iter::once(&r.all_int8)
        .chain(r.groups.iter())
        .collect();
    let labels: Vec<&str> = rows
        .iter()
        .map(|x| {
            if std::ptr::eq(*x, &r.all_int8) {
                "all int8"
            } else {
                x.label.as_str()
            }
        })
        .collect();
    let deltas: Vec<f64> = rows.iter().map(|x| x.delta).collect();
    let sizes: Vec<f64> = rows.iter().map(|x| mib(x.deployable_bytes)).collect();
    let width = (160 + 90 * rows.len() as u32).max(800);
    let root = BitMapBackend::new(tmp, (width, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(450);
    let dmin = deltas.iter().copied().fold(0.0f64, f64::min);
    let dmax = deltas.iter().copied().fold(0.0f64, f64::max);
    let pad = ((dmax - dmin) * 0.1).max(1e-3);
    bar_panel(
        &top,
        &labels,
        Panel {
            caption: format!(
                "{}: {} change vs fp32 ({:.3} {}) per group quantized alone",
                r.model, r.metric.name, r.fp32.metric, r.metric.unit
            ),
            y_desc: format!("Δ {} ({})", r.metric.name, r.metric.unit),
            values: &deltas,
            y: (dmin - pad)..(dmax + pad),
            color: RGBColor(200, 60, 50),
            line: None,
        },
    )?;
    let fp = mib(r.fp32.deployable_bytes);
    bar_panel(
        &bottom,
        &labels,
        Panel {
            caption: format!("deployable size (MiB); fp32 {fp:.2} MiB"),
            y_desc: "MiB".into(),
            values: &sizes,
            y: 0.0..fp * 1.08,
            color: RGBColor(50, 110, 190),
            line: Some(fp),
        },
    )?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
