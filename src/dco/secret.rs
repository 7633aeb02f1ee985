//! Key material that is wiped from memory when it is dropped.
//!
//! Cipher keys, nonce tails and the decoded `DcoKeyConfig` buffer live in a
//! [`SecretBytes`]. Its heap buffer gets its final size when it is created
//! and never grows, so no reallocation leaves a stray copy behind. Moves copy
//! only the pointer, not the bytes.
//!
//! `std::ptr::write_volatile` would need an unchecked block, which this
//! module may not use. The wipe is therefore a plain zeroing loop followed by
//! `std::hint::black_box` on the buffer (the optimiser must assume the zeroes
//! are read, so it cannot drop the stores as dead) and a compiler fence.

use std::fmt;
use std::sync::atomic::{compiler_fence, Ordering};

/// Overwrites `buf` with zeroes in a way the optimiser keeps.
pub fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        *b = 0;
    }
    std::hint::black_box(&mut *buf);
    compiler_fence(Ordering::SeqCst);
}

/// Owned secret bytes, zeroed on drop. Deliberately not `Clone`.
pub struct SecretBytes {
    buf: Vec<u8>,
}

impl SecretBytes {
    /// Returns `len` zero bytes, allocated once.
    pub fn zeroed(len: usize) -> Self {
        SecretBytes { buf: vec![0; len] }
    }

    /// Returns a copy of `data`; the caller still owns (and should wipe) `data`.
    pub fn from_slice(data: &[u8]) -> Self {
        let mut s = Self::zeroed(data.len());
        s.buf.copy_from_slice(data);
        s
    }

    /// Returns the bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Returns the bytes for filling in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Returns the number of bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Returns true when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Shortens to `len` bytes, wiping the dropped tail first.
    pub fn truncate(&mut self, len: usize) {
        if len < self.buf.len() {
            wipe(&mut self.buf[len..]);
            self.buf.truncate(len);
        }
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        wipe(&mut self.buf);
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.buf == other.buf
    }
}

impl Eq for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material, not even in debug logs.
        write!(f, "SecretBytes({} bytes)", self.buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_zeroes_every_byte() {
        let mut b = [0xa5u8; 33];
        wipe(&mut b);
        assert_eq!(b, [0u8; 33]);
    }

    #[test]
    fn truncate_keeps_the_head_and_ignores_longer_lengths() {
        let mut s = SecretBytes::from_slice(&[1, 2, 3, 4, 5]);
        s.truncate(9);
        assert_eq!(s.len(), 5);
        s.truncate(2);
        assert_eq!(s.as_slice(), &[1, 2]);
        // The dropped tail sits in spare capacity, which safe code cannot
        // read; `wipe_zeroes_every_byte` covers the routine truncate uses.
    }

    #[test]
    fn debug_does_not_print_the_bytes() {
        let s = SecretBytes::from_slice(b"\x11\x22secret");
        let text = format!("{s:?}");
        assert_eq!(text, "SecretBytes(8 bytes)");
    }
}
