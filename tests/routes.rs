//! Routes the daemon reports are routes the kernel forwards by, and
//! ProtectSocket never opens a way around another session's tunnel. Every
//! test runs the daemon as the unprivileged service user and reads the
//! result back from the kernel of its namespace.

mod common;

use std::net::UdpSocket;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ovpn_netcfgd::limits::CALLS_HELD_PER_UID;

const CONFLICT: &str = "net.openvpn.v3.netcfg.error.RouteConflict";

fn env(tag: &str) -> Env {
    Env::new(tag)
}

/// A network for AddNetworks: (address, prefix, exclude).
type Net<'a> = (&'a str, u32, bool);

#[derive(Debug)]
struct Sess {
    path: String,
    tun: String,
    _fd: OwnedFd,
}

/// A tun device with the real client's addresses, not yet established.
fn device(c: &dbus::blocking::Connection, name: &str) -> String {
    let p = create(c, name);
    set_prop(c, &p, "layer", 3u32).unwrap();
    let _: () = call(c, &p, "AddIPAddress", ("10.98.0.2", 24u32, "10.98.0.1", false)).unwrap();
    let _: () = call(c, &p, "AddIPAddress", ("fd00:98::1000", 64u32, "fd00:98::1", true)).unwrap();
    p
}

/// Creates a device routing `nets` (and redirecting both families with
/// `redirect`), then Establish; Err is the Establish error.
fn try_session(
    c: &dbus::blocking::Connection,
    name: &str,
    nets: &[Net],
    redirect: bool,
) -> (String, Result<Sess, (String, String)>) {
    let p = device(c, name);
    let nets: Vec<(String, u32, i32, bool, bool)> =
        nets.iter().map(|(a, l, ex)| (a.to_string(), *l, -1, a.contains(':'), *ex)).collect();
    let _: () = call(c, &p, "AddNetworks", (nets,)).unwrap();
    set_prop(c, &p, "reroute_ipv4", redirect).unwrap();
    set_prop(c, &p, "reroute_ipv6", redirect).unwrap();
    let r = send(c, method(&p, "Establish")).map(|r| {
        let fd = r.read1::<OwnedFd>().unwrap();
        let tun: String = get_prop(c, &p, "device_name");
        Sess { path: p.clone(), tun, _fd: fd }
    });
    (p, r)
}

fn session(c: &dbus::blocking::Connection, name: &str, nets: &[Net], redirect: bool) -> Sess {
    try_session(c, name, nets, redirect).1.expect("Establish")
}

/// The device `ip route get` names for `dst`.
fn route_dev(env: &Env, dst: &str) -> String {
    let out = env.ip(&format!("route get {dst}"));
    out.split_whitespace().skip_while(|w| *w != "dev").nth(1).unwrap_or("").to_string()
}

fn destroy(c: &dbus::blocking::Connection, p: &str) {
    let _: () = call(c, p, "Destroy", ()).unwrap();
}

