//! Pure planning: turns a device's validated `Settings` plus a snapshot of
//! the host's routes into the exact list of kernel changes, and the
//! NetworkChange events that announce them. No I/O here.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::events::{self, Event};
use crate::netlink::addr::Addr;
use crate::netlink::route::{best_route, KernelRoute, Route, RT_TABLE_MAIN};
use crate::netlink::RTPROT_OVPN_NETCFGD;
use crate::settings::Settings;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    Link { ifindex: u32, mtu: u32, txqlen: Option<u32> },
    Addr(Addr),
    Route(Route),
    Rule(crate::netlink::rule::Rule),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// What to announce (NetworkChange) when the changes are applied and
    /// again when they are torn down.
    pub announce: Announce,
    /// Things worth a log line (skipped excludes and the like).
    pub notes: Vec<String>,
}

/// The facts behind a configuration's NetworkChange events, kept compact:
/// the events' text is only made when a subscriber wants them (10k routes
/// would otherwise mean 50k formatted strings per Establish).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Announce {
    pub addrs: Vec<(IpAddr, u8)>,
    /// Included networks with the gateway they go via.
    pub routes: Vec<(IpNetwork, Option<IpAddr>)>,
    /// Excluded networks with the host gateway they go via.
    pub excluded: Vec<(IpNetwork, Option<IpAddr>)>,
}

impl Announce {
    /// DEVICE_ADDED, IPADDR_ADDED per address, ROUTE_ADDED / ROUTE_EXCLUDED per network.
    pub fn added(&self) -> Vec<Event> {
        let mut v = vec![Event::new(events::DEVICE_ADDED)];
        v.extend(self.addrs.iter().map(|(a, p)| events::addr(events::IPADDR_ADDED, a, *p)));
        v.extend(self.routes.iter().map(|(n, g)| events::route(events::ROUTE_ADDED, n, g.as_ref())));
        v.extend(self.excluded.iter().map(|(n, g)| events::route(events::ROUTE_EXCLUDED, n, g.as_ref())));
        v
    }

    /// In reverse: ROUTE_REMOVED per included network, IPADDR_REMOVED, then DEVICE_REMOVED.
    pub fn removed(&self) -> Vec<Event> {
        let mut v: Vec<Event> =
            self.routes.iter().rev().map(|(n, _)| events::route(events::ROUTE_REMOVED, n, None)).collect();
        v.extend(self.addrs.iter().rev().map(|(a, p)| events::addr(events::IPADDR_REMOVED, a, *p)));
        v.push(Event::new(events::DEVICE_REMOVED));
        v
    }

    /// Every event kind `added`/`removed` can produce.
    pub const KINDS_ADDED: u32 =
        events::DEVICE_ADDED | events::IPADDR_ADDED | events::ROUTE_ADDED | events::ROUTE_EXCLUDED;
    pub const KINDS_REMOVED: u32 = events::DEVICE_REMOVED | events::IPADDR_REMOVED | events::ROUTE_REMOVED;
}

/// A configuration coming or going, to be announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Added(Announce),
    Removed(Announce),
}

impl Notice {
    /// The event kinds this notice can produce (to skip it when nobody listens).
    pub fn kinds(&self) -> u32 {
        match self {
            Notice::Added(_) => Announce::KINDS_ADDED,
            Notice::Removed(_) => Announce::KINDS_REMOVED,
        }
    }

    pub fn events(&self) -> Vec<Event> {
        match self {
            Notice::Added(a) => a.added(),
            Notice::Removed(a) => a.removed(),
        }
    }
}

/// A cheap hasher for the plan's duplicate check (no need for SipHash's
/// flooding resistance: the set lives for one call, and a hostile client
/// only slows its own Establish). FNV-1a.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Inputs that do not come from the client.
pub struct Host<'a> {
    /// The main routing table as the kernel has it now.
    pub routes: &'a [KernelRoute],
    /// Devices whose routes must not be used as "the host's route"
    /// (ours: tun and DCO devices).
    pub ignore: &'a [u32],
    /// Whether reroute_ipv4/6 may add the /1 redirect routes
    /// (false for `--redirect-method none`, as in the reference).
    pub redirect: bool,
}

fn gateway_for(s: &Settings, v6: bool) -> Option<IpAddr> {
    s.addrs.iter().rev().filter(|a| a.addr.is_ipv6() == v6).find_map(|a| a.gateway)
}

