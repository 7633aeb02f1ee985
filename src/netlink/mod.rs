//! The netlink layer: one codec ([`attr`]) and one transport ([`Socket`])
//! for RTNL and generic netlink, on neli's `NlSocket` (non-blocking; never
//! its router or blocking handle). RTNL message builders and parsers live
//! in `link`, `addr`, `route`, `rule`; the DCO families' in `crate::dco`.

pub mod addr;
pub mod attr;
#[cfg(test)]
mod golden;
pub mod link;
pub mod route;
pub mod rule;

use std::os::fd::{AsRawFd, RawFd};
use std::result::Result as StdResult;

use neli::consts::socket::{Msg, NlFamily};
use neli::socket::NlSocket;
use neli::utils::Groups;

use crate::error::{Error, Result};
use attr::{AttrError, NlMsg, NlMsgRef, NlStatus, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP};

/// The `rtm_protocol` value on every route and rule we install, so they can be
/// recognised later (`ip route show proto 79`). Unassigned in iproute2's rt_protos.
pub const RTPROT_OVPN_NETCFGD: u8 = 79;

/// How many requests go out in one sendmsg, and so in one turn of the loop
/// for a pending operation (128 route adds: about a millisecond of the
/// kernel's time). Each error report costs about 1 KiB of receive-buffer
/// truesize; even a batch that fails entirely stays inside the 1 MiB buffer
/// we ask for.
pub const BATCH: usize = 128;
const RECV_BUF: usize = 64 * 1024;
/// Datagrams of answers read per call of `on_readable` (one loop turn).
const READS_PER_TURN: usize = 8;
/// Datagrams read per wake-up of a notification socket; poll says if more wait.
const DRAIN_MAX: usize = 64;
/// Messages kept from one dump.
const DUMP_MAX: usize = 1_000_000;
/// Room for any RTNL request: names are under 16 bytes, every other
/// attribute has a fixed size.
const RTNL_CAP: usize = 512;

/// One encoded request plus the errnos that count as success for it
/// (EEXIST on add, ENOENT/ESRCH on delete).
pub struct Req {
    pub bytes: Vec<u8>,
    pub ok_errnos: &'static [i32],
    /// Described only when something is logged or fails (formatting a
    /// text for each of 10k routes was a measurable share of Establish).
    pub what: What,
}

pub enum What {
    /// "add" or "delete", and what.
    Route(&'static str, route::Route),
    Addr(&'static str, addr::Addr),
    Text(String),
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            What::Route(verb, r) => write!(f, "{verb} route {r}"),
            What::Addr(verb, a) => write!(f, "{verb} address {}/{} on #{}", a.addr, a.prefix, a.ifindex),
            What::Text(t) => f.write_str(t),
        }
    }
}

pub const OK_ADD: &[i32] = &[libc::EEXIST];
pub const OK_DEL: &[i32] = &[libc::ENOENT, libc::ESRCH, libc::EADDRNOTAVAIL, libc::ENODEV];

/// Encodes one RTNL request (seq 0: the transport stamps it): `hdr` is the
/// fixed header (`ifinfomsg`, `rtmsg`, ...), `put` writes the attributes.
pub fn encode(ty: u16, flags: u16, hdr: &[u8], put: impl FnOnce(&mut NlMsg) -> StdResult<(), AttrError>) -> Vec<u8> {
    let mut m = NlMsg::new(ty, flags | attr::NLM_F_REQUEST, hdr, RTNL_CAP).expect("RTNL headers fit");
    put(&mut m).expect("RTNL requests fit RTNL_CAP");
    m.into_bytes()
}

/// A kernel error for one request: errno and the extack text, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    pub errno: i32,
    pub msg: Option<String>,
}

impl NlError {
    /// The outcome an ack, error or NLMSG_DONE reports.
    pub fn check(st: &NlStatus) -> StdResult<(), NlError> {
        if st.error == 0 {
            return Ok(());
        }
        let ext = st.ext.to_string();
        Err(NlError { errno: st.errno(), msg: (!ext.is_empty()).then_some(ext) })
    }

    pub fn into_error(self, op: impl Into<String>) -> Error {
        Error::Kernel(Box::new(crate::error::Sys { op: op.into(), errno: self.errno, msg: self.msg }))
    }
}

