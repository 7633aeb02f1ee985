//! DCO at run time: the generic-netlink sockets and the per-device state.
//!
//! * [`DcoKernel`]: the resolved family (`ovpn` first, else `ovpn-dco-v2`)
//!   with two `netlink::Socket`s: commands go out on one and wait
//!   (bounded) for their ack, so a kernel refusal becomes a D-Bus error;
//!   the other is joined to the family's `peers` multicast group. Both sit
//!   in the daemon's poll loop: what the command socket receives outside a
//!   request is read and logged, never left queued (issue 12).
//! * [`DcoDev`]: what one device's `/dco` object holds: the netdev, the
//!   transport sockets the kernel uses by number, and the client pipe.
//!
//! Messages are built and parsed by [`crate::dco`]; the D-Bus methods are in
//! `crate::bus::dco`. A command goes out from its own wiped buffer (KEY_NEW
//! carries cipher keys), never copied into a batch.

use std::collections::VecDeque;

use crate::vecmap::VecMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use neli::consts::socket::NlFamily;

use crate::dco::layout::MCAST_GROUP;
use crate::dco::{ctrl, Family, FamilyInfo, Genl, Mode, PeerId, PeerInfo, Reply, Request};
use crate::error::{Error, Result};
use crate::netlink::{attr, Socket};

/// Records kept for a client that does not read its pipe. P2P devices have
/// one peer, so a handful is the most a live session produces.
pub const PIPE_QUEUE_MAX: usize = 256;

/// The family in use and its sockets.
pub struct DcoKernel {
    pub genl: Genl,
    cmd: Socket,
    /// The `peers` group member; None if the family has no such group or
    /// joining failed (then peer deletions are not forwarded).
    ntf: Option<Socket>,
}

/// Resolves one family with CTRL_CMD_GETFAMILY.
fn lookup(sock: &mut Socket, name: &str) -> Result<FamilyInfo> {
    let mut req = ctrl::getfamily_request(name).map_err(|e| Error::failed(e.to_string()))?;
    let mut found = None;
    sock.call(req.bytes_mut(), &format!("resolve genl family {name}"), |m| {
        if let Ok(info) = ctrl::parse_family(m) {
            found = Some(info);
        }
    })?;
    found.ok_or_else(|| Error::failed(format!("genl family {name}: no description in the answer")))
}

impl DcoKernel {
    /// Returns the first family that resolves: upstream `ovpn`, else
    /// `ovpn-dco-v2`; None (logged at debug level) when neither does.
    pub fn probe() -> Option<Self> {
        let mut sock = Socket::open_family(NlFamily::Generic, &[]).map_err(|e| log::warn!("DCO: {e}")).ok()?;
        for family in [Family::Ovpn, Family::OvpnDcoV2] {
            let found = lookup(&mut sock, family.layout().genl_name);
            let Ok(info) = found.inspect_err(|e| log::debug!("DCO: {family}: {e}")) else { continue };
            let ntf = match info.mcast_group(MCAST_GROUP) {
                None => {
                    log::warn!("DCO: family {family} has no '{MCAST_GROUP}' group");
                    None
                }
                Some(g) => Socket::open_family(NlFamily::Generic, &[g])
                    .map_err(|e| log::warn!("DCO: cannot receive {family} notifications: {e}"))
                    .ok(),
            };
            return Some(DcoKernel { genl: Genl { family, id: info.id }, cmd: sock, ntf });
        }
        None
    }

    /// Sends one do-command for device `ifindex` and waits for its ack.
    pub fn request(&mut self, ifindex: u32, req: &Request<'_>, what: &str) -> Result<()> {
        self.peers(ifindex, req, what).map(drop)
    }

    /// Sends one command and waits for its outcome; returns the peers its
    /// answer lists (PEER_GET: one, its dump: all, others: none). The
    /// encoded message (keys included) is wiped when it is dropped.
    fn peers(&mut self, ifindex: u32, req: &Request<'_>, what: &str) -> Result<Vec<PeerInfo>> {
        let mut msg = self.genl.build(ifindex, req).map_err(|e| Error::failed(format!("{what}: {e}")))?;
        let genl = self.genl;
        let mut out = Vec::new();
        self.cmd.call(msg.bytes_mut(), what, |m| {
            if let Ok(Reply::Peer(p)) = genl.parse(m) {
                out.push(p);
            }
        })?;
        Ok(out)
    }

