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

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    Link {
        ifindex: u32,
        mtu: u32,
        txqlen: Option<u32>,
    },
    Addr(Addr),
    /// A route through the device being configured: its own, never shared.
    Route(Route),
    /// A route outside our devices (an exclude route, a protection): every
    /// session that needs the same one shares it until the last lets go.
    SharedRoute(Route),
    Rule(crate::netlink::rule::Rule),
}

/// A shared route to move (roaming): as it is held now, and as it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub old: Route,
    pub new: Route,
}

impl Change {
    /// The route this change adds, if any.
    pub fn route(&self) -> Option<&Route> {
        match self {
            Change::Route(r) | Change::SharedRoute(r) => Some(r),
            _ => None,
        }
    }
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
    #[cfg(test)]
    pub fn added(&self) -> Vec<Event> {
        let n = Notice::Added(self.clone());
        (0..n.len()).map(|i| n.event(i)).collect()
    }

    /// In reverse: ROUTE_REMOVED per included network, IPADDR_REMOVED, then DEVICE_REMOVED.
    pub fn removed(&self) -> Vec<Event> {
        let n = Notice::Removed(self.clone());
        (0..n.len()).map(|i| n.event(i)).collect()
    }
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
            Notice::Added(_) => {
                events::DEVICE_ADDED | events::IPADDR_ADDED | events::ROUTE_ADDED | events::ROUTE_EXCLUDED
            }
            Notice::Removed(_) => events::DEVICE_REMOVED | events::IPADDR_REMOVED | events::ROUTE_REMOVED,
        }
    }

    /// How many events the notice makes (never none: the device event).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        let (Notice::Added(a) | Notice::Removed(a)) = self;
        1 + a.addrs.len() + a.routes.len() + if matches!(self, Notice::Added(_)) { a.excluded.len() } else { 0 }
    }

    /// Its event `i` (< `len`), made only when it is about to be sent:
    /// 10k routes would otherwise mean 50k formatted strings at once.
    pub fn event(&self, i: usize) -> Event {
        let route = |kind, (net, gw): &(IpNetwork, Option<IpAddr>)| events::route(kind, net, gw.as_ref());
        let (Notice::Added(a) | Notice::Removed(a)) = self;
        let (na, nr) = (a.addrs.len(), a.routes.len());
        match self {
            Notice::Added(_) => match i {
                0 => Event::new(events::DEVICE_ADDED),
                i if i <= na => events::addr(events::IPADDR_ADDED, &a.addrs[i - 1]),
                i if i <= na + nr => route(events::ROUTE_ADDED, &a.routes[i - 1 - na]),
                i => route(events::ROUTE_EXCLUDED, &a.excluded[i - 1 - na - nr]),
            },
            // ROUTE_REMOVED names no gateway (`events::route`).
            Notice::Removed(_) => match i {
                i if i < nr => route(events::ROUTE_REMOVED, &a.routes[nr - 1 - i]),
                i if i < nr + na => events::addr(events::IPADDR_REMOVED, &a.addrs[nr + na - 1 - i]),
                _ => Event::new(events::DEVICE_REMOVED),
            },
        }
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

/// Builds the plan for configuring `ifindex` from `s`.
pub fn plan(s: &Settings, ifindex: u32, host: &Host) -> Plan {
    let mut p = Plan::default();
    let txqlen = (s.txqueuelen > 0).then_some(s.txqueuelen as u32);
    p.changes.push(Change::Link { ifindex, mtu: s.mtu as u32, txqlen });
    for a in &s.addrs {
        p.changes.push(Change::Addr(Addr { ifindex, addr: a.addr, prefix: a.prefix }));
        p.announce.addrs.push((a.addr, a.prefix));
    }
    let tunnel_route = |dst: IpNetwork, metric: Option<u32>| Route {
        dst,
        // Via the gateway of the family's last address that names one.
        gateway: s.addrs.iter().rev().find_map(|a| a.gateway.filter(|_| a.addr.is_ipv6() == dst.is_ipv6())),
        oif: ifindex,
        metric,
        table: RT_TABLE_MAIN,
        protocol: RTPROT_OVPN_NETCFGD,
        onlink: true,
    };
    for n in s.networks.iter().filter(|n| !n.exclude) {
        let r = tunnel_route(n.net, n.metric);
        p.announce.routes.push((n.net, r.gateway));
        p.changes.push(Change::Route(r));
    }
    let splits = [(s.reroute_ipv4, ["0.0.0.0/1", "128.0.0.0/1"]), (s.reroute_ipv6, ["::/1", "8000::/1"])];
    for d in splits.into_iter().filter(|(on, _)| *on && host.redirect).flat_map(|(_, d)| d) {
        p.changes.push(Change::Route(tunnel_route(d.parse().expect("constant"), None)));
    }
    for n in s.networks.iter().filter(|n| n.exclude) {
        match best_route(host.routes, n.net.network(), host.ignore) {
            Some((gateway, oif)) => {
                let r = Route { gateway, oif, onlink: false, ..tunnel_route(n.net, n.metric) };
                p.announce.excluded.push((n.net, gateway));
                p.changes.push(Change::SharedRoute(r));
            }
            None => p.notes.push(format!("no host route for excluded network {}; not installed", n.net)),
        }
    }
    // Duplicate requests collapse, the first one kept: positions sorted by
    // a route's prefix (numbers: comparing whole changes went through
    // memcmp per address, 7-11 ms for 10k routes on musl), then equal
    // changes looked for among the few of one prefix.
    // (Positions are sorted, not the keys: in a size-optimised build each
    // move of a wide element is a memcpy call.)
    let c = &p.changes;
    let keys: Vec<Option<Prefix>> = c.iter().map(|c| c.route().map(prefix)).collect();
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_unstable_by(|&a, &b| keys[a].cmp(&keys[b]).then(a.cmp(&b)));
    let mut keep = vec![true; c.len()];
    for group in order.chunk_by(|&x, &y| keys[x] == keys[y]) {
        for (j, &b) in group.iter().enumerate() {
            keep[b] = !group[..j].iter().any(|&a| keep[a] && c[a] == c[b]);
        }
    }
    let mut i = 0;
    p.changes.retain(|_| (keep[i], i += 1).0);
    p
}

/// A route that does not forward as asked: what was asked for, and the
/// route the kernel prefers for that prefix instead (None: there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misroute {
    pub wanted: Route,
    pub found: Option<KernelRoute>,
}