/// A batch on its way: the answer to each message, matched by sequence
/// number. The batch is complete once its last message is answered.
#[derive(Debug)]
struct Pending {
    first: u32,
    /// None until answered: an error report, or the last one's ack.
    got: Vec<Option<StdResult<(), NlError>>>,
}

impl Pending {
    fn complete(&self) -> bool {
        self.got.last().map_or(true, Option::is_some)
    }

    /// One outcome per request of this batch, once it is complete or its
    /// transport `failed`.
    fn outcomes(self, reqs: &[Req], failed: bool) -> Vec<Outcome> {
        let answer = |(g, r): (Option<StdResult<(), NlError>>, &Req)| match g {
            None if failed => None,
            None | Some(Ok(())) => Some(Ok(true)),
            Some(Err(e)) if r.ok_errnos.contains(&e.errno) => {
                log::debug!("{}: {} (fine)", r.what, std::io::Error::from_raw_os_error(e.errno));
                Some(Ok(false))
            }
            Some(Err(e)) => Some(Err(e)),
        };
        self.got.into_iter().zip(reqs).map(answer).collect()
    }

    /// Takes the answers in one received datagram: errors and acks by
    /// sequence number, data messages answering the batch to `each`;
    /// anything else (a late answer to an earlier request) is skipped.
    fn take(&mut self, datagram: &[u8], mut each: impl FnMut(&NlMsgRef<'_>)) -> Result<()> {
        let bad = |e: AttrError| Error::failed(format!("netlink: malformed reply: {e}"));
        for m in attr::messages(datagram) {
            let m = m.map_err(bad)?;
            let i = m.seq.wrapping_sub(self.first) as usize;
            if i >= self.got.len() {
                continue;
            }
            let st = match m.ty {
                NLMSG_ERROR => attr::parse_error(&m).map_err(bad)?,
                NLMSG_DONE => attr::parse_done(&m).map_err(bad)?,
                _ => {
                    each(&m);
                    continue;
                }
            };
            self.got[i].get_or_insert(NlError::check(&st));
        }
        Ok(())
    }
}

/// What became of one request: `Ok(true)` changed the kernel, `Ok(false)`
/// was a tolerated errno (already there / already gone) or never sent,
/// `None` if the kernel may or may not have acted (its batch was in flight
/// when the transport failed).
pub type Outcome = Option<StdResult<bool, NlError>>;

/// Requests that go to the kernel a batch at a time: each `advance` reads
/// the answers of the batch in flight, if they are there, and sends the
/// next of those pushed so far. The loop advances a large change between
/// other calls this way; a small one runs to the end at once (`transact`).
/// Once done, it tells what became of them: one outcome per request
/// answered so far (`out`), and the failure that ended the run early, if
/// any.
#[derive(Default)]
pub struct Batches {
    reqs: Vec<Req>,
    sent: usize,
    inflight: Option<Pending>,
    pub out: Vec<Outcome>,
    pub failure: Option<Error>,
}

impl Batches {
    /// The kernel's refusal of request `i`, named after the request.
    pub fn error(&self, i: usize) -> Option<Error> {
        match self.out.get(i)? {
            Some(Err(e)) => Some(e.clone().into_error(self.reqs[i].what.to_string())),
            _ => None,
        }
    }

    /// More requests, sent after the ones before them.
    pub fn push(&mut self, more: Vec<Req>) {
        self.reqs.extend(more);
    }

