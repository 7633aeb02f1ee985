//! Data channel offload: generic-netlink message builders and parsers for
//! the upstream `ovpn` family (Linux >= 6.16) and the out-of-tree
//! `ovpn-dco-v2` module, plus the D-Bus input decoders of the `/dco` object.
//!
//! Everything here is pure: no sockets, no kernel. The daemon
//!
//! 1. resolves the family with [`ctrl::getfamily_request`] /
//!    [`ctrl::parse_family`] and wraps the id in a [`Genl`];
//! 2. turns D-Bus input into checked values ([`sockaddr::decode_base64`],
//!    [`keyconfig::parse_base64`] + [`keyconfig::DcoKeyConfig::to_key_config`],
//!    [`PeerNew::new`], ...), whose constructors refuse anything the kernel
//!    would refuse;
//! 3. builds one [`Request`] with [`Genl::build`], sets the sequence number
//!    and sends the bytes; the family only changes the encoding;
//! 4. feeds every received message to [`Genl::parse`] and forwards
//!    notifications to the client with [`pipe`].
//!
//! Module map: [`ctrl`] family lookup, [`layout`] the one encoder and
//! decoder, [`ovpn`] and [`ovpn_dco_v2`] the two families' numbers
//! ([`Layout`]), [`model`] the shared values, [`keyconfig`] the protobuf, [`b64`], [`sockaddr`], [`pipe`],
//! [`secret`] wiped key storage, [`fuzz`] fuzz entry points.

#![forbid(unsafe_code)]

pub mod b64;
pub mod ctrl;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
#[cfg(any(test, feature = "fuzz"))]
pub mod golden;
pub mod keyconfig;
pub mod layout;
pub mod model;
pub mod ovpn;
pub mod ovpn_dco_v2;
pub mod pipe;
pub mod secret;
pub mod sockaddr;

use std::fmt;

use crate::netlink::attr::{self, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
pub use crate::netlink::attr::{AttrError, NlMsg, NlMsgRef, NlStatus};
pub use ctrl::FamilyInfo;
pub use keyconfig::KeyConfigError;
pub use layout::Layout;
pub use model::{
    CipherAlg, DbusNewPeer, DelReason, KeyConfig, KeySlot, KeySwapNeeded, Mode, PeerDeleted, PeerId, PeerInfo, PeerNew,
    Transport,
};
pub use sockaddr::SockaddrError;

/// Capacity of one request; the largest (KEY_NEW, 32-byte keys) is 168 bytes.
pub const REQUEST_CAP: usize = 512;

/// The kernel module the daemon talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Upstream `drivers/net/ovpn` (Linux >= 6.16).
    Ovpn,
    /// Out-of-tree ovpn-dco-v2 (what openvpn3-linux v27 and OpenVPN 2.6 use).
    OvpnDcoV2,
}

impl Family {
    /// Returns the family's command and attribute numbers.
    pub fn layout(self) -> &'static Layout {
        match self {
            Family::Ovpn => &ovpn::LAYOUT,
            Family::OvpnDcoV2 => &ovpn_dco_v2::LAYOUT,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.layout().genl_name)
    }
}

