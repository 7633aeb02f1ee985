//! Data channel offload on the bus: DcoAvailable, EnableDCO, the
//! `<device path>/dco` object (NewPeer, NewKey, SwapKeys, SetPeer,
//! GetPeer, GetPipeFD), the kernel's notifications and the cleanup of peers.
//!
//! Unlike the reference, every kernel command waits for its ack, so a
//! refusal comes back as the D-Bus error of the call (errno + extack). It
//! is also written to the client's pipe as an error record, where the
//! reference reports it. Commands for a peer the device does not hold are
//! refused before the kernel sees them, the same two ways.

use std::os::fd::AsRawFd;

use dbus::Message;

use crate::bus::manager::{bad, unhandled};
use crate::dco::{self, pipe, DbusNewPeer, DcoError, Family, Mode, PeerId, PeerNew, Request};
use crate::dco_session::{self, DcoDev, DcoKernel, Pipe};
use crate::error::{Error, Result};
use crate::journal::Undo;
use crate::sessions::Sessions;

/// A decoder or kernel-rule error, named after the argument it concerns.
fn arg_err(e: DcoError) -> Error {
    let arg = match &e {
        DcoError::PeerIdRange(_) => "peer_id",
        DcoError::Sockaddr(_) | DcoError::RemotePortZero => "sa",
        DcoError::BadAddress("vpn6") => "vpn6",
        DcoError::BadAddress(_) | DcoError::VpnIpRequired | DcoError::VpnIpInP2p => "vpn4",
        DcoError::KeySlot(_) => "key_slot",
        DcoError::BadSocket(_) => "(fd)",
        _ => "key_config",
    };
    Error::arg(arg, e.to_string())
}

/// EnableDCO: creates the netdev (P2P) and the `/dco` object.
pub(crate) fn enable_dco(s: &mut Sessions, m: &Message, path: &str, name: &str) -> Result<Message> {
    let d = s.devices.get(path).ok_or_else(|| Error::not_found(format!("no device at {path}")))?;
    if let Some(x) = &d.dco {
        return Err(Error::state(format!("DCO is already enabled on {path} (device {})", x.name)));
    }
    if d.active || !d.journal.is_empty() {
        return Err(Error::state("EnableDCO must come before Establish"));
    }
    let family = s.dco_kernel().map(|k| k.genl.family).ok_or_else(|| {
        Error::not_supported("data channel offload is not available: no ovpn or ovpn-dco-v2 kernel module")
    })?;
    let pipe = Pipe::new()?;
    // Written ahead: a crash before the ifindex is known leaks nothing.
    let intent =
        s.kernel.wal.record(vec![Undo::DelNewLink { name: name.into(), kind: family.layout().link_kind.into() }])?;
    let created = s.kernel.rtnl.request(dco_session::newlink_request(family, name, Mode::P2p));
    // Someone else's link of that name: never ours to delete.
    let theirs = created.as_ref().is_err_and(|e| e.kernel_errno() == libc::EEXIST);
    let made = created.and_then(|_| {
        let ifindex =
            crate::netlink::link::index_of(name).ok_or_else(|| Error::failed(format!("new device {name} vanished")))?;
        s.kernel.rtnl.request(crate::netlink::link::mark(ifindex))?;
        let d = s.devices.get_mut(path).ok_or_else(|| Error::not_found(format!("no device at {path}")))?;
        // Destroy, client death, shutdown and a restarted daemon delete it.
        crate::apply::record(&mut s.kernel, &mut d.journal, Undo::DelLink { ifindex, name: name.to_string() })?;
        Ok(ifindex)
    });
    if made.is_err() && !theirs {
        // Whether the kernel made it is unknown: delete it if it is there.
        crate::apply::undo(&mut s.kernel, intent);
    } else {
        s.kernel.wal.done(intent.iter().map(|e| e.id));
    }
    let ifindex = made?;
    let d = s.devices.get_mut(path).ok_or_else(|| Error::not_found(format!("no device at {path}")))?;
    d.dco = Some(DcoDev { ifindex, name: name.to_string(), mode: Mode::P2p, peers: Default::default(), pipe });
    d.name = name.to_string();
    d.modified = true;
    log::info!("{path}: DCO enabled, {} device {name} (ifindex {ifindex}, {family})", family.layout().link_kind);
    Ok(m.method_return().append1(dbus::Path::from(format!("{path}/dco"))))
}

