//! Whisper calibration and its int8 model folder: every calibration utterance is encoded and
//! transcribed greedily by the float model with the activations the quantizer needs exposed
//! (the tap in `crate::whisper::calibrate`), and the quantized encoder and decoder are written
//! as a complete Whisper model folder beside their calibration tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use calibration::{CalibrationTable, Calibrator};
use engines::ort::CpuOptions;
use exporter::model::{save, SaveOptions};
use onnx_protobuf::ModelProto;
use serde::Serialize;

use crate::audio::decode::read_audio;
use crate::audio::logmel::{to_16k, LogMelExtractor, SAMPLE_RATE};
use crate::error::{cfg_err, Result, RuntimeError};
use crate::fsutil::write_atomic;
use crate::generation::GenerateOptions;
use crate::whisper::calibrate::Tap;
use crate::whisper::{Whisper, WhisperConfig, CONFIG_FILE};

/// What a Whisper calibration run saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WhisperCalibration {
    pub utterances: usize,
    pub audio_seconds: f64,
    /// Decoder steps observed per pass.
    pub decoder_steps: usize,
    pub encoder_tensors: usize,
    pub decoder_tensors: usize,
    pub wall_seconds: f64,
}

/// Calibrates encoder and decoder on real audio: every utterance is encoded and transcribed
/// greedily by the float model with the activations the quantizer needs exposed, so the
/// decoder is observed on the token sequences it really produces, step by step with its KV
/// cache. Two passes: abs-max first, then histograms over exactly that range.
pub fn calibrate(
    dir: &Path,
    models: (&ModelProto, &ModelProto),
    audio: &[(String, PathBuf)],
    tensors: (&BTreeSet<String>, &BTreeSet<String>),
    bins: usize,
    opts: &CpuOptions,
) -> Result<(Calibrator, Calibrator, WhisperCalibration)> {
    let t0 = std::time::Instant::now();
    let enc_x = exporter::passes::expose_activations(models.0, tensors.0)?;
    let dec_x = exporter::passes::expose_activations(models.1, tensors.1)?;
    let mut w = Whisper::open_with(dir, opts, Some((&enc_x, &dec_x)))?;
    let mut seconds = 0.0;
    let mut steps = 0;
    let mut ranges: Option<(Calibrator, Calibrator)> = None;
    for pass in 0..2 {
        let (mut ce, mut cd) = (Calibrator::new(bins)?, Calibrator::new(bins)?);
        if let Some((re, rd)) = &ranges {
            for (c, r, names) in [(&mut ce, re, tensors.0), (&mut cd, rd, tensors.1)] {
                for n in names {
                    let amax = r.stats(n).map(|s| s.abs_max()).unwrap_or(0.0);
                    if amax > 0.0 && amax.is_finite() {
                        c.preset_range(n, amax)?;
                    }
                }
            }
        }
        w.tap = Some(Mutex::new(Tap {
            encoder: (tensors.0.clone(), ce),
            decoder: (tensors.1.clone(), cd),
        }));
        for (_, path) in audio {
            let a = read_audio(path)?;
            let samples = to_16k(path, &a.samples, a.sample_rate)?;
            if pass == 0 {
                seconds += samples.len() as f64 / SAMPLE_RATE as f64;
            }
            for win in LogMelExtractor::windows(&samples) {
                let ids =
                    w.transcribe_window(path, win, &GenerateOptions::default(), &mut |_| true)?;
                if pass == 0 {
                    steps += ids.len() + 1;
                }
            }
        }
        let tap = w
            .tap
            .take()
            .map(|t| t.into_inner().unwrap_or_else(PoisonError::into_inner))
            .ok_or_else(|| cfg_err(dir, "calibration observers lost".into()))?;
        ranges = Some((tap.encoder.1, tap.decoder.1));
    }
    let (ce, cd) = ranges.ok_or_else(|| cfg_err(dir, "no calibration pass ran".into()))?;
    let info = WhisperCalibration {
        utterances: audio.len(),
        audio_seconds: seconds,
        decoder_steps: steps,
        encoder_tensors: tensors.0.len(),
        decoder_tensors: tensors.1.len(),
        wall_seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((ce, cd, info))
}

/// How an int8 Whisper folder was made: the `quantization` record of its `whisper.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Int8Record {
    pub method: String,
    /// The placement target as the user named it (also the model name's suffix).
    pub target: String,
    /// Node filters applied on top of the per-group modes (empty: none).
    pub encoder_include: Vec<String>,
    pub decoder_include: Vec<String>,
    /// The groups (`preset:NAME`, a spec file, `depth=N`) the modes are given over.
    pub encoder_groups: String,
    pub decoder_groups: String,
    /// The mode of each group (`full`, `smooth`, `dynamic`, `weight-only`, `float`).
    pub encoder_modes: BTreeMap<String, String>,
    pub decoder_modes: BTreeMap<String, String>,
    /// The calibration list (`None`: every mode was tableless, nothing was calibrated).
    pub calibration: Option<String>,
    pub utterances: usize,
}

