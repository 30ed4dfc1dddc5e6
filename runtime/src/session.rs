//! Small helpers over ONNX Runtime sessions shared by the model folders (Whisper, LLM, audio
//! LLM): output lookup by name that errs instead of panicking when a model lacks the output.
//! (Poison-tolerant locking is `crate::sync::lock`.)

use ort::session::SessionOutputs;
use ort::value::Shape;

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
