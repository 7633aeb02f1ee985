//! RTNL transport: one non-blocking NETLINK_ROUTE socket (neli's `NlSocket`,
//! never its router or blocking handle), batched requests with bulk acks,
//! and dumps. Message builders live in `link`, `addr`, `route`, `rule`.

pub mod addr;
#[cfg(test)]
mod golden;
pub mod link;
pub mod route;
pub mod rule;

use std::io::Cursor;
use std::os::fd::{AsRawFd, RawFd};

use neli::consts::nl::{NlmF, Nlmsg};
use neli::consts::socket::NlFamily;
use neli::nl::NlPayload;
use neli::socket::NlSocket;
use neli::types::Buffer;
use neli::utils::Groups;
use neli::{Size, ToBytes};

use crate::error::{Error, Result};

/// The `rtm_protocol` value on every route and rule we install, so they can be
/// recognised later (`ip route show proto 79`). Unassigned in iproute2's rt_protos.
pub const RTPROT_OVPN_NETCFGD: u8 = 79;

/// How many requests go out in one sendmsg. Each error report costs about
/// 1 KiB of receive-buffer truesize; even a batch that fails entirely stays
/// inside the 1 MiB buffer we ask for.
const BATCH: usize = 256;
const RECV_BUF: usize = 64 * 1024;
/// include/uapi/linux/netlink.h, enum nlmsgerr_attrs
const NLMSGERR_ATTR_MSG: u16 = 1;

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
    AddRoute(route::Route),
    DelRoute(route::Route),
    AddAddr(addr::Addr),
    DelAddr(addr::Addr),
    Text(String),
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            What::AddRoute(r) => write!(f, "add route {r}"),
            What::DelRoute(r) => write!(f, "delete route {r}"),
            What::AddAddr(a) => write!(f, "add address {}/{} on #{}", a.addr, a.prefix, a.ifindex),
            What::DelAddr(a) => write!(f, "delete address {}/{} on #{}", a.addr, a.prefix, a.ifindex),
            What::Text(t) => f.write_str(t),
        }
    }
}

pub const OK_ADD: &[i32] = &[libc::EEXIST];
pub const OK_DEL: &[i32] = &[libc::ENOENT, libc::ESRCH, libc::EADDRNOTAVAIL, libc::ENODEV];

/// Encodes one netlink message (seq 0; `Rtnl` stamps the real one).
pub fn encode<T: neli::consts::nl::NlType, P: Size + ToBytes>(ty: T, flags: NlmF, payload: P) -> Vec<u8> {
    let msg = neli::nl::NlmsghdrBuilder::default()
        .nl_type(ty)
        .nl_flags(flags)
        .nl_payload(NlPayload::Payload(payload))
        .build()
        .expect("all fields set");
    let mut c = Cursor::new(Vec::with_capacity(msg.padded_size()));
    msg.to_bytes(&mut c).expect("writing to a Vec cannot fail");
    c.into_inner()
}

/// An attribute with a raw payload.
pub fn rta<T: neli::consts::rtnl::RtaType>(ty: T, payload: &[u8]) -> neli::rtnl::Rtattr<T, Buffer> {
    neli::rtnl::RtattrBuilder::default()
        .rta_type(ty)
        .rta_payload(Buffer::from(payload))
        .build()
        .expect("all fields set")
}

/// A kernel error for one request: errno and the extack text, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    pub errno: i32,
    pub msg: Option<String>,
}

impl NlError {
    pub fn into_error(self, op: impl Into<String>) -> Error {
        Error::Kernel { op: op.into(), errno: self.errno, msg: self.msg }
    }
}

pub struct Rtnl {
    sock: NlSocket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens the route socket (non-blocking, CLOEXEC, extended acks on).
    pub fn open() -> Result<Self> {
        Self::open_family(NlFamily::Route)
    }

    pub fn open_family(family: NlFamily) -> Result<Self> {
        let sock = NlSocket::connect(family, None, Groups::empty()).map_err(|e| Error::io("netlink socket", e))?;
        sock.nonblock().map_err(|e| Error::io("netlink nonblock", e))?;
        sock.enable_ext_ack(true).map_err(|e| Error::io("NETLINK_EXT_ACK", e))?;
        let fd = sock.as_raw_fd();
        // Acks need not echo our request back; keeps bulk acks small.
        let _ = crate::sys::setsockopt_int(fd, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1);
        // FORCE needs CAP_NET_ADMIN, which we have; fall back to the capped one.
        if crate::sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 1 << 20).is_err() {
            let _ = sock.set_recv_buffer_size(1 << 20);
        }
        Ok(Rtnl { sock, seq: 1, buf: vec![0; RECV_BUF] })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn stamp(&mut self, bytes: &mut [u8]) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        bytes[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        self.seq
    }