    /// True once every request pushed is answered, or the transport failed.
    /// Data messages answering a request (a dump's) go to `each`.
    pub fn advance(&mut self, sock: &mut Socket, each: impl FnMut(&NlMsgRef<'_>)) -> bool {
        if self.failure.is_some() {
            return true;
        }
        if let Some(p) = &mut self.inflight {
            let r = sock.on_readable(p, each);
            if let Ok(false) = r {
                return false;
            }
            self.collect(r.err());
            if self.failure.is_some() {
                return true;
            }
        }
        if self.sent == self.reqs.len() {
            return true;
        }
        let end = self.reqs.len().min(self.sent + BATCH);
        let batch = &mut self.reqs[self.sent..end];
        match sock.send(&mut batch.iter_mut().map(|r| &mut r.bytes[..]).collect::<Vec<_>>()) {
            Ok(p) => {
                // Sent: only what the answers are matched against is kept.
                for r in batch {
                    r.bytes = Vec::new();
                }
                self.inflight = Some(p);
                self.sent = end;
                false
            }
            Err(e) => {
                self.fail(e);
                true
            }
        }
    }

    /// Takes the answers of the batch in flight; `failure` ends the whole.
    fn collect(&mut self, failure: Option<Error>) {
        if let Some(p) = self.inflight.take() {
            let start = self.out.len();
            self.out.extend(p.outcomes(&self.reqs[start..self.sent], failure.is_some()));
        }
        if let Some(e) = failure {
            self.fail(e);
        }
    }

    /// Ends the run with `e` (a failed send, or the caller's reason to send
    /// no more). Requests not sent count as not made: the kernel handles a
    /// datagram inside sendmsg, so a failed send was not handled at all.
    pub fn fail(&mut self, e: Error) {
        self.out.resize(self.reqs.len(), Some(Ok(false)));
        self.failure = Some(e);
    }

    /// Fails the whole unless the answers of the batch in flight are there.
    pub fn expect_answer(&mut self, sock: &mut Socket) {
        if let Err(e) = sock.expect_answer() {
            self.collect(Some(e));
        }
    }
}

/// One non-blocking netlink socket of any family and multicast groups,
/// with extended acks: requests go out in batches, answers are matched by
/// sequence number, notifications are drained.
pub struct Socket {
    sock: NlSocket,
    seq: u32,
    buf: Vec<u8>,
    /// Batches go out through a sender process (`detached`).
    detach: bool,
    sender: Option<crate::sys::Sender>,
}

impl Socket {
    /// Opens the route socket for requests.
    pub fn open() -> Result<Self> {
        Self::open_family(NlFamily::Route, &[])
    }

    /// The route socket on the multicast groups for links and IPv4/IPv6
    /// routes and rules: what other programs (and the kernel itself)
    /// change in the network.
    pub fn monitor() -> Result<Self> {
        use libc::{RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV4_RULE, RTNLGRP_IPV6_ROUTE, RTNLGRP_IPV6_RULE, RTNLGRP_LINK};
        Self::open_family(
            NlFamily::Route,
            &[RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE, RTNLGRP_IPV4_RULE, RTNLGRP_IPV6_RULE],
        )
    }

    /// Opens a socket of `family` joined to `groups` (non-blocking, CLOEXEC, extended acks on).
    pub fn open_family(family: NlFamily, groups: &[u32]) -> Result<Self> {
        let sock =
            NlSocket::connect(family, None, Groups::new_groups(groups)).map_err(|e| Error::io("netlink socket", e))?;
        sock.nonblock().map_err(|e| Error::io("netlink nonblock", e))?;
        sock.enable_ext_ack(true).map_err(|e| Error::io("NETLINK_EXT_ACK", e))?;
        let fd = sock.as_raw_fd();
        // Error acks then echo only the request's header, never its
        // attributes: bulk acks stay small, and KEY_NEW's keys are not
        // copied back into our buffer.
        crate::sys::setsockopt_int(fd, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1)
            .map_err(|e| Error::io("NETLINK_CAP_ACK", e))?;
        // Room for a batch's error reports or a burst of notifications (an
        // overrun is noticed, ENOBUFS). FORCE needs CAP_NET_ADMIN, which we
        // have; fall back to the capped one.
        if crate::sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 1 << 20).is_err() {
            let _ = sock.set_recv_buffer_size(1 << 20);
        }
        Ok(Socket { sock, seq: 0, buf: vec![0; RECV_BUF], detach: false, sender: None })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sends batches through a sender process (`sys::Sender`) from now on,
    /// started here (and again at a batch if it has died): for the socket of
    /// pending operations, whose answers the loop polls. Called once the
    /// daemon runs with its final privileges, which the sender inherits.
    pub fn detach(&mut self) -> Result<()> {
        self.detach = true;
        self.sender = Some(crate::sys::Sender::start(self.fd()).map_err(|e| Error::io("netlink sender", e))?);
        Ok(())
    }

    /// What the loop polls: the socket, and the sender's pidfd (a sender
    /// that dies would otherwise leave a batch waiting for answers).
    pub fn poll_fds(&self) -> Vec<RawFd> {
        let pidfd = self.sender.as_ref().and_then(|c| c.pidfd.as_ref()).map(|fd| fd.as_raw_fd());
        [Some(self.fd()), pidfd].into_iter().flatten().collect()
    }