/// Whether `k` forwards like `wanted`: a unicast route through the same
/// device; for a shared route (through the host's devices), also via the
/// same gateway. (Through a tunnel the gateway does not pick the path: the
/// kernel's own prefix route on that device forwards the same way.)
fn same_way(k: &KernelRoute, wanted: &Route, shared: bool) -> bool {
    k.rtype == libc::RTN_UNICAST && k.route.oif == wanted.oif && (!shared || k.route.gateway == wanted.gateway)
}

/// A route's table and prefix (family, masked address, length): what
/// `check` sorts and searches by, cheap to compare.
type Prefix = (u32, bool, u128, u8);

fn prefix(r: &Route) -> Prefix {
    let (t, dst, _) = r.key();
    let bits = match dst.network() {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    };
    (t, dst.is_ipv6(), bits, dst.prefix())
}

/// A routing table's index for `check`: each route's prefix and position,
/// sorted. (Sorting 10k routes by `Route::key` itself took 7–12 ms; the
/// prefixes are computed once here.)
pub struct Table(Vec<(Prefix, u32)>);

impl Table {
    pub fn of(routes: &[KernelRoute]) -> Table {
        let keys: Vec<Prefix> = routes.iter().map(|k| prefix(&k.route)).collect();
        // Positions are sorted, then paired: moving the wide pairs while
        // sorting cost a memcpy call each in a size-optimised build.
        let mut order: Vec<u32> = (0..routes.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]).then(a.cmp(&b)));
        Table(order.into_iter().map(|i| (keys[i as usize], i)).collect())
    }
}

