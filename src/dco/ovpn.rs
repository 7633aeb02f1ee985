//! The upstream `ovpn` generic-netlink family (Linux >= 6.16, link kind
//! "ovpn"). Numbers: `include/uapi/linux/ovpn.h`, generated from
//! `Documentation/netlink/specs/ovpn.yaml`; every request this layout
//! builds is checked byte for byte against `golden.rs` (recorded from the
//! module). The encoder and decoder are in [`super::layout`].
//!
//! Shape: top-level `IFINDEX` plus one `PEER` or `KEYCONF` nest, which must
//! carry `NLA_F_NESTED` (the kernel validates strictly, per command).
//! Replies and notifications may set `NLA_F_NET_BYTEORDER` on ports, so the
//! reader masks attribute types.

use super::layout::{InfoAttrs, Layout, Notification, RemoteAttrs};

/// `OVPN_CMD_KEY_SWAP_NTF`: a key needs renegotiation (also the pipe
/// record's command).
pub const OVPN_CMD_KEY_SWAP_NTF: u8 = 9;

/// The upstream numbers: `enum ovpn_cmd` and the `OVPN_A_*` attributes.
pub const LAYOUT: Layout = Layout {
    // OVPN_FAMILY_NAME; the link kind is from drivers/net/ovpn/main.c.
    genl_name: "ovpn",
    link_kind: "ovpn",
    // PEER_NEW 1, PEER_SET 2, PEER_GET 3, PEER_DEL 4, KEY_NEW 6, KEY_SWAP 8,
    // KEY_DEL 10 (PEER_DEL_NTF 5, KEY_GET 7, KEY_SWAP_NTF 9).
    cmds: [1, 2, 3, 4, 6, 8, 10],
    // OVPN_A_PEER for the peer commands, OVPN_A_KEYCONF for the key ones.
    nests: [2, 2, 2, 2, 3, 3, 3],
    // OVPN_A_PEER_ID (u32, max 0xFFFFFF), OVPN_A_KEYCONF_PEER_ID.
    peer_ids: [1; 7],
    // OVPN_A_PEER_SOCKET (u32 fd), OVPN_A_PEER_VPN_IPV4, OVPN_A_PEER_VPN_IPV6.
    new_peer: [6, 8, 9],
    // OVPN_A_PEER_REMOTE_IPV4 (be32), _REMOTE_IPV6, _REMOTE_IPV6_SCOPE_ID,
    // _REMOTE_PORT (be16, min 1).
    remote: RemoteAttrs::Split { ipv4: 2, ipv6: 3, scope_id: 4, port: 5 },
    // OVPN_A_PEER_KEEPALIVE_INTERVAL, OVPN_A_PEER_KEEPALIVE_TIMEOUT (u32 s).
    keepalive: [13, 14],
    // OVPN_A_KEYCONF_SLOT (max 1), _KEY_ID (max 7), _CIPHER_ALG (max 2): u32.
    narrow_keys: false,
    info: InfoAttrs {
        nest: (2, "OVPN_A_PEER"),
        peer_id: (1, "OVPN_A_PEER_ID"),
        vpn: [8, 9],
        // OVPN_A_PEER_LOCAL_IPV4, OVPN_A_PEER_LOCAL_IPV6, OVPN_A_PEER_LOCAL_PORT.
        local: [10, 11],
        local_port: 12,
        keepalive: [13, 14],
        // OVPN_A_PEER_VPN_RX_BYTES 16 .. OVPN_A_PEER_LINK_TX_PACKETS 23 (uint).
        // Not read: SOCKET_NETNSID 7, DEL_REASON 15, TX_ID 24 (7.1 builds only).
        counters: 16,
    },
    peer_deleted: Notification {
        cmd: 5, // OVPN_CMD_PEER_DEL_NTF
        nest: (2, "OVPN_A_PEER"),
        peer_id: (1, "OVPN_A_PEER_ID"),
        value: (15, "OVPN_A_PEER_DEL_REASON"),
    },
    key_swap: Some(Notification {
        cmd: OVPN_CMD_KEY_SWAP_NTF,
        nest: (3, "OVPN_A_KEYCONF"),
        peer_id: (1, "OVPN_A_KEYCONF_PEER_ID"),
        value: (3, "OVPN_A_KEYCONF_KEY_ID"),
    }),
};

