//! Routes: the kernel-neutral `Route` value, its RTM_NEWROUTE/RTM_DELROUTE
//! encodings, dump parsing, and the pure "which route does the host use
//! for X" selection that exclude routes and socket protection need.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use neli::consts::nl::NlmF;
use neli::consts::rtnl::{RtAddrFamily, RtScope, RtTable, Rta, Rtm, RtmF, Rtn, Rtprot};
use neli::rtnl::RtmsgBuilder;
use neli::types::RtBuffer;

use super::{encode, rta, Req, What, OK_ADD, OK_DEL};

pub const RT_TABLE_MAIN: u32 = 254;
const RTNH_F_ONLINK: u32 = 4; // include/uapi/linux/rtnetlink.h

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
        write!(f, "{}", self.dst)?;
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        write!(f, " dev #{}", self.oif)?;
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if self.table != RT_TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        Ok(())
    }
}

pub fn ip_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

pub fn family(a: &IpAddr) -> RtAddrFamily {
    if a.is_ipv4() {
        RtAddrFamily::Inet
    } else {
        RtAddrFamily::Inet6
    }
}

fn encode_route(ty: Rtm, flags: NlmF, r: &Route) -> Vec<u8> {
    let mut attrs = RtBuffer::new();
    if r.dst.prefix() > 0 {
        attrs.push(rta(Rta::Dst, &ip_bytes(&r.dst.network())));
    }
    if let Some(g) = &r.gateway {
        attrs.push(rta(Rta::Gateway, &ip_bytes(g)));
    }
    if r.oif != 0 {
        attrs.push(rta(Rta::Oif, &r.oif.to_ne_bytes()));
    }
    if let Some(m) = r.metric {
        attrs.push(rta(Rta::Priority, &m.to_ne_bytes()));
    }
    attrs.push(rta(Rta::Table, &r.table.to_ne_bytes()));
    let scope = if r.gateway.is_some() || ty == Rtm::Delroute { RtScope::Universe } else { RtScope::Link };
    let msg = RtmsgBuilder::default()
        .rtm_family(family(&r.dst.ip()))
        .rtm_dst_len(r.dst.prefix())
        .rtm_src_len(0)
        .rtm_tos(0)
        .rtm_table(if r.table < 256 { RtTable::from(r.table as u8) } else { RtTable::Unspec })
        .rtm_protocol(Rtprot::from(r.protocol))
        .rtm_scope(if ty == Rtm::Delroute { RtScope::Nowhere } else { scope })
        .rtm_type(Rtn::Unicast)
        .rtm_flags(if r.onlink && r.gateway.is_some() { RtmF::from_bits_retain(RTNH_F_ONLINK) } else { RtmF::empty() })
        .rtattrs(attrs)
        .build()
        .expect("all fields set");
    encode(ty, flags, msg)
}

pub fn add(r: &Route) -> Req {
    Req {
        bytes: encode_route(Rtm::Newroute, NlmF::REQUEST | NlmF::CREATE | NlmF::EXCL, r),
        ok_errnos: OK_ADD,
        what: What::AddRoute(r.clone()),
    }
}

pub fn del(r: &Route) -> Req {
    Req { bytes: encode_route(Rtm::Delroute, NlmF::REQUEST, r), ok_errnos: OK_DEL, what: What::DelRoute(r.clone()) }
}

/// A dump of all routes of one family (or both with `None`).
pub fn dump_request(fam: Option<RtAddrFamily>) -> Vec<u8> {
    get_request(fam.unwrap_or(RtAddrFamily::Unspecified), 0, RtBuffer::new(), NlmF::DUMP)
}

/// Asks the kernel which route a packet to `dst` takes (RTM_GETROUTE, as
/// `ip route get`): policy rules, every table and multipath included. The
/// socket's mark and owner take part in rule selection, so both are given.
pub fn lookup_request(dst: IpAddr, mark: Option<u32>, uid: u32) -> Vec<u8> {
    let mut attrs = RtBuffer::new();
    attrs.push(rta(Rta::Dst, &ip_bytes(&dst)));
    if let Some(m) = mark {
        attrs.push(rta(Rta::Mark, &m.to_ne_bytes()));
    }
    // RTA_UID (linux/rtnetlink.h): neli names it for glibc targets only.
    attrs.push(rta(Rta::from(25u16), &uid.to_ne_bytes()));
    get_request(family(&dst), if dst.is_ipv4() { 32 } else { 128 }, attrs, NlmF::ACK)
}

fn get_request(fam: RtAddrFamily, dst_len: u8, attrs: RtBuffer<Rta, neli::types::Buffer>, flags: NlmF) -> Vec<u8> {
    let msg = RtmsgBuilder::default()
        .rtm_family(fam)
        .rtm_dst_len(dst_len)
        .rtm_src_len(0)
        .rtm_tos(0)
        .rtm_table(RtTable::Unspec)
        .rtm_protocol(Rtprot::Unspec)
        .rtm_scope(RtScope::Universe)
        .rtm_type(Rtn::Unspec)
        .rtattrs(attrs)
        .build()
        .expect("all fields set");
    encode(Rtm::Getroute, NlmF::REQUEST | flags, msg)
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
    if payload.len() < 12 {
        return None;
    }
    let fam = payload[0] as i32;
    let dst_len = payload[1];
    let mut table = payload[4] as u32;
    let protocol = payload[5];
    let scope = payload[6];
    let rtype = payload[7];
    let flags = u32::from_ne_bytes([payload[8], payload[9], payload[10], payload[11]]);
    let mk = |b: &[u8]| -> Option<IpAddr> {
        match (fam, b.len()) {
            (libc::AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
            (libc::AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
            _ => None,
        }
    };
    let mut dst = None;
    let mut gateway = None;
    let mut oif = 0;
    let mut metric = None;
    for (t, p) in super::attrs(&payload[12..]) {
        match t {
            libc::RTA_DST => dst = mk(p),
            libc::RTA_GATEWAY => gateway = mk(p),
            libc::RTA_OIF if p.len() == 4 => oif = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]),
            libc::RTA_PRIORITY if p.len() == 4 => metric = Some(u32::from_ne_bytes([p[0], p[1], p[2], p[3]])),
            libc::RTA_TABLE if p.len() == 4 => table = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]),
            _ => {}
        }
    }
    let dst = match (dst, fam) {
        (Some(d), _) => d,
        (None, libc::AF_INET) => IpAddr::from([0u8; 4]),
        (None, libc::AF_INET6) => IpAddr::from([0u8; 16]),
        _ => return None,
    };
    Some(KernelRoute {
        route: Route {
            dst: IpNetwork::new(dst, dst_len).ok()?,
            gateway,
            oif,
            metric,
            table,
            protocol,
            onlink: flags & RTNH_F_ONLINK != 0,
        },
        rtype,
        scope,
    })
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
