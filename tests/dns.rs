//! DNS backends against the real thing: a real systemd-resolved (Debian's
//! package, unpacked by tests/rigs/dns-rig.sh) on the test's private bus, a
//! bind-mounted stand-in for /etc/resolv.conf, and Debian's openresolv. The
//! daemon runs in the test's network namespace with its own mount
//! namespace; results are read back from resolved, resolvectl and the files.

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;
use dbus::blocking::Connection;

const SYSTEM_CONF: &[u8] = b"# the system's own resolv.conf\nnameserver 192.0.2.53\n\
domain old.example\nsearch lan.example\noptions edns0 trust-ad\n";
const STUB: &[u8] = b"nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";
const DNS_EVENTS: u32 = 128 | 256 | 512 | 1024;

struct Sess {
    path: String,
    tun: String,
    _fd: OwnedFd,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A session as the real client makes it, with DNS settings, established.
fn session(c: &Connection, name: &str, servers: &[&str], search: &[&str], scope: &str) -> Sess {
    // Sessions up at the same time route different networks.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 256;
    let p = create(c, name);
    configure_with_network(c, &p, &format!("10.97.{n}.0"));
    set_prop(c, &p, "dns_scope", scope.to_string()).unwrap();
    if !servers.is_empty() {
        let _: () = call(c, &p, "AddDNS", (strings(servers),)).unwrap();
    }
    if !search.is_empty() {
        let _: () = call(c, &p, "AddDNSSearch", (strings(search),)).unwrap();
    }
    let fd = establish(c, &p);
    let tun: String = get_prop(c, &p, "device_name");
    Sess { path: p, tun, _fd: fd }
}

fn destroy(c: &Connection, s: &Sess) {
    let _: () = call(c, &s.path, "Destroy", ()).unwrap();
}

fn subscribe(env: &Env) -> Connection {
    let w = env.conn();
    let _: () = call(&w, MGR, "NotificationSubscribe", (DNS_EVENTS,)).unwrap();
    w
}

/// (type, device, detail value) of the DNS NetworkChange signals received.
fn dns_events(w: &Connection, d: Duration) -> Vec<(u32, String, String)> {
    signals(w, d)
        .into_iter()
        .map(|(k, dev, det)| {
            let v = det.get("dns_server").or(det.get("search_domain")).cloned().unwrap_or_default();
            (k, dev, v)
        })
        .collect()
}

fn ev(k: u32, dev: &str, v: &str) -> (u32, String, String) {
    (k, dev.to_string(), v.to_string())
}

fn body(text: &str) -> Vec<String> {
    text.lines().filter(|l| !l.starts_with('#')).map(String::from).collect()
}

fn read(p: &std::path::Path) -> String {
    String::from_utf8(std::fs::read(p).unwrap()).unwrap()
}

/// Waits until resolved reports what `want` accepts for the link's DNS
/// settings. The daemon's calls to resolved each wait for polkit, so they
/// may complete in any order: `want` must describe the whole state.
fn wait_link(c: &Connection, ifindex: u32, want: impl Fn(&LinkDns) -> bool) -> LinkDns {
    let mut last = None;
    let t0 = std::time::Instant::now();
    loop {
        let l = resolved_link(c, ifindex);
        if let Some(l) = l.as_ref().filter(|l| want(l)) {
            return l.clone();
        }
        last = l.or(last);
        assert!(t0.elapsed() < Duration::from_secs(10), "resolved never got there; last seen: {last:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn domains(v: &[(&str, bool)]) -> Vec<(String, bool)> {
    v.iter().map(|(d, r)| (d.to_string(), *r)).collect()
}

// ---- systemd-resolved ------------------------------------------------------

fn resolved_env(tag: &str) -> Option<(Env, Helper)> {
    if !require_root() || !dns_rig_fetch("resolved") {
        return None;
    }
    let mut env = Env::for_dns(tag, STUB);
    let r = env.start_resolved();
    env.start_dns_daemon(&[]);
    assert!(env.log().contains("DNS backend: systemd-resolved (auto)"), "{}", env.log());
    Some((env, r))
}

#[test]
fn resolved_global_scope_sends_every_name_to_the_vpn() {
    let Some((env, _r)) = resolved_env("rs-global") else { return };
    let c = env.conn();
    let w = subscribe(&env);
    let s = session(&c, "glob", &["10.8.0.1", "fd00:8::53"], &["corp.example"], "global");
    let idx = env.ifindex(&s.tun);
    let want = domains(&[("corp.example", false), (".", true)]);
    wait_link(&c, idx, |l| l.domains == want && l.default_route && l.servers == ["10.8.0.1", "fd00:8::53"]);
    let st = env.resolvectl(&format!("status {}", s.tun));
    assert!(st.contains("+DefaultRoute"), "{st}");
    assert!(st.contains("DNS Servers: 10.8.0.1 fd00:8::53"), "{st}");
    assert!(st.contains("DNS Domain: corp.example ~."), "{st}");
    assert_eq!(
        dns_events(&w, Duration::from_millis(200)),
        vec![ev(128, &s.tun, "10.8.0.1"), ev(128, &s.tun, "fd00:8::53"), ev(512, &s.tun, "corp.example")]
    );
    assert_eq!(get_prop::<Vec<String>>(&c, MGR, "global_dns_servers"), vec!["10.8.0.1", "fd00:8::53"]);
    assert_eq!(get_prop::<Vec<String>>(&c, MGR, "global_dns_search"), vec!["corp.example"]);
    // One more server on the live session: one event, resolved updated.
    let _: () = call(&c, &s.path, "AddDNS", (strings(&["10.8.0.2", "10.8.0.1"]),)).unwrap();
    wait_link(&c, idx, |l| l.servers.len() == 3);
    assert_eq!(dns_events(&w, Duration::from_millis(200)), vec![ev(128, &s.tun, "10.8.0.2")]);
}

#[test]
fn resolved_tunnel_scope_is_split_dns() {
    let Some((env, _r)) = resolved_env("rs-tunnel") else { return };
    let c = env.conn();
    let s = session(&c, "split", &["10.8.0.1"], &["corp.example", "lab.example"], "tunnel");
    let idx = env.ifindex(&s.tun);
    let want = domains(&[("corp.example", false), ("lab.example", false)]);
    wait_link(&c, idx, |l| l.domains == want && !l.default_route && l.servers == ["10.8.0.1"]);
    let st = env.resolvectl(&format!("status {}", s.tun));
    assert!(st.contains("-DefaultRoute") && !st.contains("~."), "{st}");
    // Switching the live session to global scope adds ~. and the default route.
    set_prop(&c, &s.path, "dns_scope", "global".to_string()).unwrap();
    wait_link(&c, idx, |l| l.default_route && l.domains.last() == Some(&(".".to_string(), true)));
}

#[test]
fn resolved_dnssec_and_dns_over_tls() {
    let Some((env, _r)) = resolved_env("rs-dnssec") else { return };
    let c = env.conn();
    let p = create(&c, "sec");
    configure_like_real_client(&c, &p);
    let _: () = call(&c, &p, "AddDNS", (strings(&["10.8.0.1"]),)).unwrap();
    let _: () = call(&c, &p, "SetDNSSEC", ("optional",)).unwrap();
    let _: () = call(&c, &p, "SetDNSTransport", ("dot",)).unwrap();
    let _fd = establish(&c, &p);
    let tun: String = get_prop(&c, &p, "device_name");
    let idx = env.ifindex(&tun);
    wait_link(&c, idx, |l| l.dnssec == "allow-downgrade" && l.dot == "yes");
    assert!(env.resolvectl(&format!("status {tun}")).contains("+DNSOverTLS"));
    // Changed on the live device: applied at once.
    let _: () = call(&c, &p, "SetDNSSEC", ("yes",)).unwrap();
    let _: () = call(&c, &p, "SetDNSTransport", ("plain",)).unwrap();
    wait_link(&c, idx, |l| l.dnssec == "yes" && l.dot == "no");
    let _: () = call(&c, &p, "SetDNSSEC", ("no",)).unwrap();
    wait_link(&c, idx, |l| l.dnssec == "no");
    // DoH: resolved cannot; from DoT on, the link goes back to resolved's
    // default, which is not DNS-over-TLS (DNSOverTLS= is unset here).
    let _: () = call(&c, &p, "SetDNSTransport", ("dot",)).unwrap();
    wait_link(&c, idx, |l| l.dot == "yes");
    let _: () = call(&c, &p, "SetDNSTransport", ("doh",)).unwrap();
    wait_for("the DoH warning", || env.log().contains("does not support DNS-over-HTTPS").then_some(()));
    let l = wait_link(&c, idx, |l| l.dot != "yes");
    assert_eq!(l.dot, "no", "{l:?}");
    assert!(env.resolvectl(&format!("status {tun}")).contains("-DNSOverTLS"));
    assert_eq!(get_prop::<String>(&c, &p, "dns_transport"), "doh");
}

/// Pid of the process `h` runs (the rig execs, so it is resolved itself),
/// after checking that it is systemd-resolved.
fn resolved_pid(h: &Helper) -> u32 {
    let pid = h.0.id();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "systemd-resolve", "comm is cut to 15 bytes");
    pid
}

/// The state letter of /proc/PID/stat ('T' when stopped).
fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(") ").next().and_then(|r| r.chars().next()).unwrap()
}

#[test]
fn resolved_stopped_does_not_block_the_daemon_and_gets_the_dns_when_back() {
    let Some((env, r)) = resolved_env("rs-stop") else { return };
    let pid = resolved_pid(&r);
    let c = env.conn();
    sh(&format!("kill -STOP {pid}"));
    let s = session(&c, "stop", &["10.8.0.1"], &["corp.example"], "global");
    let idx = env.ifindex(&s.tun);
    wait_for("the calls to resolved", || env.log().contains(&format!("sent for link {idx} (attempt 1)")).then_some(()));
    // Calls to the daemon are answered while its calls to resolved wait
    // for an answer: a daemon blocked on resolved could not answer before
    // that call timed out, which it logs.
    assert_eq!(get_prop::<Vec<String>>(&c, MGR, "global_dns_servers"), vec!["10.8.0.1"]);
    assert_eq!(get_prop::<Vec<String>>(&c, &s.path, "dns_search_domains"), vec!["corp.example"]);
    let (list,): (Vec<dbus::Path<'static>>,) = call(&c, MGR, "FetchInterfaceList", ()).unwrap();
    assert_eq!(list.len(), 1);
    let log = env.log();
    assert!(!log.contains("no reply within") && !log.contains(&format!("done for {}", s.tun)), "{log}");
    assert_eq!(proc_state(pid), 'T', "resolved is still stopped");
    // Still stopped past the call timeout: the daemon sends again.
    wait_for("the call timeout", || env.log().contains("no reply within 5 s").then_some(()));
    wait_for("attempt 2", || env.log().contains(&format!("sent for link {idx} (attempt 2)")).then_some(()));
    assert!(ping(&c) && proc_state(pid) == 'T');
    sh(&format!("kill -CONT {pid}"));
    let want = domains(&[("corp.example", false), (".", true)]);
    wait_link(&c, idx, |l| l.servers == ["10.8.0.1"] && l.domains == want && l.default_route);
    wait_for("the done log", || env.log().contains(&format!("done for {}", s.tun)).then_some(()));
    assert!(!env.log().contains("giving up"), "{}", env.log());
}

#[test]
fn resolved_restarted_gets_every_link_again_and_a_failed_link_is_resent() {
    let Some((mut env, r)) = resolved_env("rs-restart") else { return };
    let c = env.conn();
    let a = session(&c, "ra", &["10.1.0.1"], &["one.example"], "global");
    let b = session(&c, "rb", &["10.2.0.1"], &["two.example"], "tunnel");
    let (ia, ib) = (env.ifindex(&a.tun), env.ifindex(&b.tun));
    wait_link(&c, ia, |l| l.servers == ["10.1.0.1"]);
    wait_link(&c, ib, |l| l.servers == ["10.2.0.1"]);
    // Every call of both answered (the servers may come before the rest).
    wait_for("both links configured", || {
        let log = env.log();
        [&a.tun, &b.tun].iter().all(|t| log.contains(&format!("link DNS configuration done for {t}"))).then_some(())
    });
    // resolved goes away; a change made meanwhile fails for good once the
    // retries are used up, and is not shown as applied.
    drop(r);
    wait_for("resolved gone", || env.log().contains("systemd-resolved left the bus").then_some(()));
    let _: () = call(&c, &a.path, "AddDNS", (strings(&["10.1.0.2"]),)).unwrap();
    wait_for("the give-up", || {
        env.log().contains(&format!("giving up on link DNS configuration for {}", a.tun)).then_some(())
    });
    assert!(env.log().contains(&format!("{}: sending its DNS settings again in 30 s", a.tun)), "{}", env.log());
    assert_eq!(get_prop::<Vec<String>>(&c, MGR, "global_dns_servers"), vec!["10.2.0.1"]);
    // A new resolved (fresh /run in the rig: it knows none of our
    // settings) gets both links: the one that failed and the one that did not.
    let _r = env.start_resolved();
    let want = domains(&[("one.example", false), (".", true)]);
    wait_link(&c, ia, |l| l.servers == ["10.1.0.1", "10.1.0.2"] && l.domains == want);
    let want = domains(&[("two.example", false)]);
    wait_link(&c, ib, |l| l.servers == ["10.2.0.1"] && l.domains == want && !l.default_route);
    assert!(env.log().contains("systemd-resolved appeared on the bus"), "{}", env.log());
    wait_for("both applied", || {
        let g = get_prop::<Vec<String>>(&c, MGR, "global_dns_servers");
        (g == ["10.2.0.1", "10.1.0.1", "10.1.0.2"]).then_some(())
    });
}

#[test]
fn resolved_link_reverted_on_disable_and_destroy() {
    let Some((env, _r)) = resolved_env("rs-revert") else { return };
    let c = env.conn();
    let w = subscribe(&env);
    let s = session(&c, "rev", &["10.8.0.1"], &["corp.example"], "global");
    let idx = env.ifindex(&s.tun);
    wait_link(&c, idx, |l| !l.servers.is_empty() && l.default_route);
    let _ = dns_events(&w, Duration::from_millis(100));
    // Disable keeps the link: RevertLink must have emptied it.
    let _: () = call(&c, &s.path, "Disable", ()).unwrap();
    assert!(env.extra_links().contains(&s.tun));
    wait_link(&c, idx, |l| l.servers.is_empty() && l.domains.is_empty());
    assert_eq!(
        dns_events(&w, Duration::from_millis(200)),
        vec![ev(256, &s.tun, "10.8.0.1"), ev(1024, &s.tun, "corp.example")]
    );
    assert!(get_prop::<Vec<String>>(&c, MGR, "global_dns_servers").is_empty());
    // Again, then Destroy: nothing of ours is left in resolved.
    configure_like_real_client(&c, &s.path);
    let _: () = call(&c, &s.path, "AddDNS", (strings(&["10.8.0.9"]),)).unwrap();
    let _fd2 = establish(&c, &s.path);
    let tun2: String = get_prop(&c, &s.path, "device_name");
    let idx2 = env.ifindex(&tun2);
    wait_link(&c, idx2, |l| l.servers == vec!["10.8.0.9"]);
    destroy(&c, &s);
    wait_for("the RevertLink of the destroyed device", || {
        env.log().contains(&format!("RevertLink done for {tun2}")).then_some(())
    });
    // The client still holds the tun fd: if the link is still there,
    // resolved must show it empty (the reference leaves it configured).
    if env.extra_links().contains(&tun2) {
        wait_link(&c, idx2, |l| l.servers.is_empty() && l.domains.is_empty());
    }
    let all = env.resolvectl("dns");
    assert!(!all.contains("10.8.0."), "{all}");
    assert!(!env.log().contains("refused") && !env.log().contains("giving up"), "{}", env.log());
}

#[test]
fn resolved_concurrent_sessions_are_all_applied() {
    let Some((env, _r)) = resolved_env("rs-multi") else { return };
    let c = env.conn();
    // Three at once: the reference's queue handling skips about half.
    let a = session(&c, "a", &["10.1.0.1"], &["one.example"], "global");
    let b = session(&c, "b", &["10.2.0.1"], &["two.example"], "tunnel");
    let d = session(&c, "c", &["10.3.0.1", "10.1.0.1"], &["three.example"], "global");
    for (s, server, dom, global) in [
        (&a, "10.1.0.1", "one.example", true),
        (&b, "10.2.0.1", "two.example", false),
        (&d, "10.3.0.1", "three.example", true),
    ] {
        wait_link(&c, env.ifindex(&s.tun), |l| {
            l.servers.first().map(String::as_str) == Some(server)
                && l.domains.first() == Some(&(dom.to_string(), false))
                && l.default_route == global
                && l.domains.iter().any(|d| d.0 == ".") == global
        });
    }
    assert_eq!(get_prop::<Vec<String>>(&c, MGR, "global_dns_servers"), vec!["10.3.0.1", "10.1.0.1", "10.2.0.1"]);
    assert_eq!(
        get_prop::<Vec<String>>(&c, MGR, "global_dns_search"),
        vec!["three.example", "two.example", "one.example"]
    );
    // Removing the middle one leaves the others alone.
    destroy(&c, &b);
    wait_for("b gone", || {
        (!get_prop::<Vec<String>>(&c, MGR, "global_dns_servers").contains(&"10.2.0.1".into())).then_some(())
    });
    assert_eq!(resolved_link(&c, env.ifindex(&a.tun)).unwrap().servers, vec!["10.1.0.1"]);
    assert_eq!(resolved_link(&c, env.ifindex(&d.tun)).unwrap().servers, vec!["10.3.0.1", "10.1.0.1"]);
}

#[test]
fn resolved_absent_at_start_falls_back_and_is_used_once_there() {
    if !require_root() {
        return;
    }
    let mut env = Env::for_dns("rs-absent", b"nameserver 192.0.2.53\n");
    // Forced, but not there: not fatal, the next backend takes over.
    env.start_dns_daemon(&["--systemd-resolved"]);
    let log = env.log();
    assert!(log.contains("systemd-resolved is not available"), "{log}");
    assert!(log.contains("(fallback)"), "{log}");
    let c = env.conn();
    let s = session(&c, "fb", &["10.8.0.1"], &[], "global");
    wait_for("the fallback to apply DNS", || read(&env.resolv_conf()).contains("nameserver 10.8.0.1").then_some(()));
    destroy(&c, &s);
    assert_eq!(read(&env.resolv_conf()), "nameserver 192.0.2.53\n");
    assert!(env.stop_daemon("TERM").success());
    if !dns_rig_fetch("resolved") {
        return;
    }

    // resolved now runs, but resolv.conf ignores it: auto does not use it.
    let _r = env.start_resolved();
    env.start_dns_daemon(&[]);
    assert!(env.log().contains("does not use it; not using it"), "{}", env.log());
    assert!(env.stop_daemon("TERM").success());

    // resolv.conf is resolved's stub: the next start picks resolved.
    std::fs::write(env.resolv_conf(), STUB).unwrap();
    env.start_dns_daemon(&[]);
    assert!(env.log().contains("DNS backend: systemd-resolved (auto)"), "{}", env.log());
    let s = session(&c, "late", &["10.8.0.7"], &[], "global");
    wait_link(&c, env.ifindex(&s.tun), |l| l.servers == vec!["10.8.0.7"]);
    assert_eq!(read(&env.resolv_conf()).as_bytes(), STUB, "resolv.conf is not touched with resolved");
    // SIGTERM with the session up: reverted, and waited for, before exit.
    assert!(env.stop_daemon("TERM").success(), "{}", env.log());
    assert!(env.log().contains(&format!("RevertLink done for {}", s.tun)), "{}", env.log());
}

// ---- resolv.conf file ------------------------------------------------------

#[test]
fn file_backend_one_two_three_sessions_then_the_original() {
    if !require_root() {
        return;
    }
    let mut env = Env::for_dns("file-123", SYSTEM_CONF);
    env.start_dns_daemon(&["--dns-backend", "file"]);
    let conf = env.resolv_conf();
    let ino = std::fs::metadata(&conf).unwrap().ino();
    let c = env.conn();
    let w = subscribe(&env);
    let system = ["nameserver 192.0.2.53", "options edns0 trust-ad"];
    let a = session(&c, "one", &["10.1.0.1", "fd00:1::53"], &["one.example"], "global");
    assert_eq!(
        body(&read(&conf)),
        [&["search one.example lan.example", "nameserver 10.1.0.1", "nameserver fd00:1::53"][..], &system].concat()
    );
    let b = session(&c, "two", &["10.2.0.1", "10.1.0.1"], &["two.example"], "global");
    assert_eq!(
        body(&read(&conf)),
        [
            &["search two.example one.example lan.example", "nameserver 10.2.0.1", "nameserver 10.1.0.1"][..],
            &["nameserver fd00:1::53"],
            &system
        ]
        .concat()
    );
    let d = session(&c, "three", &["10.3.0.1"], &[], "global");
    let three = [
        &["search two.example one.example lan.example", "nameserver 10.3.0.1", "nameserver 10.2.0.1"][..],
        &["nameserver 10.1.0.1", "nameserver fd00:1::53"],
        &system,
    ]
    .concat();
    assert_eq!(body(&read(&conf)), three);
    assert!(read(&conf).starts_with("# Generated by ovpn-netcfgd"), "{}", read(&conf));
    assert_eq!(
        get_prop::<Vec<String>>(&c, MGR, "global_dns_servers"),
        vec!["10.3.0.1", "10.2.0.1", "10.1.0.1", "fd00:1::53"]
    );
    assert_eq!(get_prop::<Vec<String>>(&c, MGR, "global_dns_search"), vec!["two.example", "one.example"]);
    let got = dns_events(&w, Duration::from_millis(200));
    assert_eq!(
        got,
        vec![
            ev(128, &a.tun, "10.1.0.1"),
            ev(128, &a.tun, "fd00:1::53"),
            ev(512, &a.tun, "one.example"),
            ev(128, &b.tun, "10.2.0.1"),
            ev(128, &b.tun, "10.1.0.1"),
            ev(512, &b.tun, "two.example"),
            ev(128, &d.tun, "10.3.0.1"),
        ]
    );
    // Nothing new: no event, no rewrite.
    let _: () = call(&c, &d.path, "AddDNS", (strings(&["10.3.0.1"]),)).unwrap();
    assert!(dns_events(&w, Duration::from_millis(100)).is_empty());
    // The oldest goes first: its server stays (session two has it too).
    destroy(&c, &a);
    assert_eq!(
        body(&read(&conf)),
        [
            &["search two.example lan.example", "nameserver 10.3.0.1", "nameserver 10.2.0.1"][..],
            &["nameserver 10.1.0.1"],
            &system
        ]
        .concat()
    );
    assert_eq!(
        dns_events(&w, Duration::from_millis(200)),
        vec![ev(256, &a.tun, "10.1.0.1"), ev(256, &a.tun, "fd00:1::53"), ev(1024, &a.tun, "one.example")]
    );
    destroy(&c, &d);
    destroy(&c, &b);
    assert_eq!(std::fs::read(&conf).unwrap(), SYSTEM_CONF, "the original, byte for byte");
    assert_eq!(std::fs::metadata(&conf).unwrap().ino(), ino, "a bind-mounted file is rewritten in place");
    assert!(std::fs::read_dir(env.dir.join("state/dns")).unwrap().next().is_none(), "no backup left");
    // And at shutdown, with a session still up.
    let _e = session(&c, "four", &["10.4.0.1"], &[], "global");
    assert!(read(&conf).contains("nameserver 10.4.0.1"));
    assert!(env.stop_daemon("TERM").success());
    assert_eq!(std::fs::read(&conf).unwrap(), SYSTEM_CONF);
}

#[test]
fn file_backend_keeps_owner_and_mode_without_chown() {
    if !require_root() {
        return;
    }
    let mut env = Env::for_dns("file-atomic", b"");
    let etc = env.dir.join("etc");
    std::fs::create_dir(&etc).unwrap();
    let conf = etc.join("resolv.conf");
    std::fs::write(&conf, SYSTEM_CONF).unwrap();
    sh(&format!("chmod 640 {0} && chown 0:65534 {0}", conf.display()));
    let ino = std::fs::metadata(&conf).unwrap().ino();
    env.start_dns_daemon(&["--resolv-conf", conf.to_str().unwrap()]);
    assert!(env.log().contains(&format!("DNS backend: resolv.conf file {} (forced)", conf.display())));
    let c = env.conn();
    let s = session(&c, "at", &["10.8.0.1"], &["corp.example"], "tunnel");
    let m = std::fs::metadata(&conf).unwrap();
    // Not root's group: a new file would need a chown, so it is rewritten in place.
    assert_eq!(m.ino(), ino, "rewritten in place");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 65534));
    assert!(read(&conf).contains("nameserver 10.8.0.1\nnameserver 192.0.2.53\n"));
    assert!(env.log().contains("split DNS (dns_scope tunnel) needs systemd-resolved"));
    assert_eq!(std::fs::read_dir(&etc).unwrap().count(), 1, "no temporary file left");
    destroy(&c, &s);
    let m = std::fs::metadata(&conf).unwrap();
    assert_eq!(std::fs::read(&conf).unwrap(), SYSTEM_CONF);
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 65534));
}

