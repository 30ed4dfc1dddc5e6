//! TensorRT engine builds: `--target tensorrt` (a `trtexec` plan, its layer report and an
//! EPContext model so ONNX Runtime's TensorRT execution provider can serve it) and
//! `--target tensorrt-ort` (ONNX Runtime's TensorRT execution provider builds the engine, keeps
//! it in its engine cache and dumps the EPContext model). Both write `manifest.json` with the
//! GPU and TensorRT version, and are built in a scratch folder moved into place on success.

use std::path::{Path, PathBuf};

use exporter::model::summary;

use super::epcontext::{self, EpContext, CTX_FILE};
use super::layers::LayerReport;
use super::profile::{profiles, shape_list};
use super::trtexec::{trtexec_args, TrtExec, LAYER_INFO_FILE, PLAN_FILE};
use crate::build::{check_config, copy_config, in_scratch, new_manifest, read_model, specs};
use crate::manifest::{Builder, Gpu, Manifest, ShapeProfile, TensorSpec};
use crate::EngineError;

/// File the layer report is written to beside the plan.
pub const LAYER_REPORT_FILE: &str = "layers.md";
/// trtexec's build log beside the plan.
pub const BUILD_LOG_FILE: &str = "build.log";
/// Folder of ONNX Runtime's TensorRT engine cache in a `tensorrt-ort` engine.
pub const ORT_CACHE_DIR: &str = "trt_cache";

/// The precision a TensorRT build is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrtPrecision {
    /// A QDQ model: precision comes from its Q/DQ nodes (strongly typed network).
    Int8Qdq,
    /// A float model built with fp16 kernels allowed.
    Fp16,
    /// A float model in fp32 (TF32 as TensorRT's default allows).
    Fp32,
}

/// What a TensorRT build is asked for.
#[derive(Debug, Clone, Default)]
pub struct TrtBuildOptions {
    /// `None`: int8 for a QDQ model, fp16 for a float one.
    pub precision: Option<TrtPrecision>,
    /// Shape profiles given with `--profile`; the others come from the model's dynamic axes.
    pub profiles: Vec<(String, ShapeProfile)>,
}

/// The GPU a build runs on (the first `nvidia-smi` lists), or a one-line error.
pub fn build_gpu() -> Result<Gpu, EngineError> {
    super::gpu::gpus().into_iter().next().ok_or_else(|| {
        EngineError::Device(
            "no NVIDIA GPU found (nvidia-smi lists none): TensorRT engines are built on the GPU they run on; use --target cpu here"
                .into(),
        )
    })
}

/// The precision a build gets: the asked one, checked against the model, or the default.
pub fn choose_precision(
    model: &Path,
    is_qdq: bool,
    asked: Option<TrtPrecision>,
) -> Result<TrtPrecision, EngineError> {
    match (asked, is_qdq) {
        (None, true) | (Some(TrtPrecision::Int8Qdq), true) => Ok(TrtPrecision::Int8Qdq),
        (None, false) => Ok(TrtPrecision::Fp16),
        (Some(TrtPrecision::Int8Qdq), false) => Err(EngineError::Build {
            path: model.to_path_buf(),
            reason: "int8 needs a QDQ model (make one with `voxq quantize`); voxq does not use implicit calibration".into(),
        }),
        (Some(p), false) => Ok(p),
        (Some(_), true) => Err(EngineError::Build {
            path: model.to_path_buf(),
            reason: "a QDQ model builds in int8 (its Q/DQ nodes fix the precision); give the float model for fp16/fp32".into(),
        }),
    }
}

/// Folder inside a build's scratch folder that holds the float16 cast while trtexec reads it
/// (removed after the build).
const CAST_DIR: &str = ".fp16";
/// File name of the float16 cast trtexec builds when [`BuildPlan::cast_fp16`] is set.
pub const FP16_MODEL_FILE: &str = "model.fp16.onnx";

