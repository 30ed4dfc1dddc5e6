//! End-to-end tests of the `voxq` commands, grouped into one test binary so that the
//! workspace is linked once for all of them instead of once per file. Each module was its own
//! `tests/NAME.rs` before; run one with `cargo test --test cli NAME::`. Every test works in its
//! own temporary folder (no fixed output paths, ports, environment or working-directory
//! changes in this process), so they can share the process. The server, the bad-input matrix,
//! the atomic-output kill tests (resource limits and timing) and the GPU tests stay separate
//! binaries.

#[path = "../common/mod.rs"]
mod common;

mod audio_llm;
mod bad_input;
mod decode_nocopy;
mod ecapa_distil;
mod edges_misc;
mod engines_cpu;
mod engines_openvino;
mod engines_trt;
mod eval_asr;
mod numeric_ranges;
mod openvino_decode;
mod outputs;
mod placements;
mod quantize_bad_input;
mod quantize_campplus;
mod quantize_modes;
mod quantize_whisper;
mod reference_parity;
mod sensitivity;
mod sensitivity_asr;
mod silence;
mod speaker_cli;
mod trt_fixes;
mod whisper_asr;
mod whisper_logmel;
mod whisper_safeguards;