#[test]
fn file_backend_puts_a_symlinked_resolv_conf_back() {
    if !require_root() {
        return;
    }
    let mut env = Env::for_dns("file-symlink", b"");
    for d in ["etc", "run"] {
        std::fs::create_dir(env.dir.join(d)).unwrap();
    }
    let stub = env.dir.join("run/stub.conf");
    std::fs::write(&stub, b"nameserver 192.0.2.53\nsearch lan.example\n").unwrap();
    let conf = env.dir.join("etc/resolv.conf");
    std::os::unix::fs::symlink("../run/stub.conf", &conf).unwrap();
    env.start_dns_daemon(&["--resolv-conf", conf.to_str().unwrap()]);
    let c = env.conn();
    let s = session(&c, "sym", &["10.8.0.1"], &["corp.example"], "global");
    assert!(!std::fs::symlink_metadata(&conf).unwrap().file_type().is_symlink(), "our own regular file");
    assert_eq!(body(&read(&conf)), ["search corp.example lan.example", "nameserver 10.8.0.1", "nameserver 192.0.2.53"]);
    // The other program updates its file: our next write picks that up.
    std::fs::write(&stub, b"nameserver 192.0.2.54\n").unwrap();
    let _: () = call(&c, &s.path, "AddDNS", (strings(&["10.8.0.2"]),)).unwrap();
    assert_eq!(
        body(&read(&conf)),
        ["search corp.example", "nameserver 10.8.0.1", "nameserver 10.8.0.2", "nameserver 192.0.2.54"]
    );
    destroy(&c, &s);
    assert_eq!(std::fs::read_link(&conf).unwrap(), std::path::PathBuf::from("../run/stub.conf"));
    assert_eq!(read(&stub), "nameserver 192.0.2.54\n", "the link target is never written");
}

