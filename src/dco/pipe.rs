//! Records the daemon writes to the client's end of the `GetPipeFD`
//! datagram socketpair (reference §7.5). The client reads one record per
//! datagram: an `int8` command, then command-specific bytes in host order.
//!
//! * peer deleted: command (PEER_DEL_NTF = 5 upstream, DEL_PEER = 3 for
//!   ovpn-dco-v2), `u32` peer id, `u8` reason: 6 bytes, no padding;
//! * key swap needed (upstream only; the reference names no format for it):
//!   command KEY_SWAP_NTF = 9, `u32` peer id, `u8` key id: 6 bytes, the same
//!   shape as a peer-deleted record;
//! * peer info (the answer to GetPeer): command (PEER_GET = 3 upstream,
//!   GET_PEER = 7 for ovpn-dco-v2), then the client's 216-byte
//!   `OvpnDcoPeer` struct: see [`peer_info`]. 217 bytes, measured against
//!   the packaged netcfg of openvpn3-linux 27.1;
//! * error: 0xFF (-1), then the text without a NUL. The client treats it as
//!   fatal for the session.

use super::model::{Counters, KeySwapNeeded, PeerDeleted, PeerInfo};
use super::Family;
use crate::netlink::attr::sanitize_text;

/// Command byte of an error record (-1 as int8).
pub const PIPE_ERROR: u8 = 0xFF;
/// Size of a peer-deleted record.
pub const PEER_DELETED_LEN: usize = 6;
/// Longest error text sent; a datagram this small always fits the socket.
pub const ERROR_TEXT_MAX: usize = 1024;

/// Returns the 6-byte peer-deleted record for `family`; reasons above 255
/// (none exist today) are sent as 255.
pub fn peer_deleted(family: Family, ev: &PeerDeleted) -> [u8; PEER_DELETED_LEN] {
    short_record(family.layout().peer_deleted.cmd, ev.peer_id, ev.reason.number())
}

/// Returns the 6-byte key-swap-needed record (key ids are 3 bits; larger
/// values, which the kernel never sends, are sent as 255).
pub fn key_swap_needed(ev: &KeySwapNeeded) -> [u8; PEER_DELETED_LEN] {
    short_record(super::ovpn::OVPN_CMD_KEY_SWAP_NTF, ev.peer_id, ev.key_id)
}

/// The 6-byte shape both share: command, `u32` peer id, one byte.
fn short_record(cmd: u8, peer_id: u32, value: u32) -> [u8; PEER_DELETED_LEN] {
    let mut r = [0u8; PEER_DELETED_LEN];
    r[0] = cmd;
    r[1..5].copy_from_slice(&peer_id.to_ne_bytes());
    r[5] = u8::try_from(value).unwrap_or(u8::MAX);
    r
}

/// Size of a peer-info record: the command byte and `OvpnDcoPeer`.
pub const PEER_INFO_LEN: usize = 1 + 216;

/// Returns the peer-info record for `family`. `OvpnDcoPeer` as the client
/// lays it out (x86-64 C layout, fields in host order unless noted):
/// `u32` id, IPv4 and IPv6 VPN addresses (network order), `u16` local port
/// (network order), 6 bytes of padding, a 128-byte `sockaddr_storage`
/// holding the remote, `u32` keepalive interval and timeout, then the
/// tunnel and the transport counters, each `u64` rx/tx bytes and `u32`
/// rx/tx packets (the kernel's 64-bit packet counts are cut to 32 bits,
/// saturating).
pub fn peer_info(family: Family, p: &PeerInfo) -> [u8; PEER_INFO_LEN] {
    let mut r = [0u8; PEER_INFO_LEN];
    r[0] = family.layout().cmds[2]; // PEER_GET / GET_PEER
    let b = &mut r[1..];
    b[0..4].copy_from_slice(&p.id.to_ne_bytes());
    if let Some(a) = p.vpn4 {
        b[4..8].copy_from_slice(&a.octets());
    }
    if let Some(a) = p.vpn6 {
        b[8..24].copy_from_slice(&a.octets());
    }
    b[24..26].copy_from_slice(&p.local_port.unwrap_or(0).to_be_bytes());
    if let Some(remote) = &p.remote {
        let raw = super::sockaddr::to_raw(remote);
        b[32..32 + raw.len()].copy_from_slice(&raw);
    }
    b[160..164].copy_from_slice(&p.keepalive_interval.unwrap_or(0).to_ne_bytes());
    b[164..168].copy_from_slice(&p.keepalive_timeout.unwrap_or(0).to_ne_bytes());
    let counters = |c: &Counters, out: &mut [u8]| {
        let pkts = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).to_ne_bytes();
        out[0..8].copy_from_slice(&c.rx_bytes.to_ne_bytes());
        out[8..16].copy_from_slice(&c.tx_bytes.to_ne_bytes());
        out[16..20].copy_from_slice(&pkts(c.rx_packets));
        out[20..24].copy_from_slice(&pkts(c.tx_packets));
    };
    counters(&p.vpn, &mut b[168..192]);
    counters(&p.link, &mut b[192..216]);
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

    /// The record the packaged netcfg (27.1) wrote for a peer on
    /// ovpn-dco-v2: peer 1, VPN 10.8.0.1, local port 51509, remote
    /// 127.0.0.1:33180, keepalive 10/60, no traffic yet.
    #[cfg(target_endian = "little")]
    #[test]
    fn peer_info_record_matches_the_packaged_netcfg() {
        let p = PeerInfo {
            id: 1,
            remote: Some("127.0.0.1:33180".parse().unwrap()),
            local_ip: None,
            local_port: Some(51509),
            vpn4: Some("10.8.0.1".parse().unwrap()),
            vpn6: None,
            keepalive_interval: Some(10),
            keepalive_timeout: Some(60),
            vpn: Counters::default(),
            link: Counters::default(),
        };
        let mut want = [0u8; PEER_INFO_LEN];
        for (at, bytes) in [
            (0, &[7u8][..]),
            (1, &[1, 0, 0, 0]),
            (5, &[10, 8, 0, 1]),
            (25, &[0xc9, 0x35]),
            (33, &[2, 0, 0x81, 0x9c, 127, 0, 0, 1]),
            (161, &[10, 0, 0, 0, 60, 0, 0, 0]),
        ] {
            want[at..at + bytes.len()].copy_from_slice(bytes);
        }
        assert_eq!(peer_info(Family::OvpnDcoV2, &p), want);
        let busy = PeerInfo {
            vpn: Counters { rx_bytes: 1, tx_bytes: 2, rx_packets: 3, tx_packets: 1 << 40 },
            link: Counters { rx_bytes: 5, tx_bytes: 6, rx_packets: 7, tx_packets: 8 },
            ..p
        };
        let r = peer_info(Family::Ovpn, &busy);
        assert_eq!(r[0], 3);
        assert_eq!(r[169..193], [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 255, 255, 255, 255]);
        assert_eq!(r[193..217], [5, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0]);
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