#[cfg(all(test, target_endian = "little"))]
mod tests {
    //! Golden bytes: every expected request below is a recorded request the
    //! upstream module accepted (`golden.rs`), rebuilt from typed values with
    //! the recorded seq set; every recorded rejected request is shown to be
    //! unbuildable or built differently.
    use super::*;
    use crate::dco::{DcoError, NlMsg, NlMsgRef, Reply, Request};
    use crate::netlink::attr;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

    // The uapi numbers the expectations below are written in.
    const OVPN_CMD_PEER_NEW: u8 = 1;
    const OVPN_CMD_KEY_GET: u8 = 7;
    const OVPN_A_IFINDEX: u16 = 1;
    const OVPN_A_PEER: u16 = 2;
    const OVPN_A_KEYCONF: u16 = 3;
    const OVPN_A_PEER_ID: u16 = 1;
    const OVPN_A_PEER_REMOTE_IPV4: u16 = 2;
    const OVPN_A_PEER_REMOTE_IPV6: u16 = 3;
    const OVPN_A_PEER_REMOTE_IPV6_SCOPE_ID: u16 = 4;
    const OVPN_A_PEER_REMOTE_PORT: u16 = 5;
    const OVPN_A_PEER_SOCKET: u16 = 6;
    const OVPN_A_PEER_VPN_IPV6: u16 = 9;
    const OVPN_A_PEER_KEEPALIVE_INTERVAL: u16 = 13;
    const OVPN_A_PEER_KEEPALIVE_TIMEOUT: u16 = 14;
    const OVPN_A_PEER_TX_ID: u16 = 24;
    const OVPN_A_KEYCONF_PEER_ID: u16 = 1;
    const OVPN_A_KEYCONF_KEY_ID: u16 = 3;
    const OVPN_A_KEYCONF_ENCRYPT_DIR: u16 = 5;
    const OVPN_A_KEYCONF_DECRYPT_DIR: u16 = 6;
    use crate::dco::golden as g;
    use crate::dco::model::*;
    use crate::dco::{Family, Genl, NlStatus};
    use crate::netlink::attr::{NLM_F_ACK, NLM_F_REQUEST};

