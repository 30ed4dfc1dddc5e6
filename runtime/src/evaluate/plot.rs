//! The sensitivity bar chart (PNG): metric change vs fp32 and deployable size per group
//! quantized alone, all-int8 for reference.

use std::path::Path;

use exporter::sensitivity::{Row, SensitivityReport};
use plotters::prelude::*;

use crate::error::Result;

/// Bar chart of a sensitivity report: metric change vs fp32 (top) and deployable size
/// (bottom) for each group quantized alone, with all-int8 (grey) for reference and a line at
/// the fp32 size.
pub fn sensitivity_png(path: &Path, report: &SensitivityReport) -> Result<()> {
    crate::speaker::plot::png_atomic(path, |tmp| draw_sensitivity(tmp, report))
}

/// The PNG bytes of [`sensitivity_png`]'s chart, for writing with other outputs at once.
pub fn sensitivity_png_bytes(dest: &Path, report: &SensitivityReport) -> Result<Vec<u8>> {
    crate::speaker::plot::render_png(dest, |tmp| draw_sensitivity(tmp, report))
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