    /// Stamps sequence numbers on `msgs` and sends them in one sendmsg.
    /// Only the last asks for an ack (a dump ends with NLMSG_DONE instead):
    /// the kernel handles a batch in order and reports every failure
    /// anyway, so once the last is answered, every message without an error
    /// report succeeded. This saves one receive per request (10k routes:
    /// 10k recvmsg calls). A failed send was not handled at all: the kernel
    /// handles a datagram inside sendmsg.
    fn send(&mut self, msgs: &mut [&mut [u8]]) -> Result<Pending> {
        if self.seq.checked_add(msgs.len() as u32 + 1).is_none() {
            self.seq = 0; // seqs of a batch are consecutive and never 0
        }
        let first = self.seq + 1;
        let last = msgs.len().saturating_sub(1);
        for (i, m) in msgs.iter_mut().enumerate() {
            self.seq += 1;
            m[8..12].copy_from_slice(&self.seq.to_ne_bytes());
            let dump = u16::from_ne_bytes([m[6], m[7]]) & NLM_F_DUMP == NLM_F_DUMP;
            set_ack(m, i == last && !dump);
        }
        let pending = Pending { first, got: vec![None; msgs.len()] };
        // One message goes out from where it is: no copy of a key is left
        // in a buffer that is not wiped. (A detached socket's requests
        // carry routes and links, never keys.)
        let bytes: std::borrow::Cow<[u8]> = match msgs {
            [one] => (&**one).into(),
            _ => msgs.concat().into(),
        };
        if self.detach && bytes.len() <= crate::sys::SENDER_MAX {
            // A sender that has died (killed, say) is replaced, once.
            if self.sender.as_ref().is_some_and(|c| c.send(&bytes).is_ok()) {
                return Ok(pending);
            }
            self.detach()?;
            return match self.sender.as_ref().map(|c| c.send(&bytes)) {
                Some(Ok(())) => Ok(pending),
                _ => Err(Error::failed("netlink sender: a new one cannot take the batch either")),
            };
        }
        loop {
            match self.sock.send(&bytes[..], Msg::empty()) {
                Ok(_) => return Ok(pending),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("netlink send", e)),
            }
        }
    }

    /// Reads the answers queued for `p` without waiting (data messages to
    /// `each`); true once `p` is complete.
    fn on_readable(&mut self, p: &mut Pending, mut each: impl FnMut(&NlMsgRef<'_>)) -> Result<bool> {
        // A sender that stopped: its error is the batch's (it sends a
        // datagram whole or not at all, so answers read so far stay valid).
        if let Some(Some(r)) = self.sender.as_mut().map(|c| c.reap(false)) {
            self.sender = None;
            r.map_err(|e| Error::io("netlink send", e))?;
        }
        // A dump's next part is made while its previous one is read: a
        // large one is read over several loop turns.
        for _ in 0..READS_PER_TURN {
            if p.complete() {
                break;
            }
            match self.sock.recv(&mut self.buf[..], Msg::DONTWAIT) {
                Ok((n, _)) => p.take(&self.buf[..n.min(self.buf.len())], &mut each)?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("netlink recv", e)),
            }
        }
        Ok(p.complete())
    }

    /// Fails unless an answer is queued, without waiting: the kernel
    /// handles a netlink request inside sendmsg, and makes a dump's next
    /// part while the previous one is read, so an answer that is not there
    /// now will not come.
    fn expect_answer(&mut self) -> Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        // (At shutdown:) a sender's datagram is answered once it has sent
        // it; stopping it waits for that (it sends what it holds before it
        // sees the end of its channel).
        self.sender = None;
        let mut fds = [PollFd::new(crate::sys::borrow_fd(self.fd()), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => Err(Error::failed("netlink: the kernel did not answer")),
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(Error::errno("poll netlink", e)),
        }
    }

