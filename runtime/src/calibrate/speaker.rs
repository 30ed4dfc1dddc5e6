//! Speaker-model calibration over real audio: the model's activations stream through ONNX
//! Runtime into the calibration observers, one utterance at a time, so memory does not grow
//! with the set.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use calibration::Calibrator;
use engines::ort::{cpu_session_from_bytes_variable_shapes, first_line, CpuOptions};
use ort::value::Tensor;
use serde::Serialize;

use crate::audio::decode::read_audio;
use crate::bench::peak_rss_mb;
use crate::error::{Result, RuntimeError};
use crate::progress::Progress;
use crate::speaker::config::SpeakerModel;
use crate::speaker::embed::FrontEnd;

/// Longest stretch of features one calibration run takes (10 s at 10 ms frames): longer
/// utterances are cut into equal segments of at most this many frames. Every activation is a
/// model output during calibration, so one run holds all of them at once and its memory grows
/// with the input's length; 10 s is well above the crops speaker models are trained on, and
/// the features are computed (and mean-normalised) over the whole utterance first.
pub const MAX_SEGMENT_FRAMES: usize = 1000;

/// `feats` cut into `ceil(frames / max)` segments of equal length (the last takes the rest).
fn segments(feats: &crate::audio::fbank::Features, max: usize) -> Vec<(usize, Vec<f32>)> {
    let n = feats.frames.div_ceil(max.max(1)).max(1);
    let len = feats.frames.div_ceil(n);
    (0..n)
        .map(|k| {
            let a = k * len;
            let b = ((k + 1) * len).min(feats.frames);
            (b - a, feats.data[a * feats.dim..b * feats.dim].to_vec())
        })
        .filter(|(f, _)| *f > 0)
        .collect()
}

/// What a calibration run measured, besides the statistics themselves.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationRunInfo {
    pub utterances: usize,
    /// Passes over the calibration set (2: abs-max first, then histograms at that range).
    pub passes: usize,
    pub audio_seconds: f64,
    pub tensors: usize,
    pub wall_seconds: f64,
    pub peak_rss_mb: f64,
    pub observer_bytes: usize,
}