#[test]
fn overlapping_sessions_the_second_is_refused_in_either_order() {
    if !require_root() {
        return;
    }
    // X and Y both want 10.97.0.0/24; besides, each has a network nested in
    // the other's (the kernel's longest match decides there: both fine).
    let x: &[Net] = &[("10.97.0.0", 24, false), ("10.90.0.0", 16, false), ("10.91.5.0", 24, false)];
    let y: &[Net] = &[("10.97.0.0", 24, false), ("10.91.0.0", 16, false), ("10.90.5.0", 24, false)];
    for (first, second) in [(x, y), (y, x)] {
        let env = env("overlap");
        let (c1, c2) = (env.conn(), env.conn());
        let a = session(&c1, "first", first, false);
        let routes = env.our_routes();
        let links = env.extra_links();
        let (p, e) = try_session(&c2, "second", second, false);
        let e = e.expect_err("the second session's Establish must fail");
        assert_eq!(e.0, CONFLICT, "{e:?}");
        assert!(e.1.contains("10.97.0.0/24") && e.1.contains(&a.tun), "names the route and where it goes: {e:?}");
        // Nothing of the second session is left; the first still forwards.
        assert_eq!(env.our_routes(), routes);
        assert_eq!(env.extra_links(), links);
        assert_eq!(route_dev(&env, "10.97.0.5"), a.tun);
        // The first session's address subnet is routed to its device too.
        let (_, e) = try_session(&c2, "third", &[("10.98.0.0", 24, false)], false);
        let e = e.expect_err("a network on the first session's link");
        assert!(e.0 == CONFLICT && e.1.contains(&a.tun), "{e:?}");
        assert_eq!(env.our_routes(), routes);
        // Once the first has gone, the second gets its routes.
        destroy(&c1, &a.path);
        destroy(&c2, &p);
        let b = session(&c2, "second", second, false);
        assert_eq!(route_dev(&env, "10.97.0.5"), b.tun);
        // Nested networks of different sessions both forward where the longest match says.
        let a = session(&c1, "again", &first[1..], false);
        assert_eq!(route_dev(&env, "10.90.5.1"), if first == x { b.tun.clone() } else { a.tun.clone() });
        assert_eq!(route_dev(&env, "10.90.6.1"), if first == x { a.tun.clone() } else { b.tun.clone() });
        destroy(&c1, &a.path);
        destroy(&c2, &b.path);
        assert_eq!(env.our_routes(), "");
    }
}

#[test]
fn a_second_session_redirecting_the_default_gateway_is_refused() {
    if !require_root() {
        return;
    }
    let env = env("redirect2");
    let (c1, c2) = (env.conn(), env.conn());
    let a = session(&c1, "ra", &[("10.97.0.0", 24, false)], true);
    let routes = env.our_routes();
    let links = env.extra_links();
    let (p, e) = try_session(&c2, "rb", &[("10.96.0.0", 24, false)], true);
    let e = e.expect_err("two sessions cannot both take the default gateway");
    assert_eq!(e.0, CONFLICT);
    assert!(e.1.contains("0.0.0.0/1") && e.1.contains(&a.tun) && e.1.contains("another VPN session"), "{e:?}");
    assert_eq!(env.our_routes(), routes, "the second left nothing");
    assert_eq!(env.extra_links(), links);
    for dst in ["198.51.100.1", "2001:db8:77::1"] {
        assert_eq!(route_dev(&env, dst), a.tun, "{dst}: still through the first tunnel only");
    }
    // Without the redirect, the second session runs beside the first.
    destroy(&c2, &p);
    let b = session(&c2, "rb2", &[("10.96.0.0", 24, false)], false);
    assert_eq!(route_dev(&env, "10.96.0.1"), b.tun);
    assert_eq!(route_dev(&env, "198.51.100.1"), a.tun);
    // When the first ends, a redirecting session can start; the default
    // route is the uplink's again in between, never the other session's.
    destroy(&c1, &a.path);
    assert_eq!(route_dev(&env, "198.51.100.1"), "uplink0");
    let c = session(&c1, "rc", &[("10.95.0.0", 24, false)], true);
    assert_eq!(route_dev(&env, "198.51.100.1"), c.tun);
    assert_eq!(route_dev(&env, "2001:db8:77::1"), c.tun);
    destroy(&c1, &c.path);
    destroy(&c2, &b.path);
    assert_eq!(env.our_routes(), "");
}

