//! Quantization policy: target placement (tensorrt, ort-cpu), which nodes and tensors to quantize.
