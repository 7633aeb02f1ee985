//! What the daemon reads from disk cannot be turned against the host. The
//! daemon runs as a real unprivileged user (nobody, standing in for the
//! OpenVPN 3 account that every client backend also runs as); that account
//! plants hostile state, the daemon is (re)started or SIGKILLed and
//! restarted, and nothing outside the daemon's own state changes: a canary
//! file keeps its content, owner and mode, and the namespace's uplink keeps
//! its links, addresses, routes and rules, read back from the kernel.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const NOBODY: u32 = 65534;
const CANARY: &str = "precious: must never change\n";

/// A root-owned 0644 file the attacks aim at.
fn canary(env: &Env) -> PathBuf {
    let p = env.dir.join("canary");
    std::fs::write(&p, CANARY).unwrap();
    sh(&format!("chown 0:0 {0} && chmod 644 {0}", p.display()));
    p
}

fn assert_canary(p: &Path, log: &str) {
    let m = std::fs::symlink_metadata(p).unwrap();
    assert!(m.is_file(), "the canary is still a regular file");
    assert_eq!(std::fs::read_to_string(p).unwrap(), CANARY, "canary content changed\n{log}");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o644), "canary owner/mode changed\n{log}");
}

/// Runs a shell command as the service account (uid/gid 65534).
fn as_service(cmd: &str) {
    sh(&format!("setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups sh -c '{cmd}'"));
}

/// The daemon as nobody (standing in for the account the clients share,
/// not the daemon's dedicated one), stopped again so the test can plant
/// state before it starts for real.
fn stopped(tag: &str, args: &[&str]) -> Env {
    let mut all = vec!["--run-as", "nobody"];
    all.extend_from_slice(args);
    let mut env = Env::with_args(tag, &all);
    env.stop_daemon("TERM");
    env
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap().trim().to_string()
}

/// Journal lines aimed at the uplink: its link, address, addresses' and
/// default route (protocol boot), a rule that is not ours.
fn hostile_journal(env: &Env, first_id: u32) -> String {
    let up = env.ifindex("uplink0");
    let i = first_id;
    format!(
        "A {i} route 0.0.0.0/0 192.0.2.1 {up} - 254 3 0\n\
         A {} route 0.0.0.0/0 192.0.2.1 {up} - 254 79 0\n\
         A {} addr {up} 192.0.2.2 24\n\
         A {} addr {up} 2001:db8::2 64\n\
         A {} down {up}\n\
         A {} link {up} uplink0\n\
         A {} newlink veth uplink0\n\
         A {} rule 4 1000 0 254 0\n",
        i + 1,
        i + 2,
        i + 3,
        i + 4,
        i + 5,
        i + 6,
        i + 7,
    )
}

/// A session as the real client makes it, established: the daemon's own
/// state that a crash leaves behind. Keep the connection: a client that
/// leaves the bus takes its device with it.
fn session(env: &Env) -> (dbus::blocking::Connection, String, std::os::fd::OwnedFd) {
    let c = env.conn();
    let p = create(&c, "trust");
    configure_like_real_client(&c, &p);
    set_prop(&c, &p, "reroute_ipv4", true).unwrap();
    let fd = establish(&c, &p);
    (c, p, fd)
}

/// Empties the state directory (what earlier runs of the daemon left).
fn clear_state(env: &Env) {
    sh(&format!("rm -rf {}/state/* {}/state/.[!.]*", env.dir.display(), env.dir.display()));
}

/// The daemon run directly, for start-ups that must fail: (exit code, log).
fn refused_start(env: &Env, args: &[&str]) -> (i32, String) {
    let o = Command::new("timeout")
        .args(["20", "ip", "netns", "exec", &env.ns])
        .arg(bin())
        .args(["--bus-address", &env.addr, "--idle-exit", "0", "--dns-backend", "none", "--state-dir"])
        .arg(env.dir.join("state"))
        .args(["--run-as", "nobody"])
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    )
}