#[test]
fn a_shared_exclude_route_stays_until_the_last_session_leaves() {
    if !require_root() {
        return;
    }
    let env = env("sharedex");
    // The admin's own route, identical to an exclude route: never ours to remove.
    env.ip("route add 203.0.113.0/24 via 192.0.2.1 dev uplink0");
    let (c1, c2) = (env.conn(), env.conn());
    let ex: [Net; 3] = [("198.51.100.0", 24, true), ("2001:db8:5::", 48, true), ("203.0.113.0", 24, true)];
    let a = session(&c1, "xa", &[("10.97.0.0", 24, false), ex[0], ex[1], ex[2]], true);
    let b = session(&c2, "xb", &[("10.96.0.0", 24, false), ex[0], ex[1], ex[2]], false);
    let count = |dst: &str| env.our_routes().lines().filter(|l| l.starts_with(&format!("{dst} "))).count();
    assert_eq!(count("198.51.100.0/24"), 1, "{}", env.our_routes());
    assert_eq!(count("2001:db8:5::/48"), 1, "{}", env.our_routes());
    assert_eq!(count("203.0.113.0/24"), 0, "the admin's route serves: {}", env.our_routes());
    assert_eq!(route_dev(&env, "198.51.100.7"), "uplink0");
    destroy(&c1, &a.path);
    let both = (count("198.51.100.0/24"), count("2001:db8:5::/48"));
    assert_eq!(both, (1, 1), "the other session still needs them: {}", env.our_routes());
    assert_eq!(route_dev(&env, "198.51.100.7"), "uplink0");
    destroy(&c2, &b.path);
    assert_eq!(env.our_routes(), "");
    assert!(env.ip("-4 route show 203.0.113.0/24").contains("via 192.0.2.1 dev uplink0"), "the admin's route stays");
}

#[test]
fn a_network_routed_elsewhere_fails_establish_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let env = env("foreign");
    // Routes of the host's admin: the same prefix and metric, and a lower
    // metric that would win over ours.
    env.ip("route add 10.97.0.0/24 via 192.0.2.1 dev uplink0");
    env.ip("route add 10.95.0.0/24 via 192.0.2.1 dev uplink0 metric 5");
    env.ip("-6 route add 2001:db8:9::/48 via 2001:db8::1 dev uplink0");
    let before = env.kernel_snapshot();
    let c = env.conn();
    let watcher = env.conn();
    let _: () = call(&watcher, MGR, "NotificationSubscribe", (65535u32,)).unwrap();
    for (net, len, metric, v6) in
        [("10.97.0.0", 24, -1, false), ("10.95.0.0", 24, 10, false), ("2001:db8:9::", 48, -1, true)]
    {
        let p = device(&c, "fx");
        let _: () = call(&c, &p, "AddNetworks", (vec![(net.to_string(), len as u32, metric, v6, false)],)).unwrap();
        let e = send(&c, method(&p, "Establish")).expect_err("Establish must fail");
        assert_eq!(e.0, CONFLICT, "{e:?}");
        assert!(e.1.contains(&format!("{net}/{len}")) && e.1.contains("dev uplink0"), "{e:?}");
        assert_eq!(env.kernel_snapshot(), before, "{net}: nothing left behind");
        let ev = signals(&watcher, Duration::from_millis(100));
        assert!(!ev.iter().any(|(k, _, _)| *k == 16), "no ROUTE_ADDED for a route that is not there: {ev:?}");
        destroy(&c, &p);
    }
    // The host's routes were never touched, and a session without the
    // conflicting network works.
    let s = session(&c, "ok", &[("10.96.0.0", 24, false)], false);
    assert_eq!(route_dev(&env, "10.96.0.1"), s.tun);
    assert_eq!(route_dev(&env, "10.97.0.1"), "uplink0");
}

