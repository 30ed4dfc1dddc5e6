//! Model inspection: groups, ops, parameter counts and sizes; TensorRT QDQ-rule checks.
//!
//! [`inventory`] tabulates a model by [`LayerGroups`]: per group the node count, an op-type
//! histogram, and the initializers its nodes read (each initializer counted once, in the group
//! of its first reader in graph order; initializers read only inside a subgraph count for the
//! node that owns the subgraph).
//!
//! [`check_qdq`] checks a QDQ model against TensorRT's explicit-quantization rules (see
//! [`trt_rules`] for the list). [`conv_chain`] finds the Conv a residual Add input comes from
//! through a short fusible chain (BatchNormalization, activation), for those rules and for
//! the TensorRT placement.

pub mod conv_chain;
mod inventory;
pub mod trt_rules;

pub use inventory::{inventory, GroupInventory, Inventory, ParamCount, UNGROUPED};
pub use trt_rules::{check_qdq, qdq_report, QdqReport, QdqSummary, Rule, Violation};
