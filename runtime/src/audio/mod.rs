//! Audio front ends.