    const ID: u16 = 0x23;
    fn genl() -> Genl {
        Genl { family: Family::Ovpn, id: ID }
    }
    fn pid(n: u32) -> PeerId {
        PeerId::new(n).unwrap()
    }
    fn udp(s: &str) -> Transport {
        Transport::Udp(s.parse().unwrap())
    }
    fn built(ifindex: u32, req: Request<'_>, seq: u32) -> Vec<u8> {
        let mut m = genl().build(ifindex, &req).unwrap();
        m.set_seq(seq);
        m.as_bytes().to_vec()
    }
    fn one(b: &[u8]) -> NlMsgRef<'_> {
        let mut it = attr::messages(b);
        let m = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        m
    }
    fn status(b: &[u8]) -> NlStatus {
        match genl().parse(&one(b)).unwrap() {
            Reply::Status(s) | Reply::DumpDone(s) => s,
            other => panic!("not a status: {other:?}"),
        }
    }
    fn key(peer: u32, slot: KeySlot, kid: u32, e: (u8, u8), d: (u8, u8)) -> KeyConfig {
        let alg = CipherAlg::AesGcm;
        KeyConfig::new(
            pid(peer),
            slot,
            KeyId::new(kid).unwrap(),
            alg,
            KeyDir::new(alg, &[e.0; 32], &[e.1; 8]).unwrap(),
            KeyDir::new(alg, &[d.0; 32], &[d.1; 8]).unwrap(),
        )
        .unwrap()
    }
    fn p2p_peer(id: u32, fd: i32) -> PeerNew {
        PeerNew::new(Family::Ovpn, Mode::P2p, pid(id), fd, udp("127.0.0.1:1194"), None, None).unwrap()
    }
    /// Attribute kinds inside the first nest of a request.
    fn nested_kinds(req: &[u8]) -> Vec<u16> {
        let m = one(req);
        let top = m.genl().unwrap().attrs;
        let nest = attr::attrs(top).map(|a| a.unwrap()).find(|a| a.kind() != OVPN_A_IFINDEX).unwrap();
        nest.nested().map(|a| a.unwrap().kind()).collect()
    }

    #[test]
    fn peer_new_matches_golden() {
        let p = p2p_peer(1, 8);
        assert_eq!(built(2, Request::PeerNew(&p), 16), g::PEER_NEW_REQ);
    }

    #[test]
    fn peer_new_mp_with_vpn_ip_matches_golden() {
        let p = PeerNew::new(
            Family::Ovpn,
            Mode::Mp,
            pid(3),
            10,
            udp("127.0.0.1:1194"),
            Some(Ipv4Addr::new(10, 8, 0, 3)),
            None,
        )
        .unwrap();
        assert_eq!(built(4, Request::PeerNew(&p), 42), g::PEER_NEW_MP_REQ);
    }

    #[test]
    fn key_new_matches_golden() {
        let k = key(1, KeySlot::Primary, 0, (0x11, 0xee), (0x22, 0xdd));
        assert_eq!(built(2, Request::KeyNew(&k), 18), g::KEY_NEW_PRIMARY_REQ);
        let k = key(1, KeySlot::Secondary, 1, (0x22, 0xdd), (0x44, 0xbb));
        assert_eq!(built(2, Request::KeyNew(&k), 19), g::KEY_NEW_SECONDARY_REQ);
        // The request for an unknown peer was well-formed; only state differed.
        let k = key(7, KeySlot::Primary, 0, (0x11, 0xee), (0x22, 0xdd));
        assert_eq!(built(2, Request::KeyNew(&k), 23), g::REJ_KEY_NEW_UNKNOWN_PEER_REQ);
    }

    #[test]
    fn commands_name_the_peer_that_must_exist() {
        // The daemon refuses these for a peer it does not hold, so the
        // recorded KEY_NEW for unknown peer 7 never reaches the kernel.
        let k = key(7, KeySlot::Primary, 0, (0x11, 0xee), (0x22, 0xdd));
        assert_eq!(Request::KeyNew(&k).existing_peer(), Some(pid(7)));
        assert_eq!(Request::PeerSet { peer: pid(4), interval: 1, timeout: 30 }.existing_peer(), Some(pid(4)));
        assert_eq!(Request::KeySwap(pid(3)).existing_peer(), Some(pid(3)));
        assert_eq!(Request::PeerDel(pid(1)).existing_peer(), Some(pid(1)));
        assert_eq!(Request::PeerGet(pid(2)).existing_peer(), Some(pid(2)));
        assert_eq!(Request::KeyDel { peer: pid(5), slot: KeySlot::Secondary }.existing_peer(), Some(pid(5)));
        let p = p2p_peer(1, 8);
        assert_eq!(Request::PeerNew(&p).existing_peer(), None);
        assert_eq!(Request::PeerDump.existing_peer(), None);
    }

    #[test]
    fn key_swap_key_del_match_golden() {
        assert_eq!(built(2, Request::KeySwap(pid(1)), 25), g::KEY_SWAP_REQ);
        let r = Request::KeyDel { peer: pid(1), slot: KeySlot::Secondary };
        assert_eq!(built(2, r, 33), g::KEY_DEL_REQ);
    }

    #[test]
    fn peer_set_get_dump_del_match_golden() {
        let r = Request::PeerSet { peer: pid(1), interval: 1, timeout: 30 };
        assert_eq!(built(2, r, 27), g::PEER_SET_REQ);
        assert_eq!(built(2, Request::PeerGet(pid(1)), 29), g::PEER_GET_REQ);
        assert_eq!(built(2, Request::PeerDump, 30), g::PEER_DUMP_REQ);
        assert_eq!(built(2, Request::PeerDel(pid(1)), 34), g::PEER_DEL_REQ);
        // PEER_GET with an ACK only differs in the flags.
        let mut m = genl().build(2, &Request::PeerGet(pid(1))).unwrap();
        m.set_seq(32);
        m.set_flags(NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(m.as_bytes(), g::PEER_GET_ACK_REQ);
    }

    #[test]
    fn ipv6_remote_with_scope_and_vpn6() {
        let t = Transport::Udp(SocketAddr::V6(SocketAddrV6::new("fe80::2".parse().unwrap(), 1194, 0, 5)));
        let v6: Ipv6Addr = "fd00::2".parse().unwrap();
        let p = PeerNew::new(Family::Ovpn, Mode::Mp, pid(9), 3, t, None, Some(v6)).unwrap();
        let b = built(7, Request::PeerNew(&p), 1);
        assert_eq!(
            nested_kinds(&b),
            [
                OVPN_A_PEER_ID,
                OVPN_A_PEER_SOCKET,
                OVPN_A_PEER_REMOTE_IPV6,
                OVPN_A_PEER_REMOTE_IPV6_SCOPE_ID,
                OVPN_A_PEER_REMOTE_PORT,
                OVPN_A_PEER_VPN_IPV6
            ]
        );
        // PEER nest payload: ID, SOCKET, 16-byte address, scope 5, port 1194, VPN v6.
        let nest = &b[28..];
        assert_eq!(&nest[..4], &[0x4c, 0x00, 0x02, 0x80]);
        assert_eq!(&nest[20..24], &[0x14, 0x00, 0x03, 0x00]);
        assert_eq!(&nest[24..40], &"fe80::2".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(&nest[40..48], &[0x08, 0, 0x04, 0, 5, 0, 0, 0]);
        assert_eq!(&nest[48..56], &[0x06, 0, 0x05, 0, 0x04, 0xaa, 0, 0]);
        assert_eq!(&nest[56..60], &[0x14, 0x00, 0x09, 0x00]);
        assert_eq!(b.len(), 28 + 0x4c);
    }

    #[test]
    fn tcp_peer_carries_no_remote() {
        let p = PeerNew::new(Family::Ovpn, Mode::P2p, pid(1), 8, Transport::Tcp, None, None).unwrap();
        let b = built(2, Request::PeerNew(&p), 1);
        assert_eq!(nested_kinds(&b), [OVPN_A_PEER_ID, OVPN_A_PEER_SOCKET]);
    }

    // ---- the recorded rejected requests -----------------------------------

    #[test]
    fn rejected_missing_socket_id_ifindex_cannot_be_built() {
        // The kernel wanted SOCKET (6), ID (1) in the PEER nest, and IFINDEX.
        assert_eq!(status(g::REJ_PEER_NEW_NO_SOCKET_REPLY).ext.miss_type, Some(6));
        assert_eq!(status(g::REJ_PEER_NEW_NO_ID_REPLY).ext.miss_type, Some(1));
        assert_eq!(status(g::REJ_PEER_NEW_NO_IFINDEX_REPLY).ext.miss_type, Some(1));
        // PeerNew::new takes an fd and an id by type, Genl::build always puts
        // IFINDEX first and refuses 0. For the same intent we build the
        // accepted request, which has all three.
        let ours = built(2, Request::PeerNew(&p2p_peer(1, 8)), 8);
        assert_ne!(ours, g::REJ_PEER_NEW_NO_SOCKET_REQ);
        assert!(nested_kinds(&ours).starts_with(&[OVPN_A_PEER_ID, OVPN_A_PEER_SOCKET]));
        assert!(!nested_kinds(g::REJ_PEER_NEW_NO_SOCKET_REQ).contains(&OVPN_A_PEER_SOCKET));
        assert!(!nested_kinds(g::REJ_PEER_NEW_NO_ID_REQ).contains(&OVPN_A_PEER_ID));
        let top = one(g::REJ_PEER_NEW_NO_IFINDEX_REQ).genl().unwrap().attrs;
        assert_eq!(attr::find(top, OVPN_A_IFINDEX).unwrap(), None);
        assert_eq!(genl().build(0, &Request::PeerNew(&p2p_peer(1, 8))).unwrap_err(), DcoError::IfIndexZero);
    }

    #[test]
    fn rejected_missing_remote_or_port_cannot_be_built() {
        assert_eq!(
            status(g::REJ_PEER_NEW_NO_REMOTE_REPLY).ext.msg.as_deref(),
            Some("ovpn: missing remote IP address for UDP socket")
        );
        assert_eq!(
            status(g::REJ_PEER_NEW_NO_PORT_REPLY).ext.msg.as_deref(),
            Some("ovpn: cannot specify remote IP address without port")
        );
        // Transport::Udp holds a SocketAddr, which always has a port, and port 0
        // is refused; so REMOTE_IPV4 is always followed by REMOTE_PORT.
        let ours = built(2, Request::PeerNew(&p2p_peer(1, 8)), 10);
        let k = nested_kinds(&ours);
        assert!(k.contains(&OVPN_A_PEER_REMOTE_IPV4) && k.contains(&OVPN_A_PEER_REMOTE_PORT));
        assert!(!nested_kinds(g::REJ_PEER_NEW_NO_PORT_REQ).contains(&OVPN_A_PEER_REMOTE_PORT));
        let port0 = udp("127.0.0.1:0");
        assert_eq!(PeerNew::new(Family::Ovpn, Mode::P2p, pid(1), 8, port0, None, None), Err(DcoError::RemotePortZero));
    }

    #[test]
    fn rejected_vpn_ip_rules_are_constructor_errors() {
        assert_eq!(
            status(g::REJ_PEER_NEW_P2P_VPN_IP_REPLY).ext.msg.as_deref(),
            Some("ovpn: unexpected VPN IP in P2P mode")
        );
        assert_eq!(
            PeerNew::new(
                Family::Ovpn,
                Mode::P2p,
                pid(1),
                8,
                udp("127.0.0.1:1194"),
                Some(Ipv4Addr::new(10, 8, 0, 2)),
                None
            ),
            Err(DcoError::VpnIpInP2p)
        );
        assert_eq!(
            status(g::REJ_PEER_NEW_MP_NO_VPN_IP_REPLY).ext.msg.as_deref(),
            Some("ovpn: VPN IP must be provided in MP mode")
        );
        assert_eq!(
            PeerNew::new(Family::Ovpn, Mode::Mp, pid(3), 10, udp("127.0.0.1:1194"), None, None),
            Err(DcoError::VpnIpRequired)
        );
    }

    #[test]
    fn rejected_half_keepalive_cannot_be_built() {
        assert_eq!(
            status(g::REJ_PEER_NEW_KA_HALF_REPLY).ext.msg.as_deref(),
            Some("ovpn: keepalive interval and timeout are required together")
        );
        // PEER_SET always has both keepalive halves, PEER_NEW never carries
        // keepalive.
        let b = built(2, Request::PeerSet { peer: pid(1), interval: 10, timeout: 0 }, 12);
        assert_eq!(nested_kinds(&b), [OVPN_A_PEER_ID, OVPN_A_PEER_KEEPALIVE_INTERVAL, OVPN_A_PEER_KEEPALIVE_TIMEOUT]);
        let k = nested_kinds(&built(2, Request::PeerNew(&p2p_peer(1, 8)), 12));
        assert!(!k.contains(&OVPN_A_PEER_KEEPALIVE_INTERVAL));
    }

    #[test]
    fn rejected_missing_nested_flag_differs_only_in_that_flag() {
        let s = status(g::REJ_PEER_NEW_NO_NESTED_FLAG_REPLY);
        assert_eq!((s.errno(), s.ext.msg.as_deref()), (22, Some("NLA_F_NESTED is missing")));
        assert_eq!(s.ext.offset, Some(28));
        let mut ours = built(2, Request::PeerNew(&p2p_peer(1, 8)), 14);
        assert_ne!(ours, g::REJ_PEER_NEW_NO_NESTED_FLAG_REQ);
        assert_eq!(ours[28 + 3], 0x80, "NLA_F_NESTED set on the PEER nest");
        ours[28 + 3] = 0;
        assert_eq!(ours, g::REJ_PEER_NEW_NO_NESTED_FLAG_REQ);
        // The writer reproduces the refused layout only when asked to.
        let mut m = NlMsg::genl(ID, NLM_F_REQUEST | NLM_F_ACK, OVPN_CMD_PEER_NEW, 1, 128).unwrap();
        m.put_u32(OVPN_A_IFINDEX, 2).unwrap();
        m.nest(OVPN_A_PEER, false, |m| {
            m.put_u32(OVPN_A_PEER_ID, 1)?;
            m.put_u32(OVPN_A_PEER_SOCKET, 8)?;
            m.put_bytes(OVPN_A_PEER_REMOTE_IPV4, &[127, 0, 0, 1])?;
            m.put_be16(OVPN_A_PEER_REMOTE_PORT, 1194)
        })
        .unwrap();
        m.set_seq(14);
        assert_eq!(m.as_bytes(), g::REJ_PEER_NEW_NO_NESTED_FLAG_REQ);
    }

    #[test]
    fn rejected_key_requests_cannot_be_built() {
        assert_eq!(status(g::REJ_KEY_NEW_NO_DECRYPT_REPLY).ext.miss_type, Some(6));
        assert_eq!(status(g::REJ_KEY_NEW_NO_DECRYPT_REPLY).ext.miss_nest, Some(28));
        let s = status(g::REJ_KEY_NEW_SHORT_NONCE_REPLY);
        assert_eq!((s.errno(), s.ext.offset), (34, Some(104)));
        assert_eq!(s.ext.msg.as_deref(), Some("binary attribute size out of range"));
        assert_eq!(KeyDir::new(CipherAlg::AesGcm, &[0x22; 32], &[0xdd; 4]), Err(DcoError::NonceTail(4)));
        assert_eq!(status(g::REJ_KEY_NEW_CIPHER_NONE_REPLY).ext.msg.as_deref(), Some("ovpn: unsupported cipher"));
        assert_eq!(CipherAlg::from_u32(0), Err(DcoError::UnsupportedCipher(0)));
        // KeyConfig::new takes both directions by value: KEY_NEW always has
        // ENCRYPT_DIR and DECRYPT_DIR.
        let k = key(1, KeySlot::Secondary, 2, (0x22, 0xdd), (0x44, 0xbb));
        let ours = built(2, Request::KeyNew(&k), 21);
        assert_eq!(ours.len(), 168);
        assert!(nested_kinds(&ours).ends_with(&[OVPN_A_KEYCONF_ENCRYPT_DIR, OVPN_A_KEYCONF_DECRYPT_DIR]));
        assert!(!nested_kinds(g::REJ_KEY_NEW_NO_DECRYPT_REQ).contains(&OVPN_A_KEYCONF_DECRYPT_DIR));
        // Up to the first NONCE_TAIL (offset 104, where the kernel pointed),
        // ours equals the refused 4-byte-tail request except the three
        // enclosing lengths: nlmsg_len, KEYCONF, ENCRYPT_DIR.
        let rej = g::REJ_KEY_NEW_SHORT_NONCE_REQ;
        let diff: Vec<usize> = (0..104).filter(|&i| ours[i] != rej[i]).collect();
        assert_eq!(diff, [0, 28, 64]);
        assert_eq!((&ours[104..108], &rej[104..108]), (&[12, 0, 2, 0][..], &[8, 0, 2, 0][..]));
    }

    #[test]
    fn rejected_peer_set_with_socket_cannot_be_built() {
        let s = status(g::REJ_PEER_SET_SOCKET_REPLY);
        assert_eq!((s.ext.msg.as_deref(), s.ext.offset), (Some("Unsupported attribute"), Some(40)));
        // Request::PeerSet has no socket field.
        assert!(nested_kinds(g::REJ_PEER_SET_SOCKET_REQ).contains(&OVPN_A_PEER_SOCKET));
        let r = Request::PeerSet { peer: pid(1), interval: 1, timeout: 30 };
        assert!(!nested_kinds(&built(2, r, 28)).contains(&OVPN_A_PEER_SOCKET));
    }

    #[test]
    fn rejected_dump_without_ifindex_cannot_be_built() {
        let s = status(g::REJ_PEER_DUMP_NO_IFINDEX_DONE);
        assert_eq!((s.errno(), s.ext.miss_type), (22, Some(1)));
        // Ours is the refused request plus IFINDEX (and a longer nlmsg_len).
        let ours = built(2, Request::PeerDump, 31);
        let rej = g::REJ_PEER_DUMP_NO_IFINDEX_REQ;
        assert_eq!((ours.len(), rej.len()), (28, 20));
        assert_eq!((&ours[1..20], &ours[20..24]), (&rej[1..20], &[8, 0, 1, 0][..]));
    }

    #[test]
    fn tx_id_is_never_sent() {
        let s = status(g::REJ_PEER_NEW_TX_ID_REPLY_6_16);
        assert_eq!((s.ext.msg.as_deref(), s.ext.offset), (Some("Unknown attribute type"), Some(64)));
        // Same peer without TX_ID: the 7.1 request minus its last attribute.
        let p = PeerNew::new(Family::Ovpn, Mode::P2p, pid(2), 9, udp("127.0.0.1:1194"), None, None).unwrap();
        let ours = built(2, Request::PeerNew(&p), 36);
        let mut want = g::PEER_NEW_TX_ID_REQ[..64].to_vec();
        want[0] = 64; // nlmsg_len 72 -> 64
        want[28] = 0x24; // PEER nest 44 -> 36
        assert_eq!(ours, want);
        assert!(!nested_kinds(&ours).contains(&OVPN_A_PEER_TX_ID));
    }

    // ---- replies and notifications ----------------------------------------

    #[test]
    fn acks_parse() {
        for (b, seq) in [(g::PEER_NEW_ACK, 16), (g::PEER_DEL_ACK, 34)] {
            let s = status(b);
            assert_eq!((s.error, s.request_seq), (0, seq));
            assert_eq!(s.ext, attr::ExtAck::default());
        }
        let d = status(g::PEER_DUMP_DONE);
        assert_eq!(d.error, 0);
    }

    #[test]
    fn errors_parse_with_text() {
        let s = status(g::REJ_PEER_DEL_AGAIN_REPLY);
        assert_eq!((s.errno(), s.request_seq), (2, 35));
        assert_eq!(s.describe(), "No such file or directory (os error 2): ovpn: cannot find peer with id 1");
        let s = status(g::REJ_KEY_NEW_UNKNOWN_PEER_REPLY);
        assert_eq!(s.ext.msg.as_deref(), Some("ovpn: no peer with id 7 to set key for"));
        let s = status(g::REJ_PEER_NEW_NO_SOCKET_REPLY);
        assert_eq!(s.describe(), "Invalid argument (os error 22): missing attribute 6 in nest at offset 28");
        // RTNL error with a POLICY nest and an offset (same nlmsgerr format).
        let s = status(g::RTM_NEWLINK_BAD_MODE_REPLY);
        assert_eq!((s.errno(), s.ext.offset), (34, Some(68)));
        assert_eq!(s.ext.msg.as_deref(), Some("integer out of range"));
    }

    fn assert_recorded_peer(info: &PeerInfo) {
        assert_eq!(info.id, 1);
        assert_eq!(info.remote, Some("127.0.0.1:1194".parse().unwrap()));
        assert_eq!(info.local_ip, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(info.local_port, Some(1195));
        assert_eq!((info.keepalive_interval, info.keepalive_timeout), (Some(1), Some(30)));
        assert_eq!((info.vpn4, info.vpn6), (None, None));
        assert_eq!(info.vpn, Counters::default());
        assert_eq!(info.link, Counters { rx_bytes: 0, tx_bytes: 40, rx_packets: 0, tx_packets: 1 });
    }

    #[test]
    fn peer_get_replies_parse() {
        for b in [g::PEER_GET_REPLY_7_1, g::PEER_GET_REPLY_6_16, g::PEER_DUMP_REPLY] {
            match genl().parse(&one(b)).unwrap() {
                Reply::Peer(info) => assert_recorded_peer(&info),
                other => panic!("{other:?}"),
            }
        }
        // The do-with-ACK exchange: data reply, then the ACK.
        let m = one(g::PEER_GET_REPLY_7_1);
        assert_eq!((m.flags, m.seq), (0, 29));
        assert_eq!(one(g::PEER_DUMP_REPLY).flags & attr::NLM_F_MULTI, attr::NLM_F_MULTI);
    }

    #[test]
    fn several_messages_in_one_buffer() {
        let mut buf = g::PEER_DUMP_REPLY.to_vec();
        buf.extend_from_slice(g::PEER_DUMP_DONE);
        let r: Vec<Reply> = attr::messages(&buf).map(|m| genl().parse(&m.unwrap()).unwrap()).collect();
        assert!(matches!(r[0], Reply::Peer(_)));
        assert!(matches!(&r[1], Reply::DumpDone(s) if s.error == 0 && s.request_seq == 30));
    }

    #[test]
    fn peer_del_notifications_parse() {
        let cases = [
            (g::PEER_DEL_NTF_USERSPACE, 2, 1, DelReason::Userspace),
            (g::PEER_DEL_NTF_TEARDOWN, 2, 2, DelReason::Teardown),
            (g::PEER_DEL_NTF_MP_TEARDOWN, 4, 3, DelReason::Teardown),
        ];
        for (b, ifindex, peer_id, reason) in cases {
            let m = one(b);
            assert_eq!((m.seq, m.pid), (0, 0), "multicast");
            assert_eq!(genl().parse(&m).unwrap(), Reply::PeerDeleted(PeerDeleted { ifindex, peer_id, reason }));
        }
    }

    #[test]
    fn key_swap_notification_parses() {
        // Layout from the kernel's ovpn_nl_key_swap_notify (not recorded):
        // IFINDEX u32, KEYCONF{PEER_ID u32, KEY_ID u16}.
        let mut m = NlMsg::genl(ID, 0, OVPN_CMD_KEY_SWAP_NTF, 1, 64).unwrap();
        m.put_u32(OVPN_A_IFINDEX, 2).unwrap();
        m.nest(OVPN_A_KEYCONF, true, |m| {
            m.put_u32(OVPN_A_KEYCONF_PEER_ID, 1)?;
            m.put_u16(OVPN_A_KEYCONF_KEY_ID, 3)
        })
        .unwrap();
        assert_eq!(
            genl().parse(&one(m.as_bytes())).unwrap(),
            Reply::KeySwapNeeded(KeySwapNeeded { ifindex: 2, peer_id: 1, key_id: 3 })
        );
    }

    #[test]
    fn malformed_notifications_are_errors() {
        // Drop the PEER nest's ID from the recorded notification.
        let mut b = g::PEER_DEL_NTF_USERSPACE[..40].to_vec();
        b[0] = 40;
        b[28] = 12;
        assert_eq!(genl().parse(&one(&b)), Err(DcoError::MissingAttr("OVPN_A_PEER_ID")));
        // Cut inside the nest.
        let mut b = g::PEER_DEL_NTF_USERSPACE[..44].to_vec();
        b[0] = 44;
        assert!(matches!(genl().parse(&one(&b)), Err(DcoError::Netlink(_))));
        // Other families and commands are ignored, not errors.
        let mut b = g::PEER_DEL_NTF_USERSPACE.to_vec();
        b[4] = 0x24;
        assert_eq!(genl().parse(&one(&b)).unwrap(), Reply::Ignored { nlmsg_type: 0x24, cmd: None });
        b[4] = 0x23;
        b[16] = OVPN_CMD_KEY_GET;
        assert!(matches!(genl().parse(&one(&b)).unwrap(), Reply::Ignored { cmd: Some(7), .. }));
    }
}
