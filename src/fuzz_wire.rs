//! Fuzz entry points for the bytes that reach the daemon from outside:
//! RTNL replies from the kernel, D-Bus method arguments from clients, and
//! the state files (journal, DNS backup, netcfg.json) read back at start.
//! The cargo-fuzz targets in fuzz/ call them, and so do the bounded
//! mutation runs of `make test` (src/fuzz_smoke.rs). Each checks
//! properties of what it accepts, not only that nothing panics.

use dbus::Message;

use crate::bus::device::{decode_addr, decode_dns_search, decode_dns_servers, decode_networks, merged};
use crate::limits::{DNS_SEARCH_PER_DEVICE, DNS_SERVERS_PER_DEVICE, NETWORKS_PER_UID};
use crate::netlink;

/// A `recv` buffer of RTNL replies: acks with extack, route, rule and link
/// messages; also read as the watch socket's notifications.
pub fn fuzz_rtnl(data: &[u8]) {
    for m in netlink::attr::messages(data).map_while(Result::ok) {
        if let Ok(st) = netlink::attr::parse_error(&m) {
            let msg = st.ext.msg.unwrap_or_default();
            assert!(msg.len() <= netlink::attr::EXTACK_MSG_MAX && !msg.chars().any(char::is_control), "{msg:?}");
        }
    }
    for (_, p) in netlink::attrs(data) {
        assert!(p.len() <= data.len());
    }
    // The same bytes as a datagram of multicast notifications (the watch socket).
    for n in netlink::notices(data) {
        match n {
            netlink::KernelNotice::Link { name, .. } => assert!(name.len() <= data.len() * 3 && !name.contains('\0')),
            netlink::KernelNotice::Route { route, .. } => assert!(route.route.dst.prefix() <= 128),
            netlink::KernelNotice::Rule { .. } => {}
        }
    }
    let Some(payload) = data.get(16..) else { return };
    if let Some(k) = netlink::route::parse(payload) {
        let r = &k.route;
        assert!(r.dst.prefix() <= if r.dst.is_ipv4() { 32 } else { 128 });
        assert!(r.gateway.map_or(true, |g| g.is_ipv4() == r.dst.is_ipv4()));
        let probe = r.dst.ip();
        let table = [k.clone()];
        if let Some((_, oif)) = netlink::route::best_route(&table, probe, &[]) {
            assert_eq!(oif, r.oif);
        }
        assert_eq!(netlink::route::best_route(&table, probe, &[r.oif]), None, "an ignored device is never chosen");
    }
    if let Some(rule) = netlink::rule::parse_ours(payload, netlink::RTPROT_OVPN_NETCFGD) {
        assert_eq!(rule.protocol, netlink::RTPROT_OVPN_NETCFGD);
        // What the journal would write back parses to the same rule.
        let u = crate::journal::Undo::DelRule(rule);
        assert_eq!(crate::journal::Undo::parse(&u.to_string()), Some(u));
    }
    if let Some((_, kind)) = netlink::link::parse_kind(payload) {
        assert!(!kind.contains('\0') && kind.len() <= payload.len() * 3);
    }
}

/// D-Bus method arguments. With a first byte of 0 the rest is a whole
/// message as it comes off the wire (libdbus validates it); otherwise the
/// bytes are cut into strings and numbers and built into the arguments of
/// AddDNS, AddDNSSearch, AddNetworks, AddIPAddress and Properties.Set.
pub fn fuzz_dbus_args(data: &[u8]) {
    match data.split_first() {
        None => {}
        Some((0, wire)) => {
            if let Ok(m) = Message::demarshal(wire) {
                check_decoders(&m);
            }
        }
        Some((mode, rest)) => {
            if let Some(m) = build(*mode, rest) {
                check_decoders(&m);
            }
        }
    }
}

/// Cuts `b` at 0xff bytes into D-Bus strings (no NULs, valid UTF-8).
fn pieces(b: &[u8]) -> Vec<String> {
    b.split(|&c| c == 0xff).map(|p| String::from_utf8_lossy(p).replace('\0', "")).collect()
}

fn num(s: &str) -> u32 {
    s.bytes().fold(0u32, |a, c| a.rotate_left(5) ^ u32::from(c))
}

