//! ProtectSocket: keeping the VPN's own transport socket out of the tunnel,
//! by one of `--redirect-method`:
//! - `host-route`: a host route to the server via the route the kernel
//!   picks for the socket, or the main table's best route outside our
//!   devices when that is one of them (on-link if the server is on-link);
//! - `bind-device`: SO_BINDTODEVICE to that route's device;
//! - `fwmark`: with `--set-somark M`, rules send packets marked M to table M,
//!   which holds the server's route as the host had it; unmarked traffic to
//!   the server still goes through the tunnel;
//! - `none`.
//!
//! `--set-somark` marks the socket in every mode. What this creates belongs
//! to the device named in the call, or to the calling client for `/`, and
//! goes away with it.

use std::net::IpAddr;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, OwnedFd};

use ipnetwork::IpNetwork;
use nix::sys::socket::{setsockopt, sockopt};

use super::Sessions;
use crate::apply;
use crate::config::{fwmark_table, RedirectMethod};
use crate::conn::Creds;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::limits::PROTECTIONS_PER_UID;
use crate::netlink::route::{best_route, KernelRoute, Route, RT_TABLE_MAIN};
use crate::netlink::rule::Rule;
use crate::netlink::RTPROT_OVPN_NETCFGD;
use crate::plan::Change;
use crate::settings::Word;
use crate::shared::{Holder, Owner};

/// Priority of the fwmark rules: after the usual admin rules, before main (32766).
pub const FWMARK_RULE_PRIORITY: u32 = 32700;

/// A protection in force: its route is held in the shared routes under
/// `holder()`.
pub struct Protection {
    pub owner: Owner,
    pub remote: IpAddr,
    /// The caller's UID (protections are bounded per UID).
    pub uid: u32,
}

impl Protection {
    pub(crate) fn holder(&self) -> Holder {
        Holder::Protection(self.owner.clone(), self.remote)
    }
}

/// A connected socket must be connected to `remote`: a protection is for
/// the VPN's own transport, not for whatever a caller wants to route
/// around a tunnel. An unconnected socket (UDP before its first send) or
/// an fd that is not a socket has no peer to compare.
fn check_peer(fd: &OwnedFd, remote: IpAddr) -> Result<()> {
    use nix::sys::socket::{getpeername, SockaddrLike, SockaddrStorage};
    let sa = match getpeername::<SockaddrStorage>(fd.as_raw_fd()) {
        Ok(sa) => sa,
        Err(nix::errno::Errno::ENOTCONN | nix::errno::Errno::ENOTSOCK) => return Ok(()),
        Err(e) => return Err(Error::errno("getpeername on the socket", e)),
    };
    let family = sa.family();
    let peer = match (sa.as_sockaddr_in(), sa.as_sockaddr_in6()) {
        (Some(a), _) => IpAddr::V4(a.ip()),
        (_, Some(a)) => IpAddr::V6(a.ip()).to_canonical(),
        _ => return Err(Error::arg("fd", format!("the socket is connected, but not over IP (family {family:?})"))),
    };
    if peer != remote.to_canonical() {
        return Err(Error::arg("remote", format!("the socket is connected to {peer}, not to {remote}")));
    }
    Ok(())
}

/// The socket's fd, for a step (`what`) that acts on the socket itself.
fn need_fd<'a>(fd: Option<&'a OwnedFd>, what: &str) -> Result<&'a OwnedFd> {
    fd.ok_or_else(|| Error::arg("fd", format!("{what} needs the socket's fd, and none was passed")))
}

/// bind-device: SO_BINDTODEVICE to the uplink `oif`.
fn bind_to_device(fd: Option<&OwnedFd>, oif: u32, remote: IpAddr) -> Result<bool> {
    let name = crate::netlink::link::name_of(oif).ok_or_else(|| Error::failed(format!("device #{oif} vanished")))?;
    setsockopt(need_fd(fd, "bind-device")?, sockopt::BindToDevice, &std::ffi::OsString::from(&name))
        .map_err(|e| Error::errno(format!("SO_BINDTODEVICE {name}"), e))?;
    log::info!("socket to {remote} bound to {name}");
    Ok(true)
}

/// The host's path to a server outside the caller's tunnels.
struct Uplink {
    gateway: Option<IpAddr>,
    oif: u32,
    /// The host's routes, read before anything is changed.
    before: Vec<KernelRoute>,
}

impl Sessions {
    /// Protects `fd` (the client's transport socket to `remote`).
    /// The fd is only borrowed: the caller closes it after the reply.
    pub(crate) fn protect_socket(
        &mut self,
        remote: IpAddr,
        fd: Option<&OwnedFd>,
        device: &str,
        c: Creds,
        sender: &str,
    ) -> Result<bool> {
        let method = self.cfg.redirect;
        log::info!(
            "socket protect for {} to {remote} (device {device}, pid {}, method {})",
            if fd.is_some() { "a socket" } else { "no socket" },
            c.pid,
            method.as_str()
        );
        if let Some(fd) = fd {
            check_peer(fd, remote)?;
        }
        if let Some(mark) = self.cfg.somark {
            setsockopt(need_fd(fd, "SO_MARK")?, sockopt::Mark, &mark)
                .map_err(|e| Error::errno("setting SO_MARK", e))?;
        }
        if method == RedirectMethod::None {
            return Ok(true);
        }
        let owner = match device {
            "/" => Owner::Client { bus: sender.to_string(), pid: c.pid },
            _ => Owner::Device(device.to_string()),
        };
        let up = match self.uplink(remote, device, sender, c.uid)? {
            ControlFlow::Continue(up) => up,
            ControlFlow::Break(answer) => return Ok(answer),
        };
        if method == RedirectMethod::BindDevice {
            return bind_to_device(fd, up.oif, remote);
        }
        self.hold_host_route(Protection { owner, remote, uid: c.uid }, up)
    }

