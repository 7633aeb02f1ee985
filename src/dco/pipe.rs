//! Records the daemon writes to the client's end of the `GetPipeFD`
//! datagram socketpair (reference §7.5). The client reads one record per
//! datagram: an `int8` command, then command-specific bytes in host order.
//!
//! * peer deleted: command (PEER_DEL_NTF = 5 upstream, DEL_PEER = 3 for
//!   ovpn-dco-v2), `u32` peer id, `u8` reason: 6 bytes, no padding;
//! * key swap needed (upstream only; the reference names no format for it):
//!   command KEY_SWAP_NTF = 9, `u32` peer id, `u8` key id: 6 bytes, the same
//!   shape as a peer-deleted record;
//! * error: 0xFF (-1), then the text without a NUL. The client treats it as
//!   fatal for the session.

use super::attr::sanitize_text;
use super::model::{KeySwapNeeded, PeerDeleted};
use super::Family;

/// Command byte of an error record (-1 as int8).
pub const PIPE_ERROR: u8 = 0xFF;
/// Size of a peer-deleted record.
pub const PEER_DELETED_LEN: usize = 6;
/// Longest error text sent; a datagram this small always fits the socket.
pub const ERROR_TEXT_MAX: usize = 1024;

/// Returns the 6-byte peer-deleted record for `family`; reasons above 255
/// (none exist today) are sent as 255.
pub fn peer_deleted(family: Family, ev: &PeerDeleted) -> [u8; PEER_DELETED_LEN] {
    let mut r = [0u8; PEER_DELETED_LEN];
    r[0] = family.peer_deleted_cmd();
    r[1..5].copy_from_slice(&ev.peer_id.to_ne_bytes());
    r[5] = u8::try_from(ev.reason.number()).unwrap_or(u8::MAX);
    r
}

/// Returns the 6-byte key-swap-needed record (key ids are 3 bits; larger
/// values, which the kernel never sends, are sent as 255).
pub fn key_swap_needed(ev: &KeySwapNeeded) -> [u8; PEER_DELETED_LEN] {
    let mut r = [0u8; PEER_DELETED_LEN];
    r[0] = super::ovpn::OVPN_CMD_KEY_SWAP_NTF;
    r[1..5].copy_from_slice(&ev.peer_id.to_ne_bytes());
    r[5] = u8::try_from(ev.key_id).unwrap_or(u8::MAX);
    r
}

/// Returns an error record: 0xFF then `text`, control characters replaced,
/// cut to [`ERROR_TEXT_MAX`] bytes on a character boundary.
pub fn error(text: &str) -> Vec<u8> {
    let t = sanitize_text(text.as_bytes(), ERROR_TEXT_MAX);
    let mut r = Vec::with_capacity(1 + t.len());
    r.push(PIPE_ERROR);
    r.extend_from_slice(t.as_bytes());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dco::model::DelReason;

    #[cfg(target_endian = "little")]
    #[test]
    fn peer_deleted_records_per_family() {
        let ev = PeerDeleted { ifindex: 2, peer_id: 0x0001_0203, reason: DelReason::Expired };
        assert_eq!(peer_deleted(Family::Ovpn, &ev), [5, 0x03, 0x02, 0x01, 0x00, 2]);
        assert_eq!(peer_deleted(Family::OvpnDcoV2, &ev), [3, 0x03, 0x02, 0x01, 0x00, 2]);
        let odd = PeerDeleted { reason: DelReason::Other(300), ..ev };
        assert_eq!(peer_deleted(Family::Ovpn, &odd)[5], 255);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn key_swap_needed_record() {
        let ev = KeySwapNeeded { ifindex: 2, peer_id: 0x0001_0203, key_id: 7 };
        assert_eq!(key_swap_needed(&ev), [9, 0x03, 0x02, 0x01, 0x00, 7]);
        assert_eq!(key_swap_needed(&KeySwapNeeded { key_id: 300, ..ev })[5], 255);
    }

    #[test]
    fn error_records() {
        assert_eq!(error("ovpn: no peer"), b"\xffovpn: no peer");
        assert_eq!(error("a\nb\0c"), b"\xffa?b");
        let long = "x".repeat(5000);
        let r = error(&long);
        assert_eq!((r.len(), r[0]), (1 + ERROR_TEXT_MAX, 0xff));
        assert_eq!(error(""), [0xff]);
    }
}