    /// Asks for one peer; None if the kernel has no such peer.
    pub fn get_peer(&mut self, ifindex: u32, peer: PeerId) -> Result<Option<PeerInfo>> {
        match self.peers(ifindex, &Request::PeerGet(peer), "GET_PEER") {
            Ok(mut found) => Ok(found.pop()),
            Err(e) if e.kernel_errno() == libc::ENOENT => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists every peer of device `ifindex` (PEER_GET dump).
    pub fn dump_peers(&mut self, ifindex: u32) -> Result<Vec<PeerInfo>> {
        self.peers(ifindex, &Request::PeerDump, "GET_PEER dump")
    }

    /// The fds for the poll loop: the command socket, so that nothing the
    /// kernel sends it outside a request stays queued ([`Self::discard_unasked`]),
    /// and the notification socket.
    pub fn poll_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        std::iter::once(self.cmd.fd()).chain(self.ntf.as_ref().map(|s| s.fd()))
    }

    /// Reads what the command socket holds outside a request (every
    /// request is complete when its call returns, so nothing waits for it)
    /// and logs it at debug level.
    pub fn discard_unasked(&mut self) {
        let (datagrams, lost, err) = self.cmd.drain();
        for m in datagrams.iter().flat_map(|d| attr::messages(d)) {
            match m {
                Ok(m) => log::debug!("DCO: unasked message on the command socket (type {}, seq {})", m.ty, m.seq),
                Err(e) => log::debug!("DCO: unreadable message on the command socket: {e}"),
            }
        }
        if lost {
            log::debug!("DCO command socket: the kernel dropped messages (ENOBUFS)");
        }
        if let Some(e) = err {
            log::debug!("DCO command socket: {e}");
        }
    }

    /// Reads the queued notifications (see [`Notifications`]).
    pub fn notifications(&mut self) -> Notifications {
        let Some(s) = self.ntf.as_mut() else { return Notifications::default() };
        let (datagrams, lost, err) = s.drain();
        let mut n = sort_notifications(&self.genl, &datagrams);
        n.lost |= lost;
        if let Some(e) = err {
            // The socket serves every device: each client hears of it, and
            // what it may have swallowed is re-read.
            n.errors.push((None, format!("DCO notification socket: {e}")));
            n.lost = true;
        }
        n
    }
}

/// What one read of the notification socket brought.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notifications {
    /// The notifications this code acts on.
    pub replies: Vec<Reply>,
    /// Some were dropped (ENOBUFS) or unreadable down to their device: the
    /// caller re-reads the peers and reports the ones that vanished.
    pub lost: bool,
    /// Errors for the clients' pipes: Some(ifindex) for one device's
    /// malformed notification, None (every device) for a socket error.
    pub errors: Vec<(Option<u32>, String)>,
}

/// Sorts received datagrams into notifications, errors and losses.
pub fn sort_notifications(genl: &Genl, datagrams: &[Vec<u8>]) -> Notifications {
    let mut n = Notifications::default();
    for d in datagrams {
        for m in attr::messages(d) {
            // No header to read a device from; the rest of the datagram is lost.
            let Ok(m) = m.inspect_err(|e| log::warn!("DCO notification: {e}")) else {
                n.lost = true;
                break;
            };
            match genl.parse(&m) {
                Ok(r @ (Reply::PeerDeleted(_) | Reply::KeySwapNeeded(_))) => n.replies.push(r),
                Ok(_) => {}
                Err(e) => {
                    log::warn!("DCO notification: {e}");
                    match genl.ifindex_of(&m) {
                        Some(i) => n.errors.push((Some(i), format!("malformed DCO notification from the kernel: {e}"))),
                        // An error record is fatal to a client: not for a guess.
                        None => n.lost = true,
                    }
                }
            }
        }
    }
    n
}

