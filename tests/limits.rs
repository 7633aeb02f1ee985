//! Bounded work, per-UID limits and who may see a device. The daemon runs
//! as the unprivileged service user; other users (the system accounts
//! daemon, uid 1, and bin, uid 2: the bus refuses UIDs without an account)
//! are played by tests/rigs/bus-agent.py (one bus connection, under
//! setpriv) and busctl.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

use ovpn_netcfgd::limits::{DEVICES_PER_UID, DNS_SERVERS_PER_DEVICE, NETWORKS_PER_TURN, NETWORKS_PER_UID};

/// A client of another UID with one long-lived bus connection.
struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    fn new(env: &Env, uid: u32) -> Agent {
        let mut child = Command::new("setpriv")
            .args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups", "/usr/bin/python3"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rigs/bus-agent.py"))
            .arg(&env.addr)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bus-agent.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Agent { child, stdin, stdout }
    }

    fn say(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        let mut out = String::new();
        self.stdout.read_line(&mut out).unwrap();
        assert!(!out.is_empty(), "bus-agent.py ended after: {line}");
        out.trim_end().to_string()
    }

    /// A method call; "ok <json>" or "err <name> <message>".
    fn call(&mut self, path: &str, iface: &str, method: &str, sig: &str, args: &str) -> String {
        self.say(&format!("call {path} {iface} {method} {sig} {args}"))
    }

    fn netcfg(&mut self, path: &str, method: &str, sig: &str, args: &str) -> String {
        self.call(path, IFACE, method, sig, args)
    }

    /// NetworkChange kinds received so far, with the device object path.
    fn signals(&mut self) -> String {
        self.say("signals")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn need_gi() -> bool {
    let ok = Command::new("/usr/bin/python3").args(["-c", "import gi"]).status().is_ok_and(|s| s.success());
    if !ok {
        skip("/usr/bin/python3 with python3-gi is not installed (make deps installs it)");
    }
    ok
}

#[test]
fn a_60000_entry_add_dns_is_refused_before_the_work_and_keeps_nobody_waiting() {
    if !require_root() {
        return;
    }
    let env = Env::new("dns60k");
    let first = env.conn();
    let second = env.conn();
    let p = create(&first, "big");
    let list: Vec<String> = (0..60_000).map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)).collect();
    let mut waits = Vec::new();
    for _ in 0..5 {
        waits.push(wait_beside(&first, &second, method(&p, "AddDNS").append1(list.clone())).0);
    }
    waits.sort();
    eprintln!("longest wait of a second client during a 60,000-entry AddDNS: {waits:?}");
    // Checked after the work, this was 3.5-10 s; the bound only catches that
    // (the 50 ms target is `make bench`'s figure, not a test's: load varies).
    assert!(waits[2] <= Duration::from_secs(1), "median wait {:?} (all: {waits:?})", waits[2]);
    // Refused as a whole: the answer names the limit, nothing was stored.
    let e = call::<_, ()>(&first, &p, "AddDNS", (list,)).unwrap_err();
    assert!(e.0.ends_with("InvalidArgs") && e.1.contains(&format!("at most {DNS_SERVERS_PER_DEVICE}")), "{e:?}");
    assert!(get_prop::<Vec<String>>(&first, &p, "dns_name_servers").is_empty());
    // The largest list the daemon accepts is accepted, duplicates folded.
    let most: Vec<String> = (0..DNS_SERVERS_PER_DEVICE).map(|i| format!("10.9.0.{}", i + 1)).collect();
    let _: () = call(&first, &p, "AddDNS", (most.clone(),)).unwrap();
    let _: () = call(&first, &p, "AddDNS", (most[..3].to_vec(),)).unwrap();
    assert_eq!(get_prop::<Vec<String>>(&first, &p, "dns_name_servers"), most);
    let e = call::<_, ()>(&first, &p, "AddDNS", (vec!["10.9.1.1".to_string()],)).unwrap_err();
    assert!(e.1.contains("at most"), "{e:?}");
    // The same for search domains.
    let names: Vec<String> = (0..60_000).map(|i| format!("d{i}.example")).collect();
    let e = call::<_, ()>(&first, &p, "AddDNSSearch", (names,)).unwrap_err();
    assert!(e.0.ends_with("InvalidArgs") && e.1.contains("at most"), "{e:?}");
}

