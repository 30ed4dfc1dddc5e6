//! Speaker verification.