/// IFLA_INFO_DATA for RTM_NEWLINK: IFLA_OVPN_MODE as a u8 (attribute 1 in
/// both families; 0 P2P, 1 MP).
pub fn link_info_data(mode: Mode) -> [u8; 8] {
    let ty = crate::dco::layout::IFLA_OVPN_MODE.to_ne_bytes();
    [5, 0, ty[0], ty[1], mode as u8, 0, 0, 0]
}

/// RTM_NEWLINK for a DCO netdev: the family's link kind (`ovpn` or
/// `ovpn-dco`) and `mode` in IFLA_INFO_DATA; seq and ack are set by the transport.
pub fn newlink_request(family: Family, name: &str, mode: Mode) -> crate::netlink::Req {
    let mut req = crate::netlink::link::create(name, family.layout().link_kind, Some(&link_info_data(mode)));
    req.what = crate::netlink::What::Text(format!("create {} device {name}", family.layout().link_kind));
    req
}

/// The client's end of the notification pipe and the records waiting for it.
pub struct Pipe {
    ours: OwnedFd,
    client: Option<OwnedFd>,
    queue: VecDeque<Vec<u8>>,
    closed: bool,
    dropped: u64,
}

impl Pipe {
    /// A datagram socketpair, both ends blocking: the client's is left as
    /// it expects, and ours only ever sends with MSG_DONTWAIT.
    pub fn new() -> Result<Self> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (client, ours) = socketpair(AddressFamily::Unix, SockType::Datagram, None, SockFlag::SOCK_CLOEXEC)
            .map_err(|e| Error::errno("socketpair", e))?;
        Ok(Pipe { ours, client: Some(client), queue: VecDeque::new(), closed: false, dropped: 0 })
    }

    /// The client's end, once; our copy is closed once it is sent.
    pub fn take_client(&mut self) -> Result<OwnedFd> {
        self.client.take().ok_or_else(|| Error::state("the pipe fd was already handed out (GetPipeFD works once)"))
    }

    /// Queues one record and sends what the socket takes now.
    pub fn push(&mut self, rec: Vec<u8>) {
        if self.closed {
            return;
        }
        if self.queue.len() >= PIPE_QUEUE_MAX {
            // Keep the oldest: the first peer-deleted record is the one that matters.
            self.dropped += 1;
            if self.dropped == 1 || self.dropped % 1000 == 0 {
                log::warn!("DCO pipe: the client does not read; {} record(s) dropped", self.dropped);
            }
            return;
        }
        self.queue.push_back(rec);
        self.flush();
    }

    /// Sends queued records until the socket is full.
    pub fn flush(&mut self) {
        use nix::sys::socket::{send, MsgFlags};
        while let Some(r) = self.queue.front() {
            match send(self.ours.as_raw_fd(), r, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => {
                    self.queue.pop_front();
                }
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    // The client closed its end: nobody will read these.
                    log::info!("DCO pipe closed by the client ({e}); {} record(s) discarded", self.queue.len());
                    self.queue.clear();
                    self.closed = true;
                }
            }
        }
    }

    /// Our end, when records wait for room (poll for POLLOUT).
    pub fn pending_fd(&self) -> Option<RawFd> {
        (!self.queue.is_empty() && !self.closed).then(|| self.ours.as_raw_fd())
    }

    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// The DCO side of one device.
pub struct DcoDev {
    pub ifindex: u32,
    pub name: String,
    pub mode: Mode,
    /// Transport sockets handed to the kernel by number, by peer id. The
    /// kernel looked the number up in our fd table, so each stays open until
    /// its peer is replaced or removed, or the device goes.
    pub peers: VecMap<u32, OwnedFd>,
    pub pipe: Pipe,
}

/// The peers we hold a socket for that the kernel no longer has: after
/// lost notifications, these are reported to the client as deleted.
/// `lookup` asks the kernel for one peer (PEER_GET doit), not a dump: the
/// ovpn-dco-v2 dump walks only the MP peer table, so it never lists a P2P
/// device's peer. A peer whose lookup fails is kept.
pub fn vanished(
    held: impl IntoIterator<Item = u32>,
    mut lookup: impl FnMut(u32) -> Result<Option<PeerInfo>>,
) -> Vec<u32> {
    held.into_iter()
        .filter(|&id| lookup(id).inspect_err(|e| log::warn!("DCO resync: peer {id}: {e}")).is_ok_and(|p| p.is_none()))
        .collect()
}

