//! The daemon listens to the kernel. When the host's path to a protected
//! VPN server or an excluded network changes (a new default gateway, the
//! uplink replaced by another, the uplink down and up), the host routes
//! follow to the new path, never into the tunnel; when someone deletes the
//! daemon's tun, the device object goes and nothing else is touched.
//! Everything runs in the test's own namespaces, the daemon as the
//! unprivileged service user; results are read back with `ip`.

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use common::*;

/// The protected VPN server and an excluded network (TEST-NET-3).
const SERVER: &str = "203.0.113.7";
const EXCLUDED: (&str, u32) = ("203.0.113.128", 25);
const IN_EXCLUDED: &str = "203.0.113.200";
const ROUTE_EXCLUDED: u32 = 64;
const DEVICE_REMOVED: u32 = 2;

fn env(tag: &str) -> Env {
    Env::unprivileged(tag, &["--run-as", "nobody"])
}

struct Sess {
    path: String,
    tun: String,
    _fd: OwnedFd,
}

/// A session redirecting all IPv4 traffic into its tunnel, excluding
/// EXCLUDED, whose server SERVER is protected by a host route.
fn session(env: &Env, c: &dbus::blocking::Connection, net: &str) -> Sess {
    let p = create(c, "roam");
    configure_with_network(c, &p, net);
    let _: () = call(c, &p, "AddNetworks", (vec![(EXCLUDED.0.to_string(), EXCLUDED.1, -1i32, false, true)],)).unwrap();
    set_prop(c, &p, "reroute_ipv4", true).unwrap();
    let fd = establish(c, &p);
    let tun: String = get_prop(c, &p, "device_name");
    let m = method(MGR, "ProtectSocket").append3(SERVER, false, dbus::Path::from(p.as_str()));
    assert!(send(c, m).unwrap().read1::<bool>().unwrap(), "{}", env.log());
    assert_leaves(env, "via 192.0.2.1 dev uplink0", &tun);
    Sess { path: p, tun, _fd: fd }
}

/// `ip route get` for `dst`, as one line.
fn route_get(env: &Env, dst: &str) -> String {
    env.ip(&format!("-4 route get {dst}")).lines().next().unwrap_or("").to_string()
}

/// Traffic to the server and into the excluded network leaves `via`, by
/// our routes (protocol 79), and not through the tunnel `tun`.
fn assert_leaves(env: &Env, via: &str, tun: &str) {
    for dst in [SERVER, IN_EXCLUDED] {
        let r = route_get(env, dst);
        assert!(r.contains(via) && !r.contains(tun), "{dst}: {r}\n{}", env.our_routes());
    }
    assert!(env.has_our_route(SERVER, via), "{}", env.our_routes());
    assert!(env.has_our_route(&format!("{}/{}", EXCLUDED.0, EXCLUDED.1), via), "{}", env.our_routes());
}

/// Runs the change `cmd` in the namespace, then waits until both of our
/// routes read `via`; returns how long that took after the change.
fn change_and_wait(env: &Env, cmd: &str, via: &str) -> Duration {
    let excluded = format!("{}/{}", EXCLUDED.0, EXCLUDED.1);
    change_and_wait_for(env, cmd, &[SERVER, &excluded], via)
}

/// As `change_and_wait`, for our routes to `dsts` (the family of the first).
fn change_and_wait_for(env: &Env, cmd: &str, dsts: &[&str], via: &str) -> Duration {
    let family = if dsts[0].contains(':') { "-6" } else { "-4" };
    // What came before has settled: the figure is this change's alone.
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    env.ip(cmd);
    // One `ip` per look, no sleep: the figure's resolution is one `ip` run.
    let has = |routes: &str, dst: &str| routes.lines().any(|l| l.starts_with(&format!("{dst} {via}")));
    loop {
        let routes = env.ip(&format!("{family} route show table all proto 79"));
        if dsts.iter().all(|d| has(&routes, d)) {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "our routes did not move {via}: {routes}\n{}", env.log());
    }
}

/// The daemon's own figure for the last move (its log line).
fn daemon_figure(env: &Env) -> String {
    env.log()
        .lines()
        .rev()
        .find(|l| l.contains("moved to the host's new path"))
        .and_then(|l| l.split(", ").nth(1))
        .unwrap_or("?")
        .to_string()
}

