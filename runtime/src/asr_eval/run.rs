//! Running a list through a model: a Whisper folder (windowed transcription) or an audio-LLM
//! config (task `asr`, or `qa` with each question), greedy, with per-utterance WER counts or
//! answer matches and the totals.

use std::path::{Path, PathBuf};
use std::time::Instant;

use engines::ort::CpuOptions;
use serde::Serialize;

use super::list::{AsrItem, QaItem};
use super::normalize::{is_non_speech, normalize, words};
use super::wer::{align, WerCounts};
use crate::audio::decode::read_audio;
use crate::audio::logmel::{to_16k, SAMPLE_RATE};
use crate::audio_llm::{AudioLlm, AudioLlmPart};
use crate::error::{cfg_err, Result};
use crate::generation::GenerateOptions;
use crate::progress::Progress;
use crate::whisper::{Safeguards, Whisper};

/// A model that turns speech into text: a Whisper folder or an audio LLM.
pub enum AsrModel {
    /// A Whisper folder and the decoding safeguards it transcribes with.
    Whisper(Box<Whisper>, Safeguards),
    AudioLlm(Box<AudioLlm>),
}

/// Which kind of model a path is: `Some(true)` for an audio-LLM config (`audio_llm.json` or a
/// folder holding one), `Some(false)` for a Whisper folder (or its `whisper.json`).
pub fn is_audio_llm(path: &Path) -> Option<bool> {
    let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(str::to_string);
    if path.is_dir() {
        if path.join("audio_llm.json").is_file() {
            return Some(true);
        }
        if path.join(crate::whisper::CONFIG_FILE).is_file() {
            return Some(false);
        }
        return None;
    }
    match name(path).as_deref() {
        Some(crate::whisper::CONFIG_FILE) => Some(false),
        Some(n) if n.ends_with(".json") => Some(true),
        _ => None,
    }
}

impl AsrModel {
    /// Sets a Whisper model's audio context ([`crate::whisper::AudioCtx`]); an audio LLM
    /// takes only the full context (its projector was trained on its own cut, `trim_to_audio`).
    pub fn set_audio_ctx(&mut self, ctx: crate::whisper::AudioCtx) -> Result<()> {
        match self {
            AsrModel::Whisper(w, _) => w.set_audio_ctx(ctx),
            AsrModel::AudioLlm(a) if ctx != crate::whisper::AudioCtx::Full => Err(cfg_err(
                a.config_path(),
                format!("--audio-ctx {ctx}: an audio LLM cuts its audio tokens by its own config (projector.trim_to_audio); only full applies"),
            )),
            AsrModel::AudioLlm(_) => Ok(()),
        }
    }

    /// Opens a Whisper folder or an audio-LLM config, with one part replaced by serialized
    /// ONNX bytes when given (part names: Whisper `encoder`/`decoder`; audio LLM `encoder`/
    /// `projector`/`llm`).
    pub fn open(path: &Path, opts: &CpuOptions, replace: Option<(&str, &[u8])>) -> Result<Self> {
        let bad_part =
            |p: &str, parts: &str| cfg_err(path, format!("no model part '{p}' (parts: {parts})"));
        match is_audio_llm(path) {
            Some(true) => {
                let r = match replace {
                    None => None,
                    Some((p, b)) => Some((
                        [
                            AudioLlmPart::Encoder,
                            AudioLlmPart::Projector,
                            AudioLlmPart::Llm,
                        ]
                        .into_iter()
                        .find(|x| x.name() == p)
                        .ok_or_else(|| bad_part(p, "encoder, projector, llm"))?,
                        b,
                    )),
                };
                Ok(AsrModel::AudioLlm(Box::new(AudioLlm::open_replacing(
                    path, opts, r,
                )?)))
            }
            Some(false) => {
                let (e, d) = match replace {
                    None => (None, None),
                    Some(("encoder", b)) => (Some(b), None),
                    Some(("decoder", b)) => (None, Some(b)),
                    Some((p, _)) => return Err(bad_part(p, "encoder, decoder")),
                };
                Ok(AsrModel::Whisper(
                    Box::new(Whisper::open_replacing(path, opts, e, d)?),
                    Safeguards::off(),
                ))
            }
            None => Err(cfg_err(
                path,
                "neither a Whisper model folder (whisper.json) nor an audio-LLM config \
                 (audio_llm.json)"
                    .into(),
            )),
        }
    }

    /// The model with Whisper's decoding safeguards `sg` (a Whisper folder opens without
    /// them; an audio LLM ignores them).
    pub fn with_safeguards(self, sg: Safeguards) -> Self {
        match self {
            AsrModel::Whisper(w, _) => AsrModel::Whisper(w, sg),
            other => other,
        }
    }