/// Classifies the fd a client attached to NewPeer, from SO_TYPE and its
/// address family: an IPv4/IPv6 datagram socket is UDP (false), a stream
/// socket TCP (true); anything else is refused.
pub fn is_tcp(fd: &OwnedFd) -> std::result::Result<bool, String> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage};
    let ty = getsockopt(fd, sockopt::SockType).map_err(|e| format!("not a socket ({e})"))?;
    let addr: SockaddrStorage = getsockname(fd.as_raw_fd()).map_err(|e| format!("getsockname: {e}"))?;
    match (addr.family(), ty) {
        (Some(AddressFamily::Inet | AddressFamily::Inet6), SockType::Datagram) => Ok(false),
        (Some(AddressFamily::Inet | AddressFamily::Inet6), SockType::Stream) => Ok(true),
        (f, t) => Err(format!("not a UDP or TCP socket ({f:?}, {t:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unasked_answers_on_the_command_socket_are_polled_and_drained() {
        // Any generic-netlink socket will do: ask the controller about
        // itself and leave the answer unread, as a late answer would be.
        let cmd = match Socket::open_family(NlFamily::Generic, &[]) {
            Ok(s) => s,
            // qemu-user passes netlink sockets of a few protocols only.
            Err(Error::Io(e)) if e.errno == libc::EPROTONOSUPPORT => {
                eprintln!("SKIP: no generic netlink socket here (qemu-user?)");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let mut k = DcoKernel { genl: Genl { family: Family::Ovpn, id: 0x23 }, cmd, ntf: None };
        let mut req = ctrl::getfamily_request("nlctrl").unwrap();
        nix::sys::socket::send(k.cmd.fd(), req.bytes_mut(), nix::sys::socket::MsgFlags::empty()).unwrap();
        let fds: Vec<RawFd> = k.poll_fds().collect();
        assert_eq!(fds, [k.cmd.fd()]);
        let readable = |k: &DcoKernel| {
            let mut p = [nix::poll::PollFd::new(crate::sys::borrow_fd(k.cmd.fd()), nix::poll::PollFlags::POLLIN)];
            nix::poll::poll(&mut p, nix::poll::PollTimeout::ZERO).unwrap() == 1
        };
        assert!(readable(&k), "the answer is queued");
        k.discard_unasked();
        assert!(!readable(&k), "and drained");
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn link_info_data_is_the_mode_attribute() {
        // nla_len 5, type IFLA_OVPN_MODE (1), u8 mode, 3 bytes pad: the
        // layout `ip link add ... type ovpn-dco` sends, and the v2 facts' 0..1 range.
        assert_eq!(link_info_data(Mode::P2p), [5, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(link_info_data(Mode::Mp), [5, 0, 1, 0, 1, 0, 0, 0]);
        assert_eq!(crate::dco::layout::IFLA_OVPN_MODE, 1, "IFLA_OVPN_MODE in both uapi headers");
    }

    // The golden echo was recorded on a little-endian host.
    #[cfg(target_endian = "little")]
    #[test]
    fn link_info_data_matches_what_the_upstream_module_echoed() {
        // Golden § "RTM_NEWLINK ovpn-bad": the upstream module refused mode 2
        // with -ERANGE and echoed the request; its IFLA_INFO_DATA nest
        // (0x8002) holds the same 8 bytes we send, but for the mode value.
        let g = crate::dco::golden::RTM_NEWLINK_BAD_MODE_REPLY;
        let at = g.windows(4).position(|w| w == [0x0c, 0x00, 0x02, 0x80]).expect("IFLA_INFO_DATA in the echo") + 4;
        let mut echoed: [u8; 8] = g[at..at + 8].try_into().unwrap();
        assert_eq!(echoed[4], 2);
        echoed[4] = 0;
        assert_eq!(echoed, link_info_data(Mode::P2p));
    }

    /// The RTM_NEWLINK bytes EnableDCO sends for `family`, as the transport
    /// puts them on the wire (ack asked, sequence number `seq`).
    fn newlink_wire(family: Family, name: &str, mode: Mode, seq: u32) -> Vec<u8> {
        let mut req = newlink_request(family, name, mode);
        req.bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
        crate::netlink::set_ack(&mut req.bytes, true);
        req.bytes
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn upstream_newlink_matches_the_recorded_request() {
        // Golden § "RTM_NEWLINK ovpn0 (P2P)" and § "RTM_NEWLINK ovpn-mp0
        // (MP)": every byte, with the probe's sequence numbers (2, 39) set
        // in place of ours; nlmsg_pid is 0 in both.
        assert_eq!(Family::Ovpn.layout().link_kind, "ovpn");
        let g = crate::dco::golden::RTM_NEWLINK_P2P_REQ;
        assert_eq!(newlink_wire(Family::Ovpn, "ovpn0", Mode::P2p, 2), g);
        let g = crate::dco::golden::RTM_NEWLINK_MP_REQ;
        assert_eq!(newlink_wire(Family::Ovpn, "ovpn-mp0", Mode::Mp, 39), g);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn v2_newlink_bytes() {
        // Built by hand from the uapi constants (RTM_NEWLINK 16, IFLA_IFNAME
        // 3, IFLA_LINKINFO 18, IFLA_INFO_KIND 1, IFLA_INFO_DATA 2,
        // IFLA_OVPN_MODE 1, NLA_F_NESTED 0x8000). tests/dco.rs creates its
        // ovpn-dco links through the same newlink_request, and the real
        // ovpn-dco-v2 module accepts them in the qemu guest.
        assert_eq!(Family::OvpnDcoV2.layout().link_kind, "ovpn-dco");
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x4c, 0, 0, 0, 0x10, 0, 0x05, 0x06, 7, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr: 76 bytes, REQUEST|ACK|CREATE|EXCL
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ifinfomsg
            0x0c, 0, 0x03, 0, b'o', b'v', b'p', b'n', b'd', b'c', b'o', 0, // IFLA_IFNAME "ovpndco"
            0x20, 0, 0x12, 0x80, // IFLA_LINKINFO | NLA_F_NESTED, 32 bytes
            0x0d, 0, 0x01, 0, b'o', b'v', b'p', b'n', b'-', b'd', b'c', b'o', 0, 0, 0, 0, // IFLA_INFO_KIND "ovpn-dco"
            0x0c, 0, 0x02, 0x80, 0x05, 0, 0x01, 0, 0, 0, 0, 0, // IFLA_INFO_DATA | NLA_F_NESTED { IFLA_OVPN_MODE = 0 }
        ];
        assert_eq!(newlink_wire(Family::OvpnDcoV2, "ovpndco", Mode::P2p, 7), want);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn notifications_are_sorted_into_events_errors_and_losses() {
        use crate::dco::{golden, DelReason, PeerDeleted};
        let genl = Genl { family: Family::Ovpn, id: 0x23 };
        let good = golden::PEER_DEL_NTF_USERSPACE.to_vec();
        // Same message, its peer ID attribute 3 bytes long: unreadable, but
        // the device (top-level IFINDEX 2) still is.
        let mut bad_id = good.clone();
        bad_id[40] = 7;
        // IFINDEX unreadable too: nobody to tell, so the peers are re-read.
        let mut bad_ifindex = bad_id.clone();
        bad_ifindex[20] = 7;
        let deleted = Reply::PeerDeleted(PeerDeleted { ifindex: 2, peer_id: 1, reason: DelReason::Userspace });

        let n = sort_notifications(&genl, &[good.clone(), golden::CTRL_GETFAMILY_OVPN_REPLY.to_vec()]);
        assert_eq!(n, Notifications { replies: vec![deleted.clone()], lost: false, errors: vec![] });

        // Two messages in one datagram: the good one still counts.
        let n = sort_notifications(&genl, &[[bad_id.as_slice(), &good].concat()]);
        assert_eq!(n.replies, vec![deleted]);
        assert!(!n.lost);
        assert_eq!(n.errors.len(), 1);
        assert_eq!(n.errors[0].0, Some(2));
        assert!(n.errors[0].1.starts_with("malformed DCO notification from the kernel: "), "{:?}", n.errors);

        let n = sort_notifications(&genl, &[bad_ifindex]);
        assert_eq!(n, Notifications { replies: vec![], lost: true, errors: vec![] });
        // A datagram whose netlink header is cut short.
        let n = sort_notifications(&genl, &[good[..10].to_vec()]);
        assert_eq!(n, Notifications { replies: vec![], lost: true, errors: vec![] });
        // Another family's id: not ours to judge.
        let n = sort_notifications(&Genl { family: Family::Ovpn, id: 0x24 }, &[bad_id]);
        assert_eq!(n, Notifications::default());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ifindex_of_reads_attribute_1_in_both_families() {
        assert_eq!(crate::dco::layout::A_IFINDEX, 1, "OVPN_A_IFINDEX and OVPN_ATTR_IFINDEX");
        let g = crate::dco::golden::PEER_DEL_NTF_MP_TEARDOWN;
        let m = attr::messages(g).next().unwrap().unwrap();
        assert_eq!(Genl { family: Family::Ovpn, id: 0x23 }.ifindex_of(&m), Some(4));
        assert_eq!(Genl { family: Family::OvpnDcoV2, id: 0x23 }.ifindex_of(&m), Some(4));
        assert_eq!(Genl { family: Family::Ovpn, id: 0x10 }.ifindex_of(&m), None);
    }

    fn read_all(fd: &OwnedFd) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut b = [0u8; 2048];
        while let Ok(n) = nix::sys::socket::recv(fd.as_raw_fd(), &mut b, nix::sys::socket::MsgFlags::MSG_DONTWAIT) {
            out.push(b[..n].to_vec());
        }
        out
    }

    #[test]
    fn pipe_queues_when_the_client_does_not_read_and_keeps_order() {
        let mut p = Pipe::new().unwrap();
        // Until the socket's send buffer is full and records wait in the queue.
        let mut pushed = 0u32;
        while p.queued() < 20 {
            assert!(pushed < 100_000, "the socket never filled up");
            p.push(pushed.to_ne_bytes().to_vec());
            pushed += 1;
        }
        assert!(p.pending_fd().is_some());
        let client = p.take_client().unwrap();
        let mut got = Vec::new();
        while p.queued() > 0 {
            got.extend(read_all(&client));
            p.flush();
        }
        got.extend(read_all(&client));
        let want: Vec<Vec<u8>> = (0..pushed).map(|i| i.to_ne_bytes().to_vec()).collect();
        assert_eq!(got, want, "every record arrives, in order");
        assert!(p.pending_fd().is_none());
        assert!(matches!(p.take_client(), Err(Error::State(_))));
    }

    #[test]
    fn pipe_is_bounded_and_stops_when_the_client_closes() {
        let mut p = Pipe::new().unwrap();
        for _ in 0..100_000 {
            p.push(vec![0xff, b'x']);
        }
        assert_eq!(p.queued(), PIPE_QUEUE_MAX);
        drop(p.take_client().unwrap());
        p.flush();
        assert_eq!(p.queued(), 0);
        assert!(p.pending_fd().is_none());
        p.push(vec![0xff]); // ignored, no panic
        assert_eq!(p.queued(), 0);
    }

    #[test]
    fn resync_reports_only_peers_the_kernel_lost() {
        // Peers 1 and 7 exist; asking about 5 fails, so it is kept.
        let mut asked = Vec::new();
        let gone = vanished([1, 2, 5, 7, 9], |id| {
            asked.push(id);
            match id {
                1 | 7 => Ok(Some(PeerInfo { id, ..Default::default() })),
                5 => Err(Error::failed("no answer")),
                _ => Ok(None),
            }
        });
        assert_eq!(gone, vec![2, 9]);
        assert_eq!(asked, vec![1, 2, 5, 7, 9], "each held peer is asked about once");
        assert!(vanished([], |_| Ok(None)).is_empty());
    }

    #[test]
    fn socket_kinds() {
        let udp = OwnedFd::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        assert_eq!(is_tcp(&udp), Ok(false));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = OwnedFd::from(std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap());
        assert_eq!(is_tcp(&tcp), Ok(true));
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        assert!(is_tcp(&OwnedFd::from(a)).is_err());
        let file = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        assert!(is_tcp(&file).unwrap_err().contains("not a socket"));
    }
}
