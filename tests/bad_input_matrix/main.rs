//! Bad-input matrix (issue 8): each command × each kind of input file it reads, with malformed,
//! truncated, empty, oversized, wrong-type and adversarial files.
//!
//! Every bad case must end with exit status 1 and exactly one `voxq: error: ` line on standard
//! error that names the file (no panic, no second line), within [`TIME_LIMIT`], with the child
//! under an address-space limit of [`AS_LIMIT`] (so an attempt to allocate 10 GB fails instead
//! of taking the machine) and a peak resident size under [`MAX_RSS`]; outputs the command would
//! have written must not exist afterwards. Each kind also runs good input under the same
//! limits, which must succeed: the limits do not fail normal runs.
//!
//! "Oversized" files are sparse ([`HUGE`] bytes, past protobuf's 2 GiB limit and every text
//! input's size cap), so they cost no disk and must be refused without being read.
//!
//! Modules: `harness` (running a case under the limits, the verdict), `files` (scratch
//! folders and bad-file builders), and one module per kind of input.

#[path = "../common/mod.rs"]
mod common;

mod configs;
mod files;
mod harness;
mod onnx_models;
mod stores;
mod tables_and_lists;
mod wav_audio;
