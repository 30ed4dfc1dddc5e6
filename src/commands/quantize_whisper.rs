//! `voxq quantize-whisper`: Whisper int8 — a quantization mode per layer group of each part
//! (full, smooth, dynamic, weight-only or float; the defaults are what `voxq autoquant` chose for
//! tiny.en, see [`super::whisper_recipe`]), encoder and decoder calibrated on real audio (greedy
//! decoding with the KV cache) only where a mode needs a table, written as a new model folder.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use calibration::{CalibrationTable, Method};
use clap::Args;
use engines::ort::CpuOptions;
use exporter::groups::{select, LayerGroups};
use exporter::model::load;
use exporter::pipeline::{check_quantizable, compare_sizes, quantize_with};
use exporter::policy::{QuantPolicy, Target};
use exporter::sensitivity::policy_for_groups;
use onnx_protobuf::ModelProto;
use runtime::calibrate::read_list;

use super::whisper_recipe::{self, Recipe};
use crate::args::{bins, selectors, threads, threads_help, QuantTarget};
use crate::outputs;

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq quantize-whisper --model WHISPER_DIR --calib fixtures/whisper/calib.txt --out INT8_DIR\n  voxq quantize-whisper --model WHISPER_DIR --encoder-modes '*=weight-only' --decoder-modes '*=weight-only' --out INT8_DIR\n  voxq quantize-whisper --model WHISPER_DIR --from-autoquant out/aq-enc --from-autoquant out/aq-dec --calib fixtures/whisper/calib.txt --out INT8_DIR";

#[derive(Args)]
pub(crate) struct QuantizeWhisperArgs {
    /// Whisper model folder (float).
    #[arg(long)]
    model: PathBuf,
    /// Calibration audio list (one path per line, relative to --audio-root); needed only when
    /// a group is in full or smooth mode.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Folder the calibration list's paths are relative to.
    #[arg(long, default_value = ".cache/speech")]
    audio_root: PathBuf,
    /// Calibration method (max, percentile:P, entropy, mse); the default is the one the
    /// default recipe was chosen with.
    #[arg(long, default_value = whisper_recipe::DEFAULT_METHOD)]
    method: Method,
    /// QDQ placement: ort-cpu (ONNX Runtime CPU kernels), tensorrt (no dynamic mode) or
    /// openvino (whose default recipe has weight-only where ort-cpu's has dynamic).
    #[arg(long, value_enum, ignore_case = true, default_value_t = QuantTarget::OrtCpu)]
    target: QuantTarget,
    /// Histogram bins per tensor [range: [128, 65536]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 2048, value_parser = bins())]
    bins: usize,
    #[arg(long, allow_hyphen_values = true, default_value_t = 0, value_parser = threads(),
        help = threads_help("ONNX Runtime intra-op threads (0 = ONNX Runtime's default)"))]
    threads: usize,
    /// Layer groups the modes are given over: preset:NAME, a spec file or depth=N.
    #[arg(long, default_value = "preset:whisper-tiny")]
    groups: String,
    /// Encoder modes: GROUP=MODE,… with MODE full, smooth, dynamic, weight-only or float;
    /// *=MODE for every group not named [default: what autoquant chose for tiny.en,
    /// enc.conv=full,enc.block0=full,enc.block1=full,*=dynamic; --target openvino:
    /// *=weight-only instead of *=dynamic].
    #[arg(long)]
    encoder_modes: Option<String>,
    /// Decoder modes, as --encoder-modes [default: *=dynamic; --target openvino:
    /// *=weight-only].
    #[arg(long)]
    decoder_modes: Option<String>,
    /// An autoquant --out folder (holding autoquant.json): its part takes the report's chosen
    /// groups in their chosen modes, every other group float (repeatable, one per part).
    #[arg(long)]
    from_autoquant: Vec<PathBuf>,
    /// Node filter on top of the encoder modes: node:REGEX, op:TYPE (repeatable; default none).
    #[arg(long)]
    encoder_include: Vec<String>,
    /// Node filter on top of the decoder modes (repeatable; default none).
    #[arg(long)]
    decoder_include: Vec<String>,
    /// Output model folder (created only when everything succeeded).
    #[arg(long)]
    out: PathBuf,
}

