//! Conversion between ONNX TensorProto values and ONNX Runtime tensors.
