//! Family-neutral values for DCO requests and replies.
//!
//! Each constructor enforces the kernel's rules, so a value the kernel would
//! refuse cannot be built. Sources, abbreviated in the comments below:
//!
//! * [golden]: `shared/kernel-facts/ovpn-upstream-golden.md`, bytes recorded
//!   from the upstream `ovpn` module (7.1.0-rc3 and 6.16.0-rc6 builds on
//!   6.12.117+deb12-amd64).
//! * [v2-api]: `shared/rigs/dco-vm/ovpn-dco-v2-api.md`, the out-of-tree
//!   ovpn-dco-v2 module (Debian openvpn-dco-dkms 0.0+git20231103), checked on
//!   6.12.117+deb12-amd64.
//! * [spec]: the upstream policy generated from
//!   `Documentation/netlink/specs/ovpn.yaml` (`drivers/net/ovpn/netlink-gen.c`).
//! * [wire]: the DATA_V2 header: 5-bit opcode, 3-bit key id, 24-bit peer id.
//!   The keepalive datagram in [golden] starts `49 00 00 01`
//!   (opcode 9 << 3 | key 1, peer 1); ovpn-dco-v2 masks both fields the same
//!   way, so larger values would be silently truncated there.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

use super::secret::SecretBytes;
use super::sockaddr;
use super::{DcoError, Family};

/// Highest peer id: 24 bits ([spec] `max: 0xFFFFFF`; [wire]).
pub const PEER_ID_MAX: u32 = 0x00FF_FFFF;
/// Highest key id: 3 bits ([spec] `KEY_ID max 7`; [wire]).
pub const KEY_ID_MAX: u32 = 7;
/// `OVPN_NONCE_TAIL_SIZE`: exact nonce tail length ([golden]: 4 bytes ->
/// -ERANGE "binary attribute size out of range"; [v2-api]: exactly 8 B).
pub const NONCE_TAIL_SIZE: usize = 8;

/// A peer id the kernel accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(u32);

impl PeerId {
    /// Returns the id, or `PeerIdRange` above [`PEER_ID_MAX`].
    pub fn new(id: u32) -> Result<Self, DcoError> {
        (id <= PEER_ID_MAX).then_some(PeerId(id)).ok_or(DcoError::PeerIdRange(id))
    }

    /// Returns the raw value.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A key id the kernel accepts (0..=7 for both families; only the attribute
/// width differs: u32 upstream, u8 in ovpn-dco-v2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(u8);

impl KeyId {
    /// Returns the id, or `KeyIdRange` above [`KEY_ID_MAX`].
    pub fn new(id: u32) -> Result<Self, DcoError> {
        u8::try_from(id).ok().filter(|_| id <= KEY_ID_MAX).map(KeyId).ok_or(DcoError::KeyIdRange(id))
    }

    /// Returns the raw value.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// `enum ovpn_key_slot` (same numbers in both families).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum KeySlot {
    /// `OVPN_KEY_SLOT_PRIMARY` = 0.
    Primary = 0,
    /// `OVPN_KEY_SLOT_SECONDARY` = 1.
    Secondary = 1,
}

impl KeySlot {
    /// Returns the slot for the D-Bus value (0 or 1), else `KeySlot`.
    pub fn from_u32(v: u32) -> Result<Self, DcoError> {
        [KeySlot::Primary, KeySlot::Secondary]
            .into_iter()
            .find(|s| u32::from(s.number()) == v)
            .ok_or(DcoError::KeySlot(v))
    }

    /// Returns the kernel number.
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// `enum ovpn_cipher_alg` minus NONE, which both modules refuse for a key
/// ([golden]: CIPHER_ALG=0 -> -EINVAL "ovpn: unsupported cipher";
/// [v2-api]: "only 1 and 2 are accepted by the key parser").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CipherAlg {
    /// `OVPN_CIPHER_ALG_AES_GCM` = 1.
    AesGcm = 1,
    /// `OVPN_CIPHER_ALG_CHACHA20_POLY1305` = 2.
    ChaCha20Poly1305 = 2,
}

impl CipherAlg {
    /// Returns the cipher for its kernel/protobuf number, else `UnsupportedCipher`.
    pub fn from_u32(v: u32) -> Result<Self, DcoError> {
        let known = [CipherAlg::AesGcm, CipherAlg::ChaCha20Poly1305];
        known.into_iter().find(|a| u32::from(a.number()) == v).ok_or(DcoError::UnsupportedCipher(v))
    }