/// Sends one command for the device at `path`. A command for a peer
/// the device does not hold is refused here, before the kernel sees
/// it. Either refusal is the call's error and is also written to the
/// pipe, where the reference reports the kernel's (§7.5).
fn dco_send(s: &mut Sessions, path: &str, req: &Request<'_>, what: &str) -> Result<()> {
    dco_kernel_call(s, path, req, |k, ifindex| k.request(ifindex, req, &format!("{what} on ifindex {ifindex}")))
}

/// Runs `f` (one kernel command for `req`) unless `req` names a peer
/// the device does not hold; a refusal or failure also goes to the pipe.
fn dco_kernel_call<T>(
    s: &mut Sessions,
    path: &str,
    req: &Request<'_>,
    f: impl FnOnce(&mut DcoKernel, u32) -> Result<T>,
) -> Result<T> {
    let x = s.devices.get(path).and_then(|d| d.dco.as_ref());
    let ifindex = x.map(|x| x.ifindex).unwrap_or(0);
    // A peer that was never added, was replaced by a later NewPeer, or was
    // reported gone by the kernel. NewKey names its peer inside the key
    // configuration.
    let arg = if matches!(req, Request::KeyNew(_)) { "key_config" } else { "peer_id" };
    let unknown = match (req.existing_peer(), x) {
        (Some(p), Some(x)) if !x.peers.contains_key(&p.get()) => {
            Some(Error::arg(arg, format!("no peer {} on {}: add it with NewPeer first", p.get(), x.name)))
        }
        _ => None,
    };
    let k = s.dco.as_mut().ok_or_else(|| Error::not_supported("DCO is not available"))?;
    let r = unknown.map_or_else(|| f(k, ifindex), Err);
    if let Err(e) = &r {
        log::warn!("{path}: DCO {e}");
        if let Some(x) = s.devices.get_mut(path).and_then(|d| d.dco.as_mut()) {
            x.pipe.push(pipe::error(&e.to_string()));
        }
    }
    r
}

/// A method of the `/dco` object, its signature checked (`super::dispatch`).
pub(crate) fn dco_call(s: &mut Sessions, m: &Message, path: &str, member: &str) -> Result<Message> {
    let (family, mode) = dco_access(s, m, path)?;
    match member {
        "NewPeer" => dco_new_peer(s, m, path, family, mode)?,
        "NewKey" => {
            let (slot, cfg): (u32, &str) = m.read2().map_err(bad("key_config"))?;
            let k = dco::keyconfig::from_dbus(slot, cfg).map_err(arg_err)?;
            let what = format!("NEW_KEY peer {} slot {slot} key id {} ({})", k.peer().get(), k.key_id().get(), k.alg());
            // `k` and the encoded request are wiped when they are dropped.
            dco_send(s, path, &Request::KeyNew(&k), &what)?;
            log::info!("{path}: DCO {what} installed");
        }
        "SwapKeys" => {
            let id: u32 = m.read1().map_err(bad("peer_id"))?;
            let peer = PeerId::new(id).map_err(arg_err)?;
            dco_send(s, path, &Request::KeySwap(peer), &format!("SWAP_KEYS peer {id}"))?;
            log::info!("{path}: DCO keys of peer {id} swapped");
        }
        "SetPeer" => {
            let (id, interval, timeout): (u32, u32, u32) = m.read3().map_err(bad("peer_id"))?;
            let peer = PeerId::new(id).map_err(arg_err)?;
            dco_send(s, path, &Request::PeerSet { peer, interval, timeout }, &format!("SET_PEER {id}"))?;
            log::info!("{path}: DCO peer {id} keepalive {interval} s / {timeout} s");
        }
        "GetPeer" => {
            // The answer goes to the pipe (as the packaged netcfg
            // does it); the client reads the counters from there.
            let id: u32 = m.read1().map_err(bad("peer_id"))?;
            let peer = PeerId::new(id).map_err(arg_err)?;
            // A peer the kernel no longer has is refused like an unknown one.
            let info = dco_kernel_call(s, path, &Request::PeerGet(peer), |k, ifindex| {
                let none = || Error::arg("peer_id", format!("the kernel has no peer {id} on ifindex {ifindex}"));
                k.get_peer(ifindex, peer)?.ok_or_else(none)
            })?;
            let x = s.devices.get_mut(path).and_then(|d| d.dco.as_mut()).expect("checked above");
            x.pipe.push(pipe::peer_info(family, &info).to_vec());
            log::debug!("{path}: DCO peer {id} read for the client");
        }
        "GetPipeFD" => {
            let x = s.devices.get_mut(path).and_then(|d| d.dco.as_mut()).expect("checked above");
            let fd = x.pipe.take_client()?;
            return Ok(m.method_return().append1(fd));
        }
        _ => return Err(unhandled(member)),
    }
    Ok(m.method_return())
}

