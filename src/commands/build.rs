//! `voxq build`: a deployable engine folder (model + manifest) for ONNX Runtime CPU, OpenVINO,
//! a TensorRT plan, or ONNX Runtime's TensorRT execution provider; a Whisper or LLM model
//! folder becomes a folder of OpenVINO part engines (`runtime::model_engine`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use engines::ort::CpuOptions;

use crate::args::{int, threads, threads_help, EngineTarget, Precision};
use crate::outputs::{self, Output};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq build campplus.int8.onnx --target cpu --out engines/cpu-int8\n  voxq build campplus.int8.onnx --target openvino --out engines/openvino-int8\n  voxq build out/whisper-int8 --target openvino --out engines/whisper-openvino\n  voxq build campplus.int8.onnx --target tensorrt --profile feats:1x100x80:8x300x80:32x3000x80 --out engines/trt-int8";

#[derive(Args)]
pub(crate) struct BuildArgs {
    /// fp32 or int8 QDQ ONNX model (a JSON config beside it is copied into the engine), or a
    /// Whisper or LLM model folder (whisper.json / llm.json; --target openvino): each ONNX part
    /// becomes an engine folder inside --out, the rest is copied.
    model: PathBuf,
    /// Engine kind. cpu: ONNX Runtime CPU (optimised model, manifest, warm-up run);
    /// openvino: OpenVINO on the CPU (the model, its compiled-model cache, manifest with the
    /// OpenVINO version, CPU and instruction sets); tensorrt: a trtexec plan (strongly typed
    /// for QDQ models), its layer report and an EPContext model; tensorrt-ort: ONNX Runtime's
    /// TensorRT execution provider (engine cache and EPContext model).
    #[arg(long, value_enum, default_value_t = EngineTarget::Cpu)]
    target: EngineTarget,
    /// TensorRT shape profile name:MIN:OPT:MAX, e.g. feats:1x100x80:8x300x80:32x3000x80
    /// (repeatable; dynamic inputs not named get batch 1/8/32 and frames 100/300/3000).
    #[arg(long)]
    profile: Vec<String>,
    /// Precision. TensorRT: auto (int8 for a QDQ model, fp16 for a float one), fp16, fp32.
    /// OpenVINO: auto or fp32 (true f32), bf16 (faster where the CPU has bf16, less exact);
    /// for an int8 model it is the precision of the parts that stay float.
    #[arg(long, value_enum, default_value_t = Precision::Auto)]
    precision: Precision,
    /// Engine folder to create (replaced only when the build succeeds).
    #[arg(long)]
    out: PathBuf,
    /// ONNX Runtime graph optimisation level the engine is loaded with: 0 none, 1 basic,
    /// 2 extended, 3 all [range: [0, 3]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 3, value_parser = int(0u8, 3))]
    opt_level: u8,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("Threads recorded for the engine (0 = the runtime's default)"))]
    threads: usize,
    /// Deploy the graph exactly as given, without the exact rewrites a build applies (e.g. a
    /// broadcast-only Tile as Expand): a baseline that is the source model unchanged
    /// (cpu and openvino targets).
    #[arg(long)]
    as_is: bool,
}