/// One part's plan: its recipe, policy and the activations that need a range.
struct Part {
    name: &'static str,
    file: PathBuf,
    model: ModelProto,
    recipe: Recipe,
    /// `None`: every group float, the part is copied as it is.
    policy: Option<QuantPolicy>,
    activations: BTreeSet<String>,
}

/// The policy of one part: the recipe's groups in their modes, restricted to the `include`
/// filter when one is given; refused before any calibration when it quantizes nothing.
fn plan_part(
    name: &'static str,
    file: PathBuf,
    model: ModelProto,
    recipe: Recipe,
    include: &[String],
    target: Target,
) -> Result<Part> {
    let chosen = recipe.chosen();
    let (policy, activations) = if chosen.is_empty() {
        (None, BTreeSet::new())
    } else {
        let base = QuantPolicy {
            target,
            ..QuantPolicy::default()
        };
        let mut pol = policy_for_groups(&recipe.groups, &base, &chosen)?;
        if !include.is_empty() {
            let by = LayerGroups::resolve(&model.graph, "depth=2")?;
            let keep = select(&model.graph, &by, &selectors(include)?, &[])?;
            pol.nodes = pol.nodes.map(|n| n.intersection(&keep).cloned().collect());
        }
        let acts = check_quantizable(&model, &pol)
            .with_context(|| file.display().to_string())?
            .activations;
        (Some(pol), acts)
    };
    Ok(Part {
        name,
        file,
        model,
        recipe,
        policy,
        activations,
    })
}

