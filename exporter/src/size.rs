//! Deployable-size accounting: ONNX file size vs int8 weights + scales + the float rest.