/// The ROUTE_EXCLUDED events for the server and the excluded network
/// name `gateway`.
fn assert_moved_events(watcher: &dbus::blocking::Connection, tun: &str, gateway: &str) {
    assert_moved_events_for(watcher, tun, gateway, &[SERVER, EXCLUDED.0]);
}

fn assert_moved_events_for(watcher: &dbus::blocking::Connection, tun: &str, gateway: &str, subnets: &[&str]) {
    let ev = signals(watcher, Duration::from_millis(300));
    for &subnet in subnets {
        assert!(
            ev.iter().any(|(k, dev, d)| *k == ROUTE_EXCLUDED
                && dev == tun
                && d.get("subnet").map(String::as_str) == Some(subnet)
                && d.get("gateway").map(String::as_str) == Some(gateway)),
            "no ROUTE_EXCLUDED for {subnet} via {gateway}: {ev:?}"
        );
    }
}

fn report(what: &str, took: Duration, env: &Env) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "ROAMING {what}: routes moved {} ms after the change (daemon: {})",
        took.as_micros() as f64 / 1000.0,
        daemon_figure(env)
    );
}

fn subscribed(env: &Env) -> dbus::blocking::Connection {
    let w = env.conn();
    let _: () = call(&w, MGR, "NotificationSubscribe", (65535u32,)).unwrap();
    w
}

/// A session whose server is protected; then `before` changes the
/// network (given the tun's name), and `change` adds the new path's route
/// (as a DHCP client would): the routes must follow to gateway `gw` on
/// `dev`, with events, never into the tunnel. Returns the routes' text.
fn roams(tag: &str, what: &str, before: impl FnOnce(&Env, &str), change: &str, gw: &str, dev: &str) -> String {
    let env = env(tag);
    let c = env.conn();
    let s = session(&env, &c, "10.97.0.0");
    let watcher = subscribed(&env);
    before(&env, &s.tun);
    let via = format!("via {gw} dev {dev}");
    let took = change_and_wait(&env, change, &via);
    report(what, took, &env);
    assert_leaves(&env, &via, &s.tun);
    assert_moved_events(&watcher, &s.tun, gw);
    env.our_routes()
}

#[test]
fn roaming_follows_a_new_default_gateway() {
    if !require_root() {
        return;
    }
    let second_gateway = |env: &Env, _: &str| {
        sh(&format!("ip -n {}-gw addr add 192.0.2.254/24 dev gw0", env.ns));
    };
    let change = "route replace default via 192.0.2.254 dev uplink0";
    let routes = roams("gw", "new default gateway", second_gateway, change, "192.0.2.254", "uplink0");
    assert!(!routes.contains("192.0.2.1 "), "the old path is gone: {routes}");
}

#[test]
fn roaming_follows_an_uplink_replaced_by_another() {
    if !require_root() {
        return;
    }
    // A second uplink (198.51.100.0/24, gateway .1 in the gateway
    // namespace), and the first goes away.
    let replace = |env: &Env, _: &str| {
        let (ns, gw) = (&env.ns, format!("{}-gw", env.ns));
        sh(&format!(
            "ip -n {ns} link add name uplink1 type veth peer name gw1 && ip -n {ns} link set gw1 netns {gw} && \
             ip -n {gw} addr add 198.51.100.1/24 dev gw1 && ip -n {gw} link set gw1 up && \
             ip -n {ns} addr add 198.51.100.2/24 dev uplink1 && ip -n {ns} link set uplink1 up && \
             ip -n {ns} link del uplink0"
        ));
    };
    let change = "route add default via 198.51.100.1 dev uplink1";
    let routes = roams("uplink", "uplink replaced", replace, change, "198.51.100.1", "uplink1");
    assert!(!routes.contains("uplink0"), "{routes}");
}

#[test]
fn roaming_follows_the_uplink_down_and_up() {
    if !require_root() {
        return;
    }
    let down_and_up = |env: &Env, tun: &str| {
        env.ip("link set uplink0 down");
        // The kernel took our routes with the link; with no path outside
        // the tunnel, none is made up.
        wait_for("the kernel to drop the uplink's routes", || (!env.our_routes().contains("uplink0")).then_some(()));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(env.our_routes().lines().filter(|l| !l.contains(tun)).count(), 0, "{}", env.our_routes());
        env.ip("link set uplink0 up");
    };
    roams(
        "downup",
        "uplink down and up",
        down_and_up,
        "route add default via 192.0.2.1 dev uplink0",
        "192.0.2.1",
        "uplink0",
    );
}

