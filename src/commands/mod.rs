//! One module per subcommand: its arguments (beyond the shared groups in `crate::args`) and
//! its `run`, which calls into the libraries and prints the result.

pub(crate) mod autoquant;
pub(crate) mod bench;
pub(crate) mod bench_decode;
pub(crate) mod build;
pub(crate) mod calibrate;
pub(crate) mod embed;
pub(crate) mod enroll;
pub(crate) mod eval;
pub(crate) mod eval_asr;
pub(crate) mod export_triton;
pub(crate) mod generate;
pub(crate) mod identify;
pub(crate) mod inspect;
pub(crate) mod quantize;
pub(crate) mod quantize_whisper;
pub(crate) mod sensitivity;
pub(crate) mod sensitivity_asr;
pub(crate) mod serve;
pub(crate) mod store_check;
pub(crate) mod transcribe;
pub(crate) mod verify;
pub(crate) mod whisper_recipe;

/// Bytes as MiB, for size lines.
pub(crate) fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
