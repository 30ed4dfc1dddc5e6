//! `voxq quantize-whisper`: Whisper int8 — calibrate encoder and decoder on real audio
//! (greedy decoding with the KV cache), insert Q/DQ, write a new model folder.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use calibration::Method;
use clap::Args;
use engines::ort::CpuOptions;
use exporter::groups::{select, LayerGroups};
use exporter::model::load;
use exporter::pipeline::{check_quantizable, compare_sizes, quantize};
use exporter::policy::{QuantPolicy, Target};
use runtime::calibrate::read_list;

use crate::args::{bins, selectors, threads, threads_help, QuantTarget};
use crate::outputs;

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq quantize-whisper --model WHISPER_DIR --calib fixtures/whisper/calib.txt --out INT8_DIR";

#[derive(Args)]
pub(crate) struct QuantizeWhisperArgs {
    /// Whisper model folder (float).
    #[arg(long)]
    model: PathBuf,
    /// Calibration audio list (one path per line, relative to --audio-root).
    #[arg(long)]
    calib: PathBuf,
    /// Folder the calibration list's paths are relative to.
    #[arg(long, default_value = ".cache/speech")]
    audio_root: PathBuf,
    /// Calibration method (max, percentile:P, entropy, mse).
    #[arg(long, default_value = "entropy")]
    method: Method,
    /// QDQ placement: ort-cpu (ONNX Runtime CPU kernels) or tensorrt.
    #[arg(long, value_enum, ignore_case = true, default_value_t = QuantTarget::OrtCpu)]
    target: QuantTarget,
    /// Histogram bins per tensor [range: [128, 65536]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 2048, value_parser = bins())]
    bins: usize,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("ONNX Runtime intra-op threads (0 = ONNX Runtime's default)"))]
    threads: usize,
    /// Encoder nodes to quantize: node:REGEX, op:TYPE (repeatable; default all weighted nodes).
    #[arg(long)]
    encoder_include: Vec<String>,
    /// Decoder nodes to quantize (repeatable). The default keeps the self-attention and MLP
    /// projections in float: with per-tensor int8 activations their LayerNorm/GELU inputs
    /// (outlier channels) wreck the transcripts of tiny.en (measured: see README).
    #[arg(long, default_values_t = ["node:encoder_attn".to_string(), "node:proj_out".to_string()])]
    decoder_include: Vec<String>,
    /// Output model folder (created only when everything succeeded).
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn run(a: &QuantizeWhisperArgs) -> Result<()> {
    let method: Method = a.method;
    let target: Target = a.target.into();
    let list = read_list(&a.calib, &a.audio_root)?;
    let mut inputs = outputs::whisper_model(&a.model);
    inputs.push(outputs::Input::new("the calibration list", &a.calib));
    inputs.extend(
        list.iter()
            .map(|(_, p)| outputs::Input::new("an audio file of the calibration list", p)),
    );
    outputs::check(
        &inputs,
        &[outputs::Output::new(
            "--out",
            a.out.clone(),
            outputs::WHISPER_FOLDER,
        )],
    )?;
    let (dir, cfg) = runtime::whisper::read_config(&a.model)?;
    let enc = load(dir.join(&cfg.encoder_file))?;
    let dec = load(dir.join(&cfg.decoder_file))?;
    let pick =
        |m: &onnx_protobuf::ModelProto, inc: &[String]| -> Result<Option<BTreeSet<String>>> {
            if inc.is_empty() {
                return Ok(None);
            }
            let groups = LayerGroups::resolve(&m.graph, "depth=2")?;
            Ok(Some(select(&m.graph, &groups, &selectors(inc)?, &[])?))
        };
    let pol_e = QuantPolicy {
        target,
        nodes: pick(&enc, &a.encoder_include)?,
        ..QuantPolicy::default()
    };
    let pol_d = QuantPolicy {
        target,
        nodes: pick(&dec, &a.decoder_include)?,
        ..QuantPolicy::default()
    };
    // Checked before calibrating: a QDQ model or a selection that quantizes nothing.
    let te = check_quantizable(&enc, &pol_e)
        .with_context(|| dir.join(&cfg.encoder_file).display().to_string())?
        .activations;
    let td = check_quantizable(&dec, &pol_d)
        .with_context(|| dir.join(&cfg.decoder_file).display().to_string())?
        .activations;
    let opts = CpuOptions {
        intra_threads: a.threads,
        ..CpuOptions::default()
    };
    let (ce, cd, info) = runtime::calibrate::whisper::calibrate(
        &dir,
        (&enc, &dec),
        &list,
        (&te, &td),
        a.bins,
        &opts,
    )?;
    let (table_e, table_d) = (ce.compute(method)?, cd.compute(method)?);
    let qe = quantize(&enc, &table_e, &pol_e, false)?;
    let qd = quantize(&dec, &table_d, &pol_d, false)?;
    runtime::calibrate::whisper::write_int8_folder(
        &dir,
        &cfg,
        &a.out,
        &runtime::calibrate::whisper::Int8Models {
            encoder: &qe.model,
            decoder: &qd.model,
            encoder_table: &table_e,
            decoder_table: &table_d,
        },
        &runtime::calibrate::whisper::Int8Record {
            method: method.to_string(),
            target: a.target.to_string(),
            encoder_include: a.encoder_include.clone(),
            decoder_include: a.decoder_include.clone(),
            calibration: a.calib.display().to_string(),
            utterances: info.utterances,
        },
    )?;
    let (se, sd) = (
        compare_sizes(&enc, &qe.model),
        compare_sizes(&dec, &qd.model),
    );
    println!(
        "calibrated on {} utterances ({:.0} s, {} decoder steps) in {:.1} s: {} encoder + {} decoder tensors ({method})",
        info.utterances, info.audio_seconds, info.decoder_steps, info.wall_seconds, info.encoder_tensors, info.decoder_tensors
    );
    println!(
        "encoder: {} weighted nodes int8, {} float; decoder: {} int8, {} float; wrote {}",
        qe.plan.quantized.len(),
        qe.plan.skipped.len(),
        qd.plan.quantized.len(),
        qd.plan.skipped.len(),
        a.out.display()
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for (part, c) in [("encoder", &se), ("decoder", &sd)] {
        println!(
            "{part}: deployable {:.2} -> {:.2} MiB ({} int8 weights, {:.2} MiB of float weights left)",
            mib(c.fp32.deployable_bytes),
            mib(c.quantized.deployable_bytes),
            c.quantized.int8_weights,
            mib(c.quantized.float_weight_bytes)
        );
    }
    Ok(())
}
