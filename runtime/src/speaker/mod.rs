//! Speaker verification: model configs, embeddings, the speech check, enrollment, scoring,
//! metrics and plots.

pub mod config;
pub mod db;
pub mod det;
pub mod embed;
pub mod enrollment;
pub mod eval;
pub mod metrics;
pub mod name;
pub mod plot;
pub mod speech;
pub mod store;
pub mod trials;

pub use enrollment::{open_store, EnrollmentStore, StoreModel};
