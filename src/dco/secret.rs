//! Key material that is wiped from memory when it is dropped.
//!
//! Cipher keys, nonce tails and the decoded `DcoKeyConfig` buffer live in a
//! [`SecretBytes`]. Its heap buffer gets its final size when it is created
//! and never grows, so no reallocation leaves a stray copy behind. Moves copy
//! only the pointer, not the bytes.
//!
//! The wipe itself is [`wipe`], volatile stores in `crate::sys` (this module
//! holds no unchecked code). [`Wiped`] (in the netlink codec) is the one
//! `Drop` that calls it; both `SecretBytes` and the netlink writer keep
//! their bytes in one.

use std::fmt;

pub use crate::netlink::attr::Wiped;
pub use crate::sys::wipe;

/// Owned secret bytes, zeroed on drop. Deliberately not `Clone`.
pub struct SecretBytes(Wiped<Vec<u8>>);

impl SecretBytes {
    /// Returns `len` zero bytes, allocated once.
    pub fn zeroed(len: usize) -> Self {
        SecretBytes(Wiped(vec![0; len]))
    }

    /// Returns a copy of `data`; the caller still owns (and should wipe) `data`.
    pub fn from_slice(data: &[u8]) -> Self {
        SecretBytes(Wiped(data.to_vec()))
    }

    /// Returns the bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Returns the bytes for filling in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Returns the number of bytes.
    #[cfg(any(test, feature = "fuzz"))]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Returns true when there are no bytes.
    #[cfg(any(test, feature = "fuzz"))]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Shortens to `len` bytes, wiping the dropped tail first.
    #[cfg(any(test, feature = "fuzz"))]
    pub fn truncate(&mut self, len: usize) {
        if len < self.0.len() {
            wipe(&mut self.0[len..]);
            self.0.truncate(len);
        }
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material, not even in debug logs.
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_wiped_buffer_zeroes_it() {
        // The buffer belongs to the test, so it can be read after the drop;
        // SecretBytes and NlMsg are wiped by this same Drop.
        let mut owned = [0xa5u8; 33];
        let w = Wiped(&mut owned[..]);
        assert_eq!(w[0], 0xa5, "not wiped before the drop");
        drop(w);
        assert_eq!(owned, [0u8; 33]);
    }

    #[test]
    fn truncate_keeps_the_head_and_ignores_longer_lengths() {
        let mut s = SecretBytes::from_slice(&[1, 2, 3, 4, 5]);
        s.truncate(9);
        assert_eq!(s.len(), 5);
        s.truncate(2);
        assert_eq!(s.as_slice(), &[1, 2]);
        // The dropped tail sits in spare capacity, which safe code cannot
        // read; `sys::tests::wipe_zeroes_every_byte` covers the routine.
    }

    #[test]
    fn debug_does_not_print_the_bytes() {
        let s = SecretBytes::from_slice(b"\x11\x22secret");
        let text = format!("{s:?}");
        assert_eq!(text, "SecretBytes(8 bytes)");
    }
}
