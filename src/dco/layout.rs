//! One encoder and one decoder for both DCO families.
//!
//! The upstream `ovpn` family and the out-of-tree `ovpn-dco-v2` carry the
//! same requests in the same shape: the top-level IFINDEX (attribute 1 in
//! both), then one nest with `NLA_F_NESTED` holding the command's
//! attributes, in the order the modules accepted. What differs is in a
//! [`Layout`]: command and attribute numbers, the integer widths of KEY_NEW
//! and KEY_DEL, and how the remote travels ([`RemoteAttrs`]). Each family's
//! table, with the uapi names of its numbers and the tests of its bytes, is
//! in [`super::ovpn`] and [`super::ovpn_dco_v2`].
//!
//! Replies and notifications may set `NLA_F_NET_BYTEORDER` on ports, so the
//! reader masks attribute types (`Attr::kind`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::model::{DelReason, KeyDir, KeySwapNeeded, PeerDeleted, PeerInfo, Transport};
use super::sockaddr;
use super::{DcoError, Reply, Request};
use crate::netlink::attr::{self, AttrError, NlMsg, NlMsgRef};

/// Top-level IFINDEX (u32): attribute 1 in both families.
pub const A_IFINDEX: u16 = 1;
/// genl family version of requests: 1 in both families.
pub const VERSION: u8 = 1;
/// The multicast group of notifications: "peers" in both families.
pub const MCAST_GROUP: &str = "peers";
/// `IFLA_OVPN_MODE` inside IFLA_INFO_DATA (u8, 0 P2P / 1 MP; 2 -> -ERANGE):
/// attribute 1 in both families.
pub const IFLA_OVPN_MODE: u16 = 1;

// The KEY_NEW / KEY_DEL nest: the same numbers in both families
// (`OVPN_A_KEYCONF_*`, `OVPN_NEW_KEY_ATTR_*` / `OVPN_DEL_KEY_ATTR_KEY_SLOT`).
/// Key slot (0 primary, 1 secondary).
pub const KEY_SLOT: u16 = 2;
/// Key id (0..=7).
pub const KEY_ID: u16 = 3;
/// Cipher (1 AES-GCM, 2 ChaCha20-Poly1305).
pub const KEY_CIPHER_ALG: u16 = 4;
/// Encrypt key direction (nest).
pub const KEY_ENCRYPT_DIR: u16 = 5;
/// Decrypt key direction (nest).
pub const KEY_DECRYPT_DIR: u16 = 6;
/// In a key direction nest: the cipher key (binary, max 256).
pub const KEYDIR_CIPHER_KEY: u16 = 1;
/// In a key direction nest: the nonce tail (binary, exactly 8).
pub const KEYDIR_NONCE_TAIL: u16 = 2;

