//! ONNX model files: load and save `ModelProto`, including tensors kept in external data files.
