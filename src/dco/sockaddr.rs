//! The remote endpoint of `NewPeer(u peer_id, s sa, u salen, ...)`: a
//! base64-encoded raw `struct sockaddr_in` (16 bytes) or `sockaddr_in6`
//! (28 bytes), port and addresses in network order, `sa_family` and
//! `sin6_scope_id` in host order (reference §7.3; `include/uapi/linux/in.h`,
//! `in6.h`). ovpn-dco-v2 takes the same raw struct in SOCKADDR_REMOTE and
//! refuses any other length ([v2-api] §3).

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use super::b64::{self, B64Error};

/// `sizeof(struct sockaddr_in)`.
pub const SOCKADDR_IN_LEN: usize = 16;
/// `sizeof(struct sockaddr_in6)`.
pub const SOCKADDR_IN6_LEN: usize = 28;
/// Longest base64 text accepted for `sa` (28 bytes encode to 40 characters).
pub const SA_BASE64_MAX: usize = 40;

/// Why a `sa`/`salen` pair was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockaddrError {
    /// `sa` is longer than any sockaddr could be.
    TooLong(usize),
    /// `sa` is not strict base64.
    Base64(B64Error),
    /// The decoded size differs from `salen` (reference: "Sockaddr size mismatching").
    SizeMismatch { decoded: usize, salen: u32 },
    /// The family field does not match the size (or is not IPv4/IPv6).
    Family { family: u16, len: usize },
}

impl fmt::Display for SockaddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockaddrError::TooLong(n) => write!(f, "sockaddr text too long ({n} characters)"),
            SockaddrError::Base64(e) => write!(f, "sockaddr is not valid base64: {e}"),
            SockaddrError::SizeMismatch { decoded, salen } => {
                write!(f, "Sockaddr size mismatching ({decoded} bytes, salen {salen})")
            }
            SockaddrError::Family { family, len } => {
                write!(f, "unsupported sockaddr (family {family}, {len} bytes): need AF_INET/16 or AF_INET6/28")
            }
        }
    }
}

impl std::error::Error for SockaddrError {}

/// Parses a raw `sockaddr_in`/`sockaddr_in6` whose size is its only length
/// (IPv6 flow info and scope id are kept).
pub fn from_raw(raw: &[u8]) -> Result<SocketAddr, SockaddrError> {
    let family = match raw {
        [a, b, ..] => u16::from_ne_bytes([*a, *b]),
        _ => 0,
    };
    let port = |r: &[u8]| u16::from_be_bytes([r[2], r[3]]);
    let word = |r: &[u8], at: usize| [r[at], r[at + 1], r[at + 2], r[at + 3]];
    match (i32::from(family), raw.len()) {
        (libc::AF_INET, SOCKADDR_IN_LEN) => Ok(SocketAddr::from((word(raw, 4), port(raw)))),
        (libc::AF_INET6, SOCKADDR_IN6_LEN) => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&raw[8..24]);
            let (flow, scope) = (u32::from_be_bytes(word(raw, 4)), u32::from_ne_bytes(word(raw, 24)));
            Ok(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port(raw), flow, scope)))
        }
        _ => Err(SockaddrError::Family { family, len: raw.len() }),
    }
}

/// Returns the raw `sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes).
pub fn to_raw(addr: &SocketAddr) -> Vec<u8> {
    let mut v = Vec::with_capacity(SOCKADDR_IN6_LEN);
    match addr {
        SocketAddr::V4(a) => {
            v.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            v.extend_from_slice(&a.port().to_be_bytes());
            v.extend_from_slice(&a.ip().octets());
            v.extend_from_slice(&[0; 8]); // sin_zero
        }
        SocketAddr::V6(a) => {
            v.extend_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            v.extend_from_slice(&a.port().to_be_bytes());
            v.extend_from_slice(&a.flowinfo().to_be_bytes());
            v.extend_from_slice(&a.ip().octets());
            v.extend_from_slice(&a.scope_id().to_ne_bytes());
        }
    }
    v
}

