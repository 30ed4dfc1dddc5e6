//! Execution providers: which devices (`--device auto|cpu|cuda|tensorrt`) this ONNX Runtime
//! build offers, how a requested device resolves, and registering the provider (with the CPU
//! fallback) on a session builder.

use super::env::{environment, first_line, ORT_VERSION};
use crate::EngineError;

/// Which execution provider serves a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// TensorRT, else CUDA, else CPU: the first this ONNX Runtime build has.
    Auto,
    #[default]
    Cpu,
    Cuda,
    Tensorrt,
}

impl std::str::FromStr for Device {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Device, EngineError> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "tensorrt" => Ok(Device::Tensorrt),
            other => Err(EngineError::Device(format!(
                "unknown device '{other}' (auto, cpu, cuda, tensorrt)"
            ))),
        }
    }
}

/// Execution providers this ONNX Runtime build offers, in voxq's preference order.
pub fn available_devices() -> Result<Vec<Device>, EngineError> {
    use ort::ep::ExecutionProvider;
    environment()?;
    let mut v = Vec::new();
    if ort::ep::TensorRT::is_available().unwrap_or(false) {
        v.push(Device::Tensorrt);
    }
    if ort::ep::CUDA::is_available().unwrap_or(false) {
        v.push(Device::Cuda);
    }
    v.push(Device::Cpu);
    Ok(v)
}

/// The device a session asked for `device` gets on this ONNX Runtime build (auto: the first
/// available), or the error an explicit missing device gives.
pub fn resolve_device(device: Device) -> Result<Device, EngineError> {
    let have = available_devices()?;
    match device {
        Device::Auto => Ok(have[0]),
        d if have.contains(&d) => Ok(d),
        d => Err(EngineError::Device(format!(
            "--device {} asked for the {} but this ONNX Runtime {} build has only {}; use --device cpu or auto, or an onnxruntime-gpu build with it",
            match d {
                Device::Cuda => "cuda",
                _ => "tensorrt",
            },
            ep_name(d),
            ORT_VERSION,
            have.iter().map(|d| ep_name(*d)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// ONNX Runtime's name of the execution provider of a device.
pub fn ep_name(d: Device) -> &'static str {
    match d {
        Device::Tensorrt => "TensorrtExecutionProvider",
        Device::Cuda => "CUDAExecutionProvider",
        Device::Cpu | Device::Auto => "CPUExecutionProvider",
    }
}

/// Registers the execution provider for `device` on a session builder; returns the device
/// chosen. An explicit device this build lacks is an error, never a silent fallback.
pub(super) fn with_device(
    b: ort::session::builder::SessionBuilder,
    device: Device,
    name: &str,
) -> Result<(ort::session::builder::SessionBuilder, Device), EngineError> {
    let chosen = resolve_device(device).map_err(|e| match e {
        EngineError::Device(m) => EngineError::Device(format!("{name}: {m}")),
        e => e,
    })?;
    let b = match chosen {
        Device::Tensorrt => b.with_execution_providers([
            ort::ep::TensorRT::default().build().error_on_failure(),
            ort::ep::CPU::default().build(),
        ]),
        Device::Cuda => b.with_execution_providers([
            ort::ep::CUDA::default().build().error_on_failure(),
            ort::ep::CPU::default().build(),
        ]),
        _ => Ok(b),
    }
    .map_err(|e| {
        EngineError::Device(format!(
            "{name}: {}: {}",
            ep_name(chosen),
            first_line(&e.to_string())
        ))
    })?;
    log::info!("{name}: served by {}", ep_name(chosen));
    Ok((b, chosen))
}
