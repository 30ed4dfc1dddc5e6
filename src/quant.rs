//! The quantization commands: `voxq calibrate`, `voxq quantize`, `voxq inspect`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use calibration::Method;
use engines::ort::CpuOptions;
use exporter::calib_tensors::calibration_tensors;
use exporter::groups::{select, LayerGroups, Selector};
use exporter::inspect::{check_qdq, inventory};
use exporter::model::{load, save, SaveOptions};
use exporter::pipeline::{compare_sizes, quantize, read_table};
use exporter::policy::{plan, QuantPolicy, Target};
use runtime::calibrate::{calibrate_speaker, read_list};
use runtime::fsutil::write_atomic;
use runtime::speaker::config::SpeakerModel;

use crate::{CalibrateArgs, InspectArgs, QuantizeArgs, QuantizeWhisperArgs};

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

pub fn cmd_calibrate(a: &CalibrateArgs) -> Result<()> {
    let methods = a
        .method
        .iter()
        .map(|m| m.parse::<Method>())
        .collect::<Result<Vec<_>, _>>()?;
    if methods.is_empty() {
        bail!("--method: give at least one calibration method");
    }
    let model = SpeakerModel::locate(&a.model.model)?;
    let list = read_list(&a.calib, &a.audio_root)?;
    let proto = load(&model.onnx_path)?;
    // Ranges for every tensor either placement may quantize, so one table serves both.
    let tensors = calibration_tensors(&proto, a.min_channels)?;
    let opts = CpuOptions {
        intra_threads: a.model.threads,
        ..CpuOptions::default()
    };
    let (cal, info) = calibrate_speaker(
        &model,
        &proto,
        &tensors,
        &list,
        a.bins,
        !a.single_pass,
        &opts,
        !a.quiet,
    )?;
    for (i, m) in methods.iter().enumerate() {
        let table = cal.compute(*m)?;
        let path = if methods.len() == 1 {
            a.out.clone()
        } else {
            std::fs::create_dir_all(&a.out)
                .with_context(|| format!("{}: cannot create folder", a.out.display()))?;
            a.out
                .join(format!("{}.json", m.to_string().replace(':', "-")))
        };
        write_atomic(&path, table.to_json().as_bytes())?;
        println!(
            "wrote {} ({m}, {} tensors)",
            path.display(),
            table.tensors.len()
        );
        if i == 0 {
            if let Some(p) = &a.trt_cache {
                write_atomic(p, table.to_trt_cache().as_bytes())?;
                println!("wrote {} (TensorRT calibration cache, {m})", p.display());
            }
        }
    }
    println!(
        "calibration: {} utterances ({:.0} s of audio) x {} pass(es), {} tensors, {:.1} s wall, peak RSS {:.0} MiB, observers {:.1} MiB",
        info.utterances,
        info.audio_seconds,
        info.passes,
        info.tensors,
        info.wall_seconds,
        info.peak_rss_mb,
        mib(info.observer_bytes as u64)
    );
    Ok(())
}

fn selectors(args: &[String]) -> Result<Vec<Selector>> {
    Ok(args
        .iter()
        .map(|s| s.parse::<Selector>())
        .collect::<Result<Vec<_>, _>>()?)
}

/// Copies the model's JSON config (if any) beside the output, pointing at the new ONNX file.
pub(crate) fn copy_config(model: &Path, out: &Path, suffix: &str) -> Result<()> {
    let cfg = model.with_extension("json");
    if !cfg.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&cfg).with_context(|| cfg.display().to_string())?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", cfg.display()))?;
    let file = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    v["onnx"] = file.into();
    if let Some(name) = v["name"].as_str() {
        v["name"] = format!("{name}-{suffix}").into();
    }
    // A threshold calibrated for the fp32 model does not carry over.
    if let Some(o) = v.as_object_mut() {
        o.remove("threshold");
    }
    write_atomic(
        &out.with_extension("json"),
        serde_json::to_string_pretty(&v)?.as_bytes(),
    )?;
    Ok(())
}

