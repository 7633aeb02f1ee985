//! The daemon's `src/dco` module and the netlink codec it is built on
//! (`src/netlink/attr.rs`), compiled on their own for fuzzing.
#![forbid(unsafe_code)]

#[path = "../../src/dco/mod.rs"]
pub mod dco;

#[path = "../../src/netlink/attr.rs"]
pub mod attr;
pub mod netlink {
    pub use crate::attr;
}

/// Stand-in for the daemon's `sys::wipe`, which the codec calls: its
/// volatile stores need `unsafe`, which this crate forbids, and fuzzing
/// needs no guarantee that key material is gone.
pub mod sys {
    pub fn wipe(buf: &mut [u8]) {
        buf.fill(0);
    }
}