    /// Sends one request (a do-request or a dump) and waits for its outcome;
    /// data messages answering it go to `each`. A kernel refusal is
    /// `Error::Kernel` with errno and extack text. Its answers are queued
    /// by the time sendmsg returns (see `expect_answer`), so this never sleeps.
    pub fn call(&mut self, msg: &mut [u8], what: &str, mut each: impl FnMut(&NlMsgRef<'_>)) -> Result<()> {
        let mut p = self.send(&mut [msg])?;
        while !self.on_readable(&mut p, &mut each)? {
            self.expect_answer()?;
        }
        match p.got.pop().flatten() {
            Some(Err(e)) => Err(e.into_error(what)),
            _ => Ok(()),
        }
    }

    /// Sends every request (batched, several per sendmsg) and collects one
    /// outcome per request, in order. A transport failure keeps what is
    /// known: `None` where the kernel may or may not have acted (the batch
    /// in flight when the failure came), `Ok(false)` for requests never sent.
    pub fn transact(&mut self, reqs: Vec<Req>) -> Batches {
        let mut b = Batches { reqs, ..Default::default() };
        while !b.advance(self, |_| {}) {
            b.expect_answer(self);
        }
        b
    }

    /// One request that must succeed; true if it changed the kernel.
    pub fn request(&mut self, req: Req) -> Result<bool> {
        let mut d = self.transact(vec![req]);
        match d.failure.take().or_else(|| d.error(0)) {
            Some(e) => Err(e),
            None => Ok(d.out[0] == Some(Ok(true))),
        }
    }

    /// Runs a dump (or an acknowledged get); returns the payload bytes
    /// (after the nlmsghdr) of every reply message of type `ty`.
    pub fn dump(&mut self, mut bytes: Vec<u8>, ty: u16) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut full = false;
        self.call(&mut bytes, "netlink dump", |m| match out.len() < DUMP_MAX {
            _ if m.ty != ty => {}
            true => out.push(m.payload.to_vec()),
            false => full = true,
        })?;
        if full {
            return Err(Error::failed("netlink: dump too large"));
        }
        Ok(out)
    }

    /// Reads what is queued without waiting: the datagrams, whether the
    /// kernel dropped some (ENOBUFS), and any other receive error, which
    /// ends the read.
    pub fn drain(&mut self) -> (Vec<Vec<u8>>, bool, Option<std::io::Error>) {
        let (mut out, mut lost) = (Vec::new(), false);
        for _ in 0..DRAIN_MAX {
            match self.sock.recv(&mut self.buf[..], Msg::DONTWAIT) {
                Ok((n, _)) => out.push(self.buf[..n.min(self.buf.len())].to_vec()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => lost = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return (out, lost, Some(e)),
            }
        }
        (out, lost, None)
    }

    /// Reads what is queued on a request socket outside a request (a late
    /// answer to a request that failed, the rest of a dump cut short) and
    /// logs it at debug level, so that it does not stay queued.
    pub fn discard_unasked(&mut self) {
        let (datagrams, _, err) = self.drain();
        for m in datagrams.iter().flat_map(|d| attr::messages(d)) {
            match m {
                Ok(m) => log::debug!("netlink: dropped an unasked message (type {}, seq {})", m.ty, m.seq),
                Err(e) => log::debug!("netlink: dropped an unasked message: {e}"),
            }
        }
        if let Some(e) = err {
            log::debug!("netlink: reading unasked messages: {e}");
        }
    }

    /// The RTNL notifications queued on a `monitor` socket; the flag is
    /// true if the kernel dropped some (the socket's buffer overran).
    pub fn notices(&mut self) -> (Vec<KernelNotice>, bool) {
        let (datagrams, lost, err) = self.drain();
        if let Some(e) = err {
            log::warn!("netlink monitor: {e}");
        }
        (datagrams.iter().flat_map(|d| notices(d)).collect(), lost)
    }
}

/// What one RTNL notification says, as far as the daemon follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelNotice {
    /// RTM_NEWLINK (`gone` false: new, changed or renamed) or RTM_DELLINK.
    Link { ifindex: u32, name: String, gone: bool },
    /// RTM_NEWROUTE or RTM_DELROUTE.
    Route { gone: bool, route: route::KernelRoute },
    /// RTM_NEWRULE or RTM_DELRULE: a policy rule changed; `ours` if it
    /// carries our protocol.
    Rule { ours: bool },
}

/// Decodes a datagram of RTNL notifications. Messages of other types and
/// malformed ones are skipped; never panics.
pub fn notices(b: &[u8]) -> Vec<KernelNotice> {
    let notice = |m: NlMsgRef<'_>| {
        let (ty, payload) = (m.ty, m.payload);
        match ty {
            libc::RTM_NEWLINK | libc::RTM_DELLINK => link::parse_info(payload).map(|l| KernelNotice::Link {
                ifindex: l.index,
                name: l.name,
                gone: ty == libc::RTM_DELLINK,
            }),
            libc::RTM_NEWROUTE | libc::RTM_DELROUTE => {
                route::parse(payload).map(|route| KernelNotice::Route { gone: ty == libc::RTM_DELROUTE, route })
            }
            libc::RTM_NEWRULE | libc::RTM_DELRULE if payload.len() >= 12 => {
                Some(KernelNotice::Rule { ours: rule::parse_ours(payload, RTPROT_OVPN_NETCFGD).is_some() })
            }
            _ => None,
        }
    };
    attr::messages(b).map_while(StdResult::ok).filter_map(notice).collect()
}