#[test]
fn protecting_an_address_in_another_sessions_network_does_not_bypass_it() {
    if !require_root() {
        return;
    }
    let env = env("nobypass");
    let (c1, c2) = (env.conn(), env.conn());
    let a = session(&c1, "pa", &[("10.97.0.0", 24, false)], false);
    // Another client protects an address inside A's network: no route
    // around A's tunnel appears, from a device of its own or from "/".
    let p = create(&c2, "pb");
    for dev in [p.as_str(), "/"] {
        assert!(protect(&c2, "10.97.0.5", false, dev, None).unwrap(), "its socket goes as the host routes it");
        assert_eq!(env.our_routes().lines().filter(|l| l.starts_with("10.97.0.5 ")).count(), 0, "{}", env.our_routes());
        assert_eq!(route_dev(&env, "10.97.0.5"), a.tun);
    }
    // Even when its own tunnel is in front: looking past it finds A's tunnel,
    // which is not routed around either ("not protected").
    destroy(&c2, &p);
    let b = session(&c2, "pb2", &[("10.97.0.0", 25, false)], false);
    assert_eq!(route_dev(&env, "10.97.0.5"), b.tun);
    assert!(!protect(&c2, "10.97.0.5", false, &b.path, None).unwrap());
    assert_eq!(env.our_routes().lines().filter(|l| l.starts_with("10.97.0.5 ")).count(), 0, "{}", env.our_routes());
    // The session that routes the network may protect its own server in it.
    assert!(protect(&c1, "10.97.0.200", false, &a.path, None).unwrap());
    assert!(env.has_our_route("10.97.0.200", "via 192.0.2.1 dev uplink0"), "{}", env.our_routes());
    assert_eq!(route_dev(&env, "10.97.0.200"), "uplink0");
}

#[test]
fn a_connected_socket_must_be_connected_to_the_remote() {
    if !require_root() {
        return;
    }
    let env = env("peer");
    let c = env.conn();
    let connected = |to: &'static str, v6: bool| -> UdpSocket {
        in_ns(&env.ns, move || {
            let s = UdpSocket::bind(if v6 { "[::]:0" } else { "0.0.0.0:0" }).unwrap();
            s.connect(to).unwrap();
            s
        })
    };
    let s = connected("203.0.113.5:1194", false);
    let e = protect(&c, "203.0.113.9", false, "/", Some(s.try_clone().unwrap().into())).unwrap_err();
    assert!(e.0.ends_with("InvalidArgs") && e.1.contains("connected to 203.0.113.5, not to 203.0.113.9"), "{e:?}");
    let s6 = connected("[2001:db8:ffff::5]:1194", true);
    let e = protect(&c, "2001:db8:ffff::6", true, "/", Some(s6.try_clone().unwrap().into())).unwrap_err();
    assert!(e.1.contains("connected to 2001:db8:ffff::5"), "{e:?}");
    assert_eq!(env.our_routes(), "", "nothing was protected");
    // The right remote, an IPv4 peer of a dual-stack socket, and an
    // unconnected socket are fine.
    assert!(protect(&c, "203.0.113.5", false, "/", Some(s.into())).unwrap());
    assert!(protect(&c, "203.0.113.7", false, "/", Some(connected("[::ffff:203.0.113.7]:1194", true).into())).unwrap());
    let unconnected = in_ns(&env.ns, || UdpSocket::bind("0.0.0.0:0").unwrap());
    assert!(protect(&c, "203.0.113.8", false, "/", Some(unconnected.into())).unwrap());
    for dst in ["203.0.113.5", "203.0.113.7", "203.0.113.8"] {
        assert!(env.has_our_route(dst, "via 192.0.2.1 dev uplink0"), "{dst}: {}", env.our_routes());
    }
    assert!(!env.our_routes().contains("203.0.113.9"));
}

/// A client of uid 65534 that protects `remote` from "/" and stays on the
/// bus until dropped. Needs /usr/bin/python3 with python3-gi.
struct OtherUser(std::process::Child);

