//! Listening to the kernel: the RTNL multicast socket (links, routes and
//! policy rules) in the poll loop.
//!
//! - A link of ours that someone else deleted or renamed: the device object
//!   goes, nothing else is touched, and the next call on it says why.
//! - Roaming: when the host's path to a protected server or an excluded
//!   network changes, the protection and exclude routes move to the new
//!   path. Notifications come in bursts (a link going down takes its routes
//!   with it), so the re-check runs once a burst has settled.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Sessions, Source};
use crate::apply;
use crate::error::Error;
use crate::events::{self, Event};
use crate::netlink::route::{best_route, KernelRoute, Route};
use crate::netlink::{KernelNotice, Socket, RTPROT_OVPN_NETCFGD};
use crate::plan::Move;
use crate::shared::{Holder, Owner};

/// Quiet time after the last notification before the routes are re-checked.
const SETTLE: Duration = Duration::from_millis(10);
/// A burst that never settles is re-checked after this long anyway.
const SETTLE_MAX: Duration = Duration::from_millis(50);
/// Devices whose link vanished that are remembered for their clients.
const GONE_KEPT: usize = 64;

/// Which held routes must move, from the kernel's routes now (`table`, all
/// tables). Per route: the kernel's own answer for its destination
/// (`answer`, as ProtectSocket asks it) when that is a path outside our
/// tunnels other than the route itself; otherwise the main table's best
/// route without our routes (protocol 79) and tunnels, as for exclude
/// routes at Establish. A route moves when that path differs from the one
/// it has, or when the kernel dropped it (its link went down) and a path
/// is back. With no path at all it stays as it is, to wait for one.
pub fn moves(held: &[(Route, Option<KernelRoute>)], table: &[KernelRoute], tunnels: &[u32]) -> Vec<Move> {
    let host: Vec<KernelRoute> = table.iter().filter(|k| k.route.protocol != RTPROT_OVPN_NETCFGD).cloned().collect();
    let present = |r: &Route| table.iter().any(|k| k.route.key() == r.key() && same_path(&k.route, r));
    let to_move = |(r, answer): &(Route, Option<KernelRoute>)| {
        let (gateway, oif) = match answer.as_ref().filter(|k| outside(k, tunnels) && !same_path(&k.route, r)) {
            Some(k) => (k.route.gateway, k.route.oif),
            None => best_route(&host, r.dst.network(), tunnels)?,
        };
        let new = Route { gateway, oif, ..r.clone() };
        (!same_path(&new, r) || !present(r)).then(|| Move { old: r.clone(), new })
    };
    held.iter().filter_map(to_move).collect()
}

/// Whether the kernel's answer for a destination is a path of the host's,
/// outside the `tunnels`.
pub(crate) fn outside(k: &KernelRoute, tunnels: &[u32]) -> bool {
    k.rtype == libc::RTN_UNICAST && k.route.oif != 0 && !tunnels.contains(&k.route.oif)
}

fn same_path(a: &Route, b: &Route) -> bool {
    a.gateway == b.gateway && a.oif == b.oif
}

/// A device whose link someone else removed: what its clients are told.
struct Gone {
    path: String,
    why: String,
    owner_bus: String,
    owner_uid: u32,
    acl: Vec<u32>,
}

/// A burst of notifications settling: when its re-check is due.
#[derive(Debug, Default)]
struct Settle {
    /// When the routes are to be re-checked (None: nothing pending).
    due: Option<Instant>,
    /// When the first notification of the pending burst came.
    since: Option<Instant>,
}

impl Settle {
    fn notice(&mut self, now: Instant) {
        let since = *self.since.get_or_insert(now);
        self.due = Some((now + SETTLE).min(since + SETTLE_MAX));
    }

    /// Takes a due re-check: the time of the burst's first notification.
    fn take(&mut self, now: Instant) -> Option<Instant> {
        if self.due? > now {
            return None;
        }
        self.due = None;
        self.since.take()
    }
}

pub struct Watch {
    mon: Socket,
    settle: Settle,
    gone: VecDeque<Gone>,
}

impl Watch {
    pub fn open() -> crate::error::Result<Self> {
        Ok(Watch { mon: Socket::monitor()?, settle: Settle::default(), gone: VecDeque::new() })
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        self.mon.fd()
    }

    /// When the poll loop must wake for the re-check.
    pub fn deadline(&self) -> Option<Instant> {
        self.settle.due
    }

    /// Forgets a removed device whose path a new device object took.
    pub fn forget_path(&mut self, path: &str) {
        self.gone.retain(|g| g.path != path);
    }

