//! Golden bytes for the RTNL requests the daemon sends, beside the bytes
//! iproute2 sends for the same change.
//!
//! iproute2's bytes were recorded with `strace -e trace=sendmsg -xx` (dumps:
//! `-e trace=sendto -e write=all`) of iproute2 6.1 on Linux 6.18, in a
//! network namespace (`unshare -n`) where `t0` (a tun device, `ip tuntap
//! add t0 mode tun`) has ifindex 2; only the payload after the nlmsghdr is
//! kept, with the message type and flags beside it. Each test pins our whole
//! message and checks that it asks the kernel for the same thing as
//! iproute2's: the same type, flags (ACK aside: the transport sets it),
//! fixed header, and attributes, in any order; attributes only one side
//! sends, and header bytes that differ, are listed with the reason the
//! kernel reads them the same way.
//!
//! Little-endian hosts only: the recorded bytes hold host-order integers.

use super::addr::{self, Addr};
use super::attrs;
use super::link;
use super::route::{self, Route};
use super::rule::{self, Rule};

const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
/// RTA_TABLE and FRA_TABLE: iproute2 leaves them out for tables below 256,
/// which the header's table byte already names.
const RTA_TABLE: u16 = libc::RTA_TABLE;
const FRA_TABLE: u16 = 15;

/// Checks `ours` (a whole message) against iproute2's request for the same
/// change; `extra` are attribute types only one side sends, each with its
/// reason.
fn same_as_iproute2(ours: &[u8], ty: u16, flags: u16, hdr: usize, ip: &[u8], extra: &[u16]) {
    same_but(ours, ty, flags, hdr, ip, extra, &[]);
}

/// As `same_as_iproute2`, but the fixed header's bytes at `skip` differ
/// (each call says why).
fn same_but(ours: &[u8], ty: u16, flags: u16, hdr: usize, ip: &[u8], extra: &[u16], skip: &[usize]) {
    assert_eq!(u16::from_ne_bytes([ours[4], ours[5]]), ty, "message type");
    let our_flags = u16::from_ne_bytes([ours[6], ours[7]]);
    assert_eq!(our_flags & !NLM_F_ACK, flags & !NLM_F_ACK, "flags {our_flags:#x} vs {flags:#x}");
    assert_eq!(u32::from_ne_bytes(ours[0..4].try_into().unwrap()) as usize, ours.len(), "nlmsg_len");
    let payload = &ours[16..];
    for i in (0..hdr).filter(|i| !skip.contains(i)) {
        assert_eq!(payload[i], ip[i], "fixed header byte {i}");
    }
    let mut a: Vec<(u16, &[u8])> = attrs(&payload[hdr..]).filter(|(t, _)| !extra.contains(t)).collect();
    let mut b: Vec<(u16, &[u8])> = attrs(&ip[hdr..]).filter(|(t, _)| !extra.contains(t)).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "attributes");
}

fn v4_route() -> Route {
    Route {
        dst: "10.97.0.0/24".parse().unwrap(),
        gateway: Some("192.0.2.1".parse().unwrap()),
        oif: 2,
        metric: Some(5),
        table: 254,
        protocol: 79,
        onlink: false,
    }
}

/// `ip route add 10.97.0.0/24 via 192.0.2.1 dev t0 proto 79 metric 5 table main`
/// (RTM_NEWROUTE, REQUEST|ACK|EXCL|CREATE).
const IP_ROUTE_ADD_V4: &[u8] = b"\x02\x18\x00\x00\xfe\x4f\x00\x01\x00\x00\x00\x00\x08\x00\x01\x00\x0a\x61\x00\x00\
\x08\x00\x05\x00\xc0\x00\x02\x01\x08\x00\x06\x00\x05\x00\x00\x00\x08\x00\x04\x00\x02\x00\x00\x00";

/// `ip -6 route add 2001:db8:97::/64 via 2001:db8::1 dev t0 proto 79 metric 5 table main`.
const IP_ROUTE_ADD_V6: &[u8] = b"\x0a\x40\x00\x00\xfe\x4f\x00\x01\x00\x00\x00\x00\x14\x00\x01\x00\x20\x01\x0d\xb8\
\x00\x97\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x14\x00\x05\x00\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x01\x08\x00\x06\x00\x05\x00\x00\x00\x08\x00\x04\x00\x02\x00\x00\x00";

/// `ip addr replace 10.98.0.2/24 broadcast 10.98.0.255 dev t0`
/// (RTM_NEWADDR, REQUEST|ACK|REPLACE|CREATE).
const IP_ADDR_REPLACE_V4: &[u8] = b"\x02\x18\x00\x00\x02\x00\x00\x00\x08\x00\x02\x00\x0a\x62\x00\x02\x08\x00\x04\x00\
\x0a\x62\x00\xff\x08\x00\x01\x00\x0a\x62\x00\x02";