impl Drop for OtherUser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn protect_as_other_user(env: &Env, remote: &str) -> Option<(OtherUser, String)> {
    use std::io::BufRead;
    if Command::new("/usr/bin/python3").args(["-c", "import gi"]).status().map(|s| !s.success()).unwrap_or(true) {
        skip("/usr/bin/python3 with python3-gi is not installed (make deps installs it)");
        return None;
    }
    let script = format!(
        "import sys\nfrom gi.repository import Gio, GLib\n\
         f = Gio.DBusConnectionFlags\n\
         c = Gio.DBusConnection.new_for_address_sync('{}', f.AUTHENTICATION_CLIENT | f.MESSAGE_BUS_CONNECTION, None, None)\n\
         try:\n  r = c.call_sync('{DEST}', '{MGR}', '{IFACE}', 'ProtectSocket', GLib.Variant('(sbo)', ('{remote}', False, '/')), \
         GLib.VariantType('(b)'), 0, 5000, None).unpack()[0]\n\
         except Exception as e:\n  r = e\n\
         print(r, flush=True)\nsys.stdin.read()\n",
        env.addr
    );
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    Some((OtherUser(child), line.trim().to_string()))
}

#[test]
fn protections_are_bounded_per_uid() {
    if !require_root() {
        return;
    }
    let env = env("bound");
    let c = env.conn();
    let ours = || env.our_routes().lines().count();
    let (mut ok, mut refused) = (0, 0);
    for i in 0..200u32 {
        let remote = format!("203.0.{}.{}", 113 + i / 250, 1 + i % 250);
        match protect(&c, &remote, false, "/", None) {
            Ok(true) => ok += 1,
            Err(e) => {
                assert!(e.1.contains("limit per user"), "{e:?}");
                refused += 1;
            }
            Ok(false) => panic!("{remote} not protected"),
        }
    }
    assert_eq!((ok, refused), (64, 136));
    assert_eq!(ours(), 64, "one kernel route per accepted protection");
    // Another user is not affected by this one's limit.
    let Some((_other, answer)) = protect_as_other_user(&env, "198.51.100.7") else {
        return;
    };
    assert_eq!(answer, "True", "{}", env.log());
    assert!(env.has_our_route("198.51.100.7", "via 192.0.2.1 dev uplink0"), "{}", env.our_routes());
    // The first user's go with its Cleanup; the other's stays.
    let _: () = call(&c, MGR, "Cleanup", ()).unwrap();
    assert_eq!(ours(), 1, "{}", env.our_routes());
}

/// A device routing `n` /24 networks via its gateway, not yet established.
fn big_device(c: &dbus::blocking::Connection, name: &str, n: usize) -> String {
    let p = device(c, name);
    let nets: Vec<(String, u32, i32, bool, bool)> =
        (0..n).map(|i| (format!("10.{}.{}.0", 100 + i / 256, i % 256), 24, -1, false, false)).collect();
    let _: () = call(c, &p, "AddNetworks", (nets,)).unwrap();
    p
}

/// An Establish of thousands of routes goes to the kernel a batch per loop
/// turn: a call that changes nothing is answered while it runs (before it,
/// though sent after it), and a call on the same device waits for it and
/// finds every route in the kernel.
#[test]
fn a_large_establish_answers_others_meanwhile_and_its_own_device_after() {
    if !require_root() {
        return;
    }
    let env = env("pending");
    let c = env.conn();
    const N: usize = 8000;
    let p = big_device(&c, "big", N);
    let get = dbus::Message::new_method_call(DEST, MGR, "org.freedesktop.DBus.Properties", "Get").unwrap();
    let calls = [
        method(&p, "Establish"),
        get.append2(IFACE, "version"),
        method(&p, "AddDNS").append1(vec!["10.8.0.1".to_string()]),
    ];
    let serials: Vec<u32> = calls.into_iter().map(|m| c.channel().send(m).unwrap()).collect();
    c.channel().flush();
    let mut replies = Vec::new();
    let t0 = std::time::Instant::now();
    while replies.len() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no reply");
        let _ = c.channel().read_write(Some(Duration::from_millis(5)));
        while let Some(m) = c.channel().pop_message() {
            if let Some(i) = m.get_reply_serial().and_then(|s| serials.iter().position(|x| *x == s)) {
                // An error would end in the check below.
                if i == 2 {
                    assert_eq!(env.our_gateway_24s(), N, "AddDNS was answered before every route was in");
                }
                replies.push((i, m));
            }
        }
    }
    let order: Vec<usize> = replies.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, [1, 0, 2], "Get while Establish runs; AddDNS on its device after it");
    assert!(replies.iter().all(|(_, m)| m.msg_type() == dbus::message::MessageType::MethodReturn));
}

