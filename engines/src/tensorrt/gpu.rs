//! What NVIDIA hardware and TensorRT this machine has: GPUs from `nvidia-smi` (name and compute
//! capability) and the TensorRT library version (`getInferLibVersion` of `libnvinfer`).
//!
//! Both are asked for at run time, never linked: a machine without them simply reports none.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::manifest::Gpu;

/// Parses `nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader` output
/// (`NVIDIA H100 80GB HBM3, 9.0` per line).
pub fn parse_nvidia_smi(csv: &str) -> Vec<Gpu> {
    csv.lines()
        .filter_map(|l| {
            let (name, cc) = l.rsplit_once(',')?;
            let (name, cc) = (name.trim(), cc.trim());
            let ok = !name.is_empty()
                && cc.split('.').count() == 2
                && cc
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            ok.then(|| Gpu {
                name: name.to_string(),
                compute_capability: cc.to_string(),
            })
        })
        .collect()
}

/// The NVIDIA GPUs `nvidia-smi` lists; empty when there is no driver or no GPU.
pub fn gpus() -> Vec<Gpu> {
    Command::new("nvidia-smi")
        .args(["--query-gpu=name,compute_cap", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// Compute capability as TensorRT's execution provider writes it in EPContext models
/// (`9.0` → `90`).
pub fn sm_arch(compute_capability: &str) -> String {
    compute_capability.replace('.', "")
}

/// Decodes `getInferLibVersion()` / `NV_TENSORRT_VERSION`: major*1000+minor*100+patch up
/// to TensorRT 9, major*10000+minor*100+patch from TensorRT 10 on.
pub fn decode_trt_version(n: u64) -> String {
    let (major, minor, patch) = if n >= 100_000 {
        (n / 10000, (n / 100) % 100, n % 100)
    } else {
        (n / 1000, (n / 100) % 10, n % 100)
    };
    format!("{major}.{minor}.{patch}")
}

/// Where `libnvinfer` may be: `TENSORRT_ROOT/lib` first, then the loader's search path.
fn nvinfer_candidates() -> Vec<PathBuf> {
    let names = [
        "libnvinfer.so.11",
        "libnvinfer.so.10",
        "libnvinfer.so.8",
        "libnvinfer.so",
    ];
    let mut out = Vec::new();
    if let Some(root) = std::env::var_os("TENSORRT_ROOT") {
        for n in names {
            out.push(Path::new(&root).join("lib").join(n));
        }
    }
    out.extend(names.iter().map(PathBuf::from));
    out
}

/// The TensorRT library version this machine would run engines with, if it has one.
pub fn tensorrt_version() -> Option<String> {
    for cand in nvinfer_candidates() {
        if cand.is_absolute() && !cand.is_file() {
            continue;
        }
        // SAFETY: loading libnvinfer runs its initialisers (no side effects beyond CUDA
        // lazy loading); getInferLibVersion has had this C signature since TensorRT 5.
        unsafe {
            let Ok(lib) = libloading::Library::new(&cand) else {
                continue;
            };
            let Ok(f) = lib.get::<unsafe extern "C" fn() -> i32>(b"getInferLibVersion") else {
                continue;
            };
            let v = f();
            if v > 0 {
                return Some(decode_trt_version(v as u64));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines() {
        let g = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\nNVIDIA L4, 8.9\n\nbroken line\n");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(g[0].compute_capability, "9.0");
        assert_eq!(sm_arch(&g[1].compute_capability), "89");
        assert!(parse_nvidia_smi("NVIDIA A100, [N/A]").is_empty());
        assert!(parse_nvidia_smi("").is_empty());
    }

    #[test]
    fn library_versions() {
        assert_eq!(decode_trt_version(8601), "8.6.1");
        assert_eq!(decode_trt_version(100300), "10.3.0");
        assert_eq!(decode_trt_version(101300), "10.13.0");
    }
}