/// How a trtexec build gets the precision it is asked for: the model it builds (the source,
/// or its float16 cast), trtexec's arguments, and what the manifest says was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// Where to write the float16 cast of the model (`exporter::passes::float16`) that trtexec
    /// builds instead of the source model; `None`: trtexec reads the source model.
    pub cast_fp16: Option<PathBuf>,
    pub args: Vec<String>,
    /// The precision the manifest records (`int8`, `fp16`, `fp32`).
    pub precision: &'static str,
    /// How that precision is obtained, for the build log.
    pub how: &'static str,
}

/// The plan of a trtexec build of `model` (whose own precision is `model_precision`, as
/// [`crate::build::precision_of`] says) into `dir` with TensorRT `trt_major`.
///
/// An fp16 build on TensorRT 11 or later casts an fp32 model to float16 first: TensorRT 11
/// removed weak typing and trtexec's `--fp16` (NVIDIA, "Migrating from TensorRT 10.x to
/// 11.x": <https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x.html>,
/// "Strongly Typed Networks Are Now Required"; trtexec 11.1's `--stronglyTyped` is a no-op,
/// NVIDIA/TensorRT `samples/common/sampleOptions.cpp`), so the network runs in its model's
/// types and an fp32 model builds in fp32 whatever is asked. NVIDIA's migration guide casts
/// the ONNX model first (ModelOpt AutoCast); voxq uses its own float16 pass. Before
/// TensorRT 11 `--fp16` lets TensorRT pick fp16 kernels (weakly typed). A model that is
/// already float16 is built as it is.
pub fn build_plan(
    model: &Path,
    model_precision: &str,
    dir: &Path,
    precision: TrtPrecision,
    profiles: &[(String, ShapeProfile)],
    trt_major: u32,
) -> BuildPlan {
    let strongly_typed = trt_major >= 11;
    let cast = precision == TrtPrecision::Fp16 && strongly_typed && model_precision == "fp32";
    let cast_fp16 = cast.then(|| dir.join(CAST_DIR).join(FP16_MODEL_FILE));
    let source = cast_fp16.as_deref().unwrap_or(model);
    let how = match precision {
        TrtPrecision::Int8Qdq => "int8 from the model's Q/DQ nodes",
        TrtPrecision::Fp16 if cast => {
            "fp16: the fp32 model cast to float16 first (TensorRT 11 has no --fp16), strongly typed"
        }
        TrtPrecision::Fp16 if strongly_typed => "fp16: a float16 model, strongly typed",
        TrtPrecision::Fp16 => "fp16: --fp16 (TensorRT may keep some layers in fp32)",
        TrtPrecision::Fp32 => "fp32",
    };
    BuildPlan {
        args: trtexec_args(source, dir, precision, profiles, trt_major),
        cast_fp16,
        precision: precision_name(precision),
        how,
    }
}

/// Writes the float16 cast of `proto` to `path` (its folder created): the model a
/// [`BuildPlan`] with `cast_fp16` builds.
pub fn write_fp16_cast(proto: &onnx_protobuf::ModelProto, path: &Path) -> Result<(), EngineError> {
    let fail = |reason: String| EngineError::Build {
        path: path.to_path_buf(),
        reason,
    };
    let f16 = exporter::passes::to_float16(proto)
        .map_err(|e| fail(format!("cannot cast the model to float16: {e}")))?;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| fail(e.to_string()))?;
    }
    exporter::model::save(&f16, path, &Default::default()).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// A model read for a TensorRT build, with its precision and shape profiles decided.
struct Prepared {
    bytes: Vec<u8>,
    proto: onnx_protobuf::ModelProto,
    precision: TrtPrecision,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    profiles: Vec<(String, ShapeProfile)>,
}

fn prepare(model: &Path, o: &TrtBuildOptions) -> Result<Prepared, EngineError> {
    let (bytes, proto) = read_model(model)?;
    let s = summary(&proto);
    let is_qdq = crate::build::precision_of(&proto) == "int8";
    let precision = choose_precision(model, is_qdq, o.precision)?;
    let inputs = specs(&s.inputs);
    let profiles = profiles(&inputs, &o.profiles)?;
    Ok(Prepared {
        bytes,
        proto,
        precision,
        outputs: specs(&s.outputs),
        inputs,
        profiles,
    })
}

