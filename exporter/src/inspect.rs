//! Model inspection: groups, ops, parameter counts and sizes; TensorRT QDQ-rule checks.
