//! Routes: the kernel-neutral `Route` value, its RTM_NEWROUTE/RTM_DELROUTE
//! encodings, dump parsing, and the pure "which route does the host use
//! for X" selection that exclude routes and socket protection need.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use libc::{
    RTA_DST, RTA_GATEWAY, RTA_MARK, RTA_OIF, RTA_PRIORITY, RTA_TABLE, RTM_DELROUTE, RTM_GETROUTE, RTM_NEWROUTE,
};

use super::attr::{self, NlMsg, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use super::{encode, Req, What, OK_ADD, OK_DEL};

pub const RT_TABLE_MAIN: u32 = 254;
const RTNH_F_ONLINK: u32 = 4; // include/uapi/linux/rtnetlink.h
/// RTA_UID (include/uapi/linux/rtnetlink.h); libc names it for glibc targets only.
const RTA_UID: u16 = 25;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub dst: IpNetwork,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub metric: Option<u32>,
    pub table: u32,
    pub protocol: u8,
    /// Gateway reachable on the device even if outside its prefixes.
    pub onlink: bool,
}

impl Route {
    /// The metric the kernel files this route under: IPv6 turns "none"
    /// and 0 into 1024 (IP6_RT_PRIO_USER), IPv4 "none" is 0.
    pub fn kernel_metric(&self) -> u32 {
        match (self.dst.is_ipv6(), self.metric) {
            (true, None | Some(0)) => 1024,
            (_, m) => m.unwrap_or(0),
        }
    }

    /// The kernel's key for this route within its table: (table, prefix, metric).
    pub fn key(&self) -> (u32, IpNetwork, u32) {
        let dst = IpNetwork::new(self.dst.network(), self.dst.prefix()).unwrap_or(self.dst);
        (self.table, dst, self.kernel_metric())
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let via = self.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        let metric = self.metric.map(|m| format!(" metric {m}")).unwrap_or_default();
        let table = if self.table != RT_TABLE_MAIN { format!(" table {}", self.table) } else { String::new() };
        write!(f, "{}{via} dev #{}{metric}{table}", self.dst, self.oif)
    }
}

pub fn ip_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

pub fn family(a: &IpAddr) -> u8 {
    (if a.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 }) as u8
}

/// `struct rtmsg`; the table byte names tables below 256 (RT_TABLE_UNSPEC
/// otherwise: RTA_TABLE says which).
fn rtmsg(family: u8, dst_len: u8, table: u32, protocol: u8, scope: u8, rtype: u8, flags: u32) -> [u8; 12] {
    let table = if table < 256 { table as u8 } else { 0 };
    let f = flags.to_ne_bytes();
    [family, dst_len, 0, 0, table, protocol, scope, rtype, f[0], f[1], f[2], f[3]]
}

fn encode_route(ty: u16, flags: u16, r: &Route) -> Vec<u8> {
    let scope = match (ty, r.gateway) {
        (RTM_DELROUTE, _) => libc::RT_SCOPE_NOWHERE,
        (_, Some(_)) => libc::RT_SCOPE_UNIVERSE,
        (_, None) => libc::RT_SCOPE_LINK,
    };
    let onlink = if r.onlink && r.gateway.is_some() { RTNH_F_ONLINK } else { 0 };
    let hdr = rtmsg(family(&r.dst.ip()), r.dst.prefix(), r.table, r.protocol, scope, libc::RTN_UNICAST, onlink);
    // Destination, gateway, device, metric, table, in that order.
    let addrs = [(RTA_DST, (r.dst.prefix() > 0).then(|| r.dst.network())), (RTA_GATEWAY, r.gateway)];
    let ints = [(RTA_OIF, (r.oif != 0).then_some(r.oif)), (RTA_PRIORITY, r.metric), (RTA_TABLE, Some(r.table))];
    encode(ty, flags, &hdr, |m| {
        for (ty, a) in addrs {
            a.map_or(Ok(()), |a| m.put_bytes(ty, &ip_bytes(&a)))?;
        }
        for (ty, v) in ints {
            v.map_or(Ok(()), |v| m.put_u32(ty, v))?;
        }
        Ok(())
    })
}

pub fn add(r: &Route) -> Req {
    let bytes = encode_route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, r);
    Req { bytes, ok_errnos: OK_ADD, what: What::Route("add", r.clone()) }
}

pub fn del(r: &Route) -> Req {
    Req { bytes: encode_route(RTM_DELROUTE, 0, r), ok_errnos: OK_DEL, what: What::Route("delete", r.clone()) }
}

/// A dump of all routes, both families.
pub fn dump_request() -> Vec<u8> {
    encode(RTM_GETROUTE, NLM_F_DUMP, &rtmsg(0, 0, 0, 0, 0, 0, 0), |_| Ok(()))
}

