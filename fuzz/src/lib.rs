//! The daemon's `src/dco` module, compiled on its own for fuzzing.
#![forbid(unsafe_code)]

#[path = "../../src/dco/mod.rs"]
pub mod dco;