/// The quantized halves of a Whisper model and their calibration tables.
pub struct Int8Models<'a> {
    pub encoder: &'a ModelProto,
    pub decoder: &'a ModelProto,
    /// `None` for a part whose modes need no table (weight-only, dynamic, float).
    pub encoder_table: Option<&'a CalibrationTable>,
    pub decoder_table: Option<&'a CalibrationTable>,
}

/// Writes the int8 Whisper model folder `out` from the float folder `dir` (config `cfg`):
/// the quantized encoder and decoder under the config's file names, the tokenizer, a
/// `whisper.json` naming the model `<model>-int8-<target>` with the `quantization` record,
/// and `encoder.table.json` / `decoder.table.json` (each only when that part was calibrated). The folder is built beside `out` and moved
/// into place only when complete; on failure the partial folder is removed.
pub fn write_int8_folder(
    dir: &Path,
    cfg: &WhisperConfig,
    out: &Path,
    models: &Int8Models,
    record: &Int8Record,
) -> Result<()> {
    let scratch = exporter::atomic::scratch_dir(out)?;
    let result = fill_int8_folder(&scratch, dir, cfg, models, record).and_then(|()| {
        Ok(exporter::atomic::commit_dir(
            &scratch,
            out,
            "a Whisper model folder",
            |d| d.join(CONFIG_FILE).is_file(),
        )?)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

fn fill_int8_folder(
    scratch: &Path,
    dir: &Path,
    cfg: &WhisperConfig,
    models: &Int8Models,
    record: &Int8Record,
) -> Result<()> {
    let cfg_path = dir.join(CONFIG_FILE);
    let cfg_text = std::fs::read_to_string(&cfg_path).map_err(|source| RuntimeError::Io {
        path: cfg_path.clone(),
        source,
    })?;
    save(
        models.encoder,
        scratch.join(&cfg.encoder_file),
        &SaveOptions::inline(),
    )?;
    save(
        models.decoder,
        scratch.join(&cfg.decoder_file),
        &SaveOptions::inline(),
    )?;
    let tok = dir.join("tokenizer.json");
    std::fs::copy(&tok, scratch.join("tokenizer.json"))
        .map_err(|source| RuntimeError::Io { path: tok, source })?;
    let json_err = |e: serde_json::Error| cfg_err(&cfg_path, e.to_string());
    let mut v: serde_json::Value = serde_json::from_str(&cfg_text).map_err(json_err)?;
    v["model"] = format!("{}-int8-{}", cfg.model, record.target).into();
    v["quantization"] = serde_json::to_value(record).map_err(json_err)?;
    write_atomic(
        &scratch.join(CONFIG_FILE),
        serde_json::to_string_pretty(&v)
            .map_err(json_err)?
            .as_bytes(),
    )?;
    for (file, table) in [
        ("encoder.table.json", models.encoder_table),
        ("decoder.table.json", models.decoder_table),
    ] {
        if let Some(t) = table {
            write_atomic(&scratch.join(file), t.to_json().as_bytes())?;
        }
    }
    Ok(())
}