/// The old layout: the state directory belongs to the service account,
/// which plants a netcfg.json (log file and resolv.conf aimed at the
/// canary), DNS restore metadata naming the canary, a journal aimed at the
/// uplink, and symlinks to the canary for journal.new, journal.alt and the
/// DNS backups. The daemon ignores all of it, keeps its own state in a
/// root-owned `private/` there, and still recovers its own session after a
/// SIGKILL.
#[test]
fn a_state_dir_the_service_account_owns_cannot_steer_the_daemon() {
    if !require_root() {
        return;
    }
    let mut env = stopped("svcowned", &[]);
    let canary = canary(&env);
    let before = env.kernel_snapshot();
    let state = env.dir.join("state");
    clear_state(&env);
    sh(&format!("chown {NOBODY}:{NOBODY} {0} && chmod 750 {0}", state.display()));
    let c = canary.display();
    // Staged by root where the service account can read it, then copied in
    // by the service account itself.
    let plant = env.dir.join("plant");
    std::fs::create_dir_all(plant.join("dns")).unwrap();
    let json = format!(r#"{{"log_file": "{c}", "resolv_conf_file": "{c}", "log_level": 6}}"#);
    std::fs::write(plant.join("netcfg.json"), json).unwrap();
    std::fs::write(plant.join("journal"), format!("B {}\n{}", boot_id(), hostile_journal(&env, 1))).unwrap();
    std::fs::write(plant.join("dns/file-meta"), format!("path {c}\nkind file\nmode 4777\nuid 65534\ngid 65534\n"))
        .unwrap();
    std::fs::write(plant.join("dns/file-orig"), "PWNED").unwrap();
    std::fs::write(plant.join("dns/file-ours"), CANARY).unwrap();
    sh(&format!("chmod -R a+rX {}", plant.display()));
    as_service(&format!(
        "cp -r {p}/. {s}/ && ln -s {c} {s}/journal.new && ln -s {c} {s}/journal.alt && ln -s {c} {s}/dns/file-ours.tmp",
        p = plant.display(),
        s = state.display()
    ));
    env.start_daemon();
    let log = env.log();
    assert!(log.contains("its netcfg.json is ignored"), "{log}");
    assert_canary(&canary, &log);
    assert_eq!(env.kernel_snapshot(), before, "the planted journal touched nothing\n{log}");
    let private = state.join("private");
    let m = std::fs::symlink_metadata(&private).unwrap();
    assert!(m.is_dir() && m.uid() == 0 && m.mode() & 0o777 == 0o700, "{:o} {}", m.mode(), m.uid());
    // The daemon's own crash recovery still works, from its private state.
    let (_c, _p, fd) = session(&env);
    assert!(env.our_routes().contains("0.0.0.0/1"), "{}", env.our_routes());
    assert!(!env.signal_daemon("KILL").success());
    assert_ne!(env.kernel_snapshot(), before);
    env.start_daemon();
    assert_eq!(env.kernel_snapshot(), before, "its own session undone, nothing else\n{}", env.log());
    assert!(env.log().contains("left by a previous run"), "{}", env.log());
    assert_canary(&canary, &env.log());
    drop(fd);
    // What the service account planted is still there, untouched.
    assert_eq!(std::fs::read_to_string(state.join("dns/file-orig")).unwrap(), "PWNED");
    assert!(std::fs::symlink_metadata(state.join("journal.new")).unwrap().file_type().is_symlink());
}

/// A trusted (root-owned) state directory whose journal names the uplink,
/// its address, its default route (protocol boot and 79) and a rule of
/// protocol 0 beside the daemon's own session: after a SIGKILL and a
/// restart the session is gone and the uplink is exactly as before. Only
/// routes and rules with protocol 79, and links (with their addresses) of
/// our kinds carrying our marker are undone.
#[test]
fn a_forged_journal_touches_only_what_is_provably_ours() {
    if !require_root() {
        return;
    }
    let mut env = stopped("forged", &[]);
    env.ip("rule add priority 1000 lookup main");
    env.start_daemon();
    let before = env.kernel_snapshot();
    let (c, p, fd) = session(&env);
    let tun: String = get_prop(&c, &p, "device_name");
    assert!(env.ip(&format!("-o link show dev {tun}")).contains("alias ovpn-netcfgd"), "our link carries the marker");
    assert!(!env.signal_daemon("KILL").success());
    // Add the forged lines to the journal file in force (the other is empty).
    let state = env.dir.join("state");
    let file = ["journal", "journal.alt"]
        .iter()
        .map(|n| state.join(n))
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .expect("a journal in force");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&hostile_journal(&env, 100_000));
    std::fs::write(&file, text).unwrap();
    env.start_daemon();
    let log = env.log();
    assert_eq!(env.kernel_snapshot(), before, "{log}");
    assert!(log.contains("not ours, left alone: addr"), "{log}");
    assert!(log.contains("not ours, left alone: route 0.0.0.0/0 192.0.2.1"), "{log}");
    assert!(env.ip("-4 rule show").contains("1000:"), "a rule that is not ours stays");
    drop(fd);
}