/// `ip -6 addr replace 2001:db8:98::2/64 dev t0 nodad`.
const IP_ADDR_REPLACE_V6: &[u8] = b"\x0a\x40\x02\x00\x02\x00\x00\x00\x14\x00\x02\x00\x20\x01\x0d\xb8\x00\x98\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x02\x14\x00\x01\x00\x20\x01\x0d\xb8\x00\x98\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02";

/// `ip rule add fwmark 0x1234/0xffffffff lookup main priority 32700 proto 79`
/// (RTM_NEWRULE, REQUEST|ACK|EXCL|CREATE).
const IP_RULE_ADD: &[u8] = b"\x02\x00\x00\x00\xfe\x00\x00\x01\x00\x00\x00\x00\x08\x00\x0a\x00\x34\x12\x00\x00\
\x08\x00\x10\x00\xff\xff\xff\xff\x08\x00\x06\x00\xbc\x7f\x00\x00\x05\x00\x15\x00\x4f\x00\x00\x00";

const CREATE_EXCL: u16 = (libc::NLM_F_REQUEST | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
const CREATE_REPLACE: u16 = (libc::NLM_F_REQUEST | libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;

#[test]
#[cfg(target_endian = "little")]
fn route_add_asks_what_iproute2_asks() {
    let ours = route::add(&v4_route()).bytes;
    // Pinned whole: any change to the encoder shows here first.
    assert_eq!(
        ours,
        b"\x44\x00\x00\x00\x18\x00\x01\x06\x00\x00\x00\x00\x00\x00\x00\x00\x02\x18\x00\x00\xfe\x4f\x00\x01\x00\x00\x00\x00\
\x08\x00\x01\x00\x0a\x61\x00\x00\x08\x00\x05\x00\xc0\x00\x02\x01\x08\x00\x04\x00\x02\x00\x00\x00\x08\x00\x06\x00\
\x05\x00\x00\x00\x08\x00\x0f\x00\xfe\x00\x00\x00"
    );
    same_as_iproute2(&ours, libc::RTM_NEWROUTE, CREATE_EXCL, 12, IP_ROUTE_ADD_V4, &[RTA_TABLE]);
    let v6 =
        Route { dst: "2001:db8:97::/64".parse().unwrap(), gateway: Some("2001:db8::1".parse().unwrap()), ..v4_route() };
    same_as_iproute2(&route::add(&v6).bytes, libc::RTM_NEWROUTE, CREATE_EXCL, 12, IP_ROUTE_ADD_V6, &[RTA_TABLE]);
}

#[test]
#[cfg(target_endian = "little")]
fn addr_add_asks_what_iproute2_asks() {
    let v4 = Addr { ifindex: 2, addr: "10.98.0.2".parse().unwrap(), prefix: 24 };
    let ours = addr::add(&v4).bytes;
    assert_eq!(
        ours,
        b"\x30\x00\x00\x00\x14\x00\x01\x05\x00\x00\x00\x00\x00\x00\x00\x00\x02\x18\x00\x00\x02\x00\x00\x00\
\x08\x00\x02\x00\x0a\x62\x00\x02\x08\x00\x01\x00\x0a\x62\x00\x02\x08\x00\x04\x00\x0a\x62\x00\xff"
    );
    same_as_iproute2(&ours, libc::RTM_NEWADDR, CREATE_REPLACE, 8, IP_ADDR_REPLACE_V4, &[]);
    // IPv6 with IFA_F_NODAD, as the daemon adds them (no DAD delay on a tunnel).
    let v6 = Addr { ifindex: 2, addr: "2001:db8:98::2".parse().unwrap(), prefix: 64 };
    same_as_iproute2(&addr::add(&v6).bytes, libc::RTM_NEWADDR, CREATE_REPLACE, 8, IP_ADDR_REPLACE_V6, &[]);
}

#[test]
#[cfg(target_endian = "little")]
fn rule_add_asks_what_iproute2_asks() {
    let r = Rule { ipv6: false, priority: 32700, fwmark: 0x1234, table: 254, protocol: 79 };
    let ours = rule::add(&r).bytes;
    assert_eq!(
        ours,
        b"\x44\x00\x00\x00\x20\x00\x01\x06\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\xfe\x00\x00\x01\x00\x00\x00\x00\
\x08\x00\x06\x00\xbc\x7f\x00\x00\x08\x00\x0a\x00\x34\x12\x00\x00\x08\x00\x10\x00\xff\xff\xff\xff\x08\x00\x0f\x00\xfe\x00\x00\x00\x05\x00\x15\x00\x4f\x00\x00\x00"
    );
    same_as_iproute2(&ours, libc::RTM_NEWRULE, CREATE_EXCL, 12, IP_RULE_ADD, &[FRA_TABLE]);
}

const REQ: u16 = libc::NLM_F_REQUEST as u16;
const DUMP: u16 = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
/// IFLA_EXT_MASK: iproute2 asks for replies without VF and stats details;
/// the daemon reads only index, name, kind and alias, present either way.
const IFLA_EXT_MASK: u16 = 29;

/// `ip link set dev t0 mtu 1400 txqueuelen 500 up`, then `ip link set dev t0 down`
/// (RTM_NEWLINK, REQUEST|ACK).
const IP_LINK_SET_UP: &[u8] = b"\x00\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\
\x08\x00\x04\x00\x78\x05\x00\x00\x08\x00\x0d\x00\xf4\x01\x00\x00";
const IP_LINK_SET_DOWN: &[u8] = b"\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00";

/// `ip link set dev t0 alias ovpn-netcfgd` (RTM_NEWLINK, REQUEST|ACK).
const IP_LINK_ALIAS: &[u8] = b"\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x10\x00\x14\x00ovpn-netcfgd";

/// `ip link add t1 type dummy` (RTM_NEWLINK, REQUEST|ACK|EXCL|CREATE).
const IP_LINK_ADD: &[u8] = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x07\x00\x03\x00t1\x00\x00\x10\x00\x12\x00\x09\x00\x01\x00dummy\x00\x00\x00";

/// `ip link del dev t0` (RTM_DELLINK, REQUEST|ACK).
const IP_LINK_DEL: &[u8] = b"\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

/// The name lookup `ip link set dev t0 ...` sends first (RTM_GETLINK, REQUEST).
const IP_LINK_GET_BY_NAME: &[u8] = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x08\x00\x1d\x00\x09\x00\x00\x00\x07\x00\x03\x00t0\x00\x00";

/// `ip link show` (RTM_GETLINK, REQUEST|DUMP).
const IP_LINK_SHOW: &[u8] =
    b"\x11\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00\x1d\x00\x01\x00\x00\x00";

/// `ip route show table all` (RTM_GETROUTE, REQUEST|DUMP).
const IP_ROUTE_SHOW: &[u8] = &[0; 12];

/// `ip rule show` and `ip -6 rule show` (RTM_GETRULE, REQUEST|DUMP).
const IP_RULE_SHOW_V4: &[u8] = b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
const IP_RULE_SHOW_V6: &[u8] = b"\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

/// `ip route get 203.0.113.7 mark 5 uid 0` (RTM_GETROUTE, REQUEST).
const IP_ROUTE_GET: &[u8] = b"\x02\x20\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x08\x00\x01\x00\xcb\x00\x71\x07\
\x08\x00\x19\x00\x00\x00\x00\x00\x08\x00\x10\x00\x05\x00\x00\x00";

/// `ip route add 10.97.0.0/24 dev t0 proto 79 metric 5 table main`, then the
/// same `ip route del` (RTM_NEWROUTE REQUEST|ACK|EXCL|CREATE; RTM_DELROUTE REQUEST|ACK).
const IP_ROUTE_ADD_DEV: &[u8] = b"\x02\x18\x00\x00\xfe\x4f\xfd\x01\x00\x00\x00\x00\x08\x00\x01\x00\x0a\x61\x00\x00\
\x08\x00\x06\x00\x05\x00\x00\x00\x08\x00\x04\x00\x02\x00\x00\x00";
const IP_ROUTE_DEL_DEV: &[u8] = b"\x02\x18\x00\x00\xfe\x4f\xff\x00\x00\x00\x00\x00\x08\x00\x01\x00\x0a\x61\x00\x00\
\x08\x00\x06\x00\x05\x00\x00\x00\x08\x00\x04\x00\x02\x00\x00\x00";

/// `ip addr del 10.98.0.2/24 dev t0` (RTM_DELADDR, REQUEST|ACK).
const IP_ADDR_DEL_V4: &[u8] =
    b"\x02\x18\x00\x00\x02\x00\x00\x00\x08\x00\x02\x00\x0a\x62\x00\x02\x08\x00\x01\x00\x0a\x62\x00\x02";

#[test]
#[cfg(target_endian = "little")]
fn link_requests_ask_what_iproute2_asks() {
    let ours = link::set(2, Some(1400), Some(500), true).bytes;
    assert_eq!(
        ours,
        b"\x30\x00\x00\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\
\x01\x00\x00\x00\x01\x00\x00\x00\x08\x00\x04\x00\x78\x05\x00\x00\x08\x00\x0d\x00\xf4\x01\x00\x00"
    );
    same_as_iproute2(&ours, libc::RTM_NEWLINK, REQ, 16, IP_LINK_SET_UP, &[]);
    same_as_iproute2(&link::set(2, None, None, false).bytes, libc::RTM_NEWLINK, REQ, 16, IP_LINK_SET_DOWN, &[]);
    same_as_iproute2(&link::mark(2).bytes, libc::RTM_NEWLINK, REQ, 16, IP_LINK_ALIAS, &[]);
    // Our IFLA_LINKINFO carries NLA_F_NESTED (the upstream ovpn module wants
    // it; rtnetlink masks the flag) and our IFLA_INFO_KIND its NUL (iproute2
    // sends the bare name; the kernel reads either up to the NUL or the end):
    // the nest is compared as the kind it names.
    let ours = link::create("t1", "dummy", None).bytes;
    assert_eq!(u16::from_ne_bytes([ours[42], ours[43]]), libc::IFLA_LINKINFO | libc::NLA_F_NESTED as u16);
    same_as_iproute2(&ours, libc::RTM_NEWLINK, CREATE_EXCL, 16, IP_LINK_ADD, &[libc::IFLA_LINKINFO]);
    assert_eq!(link::parse_kind(&ours[16..]), link::parse_kind(IP_LINK_ADD));
    assert_eq!(link::parse_kind(IP_LINK_ADD), Some((0, "dummy".into())));
    same_as_iproute2(&link::del(2).bytes, libc::RTM_DELLINK, REQ, 16, IP_LINK_DEL, &[]);
    // Ours asks for an ack: `Socket::dump` ends at it when the link is missing.
    let ours = link::get_by_name("t0");
    assert_eq!(ours[6..8], ((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    same_as_iproute2(&ours, libc::RTM_GETLINK, REQ, 16, IP_LINK_GET_BY_NAME, &[IFLA_EXT_MASK]);
}

#[test]
#[cfg(target_endian = "little")]
fn dump_and_lookup_requests_ask_what_iproute2_asks() {
    // Family byte 0: iproute2 names AF_PACKET, for which rtnetlink has no
    // link dump of its own and falls back to AF_UNSPEC's, which ours names.
    let ours = link::dump_request();
    assert_eq!(
        ours,
        b"\x20\x00\x00\x00\x12\x00\x01\x03\x00\x00\x00\x00\x00\x00\x00\x00"
            .iter()
            .chain(&[0; 16])
            .copied()
            .collect::<Vec<u8>>()
    );
    same_but(&ours, libc::RTM_GETLINK, DUMP, 16, IP_LINK_SHOW, &[IFLA_EXT_MASK], &[0]);
    same_as_iproute2(&route::dump_request(), libc::RTM_GETROUTE, DUMP, 12, IP_ROUTE_SHOW, &[]);
    same_as_iproute2(&rule::dump_request(false), libc::RTM_GETRULE, DUMP, 12, IP_RULE_SHOW_V4, &[]);
    same_as_iproute2(&rule::dump_request(true), libc::RTM_GETRULE, DUMP, 12, IP_RULE_SHOW_V6, &[]);
    // rtm_flags (bytes 8..12): iproute2 sets RTM_F_LOOKUP_TABLE, which only
    // makes the reply name the table the lookup hit; the daemon reads the
    // gateway and device. Ours asks for an ack, so an unreachable
    // destination ends the call at once.
    let ours = route::lookup_request("203.0.113.7".parse().unwrap(), Some(5), 0);
    assert_eq!(ours[6..8], ((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    same_but(&ours, libc::RTM_GETROUTE, REQ, 12, IP_ROUTE_GET, &[], &[8, 9, 10, 11]);
}

#[test]
#[cfg(target_endian = "little")]
fn deletes_and_link_scope_routes_ask_what_iproute2_asks() {
    let r = Route { gateway: None, ..v4_route() };
    same_as_iproute2(&route::add(&r).bytes, libc::RTM_NEWROUTE, CREATE_EXCL, 12, IP_ROUTE_ADD_DEV, &[RTA_TABLE]);
    // rtm_type (byte 7): ours names RTN_UNICAST, iproute2 leaves it 0; the
    // kernel compares the type only when one is given, and ours are unicast.
    same_but(&route::del(&r).bytes, libc::RTM_DELROUTE, REQ, 12, IP_ROUTE_DEL_DEV, &[RTA_TABLE], &[7]);
    let a = Addr { ifindex: 2, addr: "10.98.0.2".parse().unwrap(), prefix: 24 };
    same_as_iproute2(&addr::del(&a).bytes, libc::RTM_DELADDR, REQ, 8, IP_ADDR_DEL_V4, &[]);
}