/// A client that leaves the bus with thousands of routes has them removed
/// a batch per loop turn, like Destroy, and its link deleted by the
/// sender process: another client's call made meanwhile is answered while
/// the routes are still going, and in the end nothing of the client is
/// left in the kernel.
#[test]
fn a_client_leaving_with_thousands_of_routes_keeps_nobody_waiting() {
    if !require_root() {
        return;
    }
    let env = env("leaving");
    const N: usize = 8000;
    let (leaver, other) = (env.conn(), env.conn());
    let p = big_device(&leaver, "leaver", N);
    let fd = establish(&leaver, &p);
    let tun: String = get_prop(&leaver, &p, "device_name");
    assert_eq!(env.our_gateway_24s(), N);
    drop(leaver);
    // The bus daemon tells the daemon; the removal starts.
    std::thread::sleep(Duration::from_millis(20));
    let _: String = get_prop(&other, MGR, "version");
    let left = env.our_gateway_24s();
    assert!(left > 0 && left < N, "the call was answered only after the removal ({left} routes left)");
    let t0 = std::time::Instant::now();
    while env.our_gateway_24s() > 0 || env.ip("-o link show").contains(&tun) {
        assert!(t0.elapsed() < Duration::from_secs(30), "the leaver's routes or link stay");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(fd);
}

/// Calls held while an operation runs are bounded per UID: a client that
/// floods them (from several connections: the bus daemon bounds each one's
/// pending calls itself) gets the excess refused, to try again, not queued
/// without end.
#[test]
fn calls_held_during_an_establish_are_bounded_per_uid() {
    if !require_root() {
        return;
    }
    let env = env("held");
    let c = env.conn();
    let p = big_device(&c, "held", 8000);
    let floods: Vec<_> = (0..3).map(|_| env.conn()).collect();
    let est = c.channel().send(method(&p, "Establish")).unwrap();
    c.channel().flush();
    let dns = || method(&p, "AddDNS").append1(vec!["10.8.0.1".to_string()]);
    for f in &floods {
        for _ in 0..100 {
            f.channel().send(dns()).unwrap();
        }
        f.channel().flush();
    }
    let (mut ok, mut refused) = (0, Vec::new());
    let t0 = std::time::Instant::now();
    while ok + refused.len() < 300 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no reply");
        for f in &floods {
            let _ = f.channel().read_write(Some(Duration::from_millis(1)));
            while let Some(m) = f.channel().pop_message() {
                match m.msg_type() {
                    dbus::message::MessageType::MethodReturn => ok += 1,
                    dbus::message::MessageType::Error => refused.push(m.read1::<String>().unwrap_or_default()),
                    _ => {}
                }
            }
        }
    }
    let tun = reply_of(&c, est);
    assert_eq!(tun.msg_type(), dbus::message::MessageType::MethodReturn);
    // The calls come in while the Establish runs: a share is held, the rest refused.
    assert!(!refused.is_empty() && ok > 0 && ok <= CALLS_HELD_PER_UID, "{ok} answered, {} refused", refused.len());
    assert!(
        refused.iter().all(|e| e.contains("held calls") && e.contains("per user") && e.contains("try again")),
        "{refused:?}"
    );
}

/// Reads `c` until the reply to `serial` comes.
fn reply_of(c: &dbus::blocking::Connection, serial: u32) -> dbus::Message {
    let t0 = std::time::Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(60), "no reply");
        let _ = c.channel().read_write(Some(Duration::from_millis(5)));
        while let Some(m) = c.channel().pop_message() {
            if m.get_reply_serial() == Some(serial) {
                return m;
            }
        }
    }
}