/// Decodes the D-Bus `sa`/`salen` pair; the decoded size must equal `salen`.
pub fn decode_base64(sa: &str, salen: u32) -> Result<SocketAddr, SockaddrError> {
    if sa.len() > SA_BASE64_MAX {
        return Err(SockaddrError::TooLong(sa.len()));
    }
    let mut raw = [0u8; SOCKADDR_IN6_LEN];
    let n = b64::decode_into(sa, &mut raw).map_err(SockaddrError::Base64)?;
    if u32::try_from(n) != Ok(salen) {
        return Err(SockaddrError::SizeMismatch { decoded: n, salen });
    }
    from_raw(&raw[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sin(port: u16, ip: [u8; 4]) -> Vec<u8> {
        let mut v = (libc::AF_INET as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&port.to_be_bytes());
        v.extend_from_slice(&ip);
        v.extend_from_slice(&[0; 8]);
        v
    }

    #[test]
    fn layout_matches_libc_structs() {
        assert_eq!(SOCKADDR_IN_LEN, std::mem::size_of::<libc::sockaddr_in>());
        assert_eq!(SOCKADDR_IN6_LEN, std::mem::size_of::<libc::sockaddr_in6>());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv4_from_base64() {
        // 127.0.0.1:1194 as the client sends it: AF_INET=2 (LE), port 04aa (BE).
        let raw = [2, 0, 0x04, 0xaa, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let sa = b64::encode(&raw);
        assert_eq!(sa, "AgAEqn8AAAEAAAAAAAAAAA==");
        let r = decode_base64(&sa, 16).unwrap();
        assert_eq!(r, "127.0.0.1:1194".parse().unwrap());
        assert_eq!(to_raw(&r), raw);
    }

    #[test]
    fn ipv6_with_scope_round_trips() {
        let a: SocketAddr = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 443, 0x12345, 3));
        let r = a;
        let raw = to_raw(&r);
        assert_eq!(raw.len(), 28);
        assert_eq!(&raw[2..4], &[0x01, 0xbb]);
        assert_eq!(&raw[4..8], &[0, 1, 0x23, 0x45]);
        let back = decode_base64(&b64::encode(&raw), 28).unwrap();
        assert_eq!(back, r);
        assert!(matches!(back, SocketAddr::V6(a) if a.scope_id() == 3));
    }

    #[test]
    fn size_must_equal_salen() {
        let sa = b64::encode(&sin(1194, [10, 0, 0, 1]));
        assert_eq!(decode_base64(&sa, 28), Err(SockaddrError::SizeMismatch { decoded: 16, salen: 28 }));
        assert_eq!(decode_base64(&sa, u32::MAX), Err(SockaddrError::SizeMismatch { decoded: 16, salen: u32::MAX }));
    }

    #[test]
    fn family_must_match_size() {
        // AF_INET6 family in a 16-byte struct
        let mut raw = sin(1, [1, 2, 3, 4]);
        raw[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        let e = decode_base64(&b64::encode(&raw), 16).unwrap_err();
        assert!(matches!(e, SockaddrError::Family { len: 16, .. }));
        // AF_INET in 28 bytes, AF_UNIX, empty, odd sizes
        let mut raw28 = sin(1, [1, 2, 3, 4]);
        raw28.resize(28, 0);
        assert!(decode_base64(&b64::encode(&raw28), 28).is_err());
        let mut unix = sin(1, [1, 2, 3, 4]);
        unix[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert!(decode_base64(&b64::encode(&unix), 16).is_err());
        assert!(decode_base64("", 0).is_err());
        assert!(from_raw(&[2]).is_err());
    }

    #[test]
    fn rejects_long_or_bad_text() {
        let long = "A".repeat(44);
        assert_eq!(decode_base64(&long, 33), Err(SockaddrError::TooLong(44)));
        assert!(matches!(decode_base64("AgAEqn8AAAEAAAAAAAAAAA=", 16), Err(SockaddrError::Base64(_))));
        // 40 chars decoding to 30 bytes: fits the text limit, not the struct
        let t = b64::encode(&[0u8; 30]);
        assert_eq!(t.len(), 40);
        assert!(matches!(decode_base64(&t, 30), Err(SockaddrError::Base64(B64Error::OutputTooSmall { .. }))));
    }
}