    /// Waits (bounded) until the socket is readable: the kernel answers
    /// RTNL requests synchronously, so this only guards against surprises.
    fn wait_readable(&self) -> Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut p = [PollFd::new(crate::sys::borrow_fd(self.sock.as_raw_fd()), PollFlags::POLLIN)];
        match poll(&mut p, PollTimeout::from(5000u16)) {
            Ok(0) => Err(Error::Failed("netlink: no answer from the kernel within 5 s".into())),
            Ok(_) => Ok(()),
            Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(Error::errno("poll netlink", e)),
        }
    }

    /// Reads one datagram into `self.buf`; returns its length.
    fn recv_some(&mut self) -> Result<usize> {
        loop {
            match self.sock.recv(&mut self.buf[..], neli::consts::socket::Msg::empty()) {
                Ok((n, _)) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.wait_readable()?,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("netlink recv", e)),
            }
        }
    }

    fn send_all(&self, bytes: &[u8]) -> Result<()> {
        loop {
            match self.sock.send(bytes, neli::consts::socket::Msg::empty()) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("netlink send", e)),
            }
        }
    }

    /// Sends every request (batched, several per sendmsg) and collects one
    /// result per request, in order: `Ok(true)` changed the kernel,
    /// `Ok(false)` was a tolerated errno (already there / already gone).
    /// Transport failures fail the whole call.
    pub fn transact(&mut self, reqs: &mut [Req]) -> Result<Vec<std::result::Result<bool, NlError>>> {
        match self.transact_partial(reqs) {
            (_, Some(e)) => Err(e),
            (r, None) => Ok(r.into_iter().map(|x| x.unwrap_or(Ok(true))).collect()),
        }
    }

    /// As `transact`, but a transport failure keeps what is known: one
    /// result per request, `None` where the kernel may or may not have
    /// acted (the batch in flight when the failure came), `Ok(false)` for
    /// requests never sent (the kernel handles a datagram inside sendmsg:
    /// a failed send was not handled at all).
    ///
    /// Only the last message of a batch asks for an ack: the kernel handles
    /// a batch in order and reports every failure anyway, so once the last
    /// one is answered, every request without an error report succeeded.
    /// This saves one receive per request (10k routes: 10k recvmsg calls).
    pub fn transact_partial(
        &mut self,
        reqs: &mut [Req],
    ) -> (Vec<Option<std::result::Result<bool, NlError>>>, Option<Error>) {
        let mut results = Vec::with_capacity(reqs.len());
        for chunk in reqs.chunks_mut(BATCH) {
            if let Err(e) = self.batch(chunk, &mut results) {
                results.resize(reqs.len(), Some(Ok(false)));
                return (results, Some(e));
            }
        }
        (results, None)
    }

    /// One sendmsg of up to BATCH requests; appends their results to `out`
    /// (nothing if the send failed; the unknown ones as None if a receive did).
    fn batch(&mut self, chunk: &mut [Req], out: &mut Vec<Option<std::result::Result<bool, NlError>>>) -> Result<()> {
        let first = self.seq.wrapping_add(1).max(1);
        let last = chunk.len() - 1;
        let mut seqs = Vec::with_capacity(chunk.len());
        let mut bytes = Vec::new();
        for (i, r) in chunk.iter_mut().enumerate() {
            seqs.push(self.stamp(&mut r.bytes));
            set_ack(&mut r.bytes, i == last);
            bytes.extend_from_slice(&r.bytes);
        }
        self.send_all(&bytes)?;
        let mut got: Vec<Option<std::result::Result<bool, NlError>>> = vec![None; chunk.len()];
        while got[last].is_none() {
            let n = match self.recv_some() {
                Ok(n) => n,
                Err(e) => {
                    out.extend(got);
                    return Err(e);
                }
            };
            for (seq, res) in parse_acks(&self.buf[..n]) {
                let idx = seq.wrapping_sub(first) as usize;
                if idx >= got.len() || seqs[idx] != seq || got[idx].is_some() {
                    continue;
                }
                got[idx] = Some(match res {
                    Err(e) if chunk[idx].ok_errnos.contains(&e.errno) => {
                        log::debug!("{}: {} (fine)", chunk[idx].what, std::io::Error::from_raw_os_error(e.errno));
                        Ok(false)
                    }
                    Ok(()) => Ok(true),
                    Err(e) => Err(e),
                });
            }
        }
        out.extend(got.into_iter().map(|r| Some(r.unwrap_or(Ok(true)))));
        Ok(())
    }

    /// One request that must succeed; true if it changed the kernel.
    pub fn request(&mut self, mut req: Req) -> Result<bool> {
        let what = req.what.to_string();
        match self.transact(std::slice::from_mut(&mut req))?.pop() {
            Some(Ok(changed)) => Ok(changed),
            Some(Err(e)) => Err(e.into_error(what)),
            None => Err(Error::Failed("netlink: no result".into())),
        }
    }

    /// Runs a dump request; returns every reply message's payload bytes
    /// (after the nlmsghdr) with its type.
    pub fn dump(&mut self, mut bytes: Vec<u8>) -> Result<Vec<(u16, Vec<u8>)>> {
        let seq = self.stamp(&mut bytes);
        self.send_all(&bytes)?;
        let mut out = Vec::new();
        loop {
            let n = self.recv_some()?;
            let mut off = 0;
            while off + 16 <= n {
                let b = &self.buf[off..n];
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                if len < 16 || len > b.len() {
                    return Err(Error::Failed("netlink: malformed dump reply".into()));
                }
                let ty = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if mseq == seq {
                    if ty == libc::NLMSG_DONE as u16 {
                        return Ok(out);
                    }
                    if ty == libc::NLMSG_ERROR as u16 {
                        if let Some((_, Err(e))) = parse_acks(&b[..len]).pop() {
                            return Err(e.into_error("netlink dump"));
                        }
                        return Ok(out);
                    }
                    if out.len() >= 1_000_000 {
                        return Err(Error::Failed("netlink: dump too large".into()));
                    }
                    out.push((ty, b[16..len].to_vec()));
                }
                off += (len + 3) & !3;
            }
        }
    }
}