#[test]
fn roaming_follows_a_new_ipv6_default_gateway() {
    if !require_root() {
        return;
    }
    const SERVER6: &str = "2001:db8:ffff::7";
    let env = env("gw6");
    sh(&format!("ip -n {}-gw -6 addr add 2001:db8::fe/64 dev gw0 nodad", env.ns));
    let c = env.conn();
    let p = create(&c, "roam6");
    configure_with_network(&c, &p, "10.97.0.0");
    set_prop(&c, &p, "reroute_ipv6", true).unwrap();
    let _fd = establish(&c, &p);
    let tun: String = get_prop(&c, &p, "device_name");
    let m = method(MGR, "ProtectSocket").append3(SERVER6, true, dbus::Path::from(p.as_str()));
    assert!(send(&c, m).unwrap().read1::<bool>().unwrap(), "{}", env.log());
    assert!(env.has_our_route(SERVER6, "via 2001:db8::1 dev uplink0"), "{}", env.our_routes());
    let watcher = subscribed(&env);
    let via = "via 2001:db8::fe dev uplink0";
    let took = change_and_wait_for(&env, "-6 route replace default via 2001:db8::fe dev uplink0", &[SERVER6], via);
    report("new IPv6 default gateway", took, &env);
    let r = env.ip(&format!("-6 route get {SERVER6}"));
    assert!(r.contains(via) && !r.contains(&tun), "{r}");
    assert!(!env.our_routes().contains("2001:db8::1 "), "the old path is gone: {}", env.our_routes());
    assert_moved_events_for(&watcher, &tun, "2001:db8::fe", &[SERVER6]);
}

#[test]
fn a_policy_rule_for_the_server_is_followed() {
    if !require_root() {
        return;
    }
    let env = env("rule");
    sh(&format!("ip -n {}-gw addr add 192.0.2.254/24 dev gw0", env.ns));
    let c = env.conn();
    let s = session(&env, &c, "10.97.0.0");
    // The host sends the server by its own table from now on: the rule is
    // the change (the table's route alone changes nothing).
    env.ip("route add default via 192.0.2.254 dev uplink0 table 100");
    let took = change_and_wait_for(
        &env,
        &format!("rule add to {SERVER} lookup 100 pref 100"),
        &[SERVER],
        "via 192.0.2.254 dev uplink0",
    );
    report("policy rule", took, &env);
    let r = route_get(&env, SERVER);
    assert!(r.contains("via 192.0.2.254 dev uplink0") && !r.contains(&s.tun), "{r}");
    // The excluded network has no rule: it stays on the main table's path.
    assert!(
        env.has_our_route(&format!("{}/{}", EXCLUDED.0, EXCLUDED.1), "via 192.0.2.1 dev uplink0"),
        "{}",
        env.our_routes()
    );
}

#[test]
fn a_route_an_admin_puts_in_place_of_ours_is_theirs() {
    if !require_root() {
        return;
    }
    let env = env("admin");
    sh(&format!("ip -n {}-gw addr add 192.0.2.254/24 dev gw0", env.ns));
    let c = env.conn();
    let s = session(&env, &c, "10.97.0.0");
    // The administrator replaces our host route with a static one of theirs.
    env.ip(&format!("route replace {SERVER}/32 via 192.0.2.254 dev uplink0 proto static"));
    let admins = format!("{SERVER} via 192.0.2.254 dev uplink0 proto static");
    // The daemon follows it (the kernel's answer) but cannot add its own
    // route under that key: it leaves theirs and forgets its own.
    wait_for("the daemon to give the route up", || env.log().contains("is someone else's now").then_some(()));
    assert!(!env.our_routes().contains(SERVER), "{}", env.our_routes());
    assert!(env.ip(&format!("route show {SERVER}")).starts_with(&admins), "{}", env.ip("route"));
    let _: () = call(&c, &s.path, "Destroy", ()).unwrap();
    assert!(env.ip(&format!("route show {SERVER}")).starts_with(&admins), "theirs stays: {}", env.ip("route"));
    assert!(!live_journal(&env).iter().any(|l| l.contains(SERVER)), "{:?}", live_journal(&env));
}

/// The live entries of the daemon's journal file (the one of the highest
/// generation of the two), as text.
fn live_journal(env: &Env) -> Vec<String> {
    let read = |f: &str| std::fs::read_to_string(env.dir.join("state").join(f)).unwrap_or_default();
    let (a, b) = (read("journal"), read("journal.alt"));
    let (pa, pb) = (ovpn_netcfgd::journal::parse_file(&a), ovpn_netcfgd::journal::parse_file(&b));
    let (_, _, live) = if pa.1 >= pb.1 { pa } else { pb };
    live.iter().map(|u| u.to_string()).collect()
}