    /// Forgets the removed devices of a client that left the bus.
    pub fn forget_owner(&mut self, bus: &str) {
        self.gone.retain(|g| g.owner_bus != bus);
    }
}

impl Sessions {
    /// The loop's turn: reads the notifications if the socket is
    /// `readable`, and runs a re-check that is due.
    pub(crate) fn watch_service(&mut self, readable: bool) {
        if readable {
            self.watch_read();
        }
        self.follow_routes();
    }

    /// The answer to a call on a device object removed with its link, if
    /// the caller may see it (its users learn why; others, nothing): the
    /// DeviceRemoved error, except for Destroy, whose work is done (a client
    /// that closes its tun fd before Destroy made the kernel delete the link).
    pub(crate) fn gone_reply(&mut self, m: &dbus::Message, path: &str) -> Option<dbus::Message> {
        let i = self.watch.gone.iter().position(|g| g.path == path)?;
        let uid = self.caller(m).ok()?.1.uid;
        let g = &self.watch.gone[i];
        if uid != 0 && uid != g.owner_uid && !g.acl.contains(&uid) {
            return None;
        }
        if m.member().as_deref() == Some("Destroy") {
            self.watch.forget_path(path);
            return Some(m.method_return());
        }
        Some(crate::conn::error_reply(m, &Error::device_gone(g.why.clone())))
    }

    /// Reads the notifications: links of ours that vanished are dealt with
    /// now; route changes schedule a re-check.
    fn watch_read(&mut self) {
        let (notices, overrun) = self.watch.mon.notices();
        let now = Instant::now();
        if overrun {
            log::warn!("kernel notifications were lost; re-checking every link and route");
        }
        let mut check_links = overrun;
        let mut deleted = Vec::new();
        let mut reroute = overrun;
        for n in &notices {
            match n {
                KernelNotice::Link { ifindex, gone, .. } => {
                    if *gone {
                        deleted.push(*ifindex);
                    }
                    let ours = self.devices.values().any(|d| link_of(d).is_some_and(|(i, _)| i == *ifindex));
                    check_links |= ours;
                    // IPv4 drops the routes of a link going down without
                    // a word: the link's own notice is all there is.
                    reroute |= !ours;
                }
                // Our own routes coming and going are not news.
                KernelNotice::Route { route, .. } => reroute |= route.route.protocol != RTPROT_OVPN_NETCFGD,
                // A rule can change the kernel's answer for a protected server.
                KernelNotice::Rule { ours } => reroute |= !ours,
            }
        }
        if check_links {
            self.check_links(&deleted);
        }
        if reroute && self.kernel.shared.held().next().is_some() {
            self.watch.settle.notice(now);
        }
    }

    /// Removes the device objects whose link is gone (`deleted` holds the
    /// ifindexes the kernel reported deleted) or renamed, asking the kernel
    /// now for the name (a rename notice may be stale).
    fn check_links(&mut self, deleted: &[u32]) {
        let links: Vec<(String, (u32, String))> =
            self.devices.values().filter_map(|d| Some((d.path.clone(), link_of(d)?))).collect();
        for (path, (i, name)) in links {
            match crate::netlink::link::name_of(i).filter(|n| !n.is_empty() && !deleted.contains(&i)) {
                Some(now) if now == name => {}
                Some(now) => self.link_lost(&path, format!("its device {name} was renamed to {now}"), true),
                None => self.link_lost(&path, format!("its device {name} was removed"), false),
            }
        }
    }

    /// Forgets a device whose link someone else removed or renamed. A
    /// removed link took its addresses and routes with it: its journal
    /// entries are dropped, not run (its ifindex or name may be reused
    /// already). A renamed link is not ours any more, but the addresses and
    /// routes we put on it are: they are removed, the link is left. What
    /// the device held outside its link (exclude routes, protections) is
    /// let go as at Destroy.
    fn link_lost(&mut self, path: &str, why: String, renamed: bool) {
        let Some(mut d) = self.devices.remove(path) else { return };
        log::warn!("device {path} ({}): {why}; the device object is removed", d.name);
        let mut failed = Vec::new();
        if renamed {
            self.dco_release(&mut d);
            failed = apply::undo(&mut self.kernel, d.journal.take_config());
        } else {
            d.dco = None; // its peers went with the netdev; their sockets close here
        }
        // The rest (the link, or all of it if the link is gone) needs no
        // undo: nothing is sent, the journal file only forgets it.
        self.kernel.wal.done(d.journal.take_all().into_iter().map(|e| e.id));
        failed.extend(apply::release(&mut self.kernel, &Holder::Config(path.to_string())));
        for f in failed {
            log::warn!("{path}: cleanup: {f}");
        }
        self.drop_protections(|o| *o == Owner::Device(path.to_string()));
        let events = match d.announced.take() {
            Some(a) if d.active => a.removed(),
            _ => vec![Event::new(events::DEVICE_REMOVED)],
        };
        self.departed.insert(path.to_string(), (d.owner_uid, d.acl.clone()));
        self.emit(path, &d.name, [Source::Events(events)]);
        self.departed.remove(path);
        self.dns_sync();
        if self.watch.gone.len() >= GONE_KEPT {
            self.watch.gone.pop_front();
        }
        let why = format!("device object {path} no longer exists: {why}");
        let g = Gone { path: path.to_string(), why, owner_bus: d.owner_bus, owner_uid: d.owner_uid, acl: d.acl };
        self.watch.gone.push_back(g);
    }