/// A socket on the RTNL multicast groups for links and IPv4/IPv6 routes and rules:
/// what other programs (and the kernel itself) change in the network.
/// Non-blocking; the daemon's poll loop reads it.
pub struct Monitor {
    sock: NlSocket,
    buf: Vec<u8>,
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

impl Monitor {
    pub fn open() -> Result<Self> {
        let groups = Groups::new_groups(&[
            libc::RTNLGRP_LINK,
            libc::RTNLGRP_IPV4_ROUTE,
            libc::RTNLGRP_IPV6_ROUTE,
            libc::RTNLGRP_IPV4_RULE,
            libc::RTNLGRP_IPV6_RULE,
        ]);
        let sock =
            NlSocket::connect(NlFamily::Route, None, groups).map_err(|e| Error::io("netlink monitor socket", e))?;
        sock.nonblock().map_err(|e| Error::io("netlink nonblock", e))?;
        // Room for a burst (a link going down takes its routes with it);
        // an overrun is noticed (ENOBUFS) and answered by a full re-check.
        if crate::sys::setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 1 << 20).is_err() {
            let _ = sock.set_recv_buffer_size(1 << 20);
        }
        Ok(Monitor { sock, buf: vec![0; RECV_BUF] })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads every queued notification without waiting. The flag is true
    /// if the kernel dropped some (the socket's buffer overran).
    pub fn drain(&mut self) -> (Vec<KernelNotice>, bool) {
        let (mut out, mut overrun) = (Vec::new(), false);
        loop {
            match self.sock.recv(&mut self.buf[..], neli::consts::socket::Msg::DONTWAIT) {
                Ok((0, _)) => break,
                Ok((n, _)) => out.extend(notices(&self.buf[..n.min(self.buf.len())])),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overrun = true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        log::warn!("netlink monitor: {e}");
                    }
                    break;
                }
            }
        }
        (out, overrun)
    }
}

/// Decodes a datagram of RTNL notifications. Messages of other types and
/// malformed ones are skipped; never panics.
pub fn notices(b: &[u8]) -> Vec<KernelNotice> {
    let mut out = Vec::new();
    for (ty, _, _, m) in messages(b) {
        let payload = &m[16..];
        let n = match ty {
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
        };
        out.extend(n);
    }
    out
}