/// Everything that can go wrong in this layer, worded for a D-Bus caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DcoError {
    /// Peer id above 24 bits.
    PeerIdRange(u32),
    /// Key id above 7.
    KeyIdRange(u32),
    /// Key slot other than 0 (primary) or 1 (secondary).
    KeySlot(u32),
    /// Cipher other than AES-GCM (1) or ChaCha20-Poly1305 (2).
    UnsupportedCipher(u32),
    /// Key length the cipher does not take.
    KeySize { alg: CipherAlg, len: usize },
    /// Nonce tail not exactly 8 bytes.
    NonceTail(usize),
    /// Negative socket fd.
    BadSocket(i32),
    /// UDP remote with port 0.
    RemotePortZero,
    /// MP device without a VPN address.
    VpnIpRequired,
    /// VPN address for a P2P device on the upstream module.
    VpnIpInP2p,
    /// Interface index 0.
    IfIndexZero,
    /// A D-Bus address argument is not a valid address of its family.
    BadAddress(&'static str),
    /// A PeerNew checked for one family sent through the other.
    FamilyMismatch { checked: Family, target: Family },
    /// The key configuration could not be decoded.
    KeyConfig(KeyConfigError),
    /// The sockaddr could not be decoded.
    Sockaddr(SockaddrError),
    /// A netlink message could not be built or read.
    Netlink(AttrError),
    /// A kernel message lacks an attribute it must have.
    MissingAttr(&'static str),
}

impl fmt::Display for DcoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DcoError::PeerIdRange(v) => write!(f, "peer id {v} out of range (0..=16777215)"),
            DcoError::KeyIdRange(v) => write!(f, "key id {v} out of range (0..=7)"),
            DcoError::KeySlot(v) => write!(f, "key slot {v} invalid (0 primary, 1 secondary)"),
            DcoError::UnsupportedCipher(v) => {
                write!(f, "cipher {v} not supported by DCO (1 AES-GCM, 2 ChaCha20-Poly1305)")
            }
            DcoError::KeySize { alg, len } => write!(f, "{len}-byte key invalid for {alg}"),
            DcoError::NonceTail(n) => write!(f, "nonce tail must be 8 bytes, got {n}"),
            DcoError::BadSocket(fd) => write!(f, "invalid socket fd {fd}"),
            DcoError::RemotePortZero => write!(f, "remote port 0 is not allowed"),
            DcoError::VpnIpRequired => write!(f, "a VPN IP address is required in MP mode"),
            DcoError::VpnIpInP2p => {
                write!(f, "the ovpn module does not take a VPN IP address in P2P mode")
            }
            DcoError::IfIndexZero => write!(f, "interface index 0 is invalid"),
            DcoError::BadAddress(what) => write!(f, "invalid {what} address"),
            DcoError::FamilyMismatch { checked, target } => {
                write!(f, "peer checked for {checked} cannot be sent to {target}")
            }
            DcoError::KeyConfig(e) => write!(f, "{e}"),
            DcoError::Sockaddr(e) => write!(f, "{e}"),
            DcoError::Netlink(e) => write!(f, "{e}"),
            DcoError::MissingAttr(a) => write!(f, "kernel message lacks {a}"),
        }
    }
}

impl std::error::Error for DcoError {}

impl From<AttrError> for DcoError {
    fn from(e: AttrError) -> Self {
        DcoError::Netlink(e)
    }
}

/// One DCO command, independent of the family that will carry it.
#[derive(Clone, Copy, Debug)]
pub enum Request<'a> {
    /// Add a peer (PEER_NEW / NEW_PEER).
    PeerNew(&'a PeerNew),
    /// Set keepalive (PEER_SET / SET_PEER): seconds between keepalive
    /// packets, and of silence after which the peer is dropped.
    ///
    /// Both attributes are always sent together: upstream refuses one
    /// without the other (recorded: "ovpn: keepalive interval and timeout
    /// are required together"), ovpn-dco-v2 ignores one alone (its API
    /// notes, §5; sources in [`model`]). The values are independent in both
    /// kernels (0 switches that half off), so any pair is accepted.
    PeerSet { peer: PeerId, interval: u32, timeout: u32 },
    /// Query one peer (PEER_GET / GET_PEER, doit).
    PeerGet(PeerId),
    /// Query all peers of the device (dump).
    PeerDump,
    /// Remove a peer (PEER_DEL / DEL_PEER).
    PeerDel(PeerId),
    /// Install a key (KEY_NEW / NEW_KEY).
    KeyNew(&'a KeyConfig),
    /// Swap primary and secondary keys (KEY_SWAP / SWAP_KEYS).
    KeySwap(PeerId),
    /// Drop one key slot (KEY_DEL / DEL_KEY).
    KeyDel { peer: PeerId, slot: KeySlot },
}

impl Request<'_> {
    /// Returns the peer the command acts on when that peer must already
    /// exist (everything but PeerNew, which creates it, and the dump).
    pub fn existing_peer(&self) -> Option<PeerId> {
        match self {
            Request::PeerNew(_) | Request::PeerDump => None,
            Request::PeerSet { peer, .. }
            | Request::PeerGet(peer)
            | Request::PeerDel(peer)
            | Request::KeySwap(peer)
            | Request::KeyDel { peer, .. } => Some(*peer),
            Request::KeyNew(k) => Some(k.peer()),
        }
    }
}