/// Checks that every route in `changes` forwards as asked in the routing
/// tables `routes` (indexed by `table`): among the kernel's routes for the
/// same table and prefix, the preferred ones (lowest metric, if not above
/// the one asked for) all forward the same way. Before anything is sent
/// (`applied` false) a prefix with no such route is fine (ours will be it);
/// afterwards it means ours is missing. Longer prefixes inside a network
/// are the kernel's ordinary longest-match rule and do not count. Each
/// wanted route finds its candidates by binary search: no map and no
/// allocation per prefix, and a caller can check 10,240 routes a slice at
/// a time.
pub fn check(changes: &[Change], table: &Table, routes: &[KernelRoute], applied: bool) -> Result<(), Misroute> {
    for c in changes {
        let Some(r) = c.route() else { continue };
        let shared = matches!(c, Change::SharedRoute(_));
        let (key, metric) = (prefix(r), r.kernel_metric());
        let from = table.0.partition_point(|(k, _)| *k < key);
        let mut candidates = table.0[from..].iter().take_while(|(k, _)| *k == key).map(|(_, i)| &routes[*i as usize]);
        let best = candidates.clone().map(|k| k.route.kernel_metric()).filter(|m| *m <= metric).min();
        let Some(best) = best else {
            if applied {
                return Err(Misroute { wanted: r.clone(), found: None });
            }
            continue;
        };
        if let Some(k) = candidates.find(|k| k.route.kernel_metric() == best && !same_way(k, r, shared)) {
            return Err(Misroute { wanted: r.clone(), found: Some(k.clone()) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sorted(changes: &[Change], routes: &[KernelRoute], applied: bool) -> Result<(), Misroute> {
        check(changes, &Table::of(routes), routes, applied)
    }
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
        let routes: Vec<String> = p.changes.iter().filter_map(|c| c.route().map(|r| r.to_string())).collect();
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
        let shared = p.changes.iter().filter(|c| matches!(c, Change::SharedRoute(_))).count();
        assert_eq!(shared, 2, "exclude routes are the shareable ones");
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

    fn kr(dst: &str, gw: Option<&str>, oif: u32, metric: Option<u32>, rtype: u8) -> KernelRoute {
        KernelRoute { rtype, ..crate::netlink::route::tests::kr(dst, gw, oif, metric) }
    }

    fn want(dst: &str, gw: Option<&str>, oif: u32, metric: Option<u32>) -> Route {
        kr(dst, gw, oif, metric, libc::RTN_UNICAST).route
    }

    #[test]
    fn check_finds_a_prefix_routed_elsewhere_before_and_after() {
        const U: u8 = libc::RTN_UNICAST;
        let tunnel = Change::Route(want("10.97.0.0/24", Some("10.98.0.1"), 9, None));
        // Someone else's route to the same prefix and metric: refused before anything is sent.
        let other = kr("10.97.0.0/24", Some("192.0.2.1"), 2, None, U);
        let m = check_sorted(std::slice::from_ref(&tunnel), std::slice::from_ref(&other), false).unwrap_err();
        assert_eq!(m.found, Some(other.clone()));
        // A lower metric elsewhere wins over ours: refused; a higher one loses: fine.
        let low = kr("10.97.0.0/24", Some("192.0.2.1"), 2, Some(5), U);
        let tunnel7 = Change::Route(want("10.97.0.0/24", Some("10.98.0.1"), 9, Some(7)));
        assert!(check_sorted(std::slice::from_ref(&tunnel7), std::slice::from_ref(&low), false).is_err());
        let high = kr("10.97.0.0/24", Some("192.0.2.1"), 2, Some(9), U);
        assert!(check_sorted(std::slice::from_ref(&tunnel7), std::slice::from_ref(&high), false).is_ok());
        // A blackhole is not a way through the tunnel.
        let bh = kr("10.97.0.0/24", None, 0, None, libc::RTN_BLACKHOLE);
        assert!(check_sorted(std::slice::from_ref(&tunnel), &[bh], false).is_err());
        // Longer prefixes inside the network are the longest-match rule: fine.
        let inner = kr("10.97.0.0/25", Some("192.0.2.1"), 2, None, U);
        assert!(
            check_sorted(std::slice::from_ref(&tunnel), std::slice::from_ref(&inner), true).is_err(),
            "ours missing"
        );
        let ours = kr("10.97.0.0/24", Some("10.98.0.1"), 9, None, U);
        assert!(check_sorted(std::slice::from_ref(&tunnel), &[inner, ours.clone()], true).is_ok());
        // The kernel's own prefix route on the tunnel forwards the same way.
        let prefix = kr("10.97.0.0/24", None, 9, None, U);
        assert!(check_sorted(std::slice::from_ref(&tunnel), &[prefix], true).is_ok());
        // After: ours and another at the same metric (appended by someone): refused.
        assert!(check_sorted(std::slice::from_ref(&tunnel), &[ours, other], true).is_err());
    }

    #[test]
    fn check_shared_routes_compare_the_gateway_and_ipv6_metrics() {
        const U: u8 = libc::RTN_UNICAST;
        let ex = Change::SharedRoute(want("198.51.100.0/24", Some("192.0.2.1"), 2, None));
        // An identical route already there (anyone's): forwards as asked.
        assert!(check_sorted(std::slice::from_ref(&ex), &[kr("198.51.100.0/24", Some("192.0.2.1"), 2, None, U)], true)
            .is_ok());
        // Same device, another gateway: not the same way.
        assert!(check_sorted(
            std::slice::from_ref(&ex),
            &[kr("198.51.100.0/24", Some("192.0.2.9"), 2, None, U)],
            false
        )
        .is_err());
        // IPv6: no metric means 1024, which a route read back with 1024 matches.
        let v6 = Change::Route(want("2001:db8:5::/48", None, 9, None));
        let other = kr("2001:db8:5::/48", Some("2001:db8::1"), 2, Some(1024), U);
        assert!(check_sorted(std::slice::from_ref(&v6), &[other], false).is_err());
        let other = kr("2001:db8:5::/48", Some("2001:db8::1"), 2, Some(2048), U);
        assert!(check_sorted(std::slice::from_ref(&v6), &[other], false).is_ok());
    }
}