impl Prepared {
    /// The manifest of a build of this model: its inputs with their profiles, its precision,
    /// the GPU it was built on.
    fn manifest(
        &self,
        target: &str,
        model: &Path,
        engine_file: &str,
        builder: Builder,
        gpu: &Gpu,
    ) -> Manifest {
        let mut m = new_manifest(
            target,
            model,
            &self.bytes,
            &self.proto,
            engine_file,
            builder,
            with_profiles(self.inputs.clone(), &self.profiles),
            self.outputs.clone(),
        );
        m.precision = precision_name(self.precision).into();
        m.gpu = Some(gpu.clone());
        m
    }
}

fn precision_name(p: TrtPrecision) -> &'static str {
    match p {
        TrtPrecision::Int8Qdq => "int8",
        TrtPrecision::Fp16 => "fp16",
        TrtPrecision::Fp32 => "fp32",
    }
}

fn with_profiles(
    mut inputs: Vec<TensorSpec>,
    profiles: &[(String, ShapeProfile)],
) -> Vec<TensorSpec> {
    for i in &mut inputs {
        i.profile = profiles
            .iter()
            .find(|(n, _)| n == &i.name)
            .map(|(_, p)| p.clone());
    }
    inputs
}

/// Builds a TensorRT plan with `trtexec` into the engine folder `out`: `model.plan`, the
/// timing cache, `layers.json` and its report `layers.md`, `build.log`, the EPContext model
/// `model_ctx.onnx`, the model config and `manifest.json`. A warm-up inference through
/// `trtexec --loadEngine` proves the plan runs.
pub fn build_tensorrt(
    model: &Path,
    config: Option<&Path>,
    out: &Path,
    o: &TrtBuildOptions,
) -> Result<(Manifest, LayerReport), EngineError> {
    let tool = TrtExec::detect()?;
    let gpu = build_gpu()?;
    let p = prepare(model, o)?;
    check_config(config, model, &p.bytes, &p.proto)?;
    let model_abs: PathBuf = model.canonicalize().map_err(|e| EngineError::Build {
        path: model.to_path_buf(),
        reason: e.to_string(),
    })?;
    in_scratch(out, |scratch| {
        let plan = build_plan(
            &model_abs,
            crate::build::precision_of(&p.proto),
            scratch,
            p.precision,
            &p.profiles,
            tool.major(),
        );
        if let Some(cast) = &plan.cast_fp16 {
            write_fp16_cast(&p.proto, cast)?;
        }
        log::info!(
            "{}: TensorRT {} build, {}",
            out.display(),
            tool.version,
            plan.how
        );
        let built = tool.run(&plan.args, Some(&scratch.join(BUILD_LOG_FILE)));
        let _ = std::fs::remove_dir_all(scratch.join(CAST_DIR));
        built?;
        let report = super::layers::read(&scratch.join(LAYER_INFO_FILE))?;
        exporter::atomic::write_atomic(
            scratch.join(LAYER_REPORT_FILE),
            report.markdown().as_bytes(),
        )
        .map_err(|e| EngineError::Build {
            path: scratch.join(LAYER_REPORT_FILE),
            reason: e.to_string(),
        })?;
        epcontext::write(
            &scratch.join(CTX_FILE),
            &p.proto,
            &EpContext {
                engine_file: PLAN_FILE.into(),
                hardware_architecture: super::gpu::sm_arch(&gpu.compute_capability),
                sdk_version: tool.version.clone(),
                onnx_model_filename: model
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            },
        )?;
        let mut m = p.manifest(
            "tensorrt",
            model,
            PLAN_FILE,
            Builder {
                name: "trtexec".into(),
                version: tool.version.clone(),
            },
            &gpu,
        );
        m.precision = plan.precision.into();
        m.config_file = copy_config(config, scratch, CTX_FILE)?;
        // warm-up: one inference at the smallest profile shape
        let feed: Vec<(String, Vec<i64>, Vec<f32>)> = m
            .inputs
            .iter()
            .map(|i| {
                let shape = i
                    .profile
                    .as_ref()
                    .map_or(i.shape.clone(), |p| p.min.clone());
                let n: i64 = shape.iter().product();
                (i.name.clone(), shape, vec![0f32; n.max(0) as usize])
            })
            .collect();
        let warm = scratch.join(".warmup");
        std::fs::create_dir_all(&warm).map_err(|e| EngineError::Build {
            path: warm.clone(),
            reason: e.to_string(),
        })?;
        let outs = tool.infer(&scratch.join(PLAN_FILE), &feed, &warm)?;
        let _ = std::fs::remove_dir_all(&warm);
        if let Some(what) = super::trtexec::non_finite(&outs) {
            return Err(EngineError::Build {
                path: scratch.join(PLAN_FILE),
                reason: format!("warm-up on zeros gave a {what}"),
            });
        }
        m.write(scratch)?;
        Ok((m, report))
    })
}