/// Sets or clears NLM_F_ACK on an encoded request.
pub fn set_ack(bytes: &mut [u8], ack: bool) {
    let flags = (u16::from_ne_bytes([bytes[6], bytes[7]]) & !NLM_F_ACK) | if ack { NLM_F_ACK } else { 0 };
    bytes[6..8].copy_from_slice(&flags.to_ne_bytes());
}

/// The attributes in `b` as (type without flag bits, payload), up to the
/// first malformed one (for tests and fuzzing: the parsers read `attr::Attr`s).
#[cfg(any(test, feature = "fuzz"))]
pub fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    attr::attrs(b).map_while(StdResult::ok).map(|a| (a.kind(), a.payload()))
}

/// An RTM_DELLINK for "tun0" (#7) and an RTM_DELROUTE, as one datagram
/// (unit test and fuzz seed).
#[cfg(test)]
pub fn notice_datagram() -> Vec<u8> {
    let mut link = vec![0u8; 32];
    link[4..6].copy_from_slice(&libc::RTM_DELLINK.to_ne_bytes());
    link[20..24].copy_from_slice(&7u32.to_ne_bytes());
    link.extend_from_slice(&9u16.to_ne_bytes());
    link.extend_from_slice(&libc::IFLA_IFNAME.to_ne_bytes());
    link.extend_from_slice(b"tun0\0\0\0\0");
    let len = link.len() as u32;
    link[0..4].copy_from_slice(&len.to_ne_bytes());
    let r = route::Route {
        dst: "203.0.113.7/32".parse().expect("constant"),
        gateway: Some("192.0.2.1".parse().expect("constant")),
        oif: 2,
        metric: None,
        table: route::RT_TABLE_MAIN,
        protocol: RTPROT_OVPN_NETCFGD,
        onlink: false,
    };
    link.extend_from_slice(&route::del(&r).bytes);
    let rule = rule::Rule { ipv6: false, priority: 100, fwmark: 0, table: 100, protocol: 4 };
    link.extend_from_slice(&rule::add(&rule).bytes);
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_by_seq_with_extack() {
        // A batch of seqs 7..=9: an error with extack for 7, the ack of 9.
        let mut p = Pending { first: 7, got: vec![None; 3] };
        let d = [capped_error_with_extack(7, -17, b"route exists\0"), capped_error_with_extack(9, 0, b"")].concat();
        p.take(&d, |_| panic!("no data")).unwrap();
        assert!(p.complete());
        assert_eq!(p.got[0], Some(Err(NlError { errno: 17, msg: Some("route exists".into()) })));
        assert_eq!((&p.got[1], &p.got[2]), (&None, &Some(Ok(()))));
        // Control characters are replaced and the text is bounded, as in the DCO decoder.
        let long = [b"a\nb\x1b".as_slice(), &[b'x'; 400]].concat();
        let mut p = Pending { first: 7, got: vec![None] };
        p.take(&capped_error_with_extack(7, -17, &long), |_| {}).unwrap();
        let msg = p.got[0].clone().unwrap().unwrap_err().msg.unwrap();
        assert!(msg.starts_with("a?b?x") && msg.len() == attr::EXTACK_MSG_MAX, "{msg:?}");
        // A late answer to another request is skipped; a malformed one fails.
        let mut p = Pending { first: 20, got: vec![None] };
        p.take(&capped_error_with_extack(7, -17, b""), |_| {}).unwrap();
        assert!(!p.complete());
        assert!(p.take(&capped_error_with_extack(20, -17, b"")[..30], |_| {}).is_err());
    }

    #[test]
    fn kernel_status_becomes_an_error_with_the_extack_text() {
        assert_eq!(NlError::check(&NlStatus { error: 0, request_seq: 1, ext: Default::default() }), Ok(()));
        let ext = attr::ExtAck { msg: Some("integer out of range".into()), ..Default::default() };
        let st = NlStatus { error: -libc::ERANGE, request_seq: 1, ext };
        let e = NlError::check(&st).unwrap_err().into_error("create link");
        assert_eq!(
            e,
            Error::Kernel(Box::new(crate::error::Sys {
                op: "create link".into(),
                errno: libc::ERANGE,
                msg: Some("integer out of range".into())
            }))
        );
        assert!(e.to_string().contains("integer out of range"), "{e}");
    }

    fn capped_error_with_extack(seq: u32, errno: i32, text: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        let attr_len = 4 + text.len();
        let total = 16 + 4 + 16 + ((attr_len + 3) & !3);
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&((libc::NLM_F_CAPPED | libc::NLM_F_ACK_TLVS) as u16).to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&errno.to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        m.extend_from_slice(&1u16.to_ne_bytes());
        m.extend_from_slice(text);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn unasked_answers_are_drained() {
        let mut s = Socket::open().unwrap();
        s.send(&mut [&mut link::get_by_name("lo")]).unwrap();
        assert!(s.expect_answer().is_ok());
        s.discard_unasked();
        assert!(s.expect_answer().is_err(), "nothing is left queued");
    }

    #[test]
    fn a_detached_socket_sends_through_its_sender() {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut s = Socket::open().unwrap();
        s.detach().unwrap();
        let mut b = Batches::default();
        let req = |bytes| Req { bytes, ok_errnos: &[], what: What::Text("get lo".into()) };
        b.push(vec![req(link::get_by_name("lo")), req(link::get_by_name("lo"))]);
        assert!(!b.advance(&mut s, |_| {}), "sent, not yet answered: {:?}", b.failure);
        assert_eq!(s.poll_fds().len(), 2, "the socket and the sender's pidfd");
        let mut links = 0;
        while !b.advance(&mut s, |m| links += usize::from(m.ty == libc::RTM_NEWLINK)) {
            let mut fds = [PollFd::new(crate::sys::borrow_fd(s.fd()), PollFlags::POLLIN)];
            assert_eq!(poll(&mut fds, PollTimeout::from(5000u16)), Ok(1), "the sender's datagram is answered");
        }
        assert!(b.failure.is_none() && b.out == [Some(Ok(true)), Some(Ok(true))], "{:?}", b.failure);
        assert_eq!(links, 2);
        // It stays for the next batches. Killed, it is replaced at the next.
        let children = std::fs::read_to_string("/proc/thread-self/children").unwrap();
        let pid: i32 = children.split_whitespace().last().unwrap().parse().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut b = Batches::default();
        b.push(vec![req(link::get_by_name("lo"))]);
        while !b.advance(&mut s, |_| {}) {
            let mut fds = [PollFd::new(crate::sys::borrow_fd(s.fd()), PollFlags::POLLIN)];
            assert_eq!(poll(&mut fds, PollTimeout::from(5000u16)), Ok(1), "answered through a new sender");
        }
        assert!(b.failure.is_none() && b.out == [Some(Ok(true))], "{:?}", b.failure);
    }

    #[test]
    fn notices_decode_a_datagram_of_link_and_route_messages() {
        let d = notice_datagram();
        let n = notices(&d);
        assert_eq!(n.len(), 3, "{n:?}");
        assert_eq!(n[2], KernelNotice::Rule { ours: false });
        assert_eq!(n[0], KernelNotice::Link { ifindex: 7, name: "tun0".into(), gone: true });
        match &n[1] {
            KernelNotice::Route { gone: true, route } => {
                assert_eq!(route.route.to_string(), "203.0.113.7/32 via 192.0.2.1 dev #2")
            }
            other => panic!("{other:?}"),
        }
        // Cut anywhere: whole messages before the cut only.
        for cut in 0..d.len() {
            assert!(notices(&d[..cut]).len() <= 3);
        }
    }
}