/// The netlink messages in a datagram: (type, flags, seq, whole message).
/// Stops at the first header that does not fit.
fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(b.get(..4)?.try_into().ok()?) as usize;
        if len < 16 || len > b.len() {
            return None;
        }
        let m = &b[..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        let ty = u16::from_ne_bytes([m[4], m[5]]);
        Some((ty, u16::from_ne_bytes([m[6], m[7]]), u32::from_ne_bytes([m[8], m[9], m[10], m[11]]), m))
    })
}

/// Sets or clears NLM_F_ACK on an encoded request (`transact` asks only
/// the last request of a batch for an ack).
pub fn set_ack(bytes: &mut [u8], ack: bool) {
    let mut flags = u16::from_ne_bytes([bytes[6], bytes[7]]) & !(libc::NLM_F_ACK as u16);
    if ack {
        flags |= libc::NLM_F_ACK as u16;
    }
    bytes[6..8].copy_from_slice(&flags.to_ne_bytes());
}

/// Extracts (seq, result) from every NLMSG_ERROR message in a datagram.
/// Never panics on malformed input; bad messages are skipped.
pub fn parse_acks(b: &[u8]) -> Vec<(u32, std::result::Result<(), NlError>)> {
    let mut out = Vec::new();
    for (ty, flags, seq, m) in messages(b) {
        if ty == u16::from(Nlmsg::Error) && m.len() >= 20 {
            let err = i32::from_ne_bytes([m[16], m[17], m[18], m[19]]);
            if err == 0 {
                out.push((seq, Ok(())));
            } else {
                // struct nlmsgerr = error + the request's header (whole request
                // unless NLM_F_CAPPED); extack TLVs follow when NLM_F_ACK_TLVS.
                let mut msg = None;
                if flags & libc::NLM_F_ACK_TLVS as u16 != 0 && m.len() >= 36 {
                    let orig = if flags & libc::NLM_F_CAPPED as u16 != 0 {
                        16
                    } else {
                        // Saturating: a 32-bit usize holds no u32 length + 3.
                        (u32::from_ne_bytes([m[20], m[21], m[22], m[23]]) as usize).saturating_add(3) & !3
                    };
                    if let Some(tlvs) = m.get(orig.saturating_add(20)..) {
                        // The same printable, bounded text as the DCO decoder's.
                        msg = attrs(tlvs)
                            .find(|(t, _)| *t == NLMSGERR_ATTR_MSG)
                            .map(|(_, p)| crate::dco::attr::sanitize_text(p, crate::dco::attr::EXTACK_MSG_MAX))
                            .filter(|s| !s.is_empty());
                    }
                }
                out.push((seq, Err(NlError { errno: err.checked_neg().unwrap_or(libc::EIO), msg })));
            }
        }
    }
    out
}

/// Iterates rtattrs in `b` (type without flag bits, payload). Bounds-checked.
pub fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        let step = ((len + 3) & !3).min(b.len());
        b = &b[step..];
        Some((ty, payload))
    })
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
    fn ack_parser_reads_errno_and_extack() {
        // NLMSG_ERROR, seq 7, error -17, capped original header, extack "route exists".
        let r = parse_acks(&capped_error_with_extack(b"route exists\0"));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, 7);
        assert_eq!(r[0].1, Err(NlError { errno: 17, msg: Some("route exists".into()) }));
        // Control characters are replaced and the text is bounded, as in the DCO decoder.
        let long = [b"a\nb\x1b".as_slice(), &[b'x'; 400]].concat();
        let r = parse_acks(&capped_error_with_extack(&long));
        let msg = r[0].1.clone().unwrap_err().msg.unwrap();
        assert!(msg.starts_with("a?b?x") && msg.len() == crate::dco::attr::EXTACK_MSG_MAX, "{msg:?}");
    }

    fn capped_error_with_extack(text: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        let attr_len = 4 + text.len();
        let total = 16 + 4 + 16 + ((attr_len + 3) & !3);
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&((libc::NLM_F_CAPPED | libc::NLM_F_ACK_TLVS) as u16).to_ne_bytes());
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-17i32).to_ne_bytes());
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

    #[test]
    fn ack_parser_survives_garbage() {
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = parse_acks(&junk);
            let _ = attrs(&junk).count();
        }
    }
}