/// Symlinks and hard links where the daemon expects its own files, and a
/// log file it cannot open safely: start-up fails with a clear error, and
/// nothing is written through them.
#[test]
fn symlinks_and_unsafe_log_files_are_refused_at_start_up() {
    if !require_root() {
        return;
    }
    let env = stopped("symlinks", &[]);
    let canary = canary(&env);
    let state = env.dir.join("state");
    clear_state(&env);
    let c = canary.display();
    for (plant, want) in [
        (format!("ln -s {c} {}/journal", state.display()), "journal"),
        (format!("ln -s {c} {}/journal.alt", state.display()), "journal.alt"),
        (format!("ln {c} {}/journal", state.display()), "2 links"),
    ] {
        sh(&plant);
        let (code, out) = refused_start(&env, &[]);
        assert_eq!(code, 2, "{plant}: {out}");
        assert!(out.contains(want), "{plant}: {out}");
        assert_canary(&canary, &out);
        sh(&format!("rm -f {0}/journal {0}/journal.alt", state.display()));
    }
    // A state directory the service account may write, but does not own.
    sh(&format!("chmod 770 {0} && chgrp {NOBODY} {0}", state.display()));
    let (code, out) = refused_start(&env, &[]);
    assert!(code == 2 && out.contains("not writable by group or others"), "{out}");
    sh(&format!("chmod 700 {0} && chgrp 0 {0}", state.display()));
    // The DNS backups belong to the account the daemon runs as (here the
    // clients' account): a directory that account may enter is refused.
    sh(&format!("mkdir -p {0}/dns && chmod 755 {0}/dns", state.display()));
    let (code, out) = refused_start(&env, &[]);
    assert!(code == 2 && out.contains("dns must be a directory owned by root with mode 0700"), "{out}");
    sh(&format!("chmod 700 {0}/dns", state.display()));
    // Log files: a symlink to the canary, a file in a directory the service
    // account owns, a file the service account owns.
    let logs = env.dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let theirs = env.dir.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    sh(&format!("chown {NOBODY} {}", theirs.display()));
    as_service(&format!("touch {}/netcfgd.log", theirs.display()));
    std::os::unix::fs::symlink(&canary, logs.join("link.log")).unwrap();
    sh(&format!("touch {0}/owned.log && chown {NOBODY} {0}/owned.log", logs.display()));
    for (log, want) in [
        (logs.join("link.log"), "refusing to log there"),
        (theirs.join("new.log"), "is not root's"),
        (theirs.join("netcfgd.log"), "is not root's"),
        (logs.join("owned.log"), "owned by root"),
    ] {
        let (code, out) = refused_start(&env, &["--log-file", log.to_str().unwrap()]);
        assert_eq!(code, 2, "{}: {out}", log.display());
        assert!(out.contains(want), "{}: {out}", log.display());
        assert_canary(&canary, &out);
    }
    assert!(!theirs.join("new.log").exists(), "nothing created where the service account could swap it");
}

/// A missing state directory is made (root's, 0700) and crash recovery
/// works from it; never "crash recovery is off".
#[test]
fn a_missing_state_dir_is_created_and_used() {
    if !require_root() {
        return;
    }
    let mut env = stopped("mkstate", &[]);
    let before = env.kernel_snapshot();
    std::fs::remove_dir_all(env.dir.join("state")).unwrap();
    env.start_daemon();
    let m = std::fs::metadata(env.dir.join("state")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o700));
    let (_c, _p, fd) = session(&env);
    assert!(!env.signal_daemon("KILL").success());
    env.start_daemon();
    assert_eq!(env.kernel_snapshot(), before, "{}", env.log());
    assert!(!env.log().contains("crash recovery is off"));
    drop(fd);
}

