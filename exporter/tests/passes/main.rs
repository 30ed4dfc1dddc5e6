//! The QDQ passes on tiny graphs: plan (policy), expose activations, insert QDQ, float16 and
//! deployable size. Each pass fires the expected number of times, its text dump matches a
//! snapshot in `tests/snapshots/` (`UPDATE_SNAPSHOTS=1` rewrites them), and it leaves alone
//! what it must not touch.
//!
//! One test binary (one link) with a module per pass; shared fixtures in `fixtures.rs`.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod dynamic;
mod expose;
mod fixtures;
mod float16;
mod insert_qdq;
mod opset;
mod pipeline;
mod placement;
mod plan;
mod smooth;
mod tile;
mod trt_placement;
mod weight_only;