    /// Returns the kernel number.
    pub fn number(self) -> u16 {
        self as u16
    }

    /// Returns true if the kernel's AEAD accepts a key of `len` bytes
    /// ([v2-api]: 16/24/32 for AES-GCM, 32 for ChaCha20-Poly1305; the same
    /// crypto API transforms back the upstream module).
    pub fn key_len_ok(self, len: usize) -> bool {
        match self {
            CipherAlg::AesGcm => matches!(len, 16 | 24 | 32),
            CipherAlg::ChaCha20Poly1305 => len == 32,
        }
    }
}

impl fmt::Display for CipherAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CipherAlg::AesGcm => "AES-GCM",
            CipherAlg::ChaCha20Poly1305 => "ChaCha20-Poly1305",
        })
    }
}

/// Key material for one direction: cipher key and 8-byte nonce tail.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyDir {
    key: SecretBytes,
    nonce_tail: SecretBytes,
}

impl KeyDir {
    /// Returns the direction, or `KeySize` / `NonceTail` if the kernel would refuse it.
    pub fn new(alg: CipherAlg, key: &[u8], nonce_tail: &[u8]) -> Result<Self, DcoError> {
        if !alg.key_len_ok(key.len()) {
            return Err(DcoError::KeySize { alg, len: key.len() });
        }
        if nonce_tail.len() != NONCE_TAIL_SIZE {
            return Err(DcoError::NonceTail(nonce_tail.len()));
        }
        Ok(KeyDir { key: SecretBytes::from_slice(key), nonce_tail: SecretBytes::from_slice(nonce_tail) })
    }

    /// Returns the cipher key.
    pub fn key(&self) -> &[u8] {
        self.key.as_slice()
    }

    /// Returns the nonce tail (always 8 bytes).
    pub fn nonce_tail(&self) -> &[u8] {
        self.nonce_tail.as_slice()
    }
}

/// Everything KEY_NEW needs; all six parts are mandatory in both families
/// ([golden]: KEY_NEW without DECRYPT_DIR -> MISS_TYPE 6; [v2-api]).
#[derive(Debug, PartialEq, Eq)]
pub struct KeyConfig {
    peer: PeerId,
    slot: KeySlot,
    key_id: KeyId,
    alg: CipherAlg,
    encrypt: KeyDir,
    decrypt: KeyDir,
}

impl KeyConfig {
    /// Returns the key configuration; `KeySize` if a direction's key does not fit `alg`.
    pub fn new(
        peer: PeerId,
        slot: KeySlot,
        key_id: KeyId,
        alg: CipherAlg,
        encrypt: KeyDir,
        decrypt: KeyDir,
    ) -> Result<Self, DcoError> {
        // KeyDir::new checked each key against the alg it was given; check
        // again against this one so mixed-up values cannot slip through.
        for d in [&encrypt, &decrypt] {
            if !alg.key_len_ok(d.key().len()) {
                return Err(DcoError::KeySize { alg, len: d.key().len() });
            }
        }
        Ok(KeyConfig { peer, slot, key_id, alg, encrypt, decrypt })
    }

    /// Returns the peer id.
    pub fn peer(&self) -> PeerId {
        self.peer
    }
    /// Returns the slot.
    pub fn slot(&self) -> KeySlot {
        self.slot
    }
    /// Returns the key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    /// Returns the cipher.
    pub fn alg(&self) -> CipherAlg {
        self.alg
    }
    /// Returns the encrypt direction.
    pub fn encrypt(&self) -> &KeyDir {
        &self.encrypt
    }
    /// Returns the decrypt direction.
    pub fn decrypt(&self) -> &KeyDir {
        &self.decrypt
    }
}

