//! The daemon on a private bus in a network namespace, driven like the real
//! client, with every result read back from the kernel.

mod common;

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;

#[test]
fn real_client_session_then_destroy_leaves_nothing() {
    if !require_root() {
        return;
    }
    let env = Env::new("replay");
    let before = env.kernel_snapshot();
    let c = env.conn();
    // The order of calls the real client made (reference §4.11, real-client-calls.txt).
    let (_props,): (HashMap<String, dbus::arg::Variant<Box<dyn dbus::arg::RefArg>>>,) = c
        .with_proxy(DEST, MGR, Duration::from_secs(5))
        .method_call("org.freedesktop.DBus.Properties", "GetAll", (IFACE,))
        .unwrap();
    let version: String = get_prop(&c, MGR, "version");
    assert!(!version.starts_with('v'), "a 'vNN' version with NN <= 25 switches the client to an old format");
    let (xml,): (String,) = c
        .with_proxy(DEST, "/net/openvpn/v3", Duration::from_secs(5))
        .method_call("org.freedesktop.DBus.Introspectable", "Introspect", ())
        .unwrap();
    assert!(xml.contains("<node name=\"netcfg\"/>"), "{xml}");
    assert!(ping(&c));
    let _: () = call(&c, MGR, "Cleanup", ()).unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let m = method(MGR, "ProtectSocket").append3("10.99.0.1", false, dbus::Path::from("/"));
    let m = m.append1(std::os::fd::OwnedFd::from(sock.try_clone().unwrap()));
    let r = send(&c, m).unwrap();
    assert!(r.read1::<bool>().unwrap());

    let p = create(&c, "d444c2d1ta28bt46cft8844t093b240a9bc0");
    assert!(p.starts_with(&format!("{MGR}/")), "{p}");
    configure_like_real_client(&c, &p);
    let fd = establish(&c, &p);
    assert!(fd.as_raw_fd() >= 0);

    let name: String = get_prop(&c, &p, "device_name");
    assert!(name.starts_with("tun"), "{name}");
    let addr = env.ip(&format!("-o addr show dev {name}"));
    assert!(addr.contains("inet 10.98.0.2/24"), "{addr}");
    assert!(addr.contains("inet6 fd00:98::1000/64"), "{addr}");
    let link = env.ip(&format!("-o link show dev {name}"));
    assert!(link.contains("mtu 1500") && link.contains(",UP"), "{link}");
    let routes = env.our_routes();
    assert!(routes.contains(&format!("10.97.0.0/24 via 10.98.0.1 dev {name}")), "{routes}");
    assert!(get_prop::<bool>(&c, &p, "active"));
    let (list,): (Vec<dbus::Path<'static>>,) = call(&c, MGR, "FetchInterfaceList", ()).unwrap();
    assert_eq!(list.iter().map(|p| p.to_string()).collect::<Vec<_>>(), vec![p.clone()]);

    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    let _: () = call(&c, MGR, "Cleanup", ()).unwrap();
    let (list,): (Vec<dbus::Path<'static>>,) = call(&c, MGR, "FetchInterfaceList", ()).unwrap();
    assert!(list.is_empty());
    drop(fd);
    assert_eq!(env.our_routes(), "");
    assert_eq!(env.kernel_snapshot(), before, "Destroy must leave the namespace as it found it");
}

#[test]
fn redirect_and_exclude_routes_for_both_families() {
    if !require_root() {
        return;
    }
    let env = Env::new("redirect");
    let c = env.conn();
    let p = create(&c, "redir");
    configure_like_real_client(&c, &p);
    set_prop(&c, &p, "reroute_ipv4", true).unwrap();
    set_prop(&c, &p, "reroute_ipv6", true).unwrap();
    let nets = vec![
        ("198.51.100.0".to_string(), 24u32, 7i32, false, true),
        ("2001:db8:77::".to_string(), 48u32, -1i32, true, true),
        ("2001:db8:99::".to_string(), 48u32, -1i32, true, false),
    ];
    let _: () = call(&c, &p, "AddNetworks", (nets,)).unwrap();
    let _fd = establish(&c, &p);
    let name: String = get_prop(&c, &p, "device_name");
    let r = env.our_routes();
    for want in [
        format!("0.0.0.0/1 via 10.98.0.1 dev {name}"),
        format!("128.0.0.0/1 via 10.98.0.1 dev {name}"),
        "198.51.100.0/24 via 192.0.2.1 dev uplink0".to_string(),
        format!("::/1 via fd00:98::1 dev {name}"),
        format!("8000::/1 via fd00:98::1 dev {name}"),
        format!("2001:db8:99::/48 via fd00:98::1 dev {name}"),
        "2001:db8:77::/48 via 2001:db8::1 dev uplink0".to_string(),
    ] {
        assert!(r.contains(&want), "missing '{want}' in:\n{r}");
    }
    assert!(r.contains("198.51.100.0/24 via 192.0.2.1 dev uplink0 metric 7"), "{r}");
    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    assert_eq!(env.our_routes(), "");
}

#[test]
fn establish_twice_replaces_the_device() {
    if !require_root() {
        return;
    }
    let env = Env::new("twice");
    let c = env.conn();
    let p = create(&c, "twice");
    configure_like_real_client(&c, &p);
    let fd1 = establish(&c, &p);
    let n1: String = get_prop(&c, &p, "device_name");
    let fd2 = establish(&c, &p);
    let n2: String = get_prop(&c, &p, "device_name");
    assert_ne!(n1, n2);
    let links = env.extra_links();
    assert_eq!(links, vec![n2.clone()], "the first device is retired");
    let r = env.our_routes();
    assert!(r.contains(&format!("dev {n2}")) && !r.contains(&format!("dev {n1} ")), "{r}");
    drop((fd1, fd2));
    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    assert!(env.extra_links().is_empty());
}

#[test]
fn disable_removes_configuration_but_keeps_the_object() {
    if !require_root() {
        return;
    }
    let env = Env::new("disable");
    let c = env.conn();
    let p = create(&c, "dis");
    configure_like_real_client(&c, &p);
    let _fd = establish(&c, &p);
    let name: String = get_prop(&c, &p, "device_name");
    let _: () = call(&c, &p, "Disable", ()).unwrap();
    assert_eq!(env.our_routes(), "");
    let addr = env.ip(&format!("-o addr show dev {name}"));
    assert!(!addr.contains("10.98.0.2"), "{addr}");
    let link = env.ip(&format!("-o link show dev {name}"));
    assert!(!link.contains(",UP"), "link set down: {link}");
    assert!(!get_prop::<bool>(&c, &p, "active"));
    // The client re-supplies its settings and establishes again.
    configure_like_real_client(&c, &p);
    let fd2 = establish(&c, &p);
    assert!(env.our_routes().contains("10.97.0.0/24"));
    let name2: String = get_prop(&c, &p, "device_name");
    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    // Destroy undoes the configuration; the tun device itself is the
    // client's to close (as the API says), and goes when it does.
    assert_eq!(env.our_routes(), "");
    let link = env.ip(&format!("-o link show dev {name2}"));
    assert!(!link.contains(",UP"), "{link}");
    assert!(!env.ip(&format!("-o addr show dev {name2}")).contains("inet "));
    drop((_fd, fd2));
    // Gone with the last reference to the fd, which may be a moment after ours.
    wait_for("the client's tun devices to go", || env.extra_links().is_empty().then_some(()));
}

#[test]
fn shutdown_removes_tun_devices_their_clients_still_hold() {
    if !require_root() {
        return;
    }
    let mut env = Env::new("orphan");
    let c = env.conn();
    let p = create(&c, "orphan");
    configure_like_real_client(&c, &p);
    let fd = establish(&c, &p);
    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    assert_eq!(env.extra_links().len(), 1, "left to the client");
    assert!(env.signal_daemon("TERM").success());
    assert!(env.extra_links().is_empty(), "deleted at shutdown although the client still holds it");
    drop(fd);
}

#[test]
fn every_object_introspects() {
    if !require_root() {
        return;
    }
    let env = Env::new("introspect");
    let c = env.conn();
    let p = create(&c, "intro");
    let get = |path: &str| -> String {
        let (x,): (String,) = c
            .with_proxy(DEST, path, Duration::from_secs(5))
            .method_call("org.freedesktop.DBus.Introspectable", "Introspect", ())
            .unwrap();
        x
    };
    assert!(get("/").contains("<node name=\"net\"/>"));
    assert!(get("/net").contains("<node name=\"openvpn\"/>"));
    assert!(get("/net/openvpn").contains("<node name=\"v3\"/>"));
    assert!(get("/net/openvpn/v3").contains("<node name=\"netcfg\"/>"));
    let m = get(MGR);
    let child = p.rsplit('/').next().unwrap();
    for s in [
        "CreateVirtualInterface",
        "NotificationSubscriberList",
        "global_dns_servers",
        "NetworkChange",
        "Log",
        &format!("<node name=\"{child}\"/>"),
    ] {
        assert!(m.contains(s), "manager XML lacks {s}");
    }
    let d = get(&p);
    for s in [
        "AddNetworks\"><arg type=\"a(suibb)\"",
        "EnableDCO",
        "name=\"mtu\" access=\"readwrite\"",
        "type=\"q\" name=\"mtu\"",
        "NetworkChange",
        "dns_scope",
    ] {
        assert!(d.contains(s), "device XML lacks {s}");
    }
    // Unknown objects and methods get the standard errors.
    let e = call::<_, ()>(&c, &format!("{MGR}/nope"), "Establish", ()).unwrap_err();
    assert_eq!(e.0, "org.freedesktop.DBus.Error.UnknownObject");
    let e = call::<_, ()>(&c, MGR, "NoSuchMethod", ()).unwrap_err();
    assert_eq!(e.0, "org.freedesktop.DBus.Error.UnknownMethod");
}

#[test]
fn another_uid_is_denied() {
    if !require_root() {
        return;
    }
    let env = Env::new("acl");
    let c = env.conn();
    let p = create(&c, "acl");
    let (ok, out) =
        busctl_as(65534, &env.addr, &format!("call {DEST} {p} {IFACE} AddIPAddress susb 10.1.0.2 24 '' false"));
    assert!(!ok && (out.contains("AccessDenied") || out.contains("may not")), "{out}");
    let (ok, out) = busctl_as(65534, &env.addr, &format!("set-property {DEST} {p} {IFACE} mtu q 1400"));
    assert!(!ok && out.contains("may not"), "{out}");
    let (ok, out) = busctl_as(65534, &env.addr, &format!("call {DEST} {MGR} {IFACE} FetchInterfaceList"));
    assert!(ok && out.trim() == "ao 0", "{out}");
    let (ok, out) = busctl_as(65534, &env.addr, &format!("call {DEST} {MGR} {IFACE} NotificationSubscriberList"));
    assert!(!ok && out.contains("root"), "{out}");
    let (ok, out) = busctl_as(65534, &env.addr, &format!("call {DEST} {p} {IFACE} Destroy"));
    assert!(!ok, "{out}");
    // Nothing was changed by the denied calls.
    assert_eq!(get_prop::<u16>(&c, &p, "mtu"), 1500);
    assert_eq!(get_prop::<u32>(&c, &p, "owner"), 0);
    let (list,): (Vec<dbus::Path<'static>>,) = call(&c, MGR, "FetchInterfaceList", ()).unwrap();
    assert_eq!(list.len(), 1);
}

#[test]
fn subscribers_get_matching_network_changes() {
    if !require_root() {
        return;
    }
    let env = Env::new("signals");
    let c = env.conn();
    let watcher = env.conn();
    let removals = env.conn();
    let _: () = call(&watcher, MGR, "NotificationSubscribe", (1u32 | 4 | 16,)).unwrap();
    let _: () = call(&removals, MGR, "NotificationSubscribe", (2u32 | 32,)).unwrap();
    let (subs,): (Vec<(String, u32)>,) = call(&c, MGR, "NotificationSubscriberList", ()).unwrap();
    assert_eq!(subs.len(), 2);
    let p = create(&c, "sig");
    configure_like_real_client(&c, &p);
    let _fd = establish(&c, &p);
    let name: String = get_prop(&c, &p, "device_name");
    let got = signals(&watcher, Duration::from_millis(300));
    let kinds: Vec<u32> = got.iter().map(|s| s.0).collect();
    assert_eq!(kinds, vec![1, 4, 4, 16], "{got:?}");
    assert!(got.iter().all(|s| s.1 == name));
    let a = &got[1].2;
    assert_eq!(
        (a["ip_version"].as_str(), a["ip_address"].as_str(), a["prefix_size"].as_str()),
        ("4", "10.98.0.2", "24")
    );
    let r = &got[3].2;
    assert_eq!(
        (r["subnet"].as_str(), r["prefix_size"].as_str(), r["gateway"].as_str()),
        ("10.97.0.0", "24", "10.98.0.1")
    );
    assert!(signals(&removals, Duration::from_millis(100)).is_empty(), "no removal yet");
    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    let got = signals(&removals, Duration::from_millis(300));
    let kinds: Vec<u32> = got.iter().map(|s| s.0).collect();
    assert_eq!(kinds, vec![32, 2], "{got:?}");
    assert!(!got[0].2.contains_key("gateway"));
    // Unsubscribe, then nothing more arrives.
    let _: () = call(&watcher, MGR, "NotificationUnsubscribe", ("",)).unwrap();
    let e = call::<_, ()>(&watcher, MGR, "NotificationUnsubscribe", ("",)).unwrap_err();
    assert!(e.1.contains("no subscription"), "{e:?}");
    let p = create(&c, "sig2");
    configure_like_real_client(&c, &p);
    let _fd = establish(&c, &p);
    assert!(signals(&watcher, Duration::from_millis(200)).is_empty());
}

#[test]
fn sigterm_with_two_devices_leaves_nothing() {
    if !require_root() {
        return;
    }
    let mut env = Env::new("sigterm");
    let before = env.kernel_snapshot();
    let c = env.conn();
    let mut fds = Vec::new();
    // One redirects the default gateway; both share an exclude route.
    for (n, net) in [("a", "10.97.0.0"), ("b", "10.96.0.0")] {
        let p = create(&c, n);
        configure_with_network(&c, &p, net);
        set_prop(&c, &p, "reroute_ipv4", n == "a").unwrap();
        let nets = vec![("198.51.100.0".to_string(), 24u32, -1i32, false, true)];
        let _: () = call(&c, &p, "AddNetworks", (nets,)).unwrap();
        fds.push(establish(&c, &p));
    }
    assert_eq!(env.extra_links().len(), 2);
    let st = env.signal_daemon("TERM");
    assert!(st.success(), "{st}");
    assert_eq!(env.our_routes(), "");
    assert!(env.extra_links().is_empty(), "{:?}", env.extra_links());
    drop(fds);
    assert_eq!(env.kernel_snapshot(), before);
}

/// A new caller's credentials are looked up without blocking the daemon,
/// and its calls wait for them in order: a burst of calls sent without
/// waiting for replies, from a connection the daemon has never seen, is
/// answered in the order sent, and the calls took effect in that order.
#[test]
fn a_new_callers_pipelined_calls_are_served_in_order() {
    if !require_root() {
        return;
    }
    let env = Env::new("pipeline");
    let mut ch = dbus::channel::Channel::open_private(&env.addr).expect("connect");
    ch.register().expect("hello");
    let first = method(MGR, "CreateVirtualInterface").append1("pipe");
    let serial = ch.send(first).unwrap();
    let replies = |ch: &dbus::channel::Channel| loop {
        let m = ch.blocking_pop_message(Duration::from_secs(5)).unwrap().expect("a reply");
        if m.get_reply_serial().is_some() {
            break m; // not the bus's NameAcquired signal
        }
    };
    let reply = replies(&ch);
    assert_eq!(reply.get_reply_serial(), Some(serial));
    let p: dbus::Path = reply.read1().unwrap();
    // 30 calls at once from a second new connection of the same user: each
    // AddDNS appends, so the order they took effect in is readable after.
    let mut ch2 = dbus::channel::Channel::open_private(&env.addr).expect("connect");
    ch2.register().expect("hello");
    let mut serials = Vec::new();
    for i in 0..30 {
        serials.push(ch2.send(method(&p, "AddDNS").append1(vec![format!("10.9.0.{}", i + 1)])).unwrap());
    }
    let mut answered = Vec::new();
    while answered.len() < serials.len() {
        let m = replies(&ch2);
        assert_eq!(m.msg_type(), dbus::message::MessageType::MethodReturn, "{m:?}");
        answered.push(m.get_reply_serial().unwrap());
    }
    assert_eq!(answered, serials);
    let c = env.conn();
    let want: Vec<String> = (0..30).map(|i| format!("10.9.0.{}", i + 1)).collect();
    let got: Vec<String> = get_prop(&c, &p, "dns_name_servers");
    assert_eq!(got, want);
}

/// Without `--bus-address` the daemon connects to the system bus that
/// DBUS_SYSTEM_BUS_ADDRESS names (libdbus's own lookup for the system bus,
/// which the daemon does itself), and answers there.
#[test]
fn system_bus_from_the_environment_without_bus_address() {
    if !require_root() {
        return;
    }
    let mut env = Env::new("sysbus");
    let log = std::fs::File::create(env.dir.join("daemon.log")).unwrap();
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &env.ns])
        .arg(bin())
        .args(["--idle-exit", "0", "--dns-backend", "none", "--state-dir"])
        .arg(env.dir.join("state"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &env.addr)
        .stderr(log)
        .spawn()
        .expect("daemon");
    env.daemon = Some(child);
    let t0 = std::time::Instant::now();
    while !ping(&env.conn()) {
        if let Some(st) = env.daemon.as_mut().unwrap().try_wait().unwrap() {
            panic!("daemon exited ({st}): {}", env.log());
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no answer on the bus: {}", env.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}
