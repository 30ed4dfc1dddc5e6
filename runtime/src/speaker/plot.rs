//! DET-curve plots (PNG): miss vs false-alarm probability on normal-deviate axes.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::{Result, RuntimeError};
use crate::speaker::metrics::{probit, OperatingPoint};

/// One curve on a DET plot.
pub struct DetCurve<'a> {
    pub label: String,
    pub points: &'a [OperatingPoint],
    pub eer: f64,
}

const TICKS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9,
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled DejaVu Sans keeps plots independent of the machine's fonts.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn pct(p: f64) -> String {
    let v = p * 100.0;
    if v < 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Draws DET curves to a PNG file (written atomically).
pub fn det_png(path: &Path, title: &str, curves: &[DetCurve<'_>]) -> Result<()> {
    png_atomic(path, |tmp| draw(tmp, title, curves))
}

/// The PNG bytes of a DET plot that will be written to `dest` (see [`render_png`]).
pub fn det_png_bytes(dest: &Path, title: &str, curves: &[DetCurve<'_>]) -> Result<Vec<u8>> {
    render_png(dest, |tmp| draw(tmp, title, curves))
}

/// Renders a PNG with `draw` and returns its bytes. plotters' bitmap backend writes files
/// itself, so it draws to a scratch name beside `dest`'s final target (`.NAME.PID.tmp.png`,
/// removed afterwards), or in the temporary folder when `dest` is a stream (`-`, a FIFO) or
/// its folder does not exist yet.
pub(crate) fn render_png(
    dest: &Path,
    draw: impl FnOnce(&Path) -> std::result::Result<(), String>,
) -> Result<Vec<u8>> {
    register_font();
    let real = match exporter::atomic::destination(dest)? {
        exporter::atomic::Destination::Replace(real)
            if exporter::atomic::parent_dir(&real).is_dir() =>
        {
            real
        }
        // a stream, or a report folder not created yet
        _ => std::env::temp_dir().join("voxq.png"),
    };
    exporter::atomic::remove_stale_temps(&real);
    let tmp = exporter::atomic::parent_dir(&real).join(format!(
        ".{}.{}.tmp.png",
        real.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    // plotters' bitmap backend reports a file it cannot write as a Rust debug dump
    // (`ImageError(IoError(Os { .. }))`): a file made here first gives the system's message,
    // with the user's path rather than the scratch one.
    std::fs::File::create(&tmp).map_err(|e| RuntimeError::Io {
        path: dest.to_path_buf(),
        source: e,
    })?;
    if let Err(reason) = draw(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(RuntimeError::Plot {
            path: dest.to_path_buf(),
            reason: plot_reason(&reason),
        });
    }
    let bytes = std::fs::read(&tmp).map_err(|e| RuntimeError::Io {
        path: tmp.clone(),
        source: e,
    });
    let _ = std::fs::remove_file(&tmp);
    bytes
}

/// Renders a PNG with `draw` ([`render_png`]) and writes it to `path` atomically.
pub(crate) fn png_atomic(
    path: &Path,
    draw: impl FnOnce(&Path) -> std::result::Result<(), String>,
) -> Result<()> {
    let bytes = render_png(path, draw)?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// A plotters error as a reason: the bitmap backend formats its errors with `{:?}`, so an
/// `Os { .. message: "..." }` inside gives its message, and another dump a plain sentence.
fn plot_reason(text: &str) -> String {
    if let Some((_, rest)) = text.split_once("message: \"") {
        if let Some((msg, _)) = rest.split_once('"') {
            return msg.to_string();
        }
    }
    if text.contains('{') || text.contains("Error(") {
        return "the image could not be encoded or written".to_string();
    }
    text.to_string()
}

fn draw(path: &Path, title: &str, curves: &[DetCurve<'_>]) -> std::result::Result<(), String> {
    let lo = probit(TICKS[0]);
    let hi = probit(TICKS[TICKS.len() - 1]);
    let root = BitMapBackend::new(path, (720, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d(lo..hi, lo..hi)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(0)
        .x_desc("False-alarm probability (%)")
        .y_desc("Miss probability (%)")
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| e.to_string())?;
    // Grid and tick labels at round probabilities, placed on the probit scale.
    let grid = RGBColor(220, 220, 220);
    for &t in &TICKS {
        let z = probit(t);
        chart
            .draw_series(LineSeries::new([(z, lo), (z, hi)], grid))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new([(lo, z), (hi, z)], grid))
            .map_err(|e| e.to_string())?;
    }
    let area = chart.plotting_area();
    for &t in &TICKS {
        let z = probit(t);
        let (x, y0) = area.map_coordinate(&(z, lo));
        root.draw(&Text::new(
            pct(t),
            (x - 8, y0 + 6),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(|e| e.to_string())?;
        let (x0, y) = area.map_coordinate(&(lo, z));
        root.draw(&Text::new(
            pct(t),
            (x0 - 34, y - 7),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(|e| e.to_string())?;
    }
    // The EER diagonal.
    chart
        .draw_series(LineSeries::new(
            [(lo, lo), (hi, hi)],
            RGBColor(160, 160, 160),
        ))
        .map_err(|e| e.to_string())?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
    ];
    for (i, c) in curves.iter().enumerate() {
        let color = colors[i % colors.len()];
        let clamp = |p: f64| probit(p.clamp(TICKS[0] / 2.0, 1.0 - TICKS[0] / 2.0)).clamp(lo, hi);
        let pts: Vec<(f64, f64)> = c
            .points
            .iter()
            .map(|p| (clamp(p.p_fa), clamp(p.p_miss)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{} (EER {:.2}%)", c.label, c.eer * 100.0))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn plot_reasons_are_sentences_not_debug_dumps() {
        let dump = r#"backend error: Drawing backend error: ImageError(IoError(Os { code: 2, kind: NotFound, message: "No such file or directory" }))"#;
        assert_eq!(super::plot_reason(dump), "No such file or directory");
        assert_eq!(
            super::plot_reason("backend error: InvalidBuffer { x: 1 }"),
            "the image could not be encoded or written"
        );
        assert_eq!(super::plot_reason("Bad layout"), "Bad layout");
    }
}