/// Someone else does `act` to the tun of a session (deletes or renames it;
/// `act` returns the link's name afterwards, if it still exists): the
/// device object goes, with DEVICE_REMOVED; its next call fails saying
/// `why`; another session and the rest of the namespace are as they were
/// before the session, and nothing of the daemon's is left on the link.
fn loses_its_link(tag: &str, act: impl FnOnce(&Env, &str) -> Option<String>, why: &str) {
    let env = env(tag);
    let (c, other) = (env.conn(), env.conn());
    let b = create(&other, "keep");
    configure_with_network(&other, &b, "10.96.0.0");
    let _b_fd = establish(&other, &b);
    let b_tun: String = get_prop(&other, &b, "device_name");
    let before = env.kernel_snapshot();
    let s = session(&env, &c, "10.97.0.0");
    let watcher = subscribed(&env);
    let t0 = Instant::now();
    let left = act(&env, &s.tun);
    let ev = wait_for("DEVICE_REMOVED", || {
        let ev = signals(&watcher, Duration::from_millis(5));
        ev.iter().any(|(k, dev, _)| *k == DEVICE_REMOVED && *dev == s.tun).then_some(ev)
    });
    let took = t0.elapsed();
    assert!(ev.iter().all(|(_, dev, _)| *dev == s.tun), "events for that device only: {ev:?}");
    let _ = writeln!(std::io::stderr().lock(), "LINK {tag}: DEVICE_REMOVED {} ms after the change", took.as_millis());
    // The host routes it held went with the device object.
    let now = env.kernel_snapshot();
    let others = |snap: &str| -> Vec<String> {
        snap.lines().filter(|l| !left.as_ref().is_some_and(|n| l.contains(n.as_str()))).map(String::from).collect()
    };
    assert_eq!(others(&now), others(&before), "{}", env.log());
    if let Some(n) = &left {
        let on_it = format!("{}{}", env.ip(&format!("-o addr show dev {n}")), env.ip(&format!("route show dev {n}")));
        assert!(!on_it.contains("10.9") && !env.our_routes().contains(n.as_str()), "{on_it}");
    }
    assert!(route_get(&env, "10.96.0.1").contains(&b_tun));
    // Its journal entries are closed; the other session's stay.
    let live = live_journal(&env);
    assert!(live.iter().any(|l| l.ends_with(&format!(" {b_tun}"))), "{live:?}");
    assert!(!live.iter().any(|l| l.ends_with(&format!(" {}", s.tun)) || l.contains("203.0.113")), "{live:?}");
    let e = call::<_, ()>(&c, &s.path, "Disable", ()).unwrap_err();
    assert_eq!(e.0, "net.openvpn.v3.netcfg.error.DeviceRemoved", "{e:?}");
    assert!(e.1.contains(&s.tun) && e.1.contains(why), "{e:?}");
    // Someone without access to the device learns nothing about it.
    let (ok, out) = busctl_as(65534, &env.addr, &format!("call {DEST} {} {IFACE} Disable", s.path));
    assert!(!ok && out.contains("Object does not exist"), "{out}");
    // Destroy's work is done: it succeeds, once.
    let _: () = call(&c, &s.path, "Destroy", ()).unwrap();
    let e = call::<_, ()>(&c, &s.path, "Destroy", ()).unwrap_err();
    assert_eq!(e.0, "org.freedesktop.DBus.Error.UnknownObject", "{e:?}");
    let _: () = call(&other, &b, "Disable", ()).unwrap();
}

#[test]
fn a_tun_deleted_by_someone_else_is_forgotten_and_nothing_else_touched() {
    if !require_root() {
        return;
    }
    loses_its_link(
        "tundel",
        |env, tun| {
            env.ip(&format!("link del {tun}"));
            None
        },
        "was removed",
    );
}

#[test]
fn a_tun_renamed_by_someone_else_is_left_to_them_bare() {
    if !require_root() {
        return;
    }
    loses_its_link(
        "tunren",
        |env, tun| {
            env.ip(&format!("link set {tun} down"));
            env.ip(&format!("link set {tun} name renamed0"));
            Some("renamed0".to_string())
        },
        "renamed to renamed0",
    );
}
