//! The per-group recipes of `voxq quantize-whisper`: a quantization mode (or float) for every
//! layer group of each Whisper part, from `--encoder-modes` / `--decoder-modes`
//! (`GROUP=MODE,…,*=MODE`), from an autoquant report (`--from-autoquant DIR`), or from the
//! defaults below — what `voxq autoquant` chose for tiny.en (docs/results/whisper-autoquant).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use exporter::groups::LayerGroups;
use exporter::policy::QuantMode;
use exporter::sensitivity::AutoquantReport;

/// The default recipes, `(encoder, decoder)`: autoquant's choice for tiny.en within +0.5 WER
/// on the 80-utterance list (docs/results/whisper-autoquant/README.md). Change them here.
pub(crate) const DEFAULT_MODES: (&str, &str) = (
    "enc.conv=full,enc.block0=full,enc.block1=full,*=dynamic",
    "*=dynamic",
);

/// The default recipes for the OpenVINO placement: the same choice with its dynamic groups as
/// weight-only. OpenVINO has no fused kernel for `DynamicQuantizeLinear -> MatMulInteger`
/// (tiny.en's dynamic decoder on OpenVINO: 14.5 ms per token against 7.2 ms weight-only, whose
/// int8 weights it decompresses inside its MatMul; `voxq bench whisper`, 1 thread).
pub(crate) const OPENVINO_MODES: (&str, &str) = (
    "enc.conv=full,enc.block0=full,enc.block1=full,*=weight-only",
    "*=weight-only",
);

/// The default recipes for a QDQ placement.
pub(crate) fn default_modes(target: exporter::policy::Target) -> (&'static str, &'static str) {
    match target {
        exporter::policy::Target::Openvino => OPENVINO_MODES,
        _ => DEFAULT_MODES,
    }
}

/// The calibration method of the full-int8 groups: autoquant chose them from a percentile
/// 99.99 table (entropy costs tiny.en +3.3 WER points on the 80 utterances with the default
/// recipe, 9.85% vs 6.95%; fp32 6.56%).
pub(crate) const DEFAULT_METHOD: &str = "percentile:99.99";

/// What `GROUP=float` and unnamed groups without a `*` get.
pub(crate) const FLOAT: &str = "float";

/// A mode for every group of one part (`None`: left in float).
pub(crate) struct Recipe {
    pub(crate) groups: LayerGroups,
    pub(crate) modes: BTreeMap<String, Option<QuantMode>>,
    /// Where the recipe came from (an option or a report), for messages.
    pub(crate) source: String,
}

impl Recipe {
    /// The groups quantized, each with its mode (what `policy_for_groups` takes).
    pub(crate) fn chosen(&self) -> Vec<(String, QuantMode)> {
        self.modes
            .iter()
            .filter_map(|(g, m)| m.map(|m| (g.clone(), m)))
            .collect()
    }

    /// `group -> mode name` (`float` for the groups left in float), for the folder's record.
    pub(crate) fn names(&self) -> BTreeMap<String, String> {
        self.modes
            .iter()
            .map(|(g, m)| (g.clone(), m.map_or(FLOAT.to_string(), |m| m.to_string())))
            .collect()
    }