    /// `whisper` or `audio-llm`.
    pub fn kind(&self) -> &'static str {
        match self {
            AsrModel::Whisper(..) => "whisper",
            AsrModel::AudioLlm(_) => "audio-llm",
        }
    }

    /// Which backend decodes: `onnxruntime` or `openvino` (an audio LLM: its LLM's; its
    /// encoder and projector run in ONNX Runtime).
    pub fn backend(&self) -> &'static str {
        match self {
            AsrModel::Whisper(w, _) => w.backend(),
            AsrModel::AudioLlm(m) => m.llm.backend(),
        }
    }

    /// The text of 16 kHz audio: Whisper transcribes it (30 s windows); the audio LLM
    /// answers the `asr` task, or `qa` with `question`.
    pub fn run(
        &self,
        name: &Path,
        samples: &[f32],
        question: Option<&str>,
        opts: &GenerateOptions,
    ) -> Result<String> {
        match self {
            AsrModel::Whisper(w, sg) => {
                w.transcribe_samples_with(name, samples, SAMPLE_RATE, opts, sg)
            }
            AsrModel::AudioLlm(m) => {
                let task = if question.is_some() { "qa" } else { "asr" };
                let user = m.user_turn(task, None, question)?;
                let ids = m.generate(name, samples, SAMPLE_RATE, &user, opts, &mut |_| true)?;
                Ok(m.llm.decode(&ids)?.trim().to_string())
            }
        }
    }
}

/// A list's audio, decoded and at 16 kHz, read once for every model run.
pub struct Clip {
    /// The path as the list gives it.
    pub name: String,
    pub path: PathBuf,
    pub samples: Vec<f32>,
}

impl Clip {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / SAMPLE_RATE as f64
    }
}

/// Reads every audio file of a list (paths relative to `root`).
pub fn load_clips<'a>(
    names: impl IntoIterator<Item = &'a str>,
    root: &Path,
    progress: bool,
) -> Result<Vec<Clip>> {
    let names: Vec<&str> = names.into_iter().collect();
    let bar = Progress::new(names.len() as u64, "reading", "files", progress);
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let path = root.join(n);
        let a = read_audio(&path)?;
        let samples = to_16k(&path, &a.samples, a.sample_rate)?;
        out.push(Clip {
            name: n.to_string(),
            path,
            samples,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// One utterance of an ASR evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct AsrUtterance {
    pub audio: String,
    pub reference: String,
    pub hypothesis: String,
    #[serde(flatten)]
    pub counts: WerCounts,
    pub errors: usize,
    pub seconds: f64,
}

/// The WER of a model on a list.
#[derive(Debug, Clone, Serialize)]
pub struct AsrReport {
    pub model: String,
    pub kind: String,
    /// The backend that decodes (`onnxruntime`, `openvino`).
    pub backend: String,
    pub task: String,
    pub wer_percent: f64,
    #[serde(flatten)]
    pub counts: WerCounts,
    pub errors: usize,
    pub utterances: usize,
    /// Left out: bracketed non-speech references.
    pub skipped_non_speech: usize,
    pub audio_seconds: f64,
    pub decode_seconds: f64,
    pub per_utterance: Vec<AsrUtterance>,
}

/// WER of `model` over the utterances of `items` (their clips in `clips`, same order);
/// bracketed non-speech references are left out.
pub fn evaluate_asr(
    model: &AsrModel,
    label: &str,
    items: &[AsrItem],
    clips: &[Clip],
    opts: &GenerateOptions,
    progress: bool,
) -> Result<AsrReport> {
    let bar = Progress::new(items.len() as u64, "transcribing", "utterances", progress);
    let t0 = Instant::now();
    let mut total = WerCounts::default();
    let (mut per, mut skipped, mut secs) = (Vec::new(), 0, 0.0);
    for (it, clip) in items.iter().zip(clips) {
        bar.inc(1);
        if is_non_speech(&it.reference) {
            skipped += 1;
            continue;
        }
        let hyp = model.run(&clip.path, &clip.samples, None, opts)?;
        let c = align(&words(&it.reference), &words(&hyp));
        total.add(&c);
        secs += clip.seconds();
        per.push(AsrUtterance {
            audio: it.audio.clone(),
            reference: it.reference.clone(),
            hypothesis: hyp,
            errors: c.errors(),
            counts: c,
            seconds: clip.seconds(),
        });
    }
    bar.finish_and_clear();
    Ok(AsrReport {
        model: label.to_string(),
        kind: model.kind().into(),
        backend: model.backend().into(),
        task: "asr".into(),
        wer_percent: total.wer_percent(),
        errors: total.errors(),
        counts: total,
        utterances: per.len(),
        skipped_non_speech: skipped,
        audio_seconds: secs,
        decode_seconds: t0.elapsed().as_secs_f64(),
        per_utterance: per,
    })
}

/// Per-utterance lines: `audio<TAB>reference<TAB>hypothesis<TAB>errors<TAB>words` after a
/// header (tabs and newlines inside texts become spaces).
pub fn asr_tsv(r: &AsrReport) -> String {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let mut out = String::from("audio\treference\thypothesis\terrors\twords\n");
    for u in &r.per_utterance {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            clean(&u.audio),
            clean(&u.reference),
            clean(&u.hypothesis),
            u.errors,
            u.counts.words
        ));
    }
    out
}

