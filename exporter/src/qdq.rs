//! QDQ passes: expose activations for calibration, insert QuantizeLinear/DequantizeLinear, fp16.