    /// Runs a due re-check: moves the protections and exclude routes whose
    /// path changed, and announces what moved.
    fn follow_routes(&mut self) {
        let Some(since) = self.watch.settle.take(Instant::now()) else { return };
        let routes = apply::host_routes(&mut self.kernel.rtnl).inspect_err(|e| log::warn!("re-checking routes: {e}"));
        let Ok(table) = routes else { return };
        let held: Vec<(Route, Vec<Holder>)> = self.kernel.shared.held().map(|(r, h)| (r.clone(), h.to_vec())).collect();
        // The kernel's answer for a protected server, asked as ProtectSocket
        // asks it (the socket's mark and owner); exclude routes follow the
        // main table, as at Establish.
        let ask = |(r, holders): &(Route, Vec<Holder>)| {
            let uid = holders.iter().find_map(|h| self.protections.iter().find(|p| p.holder() == *h).map(|p| p.uid));
            let answer = uid.and_then(|u| apply::route_to(&mut self.kernel.rtnl, r.dst.ip(), self.cfg.somark, u));
            (r.clone(), answer)
        };
        let asks: Vec<(Route, Option<KernelRoute>)> = held.iter().map(ask).collect();
        let todo = moves(&asks, &table, &self.links_where(|_| true));
        let ms = since.elapsed().as_millis();
        log::debug!("routes re-checked {ms} ms after the first notice: {} to move", todo.len());
        if todo.is_empty() {
            return;
        }
        let moved = apply::reroute(&mut self.kernel, todo);
        let ms = since.elapsed().as_millis();
        log::info!("{} route(s) moved to the host's new path, {ms} ms after the kernel's first notice", moved.len());
        for m in moved {
            log::info!("route {} moved to {}", m.old, m.new);
            let holders = held.iter().find(|(r, _)| *r == m.old).map(|(_, h)| h.clone()).unwrap_or_default();
            self.announce_move(&m, &holders);
        }
    }

    /// ROUTE_EXCLUDED with the new gateway, to the subscribers of each
    /// device that holds the moved route (a protection made for "/" has
    /// no device object to announce it on).
    fn announce_move(&mut self, m: &Move, holders: &[Holder]) {
        for h in holders {
            let path = match h {
                Holder::Config(p) | Holder::Protection(Owner::Device(p), _) => p,
                Holder::Protection(Owner::Client { .. }, _) => continue,
            };
            let Some(d) = self.devices.get_mut(path) else { continue };
            if let Some(a) = d.announced.as_mut() {
                for (_, gw) in a.excluded.iter_mut().filter(|(n, _)| *n == m.new.dst) {
                    *gw = m.new.gateway;
                }
            }
            let name = d.name.clone();
            let e = events::route(events::ROUTE_EXCLUDED, &m.new.dst, m.new.gateway.as_ref());
            self.emit(path, &name, [Source::Events(vec![e])]);
        }
    }
}