    /// The path to `remote` outside the caller's tunnels, or (Break) the
    /// call's answer when there is none to take.
    fn uplink(&mut self, remote: IpAddr, device: &str, sender: &str, uid: u32) -> Result<ControlFlow<bool, Uplink>> {
        let method = self.cfg.redirect;
        // Only the caller's own tunnels are looked past: what another
        // session routes into its tunnel stays there.
        let own = self.links_where(|d| d.owner_bus == sender || d.path == device);
        let tunnels = self.links_where(|_| true);
        let before = apply::host_routes(&mut self.kernel.rtnl)?;
        let (path, kernels) = match apply::route_to(&mut self.kernel.rtnl, remote, self.cfg.somark, uid) {
            Some(k) if k.rtype == libc::RTN_LOCAL => {
                log::info!("{remote} is an address of this host: nothing to protect");
                return Ok(ControlFlow::Break(true));
            }
            Some(k) if super::watch::outside(&k, &own) => (Some((k.route.gateway, k.route.oif)), true),
            // The kernel would use one of the caller's tunnels (the client
            // protects after its routes are in) or has no route: the main
            // table without them says how it went before.
            _ => (best_route(&before, remote, &own), false),
        };
        let Some((gateway, oif)) = path else {
            log::warn!("no route to {remote} outside the tunnel; the socket is left as it is");
            return Ok(ControlFlow::Break(method != RedirectMethod::BindDevice));
        };
        if tunnels.contains(&oif) {
            // Another session's tunnel: never routed around. The socket
            // goes through it, as the host routes it; if only the caller's
            // own tunnel stood in front of it, the call reports "not protected".
            log::info!("{remote} is routed through another VPN session's device #{oif}; not routing around it");
            return Ok(ControlFlow::Break(kernels));
        }
        Ok(ControlFlow::Continue(Uplink { gateway, oif, before }))
    }

    /// host-route and fwmark: the host route to `p.remote` over `up`, held
    /// for `p` in the shared routes (with the fwmark rules if needed).
    fn hold_host_route(&mut self, p: Protection, up: Uplink) -> Result<bool> {
        let method = self.cfg.redirect;
        let remote = p.remote;
        if self.protections.iter().any(|q| q.owner == p.owner && q.remote == remote) {
            return Ok(true);
        }
        if self.protections.iter().filter(|q| q.uid == p.uid).count() >= PROTECTIONS_PER_UID {
            return Err(Error::failed(format!(
                "uid {} already holds {PROTECTIONS_PER_UID} socket protections, the limit per user \
                 (they go with their device, or with Cleanup)",
                p.uid
            )));
        }
        let table = match method {
            RedirectMethod::Fwmark => {
                let mark = self.cfg.somark.ok_or_else(|| Error::state("fwmark needs --set-somark"))?;
                fwmark_table(mark).ok_or_else(|| Error::state(format!("mark {mark} cannot name a routing table")))?
            }
            _ => RT_TABLE_MAIN,
        };
        let r = Route {
            dst: IpNetwork::from(remote), // a host route
            gateway: up.gateway,
            oif: up.oif,
            metric: None,
            table,
            protocol: RTPROT_OVPN_NETCFGD,
            onlink: false,
        };
        let holder = p.holder();
        if method == RedirectMethod::Fwmark {
            self.ensure_fwmark_rules(table, &holder)?;
        }
        let mut unused = Journal::default();
        let res = apply::apply(&mut self.kernel, vec![Change::SharedRoute(r.clone())], &mut unused, &holder, up.before);
        debug_assert!(unused.is_empty(), "a shared route is held in the shared routes");
        if let Err(e) = res {
            self.drop_protections(|_| false); // the fwmark rules, if nothing else needs them
            return Err(e);
        }
        log::info!("protected {remote}: route {r}");
        self.protections.push(p);
        Ok(true)
    }

    /// The rules `fwmark M lookup M` (`table` is M), made by the first
    /// protection that needs them (`holder`) and kept until the last goes.
    fn ensure_fwmark_rules(&mut self, table: u32, holder: &Holder) -> Result<()> {
        if !self.fw_rules.is_empty() {
            return Ok(());
        }
        // fwmark_table: the table is the mark.
        let rule =
            |ipv6| Rule { ipv6, priority: FWMARK_RULE_PRIORITY, fwmark: table, table, protocol: RTPROT_OVPN_NETCFGD };
        let rules = vec![Change::Rule(rule(false)), Change::Rule(rule(true))];
        let mut j = Journal::default();
        apply::apply(&mut self.kernel, rules, &mut j, holder, Vec::new())?;
        self.fw_rules = j;
        Ok(())
    }

    /// Removes the protections `pred` selects; the fwmark rules go with the
    /// last protection.
    pub(crate) fn drop_protections(&mut self, pred: impl Fn(&Owner) -> bool) {
        let (gone, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.protections).into_iter().partition(|p| pred(&p.owner));
        self.protections = keep;
        for p in gone {
            // A route another protection (or an exclude route) also needs stays.
            for f in apply::release(&mut self.kernel, &p.holder()) {
                log::warn!("removing the protection of {}: {f}", p.remote);
            }
            log::info!("protection of {} removed", p.remote);
        }
        if self.protections.is_empty() && !self.fw_rules.is_empty() {
            let steps = self.fw_rules.take_all();
            for f in apply::undo(&mut self.kernel, steps) {
                log::warn!("removing fwmark rules: {f}");
            }
        }
    }
}