pub fn cmd_quantize(a: &QuantizeArgs) -> Result<()> {
    let proto = load(&a.model)?;
    let table = read_table(&a.table)?;
    let target: Target = a.target.parse()?;
    let groups = LayerGroups::resolve(&proto.graph, &a.select.groups)?;
    let nodes = select(
        &proto.graph,
        &groups,
        &selectors(&a.select.include)?,
        &selectors(&a.select.exclude)?,
    )?;
    let policy = QuantPolicy {
        target,
        min_channels: a.min_channels,
        nodes: Some(nodes),
        ..QuantPolicy::default()
    };
    // A table that does not fit the model: the error names the table file.
    let q = quantize(&proto, &table, &policy, a.float16).map_err(|e| match e {
        exporter::ExportError::Table { .. } => anyhow::anyhow!("{}: {e}", a.table.display()),
        e => e.into(),
    })?;
    save(&q.model, &a.out, &SaveOptions::inline())?;
    copy_config(&a.model, &a.out, &format!("int8-{}", a.target))?;
    let sizes = compare_sizes(&proto, &q.model);
    println!(
        "quantized {} weighted node(s), {} left in float; {} Q and {} DQ nodes; wrote {}",
        q.plan.quantized.len(),
        q.plan.skipped.len(),
        q.report.q_nodes,
        q.report.dq_nodes,
        a.out.display()
    );
    for s in &q.plan.skipped {
        log::info!("left in float: {} ({}): {}", s.node, s.op, s.reason);
    }
    if !q.unknown_ops.is_empty() {
        let ops: BTreeSet<&str> = q.unknown_ops.iter().map(|(_, op)| op.as_str()).collect();
        println!(
            "passed through untouched: {} node(s) of ops voxq does not know: {}",
            q.unknown_ops.len(),
            ops.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "deployable size: fp32 {:.2} MiB -> int8 {:.2} MiB ({:.1}% smaller)",
        mib(sizes.fp32.deployable_bytes),
        mib(sizes.quantized.deployable_bytes),
        100.0
            * (1.0
                - sizes.quantized.deployable_bytes as f64
                    / sizes.fp32.deployable_bytes.max(1) as f64)
    );
    if let Some(p) = &a.report {
        let r = serde_json::json!({
            "model": a.model.display().to_string(),
            "output": a.out.display().to_string(),
            "table": a.table.display().to_string(),
            "target": a.target,
            "quantized_nodes": q.plan.quantized.len(),
            "skipped": q.plan.skipped.iter().map(|s| serde_json::json!({"node": s.node, "op": s.op, "reason": s.reason})).collect::<Vec<_>>(),
            "unknown_ops": q.unknown_ops,
            "report": q.report,
            "sizes": sizes,
        });
        write_atomic(p, serde_json::to_string_pretty(&r)?.as_bytes())?;
    }
    if target == Target::Tensorrt {
        let v = check_qdq(&q.model);
        println!("TensorRT QDQ rules: {} violation(s)", v.len());
        for x in &v {
            println!(
                "  {}: node {} tensor {}: {}",
                x.rule, x.node, x.tensor, x.detail
            );
        }
    }
    Ok(())
}

pub fn cmd_inspect(a: &InspectArgs) -> Result<()> {
    let proto = load(&a.model)?;
    let groups = LayerGroups::resolve(&proto.graph, &a.groups)?;
    let inv = inventory(&proto, &groups);
    let violations = if a.qdq { Some(check_qdq(&proto)) } else { None };
    if a.json {
        let v = serde_json::json!({"inventory": inv, "qdq_violations": violations.as_ref().map(|v| v.iter().map(|x| serde_json::json!({
            "rule": x.rule.to_string(), "node": x.node, "tensor": x.tensor, "detail": x.detail})).collect::<Vec<_>>())});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", inv.markdown());
        if let Some(v) = &violations {
            println!("\nTensorRT QDQ rules: {} violation(s)", v.len());
            for x in v {
                println!(
                    "- {}: node `{}` tensor `{}`: {}",
                    x.rule, x.node, x.tensor, x.detail
                );
            }
        }
    }
    if let Some(v) = violations {
        if !v.is_empty() {
            bail!(
                "{}: {} TensorRT QDQ rule violation(s)",
                a.model.display(),
                v.len()
            );
        }
    }
    Ok(())
}

pub fn cmd_quantize_whisper(a: &QuantizeWhisperArgs) -> Result<()> {
    let method: Method = a.method.parse()?;
    let target: Target = a.target.parse()?;
    let list = read_list(&a.calib, &a.audio_root)?;
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
    let te = plan(&enc, &pol_e)?.activations;
    let td = plan(&dec, &pol_d)?.activations;
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
            target: a.target.clone(),
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
    println!("sizes: encoder {se:?}");
    println!("sizes: decoder {sd:?}");
    Ok(())
}
