//! The dnsmasq backend against Debian's real dnsmasq, as on a router:
//!
//! ```text
//!  <ns>-lan                 <ns> (the router)                  <ns>-gw
//!  client (dig) ── veth ──  dnsmasq 192.168.77.1   ── veth ──  "ISP" DNS 192.0.2.1
//!  192.168.77.2             ovpn-netcfgd, tun                  the VPN's DNS 192.0.2.53
//! ```
//!
//! The router's dnsmasq runs as the `dnsmasq` account and reads the servers
//! file from its configuration file, as OpenWrt's does; the daemon runs as
//! `nobody` with a private /etc/resolv.conf (tests/rigs/dns-rig.sh). Every
//! answer is a real query from the LAN side; files are read back from disk.

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dbus::blocking::Connection;

const STUB: &[u8] = b"nameserver 127.0.0.1\n";
/// What the administrator had in the servers file before any VPN.
const ORIGINAL: &[u8] = b"# the router's own\nserver=/lan.example/192.0.2.1\n";
const ISP: &str = "198.51.100.1";
const ISP_CORP: &str = "198.51.100.2";
const VPN: &str = "10.8.8.8";
const VPN_CORP: &str = "10.8.0.10";

/// The LAN namespace, the DNS servers and the router's dnsmasq.
struct Router {
    lan: String,
    servers: PathBuf,
    isp: Option<Helper>,
    _vpn: Helper,
    dnsmasq: Option<Helper>,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.dnsmasq.take();
        let _ = Command::new("ip").args(["netns", "del", &self.lan]).status();
    }
}

fn dnsmasq_bin() -> Option<&'static str> {
    let p = "/usr/sbin/dnsmasq";
    let dig = Path::new("/usr/bin/dig").exists();
    if !Path::new(p).exists() || !dig || nix::unistd::User::from_name("dnsmasq").ok().flatten().is_none() {
        skip("needs dnsmasq-base (with its dnsmasq account) and bind9-dnsutils (make deps installs them)");
        return None;
    }
    Some(p)
}

/// A dnsmasq in namespace `ns` that answers every name below `answers`'
/// domains with their address.
fn fake_dns(ns: &str, listen: &str, answers: &[(&str, &str)], log: &Path) -> Helper {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "/usr/sbin/dnsmasq", "-k", "--conf-file=/dev/null", "--pid-file=", "--user=root"])
        .args(["--bind-interfaces", &format!("--listen-address={listen}"), "--no-resolv", "--no-hosts"])
        .args(answers.iter().map(|(d, a)| format!("--address=/{d}/{a}")))
        .arg("--log-facility=-")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    Helper(cmd.spawn().unwrap())
}

fn setup(env: &Env) -> Option<Router> {
    dnsmasq_bin()?;
    let (ns, gw, lan) = (env.ns.clone(), format!("{}-gw", env.ns), format!("{}-lan", env.ns));
    sh(&format!(
        "ip netns add {lan} && ip -n {lan} link set lo up && \
         ip -n {ns} link add lan0 type veth peer name cl0 && ip -n {ns} link set cl0 netns {lan} && \
         ip -n {ns} link set lan0 addrgenmode none && ip -n {lan} link set cl0 addrgenmode none && \
         ip -n {ns} addr add 192.168.77.1/24 dev lan0 && ip -n {ns} link set lan0 up && \
         ip -n {lan} addr add 192.168.77.2/24 dev cl0 && ip -n {lan} link set cl0 up && \
         ip -n {gw} addr add 192.0.2.53/24 dev gw0"
    ));
    let isp = fake_dns(&gw, "192.0.2.1", &[("example.com", ISP), ("corp.example", ISP_CORP)], &env.dir.join("isp.log"));
    let vpn =
        fake_dns(&gw, "192.0.2.53", &[("example.com", VPN), ("corp.example", VPN_CORP)], &env.dir.join("vpn.log"));
    // The servers file belongs to the service user, in a directory of its
    // own that dnsmasq's account can read.
    let dir = env.dir.join("dnsmasq");
    std::fs::create_dir(&dir).unwrap();
    let servers = dir.join("servers");
    std::fs::write(&servers, ORIGINAL).unwrap();
    sh(&format!("chown -R 65534:65534 {0} && chmod 755 {0} && chmod 644 {1}", dir.display(), servers.display()));
    let conf = format!(
        "user=dnsmasq\nbind-interfaces\nlisten-address=192.168.77.1\nno-resolv\nno-hosts\npid-file=\n\
         server=192.0.2.1\nservers-file={}\nlog-facility=-\nlog-queries\n",
        servers.display()
    );
    std::fs::write(env.dir.join("dnsmasq.conf"), conf).unwrap();
    let mut r = Router { lan, servers, isp: Some(isp), _vpn: vpn, dnsmasq: None };
    r.start_dnsmasq(env, true);
    Some(r)
}