/// DNS restore metadata naming another file than the configured
/// resolv.conf (planted by root here: the service account cannot write the
/// state directory any more) is never acted on.
#[test]
fn dns_backups_of_another_file_are_left_alone() {
    if !require_root() {
        return;
    }
    let mut env = stopped("dnsmeta", &[]);
    let canary = canary(&env);
    let rc = env.dir.join("resolv.conf");
    std::fs::write(&rc, "nameserver 192.0.2.53\n").unwrap();
    let dns = env.dir.join("state/dns");
    std::fs::create_dir_all(&dns).unwrap();
    sh(&format!("chmod 700 {}", dns.display()));
    std::fs::write(dns.join("file-meta"), format!("path {}\nkind file\nmode 644\nuid 0\ngid 0\n", canary.display()))
        .unwrap();
    std::fs::write(dns.join("file-orig"), "PWNED").unwrap();
    std::fs::write(dns.join("file-ours"), CANARY).unwrap();
    env.extra_args = vec!["--run-as".into(), "nobody".into(), "--resolv-conf".into(), rc.display().to_string()];
    env.start_daemon();
    assert!(env.log().contains("not restored, left there for inspection"), "{}", env.log());
    assert_canary(&canary, &env.log());
    // A symlinked backup file is refused too.
    env.stop_daemon("TERM");
    std::fs::remove_file(dns.join("file-orig")).unwrap();
    std::os::unix::fs::symlink(&canary, dns.join("file-orig")).unwrap();
    std::fs::write(dns.join("file-meta"), format!("path {}\nkind file\nmode 644\nuid 0\ngid 0\n", rc.display()))
        .unwrap();
    std::fs::write(dns.join("file-ours"), "nameserver 192.0.2.53\n").unwrap();
    env.start_daemon();
    assert!(env.log().contains("unusable resolv.conf backup"), "{}", env.log());
    assert_eq!(std::fs::read_to_string(&rc).unwrap(), "nameserver 192.0.2.53\n");
    assert_canary(&canary, &env.log());
}

/// resolvconf(8) and its hooks get a fixed PATH, the bus address and
/// nothing else from the daemon's environment, only CAP_DAC_OVERRIDE (none
/// of CAP_NET_ADMIN, in no set), and their own process group, which the
/// time-out kills whole: a hook's background process does not outlive it.
#[test]
fn the_resolvconf_child_gets_nothing_extra_and_dies_whole() {
    if !require_root() {
        return;
    }
    let mut env = Env::for_dns("rcchild", b"nameserver 192.0.2.53\n");
    let rec = env.dir.join("rec");
    let sbin = env.dir.join("sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    std::fs::create_dir_all(&rec).unwrap();
    sh(&format!("chmod 777 {}", rec.display()));
    let r = rec.display();
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n-a)\n  {{ grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status; env; \
         echo \"pgid $(cut -d' ' -f5 /proc/$$/stat) pid $$\"; }} > {r}/add\n  cat >/dev/null\n  sleep 61 &\n  \
         echo $! > {r}/bg\n  sleep 60\n  ;;\nesac\nexit 0\n"
    );
    std::fs::write(sbin.join("resolvconf"), script).unwrap();
    sh(&format!("chmod 755 {}", sbin.join("resolvconf").display()));
    env.start_dns_daemon(&["--run-as", "nobody", "--dns-backend", "resolvconf"]);
    assert!(env.log().contains("DNS backend: resolvconf (forced)"), "{}", env.log());
    let c = env.conn();
    let p = create(&c, "rcchild");
    configure_like_real_client(&c, &p);
    let _: () = call(&c, &p, "AddDNS", (vec!["10.97.0.53".to_string()],)).unwrap();
    let t0 = std::time::Instant::now();
    let _fd = establish(&c, &p);
    // The hook runs while the daemon serves; the time-out comes later.
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "Establish waited for the hook");
    let killed = || env.log().contains("no result within 5 s; killed").then_some(());
    wait_for("the hook's time-out", killed);
    assert!(t0.elapsed() >= std::time::Duration::from_secs(5), "killed before its time");
    let add = std::fs::read_to_string(rec.join("add")).unwrap();
    let field = |k: &str| add.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string()).unwrap();
    for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        assert_eq!(field(set), "0000000000000002", "{set} only CAP_DAC_OVERRIDE\n{add}");
    }
    let vars: Vec<&str> = add.lines().filter(|l| !l.starts_with("Cap") && !l.starts_with("pgid ")).collect();
    assert!(vars.contains(&"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), "{add}");
    for v in &vars {
        let key = v.split('=').next().unwrap();
        assert!(["PATH", "DBUS_SYSTEM_BUS_ADDRESS", "PWD", "SHLVL", "_", "OLDPWD"].contains(&key), "leaked: {v}");
    }
    let ids: Vec<u32> = field("pgid").split(" pid ").map(|n| n.trim().parse().unwrap()).collect();
    assert_eq!(ids[0], ids[1], "the script leads its own process group");
    let bg: u32 = std::fs::read_to_string(rec.join("bg")).unwrap().trim().parse().unwrap();
    let gone = || {
        std::fs::read_to_string(format!("/proc/{bg}/stat"))
            .map_or(true, |s| s.rsplit(')').next().unwrap().trim().starts_with('Z'))
    };
    wait_for("the hook's background process to die", || gone().then_some(()));
}