    /// `full: a, b; weight-only: c; float: d`.
    pub(crate) fn summary(&self) -> String {
        let mut by: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (g, m) in &self.modes {
            by.entry(m.map_or(FLOAT.to_string(), |m| m.to_string()))
                .or_default()
                .push(g);
        }
        by.iter()
            .map(|(m, gs)| format!("{m}: {}", gs.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Parses `GROUP=MODE,…` (`*=MODE` for every group not named, `GROUP=float` to keep one in
/// float; groups neither named nor covered by `*` stay float) over `groups`. A name the groups
/// do not know is refused; a group of the spec that matches no node of this part is accepted
/// and matches nothing.
pub(crate) fn parse(spec: &str, groups: LayerGroups, option: &str) -> Result<Recipe> {
    let mut named: BTreeMap<String, Option<QuantMode>> = BTreeMap::new();
    let mut rest: Option<Option<QuantMode>> = None;
    let known: Vec<&str> = groups.names();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((g, m)) = item.split_once('=') else {
            bail!("{option}: '{item}' is not GROUP=MODE");
        };
        let (g, m) = (g.trim(), m.trim());
        let mode = if m.eq_ignore_ascii_case(FLOAT) {
            None
        } else {
            Some(m.parse::<QuantMode>().map_err(|_| {
                anyhow::anyhow!(
                    "{option}: unknown mode '{m}' for '{g}' (modes: full, smooth, dynamic, weight-only, float)"
                )
            })?)
        };
        if g == "*" {
            rest = Some(mode);
        } else if known.contains(&g) || groups.empty.iter().any(|e| e == g) {
            named.insert(g.to_string(), mode);
        } else {
            bail!(
                "{option}: no group '{g}' in {} (groups: {})",
                groups.source,
                known.join(", ")
            );
        }
    }
    let modes = known
        .iter()
        .map(|g| {
            let m = named.get(*g).copied().or(rest).flatten();
            (g.to_string(), m)
        })
        .collect();
    Ok(Recipe {
        groups,
        modes,
        source: option.to_string(),
    })
}

/// The part (`encoder` or `decoder`) an autoquant report in `dir` was made for, and its recipe:
/// the chosen groups in their chosen modes, every other group float, over the report's groups.
/// `parts` are the folder's `(part, ONNX file, model)`; the report's model hash must be one of
/// those files' (else it is a report of another model, refused naming the file).
pub(crate) fn from_autoquant(
    dir: &Path,
    parts: &[(&str, &Path, &onnx_protobuf::ModelProto)],
) -> Result<(String, Recipe)> {
    let file = dir.join("autoquant.json");
    let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
    let r: AutoquantReport = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an autoquant report", file.display()))?;
    let mut part = None;
    for (name, onnx, model) in parts {
        if runtime::fsutil::sha256_file(onnx)? == r.sensitivity.model_sha256 {
            part = Some((*name, *model));
        }
    }
    let Some((name, model)) = part else {
        bail!(
            "{}: a report of another model (model_sha256 {} is none of {})",
            file.display(),
            r.sensitivity.model_sha256,
            parts
                .iter()
                .map(|(_, p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let groups = LayerGroups::resolve(&model.graph, &r.sensitivity.groups_source)
        .with_context(|| format!("{}: groups", file.display()))?;
    let one = single_mode(&r.sensitivity.target);
    let mut modes: BTreeMap<String, Option<QuantMode>> = groups
        .names()
        .iter()
        .map(|g| (g.to_string(), None))
        .collect();
    for g in &r.chosen {
        let m = match r.chosen_modes.get(g).or(r.chosen_row.modes.get(g)) {
            Some(m) => m
                .parse::<QuantMode>()
                .with_context(|| format!("{}: group {g}", file.display()))?,
            None => one,
        };
        if !modes.contains_key(g) {
            bail!(
                "{}: chosen group '{g}' is not a group of {} on {}",
                file.display(),
                r.sensitivity.groups_source,
                name
            );
        }
        modes.insert(g.clone(), Some(m));
    }
    Ok((
        name.to_string(),
        Recipe {
            groups,
            modes,
            source: format!("{}, measured as {}", file.display(), r.sensitivity.target),
        },
    ))
}

/// The one mode of a report measured in one mode, from its target text (`ort-cpu`,
/// `weight-only`, `dynamic (ort-cpu)`, `smooth (tensorrt)`: what the study writes).
fn single_mode(target: &str) -> QuantMode {
    let first = target.split([' ', '(']).next().unwrap_or("");
    match first.parse::<QuantMode>() {
        Ok(m) => m,
        Err(_) => QuantMode::Full,
    }
}