/// An attribute number and its uapi name (for `DcoError::MissingAttr`).
pub type Named = (u16, &'static str);

/// How PEER_NEW sends the remote and PEER_GET replies carry it.
#[derive(Clone, Copy, Debug)]
pub enum RemoteAttrs {
    /// Upstream: the IPv4 or IPv6 address, the IPv6 scope id (sent when not
    /// 0) and the port (be16), each an attribute.
    Split { ipv4: u16, ipv6: u16, scope_id: u16, port: u16 },
    /// ovpn-dco-v2: one raw `sockaddr_in`/`sockaddr_in6`.
    Sockaddr(u16),
}

/// A notification: its command and nest, and in the nest the peer id and
/// one more integer (the reason, or the key id).
#[derive(Clone, Copy, Debug)]
pub struct Notification {
    pub cmd: u8,
    pub nest: Named,
    pub peer_id: Named,
    pub value: Named,
}

/// The attributes of a PEER_GET reply (do or dump part).
#[derive(Clone, Copy, Debug)]
pub struct InfoAttrs {
    /// The nest; the request's PEER_GET nest too.
    pub nest: Named,
    pub peer_id: Named,
    /// VPN IPv4 and IPv6 address.
    pub vpn: [u16; 2],
    /// Local IPv4 and IPv6 address (ovpn-dco-v2: one attribute of either size).
    pub local: [u16; 2],
    pub local_port: u16,
    /// Keepalive interval and timeout.
    pub keepalive: [u16; 2],
    /// The first of eight counters in a row: VPN rx/tx bytes, rx/tx
    /// packets, then the same for the link.
    pub counters: u16,
}

/// The numbers of one family.
#[derive(Debug)]
pub struct Layout {
    /// The generic-netlink family name to resolve.
    pub genl_name: &'static str,
    /// rtnetlink `IFLA_INFO_KIND` of the device.
    pub link_kind: &'static str,
    /// Commands in [`Request`] order: PEER_NEW, PEER_SET, PEER_GET,
    /// PEER_DEL, KEY_NEW, KEY_SWAP, KEY_DEL.
    pub cmds: [u8; 7],
    /// The nest each of those commands puts its attributes in.
    pub nests: [u16; 7],
    /// The peer id attribute inside each of those nests.
    pub peer_ids: [u16; 7],
    /// PEER_NEW: socket fd, VPN IPv4 and VPN IPv6 address.
    pub new_peer: [u16; 3],
    /// PEER_NEW and PEER_GET replies: the remote.
    pub remote: RemoteAttrs,
    /// PEER_SET: keepalive interval and timeout.
    pub keepalive: [u16; 2],
    /// True if KEY_NEW/KEY_DEL put slot and key id as u8 and the cipher as
    /// u16 (ovpn-dco-v2); upstream they are u32.
    pub narrow_keys: bool,
    /// PEER_GET replies.
    pub info: InfoAttrs,
    /// The multicast peer-deleted notification; its command opens the
    /// pipe's peer-deleted record (reference §7.5).
    pub peer_deleted: Notification,
    /// The multicast key-swap-needed notification (upstream only).
    pub key_swap: Option<Notification>,
}

impl Layout {
    /// Writes `req`'s nest after IFINDEX; `i` is its index in `cmds`.
    pub(super) fn put(&self, m: &mut NlMsg, i: usize, req: &Request<'_>) -> Result<(), AttrError> {
        let (nest, id) = (self.nests[i], self.peer_ids[i]);
        match *req {
            Request::PeerDump => Ok(()),
            Request::PeerNew(p) => m.nest(nest, true, |m| {
                m.put_u32(id, p.id().get())?;
                m.put_u32(self.new_peer[0], p.socket())?;
                if let Transport::Udp(r) = p.transport() {
                    self.remote.put(m, &r)?;
                }
                if let Some(a) = p.vpn4() {
                    m.put_bytes(self.new_peer[1], &a.octets())?;
                }
                if let Some(a) = p.vpn6() {
                    m.put_bytes(self.new_peer[2], &a.octets())?;
                }
                Ok(())
            }),
            Request::PeerSet { peer, interval, timeout } => m.nest(nest, true, |m| {
                m.put_u32(id, peer.get())?;
                m.put_u32(self.keepalive[0], interval)?;
                m.put_u32(self.keepalive[1], timeout)
            }),
            Request::PeerGet(peer) | Request::PeerDel(peer) | Request::KeySwap(peer) => {
                m.nest(nest, true, |m| m.put_u32(id, peer.get()))
            }
            Request::KeyNew(k) => m.nest(nest, true, |m| {
                m.put_u32(id, k.peer().get())?;
                self.put_small(m, KEY_SLOT, k.slot().number())?;
                self.put_small(m, KEY_ID, k.key_id().get())?;
                match self.narrow_keys {
                    true => m.put_u16(KEY_CIPHER_ALG, k.alg().number())?,
                    false => m.put_u32(KEY_CIPHER_ALG, u32::from(k.alg().number()))?,
                }
                keydir(m, KEY_ENCRYPT_DIR, k.encrypt())?;
                keydir(m, KEY_DECRYPT_DIR, k.decrypt())
            }),
            Request::KeyDel { peer, slot } => m.nest(nest, true, |m| {
                m.put_u32(id, peer.get())?;
                self.put_small(m, KEY_SLOT, slot.number())
            }),
        }
    }

    /// A key slot or key id: u8 in ovpn-dco-v2, u32 upstream.
    fn put_small(&self, m: &mut NlMsg, ty: u16, v: u8) -> Result<(), AttrError> {
        match self.narrow_keys {
            true => m.put_u8(ty, v),
            false => m.put_u32(ty, u32::from(v)),
        }
    }

    /// Decodes one message of this family (`nlmsg_type` already matched).
    pub(super) fn parse(&self, msg: &NlMsgRef<'_>) -> Result<Reply, DcoError> {
        let g = msg.genl()?;
        // IFINDEX, peer id and the notification's value (DEL_REASON is a u32
        // in the upstream spec, early versions put a u8; the kernel puts
        // KEY_ID with nla_put_u16, the spec says u32).
        let notification = |n: &Notification| -> Result<[u32; 3], DcoError> {
            let [peer_id, value] = uints(required(g.attrs, n.nest)?, [n.peer_id, n.value])?;
            Ok([required(g.attrs, (A_IFINDEX, "IFINDEX"))?.u32()?, peer_id, value])
        };
        if g.cmd == self.cmds[2] {
            return Ok(Reply::Peer(self.peer_info(required(g.attrs, self.info.nest)?)?));
        }
        if g.cmd == self.peer_deleted.cmd {
            let [ifindex, peer_id, reason] = notification(&self.peer_deleted)?;
            return Ok(Reply::PeerDeleted(PeerDeleted { ifindex, peer_id, reason: DelReason::from_u32(reason) }));
        }
        if let Some(n) = self.key_swap.as_ref().filter(|n| n.cmd == g.cmd) {
            let [ifindex, peer_id, key_id] = notification(n)?;
            return Ok(Reply::KeySwapNeeded(KeySwapNeeded { ifindex, peer_id, key_id }));
        }
        Ok(Reply::Ignored { nlmsg_type: msg.ty, cmd: Some(g.cmd) })
    }

    fn peer_info(&self, nest: attr::Attr<'_>) -> Result<PeerInfo, DcoError> {
        let i = &self.info;
        let mut p = PeerInfo::default();
        let (mut id, mut r4, mut r6, mut port, mut scope) = (None, None, None, None, 0);
        for a in nest.nested() {
            let a = a?;
            match (a.kind(), self.remote) {
                (k, _) if k == i.peer_id.0 => id = Some(a.uint32()?),
                (k, _) if k == i.vpn[0] => p.vpn4 = Some(Ipv4Addr::from(a.array::<4>()?)),
                (k, _) if k == i.vpn[1] => p.vpn6 = Some(Ipv6Addr::from(a.array::<16>()?)),
                (k, _) if i.local.contains(&k) => p.local_ip = Some(ip(&a)?),
                (k, _) if k == i.local_port => p.local_port = Some(a.be16()?),
                (k, _) if k == i.keepalive[0] => p.keepalive_interval = Some(a.u32()?),
                (k, _) if k == i.keepalive[1] => p.keepalive_timeout = Some(a.u32()?),
                (k, _) if (i.counters..i.counters + 8).contains(&k) => {
                    let c = usize::from(k - i.counters);
                    let l = if c < 4 { &mut p.vpn } else { &mut p.link };
                    *[&mut l.rx_bytes, &mut l.tx_bytes, &mut l.rx_packets, &mut l.tx_packets][c % 4] = a.uint()?;
                }
                (k, RemoteAttrs::Sockaddr(ty)) if k == ty => {
                    p.remote = Some(sockaddr::from_raw(a.payload()).map_err(DcoError::Sockaddr)?)
                }
                (k, RemoteAttrs::Split { ipv4, .. }) if k == ipv4 => r4 = Some(Ipv4Addr::from(a.array::<4>()?)),
                (k, RemoteAttrs::Split { ipv6, .. }) if k == ipv6 => r6 = Some(Ipv6Addr::from(a.array::<16>()?)),
                (k, RemoteAttrs::Split { scope_id, .. }) if k == scope_id => scope = a.u32()?,
                (k, RemoteAttrs::Split { port: ty, .. }) if k == ty => port = Some(a.be16()?),
                _ => {} // u64 alignment pads (type 0), TX_ID, SOCKET_NETNSID, newer attributes
            }
        }
        p.id = id.ok_or(DcoError::MissingAttr(i.peer_id.1))?;
        match (r4, r6, port) {
            (Some(ip), _, Some(port)) => p.remote = Some(SocketAddr::V4(SocketAddrV4::new(ip, port))),
            (None, Some(ip), Some(port)) => p.remote = Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope))),
            _ => {}
        }
        Ok(p)
    }
}