pub(crate) fn run(a: &QuantizeWhisperArgs) -> Result<()> {
    let method: Method = a.method;
    let target: Target = a.target.into();
    let mut inputs = outputs::whisper_model(&a.model);
    let list = match &a.calib {
        Some(c) => {
            let list = read_list(c, &a.audio_root)?;
            inputs.push(outputs::Input::new("the calibration list", c));
            inputs.extend(
                list.iter()
                    .map(|(_, p)| outputs::Input::new("an audio file of the calibration list", p)),
            );
            Some(list)
        }
        None => None,
    };
    outputs::check(
        &inputs,
        &[outputs::Output::new(
            "--out",
            a.out.clone(),
            outputs::WHISPER_FOLDER,
        )],
    )?;
    let (dir, cfg) = runtime::whisper::read_config(&a.model)?;
    let (enc_file, dec_file) = (dir.join(&cfg.encoder_file), dir.join(&cfg.decoder_file));
    let enc = load(&enc_file)?;
    let dec = load(&dec_file)?;
    let (mut rec_e, mut rec_d) = (None, None);
    for d in &a.from_autoquant {
        let (part, r) = whisper_recipe::from_autoquant(
            d,
            &[("encoder", &enc_file, &enc), ("decoder", &dec_file, &dec)],
        )?;
        let (slot, option) = if part == "encoder" {
            (&mut rec_e, &a.encoder_modes)
        } else {
            (&mut rec_d, &a.decoder_modes)
        };
        if option.is_some() || slot.is_some() {
            bail!(
                "--from-autoquant {}: the {part}'s modes are given twice (another report or --{part}-modes)",
                d.display()
            );
        }
        *slot = Some(r);
    }
    let recipe = |given: Option<Recipe>,
                  spec: &Option<String>,
                  default: &str,
                  m: &ModelProto,
                  option: &str|
     -> Result<Recipe> {
        match given {
            Some(r) => Ok(r),
            None => {
                let groups = LayerGroups::resolve(&m.graph, &a.groups)
                    .with_context(|| format!("--groups {}", a.groups))?;
                let mut r =
                    whisper_recipe::parse(spec.as_deref().unwrap_or(default), groups, option)?;
                if spec.is_none() {
                    r.source = match target {
                        Target::Openvino => {
                            "default for openvino: autoquant's tiny.en choice, dynamic groups as weight-only"
                        }
                        _ => "default: autoquant's tiny.en choice",
                    }
                    .into();
                }
                Ok(r)
            }
        }
    };
    let defaults = whisper_recipe::default_modes(target);
    let rec_e = recipe(rec_e, &a.encoder_modes, defaults.0, &enc, "--encoder-modes")?;
    let rec_d = recipe(rec_d, &a.decoder_modes, defaults.1, &dec, "--decoder-modes")?;
    // Every refusal (a selection that quantizes nothing, dynamic for TensorRT, a missing
    // --calib) before calibrating.
    let pe = plan_part("encoder", enc_file, enc, rec_e, &a.encoder_include, target)?;
    let pd = plan_part("decoder", dec_file, dec, rec_d, &a.decoder_include, target)?;
    let needs_table = !pe.activations.is_empty() || !pd.activations.is_empty();
    let calibrated = match (&list, needs_table) {
        (_, false) => {
            if a.calib.is_some() {
                println!("no group is in a mode that needs a calibration table: --calib not used");
            }
            None
        }
        (None, true) => {
            let who: Vec<&str> = [&pe, &pd]
                .iter()
                .filter(|p| !p.activations.is_empty())
                .map(|p| p.name)
                .collect();
            bail!(
                "--calib: the {} modes (full or smooth int8) need a calibration table; give --calib LIST, or tableless modes (weight-only, dynamic)",
                who.join(" and ")
            );
        }
        (Some(list), true) => {
            let opts = CpuOptions {
                intra_threads: a.threads,
                ..CpuOptions::default()
            };
            let (ce, cd, info) = runtime::calibrate::whisper::calibrate(
                &dir,
                (&pe.model, &pd.model),
                list,
                (&pe.activations, &pd.activations),
                a.bins,
                &opts,
            )?;
            println!(
                "calibrated on {} utterances ({:.0} s, {} decoder steps) in {:.1} s: {} encoder + {} decoder tensors ({method})",
                info.utterances, info.audio_seconds, info.decoder_steps, info.wall_seconds, info.encoder_tensors, info.decoder_tensors
            );
            let table =
                |c: calibration::Calibrator, p: &Part| -> Result<Option<CalibrationTable>> {
                    Ok(if p.activations.is_empty() {
                        None
                    } else {
                        Some(c.compute(method)?)
                    })
                };
            Some((table(ce, &pe)?, table(cd, &pd)?, info.utterances))
        }
    };
    let (table_e, table_d, utterances) = calibrated.unwrap_or((None, None, 0));
    let qe = quantize_part(&pe, table_e.as_ref())?;
    let qd = quantize_part(&pd, table_d.as_ref())?;
    runtime::calibrate::whisper::write_int8_folder(
        &dir,
        &cfg,
        &a.out,
        &runtime::calibrate::whisper::Int8Models {
            encoder: &qe,
            decoder: &qd,
            encoder_table: table_e.as_ref(),
            decoder_table: table_d.as_ref(),
        },
        &runtime::calibrate::whisper::Int8Record {
            method: method.to_string(),
            target: a.target.to_string(),
            encoder_include: a.encoder_include.clone(),
            decoder_include: a.decoder_include.clone(),
            encoder_groups: pe.recipe.groups.source.clone(),
            decoder_groups: pd.recipe.groups.source.clone(),
            encoder_modes: pe.recipe.names(),
            decoder_modes: pd.recipe.names(),
            calibration: table_e
                .as_ref()
                .or(table_d.as_ref())
                .and(a.calib.as_ref())
                .map(|c| c.display().to_string()),
            utterances,
        },
    )?;
    for (p, q) in [(&pe, &qe), (&pd, &qd)] {
        print_part(p, q);
    }
    println!("wrote {}", a.out.display());
    Ok(())
}

/// The part quantized by its policy (the float model when every group is float).
fn quantize_part(p: &Part, table: Option<&CalibrationTable>) -> Result<ModelProto> {
    match &p.policy {
        None => Ok(p.model.clone()),
        Some(pol) => Ok(quantize_with(&p.model, table, pol, false)
            .with_context(|| p.file.display().to_string())?
            .model),
    }
}

/// `encoder (--encoder-modes): full: …; weight-only: …` and the part's sizes in MiB.
fn print_part(p: &Part, q: &ModelProto) {
    let c = compare_sizes(&p.model, q);
    let mib = super::mib;
    println!("{} ({}): {}", p.name, p.recipe.source, p.recipe.summary());
    println!(
        "{}: deployable {:.2} -> {:.2} MiB ({} int8 weights, {:.2} MiB of float weights left)",
        p.name,
        mib(c.fp32.deployable_bytes),
        mib(c.quantized.deployable_bytes),
        c.quantized.int8_weights,
        mib(c.quantized.float_weight_bytes)
    );
}