/// The link a device configures: its tun or DCO netdev (ifindex, name).
fn link_of(d: &crate::device::Device) -> Option<(u32, String)> {
    d.link.clone().or_else(|| d.dco.as_ref().map(|x| (x.ifindex, x.name.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kr(dst: &str, gw: Option<&str>, oif: u32, protocol: u8) -> KernelRoute {
        let mut k = crate::netlink::route::tests::kr(dst, gw, oif, None);
        k.route.protocol = protocol;
        k
    }

    const P: u8 = RTPROT_OVPN_NETCFGD;

    #[test]
    fn a_burst_settles_10_ms_after_its_last_notice_and_50_after_its_first() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s = Settle::default();
        assert_eq!((s.due, s.take(ms(1000))), (None, None));
        s.notice(t0);
        assert_eq!(s.due, Some(ms(10)));
        s.notice(ms(8));
        assert_eq!(s.due, Some(ms(18)));
        s.notice(ms(45));
        assert_eq!(s.due, Some(ms(50)), "a burst that never settles waits no longer");
        assert_eq!(s.take(ms(49)), None);
        assert_eq!(s.take(ms(50)), Some(t0));
        assert_eq!((s.due, s.take(ms(100))), (None, None), "taken once");
        s.notice(ms(200));
        assert_eq!(s.due, Some(ms(210)), "the next burst starts afresh");
    }

    #[test]
    fn a_new_default_gateway_moves_the_host_route_never_into_a_tunnel() {
        let ours = kr("203.0.113.7/32", Some("192.0.2.1"), 2, P);
        let mut table = vec![
            kr("0.0.0.0/0", Some("192.0.2.254"), 2, 3),
            kr("192.0.2.0/24", None, 2, 2),
            kr("0.0.0.0/1", Some("10.98.0.1"), 9, P),
            ours.clone(),
        ];
        // The kernel answers with our own route: the main table decides.
        let held = [(ours.route.clone(), Some(ours.clone()))];
        let m = moves(&held, &table, &[9]);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].new.gateway, Some("192.0.2.254".parse().unwrap()));
        assert_eq!((m[0].new.oif, m[0].new.protocol, m[0].new.dst), (2, P, ours.route.dst));
        // Already there: nothing moves.
        table.push(kr("203.0.113.7/32", Some("192.0.2.254"), 2, P));
        table.retain(|k| k.route != ours.route);
        assert!(moves(&[(m[0].new.clone(), None)], &table, &[9]).is_empty());
    }

    #[test]
    fn a_route_the_kernel_dropped_comes_back_once_a_path_does() {
        let ours = kr("198.51.100.0/24", Some("192.0.2.1"), 2, P);
        let held = [(ours.route.clone(), None)];
        // Uplink down: only the tunnel remains; nothing to move to.
        let down = vec![kr("0.0.0.0/1", Some("10.98.0.1"), 9, P), kr("128.0.0.0/1", Some("10.98.0.1"), 9, P)];
        assert!(moves(&held, &down, &[9]).is_empty());
        // Up again with the same gateway: the same route is put back.
        let mut up = down.clone();
        up.push(kr("0.0.0.0/0", Some("192.0.2.1"), 2, 4));
        let m = moves(&held, &up, &[9]);
        assert_eq!(m, [Move { old: ours.route.clone(), new: ours.route.clone() }]);
        // A new uplink (another device) with its own gateway.
        let new = vec![kr("0.0.0.0/0", Some("198.51.100.1"), 5, 4), kr("198.51.100.0/24", None, 5, 2)];
        let m = moves(&[(kr("203.0.113.7/32", Some("192.0.2.1"), 2, P).route, None)], &new, &[9]);
        assert_eq!((m[0].new.gateway, m[0].new.oif), (Some("198.51.100.1".parse().unwrap()), 5));
    }

    #[test]
    fn a_route_in_the_fwmark_table_moves_within_it_after_the_main_table() {
        let mut ours = kr("203.0.113.7/32", Some("192.0.2.1"), 2, P);
        ours.route.table = 7;
        let table = vec![ours.clone(), kr("0.0.0.0/0", Some("192.0.2.254"), 2, 3)];
        // The marked lookup finds our route in table 7: the main table decides.
        let m = moves(&[(ours.route.clone(), Some(ours.clone()))], &table, &[9]);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].new.table, m[0].new.gateway), (7, Some("192.0.2.254".parse().unwrap())));
    }

    #[test]
    fn the_kernels_answer_counts_unless_it_is_a_tunnel_or_the_route_itself() {
        let ours = kr("203.0.113.7/32", Some("192.0.2.1"), 2, P);
        let table = vec![ours.clone(), kr("0.0.0.0/0", Some("192.0.2.1"), 2, 3)];
        // A rule sends the server elsewhere: that is the path.
        let policy = kr("203.0.113.7/32", Some("198.51.100.1"), 5, 0);
        let m = moves(&[(ours.route.clone(), Some(policy))], &table, &[9]);
        assert_eq!((m[0].new.gateway, m[0].new.oif), (Some("198.51.100.1".parse().unwrap()), 5));
        // Through a tunnel (ours or another session's): never followed.
        let tunnel = kr("203.0.113.7/32", Some("10.98.0.1"), 9, 0);
        assert!(moves(&[(ours.route.clone(), Some(tunnel))], &table, &[9]).is_empty());
    }
}
