//! Every bad input gets a clear D-Bus error, the daemon stays up, and no
//! kernel state or stored setting changes.

mod common;

use dbus::arg::Variant;
use dbus::Message;

use common::*;

fn prop_set<V: dbus::arg::Arg + dbus::arg::Append>(path: &str, name: &str, v: V) -> Message {
    Message::new_method_call(DEST, path, "org.freedesktop.DBus.Properties", "Set").unwrap().append3(
        IFACE,
        name,
        Variant(v),
    )
}

fn prop_get(path: &str, name: &str) -> Message {
    Message::new_method_call(DEST, path, "org.freedesktop.DBus.Properties", "Get").unwrap().append2(IFACE, name)
}

fn nets(v: Vec<(&str, u32, i32, bool, bool)>) -> Vec<(String, u32, i32, bool, bool)> {
    v.into_iter().map(|(a, p, m, v6, ex)| (a.to_string(), p, m, v6, ex)).collect()
}

#[test]
fn bad_inputs_are_rejected_and_change_nothing() {
    if !require_root() {
        return;
    }
    let mut env = Env::new("badinput");
    let c = env.conn();
    let p = create(&c, "victim");
    set_prop(&c, &p, "layer", 3u32).unwrap();
    let before = env.kernel_snapshot();
    let long = "x".repeat(300);
    let label64 = format!("{}.example", "a".repeat(64));
    let many: Vec<String> = (1..=40).map(|i| format!("10.0.0.{i}")).collect();
    let dev = |m: &str| method(&p, m);
    // (what, message, text expected in the error name or message)
    let cases: Vec<(&str, Message, &str)> = vec![
        ("empty device name", method(MGR, "CreateVirtualInterface").append1(""), "device_name"),
        ("control char in name", method(MGR, "CreateVirtualInterface").append1("a\nb"), "control character"),
        ("over-long name", method(MGR, "CreateVirtualInterface").append1(long.as_str()), "longer than"),
        ("name of wrong type", method(MGR, "CreateVirtualInterface").append1(5i32), "signature"),
        (
            "protect: not an IP",
            method(MGR, "ProtectSocket").append3("vpn.example", false, dbus::Path::from("/")),
            "remote",
        ),
        (
            "protect: family mismatch",
            method(MGR, "ProtectSocket").append3("10.0.0.1", true, dbus::Path::from("/")),
            "IPv6",
        ),
        (
            "protect: unknown device",
            method(MGR, "ProtectSocket").append3("10.0.0.1", false, dbus::Path::from("/net/openvpn/v3/netcfg/1_x")),
            "device_path",
        ),
        ("protect: empty remote", method(MGR, "ProtectSocket").append3("", false, dbus::Path::from("/")), "remote"),
        (
            "protect: remote with a port",
            method(MGR, "ProtectSocket").append3("10.0.0.1:1194", false, dbus::Path::from("/")),
            "remote",
        ),
        (
            "protect: unspecified",
            method(MGR, "ProtectSocket").append3("0.0.0.0", false, dbus::Path::from("/")),
            "remote",
        ),
        (
            "protect: IPv6 unspecified",
            method(MGR, "ProtectSocket").append3("::", true, dbus::Path::from("/")),
            "remote",
        ),
        (
            "protect: multicast",
            method(MGR, "ProtectSocket").append3("224.0.0.1", false, dbus::Path::from("/")),
            "remote",
        ),
        (
            "protect: broadcast",
            method(MGR, "ProtectSocket").append3("255.255.255.255", false, dbus::Path::from("/")),
            "remote",
        ),
        (
            "protect: IPv6 multicast",
            method(MGR, "ProtectSocket").append3("ff02::1", true, dbus::Path::from("/")),
            "remote",
        ),
        (
            "protect: remote as a number",
            method(MGR, "ProtectSocket").append3(7u32, false, dbus::Path::from("/")),
            "signature",
        ),
        ("subscribe: zero mask", method(MGR, "NotificationSubscribe").append1(0u32), "filter"),
        ("subscribe: mask too big", method(MGR, "NotificationSubscribe").append1(70000u32), "filter"),
        ("unsubscribe: unknown", method(MGR, "NotificationUnsubscribe").append1(":1.9999"), "no subscription"),
        ("get: unknown property", prop_get(MGR, "nonsense"), "UnknownProperty"),
        ("set: read-only version", prop_set(MGR, "version", "v1".to_string()), "read-only"),
        ("set: log_level 7", prop_set(MGR, "log_level", 7u32), "log_level"),
        ("set: log_level as string", prop_set(MGR, "log_level", "6".to_string()), "expected type"),
        ("set: log_level as uint16", prop_set(MGR, "log_level", 6u16), "expected type 'u' but got 'q'"),
        (
            "set: no value",
            Message::new_method_call(DEST, MGR, "org.freedesktop.DBus.Properties", "Set")
                .unwrap()
                .append2(IFACE, "log_level"),
            "Set takes (ssv)",
        ),
        ("addr: bad IPv4", dev("AddIPAddress").append3("10.0.0.300", 24u32, "").append1(false), "ip_address"),
        ("addr: prefix 33", dev("AddIPAddress").append3("10.0.0.2", 33u32, "").append1(false), "prefix"),
        ("addr: prefix 129", dev("AddIPAddress").append3("fd00::2", 129u32, "").append1(true), "prefix"),
        ("addr: gateway family", dev("AddIPAddress").append3("10.0.0.2", 24u32, "fd00::1").append1(false), "gateway"),
        ("addr: family flag wrong", dev("AddIPAddress").append3("fd00::2", 64u32, "").append1(false), "IPv4"),
        ("addr: unspecified", dev("AddIPAddress").append3("0.0.0.0", 8u32, "").append1(false), "cannot be"),
        ("addr: multicast", dev("AddIPAddress").append3("224.0.0.1", 24u32, "").append1(false), "cannot be"),
        ("addr: missing argument", dev("AddIPAddress").append3("10.0.0.2", 24u32, ""), "signature"),
        ("remote: hostname", dev("SetRemoteAddress").append2("vpn.example", false), "ip_address"),
        ("remote: trailing newline", dev("SetRemoteAddress").append2("10.0.0.1\n", false), "control character"),
        (
            "networks: host bits",
            dev("AddNetworks").append1(nets(vec![("10.0.0.1", 24, -1, false, false)])),
            "host bits",
        ),
        ("networks: prefix 40", dev("AddNetworks").append1(nets(vec![("10.0.0.0", 40, -1, false, false)])), "prefix"),
        ("networks: family flag", dev("AddNetworks").append1(nets(vec![("2001:db8::", 32, -1, false, false)])), "IPv4"),
        (
            "networks: one bad of two",
            dev("AddNetworks")
                .append1(nets(vec![("10.50.0.0", 16, -1, false, false), ("10.51.0.1", 16, -1, false, false)])),
            "host bits",
        ),
        (
            "networks: negative metric",
            dev("AddNetworks").append1(nets(vec![("10.0.0.0", 8, -5, false, false)])),
            "metric",
        ),
        (
            "networks: old a(subb) format",
            dev("AddNetworks").append1(vec![("10.0.0.0".to_string(), 8u32, false, false)]),
            "signature",
        ),
        ("dns: not an IP", dev("AddDNS").append1(vec!["resolver.example"]), "server_list"),
        ("dns: unspecified", dev("AddDNS").append1(vec!["0.0.0.0"]), "server_list"),
        ("dns: too many", dev("AddDNS").append1(many.clone()), "at most"),
        ("search: space", dev("AddDNSSearch").append1(vec!["bad domain"]), "domains"),
        ("search: empty", dev("AddDNSSearch").append1(vec![""]), "domains"),
        ("search: 64-byte label", dev("AddDNSSearch").append1(vec![label64.as_str()]), "domains"),
        ("dnssec: maybe", dev("SetDNSSEC").append1("maybe"), "mode"),
        ("dnssec: unset cannot be set", dev("SetDNSSEC").append1("unset"), "mode"),
        ("transport: https", dev("SetDNSTransport").append1("https"), "mode"),
        ("transport: unset cannot be set", dev("SetDNSTransport").append1("unset"), "mode"),
        ("layer 4", prop_set(&p, "layer", 4u32), "layer"),
        ("layer as string", prop_set(&p, "layer", "3".to_string()), "expected type"),
        ("mtu 20", prop_set(&p, "mtu", 20u16), "mtu"),
        ("mtu as string", prop_set(&p, "mtu", "1500".to_string()), "expected type"),
        ("txqueuelen 70000", prop_set(&p, "txqueuelen", 70000u32), "txqueuelen"),
        ("dns_scope world", prop_set(&p, "dns_scope", "world".to_string()), "dns_scope"),
        ("set: read-only owner", prop_set(&p, "owner", 1000u32), "read-only"),
        ("set: unknown property", prop_set(&p, "colour", 1u32), "UnknownProperty"),
        ("dco: bad interface name", dev("EnableDCO").append1("a/b"), "dev_name"),
        ("unknown method", dev("Frobnicate"), "UnknownMethod"),
        ("unknown object", method(&format!("{MGR}/1_nothing"), "Establish"), "UnknownObject"),
    ];
    assert!(cases.len() >= 40);
    for (what, m, needle) in cases {
        let e = send(&c, m).err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(e.0.contains(needle) || e.1.contains(needle), "{what}: error {e:?} does not mention '{needle}'");
        assert!(env.daemon_alive(), "{what}: daemon died");
        assert_eq!(env.kernel_snapshot(), before, "{what}: kernel changed");
    }
    // Nothing of the rejected calls was stored.
    assert!(get_prop::<Vec<String>>(&c, &p, "dns_name_servers").is_empty());
    assert!(get_prop::<Vec<String>>(&c, &p, "dns_search_domains").is_empty());
    assert_eq!(get_prop::<String>(&c, &p, "dnssec_mode"), "unset");
    assert_eq!(get_prop::<String>(&c, &p, "dns_transport"), "unset");
    assert_eq!(get_prop::<String>(&c, &p, "dns_scope"), "global");
    assert_eq!(get_prop::<u16>(&c, &p, "mtu"), 1500);
    assert_eq!(get_prop::<u32>(&c, &p, "layer"), 3);
    assert_eq!(get_prop::<u32>(&c, MGR, "log_level"), 6);
    // Establish with one good address and network: only those reach the kernel.
    let _: () = call(&c, &p, "AddIPAddress", ("10.98.0.2", 24u32, "10.98.0.1", false)).unwrap();
    let _: () = call(&c, &p, "AddNetworks", (nets(vec![("10.97.0.0", 24, -1, false, false)]),)).unwrap();
    let _fd = establish(&c, &p);
    let name: String = get_prop(&c, &p, "device_name");
    let addrs = env.ip(&format!("-o addr show dev {name}"));
    assert_eq!(addrs.matches(" inet ").count(), 1, "{addrs}");
    let routes = env.our_routes();
    assert_eq!(routes.lines().count(), 1, "{routes}");
    assert!(!routes.contains("10.50.0.0"), "a rejected batch stored nothing: {routes}");
}