#[test]
fn file_backend_restores_after_sigkill_and_restart() {
    if !require_root() {
        return;
    }
    let mut env = Env::for_dns("file-kill", SYSTEM_CONF);
    env.start_dns_daemon(&["--dns-backend", "file"]);
    let c = env.conn();
    let _s = session(&c, "kill", &["10.8.0.1"], &["corp.example"], "global");
    assert!(read(&env.resolv_conf()).contains("nameserver 10.8.0.1"));
    let st = env.stop_daemon("KILL");
    assert!(!st.success());
    assert!(read(&env.resolv_conf()).contains("nameserver 10.8.0.1"), "a killed daemon restores nothing");
    env.start_dns_daemon(&["--dns-backend", "file"]);
    assert_eq!(std::fs::read(env.resolv_conf()).unwrap(), SYSTEM_CONF, "restored byte for byte at start-up");
    let log = env.log();
    let restored = log.rfind("did not exit cleanly").unwrap_or_else(|| panic!("{log}"));
    let chosen = log.rfind("DNS backend: resolv.conf file").unwrap();
    assert!(restored < chosen, "the backend is chosen after recovery: {log}");
    assert!(std::fs::read_dir(env.dir.join("state/dns")).unwrap().next().is_none());
}

// ---- resolvconf(8) ---------------------------------------------------------

