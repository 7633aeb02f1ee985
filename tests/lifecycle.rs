//! Socket protection, cleanup in every situation, crash recovery, least
//! privilege, idle exit and D-Bus activation — all against the real daemon
//! in namespaces of our own.

mod common;

use std::net::UdpSocket;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A server address behind the fake gateway: on the gateway namespace's lo.
fn add_servers(env: &Env) {
    let gw = format!("{}-gw", env.ns);
    sh(&format!("ip -n {gw} addr add 203.0.113.5/32 dev lo && ip -n {gw} -6 addr add 2001:db8:ffff::5/128 dev lo"));
    sh(&format!("ip -n {gw} route add 192.0.2.0/24 dev gw0 2>/dev/null || true"));
}

fn udp_in(ns: &str, v6: bool) -> UdpSocket {
    in_ns(ns, move || UdpSocket::bind(if v6 { "[::]:0" } else { "0.0.0.0:0" }).unwrap())
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
    t0.elapsed()
}

#[test]
fn host_route_protection_behind_gateway_and_on_link_both_families() {
    if !require_root() {
        return;
    }
    let env = Env::new("hostroute");
    add_servers(&env);
    let c = env.conn();
    let p = create(&c, "hr");
    for (remote, v6) in
        [("203.0.113.5", false), ("192.0.2.1", false), ("2001:db8:ffff::5", true), ("2001:db8::1", true)]
    {
        let s = udp_in(&env.ns, v6);
        assert!(protect(&c, remote, v6, &p, Some(s.into())).unwrap(), "{remote}");
    }
    let r = env.our_routes();
    assert!(r.contains("203.0.113.5 via 192.0.2.1 dev uplink0"), "{r}");
    assert!(env.has_our_route("192.0.2.1", "dev uplink0"), "on-link server gets an on-link host route: {r}");
    assert!(r.contains("2001:db8:ffff::5 via 2001:db8::1 dev uplink0"), "{r}");
    assert!(env.has_our_route("2001:db8::1", "dev uplink0"), "{r}");
    // The tunnel takes the default routes; the host routes keep the server reachable.
    configure_like_real_client(&c, &p);
    set_prop(&c, &p, "reroute_ipv4", true).unwrap();
    set_prop(&c, &p, "reroute_ipv6", true).unwrap();
    let _fd = establish(&c, &p);
    let got = env.ip("route get 203.0.113.5");
    assert!(got.contains("via 192.0.2.1 dev uplink0"), "{got}");
    let got = env.ip("route get 203.0.113.77");
    assert!(got.contains("dev tun"), "other traffic goes into the tunnel: {got}");
    // Owned by the device: gone with it.
    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    assert_eq!(env.our_routes(), "");
}

#[test]
fn protection_follows_the_kernel_route_outside_the_tunnel() {
    if !require_root() {
        return;
    }
    let env = Env::with_args("protafter", &["--set-somark", "119"]);
    add_servers(&env);
    // The admin's policy: sockets marked 119 reach 203.0.113.0/24 via another router.
    env.ip("rule add fwmark 119 lookup 100 priority 100");
    env.ip("route add 203.0.113.0/24 via 192.0.2.3 dev uplink0 table 100");
    let c = env.conn();
    let p = create(&c, "pa");
    configure_like_real_client(&c, &p);
    set_prop(&c, &p, "reroute_ipv4", true).unwrap();
    set_prop(&c, &p, "reroute_ipv6", true).unwrap();
    let _fd = establish(&c, &p);
    // Protected after the redirect: the kernel's answer is the tunnel, so
    // the route outside it is used.
    assert!(env.ip("route get 198.51.100.9").contains("dev tun"), "precondition: traffic goes into the tunnel");
    for (remote, v6) in [("198.51.100.9", false), ("2001:db8:ffff::5", true)] {
        assert!(protect(&c, remote, v6, &p, Some(udp_in(&env.ns, v6).into())).unwrap(), "{remote}");
    }
    assert!(env.has_our_route("198.51.100.9", "via 192.0.2.1 dev uplink0"), "{}", env.our_routes());
    assert!(env.has_our_route("2001:db8:ffff::5", "via 2001:db8::1 dev uplink0"), "{}", env.our_routes());
    // The socket's mark selects the admin's table: the host route follows it.
    let s = udp_in(&env.ns, false);
    assert!(protect(&c, "203.0.113.9", false, &p, Some(s.try_clone().unwrap().into())).unwrap());
    assert_eq!(nix::sys::socket::getsockopt(&s.as_fd(), nix::sys::socket::sockopt::Mark).unwrap(), 119);
    assert!(env.has_our_route("203.0.113.9", "via 192.0.2.3 dev uplink0"), "{}", env.our_routes());
    // A server on this host itself needs no route.
    let before = env.our_routes();
    assert!(protect(&c, "192.0.2.2", false, &p, Some(udp_in(&env.ns, false).into())).unwrap());
    assert_eq!(env.our_routes(), before);
    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    assert_eq!(env.our_routes(), "");
}