/// The TensorRT execution provider options of a `tensorrt-ort` build: int8 from the Q/DQ
/// nodes (`trt_int8_enable`, no calibration table), fp16 where asked, explicit shape
/// profiles, and the EPContext model dumped to `dir/model_ctx.onnx` with `embed_mode` 0. With
/// a dumped EPContext model the engine cache path is taken relative to the model's folder, so
/// the engine lands in `dir/trt_cache/` and the model holds that relative path; the timing
/// cache goes to the same folder.
pub fn ort_trt_provider(
    precision: TrtPrecision,
    profiles: &[(String, ShapeProfile)],
    dir: &Path,
) -> ort::ep::TensorRT {
    let mut ep = ort::ep::TensorRT::default()
        .with_int8(precision == TrtPrecision::Int8Qdq)
        .with_fp16(precision != TrtPrecision::Fp32)
        .with_engine_cache(true)
        .with_engine_cache_path(ORT_CACHE_DIR)
        .with_timing_cache(true)
        .with_timing_cache_path(dir.join(ORT_CACHE_DIR).display())
        .with_dump_ep_context_model(true)
        .with_ep_context_file_path(dir.join(CTX_FILE).display())
        .with_ep_context_embed_mode(0);
    if !profiles.is_empty() {
        ep = ep
            .with_profile_min_shapes(shape_list(profiles, |p| &p.min))
            .with_profile_opt_shapes(shape_list(profiles, |p| &p.opt))
            .with_profile_max_shapes(shape_list(profiles, |p| &p.max));
    }
    ep
}