/// Asks the kernel which route a packet to `dst` takes (RTM_GETROUTE, as
/// `ip route get`): policy rules, every table and multipath included. The
/// socket's mark and owner take part in rule selection, so both are given.
pub fn lookup_request(dst: IpAddr, mark: Option<u32>, uid: u32) -> Vec<u8> {
    let hdr = rtmsg(family(&dst), if dst.is_ipv4() { 32 } else { 128 }, 0, 0, 0, 0, 0);
    encode(RTM_GETROUTE, NLM_F_ACK, &hdr, |m: &mut NlMsg| {
        m.put_bytes(RTA_DST, &ip_bytes(&dst))?;
        mark.map_or(Ok(()), |v| m.put_u32(RTA_MARK, v))?;
        m.put_u32(RTA_UID, uid)
    })
}

/// A route as read back from the kernel (unicast routes only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub route: Route,
    pub rtype: u8,
    pub scope: u8,
}

/// Parses one RTM_NEWROUTE payload (struct rtmsg + attributes).
pub fn parse(payload: &[u8]) -> Option<KernelRoute> {
    let &[fam, dst_len, _, _, table, protocol, scope, rtype, f0, f1, f2, f3, ref attrs @ ..] = payload else {
        return None;
    };
    let ip = |b: &[u8]| match i32::from(fam) {
        libc::AF_INET => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        libc::AF_INET6 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    };
    let (mut dst, mut gateway, mut oif, mut metric, mut table) = (None, None, 0, None, u32::from(table));
    for a in attr::attrs(attrs).map_while(Result::ok) {
        let (p, int) = (a.payload(), a.u32().ok());
        match a.kind() {
            RTA_DST => dst = ip(p),
            RTA_GATEWAY => gateway = ip(p),
            RTA_OIF => oif = int.unwrap_or(oif),
            RTA_PRIORITY => metric = int.or(metric),
            RTA_TABLE => table = int.unwrap_or(table),
            _ => {}
        }
    }
    // Without RTA_DST: the default route of the family.
    let dst = dst.or_else(|| ip(&[0; 4])).or_else(|| ip(&[0; 16]))?;
    let onlink = u32::from_ne_bytes([f0, f1, f2, f3]) & RTNH_F_ONLINK != 0;
    let route = Route { dst: IpNetwork::new(dst, dst_len).ok()?, gateway, oif, metric, table, protocol, onlink };
    Some(KernelRoute { route, rtype, scope })
}

/// How the host reaches `dst` without our devices: the longest-prefix
/// unicast route in the main table whose device is not in `ignore`
/// (lowest metric among equals). Returns (gateway, device).
pub fn best_route(table: &[KernelRoute], dst: IpAddr, ignore: &[u32]) -> Option<(Option<IpAddr>, u32)> {
    table
        .iter()
        .filter(|k| k.rtype == libc::RTN_UNICAST && k.route.table == RT_TABLE_MAIN)
        .filter(|k| k.route.oif != 0 && !ignore.contains(&k.route.oif))
        .filter(|k| k.route.dst.is_ipv4() == dst.is_ipv4() && k.route.dst.contains(dst))
        .min_by_key(|k| (std::cmp::Reverse(k.route.dst.prefix()), k.route.metric.unwrap_or(0)))
        .map(|k| (k.route.gateway, k.route.oif))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A main-table unicast route as a dump shows it (for tests).
    pub(crate) fn kr(dst: &str, gw: Option<&str>, oif: u32, metric: Option<u32>) -> KernelRoute {
        KernelRoute {
            route: Route {
                dst: dst.parse().unwrap(),
                gateway: gw.map(|g| g.parse().unwrap()),
                oif,
                metric,
                table: RT_TABLE_MAIN,
                protocol: 3,
                onlink: false,
            },
            rtype: libc::RTN_UNICAST,
            scope: 0,
        }
    }

    #[test]
    fn best_route_prefers_longest_prefix_and_skips_ignored() {
        let t = vec![
            kr("0.0.0.0/0", Some("192.0.2.1"), 2, Some(100)),
            kr("0.0.0.0/0", Some("192.0.2.254"), 2, Some(50)),
            kr("192.0.2.0/24", None, 2, None),
            kr("0.0.0.0/1", Some("10.8.0.1"), 9, None),
        ];
        assert_eq!(
            best_route(&t, "198.51.100.7".parse().unwrap(), &[9]),
            Some((Some("192.0.2.254".parse().unwrap()), 2))
        );
        assert_eq!(best_route(&t, "192.0.2.77".parse().unwrap(), &[9]), Some((None, 2)));
        assert_eq!(best_route(&t, "1.2.3.4".parse().unwrap(), &[]), Some((Some("10.8.0.1".parse().unwrap()), 9)));
        assert_eq!(best_route(&t, "2001:db8::1".parse().unwrap(), &[]), None);
    }

    #[test]
    fn encode_then_parse_round_trip() {
        let r = Route {
            dst: "10.97.0.0/24".parse().unwrap(),
            gateway: Some("10.98.0.1".parse().unwrap()),
            oif: 7,
            metric: Some(5),
            table: RT_TABLE_MAIN,
            protocol: super::super::RTPROT_OVPN_NETCFGD,
            onlink: true,
        };
        let b = add(&r).bytes;
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), libc::RTM_NEWROUTE);
        let k = parse(&b[16..]).unwrap();
        assert_eq!(k.route, r);
        assert_eq!(k.scope, libc::RT_SCOPE_UNIVERSE);
    }
}