/// Device mode, chosen when the link is created (IFLA_OVPN_MODE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// `OVPN_MODE_P2P` = 0: one peer; the default without IFLA_INFO_DATA.
    P2p = 0,
    /// `OVPN_MODE_MP` = 1: several peers, routed by VPN address.
    Mp = 1,
}

/// The transport socket handed to the kernel by fd number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A UDP socket: the remote endpoint is mandatory ([golden]: "ovpn:
    /// missing remote IP address for UDP socket"; [v2-api] §3).
    Udp(SocketAddr),
    /// A connected TCP socket: no remote is sent (upstream refuses one with
    /// "unexpected remote IP address with TCP socket"; [v2-api]: not needed).
    Tcp,
}

/// A PEER_NEW request, checked for one family and device mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerNew {
    family: Family,
    id: PeerId,
    socket: u32,
    transport: Transport,
    vpn4: Option<Ipv4Addr>,
    vpn6: Option<Ipv6Addr>,
}

impl PeerNew {
    /// Returns the request, or the rule it breaks.
    ///
    /// Unspecified VPN addresses (0.0.0.0, ::) count as absent, as in the
    /// reference service. Rules: fd >= 0; UDP remote port != 0 ([spec]
    /// `REMOTE_PORT min 1`); MP needs a VPN address ([golden]: "ovpn: VPN IP
    /// must be provided in MP mode"; [v2-api] §3); upstream P2P must not
    /// carry one ([golden]: "ovpn: unexpected VPN IP in P2P mode").
    pub fn new(
        family: Family,
        mode: Mode,
        id: PeerId,
        socket_fd: RawFd,
        transport: Transport,
        vpn4: Option<Ipv4Addr>,
        vpn6: Option<Ipv6Addr>,
    ) -> Result<Self, DcoError> {
        let socket = u32::try_from(socket_fd).map_err(|_| DcoError::BadSocket(socket_fd))?;
        if matches!(transport, Transport::Udp(r) if r.port() == 0) {
            return Err(DcoError::RemotePortZero);
        }
        let vpn4 = vpn4.filter(|a| !a.is_unspecified());
        let vpn6 = vpn6.filter(|a| !a.is_unspecified());
        let has_vpn = vpn4.is_some() || vpn6.is_some();
        match (mode, family) {
            (Mode::Mp, _) if !has_vpn => return Err(DcoError::VpnIpRequired),
            (Mode::P2p, Family::Ovpn) if has_vpn => return Err(DcoError::VpnIpInP2p),
            _ => {}
        }
        Ok(PeerNew { family, id, socket, transport, vpn4, vpn6 })
    }

    /// Returns the family this request was checked for.
    pub fn family(&self) -> Family {
        self.family
    }
    /// Returns the peer id.
    pub fn id(&self) -> PeerId {
        self.id
    }
    /// Returns the socket fd number.
    pub fn socket(&self) -> u32 {
        self.socket
    }
    /// Returns the transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }
    /// Returns the VPN IPv4 address, if any.
    pub fn vpn4(&self) -> Option<Ipv4Addr> {
        self.vpn4
    }
    /// Returns the VPN IPv6 address, if any.
    pub fn vpn6(&self) -> Option<Ipv6Addr> {
        self.vpn6
    }

    /// Returns the PEER_NEW for a D-Bus `NewPeer` call, or the first input
    /// or kernel rule it breaks.
    ///
    /// Differences from [`PeerNew::new`], to stay compatible with the
    /// reference client: on an upstream P2P device the VPN addresses the
    /// client always passes are dropped (the kernel refuses them there); on
    /// a TCP socket `sa` is still decoded and checked, but not sent.
    pub fn from_dbus(family: Family, mode: Mode, a: &DbusNewPeer<'_>) -> Result<Self, DcoError> {
        let remote = sockaddr::decode_base64(a.sa, a.salen).map_err(DcoError::Sockaddr)?;
        let mut vpn4: Option<Ipv4Addr> = parse_ip(a.vpn4, "vpn4")?;
        let mut vpn6: Option<Ipv6Addr> = parse_ip(a.vpn6, "vpn6")?;
        if family == Family::Ovpn && mode == Mode::P2p {
            (vpn4, vpn6) = (None, None);
        }
        let transport = if a.tcp { Transport::Tcp } else { Transport::Udp(remote) };
        PeerNew::new(family, mode, PeerId::new(a.peer_id)?, a.fd, transport, vpn4, vpn6)
    }
}