/// The same owner/ACL rule as the device itself; then the device's DCO
/// object and the kernel's family must exist.
fn dco_access(s: &mut Sessions, m: &Message, path: &str) -> Result<(Family, Mode)> {
    let (_, c) = s.caller(m)?;
    let d = s.devices.get(path).ok_or_else(|| Error::not_found(format!("no device at {path}")))?;
    if !d.may(c.uid) {
        return Err(Error::access_denied(format!("uid {} may not use {path}/dco", c.uid)));
    }
    let x = d.dco.as_ref().ok_or_else(|| Error::not_found(format!("no DCO object at {path}/dco")))?;
    let family = s.dco.as_ref().map(|k| k.genl.family).ok_or_else(|| Error::not_supported("DCO is not available"))?;
    Ok((family, x.mode))
}

/// NewPeer: the peer goes to the kernel, then the device keeps its
/// transport socket.
fn dco_new_peer(s: &mut Sessions, m: &Message, path: &str, family: Family, mode: Mode) -> Result<()> {
    let mut it = m.iter_init();
    let peer_id: u32 = it.read().map_err(bad("peer_id"))?;
    let sa: &str = it.read().map_err(bad("sa"))?;
    let salen: u32 = it.read().map_err(bad("salen"))?;
    let vpn4: &str = it.read().map_err(bad("vpn4"))?;
    let vpn6: &str = it.read().map_err(bad("vpn6"))?;
    // Extra fds are closed with the rest of the list.
    let fd = crate::sys::message_fds(m).into_iter().next();
    let fd = fd.ok_or_else(|| Error::arg("(fd)", "NewPeer needs the transport socket attached as a unix fd"))?;
    let tcp = dco_session::is_tcp(&fd).map_err(|why| Error::arg("(fd)", why))?;
    let args = DbusNewPeer { peer_id, sa, salen, vpn4, vpn6, fd: fd.as_raw_fd(), tcp };
    let p = PeerNew::from_dbus(family, mode, &args).map_err(arg_err)?;
    dco_send(s, path, &Request::PeerNew(&p), &format!("NEW_PEER {peer_id}"))?;
    let x = s.devices.get_mut(path).and_then(|d| d.dco.as_mut()).expect("checked above");
    if x.mode == Mode::P2p {
        // The kernel replaced any earlier peer of a P2P device.
        x.peers.clear();
    }
    x.peers.insert(peer_id, fd);
    let remote = match p.transport() {
        dco::Transport::Udp(r) => r.to_string(),
        dco::Transport::Tcp => "connected".into(),
    };
    log::info!("{path}: DCO peer {peer_id} added on {} ({}, remote {remote})", x.name, if tcp { "TCP" } else { "UDP" });
    Ok(())
}
