//! The TensorRT backend (NVIDIA GPUs): the GPU and TensorRT library on this machine (`gpu`),
//! shape profiles (`profile`), `trtexec` — its command line, runs, outputs and timings
//! (`trtexec`), the layer-precision report (`layers`), EPContext models that let ONNX
//! Runtime's TensorRT execution provider serve a plan (`epcontext`), and the two builds,
//! `--target tensorrt` and `--target tensorrt-ort` (`build`). Build and profile items are
//! re-exported here (`engines::tensorrt::build_tensorrt`); the other modules keep their
//! names (`engines::tensorrt::layers::read`), with their headline types re-exported too.

mod build;
pub mod epcontext;
pub mod gpu;
pub mod layers;
mod profile;
pub mod trtexec;

pub use build::{
    build_gpu, build_plan, build_tensorrt, build_tensorrt_ort, choose_precision, ort_trt_provider,
    write_fp16_cast, BuildPlan, TrtBuildOptions, TrtPrecision, BUILD_LOG_FILE, FP16_MODEL_FILE,
    LAYER_REPORT_FILE, ORT_CACHE_DIR,
};
pub use epcontext::{EpContext, CTX_FILE};
pub use layers::LayerReport;
pub use profile::{parse_profile, profiles, shape_list, BATCH_PROFILE, FRAMES_PROFILE};
pub use trtexec::TrtExec;
