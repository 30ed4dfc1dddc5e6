//! Speaker verification: model configs, embeddings, enrollment, scoring, metrics and plots.

pub mod config;
pub mod db;
pub mod embed;
pub mod eval;
pub mod metrics;
pub mod plot;
pub mod store;
pub mod trials;