#[test]
fn a_host_route_two_owners_share_stays_until_the_last_leaves() {
    if !require_root() {
        return;
    }
    let env = Env::new("protshare");
    add_servers(&env);
    let (c1, c2) = (env.conn(), env.conn());
    let p1 = create(&c1, "sh1");
    let p2 = create(&c2, "sh2");
    let count = || env.our_routes().lines().filter(|l| l.starts_with("203.0.113.5 ")).count();
    assert!(protect(&c1, "203.0.113.5", false, &p1, None).unwrap());
    assert!(protect(&c2, "203.0.113.5", false, &p2, None).unwrap());
    assert!(protect(&c2, "203.0.113.5", false, "/", None).unwrap());
    assert_eq!(count(), 1, "{}", env.our_routes());
    let _: () = call(&c1, &p1, "Destroy", ()).unwrap();
    assert_eq!(count(), 1, "the other owners still need it: {}", env.our_routes());
    let _: () = call(&c2, &p2, "Destroy", ()).unwrap();
    assert_eq!(count(), 1, "the client-owned protection still needs it");
    let _: () = call(&c2, MGR, "Cleanup", ()).unwrap();
    assert_eq!(env.our_routes(), "");
}

#[test]
fn protect_socket_closes_every_fd_it_receives() {
    if !require_root() {
        return;
    }
    let mut env = Env::with_args("protfds", &["--set-somark", "7"]);
    add_servers(&env);
    let c = env.conn();
    let pid = env.daemon.as_ref().unwrap().id();
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let before = fds();
    // Two fds: refused by signature.
    let m = method(MGR, "ProtectSocket").append3("203.0.113.5", false, dbus::Path::from("/"));
    let m = m.append2(OwnedFd::from(udp_in(&env.ns, false)), OwnedFd::from(udp_in(&env.ns, false)));
    let e = send(&c, m).unwrap_err();
    assert!(e.0.ends_with("InvalidArgs") && e.1.contains("sbohh"), "{e:?}");
    // Not a socket: SO_MARK fails, the error says so.
    let (r, _w) = nix::unistd::pipe().unwrap();
    let e = protect(&c, "203.0.113.5", false, "/", Some(r)).unwrap_err();
    assert!(e.1.contains("SO_MARK"), "{e:?}");
    assert_eq!(env.our_routes(), "", "nothing was protected");
    // A good one.
    assert!(protect(&c, "203.0.113.5", false, "/", Some(udp_in(&env.ns, false).into())).unwrap());
    assert!(env.daemon_alive());
    assert_eq!(fds(), before, "every received fd was closed");
}

#[test]
fn client_owned_protection_goes_with_cleanup() {
    if !require_root() {
        return;
    }
    let env = Env::new("protclean");
    add_servers(&env);
    let c = env.conn();
    assert!(protect(&c, "203.0.113.5", false, "/", None).unwrap(), "host-route needs no fd");
    assert!(env.our_routes().contains("203.0.113.5"));
    let _: () = call(&c, MGR, "Cleanup", ()).unwrap();
    assert_eq!(env.our_routes(), "");
}

