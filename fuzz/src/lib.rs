//! The daemon's `src/dco` module, compiled on its own for fuzzing.
#![forbid(unsafe_code)]

#[path = "../../src/dco/mod.rs"]
pub mod dco;

/// Stand-in for the daemon's `sys::wipe`, which `src/dco` calls: its
/// volatile stores need `unsafe`, which this crate forbids, and fuzzing
/// needs no guarantee that key material is gone.
pub mod sys {
    pub fn wipe(buf: &mut [u8]) {
        buf.fill(0);
    }
}