/// The arguments of the D-Bus `NewPeer(u peer_id, s sa, u salen, s vpn4,
/// s vpn6)` call plus its fd, as received.
#[derive(Clone, Copy, Debug)]
pub struct DbusNewPeer<'a> {
    /// `peer_id`.
    pub peer_id: u32,
    /// `sa`: base64 of the raw sockaddr.
    pub sa: &'a str,
    /// `salen`: its size in bytes.
    pub salen: u32,
    /// `vpn4`: tunnel IPv4 as text; "" or "0.0.0.0" = none.
    pub vpn4: &'a str,
    /// `vpn6`: tunnel IPv6 as text; "" or "::" = none.
    pub vpn6: &'a str,
    /// The transport socket received with the call.
    pub fd: RawFd,
    /// True if that socket is TCP (the daemon asks `SO_PROTOCOL`).
    pub tcp: bool,
}

fn parse_ip<T: std::str::FromStr>(text: &str, what: &'static str) -> Result<Option<T>, DcoError> {
    (!text.is_empty()).then(|| text.parse().map_err(|_| DcoError::BadAddress(what))).transpose()
}

/// `enum ovpn_del_peer_reason`; unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelReason {
    /// 0: the device or module went away (also after RTM_DELLINK, [golden]).
    Teardown,
    /// 1: userspace asked (PEER_DEL).
    Userspace,
    /// 2: keepalive timeout.
    Expired,
    /// 3: the transport socket failed.
    TransportError,
    /// 4: the TCP connection closed.
    TransportDisconnect,
    /// A value newer than this code.
    Other(u32),
}

/// The reasons the kernel numbers, in order (0..=4).
const DEL_REASONS: [DelReason; 5] = [
    DelReason::Teardown,
    DelReason::Userspace,
    DelReason::Expired,
    DelReason::TransportError,
    DelReason::TransportDisconnect,
];

impl DelReason {
    /// Returns the reason for its kernel number.
    pub fn from_u32(v: u32) -> Self {
        usize::try_from(v).ok().and_then(|i| DEL_REASONS.get(i)).copied().unwrap_or(DelReason::Other(v))
    }

    /// Returns the kernel number.
    pub fn number(self) -> u32 {
        match self {
            DelReason::Other(n) => n,
            known => DEL_REASONS.iter().zip(0..).find(|(r, _)| **r == known).map_or(0, |(_, n)| n),
        }
    }
}

/// Traffic counters of one layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// A peer as reported by PEER_GET (do or dump).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Peer id.
    pub id: u32,
    /// Remote endpoint (UDP).
    pub remote: Option<SocketAddr>,
    /// Local address used towards the peer (0.0.0.0 when not pinned).
    pub local_ip: Option<IpAddr>,
    /// Local port.
    pub local_port: Option<u16>,
    /// VPN IPv4 address.
    pub vpn4: Option<Ipv4Addr>,
    /// VPN IPv6 address.
    pub vpn6: Option<Ipv6Addr>,
    /// Keepalive interval, seconds.
    pub keepalive_interval: Option<u32>,
    /// Keepalive timeout, seconds.
    pub keepalive_timeout: Option<u32>,
    /// Tunnel-level counters.
    pub vpn: Counters,
    /// Transport-level counters.
    pub link: Counters,
}

/// A peer-deleted notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerDeleted {
    /// The device it happened on; the daemon forwards only its own.
    pub ifindex: u32,
    /// The peer.
    pub peer_id: u32,
    /// Why.
    pub reason: DelReason,
}