/// One question of a QA evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct QaAnswer {
    pub audio: String,
    pub question: String,
    pub answer: String,
    pub output: String,
    /// The normalised output is the normalised answer.
    pub exact: bool,
    /// The normalised answer's words stand, in a row, in the normalised output.
    pub contained: bool,
}

/// QA accuracy of an audio LLM on a list.
#[derive(Debug, Clone, Serialize)]
pub struct QaReport {
    pub model: String,
    pub task: String,
    pub questions: usize,
    pub exact: usize,
    pub contained: usize,
    pub exact_percent: f64,
    pub contained_percent: f64,
    pub audio_seconds: f64,
    pub decode_seconds: f64,
    pub per_question: Vec<QaAnswer>,
}

/// Whether `answer` matches `output` exactly and whether it is contained in it, both after
/// normalisation (containment is by whole words in a row).
pub fn qa_match(answer: &str, output: &str) -> (bool, bool) {
    let exact = normalize(answer) == normalize(output);
    let (a, o) = (words(answer), words(output));
    let contained = exact || (!a.is_empty() && o.windows(a.len()).any(|w| w == a.as_slice()));
    (exact, contained)
}

/// QA accuracy of an audio LLM over `items` (their clips in `clips`, same order).
pub fn evaluate_qa(
    model: &AsrModel,
    label: &str,
    items: &[QaItem],
    clips: &[Clip],
    opts: &GenerateOptions,
    progress: bool,
) -> Result<QaReport> {
    if let AsrModel::Whisper(..) = model {
        return Err(cfg_err(
            Path::new(label),
            "task qa needs an audio-LLM config (a Whisper model only transcribes)".into(),
        ));
    }
    let bar = Progress::new(items.len() as u64, "answering", "questions", progress);
    let t0 = Instant::now();
    let mut per = Vec::with_capacity(items.len());
    let mut secs = 0.0;
    for (it, clip) in items.iter().zip(clips) {
        let out = model.run(&clip.path, &clip.samples, Some(&it.question), opts)?;
        let (exact, contained) = qa_match(&it.answer, &out);
        secs += clip.seconds();
        per.push(QaAnswer {
            audio: it.audio.clone(),
            question: it.question.clone(),
            answer: it.answer.clone(),
            output: out,
            exact,
            contained,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let n = per.len();
    let exact = per.iter().filter(|a| a.exact).count();
    let contained = per.iter().filter(|a| a.contained).count();
    let pct = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    Ok(QaReport {
        model: label.to_string(),
        task: "qa".into(),
        questions: n,
        exact,
        contained,
        exact_percent: pct(exact),
        contained_percent: pct(contained),
        audio_seconds: secs,
        decode_seconds: t0.elapsed().as_secs_f64(),
        per_question: per,
    })
}

/// Per-question lines: `audio<TAB>question<TAB>answer<TAB>output<TAB>exact<TAB>contained`.
pub fn qa_tsv(r: &QaReport) -> String {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let mut out = String::from("audio\tquestion\tanswer\toutput\texact\tcontained\n");
    for a in &r.per_question {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            clean(&a.audio),
            clean(&a.question),
            clean(&a.answer),
            clean(&a.output),
            u8::from(a.exact),
            u8::from(a.contained)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qa_matching() {
        assert_eq!(qa_match("Seven", "seven."), (true, true));
        assert_eq!(qa_match("7", "The number is seven."), (false, true));
        assert_eq!(qa_match("no", "I know"), (false, false));
        assert_eq!(
            qa_match("first word", "the first word is hello"),
            (false, true)
        );
        assert_eq!(qa_match("yes", ""), (false, false));
    }

    #[test]
    fn kinds_of_paths() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(
            is_audio_llm(&root.join("fixtures/whisper-tiny-test")),
            Some(false)
        );
        assert_eq!(
            is_audio_llm(&root.join("fixtures/audio-llm-tiny-test")),
            Some(true)
        );
        assert_eq!(
            is_audio_llm(&root.join("fixtures/audio-llm-tiny-test/audio_llm.json")),
            Some(true)
        );
        assert_eq!(is_audio_llm(&root.join("fixtures/audio")), None);
    }
}
