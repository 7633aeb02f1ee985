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
use std::os::fd::OwnedFd;

use ipnetwork::IpNetwork;
use nix::sys::socket::{setsockopt, sockopt};

use crate::apply;
use crate::bus::Creds;
use crate::config::RedirectMethod;
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::netlink::route::{best_route, Route, RT_TABLE_MAIN};
use crate::netlink::rule::Rule;
use crate::netlink::RTPROT_OVPN_NETCFGD;
use crate::plan::Change;

/// Priority of the fwmark rules: after the usual admin rules, before main (32766).
pub const FWMARK_RULE_PRIORITY: u32 = 32700;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Device(String),
    Client { bus: String, pid: u32 },
}

pub struct Protection {
    pub owner: Owner,
    pub remote: IpAddr,
    pub journal: Journal,
}

/// The table the fwmark method uses for mark `m` (as wg-quick: the mark).
pub fn fwmark_table(m: u32) -> Option<u32> {
    (!matches!(m, 0 | 253..=255)).then_some(m)
}

impl Daemon {
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
        let need_fd = |what: &str| {
            fd.ok_or_else(|| Error::arg("fd", format!("{what} needs the socket's fd, and none was passed")))
        };
        if let Some(mark) = self.cfg.somark {
            setsockopt(need_fd("SO_MARK")?, sockopt::Mark, &mark).map_err(|e| Error::errno("setting SO_MARK", e))?;
        }
        if method == RedirectMethod::None {
            return Ok(true);
        }
        let owner = if device == "/" {
            Owner::Client { bus: sender.to_string(), pid: c.pid }
        } else {
            Owner::Device(device.to_string())
        };
        let ours = self.our_links();
        let path = match apply::route_to(&mut self.kernel.rtnl, remote, self.cfg.somark, c.uid) {
            Some(k) if k.rtype == libc::RTN_LOCAL => {
                log::info!("{remote} is an address of this host: nothing to protect");
                return Ok(true);
            }
            Some(k) if k.rtype == libc::RTN_UNICAST && k.route.oif != 0 && !ours.contains(&k.route.oif) => {
                Some((k.route.gateway, k.route.oif))
            }
            // The kernel would use one of our tunnels (the client protects
            // after its routes are in) or has no route: the host's main
            // table without our devices says how it went before.
            _ => best_route(&apply::host_routes(&mut self.kernel.rtnl)?, remote, &ours),
        };
        let Some((gw, oif)) = path else {
            log::warn!("no route to {remote} outside the tunnel; the socket is left as it is");
            return Ok(method != RedirectMethod::BindDevice);
        };
        if method == RedirectMethod::BindDevice {
            let name =
                crate::netlink::link::name_of(oif).ok_or_else(|| Error::Failed(format!("device #{oif} vanished")))?;
            setsockopt(need_fd("bind-device")?, sockopt::BindToDevice, &std::ffi::OsString::from(&name))
                .map_err(|e| Error::errno(format!("SO_BINDTODEVICE {name}"), e))?;
            log::info!("socket to {remote} bound to {name}");
            return Ok(true);
        }
        if self.protections.iter().any(|p| p.owner == owner && p.remote == remote) {
            return Ok(true);
        }
        let table = match method {
            RedirectMethod::Fwmark => {
                let mark = self.cfg.somark.ok_or_else(|| Error::State("fwmark needs --set-somark".into()))?;
                self.ensure_fwmark_rules(mark)?;
                fwmark_table(mark).ok_or_else(|| Error::State(format!("mark {mark} cannot name a routing table")))?
            }
            _ => RT_TABLE_MAIN,
        };
        let host = if remote.is_ipv4() { 32 } else { 128 };
        let r = Route {
            dst: IpNetwork::new(remote, host).expect("full-length prefix"),
            gateway: gw,
            oif,
            metric: None,
            table,
            protocol: RTPROT_OVPN_NETCFGD,
            onlink: false,
        };
        let mut journal = Journal::default();
        apply::apply(&mut self.kernel, &[Change::Route(r.clone())], &mut journal)?;
        log::info!("protected {remote}: route {r}");
        self.protections.push(Protection { owner, remote, journal });
        Ok(true)
    }

    fn ensure_fwmark_rules(&mut self, mark: u32) -> Result<()> {
        if !self.fw_rules.is_empty() {
            return Ok(());
        }
        let table =
            fwmark_table(mark).ok_or_else(|| Error::State(format!("mark {mark} cannot name a routing table")))?;
        let rules: Vec<Change> = [false, true]
            .into_iter()
            .map(|ipv6| {
                Change::Rule(Rule {
                    ipv6,
                    priority: FWMARK_RULE_PRIORITY,
                    fwmark: mark,
                    table,
                    protocol: RTPROT_OVPN_NETCFGD,
                })
            })
            .collect();
        let mut j = Journal::default();
        apply::apply(&mut self.kernel, &rules, &mut j)?;
        self.fw_rules = j;
        Ok(())
    }

    /// Removes the protections `pred` selects; the fwmark rules go with the
    /// last protection.
    pub(crate) fn drop_protections(&mut self, pred: impl Fn(&Owner) -> bool) {
        let (gone, keep): (Vec<Protection>, Vec<Protection>) =
            std::mem::take(&mut self.protections).into_iter().partition(|p| pred(&p.owner));
        self.protections = keep;
        for mut p in gone {
            // Another owner protecting the same server found our route there
            // (EEXIST, so it recorded nothing): the route is now its to undo.
            if !p.journal.is_empty() {
                if let Some(heir) = self.protections.iter_mut().find(|q| q.remote == p.remote && q.journal.is_empty()) {
                    log::info!("protection of {} handed on to {:?}", p.remote, heir.owner);
                    heir.journal = std::mem::take(&mut p.journal);
                    continue;
                }
            }
            for f in apply::undo(&mut self.kernel, p.journal.take_all()) {
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

    /// Drops what ProtectSocket made for `pid` (Cleanup).
    pub(crate) fn cleanup_pid(&mut self, pid: u32) {
        self.drop_protections(|o| matches!(o, Owner::Client { pid: p, .. } if *p == pid));
    }
}