#[test]
fn resolvconf_openresolv_records_follow_the_sessions() {
    if !require_root() || !dns_rig_fetch("openresolv") {
        return;
    }
    let mut env = Env::for_dns("resolvconf", SYSTEM_CONF);
    sh(&format!("{} openresolv {}", dns_rig().display(), env.dir.display()));
    let rc = env.dir.join("sbin/resolvconf");
    // The uplink's DNS, as a DHCP client would have registered it.
    sh(&format!("printf 'nameserver 192.0.2.53\\nsearch lan.example\\n' | {} -a uplink0", rc.display()));
    assert_eq!(body(&read(&env.resolv_conf())), ["search lan.example", "nameserver 192.0.2.53"]);
    env.start_dns_daemon(&[]);
    assert!(
        env.log().contains("DNS backend: resolvconf (auto)") && env.log().contains("(openresolv)"),
        "{}",
        env.log()
    );
    let c = env.conn();
    let a = session(&c, "ra", &["10.1.0.1"], &["one.example"], "global");
    let b = session(&c, "rb", &["10.2.0.1"], &["two.example"], "global");
    let ifaces = env.dir.join("openresolv/run/interfaces");
    let list = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let mut want = vec![a.tun.clone(), b.tun.clone(), "uplink0".to_string()];
    want.sort();
    // resolvconf runs while the daemon serves: its records come after the replies.
    wait_for("both records", || (list(&ifaces) == want).then_some(()));
    let text = wait_for("both records in resolv.conf", || {
        Some(read(&env.resolv_conf())).filter(|t| t.contains("10.1.0.1") && t.contains("10.2.0.1"))
    });
    let pos = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} missing in:\n{text}"));
    assert!(pos("nameserver 10.1.0.1") < pos("nameserver 192.0.2.53"), "{text}");
    assert!(pos("nameserver 10.2.0.1") < pos("nameserver 192.0.2.53"), "{text}");
    assert!(text.contains("one.example") && text.contains("two.example") && text.contains("lan.example"), "{text}");
    destroy(&c, &a);
    let deleted = || list(&ifaces).len() == 2 && !read(&env.resolv_conf()).contains("10.1.0.1");
    wait_for("the record deleted", || deleted().then_some(()));
    // Killed with a record registered: the next start deletes it.
    assert!(!env.stop_daemon("KILL").success());
    assert!(read(&env.resolv_conf()).contains("10.2.0.1"));
    env.start_dns_daemon(&[]);
    assert!(env.log().contains("left by a previous run"), "{}", env.log());
    assert_eq!(list(&ifaces), vec!["uplink0"]);
    assert_eq!(body(&read(&env.resolv_conf())), ["search lan.example", "nameserver 192.0.2.53"]);
    drop(b);
}