#[test]
fn networks_are_bounded_per_uid_across_its_devices() {
    if !require_root() || !need_gi() {
        return;
    }
    let env = Env::new("nets-uid");
    let c = env.conn();
    let nets = |n: usize, base: usize| -> Vec<(String, u32, i32, bool, bool)> {
        (base..base + n).map(|i| (format!("10.{}.{}.0", 64 + i / 256, i % 256), 24u32, -1i32, false, false)).collect()
    };
    let a = create(&c, "n1");
    let b = create(&c, "n2");
    let _: () = call(&c, &a, "AddNetworks", (nets(NETWORKS_PER_UID - 10, 0),)).unwrap();
    // One more than the share left, on another device of the same UID.
    let e = call::<_, ()>(&c, &b, "AddNetworks", (nets(11, 5000),)).unwrap_err();
    assert!(e.1.contains("per user"), "{e:?}");
    let _: () = call(&c, &b, "AddNetworks", (nets(10, 5000),)).unwrap();
    // Another UID still has its whole share.
    let mut other = Agent::new(&env, 1);
    let r = other.netcfg(MGR, "CreateVirtualInterface", "s", r#"["other"]"#);
    let path =
        r.strip_prefix("ok [\"").and_then(|s| s.strip_suffix("\"]")).unwrap_or_else(|| panic!("{r}")).to_string();
    let list: Vec<String> = (0..NETWORKS_PER_UID)
        .map(|i| format!("[\"10.{}.{}.0\", 24, -1, false, false]", 200 + i / 256, i % 256))
        .collect();
    let r = other.netcfg(&path, "AddNetworks", "a(suibb)", &format!("[[{}]]", list.join(",")));
    assert_eq!(r, "ok []", "{}", env.log());
}

/// A list longer than a turn's worth is decoded over several turns of the
/// loop; a bad element anywhere still refuses the whole list, and nothing
/// of it is kept (what Establish installs is read back from the kernel).
#[test]
fn a_long_network_list_with_one_bad_element_keeps_nothing() {
    if !require_root() {
        return;
    }
    let env = Env::new("nets-long");
    let c = env.conn();
    let n = NETWORKS_PER_TURN * 3;
    // Other networks each time: a part of the bad list kept would show.
    let nets = |base: usize, bad: Option<usize>| -> Vec<(String, u32, i32, bool, bool)> {
        (0..n)
            .map(|i| {
                let host = if Some(i) == bad { 1 } else { 0 }; // host bits set: refused
                (format!("10.{}.{}.{host}", base + i / 256, i % 256), 24u32, -1i32, false, false)
            })
            .collect()
    };
    let p = create(&c, "long");
    set_prop(&c, &p, "layer", 3u32).unwrap();
    let _: () = call(&c, &p, "AddIPAddress", ("10.98.0.2", 24u32, "10.98.0.1", false)).unwrap();
    let e = call::<_, ()>(&c, &p, "AddNetworks", (nets(64, Some(n - 5)),)).unwrap_err();
    assert!(e.0.ends_with("InvalidArgs") && e.1.contains("host bits"), "{e:?}");
    let _: () = call(&c, &p, "AddNetworks", (nets(128, None),)).unwrap();
    let _fd = establish(&c, &p);
    assert_eq!(env.our_gateway_24s(), n);
}

#[test]
fn one_uid_at_its_device_limit_while_another_still_creates() {
    if !require_root() {
        return;
    }
    let env = Env::new("dev-uid");
    let c = env.conn();
    for i in 0..DEVICES_PER_UID {
        create(&c, &format!("d{i}"));
    }
    let e = call::<_, (dbus::Path<'static>,)>(&c, MGR, "CreateVirtualInterface", ("one-more",)).unwrap_err();
    assert!(e.1.contains("per user"), "{e:?}");
    // Another user is not affected, and can go on creating.
    for i in 0..3 {
        let (ok, out) =
            busctl_as(2, &env.addr, &format!("call {DEST} {MGR} {IFACE} CreateVirtualInterface s other{i}"));
        assert!(ok && out.starts_with("o \"/net/openvpn/v3/netcfg/"), "{out}\n{}", env.log());
    }
    // And the first UID gets its room back when one of its devices goes.
    let (list,): (Vec<dbus::Path<'static>>,) = call(&c, MGR, "FetchInterfaceList", ()).unwrap();
    let _: () = call(&c, &list[0], "Destroy", ()).unwrap();
    create(&c, "one-more");
}

#[test]
fn another_uid_neither_hears_nor_reads_a_device_that_owner_and_root_can() {
    if !require_root() || !need_gi() {
        return;
    }
    let env = Env::new("visible");
    let root = env.conn();
    let mut owner = Agent::new(&env, 1);
    let mut stranger = Agent::new(&env, 2);
    let _: () = call(&root, MGR, "NotificationSubscribe", (2047u32,)).unwrap();
    for a in [&mut owner, &mut stranger] {
        assert_eq!(a.netcfg(MGR, "NotificationSubscribe", "u", "[2047]"), "ok []");
    }
    let r = owner.netcfg(MGR, "CreateVirtualInterface", "s", r#"["mine"]"#);
    let p = r.strip_prefix("ok [\"").and_then(|s| s.strip_suffix("\"]")).unwrap_or_else(|| panic!("{r}")).to_string();
    assert_eq!(owner.say(&format!("set {p} layer - u 3")), "ok []");
    assert_eq!(owner.netcfg(&p, "AddIPAddress", "susb", r#"["10.98.0.2", 24, "10.98.0.1", false]"#), "ok []");
    assert_eq!(owner.netcfg(&p, "AddNetworks", "a(suibb)", r#"[[["10.97.0.0", 24, -1, false, false]]]"#), "ok []");
    let r = owner.netcfg(&p, "Establish", "-", "");
    assert!(r.starts_with("ok"), "{r}\n{}", env.log());
    // The device is real: read back from the kernel.
    let name: String = get_prop(&root, &p, "device_name");
    assert!(env.extra_links().contains(&name), "{:?}", env.extra_links());
    assert!(env.our_routes().contains(&format!("10.97.0.0/24 via 10.98.0.1 dev {name}")), "{}", env.our_routes());

    // Events: the owner and root hear DEVICE_ADDED, IPADDR_ADDED, ROUTE_ADDED; the stranger nothing.
    let heard = |a: &mut Agent| a.signals();
    let want = format!(r#"signals [[1, "{name}", "{p}"], [4, "{name}", "{p}"], [16, "{name}", "{p}"]]"#);
    let t0 = Instant::now();
    while heard(&mut owner) != want {
        assert!(t0.elapsed() < Duration::from_secs(5), "owner heard {}", heard(&mut owner));
        std::thread::sleep(Duration::from_millis(20));
    }
    let kinds: Vec<u32> = signals(&root, Duration::from_millis(300)).iter().map(|s| s.0).collect();
    assert_eq!(kinds, [1, 4, 16]);
    assert_eq!(heard(&mut stranger), "signals []");

    // Properties: owner and root read them; the stranger is refused, one by
    // one or all at once, and is not shown the device in Introspect.
    let props = "org.freedesktop.DBus.Properties";
    let get = |a: &mut Agent| a.call(&p, props, "Get", "ss", r#"["net.openvpn.v3.netcfg", "device_name"]"#);
    assert_eq!(get(&mut owner), format!(r#"ok ["{name}"]"#));
    let r = get(&mut stranger);
    assert!(r.starts_with("err net.openvpn.v3.netcfg.error.AccessDenied"), "{r}");
    let r = stranger.call(&p, props, "GetAll", "s", r#"["net.openvpn.v3.netcfg"]"#);
    assert!(r.starts_with("err net.openvpn.v3.netcfg.error.AccessDenied"), "{r}");
    let (ok, out) = busctl_as(2, &env.addr, &format!("get-property {DEST} {p} {IFACE} owner"));
    assert!(!ok && out.contains("may not read"), "{out}");
    let leaf = p.rsplit('/').next().unwrap();
    let r = stranger.call(MGR, "org.freedesktop.DBus.Introspectable", "Introspect", "-", "");
    assert!(r.starts_with("ok") && !r.contains(leaf), "{r}");
    let r = owner.call(MGR, "org.freedesktop.DBus.Introspectable", "Introspect", "-", "");
    assert!(r.contains(leaf), "{r}");
    assert_eq!(get_prop::<u32>(&root, &p, "owner"), 1);

    // A property change is not broadcast: the stranger, listening for
    // every PropertiesChanged, hears nothing of it; the owner does.
    set_prop(&root, &p, "mtu", 1400u16).unwrap();
    let t0 = Instant::now();
    while !owner.say("changed").contains(r#"["mtu"]"#) {
        assert!(t0.elapsed() < Duration::from_secs(5), "owner heard {}", owner.say("changed"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stranger.say("changed"), "changed []");

    // Destroy: the removal events go the same way.
    assert_eq!(owner.netcfg(&p, "Destroy", "-", ""), "ok []");
    let kinds: Vec<u32> = signals(&root, Duration::from_millis(300)).iter().map(|s| s.0).collect();
    assert_eq!(kinds, [32, 8, 2]);
    let t0 = Instant::now();
    while !heard(&mut owner).contains("[2, ") {
        assert!(t0.elapsed() < Duration::from_secs(5), "owner heard {}", heard(&mut owner));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(heard(&mut stranger), "signals []");
    assert_eq!(env.our_routes(), "");
}

#[test]
fn tun_devices_kept_after_destroy_count_against_their_uid() {
    if !require_root() {
        return;
    }
    let env = Env::new("orphans");
    let c = env.conn();
    let mut held = Vec::new();
    for i in 0..DEVICES_PER_UID {
        let p = create(&c, &format!("o{i}"));
        set_prop(&c, &p, "layer", 3u32).unwrap();
        held.push(establish(&c, &p));
        // As the real client: Destroy, and the tun fd stays open a while.
        let _: () = call(&c, &p, "Destroy", ()).unwrap();
    }
    assert_eq!(env.extra_links().len(), DEVICES_PER_UID, "the kernel still has every tun device");
    let e = call::<_, (dbus::Path<'static>,)>(&c, MGR, "CreateVirtualInterface", ("one-more",)).unwrap_err();
    assert!(e.1.contains("per user"), "{e:?}");
    // Closing the fds removes the devices, and the room comes back.
    held.clear();
    wait_for("the tun devices to go", || env.extra_links().is_empty().then_some(()));
    create(&c, "one-more");
}
