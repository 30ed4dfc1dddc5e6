//! Small helpers over ONNX Runtime sessions shared by the model folders (Whisper, LLM, audio
//! LLM): a lock that a panic elsewhere cannot poison for good, and output lookup by name that
//! errs instead of panicking when a model lacks the output.

use std::sync::{Mutex, MutexGuard, PoisonError};

use ort::session::SessionOutputs;
use ort::value::Shape;

/// Locks a session (or observer) mutex. A panic while it was held cannot have left an ONNX
/// Runtime session half-changed, so a poisoned lock is taken over rather than failing every
/// later call for the life of the process.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The float32 output `name` of a run: its shape and values, or why not (missing output;
/// ONNX Runtime's words for another element type).
pub(crate) fn f32_output<'a>(
    outs: &'a SessionOutputs,
    name: &str,
) -> std::result::Result<(&'a Shape, &'a [f32]), String> {
    outs.get(name)
        .ok_or_else(|| format!("the model has no output '{name}'"))?
        .try_extract_tensor::<f32>()
        .map_err(|e| e.to_string())
}