/// A resolvconf(8) hook that takes 3 s stalls no other client: while it
/// runs, a second client's calls are answered at once; the record lands
/// when the hook is done, and a change made meanwhile follows it, one
/// child at a time. At SIGTERM the daemon waits for a running hook, then
/// deletes the record.
#[test]
fn a_slow_resolvconf_hook_stalls_no_other_client() {
    if !require_root() {
        return;
    }
    let mut env = Env::for_dns("rcslow", SYSTEM_CONF);
    let (rec, sbin) = (env.dir.join("rec"), env.dir.join("sbin"));
    std::fs::create_dir_all(&sbin).unwrap();
    std::fs::create_dir_all(&rec).unwrap();
    sh(&format!("chmod 777 {}", rec.display()));
    let r = rec.display();
    // An add sleeps if rec/slow is there; every add writes its input to rec/<ifname>.
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n-a)\n  echo \"start $2\" >> {r}/calls\n  \
         [ -e {r}/slow ] && {{ rm {r}/slow; sleep 3; }}\n  cat > {r}/$2\n  echo \"end $2\" >> {r}/calls\n  ;;\n\
         -d) echo \"del $2\" >> {r}/calls ;;\nesac\nexit 0\n"
    );
    std::fs::write(rec.join("slow"), "").unwrap();
    std::fs::write(sbin.join("resolvconf"), script).unwrap();
    sh(&format!("chmod 755 {}", sbin.join("resolvconf").display()));
    env.start_dns_daemon(&["--dns-backend", "resolvconf"]);
    assert!(env.log().contains("DNS backend: resolvconf (forced)"), "{}", env.log());
    let c = env.conn();
    let w = subscribe(&env);
    let t0 = std::time::Instant::now();
    let s = session(&c, "rcslow", &["10.96.0.53"], &[], "global");
    let session_took = t0.elapsed();
    let calls = || std::fs::read_to_string(rec.join("calls")).unwrap_or_default();
    wait_for("the hook to start", || calls().contains("start").then_some(()));
    let other = env.conn();
    let t1 = std::time::Instant::now();
    assert!(ping(&other));
    let ping_took = t1.elapsed();
    let t2 = std::time::Instant::now();
    let servers: Vec<String> = get_prop(&other, MGR, "global_dns_servers");
    let get_took = t2.elapsed();
    println!(
        "while the hook sleeps: Ping {ping_took:?}, Properties.Get {get_took:?}; session set up in {session_took:?}"
    );
    assert!(calls().lines().count() == 1 && !rec.join(&s.tun).exists(), "the hook still runs: {}", calls());
    assert!(servers.is_empty(), "not announced before the hook is done: {servers:?}");
    assert!(ping_took < Duration::from_secs(1) && get_took < Duration::from_secs(1), "the daemon stalled");
    // A change while the hook runs waits for it, then follows.
    let _: () = call(&c, &s.path, "AddDNS", (strings(&["10.96.0.54"]),)).unwrap();
    let file = rec.join(&s.tun);
    let text = wait_for("the record with both servers", || {
        std::fs::read_to_string(&file).ok().filter(|t| t.contains("10.96.0.54") && calls().lines().count() == 4)
    });
    assert_eq!(body(&text), ["nameserver 10.96.0.53", "nameserver 10.96.0.54"]);
    let tun = &s.tun;
    assert_eq!(calls(), format!("start {tun}\nend {tun}\nstart {tun}\nend {tun}\n"), "one child at a time, in order");
    let got = dns_events(&w, Duration::from_millis(300));
    assert_eq!(got, [ev(128, tun, "10.96.0.53"), ev(128, tun, "10.96.0.54")]);
    let servers: Vec<String> = get_prop(&other, MGR, "global_dns_servers");
    assert_eq!(servers, ["10.96.0.53", "10.96.0.54"]);
    // Shutdown while a hook runs: it is waited for (not killed), then the record goes.
    std::fs::write(rec.join("slow"), "").unwrap();
    let _: () = call(&c, &s.path, "AddDNS", (strings(&["10.96.0.55"]),)).unwrap();
    wait_for("the third add", || (calls().lines().count() == 5).then_some(()));
    assert!(env.stop_daemon("TERM").success(), "{}", env.log());
    assert!(read(&file).contains("nameserver 10.96.0.55"), "the add finished");
    assert!(calls().ends_with(&format!("start {tun}\nend {tun}\ndel {tun}\n")), "{}", calls());
    assert!(!env.log().contains("killed"), "{}", env.log());
}