/// Builds an engine with ONNX Runtime's TensorRT execution provider into `out`: the engine
/// cache, the EPContext model ONNX Runtime dumps (`model_ctx.onnx`, checked: one EPContext
/// node, `embed_mode` 0, a relative engine path that exists), the config and the manifest.
pub fn build_tensorrt_ort(
    model: &Path,
    config: Option<&Path>,
    out: &Path,
    o: &TrtBuildOptions,
) -> Result<Manifest, EngineError> {
    let have = crate::ort::available_devices()?;
    if !have.contains(&crate::ort::Device::Tensorrt) {
        return Err(EngineError::Device(format!(
            "--target tensorrt-ort needs ONNX Runtime's TensorrtExecutionProvider, which this ONNX Runtime {} build does not have (install onnxruntime-gpu with TensorRT, or use --target cpu)",
            crate::ort::ORT_VERSION
        )));
    }
    let gpu = build_gpu()?;
    let trt_version = super::gpu::tensorrt_version().ok_or_else(|| {
        EngineError::Device("libnvinfer (TensorRT) not found by the loader".into())
    })?;
    let p = prepare(model, o)?;
    check_config(config, model, &p.bytes, &p.proto)?;
    in_scratch(out, |scratch| {
        let cache = scratch.join(ORT_CACHE_DIR);
        std::fs::create_dir_all(&cache).map_err(|e| EngineError::Build {
            path: cache.clone(),
            reason: e.to_string(),
        })?;
        let ctx = scratch.join(CTX_FILE);
        let ep = ort_trt_provider(p.precision, &p.profiles, scratch);
        let session = crate::ort::trt_session(model, ep)?;
        drop(session);
        let read = epcontext::read(&ctx)?;
        let mut m = p.manifest(
            "tensorrt-ort",
            model,
            CTX_FILE,
            Builder {
                name: "onnxruntime-tensorrt".into(),
                version: trt_version.clone(),
            },
            &gpu,
        );
        log::info!(
            "{}: TensorRT engine {} for {}",
            out.display(),
            read.engine_file,
            read.hardware_architecture
        );
        m.config_file = copy_config(config, scratch, CTX_FILE)?;
        m.write(scratch)?;
        Ok(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_follows_the_model() {
        let p = Path::new("m.onnx");
        assert_eq!(
            choose_precision(p, true, None).unwrap(),
            TrtPrecision::Int8Qdq
        );
        assert_eq!(
            choose_precision(p, false, None).unwrap(),
            TrtPrecision::Fp16
        );
        assert_eq!(
            choose_precision(p, false, Some(TrtPrecision::Fp32)).unwrap(),
            TrtPrecision::Fp32
        );
        let e = choose_precision(p, false, Some(TrtPrecision::Int8Qdq)).unwrap_err();
        assert!(e.to_string().contains("needs a QDQ model"), "{e}");
        assert!(choose_precision(p, true, Some(TrtPrecision::Fp16)).is_err());
    }

    fn flags(a: &[String]) -> Vec<&str> {
        a.iter()
            .map(String::as_str)
            .filter(|a| matches!(*a, "--fp16" | "--int8" | "--stronglyTyped"))
            .collect()
    }

    /// TensorRT 11 has no `--fp16`: an fp16 build of an fp32 model builds its float16 cast
    /// (and says so), instead of building fp32 labelled fp16 as before.
    #[test]
    fn fp16_builds_cast_the_model_where_trtexec_has_no_fp16_flag() {
        let (m, d) = (Path::new("/m/campplus.onnx"), Path::new("/e/scratch"));
        let cast = d.join(".fp16").join(FP16_MODEL_FILE);
        let p = build_plan(m, "fp32", d, TrtPrecision::Fp16, &[], 11);
        assert_eq!(p.cast_fp16.as_deref(), Some(cast.as_path()));
        assert_eq!(p.args[0], format!("--onnx={}", cast.display()));
        assert!(flags(&p.args).is_empty(), "{:?}", p.args);
        assert_eq!(p.precision, "fp16");
        assert!(p.how.contains("cast to float16"), "{}", p.how);
        assert_eq!(p.args[1], "--saveEngine=/e/scratch/model.plan");

        // TensorRT 10 still has --fp16: the model is built as it is
        let p = build_plan(m, "fp32", d, TrtPrecision::Fp16, &[], 10);
        assert_eq!(p.cast_fp16, None);
        assert_eq!(p.args[0], "--onnx=/m/campplus.onnx");
        assert_eq!(flags(&p.args), ["--fp16"]);
        assert_eq!(p.precision, "fp16");

        // an already float16 model is not cast again; fp32 and int8 never are
        let p = build_plan(m, "fp16", d, TrtPrecision::Fp16, &[], 11);
        assert_eq!((p.cast_fp16, p.precision), (None, "fp16"));
        let p = build_plan(m, "fp32", d, TrtPrecision::Fp32, &[], 11);
        assert_eq!((p.cast_fp16.clone(), p.precision), (None, "fp32"));
        assert!(flags(&p.args).is_empty());
        let p = build_plan(m, "int8", d, TrtPrecision::Int8Qdq, &[], 12);
        assert_eq!((p.cast_fp16, p.precision), (None, "int8"));
    }
}
