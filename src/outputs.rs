//! The inputs and outputs a command declares before its work, for
//! [`exporter::outputs::check`]: each command lists what it reads and what it writes (`-` is
//! standard output for stream outputs), and the check refuses, with one line, a location that
//! cannot be written, an output that is an input, and two outputs on the same file.

use std::path::{Path, PathBuf};

use anyhow::Result;
pub(crate) use exporter::outputs::{Form, Input, Output};
use runtime::speaker::config::SpeakerModel;

/// A model folder's kind and the file that marks one, for [`Form::Folder`].
pub(crate) const ENGINE_FOLDER: Form = Form::Folder {
    marker: engines::manifest::MANIFEST_FILE,
    kind: "an engine folder",
};
pub(crate) const WHISPER_FOLDER: Form = Form::Folder {
    marker: runtime::whisper::CONFIG_FILE,
    kind: "a Whisper model folder",
};
pub(crate) const LLM_FOLDER: Form = Form::Folder {
    marker: "llm.json",
    kind: "an LLM model folder",
};
pub(crate) const TRITON_ENTRY: Form = Form::Folder {
    marker: "config.pbtxt",
    kind: "a Triton model entry",
};

/// Checks every output's location and every output against the inputs and each other (see
/// [`exporter::outputs::check`]); call it before any model loads.
pub(crate) fn check(inputs: &[Input], outputs: &[Output]) -> Result<()> {
    Ok(exporter::outputs::check(inputs, outputs)?)
}

/// An optional stream output (`--json`, `--scores`): `-`, a file, a FIFO or a device.
pub(crate) fn stream(label: &str, path: &Option<PathBuf>) -> Option<Output> {
    path.as_ref()
        .map(|p| Output::new(label, p.clone(), Form::Stream))
}

/// The files of a speaker model argument: its JSON config and its ONNX file (or the engine
/// folder). An argument that does not locate is left to the command's own error.
pub(crate) fn speaker_model(p: &Path) -> Vec<Input> {
    match SpeakerModel::locate(p) {
        Ok(_) if p.is_dir() => model_folder("the input engine folder", p),
        Ok(m) => vec![
            Input::new("the input model's config", m.config_path),
            Input::new("the input model", m.onnx_path),
        ],
        Err(_) => vec![Input::new("the input model", p)],
    }
}

/// A Whisper model folder (or its `whisper.json`): the folder and the files it names.
pub(crate) fn whisper_model(p: &Path) -> Vec<Input> {
    let what = "a file of the Whisper model";
    let mut v = vec![Input::new("the Whisper model folder", p)];
    if let Ok((dir, cfg)) = runtime::whisper::read_config(p) {
        for f in [
            runtime::whisper::CONFIG_FILE,
            "tokenizer.json",
            cfg.encoder_file.as_str(),
            cfg.decoder_file.as_str(),
        ] {
            v.push(Input::new(what, dir.join(f)));
        }
    }
    v
}

/// An audio-LLM config (or its folder) and the files it names.
pub(crate) fn audio_llm_model(p: &Path) -> Vec<Input> {
    let mut v = vec![Input::new("the audio-LLM config", p)];
    for f in runtime::audio_llm::AudioLlmConfig::files_of(p).unwrap_or_default() {
        v.push(Input::new("a file of the audio LLM", f));
    }
    v
}

/// A model folder whose every file belongs to it (an engine folder): the folder and each file
/// in it, one level of subfolders included (TensorRT caches).
pub(crate) fn model_folder(what: &str, p: &Path) -> Vec<Input> {
    let mut v = vec![Input::new(what, p)];
    let files = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    for f in files(p) {
        if f.is_dir() {
            v.extend(
                files(&f)
                    .into_iter()
                    .map(|g| Input::new(format!("a file of {what}"), g)),
            );
        } else {
            v.push(Input::new(format!("a file of {what}"), f));
        }
    }
    v
}

/// An ONNX model and the JSON config beside it (`m.onnx`, `m.json`).
pub(crate) fn model_with_config(p: &Path) -> Vec<Input> {
    vec![
        Input::new("the input model", p),
        Input::new("the input model's config", p.with_extension("json")),
    ]
}

/// Audio inputs, each described as an input audio file.
pub(crate) fn audio<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) -> Vec<Input> {
    paths
        .into_iter()
        .map(|p| Input::new("an input audio file", p))
        .collect()
}

/// Where a command's human-readable summary goes: standard output, or standard error when
/// one of `outputs` is standard output (`--json -`), so the stream stays machine-readable.
pub(crate) fn summary(outputs: &[Output]) -> Box<dyn std::io::Write> {
    let stdout = outputs.iter().any(|o| {
        matches!(
            exporter::atomic::destination(&o.path),
            Ok(exporter::atomic::Destination::Stdout)
        )
    });
    if stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    }
}

/// Writes every `(path, bytes)` as one ([`exporter::atomic::write_all_atomic`]): a failure
/// writing one leaves none.
pub(crate) fn write_all(files: &[(&Path, &[u8])]) -> Result<()> {
    Ok(exporter::atomic::write_all_atomic(files)?)
}