#[test]
fn bind_device_and_somark() {
    if !require_root() {
        return;
    }
    let env = Env::with_args("binddev", &["--redirect-method", "bind-device", "--set-somark", "4242"]);
    add_servers(&env);
    let c = env.conn();
    // Behind the gateway and on-link, both families.
    for (remote, v6) in
        [("203.0.113.5", false), ("192.0.2.1", false), ("2001:db8:ffff::5", true), ("2001:db8::1", true)]
    {
        let s = udp_in(&env.ns, v6);
        assert!(protect(&c, remote, v6, "/", Some(s.try_clone().unwrap().into())).unwrap());
        let dev = nix::sys::socket::getsockopt(&s.as_fd(), nix::sys::socket::sockopt::BindToDevice).unwrap();
        assert_eq!(dev.to_str(), Some("uplink0"), "{remote}");
        let mark = nix::sys::socket::getsockopt(&s.as_fd(), nix::sys::socket::sockopt::Mark).unwrap();
        assert_eq!(mark, 4242);
    }
    assert_eq!(env.our_routes(), "", "bind-device adds no routes");
    let e = protect(&c, "203.0.113.5", false, "/", None).unwrap_err();
    assert!(e.1.contains("fd"), "{e:?}");
    // A second uplink that carries only 198.51.100.0/24: the socket is bound
    // to the device of the route, not to the default one.
    let gw = format!("{}-gw", env.ns);
    sh(&format!(
        "ip -n {ns} link add uplink1 type veth peer name gw1 && ip -n {ns} link set gw1 netns {gw} && \
         ip -n {ns} link set uplink1 up && ip -n {gw} link set gw1 up && \
         ip -n {ns} addr add 198.18.0.2/24 dev uplink1 && ip -n {gw} addr add 198.18.0.1/24 dev gw1 && \
         ip -n {ns} route add 198.51.100.0/24 via 198.18.0.1 dev uplink1",
        ns = env.ns
    ));
    for (remote, dev) in [("198.51.100.7", "uplink1"), ("203.0.113.5", "uplink0")] {
        let s = udp_in(&env.ns, false);
        assert!(protect(&c, remote, false, "/", Some(s.try_clone().unwrap().into())).unwrap());
        let got = nix::sys::socket::getsockopt(&s.as_fd(), nix::sys::socket::sockopt::BindToDevice).unwrap();
        assert_eq!(got.to_str(), Some(dev), "{remote}");
    }
}

#[test]
fn redirect_method_none_touches_nothing_but_still_marks() {
    if !require_root() {
        return;
    }
    let env = Env::with_args("rmnone", &["--redirect-method", "none", "--set-somark", "77"]);
    add_servers(&env);
    let c = env.conn();
    let p = create(&c, "none");
    let s = udp_in(&env.ns, false);
    assert!(protect(&c, "203.0.113.5", false, &p, Some(s.try_clone().unwrap().into())).unwrap());
    assert_eq!(nix::sys::socket::getsockopt(&s.as_fd(), nix::sys::socket::sockopt::Mark).unwrap(), 77);
    assert!(nix::sys::socket::getsockopt(&s.as_fd(), nix::sys::socket::sockopt::BindToDevice).unwrap().is_empty());
    // No redirect routes either (as the reference): reroute asks for nothing here.
    configure_like_real_client(&c, &p);
    set_prop(&c, &p, "reroute_ipv4", true).unwrap();
    let _fd = establish(&c, &p);
    let r = env.our_routes();
    assert!(!r.contains("0.0.0.0/1") && !r.contains("203.0.113.5"), "{r}");
    assert!(r.contains("10.97.0.0/24"), "{r}");
}