/// Runs `audio` through `model` with `tensors` exposed as outputs and feeds every exposed
/// tensor into a calibrator with `bins` histogram bins.
///
/// With `two_pass`, a first pass finds each tensor's abs-max and the second builds histograms
/// over exactly that range; a single pass must grow its histograms as larger values arrive,
/// which halves their resolution at each growth and blunts the entropy and MSE searches.
/// Utterances longer than [`MAX_SEGMENT_FRAMES`] run as equal segments.
#[allow(clippy::too_many_arguments)]
pub fn calibrate_speaker(
    model: &SpeakerModel,
    proto: &onnx_protobuf::ModelProto,
    tensors: &BTreeSet<String>,
    audio: &[(String, PathBuf)],
    bins: usize,
    two_pass: bool,
    opts: &CpuOptions,
    progress: bool,
) -> Result<(Calibrator, CalibrationRunInfo)> {
    let t0 = Instant::now();
    let onnx = &model.onnx_path;
    let exposed = exporter::passes::expose_activations(proto, tensors)?;
    let bytes = exporter::model::to_bytes(&exposed)?;
    // Every activation is an output: ONNX Runtime cannot reuse their buffers within a run, and
    // its arena would keep the largest utterance's total for the whole calibration. Without
    // the arena each run's outputs are freed once observed.
    // Basic optimisations only: with every activation an output, the fusions of the higher
    // levels have little left to fuse, and their extra copies of the graph cost memory.
    let opts = &CpuOptions {
        opt_level: opts.opt_level.min(1),
        ..opts.clone()
    };
    let mut session = cpu_session_from_bytes_variable_shapes(
        &format!("{} (activations exposed)", onnx.display()),
        &bytes,
        opts,
    )?;
    // The model must match its config (input, bins, output and embedding size), as for embed.
    crate::speaker::embed::check_io(
        model,
        &engines::engine::ort_specs(session.inputs()),
        &engines::engine::ort_specs(session.outputs()),
    )?;
    let front = FrontEnd::new(model)?;
    let cfg = &model.config;
    let bad = |reason: String| RuntimeError::Model {
        model: onnx.clone(),
        reason,
    };
    // The features must fit the model's input: [batch, frames, bins].
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == cfg.input)
        .ok_or_else(|| bad(format!("has no input '{}'", cfg.input)))?;
    let want = input
        .dtype()
        .tensor_shape()
        .map(|s| s.iter().copied().collect::<Vec<i64>>())
        .unwrap_or_default();
    let passes = if two_pass { 2 } else { 1 };
    let bar = Progress::new(
        (passes * audio.len()) as u64,
        "calibrating",
        "utterance passes",
        progress,
    );
    let mut seconds = 0.0;
    let mut run_pass = |cal: &mut Calibrator| -> Result<()> {
        for (_, path) in audio {
            let wav = read_audio(path)?;
            seconds += wav.duration_s();
            let feats = front.features(path, &wav)?;
            if want.len() != 3 || (want[2] >= 0 && want[2] as usize != feats.dim) {
                return Err(RuntimeError::Model {
                    model: onnx.clone(),
                    reason: format!(
                        "calibration features of {} have shape [1, {}, {}], but input '{}' expects {:?} [batch, frames, bins]",
                        path.display(),
                        feats.frames,
                        feats.dim,
                        cfg.input,
                        want
                    ),
                });
            }
            for (frames, data) in segments(&feats, MAX_SEGMENT_FRAMES) {
                let x = Tensor::<f32>::from_array(([1usize, frames, feats.dim], data))
                    .map_err(|e| bad(format!("input tensor: {e}")))?;
                // `x` stays alive until the outputs are read: an exposed graph input may come
                // back as an output sharing its buffer
                let outputs = session
                    .run(vec![(cfg.input.as_str(), x.view().into_dyn())])
                    .map_err(|e| {
                        bad(format!(
                            "inference on {}: {}",
                            path.display(),
                            first_line(&e.to_string())
                        ))
                    })?;
                for name in tensors {
                    let v = outputs.get(name.as_str()).ok_or_else(|| {
                        bad(format!("exposed tensor '{name}' missing from the outputs"))
                    })?;
                    let (_, data) = v
                        .try_extract_tensor::<f32>()
                        .map_err(|e| bad(format!("tensor '{name}': {e}")))?;
                    cal.observe(name, data)?;
                }
            }
            bar.inc(1);
        }
        Ok(())
    };
    let mut cal = Calibrator::new(bins)?;
    run_pass(&mut cal)?;
    if two_pass {
        let mut second = Calibrator::new(bins)?;
        for name in tensors {
            let amax = cal.stats(name).map(|s| s.abs_max()).unwrap_or(0.0);
            if amax > 0.0 && amax.is_finite() {
                second.preset_range(name, amax)?;
            }
        }
        run_pass(&mut second)?;
        cal = second;
    }
    bar.finish_and_clear();
    let info = CalibrationRunInfo {
        utterances: audio.len(),
        passes,
        audio_seconds: seconds / passes as f64,
        tensors: tensors.len(),
        wall_seconds: t0.elapsed().as_secs_f64(),
        peak_rss_mb: peak_rss_mb(),
        observer_bytes: cal.memory_bytes(),
    };
    Ok((cal, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::fbank::Features;

    #[test]
    fn long_features_are_cut_into_equal_segments() {
        let f = |frames: usize| Features {
            frames,
            dim: 2,
            data: (0..frames * 2).map(|v| v as f32).collect(),
        };
        let lens = |frames: usize| -> Vec<usize> {
            segments(&f(frames), 1000).iter().map(|s| s.0).collect()
        };
        assert_eq!(lens(999), [999]);
        assert_eq!(lens(1000), [1000]);
        assert_eq!(lens(1001), [501, 500]);
        assert_eq!(lens(3110), [778, 778, 778, 776]);
        // every frame once, in order
        let all: Vec<f32> = segments(&f(3110), 1000)
            .into_iter()
            .flat_map(|s| s.1)
            .collect();
        assert_eq!(all, f(3110).data);
    }
}
