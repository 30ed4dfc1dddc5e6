//! `voxq quantize-whisper`: Whisper int8 — calibrate encoder and decoder on real audio
//! (greedy decoding with the KV cache), insert Q/DQ, write a new model folder.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use calibration::Method;
use clap::Args;
use engines::ort_env::CpuOptions;
use exporter::groups::{select, LayerGroups};
use exporter::model::{load, save, SaveOptions};
use exporter::pipeline::{compare_sizes, quantize};
use exporter::policy::{plan, QuantPolicy, Target};
use runtime::fsutil::write_atomic;
use runtime::quant::read_list;

use crate::args::{selectors, QuantTarget};

#[derive(Args)]
pub(crate) struct QuantizeWhisperArgs {
    /// Whisper model folder (float).
    #[arg(long)]
    model: PathBuf,
    /// Calibration audio list (one path per line, relative to --audio-root).
    #[arg(long)]
    calib: PathBuf,
    #[arg(long, default_value = ".cache/speech")]
    audio_root: PathBuf,
    /// Calibration method (max, percentile:P, entropy, mse).
    #[arg(long, default_value = "entropy")]
    method: Method,
    /// QDQ placement: ort-cpu (ONNX Runtime CPU kernels) or tensorrt.
    #[arg(long, value_enum, ignore_case = true, default_value_t = QuantTarget::OrtCpu)]
    target: QuantTarget,
    #[arg(long, default_value_t = 2048)]
    bins: usize,
    #[arg(long, default_value_t = 0)]
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
    let (dir, cfg) = runtime::whisper::read_config(&a.model)?;
    let cfg_text =
        std::fs::read_to_string(dir.join(runtime::whisper::CONFIG_FILE)).with_context(|| {
            dir.join(runtime::whisper::CONFIG_FILE)
                .display()
                .to_string()
        })?;
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
    let te = plan(&enc, &pol_e)?.activations;
    let td = plan(&dec, &pol_d)?.activations;
    let opts = CpuOptions {
        intra_threads: a.threads,
        ..CpuOptions::default()
    };
    let (ce, cd, info) =
        runtime::whisper::calibrate(&dir, (&enc, &dec), &list, (&te, &td), a.bins, &opts)?;
    let (table_e, table_d) = (ce.compute(method)?, cd.compute(method)?);
    let qe = quantize(&enc, &table_e, &pol_e, false)?;
    let qd = quantize(&dec, &table_d, &pol_d, false)?;
    // build the folder beside the destination, move it into place when complete
    let scratch = exporter::atomic::scratch_dir(&a.out)?;
    let result = (|| -> Result<()> {
        save(
            &qe.model,
            scratch.join(&cfg.encoder_file),
            &SaveOptions::inline(),
        )?;
        save(
            &qd.model,
            scratch.join(&cfg.decoder_file),
            &SaveOptions::inline(),
        )?;
        std::fs::copy(dir.join("tokenizer.json"), scratch.join("tokenizer.json"))
            .with_context(|| dir.join("tokenizer.json").display().to_string())?;
        let mut v: serde_json::Value = serde_json::from_str(&cfg_text)?;
        v["model"] = format!("{}-int8-{}", cfg.model, a.target).into();
        v["quantization"] = serde_json::json!({
            "method": method.to_string(), "target": a.target.to_string(),
            "encoder_include": a.encoder_include, "decoder_include": a.decoder_include,
            "calibration": a.calib.display().to_string(), "utterances": info.utterances,
        });
        write_atomic(
            &scratch.join("whisper.json"),
            serde_json::to_string_pretty(&v)?.as_bytes(),
        )?;
        write_atomic(
            &scratch.join("encoder.table.json"),
            table_e.to_json().as_bytes(),
        )?;
        write_atomic(
            &scratch.join("decoder.table.json"),
            table_d.to_json().as_bytes(),
        )?;
        exporter::atomic::commit_dir(&scratch, &a.out, "a Whisper model folder", |d| {
            d.join(runtime::whisper::CONFIG_FILE).is_file()
        })?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(e);
    }
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
    println!("sizes: encoder {se:?}");
    println!("sizes: decoder {sd:?}");
    Ok(())
}