#[test]
fn fwmark_ipv6_and_on_link_servers() {
    if !require_root() {
        return;
    }
    let env = Env::with_args("fwmark6", &["--redirect-method", "fwmark", "--set-somark", "4660"]);
    add_servers(&env);
    let c = env.conn();
    let p = create(&c, "fw6");
    for (remote, v6) in [("2001:db8:ffff::5", true), ("192.0.2.1", false), ("2001:db8::1", true)] {
        let s = udp_in(&env.ns, v6);
        assert!(protect(&c, remote, v6, &p, Some(s.try_clone().unwrap().into())).unwrap());
    }
    assert!(env.ip("-6 rule show").contains("fwmark 0x1234 lookup 4660 proto 79"), "{}", env.ip("-6 rule show"));
    let t6 = env.ip("-6 route show table 4660");
    assert!(t6.contains("2001:db8:ffff::5 via 2001:db8::1 dev uplink0"), "{t6}");
    assert!(t6.lines().any(|l| l.starts_with("2001:db8::1 dev uplink0")), "on-link server: {t6}");
    assert!(env.ip("route show table 4660").lines().any(|l| l.starts_with("192.0.2.1 dev uplink0")));
    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    assert!(!env.ip("-6 rule show").contains("fwmark"));
    assert_eq!(env.ip("-6 route show table 4660"), "");
}

#[test]
fn fwmark_rules_steer_marked_traffic_past_the_tunnel() {
    if !require_root() {
        return;
    }
    let env = Env::with_args("fwmark", &["--redirect-method", "fwmark", "--set-somark", "51820"]);
    add_servers(&env);
    let c = env.conn();
    let p = create(&c, "fw");
    let sock = udp_in(&env.ns, false);
    assert!(protect(&c, "203.0.113.5", false, &p, Some(sock.try_clone().unwrap().into())).unwrap());
    let rules = env.ip("rule show");
    assert!(rules.contains("32700:\tfrom all fwmark 0xca6c lookup 51820 proto 79"), "{rules}");
    let t = env.ip("route show table 51820");
    assert!(t.contains("203.0.113.5 via 192.0.2.1 dev uplink0"), "{t}");
    assert!(!env.ip("route show").contains("203.0.113.5"), "no host route in main");
    configure_like_real_client(&c, &p);
    set_prop(&c, &p, "reroute_ipv4", true).unwrap();
    let _fd = establish(&c, &p);
    // A listener on the server address, inside the gateway namespace.
    let gw = format!("{}-gw", env.ns);
    let listener = in_ns(&gw, || UdpSocket::bind("203.0.113.5:0").unwrap());
    listener.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let to = listener.local_addr().unwrap();
    let plain = udp_in(&env.ns, false);
    plain.send_to(b"unmarked", to).unwrap();
    sock.send_to(b"marked", to).unwrap(); // the protected socket carries mark 51820
    let mut buf = [0u8; 16];
    let (n, _) = listener.recv_from(&mut buf).expect("the marked packet leaves via the uplink");
    assert_eq!(&buf[..n], b"marked", "the unmarked packet went into the tunnel");
    assert!(listener.recv_from(&mut buf).is_err(), "nothing else arrives");
    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    assert!(!env.ip("rule show").contains("fwmark"), "rules go with the last device");
    assert_eq!(env.ip("route show table 51820"), "");
}