pub(crate) fn run(a: &BuildArgs) -> Result<()> {
    if a.opt_level > 3 {
        bail!("--opt-level {}: expected 0-3", a.opt_level);
    }
    if let Some(kind) = runtime::model_engine::ModelKind::of(&a.model) {
        return model_folder(a, kind);
    }
    outputs::check(
        &outputs::model_with_config(&a.model),
        &[Output::new("--out", a.out.clone(), outputs::ENGINE_FOLDER)],
    )?;
    let cfg = a.model.with_extension("json");
    let cfg = cfg.is_file().then_some(cfg.as_path());
    let trt = || -> Result<engines::tensorrt::TrtBuildOptions> {
        Ok(engines::tensorrt::TrtBuildOptions {
            precision: a.precision.tensorrt()?,
            profiles: a
                .profile
                .iter()
                .map(|p| engines::tensorrt::parse_profile(p))
                .collect::<Result<Vec<_>, _>>()?,
        })
    };
    let m = match a.target {
        EngineTarget::Tensorrt | EngineTarget::TensorrtOrt if a.as_is => {
            bail!("--as-is applies to --target cpu and openvino (TensorRT builds deploy the graph as given)")
        }
        EngineTarget::Tensorrt => {
            let (m, report) = engines::tensorrt::build_tensorrt(&a.model, cfg, &a.out, &trt()?)?;
            println!("layers: {}", report.summary());
            for l in &report.float_compute {
                println!("  not int8: {} ({}, {} in)", l.name, l.layer_type, l.input);
            }
            m
        }
        EngineTarget::TensorrtOrt => {
            engines::tensorrt::build_tensorrt_ort(&a.model, cfg, &a.out, &trt()?)?
        }
        EngineTarget::Openvino => {
            if !a.profile.is_empty() || a.opt_level != 3 {
                bail!("--profile and --opt-level do not apply to --target openvino");
            }
            let opts = engines::openvino::OvBuildOptions {
                precision: a.precision.openvino()?,
                threads: a.threads,
                rewrite: !a.as_is,
                warm_up: true,
            };
            engines::openvino::build_openvino(&a.model, cfg, &a.out, &opts)?
        }
        EngineTarget::Cpu => {
            if !a.profile.is_empty() || a.precision != Precision::Auto {
                bail!("--profile and --precision apply to TensorRT targets, not --target cpu");
            }
            let opts = CpuOptions {
                intra_threads: a.threads,
                opt_level: a.opt_level,
                optimized_model_path: None,
                device: engines::ort::Device::Cpu,
            };
            engines::ort::build_cpu(&a.model, cfg, &a.out, &opts, !a.as_is)?
        }
    };
    println!(
        "built {} engine ({}, {} {}{}{}) at {}: source sha256 {}…, inputs {}",
        m.target,
        m.precision,
        m.builder.name,
        m.builder.version,
        m.gpu
            .as_ref()
            .map(|g| format!(", {} sm {}", g.name, g.compute_capability))
            .unwrap_or_default(),
        m.openvino
            .as_ref()
            .map(|o| format!(
                ", computes in {}, on {} relying on {}",
                o.inference_precision,
                o.cpu,
                o.isa.join(" ")
            ))
            .unwrap_or_default(),
        a.out.display(),
        &m.source_model.sha256[..12],
        m.inputs
            .iter()
            .map(|i| format!("{} {:?}", i.name, i.shape))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// A Whisper or LLM model folder: every ONNX part built for OpenVINO, the rest copied.
fn model_folder(a: &BuildArgs, kind: runtime::model_engine::ModelKind) -> Result<()> {
    let what = format!("the {} model folder", kind.name());
    if a.target != EngineTarget::Openvino {
        bail!(
            "{}: --target {}: a {} model folder builds for --target openvino (ONNX Runtime on the CPU runs the folder as it is)",
            a.model.display(),
            a.target
                .to_possible_value()
                .map_or(String::new(), |v| v.get_name().to_string()),
            kind.name()
        );
    }
    if !a.profile.is_empty() || a.opt_level != 3 {
        bail!("--profile and --opt-level do not apply to --target openvino");
    }
    let form = match kind {
        runtime::model_engine::ModelKind::Whisper => outputs::WHISPER_FOLDER,
        runtime::model_engine::ModelKind::Llm => outputs::LLM_FOLDER,
    };
    outputs::check(
        &outputs::model_folder(&what, &a.model),
        &[Output::new("--out", a.out.clone(), form)],
    )?;
    let opts = engines::openvino::OvBuildOptions {
        precision: a.precision.openvino()?,
        threads: a.threads,
        rewrite: !a.as_is,
        warm_up: true,
    };
    let built = runtime::model_engine::build_openvino_model(&a.model, &a.out, &opts)?;
    for (folder, m) in &built.parts {
        println!(
            "built {} engine {folder}/ ({}, {} {}, computes in {}), source sha256 {}…",
            m.target,
            m.precision,
            m.builder.name,
            m.builder.version,
            m.openvino
                .as_ref()
                .map_or("?", |o| o.inference_precision.as_str()),
            &m.source_model.sha256[..12]
        );
    }
    println!(
        "built the {} model engine folder at {} (warm-up run passed)",
        kind.name(),
        a.out.display()
    );
    Ok(())
}