impl RemoteAttrs {
    fn put(&self, m: &mut NlMsg, r: &SocketAddr) -> Result<(), AttrError> {
        let (ipv4, ipv6, scope_id, port) = match *self {
            RemoteAttrs::Sockaddr(ty) => return m.put_bytes(ty, &sockaddr::to_raw(r)),
            RemoteAttrs::Split { ipv4, ipv6, scope_id, port } => (ipv4, ipv6, scope_id, port),
        };
        match r {
            SocketAddr::V4(a) => m.put_bytes(ipv4, &a.ip().octets())?,
            SocketAddr::V6(a) => {
                m.put_bytes(ipv6, &a.ip().octets())?;
                if a.scope_id() != 0 {
                    m.put_u32(scope_id, a.scope_id())?;
                }
            }
        }
        m.put_be16(port, r.port())
    }
}

/// An address attribute of either size (ovpn-dco-v2's LOCAL_IP).
fn ip(a: &attr::Attr<'_>) -> Result<IpAddr, AttrError> {
    match a.payload().len() {
        4 => Ok(IpAddr::from(a.array::<4>()?)),
        _ => Ok(IpAddr::from(a.array::<16>()?)),
    }
}

/// A key direction nest: cipher key and nonce tail.
fn keydir(m: &mut NlMsg, ty: u16, d: &KeyDir) -> Result<(), AttrError> {
    m.nest(ty, true, |m| {
        m.put_bytes(KEYDIR_CIPHER_KEY, d.key())?;
        m.put_bytes(KEYDIR_NONCE_TAIL, d.nonce_tail())
    })
}

/// The attribute `ty` in `attrs`, or `MissingAttr(name)`.
fn required<'a>(attrs: &'a [u8], (ty, name): Named) -> Result<attr::Attr<'a>, DcoError> {
    attr::find(attrs, ty)?.ok_or(DcoError::MissingAttr(name))
}

/// The integers (of any width the kernel puts) of attributes `kinds` in
/// `nest`; `MissingAttr` names the first one absent.
fn uints<const N: usize>(nest: attr::Attr<'_>, kinds: [Named; N]) -> Result<[u32; N], DcoError> {
    let mut got = [None; N];
    for a in nest.nested() {
        let a = a?;
        if let Some(i) = kinds.iter().position(|(k, _)| *k == a.kind()) {
            got[i] = Some(a.uint32()?);
        }
    }
    let mut out = [0; N];
    for (o, (g, (_, name))) in out.iter_mut().zip(got.into_iter().zip(kinds)) {
        *o = g.ok_or(DcoError::MissingAttr(name))?;
    }
    Ok(out)
}
