//! Speech-to-text evaluation: word error rate of a Whisper folder or an audio LLM on a list
//! of audio and reference texts, and spoken-content QA accuracy of an audio LLM.
//!
//! - [`normalize`] — the text normalisation of `tools/whisper_wer.py`;
//! - [`wer`] — word edit distance with substitution/deletion/insertion counts;
//! - [`list`] — the TSV lists (`audio<TAB>reference`, `audio<TAB>question<TAB>answer`);
//! - [`run`] — the models ([`AsrModel`]) and the evaluation loops with their reports.
//!
//! The sensitivity evaluator over WER is [`crate::evaluate::WerEvaluator`].

pub mod list;
pub mod normalize;
pub mod run;
pub mod wer;

pub use list::{read_asr_list, read_qa_list, AsrItem, QaItem};
pub use normalize::{is_non_speech, normalize, words};
pub use run::{
    asr_tsv, evaluate_asr, evaluate_qa, is_audio_llm, load_clips, qa_tsv, AsrModel, AsrReport,
    Clip, QaReport,
};
pub use wer::{align, WerCounts};