// ---- bad input -------------------------------------------------------------

#[test]
fn dns_bad_inputs_are_rejected_and_change_nothing() {
    if !require_root() {
        return;
    }
    let mut env = Env::for_dns("dns-bad", SYSTEM_CONF);
    env.start_dns_daemon(&["--dns-backend", "file"]);
    let c = env.conn();
    let s = session(&c, "bad", &["10.8.0.1"], &["corp.example"], "global");
    let w = subscribe(&env);
    let p = s.path.as_str();
    let snapshot = |c: &Connection, conf: &std::path::Path| {
        let v = |o: &str, n: &str| get_prop::<Vec<String>>(c, o, n);
        let t = |n: &str| get_prop::<String>(c, p, n);
        (
            v(p, "dns_name_servers"),
            v(p, "dns_search_domains"),
            t("dnssec_mode"),
            t("dns_transport"),
            t("dns_scope"),
            v(MGR, "global_dns_servers"),
            v(MGR, "global_dns_search"),
            std::fs::read(conf).unwrap(),
        )
    };
    let conf = env.resolv_conf();
    let before = snapshot(&c, &conf);
    let dev = |m: &str| method(p, m);
    let many_servers: Vec<String> = (1..=40).map(|i| format!("10.9.0.{i}")).collect();
    let many_domains: Vec<String> = (1..=70).map(|i| format!("d{i}.example")).collect();
    let long_name = vec!["a".repeat(63); 4].join("."); // 255 bytes
    let prop = |name: &str, v: dbus::arg::Variant<Box<dyn dbus::arg::RefArg>>| {
        dbus::Message::new_method_call(DEST, p, "org.freedesktop.DBus.Properties", "Set")
            .unwrap()
            .append3(IFACE, name, v)
    };
    let boxed = |v: Box<dyn dbus::arg::RefArg>| dbus::arg::Variant(v);
    let cases: Vec<(&str, dbus::Message, &str)> = vec![
        ("server: a name", dev("AddDNS").append1(vec!["dns.example"]), "not an IP address"),
        ("server: one bad among good", dev("AddDNS").append1(vec!["10.9.0.1", "10.9.0.300"]), "not an IP address"),
        ("server: 0.0.0.0", dev("AddDNS").append1(vec!["0.0.0.0"]), "cannot be a DNS server"),
        ("server: ::", dev("AddDNS").append1(vec!["::"]), "cannot be a DNS server"),
        ("server: multicast", dev("AddDNS").append1(vec!["224.0.0.251"]), "cannot be a DNS server"),
        ("server: scoped v6", dev("AddDNS").append1(vec!["fe80::1%eth0"]), "not an IP address"),
        ("server: trailing space", dev("AddDNS").append1(vec!["10.9.0.1 "]), "white space around"),
        ("server: leading space", dev("AddDNS").append1(vec!["10.9.0.2", " 10.9.0.3"]), "white space around"),
        ("server: line injection", dev("AddDNS").append1(vec!["10.9.0.1\nnameserver 6.6.6.6"]), "control character"),
        ("server: 100 bytes", dev("AddDNS").append1(vec!["1".repeat(100)]), "longer than"),
        ("server: 40 of them", dev("AddDNS").append1(many_servers), "at most 32"),
        ("server: not an array", dev("AddDNS").append1("10.9.0.1"), "does not match"),
        ("search: line injection", dev("AddDNSSearch").append1(vec!["x.example\nnameserver 6.6.6.6"]), "domains"),
        ("search: root", dev("AddDNSSearch").append1(vec!["."]), "domains"),
        ("search: empty label", dev("AddDNSSearch").append1(vec!["a..example"]), "not a valid domain"),
        ("search: leading hyphen", dev("AddDNSSearch").append1(vec!["-a.example"]), "not a valid domain"),
        ("search: 255 bytes", dev("AddDNSSearch").append1(vec![long_name]), "1-253"),
        ("search: non-ASCII", dev("AddDNSSearch").append1(vec!["exämple.com"]), "not a valid domain"),
        ("search: one bad among good", dev("AddDNSSearch").append1(vec!["ok.example", "bad domain"]), "not a valid"),
        ("search: 70 of them", dev("AddDNSSearch").append1(many_domains), "at most 64"),
        ("dnssec: YES", dev("SetDNSSEC").append1("YES"), "not one of yes, no, optional"),
        ("dnssec: resolved's word", dev("SetDNSSEC").append1("allow-downgrade"), "not one of"),
        ("dnssec: empty", dev("SetDNSSEC").append1(""), "not one of"),
        ("transport: DoT", dev("SetDNSTransport").append1("DoT"), "not one of plain, dot, doh"),
        ("transport: tls", dev("SetDNSTransport").append1("tls"), "not one of"),
        ("transport: a number", dev("SetDNSTransport").append1(2u32), "does not match"),
        ("scope: split", prop("dns_scope", boxed(Box::new("split".to_string()))), "not one of global, tunnel"),
        ("scope: a number", prop("dns_scope", boxed(Box::new(1u32))), "expected type 's'"),
    ];
    assert!(cases.len() >= 15);
    for (what, m, want) in cases {
        let e = send(&c, m).expect_err(what);
        assert!(e.1.contains(want), "{what}: got {e:?}, wanted '{want}'");
        assert!(e.0.contains("InvalidArgs"), "{what}: {e:?}");
        assert!(env.daemon_alive(), "{what}: the daemon died");
    }
    // Another user may not touch the device's DNS at all.
    let (ok, out) = busctl_as(65534, &env.addr, &format!("call {DEST} {p} {IFACE} AddDNS as 1 10.9.0.1"));
    assert!(!ok && out.contains("may not"), "{out}");
    assert_eq!(snapshot(&c, &conf), before, "nothing stored, nothing applied");
    assert!(dns_events(&w, Duration::from_millis(200)).is_empty(), "no NetworkChange for rejected input");
}

/// With systemd-resolved the service user needs no right to write files:
/// CAP_DAC_OVERRIDE, kept until the backend is chosen and a crashed run's
/// resolv.conf is restored, is dropped (and so is its ambient copy).
#[test]
fn resolved_backend_drops_the_file_writing_capability() {
    if !require_root() {
        return;
    }
    let mut env = Env::for_dns("rs-caps", STUB);
    if !dns_rig_fetch("resolved") {
        return;
    }
    let _r = env.start_resolved();
    env.start_dns_daemon(&["--run-as", "nobody"]);
    let pid = env.daemon.as_ref().unwrap().id();
    assert!(env.log().contains("DNS backend: systemd-resolved (auto)"), "{}", env.log());
    assert_eq!(status_field(pid, "Uid:").split('\t').next(), Some("65534"));
    assert_eq!(status_field(pid, "CapEff:"), "0000000000001000", "{}", env.log());
    assert_eq!(status_field(pid, "CapPrm:"), "0000000000001000");
    assert_eq!(status_field(pid, "CapAmb:"), "0000000000000000");
    assert!(env.log().contains("capabilities now [\"CAP_NET_ADMIN\"]"), "{}", env.log());
    assert!(env.stop_daemon("TERM").success(), "{}", env.log());
}