#[test]
fn client_sigkill_after_establish_cleans_everything() {
    if !require_root() {
        return;
    }
    let env = Env::new("kill-after");
    add_servers(&env);
    let before = env.kernel_snapshot();
    let Some(GlibClient { child: mut client, dev, .. }) = glib_client(&env) else { return };
    assert!(env.extra_links().contains(&dev));
    assert!(env.our_routes().contains("198.51.100.0/24 via 192.0.2.1"), "exclude route via the uplink is there");
    assert!(env.has_our_route("192.0.2.1", "dev uplink0"), "the client's protected socket got its host route");
    client.kill().unwrap();
    let t0 = Instant::now();
    client.wait().unwrap();
    let took = wait_until("cleanup after SIGKILL", Duration::from_secs(5), || env.kernel_snapshot() == before);
    eprintln!("client SIGKILL -> everything gone in {:?}", took.max(t0.elapsed()));
    let c = env.conn();
    let (list,): (Vec<dbus::Path<'static>>,) = call(&c, MGR, "FetchInterfaceList", ()).unwrap();
    assert!(list.is_empty());
}

#[test]
fn client_sigkill_before_establish_removes_its_device() {
    if !require_root() {
        return;
    }
    let env = Env::new("kill-before");
    let script = format!(
        "import sys,time\nfrom gi.repository import Gio,GLib\n\
         c=Gio.DBusConnection.new_for_address_sync('{}',Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT|Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,None,None)\n\
         c.call_sync('net.openvpn.v3.netcfg','/net/openvpn/v3/netcfg','net.openvpn.v3.netcfg','CreateVirtualInterface',GLib.Variant('(s)',('early',)),None,0,5000,None)\n\
         print('READY',flush=True)\ntime.sleep(60)\n",
        env.addr
    );
    let mut child = match Command::new("/usr/bin/python3").args(["-c", &script]).stdout(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(_) => {
            skip("no /usr/bin/python3");
            return;
        }
    };
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "READY");
    let c = env.conn();
    let count = || {
        let (l,): (Vec<dbus::Path<'static>>,) = call(&c, MGR, "FetchInterfaceList", ()).unwrap();
        l.len()
    };
    assert_eq!(count(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("device of a dead client removed", Duration::from_secs(5), || count() == 0);
}

#[test]
fn cleanup_after_the_caller_left_the_bus() {
    if !require_root() {
        return;
    }
    let env = Env::new("cleanup-gone");
    // Creates a device, fires Cleanup without waiting and exits at once,
    // as the openvpn3 client does on shutdown.
    let script = format!(
        "from gi.repository import Gio,GLib\n\
         c=Gio.DBusConnection.new_for_address_sync('{}',Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT|Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,None,None)\n\
         c.call_sync('net.openvpn.v3.netcfg','/net/openvpn/v3/netcfg','net.openvpn.v3.netcfg','CreateVirtualInterface',GLib.Variant('(s)',('gone',)),None,0,5000,None)\n\
         m=Gio.DBusMessage.new_method_call('net.openvpn.v3.netcfg','/net/openvpn/v3/netcfg','net.openvpn.v3.netcfg','Cleanup')\n\
         c.send_message(m,Gio.DBusSendMessageFlags.NONE)\nc.flush_sync(None)\n",
        env.addr
    );
    let Ok(mut child) = Command::new("/usr/bin/python3").args(["-c", &script]).spawn() else {
        skip("no /usr/bin/python3");
        return;
    };
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let c = env.conn();
    wait_until("Cleanup of a caller that left", Duration::from_secs(5), || {
        let (l,): (Vec<dbus::Path<'static>>,) = call(&c, MGR, "FetchInterfaceList", ()).unwrap();
        l.is_empty()
    });
    // Removed by Cleanup itself (the caller's PID was remembered), not only
    // later because its connection closed.
    let line = format!("cleaning up resources for pid {pid} (1 device(s))");
    assert!(env.log().contains(&line), "{}", env.log());
}

#[test]
fn subscriber_that_leaves_is_dropped() {
    if !require_root() {
        return;
    }
    let env = Env::new("subgone");
    let c = env.conn();
    {
        let s = env.conn();
        let _: () = call(&s, MGR, "NotificationSubscribe", (2047u32,)).unwrap();
        let (l,): (Vec<(String, u32)>,) = call(&c, MGR, "NotificationSubscriberList", ()).unwrap();
        assert_eq!(l.len(), 1);
    } // the subscriber's connection closes here
    wait_until("subscription dropped", Duration::from_secs(5), || {
        let (l,): (Vec<(String, u32)>,) = call(&c, MGR, "NotificationSubscriberList", ()).unwrap();
        l.is_empty()
    });
}

#[test]
fn sigterm_with_three_devices_and_protections_leaves_nothing() {
    if !require_root() {
        return;
    }
    let mut env = Env::new("term3");
    add_servers(&env);
    let before = env.kernel_snapshot();
    let c = env.conn();
    let mut fds = Vec::new();
    for (n, net) in [("a", "10.97.0.0"), ("b", "10.96.0.0"), ("c", "10.95.0.0")] {
        let p = create(&c, n);
        assert!(protect(&c, "203.0.113.5", false, &p, None).unwrap());
        configure_with_network(&c, &p, net);
        let nets = vec![("198.51.100.0".to_string(), 24u32, -1i32, false, true)];
        let _: () = call(&c, &p, "AddNetworks", (nets,)).unwrap();
        fds.push(establish(&c, &p));
    }
    assert_eq!(env.extra_links().len(), 3);
    assert!(env.signal_daemon("TERM").success());
    assert_eq!(env.kernel_snapshot(), before);
}

#[test]
fn daemon_sigkill_then_restart_recovers() {
    if !require_root() {
        return;
    }
    let mut env = Env::new("crash");
    add_servers(&env);
    let before = env.kernel_snapshot();
    let c = env.conn();
    let p = create(&c, "crash");
    assert!(protect(&c, "203.0.113.5", false, &p, None).unwrap());
    configure_like_real_client(&c, &p);
    set_prop(&c, &p, "reroute_ipv4", true).unwrap();
    let nets = vec![
        ("198.51.100.0".to_string(), 24u32, -1i32, false, true),
        ("2001:db8:77::".to_string(), 48, -1, true, true),
    ];
    let _: () = call(&c, &p, "AddNetworks", (nets,)).unwrap();
    let fd = establish(&c, &p); // the client keeps its tun fd: the device stays
    let st = env.signal_daemon("KILL");
    assert!(!st.success());
    assert_ne!(env.kernel_snapshot(), before, "a killed daemon leaves its state");
    env.start_daemon();
    assert_eq!(env.kernel_snapshot(), before, "the restarted daemon undid everything:\n{}", env.log());
    assert!(env.log().contains("left by a previous run"), "{}", env.log());
    drop(fd);
}

#[test]
fn fwmark_rules_and_table_are_undone_after_a_daemon_crash() {
    if !require_root() {
        return;
    }
    let mut env = Env::with_args("crashfw", &["--redirect-method", "fwmark", "--set-somark", "4660"]);
    add_servers(&env);
    let before = env.kernel_snapshot();
    let c = env.conn();
    let p = create(&c, "crashfw");
    assert!(protect(&c, "203.0.113.5", false, &p, Some(udp_in(&env.ns, false).into())).unwrap());
    assert!(protect(&c, "2001:db8:ffff::5", true, &p, Some(udp_in(&env.ns, true).into())).unwrap());
    assert!(!env.signal_daemon("KILL").success());
    assert!(env.ip("-6 rule show").contains("lookup 4660"), "a killed daemon leaves its rules");
    env.start_daemon();
    assert_eq!(env.kernel_snapshot(), before, "{}", env.log());
}

#[test]
fn stale_routes_without_a_journal_are_swept() {
    if !require_root() {
        return;
    }
    let mut env = Env::new("sweep");
    let before = env.kernel_snapshot();
    env.signal_daemon("TERM");
    env.ip("route add 198.51.100.0/24 via 192.0.2.1 proto 79");
    env.ip("rule add fwmark 7 lookup 7 priority 32700 proto 79");
    env.start_daemon();
    assert_eq!(env.kernel_snapshot(), before, "{}", env.log());
}

/// A DCO netdev is journalled by name and kind before RTM_NEWLINK, so a
/// daemon killed before it learned the ifindex leaks nothing. Only a link
/// of one of our kinds that carries our marker (alias `ovpn-netcfgd`) is
/// deleted: a same-named link of another kind, or an unmarked one, is
/// someone else's, whatever the journal says. (veth stands in for links
/// that are not ours: the test kernel may have neither ovpn nor dummy.)
#[test]
fn a_link_being_created_when_the_daemon_died_is_deleted_at_restart() {
    if !require_root() {
        return;
    }
    let mut env = Env::new("newlink");
    env.signal_daemon("TERM");
    env.ip("link add dcoleak0 type veth peer name dcoleak1");
    env.ip("link add dcokeep0 type veth peer name dcokeep1");
    env.ip("link set dcoleak0 alias ovpn-netcfgd");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let journal = format!(
        "B {}\nA 1 newlink veth dcoleak0\nA 2 newlink ovpn-dco-v2 dcokeep0\nA 3 newlink veth absent0\n",
        boot.trim()
    );
    std::fs::write(env.dir.join("state/journal"), journal).unwrap();
    env.start_daemon();
    let mut links = env.extra_links();
    links.sort();
    // A veth is never ours, even with our alias: nothing is deleted.
    assert_eq!(links, ["dcokeep0", "dcokeep1", "dcoleak0", "dcoleak1"], "{}", env.log());
    assert!(env.log().contains("not ours, left alone: newlink veth dcoleak0"), "{}", env.log());
}

#[test]
fn idle_exit() {
    if !require_root() {
        return;
    }
    let mut env = Env::with_args("idle", &["--idle-exit", "1s"]);
    let t0 = Instant::now();
    let d = env.daemon.as_mut().unwrap();
    loop {
        if let Some(st) = d.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no idle exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(env.log().contains("idle"), "{}", env.log());
}

#[test]
fn a_device_or_a_subscriber_keeps_the_daemon_from_idling() {
    if !require_root() {
        return;
    }
    let mut env = Env::with_args("noidle", &["--idle-exit", "1s"]);
    let c = env.conn();
    let p = create(&c, "busy");
    std::thread::sleep(Duration::from_millis(1800));
    assert!(env.daemon_alive(), "a device exists; the daemon must stay");
    let s = env.conn();
    let _: () = call(&s, MGR, "NotificationSubscribe", (2047u32,)).unwrap();
    let _: () = call(&c, &p, "Destroy", ()).unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(1800));
    assert!(env.daemon_alive(), "a subscriber is left; the daemon must stay");
    drop(s);
    let t0 = Instant::now();
    let d = env.daemon.as_mut().unwrap();
    while d.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no idle exit once the subscriber left");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn privileges_are_dropped_to_the_service_user() {
    if !require_root() {
        return;
    }
    // A resolv.conf the daemon may only write with CAP_DAC_OVERRIDE.
    let rc = std::env::temp_dir().join(format!("privs-resolv-{}.conf", std::process::id()));
    std::fs::write(&rc, "nameserver 192.0.2.53\n").unwrap();
    let rc_arg = rc.display().to_string();
    // (arguments, capabilities kept, bounding set, ambient set)
    let none = ["--run-as", "nobody", "--dns-backend", "none"];
    for (args, caps, bnd, amb) in [
        (none.to_vec(), "0000000000001000", "0000000000001000", "0000000000000000"),
        (
            [&none[..], &["--redirect-method", "bind-device"]].concat(),
            "0000000000003000",
            "0000000000003000",
            "0000000000000000",
        ),
        (
            vec!["--run-as", "nobody", "--resolv-conf", &rc_arg],
            "0000000000001002",
            "0000000000001002",
            "0000000000000000",
        ),
    ] {
        let env = Env::with_args("privs", &args);
        let pid = env.daemon.as_ref().unwrap().id();
        assert!(status_field(pid, "Uid:").starts_with("65534\t65534\t65534\t65534"), "{}", status_field(pid, "Uid:"));
        assert!(status_field(pid, "Gid:").starts_with("65534\t65534\t65534\t65534"));
        assert_eq!(status_field(pid, "Groups:"), "");
        assert_eq!(status_field(pid, "CapEff:"), caps, "{args:?}\n{}", env.log());
        assert_eq!(status_field(pid, "CapPrm:"), caps, "{args:?}");
        assert_eq!(status_field(pid, "CapBnd:"), bnd, "{args:?}");
        assert_eq!(status_field(pid, "CapAmb:"), amb, "{args:?}");
        assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
        assert!(env.log().contains("regaining root fails"), "{}", env.log());
        assert!(!env.log().contains("[ERROR]"), "a clean start logs no error: {}", env.log());
        // And it still does its job unprivileged, DNS file included.
        let c = env.conn();
        let p = create(&c, "unpriv");
        configure_like_real_client(&c, &p);
        let _: () = call(&c, &p, "AddDNS", (vec!["10.97.0.53".to_string()],)).unwrap();
        let _fd = establish(&c, &p);
        assert!(env.our_routes().contains("10.97.0.0/24"));
        let in_file = std::fs::read_to_string(&rc).unwrap().contains("nameserver 10.97.0.53");
        assert_eq!(in_file, caps.ends_with('2'), "{args:?}: resolv.conf written only by the file backend");
        let _: () = call(&c, &p, "Destroy", ()).unwrap();
        assert_eq!(env.our_routes(), "");
        assert_eq!(std::fs::read_to_string(&rc).unwrap(), "nameserver 192.0.2.53\n", "{args:?}");
    }
    std::fs::remove_file(&rc).unwrap();
}

/// Without --run-as the daemon picks its own account, the first of its
/// accounts that exists (the harness makes sure ovpn-netcfgd does).
#[test]
fn the_daemon_chooses_its_own_account_by_itself() {
    if !require_root() {
        return;
    }
    let env = Env::new("ownacct");
    let pid = env.daemon.as_ref().unwrap().id();
    let user = nix::unistd::User::from_name(SERVICE_USER).unwrap().unwrap();
    let ids = |id: u32| format!("{id}\t{id}\t{id}\t{id}");
    assert_eq!(status_field(pid, "Uid:"), ids(user.uid.as_raw()), "{}", env.log());
    assert_eq!(status_field(pid, "Gid:"), ids(user.gid.as_raw()));
    assert_eq!(status_field(pid, "CapEff:"), "0000000000001000", "only CAP_NET_ADMIN with DNS backend none");
    assert!(env.log().contains(&format!("running as {SERVICE_USER} (uid {}, the first existing of", user.uid)));
}

#[test]
fn dbus_activation_starts_the_daemon_which_answers_the_call() {
    if !require_root() {
        return;
    }
    let mut env = Env::new("activate");
    env.signal_daemon("TERM");
    // A bus that activates services itself (a "system" bus would go through
    // the setuid launch helper and the real service directory).
    let conf = std::fs::read_to_string(env.dir.join("bus.conf"))
        .unwrap()
        .replace("<type>system</type>", "<type>custom</type>");
    let act = env.dir.join("act");
    std::fs::create_dir_all(act.join("services")).unwrap();
    let conf = conf
        .replace(&env.dir.join("bus.sock").display().to_string(), &act.join("bus.sock").display().to_string())
        .replace(&env.dir.join("services").display().to_string(), &act.join("services").display().to_string());
    std::fs::write(act.join("bus.conf"), conf).unwrap();
    std::fs::write(
        act.join("services/net.openvpn.v3.netcfg.service"),
        format!(
            "[D-BUS Service]\nName=net.openvpn.v3.netcfg\nExec=/bin/sh -c 'exec ip netns exec {} {} --run-as {SERVICE_USER} --dns-backend none --idle-exit 0 --state-dir {} 2>>{}'\nUser=root\n",
            env.ns,
            bin().display(),
            env.dir.join("state").display(),
            env.dir.join("activated.log").display()
        ),
    )
    .unwrap();
    // Killed however the test ends (a failed assert must not leave it running).
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _bus = Reap(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", act.join("bus.conf").display()))
            .args(["--nofork", "--nopidfile"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The socket file appears at bind(), before listen(): wait for a connect.
    wait_until("activation bus", Duration::from_secs(5), || {
        std::os::unix::net::UnixStream::connect(act.join("bus.sock")).is_ok()
    });
    let mut ch =
        dbus::channel::Channel::open_private(&format!("unix:path={}", act.join("bus.sock").display())).unwrap();
    ch.register().unwrap();
    let c = dbus::blocking::Connection::from(ch);
    let (v,): (dbus::arg::Variant<String>,) = c
        .with_proxy(DEST, MGR, Duration::from_secs(10))
        .method_call("org.freedesktop.DBus.Properties", "Get", (IFACE, "version"))
        .expect("the activating call is answered");
    assert!(v.0.starts_with("ovpn-netcfgd-"));
    let _ = Command::new("pkill")
        .args(["-f", &format!("ovpn-netcfgd.*state-dir {}", env.dir.join("state").display())])
        .status();
}