/// A key-swap-needed notification (upstream only: the key ran out of IVs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySwapNeeded {
    /// The device.
    pub ifindex: u32,
    /// The peer.
    pub peer_id: u32,
    /// The exhausted key.
    pub key_id: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn udp() -> Transport {
        Transport::Udp("127.0.0.1:1194".parse::<SocketAddr>().unwrap())
    }

    #[test]
    fn peer_id_is_24_bits() {
        assert_eq!(PeerId::new(0).unwrap().get(), 0);
        assert_eq!(PeerId::new(0xFF_FFFF).unwrap().get(), 0xFF_FFFF);
        assert_eq!(PeerId::new(0x100_0000), Err(DcoError::PeerIdRange(0x100_0000)));
        assert_eq!(PeerId::new(u32::MAX), Err(DcoError::PeerIdRange(u32::MAX)));
    }

    #[test]
    fn key_id_is_3_bits() {
        assert_eq!(KeyId::new(7).unwrap().get(), 7);
        assert_eq!(KeyId::new(8), Err(DcoError::KeyIdRange(8)));
        assert_eq!(KeyId::new(256), Err(DcoError::KeyIdRange(256)));
    }

    #[test]
    fn slots_and_ciphers() {
        assert_eq!(KeySlot::from_u32(1), Ok(KeySlot::Secondary));
        assert_eq!(KeySlot::from_u32(2), Err(DcoError::KeySlot(2)));
        assert_eq!(CipherAlg::from_u32(0), Err(DcoError::UnsupportedCipher(0)));
        assert_eq!(CipherAlg::from_u32(3), Err(DcoError::UnsupportedCipher(3)));
        assert_eq!(CipherAlg::from_u32(2), Ok(CipherAlg::ChaCha20Poly1305));
    }

    #[test]
    fn key_sizes_per_cipher() {
        for len in [16, 24, 32] {
            assert!(KeyDir::new(CipherAlg::AesGcm, &vec![1; len], &[0; 8]).is_ok());
        }
        for len in [0, 15, 20, 31, 33, 64] {
            assert_eq!(
                KeyDir::new(CipherAlg::AesGcm, &vec![1; len], &[0; 8]),
                Err(DcoError::KeySize { alg: CipherAlg::AesGcm, len })
            );
        }
        assert!(KeyDir::new(CipherAlg::ChaCha20Poly1305, &[1; 32], &[0; 8]).is_ok());
        assert!(KeyDir::new(CipherAlg::ChaCha20Poly1305, &[1; 16], &[0; 8]).is_err());
    }

    #[test]
    fn nonce_tail_is_exactly_8() {
        for len in [0, 4, 7, 9, 12] {
            assert_eq!(KeyDir::new(CipherAlg::AesGcm, &[1; 32], &vec![0; len]), Err(DcoError::NonceTail(len)));
        }
    }

    #[test]
    fn key_config_rechecks_sizes_against_its_cipher() {
        let aes16 = || KeyDir::new(CipherAlg::AesGcm, &[1; 16], &[0; 8]).unwrap();
        let r = KeyConfig::new(
            PeerId::new(1).unwrap(),
            KeySlot::Primary,
            KeyId::new(0).unwrap(),
            CipherAlg::ChaCha20Poly1305,
            aes16(),
            aes16(),
        );
        assert_eq!(r, Err(DcoError::KeySize { alg: CipherAlg::ChaCha20Poly1305, len: 16 }));
    }

    #[test]
    fn peer_new_rules() {
        let id = PeerId::new(1).unwrap();
        let v4 = Some(Ipv4Addr::new(10, 8, 0, 2));
        // upstream P2P refuses VPN IPs, v2 P2P accepts them
        assert_eq!(PeerNew::new(Family::Ovpn, Mode::P2p, id, 8, udp(), v4, None), Err(DcoError::VpnIpInP2p));
        assert!(PeerNew::new(Family::OvpnDcoV2, Mode::P2p, id, 8, udp(), v4, None).is_ok());
        // unspecified addresses count as absent
        let p = PeerNew::new(
            Family::Ovpn,
            Mode::P2p,
            id,
            8,
            udp(),
            Some(Ipv4Addr::UNSPECIFIED),
            Some(Ipv6Addr::UNSPECIFIED),
        )
        .unwrap();
        assert_eq!((p.vpn4(), p.vpn6()), (None, None));
        // MP needs one, for both families
        for fam in [Family::Ovpn, Family::OvpnDcoV2] {
            assert_eq!(PeerNew::new(fam, Mode::Mp, id, 8, udp(), None, None), Err(DcoError::VpnIpRequired));
            assert!(PeerNew::new(fam, Mode::Mp, id, 8, Transport::Tcp, None, Some(Ipv6Addr::LOCALHOST)).is_ok());
        }
        assert_eq!(PeerNew::new(Family::Ovpn, Mode::P2p, id, -1, udp(), None, None), Err(DcoError::BadSocket(-1)));
        let port0 = Transport::Udp("127.0.0.1:0".parse::<SocketAddr>().unwrap());
        assert_eq!(PeerNew::new(Family::OvpnDcoV2, Mode::P2p, id, 8, port0, None, None), Err(DcoError::RemotePortZero));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn from_dbus_inputs() {
        // 127.0.0.1:1194 as sockaddr_in
        let sa = "AgAEqn8AAAEAAAAAAAAAAA==";
        let args = DbusNewPeer { peer_id: 1, sa, salen: 16, vpn4: "10.8.0.2", vpn6: "fd00::2", fd: 8, tcp: false };
        // Upstream P2P: the client's VPN addresses are dropped.
        let p = PeerNew::from_dbus(Family::Ovpn, Mode::P2p, &args).unwrap();
        assert_eq!((p.vpn4(), p.vpn6()), (None, None));
        assert_eq!(p.transport(), udp());
        // v2 keeps them, and so does upstream MP.
        let p = PeerNew::from_dbus(Family::OvpnDcoV2, Mode::P2p, &args).unwrap();
        assert_eq!(p.vpn4(), Some(Ipv4Addr::new(10, 8, 0, 2)));
        let p = PeerNew::from_dbus(Family::Ovpn, Mode::Mp, &args).unwrap();
        assert_eq!(p.vpn6(), Some("fd00::2".parse().unwrap()));
        // TCP: no remote is sent, but a bad sa is still refused.
        let tcp = DbusNewPeer { tcp: true, ..args };
        assert_eq!(PeerNew::from_dbus(Family::Ovpn, Mode::P2p, &tcp).unwrap().transport(), Transport::Tcp);
        let bad = DbusNewPeer { salen: 28, ..tcp };
        assert!(matches!(PeerNew::from_dbus(Family::Ovpn, Mode::P2p, &bad), Err(DcoError::Sockaddr(_))));
        // Text checks and the other rules still apply.
        let empty = DbusNewPeer { vpn4: "", vpn6: "0.0.0.0", ..args };
        assert_eq!(PeerNew::from_dbus(Family::OvpnDcoV2, Mode::P2p, &empty), Err(DcoError::BadAddress("vpn6")));
        let junk = DbusNewPeer { vpn4: "10.8.0.256", ..args };
        assert_eq!(PeerNew::from_dbus(Family::OvpnDcoV2, Mode::P2p, &junk), Err(DcoError::BadAddress("vpn4")));
        let big = DbusNewPeer { peer_id: 1 << 24, ..args };
        assert_eq!(PeerNew::from_dbus(Family::Ovpn, Mode::P2p, &big), Err(DcoError::PeerIdRange(1 << 24)));
        let none = DbusNewPeer { vpn4: "0.0.0.0", vpn6: "::", ..args };
        assert_eq!(PeerNew::from_dbus(Family::Ovpn, Mode::Mp, &none), Err(DcoError::VpnIpRequired));
    }

    #[test]
    fn del_reason_round_trips_unknown_values() {
        for n in [0, 1, 2, 3, 4, 5, 255, u32::MAX] {
            assert_eq!(DelReason::from_u32(n).number(), n);
        }
        assert_eq!(DelReason::from_u32(2), DelReason::Expired);
    }
}
