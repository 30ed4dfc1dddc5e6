//! `voxq export-triton`: a Triton Inference Server model repository from engine folders.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::args::int;
use crate::outputs::{self, Form, Output};

/// Shown after `--help`.
pub(crate) const EXAMPLES: &str = "Examples:\n  voxq export-triton out/engines/campplus/cpu-fp32 out/engines/campplus/cpu-int8 --repo triton/ --max-batch-size 32";

#[derive(Args)]
pub(crate) struct ExportTritonArgs {
    /// Engine folders (`voxq build`); each becomes a repository entry named after its
    /// parent and folder, e.g. out/engines/campplus/cpu-int8 -> campplus_cpu-int8.
    #[arg(required = true)]
    engines: Vec<PathBuf>,
    /// Repository folder to write into.
    #[arg(long)]
    repo: PathBuf,
    /// Largest batch Triton forms (0: no batching; the model's batch axis is then explicit).
    /// Default: a TensorRT engine's profile max batch (a larger value is refused: Triton
    /// would not load it), else 32 [range: [0, 1024]].
    #[arg(long, allow_hyphen_values = true, value_parser = int(0u32, 1024))]
    max_batch_size: Option<u32>,
    /// Model instances per device [range: [1, 64]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 1, value_parser = int(1u32, 64))]
    instances: u32,
    /// Serve ONNX engines on GPUs (QDQ models get TensorRT INT8 acceleration). TensorRT
    /// engines (tensorrt, tensorrt-ort) are always served on GPUs with TensorRT.
    #[arg(long)]
    gpu: bool,
    /// Longest wait of dynamic batching for a batch to fill, in microseconds
    /// [range: [0, 10000000]].
    #[arg(long, allow_hyphen_values = true, default_value_t = 1000, value_parser = int(0u64, 10_000_000))]
    max_queue_delay_us: u64,
}

pub(crate) fn run(a: &ExportTritonArgs) -> Result<()> {
    let o = engines::triton::TritonOptions {
        max_batch_size: a.max_batch_size,
        instances: a.instances,
        gpu: a.gpu,
        max_queue_delay_us: a.max_queue_delay_us,
    };
    // Two engine folders under one entry name would overwrite each other: refuse first.
    let mut names: BTreeMap<String, &PathBuf> = BTreeMap::new();
    for dir in &a.engines {
        let name = engines::triton::entry_name(dir);
        if let Some(first) = names.insert(name.clone(), dir) {
            bail!(
                "engine folders {} and {} both map to the Triton model name '{name}'; export them in separate runs or rename a folder",
                first.display(),
                dir.display()
            );
        }
    }
    let mut inputs = Vec::new();
    for dir in &a.engines {
        inputs.extend(outputs::model_folder("an input engine folder", dir));
    }
    let mut outs = vec![Output::new("--repo", a.repo.clone(), Form::Into)];
    for name in names.keys() {
        outs.push(Output::new(
            format!("the entry '{name}' in --repo"),
            a.repo.join(name),
            outputs::TRITON_ENTRY,
        ));
    }
    outputs::check(&inputs, &outs)?;
    for dir in &a.engines {
        let name = engines::triton::entry_name(dir);
        let entry = engines::triton::export(dir, &name, &a.repo, &o)?;
        println!("wrote {}", entry.display());
    }
    Ok(())
}