/// Builds the plan for configuring `ifindex` from `s`.
pub fn plan(s: &Settings, ifindex: u32, host: &Host) -> Plan {
    let mut p = Plan::default();
    // Duplicate requests collapse (a set keeps this linear for 10k networks).
    let mut seen: std::collections::HashSet<Change, std::hash::BuildHasherDefault<Fnv>> =
        std::collections::HashSet::with_capacity_and_hasher(s.networks.len() + 8, Default::default());
    p.changes.push(Change::Link {
        ifindex,
        mtu: s.mtu as u32,
        txqlen: if s.txqueuelen > 0 { Some(s.txqueuelen as u32) } else { None },
    });
    for a in &s.addrs {
        let c = Change::Addr(Addr { ifindex, addr: a.addr, prefix: a.prefix });
        if seen.insert(c.clone()) {
            p.changes.push(c);
        }
        p.announce.addrs.push((a.addr, a.prefix));
    }
    let tunnel_route = |dst: IpNetwork, metric: Option<u32>| {
        let gw = gateway_for(s, dst.is_ipv6());
        Route {
            dst,
            gateway: gw,
            oif: ifindex,
            metric,
            table: RT_TABLE_MAIN,
            protocol: RTPROT_OVPN_NETCFGD,
            onlink: true,
        }
    };
    let mut push_route = |p: &mut Plan, r: Route| {
        let c = Change::Route(r);
        if seen.insert(c.clone()) {
            p.changes.push(c);
        }
    };
    for n in s.networks.iter().filter(|n| !n.exclude) {
        let r = tunnel_route(n.net, n.metric);
        p.announce.routes.push((n.net, r.gateway));
        push_route(&mut p, r);
    }
    if host.redirect {
        let mut splits: Vec<&str> = Vec::new();
        if s.reroute_ipv4 {
            splits.extend(["0.0.0.0/1", "128.0.0.0/1"]);
        }
        if s.reroute_ipv6 {
            splits.extend(["::/1", "8000::/1"]);
        }
        for d in splits {
            let dst: IpNetwork = d.parse().expect("constant");
            push_route(&mut p, tunnel_route(dst, None));
        }
    }
    for n in s.networks.iter().filter(|n| n.exclude) {
        match best_route(host.routes, n.net.network(), host.ignore) {
            Some((gw, oif)) => {
                let r = Route {
                    dst: n.net,
                    gateway: gw,
                    oif,
                    metric: n.metric,
                    table: RT_TABLE_MAIN,
                    protocol: RTPROT_OVPN_NETCFGD,
                    onlink: false,
                };
                p.announce.excluded.push((n.net, gw));
                push_route(&mut p, r);
            }
            None => p.notes.push(format!("no host route for excluded network {}; not installed", n.net)),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings;

    fn host_table() -> Vec<KernelRoute> {
        let r = |dst: &str, gw: Option<&str>, oif| KernelRoute {
            route: Route {
                dst: dst.parse().unwrap(),
                gateway: gw.map(|g| g.parse().unwrap()),
                oif,
                metric: None,
                table: RT_TABLE_MAIN,
                protocol: 3,
                onlink: false,
            },
            rtype: libc::RTN_UNICAST,
            scope: 0,
        };
        vec![r("0.0.0.0/0", Some("192.0.2.1"), 2), r("192.0.2.0/24", None, 2), r("::/0", Some("2001:db8::1"), 2)]
    }

    fn client_settings() -> Settings {
        let mut s = Settings { layer: 3, ..Default::default() };
        s.addrs.push(settings::vpn_addr("10.98.0.2", 24, "10.98.0.1", false).unwrap());
        s.addrs.push(settings::vpn_addr("fd00:98::1000", 64, "fd00:98::1", true).unwrap());
        s.networks.push(settings::network("10.97.0.0", 24, -1, false, false).unwrap());
        s.networks.push(settings::network("198.51.100.0", 24, 7, false, true).unwrap());
        s.networks.push(settings::network("2001:db8:5::", 48, -1, true, true).unwrap());
        s.reroute_ipv4 = true;
        s
    }

    #[test]
    fn real_client_session_plan() {
        let t = host_table();
        let p = plan(&client_settings(), 9, &Host { routes: &t, ignore: &[9], redirect: true });
        let routes: Vec<String> = p
            .changes
            .iter()
            .filter_map(|c| if let Change::Route(r) = c { Some(r.to_string()) } else { None })
            .collect();
        assert_eq!(
            routes,
            [
                "10.97.0.0/24 via 10.98.0.1 dev #9",
                "0.0.0.0/1 via 10.98.0.1 dev #9",
                "128.0.0.0/1 via 10.98.0.1 dev #9",
                "198.51.100.0/24 via 192.0.2.1 dev #2 metric 7",
                "2001:db8:5::/48 via 2001:db8::1 dev #2",
            ]
        );
        assert_eq!(p.changes[0], Change::Link { ifindex: 9, mtu: 1500, txqlen: None });
        assert_eq!(p.changes.iter().filter(|c| matches!(c, Change::Addr(_))).count(), 2);
        let kinds: Vec<u32> = p.announce.added().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [1, 4, 4, 16, 64, 64]);
        let kinds: Vec<u32> = p.announce.removed().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [32, 8, 8, 2]);
        assert!(p.notes.is_empty());
    }

    #[test]
    fn redirect_none_adds_no_split_routes_and_duplicates_collapse() {
        let t = host_table();
        let mut s = client_settings();
        s.reroute_ipv6 = true;
        s.networks.push(settings::network("10.97.0.0", 24, -1, false, false).unwrap());
        let p = plan(&s, 9, &Host { routes: &t, ignore: &[9], redirect: false });
        let n = p.changes.iter().filter(|c| matches!(c, Change::Route(r) if r.oif == 9)).count();
        assert_eq!(n, 1);
        let p = plan(&s, 9, &Host { routes: &t, ignore: &[9], redirect: true });
        let n = p.changes.iter().filter(|c| matches!(c, Change::Route(r) if r.oif == 9)).count();
        assert_eq!(n, 5);
    }

    #[test]
    fn exclude_without_host_route_is_noted_not_installed() {
        let mut s = client_settings();
        s.networks.retain(|n| !n.exclude);
        s.networks.push(settings::network("2001:db8:5::", 48, -1, true, true).unwrap());
        let p = plan(&s, 9, &Host { routes: &[], ignore: &[9], redirect: false });
        assert_eq!(p.notes.len(), 1);
        assert!(!p.announce.added().iter().any(|e| e.kind == events::ROUTE_EXCLUDED));
    }
}
