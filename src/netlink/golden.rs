//! Golden bytes for the RTNL requests the daemon sends, beside the bytes
//! iproute2 sends for the same change.
//!
//! iproute2's bytes were recorded with `strace -e trace=sendmsg -xx` of
//! iproute2 6.1 on Linux 6.18, in a network namespace where `t0` (a tun
//! device) has ifindex 2; only the payload after the nlmsghdr is kept, with
//! the message type and flags beside it. Each test pins our whole message
//! and checks that it asks the kernel for the same thing as iproute2's:
//! the same type, flags (ACK aside: the batch sets it), fixed header, and
//! attributes, in any order; extra attributes of ours are listed with the
//! reason the kernel reads them the same way.
//!
//! Little-endian hosts only: the recorded bytes hold host-order integers.

use super::addr::{self, Addr};
use super::attrs;
use super::route::{self, Route};
use super::rule::{self, Rule};

const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
/// RTA_TABLE and FRA_TABLE: iproute2 leaves them out for tables below 256,
/// which the header's table byte already names.
const RTA_TABLE: u16 = libc::RTA_TABLE;
const FRA_TABLE: u16 = 15;

/// Checks `ours` (a whole message) against iproute2's request for the same
/// change; `extra` are attribute types only we send, each with its reason.
fn same_as_iproute2(ours: &[u8], ty: u16, flags: u16, hdr: usize, ip: &[u8], extra: &[u16]) {
    assert_eq!(u16::from_ne_bytes([ours[4], ours[5]]), ty, "message type");
    let our_flags = u16::from_ne_bytes([ours[6], ours[7]]);
    assert_eq!(our_flags & !NLM_F_ACK, flags & !NLM_F_ACK, "flags {our_flags:#x} vs {flags:#x}");
    assert_eq!(u32::from_ne_bytes(ours[0..4].try_into().unwrap()) as usize, ours.len(), "nlmsg_len");
    let payload = &ours[16..];
    assert_eq!(payload[..hdr], ip[..hdr], "fixed header");
    let mut a: Vec<(u16, &[u8])> = attrs(&payload[hdr..]).filter(|(t, _)| !extra.contains(t)).collect();
    let mut b: Vec<(u16, &[u8])> = attrs(&ip[hdr..]).collect();
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