/// What a received message means to the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// NLMSG_ERROR: `error == 0` is the ACK of `request_seq`.
    Status(NlStatus),
    /// NLMSG_DONE ending a dump; a failed dump reports its error here.
    DumpDone(NlStatus),
    /// One peer of a PEER_GET reply (do, or one part of a dump).
    Peer(PeerInfo),
    /// Multicast: a peer was removed.
    PeerDeleted(PeerDeleted),
    /// Multicast: a key ran out of IVs; userspace must renegotiate.
    KeySwapNeeded(KeySwapNeeded),
    /// Anything else (another family, NOOP, a command this code ignores).
    Ignored { nlmsg_type: u16, cmd: Option<u8> },
}

/// A resolved DCO family: which module, and its generic-netlink id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Genl {
    pub family: Family,
    /// The generic-netlink id (`nlmsg_type` of requests), from the
    /// controller (see [`ctrl::parse_family`]).
    pub id: u16,
}

impl Genl {
    /// Returns the request as a message (seq 0: set it before sending):
    /// the family's command, top-level IFINDEX (attribute 1 in both
    /// families), then the family's attributes. Do-commands ask for an
    /// ACK; PeerGet does not (its reply is the data).
    pub fn build(&self, ifindex: u32, req: &Request<'_>) -> Result<NlMsg, DcoError> {
        if ifindex == 0 {
            return Err(DcoError::IfIndexZero);
        }
        if let Request::PeerNew(p) = req {
            if p.family() != self.family {
                return Err(DcoError::FamilyMismatch { checked: p.family(), target: self.family });
            }
        }
        // The index in a layout's cmds (PEER_NEW, PEER_SET, PEER_GET,
        // PEER_DEL, KEY_NEW, KEY_SWAP, KEY_DEL), and the flags.
        let ack = NLM_F_REQUEST | NLM_F_ACK;
        let (i, flags) = match req {
            Request::PeerNew(_) => (0, ack),
            Request::PeerSet { .. } => (1, ack),
            Request::PeerGet(_) => (2, NLM_F_REQUEST),
            Request::PeerDump => (2, NLM_F_REQUEST | NLM_F_DUMP),
            Request::PeerDel(_) => (3, ack),
            Request::KeyNew(_) => (4, ack),
            Request::KeySwap(_) => (5, ack),
            Request::KeyDel { .. } => (6, ack),
        };
        let l = self.family.layout();
        let mut m = NlMsg::genl(self.id, flags, l.cmds[i], layout::VERSION, REQUEST_CAP)?;
        m.put_u32(layout::A_IFINDEX, ifindex)?;
        l.put(&mut m, i, req)?;
        Ok(m)
    }

    /// Returns the meaning of one received message; malformed kernel
    /// messages are errors, never panics.
    pub fn parse(&self, msg: &NlMsgRef<'_>) -> Result<Reply, DcoError> {
        match msg.ty {
            attr::NLMSG_ERROR => Ok(Reply::Status(attr::parse_error(msg)?)),
            attr::NLMSG_DONE => Ok(Reply::DumpDone(attr::parse_done(msg)?)),
            ty if ty == self.id => self.family.layout().parse(msg),
            ty => Ok(Reply::Ignored { nlmsg_type: ty, cmd: None }),
        }
    }

    /// Returns the device a message of this family names (its top-level
    /// IFINDEX, attribute 1 in both families), even when the rest of the
    /// message cannot be parsed; None for other messages.
    pub fn ifindex_of(&self, msg: &NlMsgRef<'_>) -> Option<u32> {
        let g = msg.genl().ok().filter(|_| msg.ty == self.id)?;
        attr::find(g.attrs, layout::A_IFINDEX).ok()??.u32().ok()
    }
}