fn build(mode: u8, b: &[u8]) -> Option<Message> {
    let m =
        Message::new_method_call("net.openvpn.v3.netcfg", "/net/openvpn/v3/netcfg/1_x", "net.openvpn.v3.netcfg", "X")
            .ok()?;
    let p = pieces(b);
    Some(match mode % 5 {
        1 => m.append1(p),
        2 => {
            let nets: Vec<(String, u32, i32, bool, bool)> = p
                .chunks(2)
                .map(|c| {
                    let n = c.get(1).map(|s| num(s)).unwrap_or(0);
                    (c[0].clone(), n % 160, (n >> 8) as i32 % 4 - 2, n & 1 != 0, n & 2 != 0)
                })
                .collect();
            m.append1(nets)
        }
        3 => {
            let n = p.get(2).map(|s| num(s)).unwrap_or(0);
            m.append2(p[0].clone(), n % 160).append2(p.get(1).cloned().unwrap_or_default(), n & 1 != 0)
        }
        4 => {
            let v = p.get(1).cloned().unwrap_or_default();
            let m = m.append2("net.openvpn.v3.netcfg", p[0].clone());
            match num(&v) % 3 {
                0 => m.append1(dbus::arg::Variant(v)),
                1 => m.append1(dbus::arg::Variant(num(&v))),
                _ => m.append1(dbus::arg::Variant(v.len() % 2 == 0)),
            }
        }
        _ => m.append1(p.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
    })
}

/// Runs every device-method decoder on `m` and checks what it accepts.
fn check_decoders(m: &Message) {
    let _ = crate::bus::manager::signature(m);
    if let Ok(a) = decode_addr(m) {
        assert!(a.prefix <= if a.addr.is_ipv4() { 32 } else { 128 });
        assert!(a.gateway.map_or(true, |g| g.is_ipv4() == a.addr.is_ipv4()));
    }
    for held in [0, NETWORKS_PER_UID - 1] {
        if let Ok(nets) = decode_networks(m, held) {
            assert!(nets.len() <= NETWORKS_PER_UID - held);
            for n in &nets {
                assert_eq!(n.net.network(), n.net.ip(), "no host bits");
            }
        }
    }
    if let Ok(v) = decode_dns_servers(m) {
        assert!(v.len() <= DNS_SERVERS_PER_DEVICE);
        let once = merged(&[], v.clone(), DNS_SERVERS_PER_DEVICE, "server_list", "servers").unwrap();
        let twice = merged(&once, v, DNS_SERVERS_PER_DEVICE, "server_list", "servers").unwrap();
        assert_eq!(once, twice, "adding the same servers again changes nothing");
    }
    if let Ok(v) = decode_dns_search(m) {
        assert!(v.len() <= DNS_SEARCH_PER_DEVICE);
        for d in &v {
            // Canonical: lower case, no trailing dot, and stable.
            assert_eq!(crate::settings::dns_domain(d).as_ref(), Ok(d));
        }
    }
    let mut it = m.iter_init();
    loop {
        let _ = crate::conn::Value::read(&mut it.clone());
        if !it.next() {
            break;
        }
    }
}

/// A journal file: whatever loads must write back to lines that load the same.
pub fn fuzz_journal(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (_, _, live) = crate::journal::parse_file(&text);
    assert!(live.len() <= text.lines().count());
    for u in live {
        assert_eq!(crate::journal::Undo::parse(&u.to_string()), Some(u));
    }
}

/// The resolv.conf backup: `file-meta`, then a NUL, then `file-orig`.
pub fn fuzz_dns_state(data: &[u8]) {
    let (meta, orig) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], data[i + 1..].to_vec()),
        None => (data, Vec::new()),
    };
    if let Ok(path) = crate::dns::parse_resolv_conf_backup(meta, orig) {
        assert!(path.is_absolute());
    }
}

/// netcfg.json: accepted values stay within the options' bounds.
pub fn fuzz_netcfg_json(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let mut c = crate::config::Config::default();
        if crate::config::apply_json(&mut c, s).is_ok() {
            assert!(c.log_level <= 6);
        }
    }
}
