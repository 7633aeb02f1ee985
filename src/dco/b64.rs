//! Strict base64 (RFC 4648 §4: standard alphabet `A-Z a-z 0-9 + /`, `=`
//! padding) for the D-Bus `NewPeer` sockaddr and `NewKey` key config.
//!
//! Strict means: the length is a multiple of 4; `=` appears only as one or
//! two final characters; no whitespace or other characters; and the unused
//! low bits of the last symbol before padding are zero (canonical form).
//! The reference client produces exactly this form, so every string it
//! sends decodes, and `encode(decode(s)?) == s` holds for every accepted `s`.

use std::fmt;

use super::secret::{wipe, SecretBytes};

#[cfg(any(test, feature = "fuzz"))]
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a string is not strict base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum B64Error {
    /// The length is not a multiple of 4.
    Length(usize),
    /// A character outside the alphabet (or misplaced `=`) at this index.
    BadChar(usize),
    /// The bits after the last full byte are not zero.
    NonCanonical,
    /// The output buffer is too small for the decoded bytes.
    OutputTooSmall { needed: usize },
}

impl fmt::Display for B64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            B64Error::Length(n) => write!(f, "base64 length {n} is not a multiple of 4"),
            B64Error::BadChar(i) => write!(f, "invalid base64 character at position {i}"),
            B64Error::NonCanonical => write!(f, "non-canonical base64 padding bits"),
            B64Error::OutputTooSmall { needed } => {
                write!(f, "base64 data too large ({needed} bytes)")
            }
        }
    }
}

impl std::error::Error for B64Error {}

fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Returns the decoded length of `s` after checking length and padding shape.
pub fn decoded_len(s: &[u8]) -> Result<usize, B64Error> {
    if s.len() % 4 != 0 {
        return Err(B64Error::Length(s.len()));
    }
    let pad = match s {
        [.., b'=', b'='] => 2,
        [.., b'='] => 1,
        _ => 0,
    };
    Ok(s.len() / 4 * 3 - pad)
}

/// Decodes `s` into the start of `out`; returns the number of bytes written.
pub fn decode_into(s: &str, out: &mut [u8]) -> Result<usize, B64Error> {
    let s = s.as_bytes();
    let n = decoded_len(s)?;
    if out.len() < n {
        return Err(B64Error::OutputTooSmall { needed: n });
    }
    // Every quantum's 24 bits pass through `q`; key configurations are
    // decoded here, so it is wiped whatever the outcome.
    let mut q = [0u8; 4];
    let r = decode_quanta(s, &mut out[..n], &mut q);
    wipe(&mut q);
    r.map(|()| n)
}

/// The loop of [`decode_into`]: `out` has the decoded length, `q` is scratch.
fn decode_quanta(s: &[u8], out: &mut [u8], q: &mut [u8; 4]) -> Result<(), B64Error> {
    let mut padded = false;
    for (i, &c) in s.iter().enumerate() {
        let v = match value(c) {
            Some(v) if !padded => v,
            // '=' only as one or two final characters.
            None if c == b'=' && i + 2 >= s.len() => {
                padded = true;
                0
            }
            _ => return Err(B64Error::BadChar(i)),
        };
        *q = (u32::from_be_bytes(*q) << 6 | u32::from(v)).to_be_bytes();
        if i % 4 == 3 {
            // q[1..4] holds the quantum's 3 bytes; the last one may use fewer.
            let at = i / 4 * 3;
            let take = (out.len() - at).min(3);
            if q[1 + take..].iter().any(|&b| b != 0) {
                return Err(B64Error::NonCanonical);
            }
            out[at..at + take].copy_from_slice(&q[1..1 + take]);
        }
    }
    Ok(())
}

/// Decodes `s` into wiped-on-drop memory (for key configurations).
pub fn decode_secret(s: &str) -> Result<SecretBytes, B64Error> {
    let mut out = SecretBytes::zeroed(decoded_len(s.as_bytes())?);
    // On error `out` is dropped, and so wiped, with whatever was decoded.
    decode_into(s, out.as_mut_slice())?;
    Ok(out)
}

/// Decodes `s` into a new vector.
#[cfg(any(test, feature = "fuzz"))]
pub fn decode(s: &str) -> Result<Vec<u8>, B64Error> {
    let mut out = vec![0; decoded_len(s.as_bytes())?];
    decode_into(s, &mut out)?;
    Ok(out)
}

/// Encodes `data` in canonical padded form (for tests and fuzzing; the
/// daemon only decodes).
#[cfg(any(test, feature = "fuzz"))]
pub fn encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let idx = [b[0] >> 2, ((b[0] & 0x03) << 4) | (b[1] >> 4), ((b[1] & 0x0f) << 2) | (b[2] >> 6), b[2] & 0x3f];
        for (i, &x) in idx.iter().enumerate() {
            if i <= chunk.len() {
                s.push(char::from(ALPHABET[usize::from(x)]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4648 §10 test vectors.
    const RFC: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn rfc4648_vectors() {
        for (plain, enc) in RFC {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn round_trip_all_lengths_and_byte_values() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for len in 0..data.len() {
            let e = encode(&data[..len]);
            assert_eq!(decode(&e).unwrap(), &data[..len], "len {len}");
            assert_eq!(decode_secret(&e).unwrap().as_slice(), &data[..len]);
        }
        // every alphabet symbol in every position
        let all = std::str::from_utf8(ALPHABET).unwrap();
        assert_eq!(encode(&decode(all).unwrap()), all);
    }

    #[test]
    fn rejects_malformed_input() {
        assert_eq!(decode("Zg="), Err(B64Error::Length(3)));
        assert_eq!(decode("Zg"), Err(B64Error::Length(2)));
        assert_eq!(decode("Zm 9"), Err(B64Error::BadChar(2)));
        assert_eq!(decode("Zm9v\nZm9v"), Err(B64Error::Length(9)));
        assert_eq!(decode("Zm-v"), Err(B64Error::BadChar(2)), "url-safe alphabet");
        assert_eq!(decode("Zm_v"), Err(B64Error::BadChar(2)));
        assert_eq!(decode("Z==="), Err(B64Error::BadChar(1)));
        assert_eq!(decode("===="), Err(B64Error::BadChar(0)));
        assert_eq!(decode("Zg=a"), Err(B64Error::BadChar(3)));
        assert_eq!(decode("Zg==Zm9v"), Err(B64Error::BadChar(2)), "padding mid-string");
        assert_eq!(decode("Zm9=Zm9v"), Err(B64Error::BadChar(3)));
        assert_eq!(decode("Zé=="), Err(B64Error::Length(5)));
        assert_eq!(decode("Z\u{e9}="), Err(B64Error::BadChar(1)));
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        assert_eq!(decode("Zh=="), Err(B64Error::NonCanonical)); // 'h' has low bits set
        assert_eq!(decode("Zm9=").unwrap_err(), B64Error::NonCanonical);
        assert_eq!(decode("Zm8=").unwrap(), b"fo");
    }

    #[test]
    fn decode_into_checks_room() {
        let mut small = [0u8; 2];
        assert_eq!(decode_into("Zm9v", &mut small), Err(B64Error::OutputTooSmall { needed: 3 }));
        let mut big = [0xffu8; 5];
        assert_eq!(decode_into("Zm9v", &mut big), Ok(3));
        assert_eq!(&big, b"foo\xff\xff");
    }
}
