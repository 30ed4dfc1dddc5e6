//! The ONNX Runtime backend: the library and its environment (`env`), execution providers and
//! devices (`providers`), sessions (`session`) and the CPU engine build (`build`). Everything
//! public is re-exported here: callers write `engines::ort::cpu_session`.

mod build;
mod env;
mod providers;
mod session;

pub use build::{build_cpu, session_options, warm_up, CPU_ENGINE_FILE, WARMUP_FRAMES};
pub use env::{dylib_candidates, environment, find_dylib, first_line, ort_version, ORT_VERSION};
pub use providers::{available_devices, ep_name, resolve_device, Device};
pub use session::{
    cpu_session, cpu_session_from_bytes, cpu_session_from_bytes_variable_shapes,
    cpu_session_variable_shapes, trt_session, CpuOptions,
};