#[test]
fn establish_failure_returns_an_error_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let env = Env::new("estfail");
    let before = env.kernel_snapshot();
    let c = env.conn();
    let p = create(&c, "nolayer");
    let e = send(&c, method(&p, "Establish")).unwrap_err();
    assert!(e.1.contains("layer"), "{e:?}");
    assert_eq!(env.kernel_snapshot(), before);
    // A real kernel refusal: IPv6 disabled for new devices in this
    // namespace, so the IPv6 address is rejected after the link and the
    // IPv4 address were already configured. Everything must be rolled back.
    sh(&format!("ip netns exec {} sysctl -qw net.ipv6.conf.default.disable_ipv6=1", env.ns));
    let before = env.kernel_snapshot();
    set_prop(&c, &p, "layer", 3u32).unwrap();
    configure_like_real_client(&c, &p);
    match send(&c, method(&p, "Establish")) {
        Err(e) => {
            assert!(e.0.ends_with("Kernel"), "{e:?}");
            assert!(e.1.contains("fd00:98::1000"), "the error names the failing step: {e:?}");
            assert_eq!(env.kernel_snapshot(), before, "a failed Establish leaves nothing behind");
            assert!(!get_prop::<bool>(&c, &p, "active"));
        }
        Ok(_) => panic!("Establish succeeded although the kernel must refuse the IPv6 address"),
    }
}