impl Router {
    /// Waits for a real answer: through the router's upstream (`isp_up`), or
    /// else through the VPN's server for its domain (the file has it).
    fn start_dnsmasq(&mut self, env: &Env, isp_up: bool) {
        let child = Command::new("ip")
            .args(["netns", "exec", &env.ns, "/usr/sbin/dnsmasq", "-k", "-C"])
            .arg(env.dir.join("dnsmasq.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(env.dir.join("router.log")).unwrap())
            .spawn()
            .unwrap();
        self.dnsmasq = Some(Helper(child));
        let (name, want) = if isp_up { ("www.example.com", ISP) } else { ("git.corp.example", VPN_CORP) };
        wait_for("the router's dnsmasq", || (self.lookup(name) == want).then_some(()));
        let pid = self.dnsmasq.as_ref().unwrap().0.id();
        assert_eq!(status_field(pid, "Uid:").split('\t').next(), uid_of("dnsmasq").as_deref(), "dropped to dnsmasq");
    }

    /// A LAN client's query to the router: the address, or "" if none.
    fn lookup(&self, name: &str) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.lan, "dig", "+short", "+time=1", "+tries=2", "@192.168.77.1", name, "A"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        out.lines().find(|l| !l.starts_with(';')).unwrap_or("").trim().to_string()
    }

    fn body(&self) -> Vec<String> {
        let t = String::from_utf8(std::fs::read(&self.servers).unwrap()).unwrap();
        t.lines()
            .filter(|l| !l.starts_with("# Generated") && !l.starts_with("# What follows"))
            .map(String::from)
            .collect()
    }
}

fn uid_of(user: &str) -> Option<String> {
    nix::unistd::User::from_name(user).ok().flatten().map(|u| u.uid.to_string())
}

/// The daemon as `nobody`, through the DNS rig (private resolv.conf and
/// /run), with a 0666 /dev/net/tun as distributions ship it.
fn start_daemon(env: &mut Env, servers: &Path) {
    let node = env.dir.join("tun");
    if !node.exists() {
        sh(&format!("mknod -m 666 {} c 10 200", node.display()));
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(env.dir.join("daemon.log")).unwrap();
    let child = Command::new(dns_rig())
        .args(["daemon", env.dir.to_str().unwrap(), &env.ns, "sh", "-c"])
        .arg(format!("mount --bind {} /dev/net/tun && exec \"$0\" \"$@\"", node.display()))
        .arg(bin())
        .args(["--bus-address", &env.addr, "--idle-exit", "0", "--log-level", "6", "--state-dir"])
        .arg(env.dir.join("state"))
        .args(["--run-as", "nobody", "--dnsmasq-servers", servers.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    env.daemon = Some(child);
    let t0 = Instant::now();
    while !env.daemon_alive() {
        if let Some(st) = env.daemon.as_mut().unwrap().try_wait().unwrap() {
            panic!("daemon exited early ({st}): {}", env.log());
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "daemon did not start: {}", env.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Sess {
    path: String,
    tun: String,
    _fd: OwnedFd,
}

fn session(c: &Connection, name: &str, servers: &[&str], search: &[&str], scope: &str) -> Sess {
    let p = create(c, name);
    configure_like_real_client(c, &p);
    set_prop(c, &p, "dns_scope", scope.to_string()).unwrap();
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let _: () = call(c, &p, "AddDNS", (v(servers),)).unwrap();
    let _: () = call(c, &p, "AddDNSSearch", (v(search),)).unwrap();
    let fd = establish(c, &p);
    let tun: String = get_prop(c, &p, "device_name");
    Sess { path: p, tun, _fd: fd }
}

fn env_for(tag: &str) -> Option<(Env, Router)> {
    if !require_root() {
        return None;
    }
    let env = Env::for_dns(tag, STUB);
    let r = setup(&env)?;
    Some((env, r))
}

#[test]
fn dnsmasq_split_then_global_dns_for_the_lan_then_restored_exactly() {
    let Some((mut env, mut r)) = env_for("dm-scope") else { return };
    let ino = std::fs::metadata(&r.servers).unwrap().ino();
    // A process of another user that calls itself dnsmasq and claims our
    // file: it must never get a signal from the daemon.
    let trap = env.dir.join("trap");
    std::fs::create_dir(&trap).unwrap();
    sh(&format!("chmod 777 {0} && ln -s /bin/sh {0}/dnsmasq", trap.display()));
    let hostile = Command::new("setpriv")
        .args(["--reuid=4242", "--regid=4242", "--clear-groups"])
        .arg(trap.join("dnsmasq"))
        .arg("-c")
        .arg(format!("trap 'echo hup >> {}/got' HUP; while :; do sleep 0.1; done", trap.display()))
        .arg(format!("--servers-file={}", r.servers.display()))
        .spawn()
        .unwrap();
    let _hostile = Helper(hostile);

    start_daemon(&mut env, &r.servers.clone());
    let log = env.log();
    assert!(log.contains("DNS backend: dnsmasq (auto)"), "{log}");
    let pid = env.daemon.as_ref().unwrap().id();
    assert_eq!(status_field(pid, "Uid:").split('\t').next(), Some("65534"));
    // CAP_NET_ADMIN, CAP_KILL (dnsmasq is another user) and
    // CAP_DAC_OVERRIDE (the backup goes to root's state directory).
    assert_eq!(status_field(pid, "CapEff:"), "0000000000001022", "{log}");
    assert_eq!(status_field(pid, "CapPrm:"), "0000000000001022");
    assert_eq!(status_field(pid, "CapAmb:"), "0000000000000000");
    assert!(log.contains("runs as uid [4242, 4242, 4242], neither root nor dnsmasq's account: ignored"), "{log}");

    // Before: everything through the router's own upstream.
    assert_eq!(r.lookup("host.corp.example"), ISP_CORP);
    assert_eq!(r.lookup("www.example.com"), ISP);

    // Split DNS: the VPN's domain, and only it, goes to the VPN's server.
    let c = env.conn();
    let s = session(&c, "split", &["192.0.2.53"], &["corp.example"], "tunnel");
    assert_eq!(r.body(), ["server=/corp.example/192.0.2.53", "# the router's own", "server=/lan.example/192.0.2.1"]);
    let head = format!("# Generated by ovpn-netcfgd: DNS of the VPN sessions on {} ", s.tun);
    assert!(String::from_utf8(std::fs::read(&r.servers).unwrap()).unwrap().starts_with(&head));
    assert_eq!(
        std::fs::metadata(&r.servers).unwrap().ino(),
        ino,
        "rewritten in place (a ujail bind mount stays valid)"
    );
    assert_eq!(r.lookup("host.corp.example"), VPN_CORP);
    assert_eq!(r.lookup("www.example.com"), ISP);
    // The router's upstream dies and dnsmasq restarts (a new pid, which
    // reads the file at start): names outside the VPN's domain still never
    // go to the VPN. (A running dnsmasq keeps sending to the upstream that
    // answered last, dead or not, until it tests them all again.)
    r.isp.take();
    r.dnsmasq.take();
    r.start_dnsmasq(&env, false);
    assert_eq!(r.lookup("git.corp.example"), VPN_CORP);
    assert_eq!(r.lookup("wiki.example.com"), "");

    // Global scope on the live session: the VPN's server becomes an
    // upstream for every name, the only live one here.
    set_prop(&c, &s.path, "dns_scope", "global".to_string()).unwrap();
    assert_eq!(
        r.body(),
        ["server=/corp.example/192.0.2.53", "server=192.0.2.53", "# the router's own", "server=/lan.example/192.0.2.1"]
    );
    assert_eq!(r.lookup("wiki.example.com"), VPN);
    assert_eq!(r.lookup("docs.corp.example"), VPN_CORP);

    // Destroy: the file byte for byte, same inode, dnsmasq told (its cache
    // is gone too: the name it answered a moment ago fails now).
    let _: () = call(&c, &s.path, "Destroy", ()).unwrap();
    assert_eq!(std::fs::read(&r.servers).unwrap(), ORIGINAL);
    let m = std::fs::metadata(&r.servers).unwrap();
    assert_eq!((m.ino(), m.uid(), m.mode() & 0o777), (ino, 65534, 0o644));
    assert_eq!(r.lookup("wiki.example.com"), "");
    assert_eq!(r.lookup("docs.corp.example"), "");
    assert!(std::fs::read_dir(env.dir.join("state/dns")).unwrap().next().is_none(), "no backup left");
    assert!(!trap.join("got").exists(), "the other user's process was signalled");
    let n = env.log().matches("told to read").count();
    assert_eq!(n, 3, "one SIGHUP per change: {}", env.log());
    assert_eq!(env.log().matches(&format!("(pid {}) told", r.dnsmasq.as_ref().unwrap().0.id())).count(), 2);
    assert!(env.stop_daemon("TERM").success(), "{}", env.log());
    assert_eq!(std::fs::read(&r.servers).unwrap(), ORIGINAL);
}

#[test]
fn dnsmasq_chosen_only_when_it_reads_the_file_and_restored_after_sigkill() {
    let Some((mut env, mut r)) = env_for("dm-kill") else { return };
    // No dnsmasq reads the file: auto does not choose it.
    r.dnsmasq.take();
    start_dnsmasq_free_daemon(&mut env, &r);
    r.start_dnsmasq(&env, true);

    start_daemon(&mut env, &r.servers.clone());
    assert!(env.log().contains("DNS backend: dnsmasq (auto)"), "{}", env.log());
    let c = env.conn();
    let _s = session(&c, "kill", &["192.0.2.53"], &["corp.example"], "global");
    assert_eq!(r.lookup("host.corp.example"), VPN_CORP);
    assert!(!env.stop_daemon("KILL").success());
    assert!(r.body().contains(&"server=192.0.2.53".to_string()), "a killed daemon restores nothing");
    assert_eq!(r.lookup("host.corp.example"), VPN_CORP);

    // The next start puts the file back and tells dnsmasq before anything
    // else: the same name goes to the router's upstream again.
    start_daemon(&mut env, &r.servers.clone());
    assert_eq!(std::fs::read(&r.servers).unwrap(), ORIGINAL, "restored byte for byte at start-up");
    assert_eq!(r.lookup("host.corp.example"), ISP_CORP);
    let log = env.log();
    let restored = log.rfind("did not exit cleanly").unwrap_or_else(|| panic!("{log}"));
    let chosen = log.rfind("DNS backend: dnsmasq").unwrap();
    assert!(restored < chosen, "recovery comes before the backend choice: {log}");
    assert!(std::fs::read_dir(env.dir.join("state/dns")).unwrap().next().is_none());
    assert!(env.stop_daemon("TERM").success());
}

/// Starts and stops the daemon while no dnsmasq runs: auto must fall back
/// to the (private) resolv.conf file and say why.
fn start_dnsmasq_free_daemon(env: &mut Env, r: &Router) {
    start_daemon(env, &r.servers);
    let log = env.log();
    assert!(log.contains(&format!("no dnsmasq of this system reads {}", r.servers.display())), "{log}");
    assert!(log.contains("DNS backend: resolv.conf file"), "{log}");
    assert!(env.stop_daemon("TERM").success());
    assert_eq!(std::fs::read(&r.servers).unwrap(), ORIGINAL);
}

/// The OpenWrt init script (tests/openwrt-init.sh runs it with procd, uci
/// and dnsmasq's init stubbed, in a private mount namespace): the dnsmasq
/// backend on a servers file dnsmasq's account can read, dnsmasq restarted
/// once when the file is new, a capability-only jail.
#[test]
fn openwrt_init_prepares_the_servers_file_and_runs_the_dnsmasq_backend() {
    if !require_root() {
        return;
    }
    let out = std::env::temp_dir().join(format!("ovpn-netcfgd-openwrt-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openwrt-init.sh");
    let o = Command::new("bash").arg(script).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap();
    let procd = read("procd");
    let commands: Vec<&str> = procd.lines().filter_map(|l| l.strip_prefix("param command ")).collect();
    assert_eq!(commands.len(), 2, "{procd}");
    let args: Vec<&str> = commands[0].split(' ').skip(1).collect();
    for want in [
        "--idle-exit 0",
        "--run-as openvpn",
        "--dns-backend dnsmasq",
        "--dnsmasq-servers /var/run/ovpn-netcfgd/dnsmasq.servers",
    ] {
        assert!(commands[0].contains(want), "{want}: {}", commands[0]);
    }
    // The daemon accepts exactly that command line.
    let st = Command::new(bin()).args(&args).arg("--help").stdout(Stdio::null()).status().unwrap();
    assert!(st.success(), "{args:?}");
    // A jail without options (no mount, so no PID namespace), bounded.
    assert_eq!(procd.lines().filter(|l| l.starts_with("jail")).collect::<Vec<_>>(), ["jail ovpn-netcfgd"; 2]);
    assert!(procd.contains("param capabilities ") && procd.contains("param no_new_privs 1"), "{procd}");
    let caps = read("caps.json");
    let bounding = caps.split("\"effective\"").next().unwrap();
    assert!(bounding.contains("\"CAP_KILL\"") && bounding.contains("\"CAP_NET_ADMIN\""), "{caps}");
    // dnsmasq restarted once: only when the file had to be created.
    assert_eq!(read("calls"), "dnsmasq running\ndnsmasq restart\n");
    assert_eq!(
        read("stat"),
        "file openvpn 644 0 regular empty file\ndir root 755\nstate root 700\nconf root 600 regular file\n"
    );
    // The links planted there were replaced, their target left alone.
    assert_eq!(read("victim"), "keep\n");
    assert_eq!(read("victim.stat"), "victim root 644 5\n");
    let _ = std::fs::remove_dir_all(&out);
}
