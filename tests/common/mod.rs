//! Test harness: per test, a fresh network namespace with a fake uplink,
//! a private system-like dbus-daemon, and the real daemon inside the
//! namespace. Results are read back from the kernel with `ip`, never from
//! the daemon's own state.
#![allow(dead_code)]

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbus::arg::{AppendAll, ReadAll, RefArg, Variant};
use dbus::blocking::Connection;
use dbus::channel::Channel;
use dbus::Message;

pub const DEST: &str = "net.openvpn.v3.netcfg";
pub const IFACE: &str = "net.openvpn.v3.netcfg";
pub const MGR: &str = "/net/openvpn/v3/netcfg";
const T: Duration = Duration::from_secs(10);

/// Start-up bound: T, six times that in the DCO guest, where software
/// emulation on a busy host can make a start take tens of seconds.
fn start_limit() -> Duration {
    if std::env::var_os("DCO_VM_GUEST").is_some() {
        T * 6
    } else {
        T
    }
}

static N: AtomicU32 = AtomicU32::new(0);

/// Set by `make test`, which installs everything the tests need: there a
/// test that would skip fails instead.
pub const NO_SKIP: &str = "OVPN_NETCFGD_NO_SKIP";

/// A test that cannot run says why and returns (the caller returns too).
/// Fails instead under OVPN_NETCFGD_NO_SKIP=1.
pub fn skip(why: &str) {
    if std::env::var_os(NO_SKIP).is_some_and(|v| v == "1") {
        panic!("{NO_SKIP}=1, but this test would skip: {why}");
    }
    note_skip(why);
}

/// Prints SKIP with the test's name. libtest captures `eprintln!` of a
/// passing test (a skip would look like a pass), but not writes to the
/// stderr handle itself.
pub fn note_skip(why: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let _ = writeln!(std::io::stderr().lock(), "SKIP {test}: {why}");
}

pub fn has_root_and_tun() -> bool {
    nix::unistd::Uid::effective().is_root() && Path::new("/dev/net/tun").exists()
}

/// Skips (see `skip`) when the machine cannot run these tests.
pub fn require_root() -> bool {
    let ok = has_root_and_tun();
    if !ok {
        skip("needs root and /dev/net/tun");
    }
    ok
}

/// The daemon under test: `NETCFGD_BIN` (make bench measures the real
/// release artifact) or the one cargo built for this test.
pub fn bin() -> PathBuf {
    std::env::var_os("NETCFGD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ovpn-netcfgd")))
}

/// The account the daemon drops to by its own choice (the first of its
/// accounts, the dedicated one), as installed. [`ensure_service_account`]
/// creates it from the project's sysusers.d file when it is missing.
pub const SERVICE_USER: &str = "ovpn-netcfgd";

/// Creates [`SERVICE_USER`] (once per test binary) the way a package does.
pub fn ensure_service_account() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if nix::unistd::User::from_name(SERVICE_USER).unwrap().is_some() {
            return;
        }
        let conf =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/sysusers.d/ovpn-netcfgd.conf")).unwrap();
        let line = conf.lines().find(|l| l.starts_with(&format!("u {SERVICE_USER} "))).unwrap();
        // systemd-sysusers locks the account files itself: parallel runs are safe.
        sh(&format!("echo '{line}' | systemd-sysusers -"));
        assert!(nix::unistd::User::from_name(SERVICE_USER).unwrap().is_some(), "{SERVICE_USER} was not created");
    });
}

pub struct Env {
    pub dir: PathBuf,
    pub ns: String,
    pub addr: String,
    dbus: Child,
    pub daemon: Option<Child>,
    pub extra_args: Vec<String>,
    /// A command the daemon's `ip netns exec` runs under (e.g. a mount namespace).
    pub prefix: Vec<String>,
    /// polkitd, started with the first systemd-resolved.
    polkit: Option<Helper>,
}

pub fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(o.status.success(), "command failed: {cmd}\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Env {
    /// A namespace with `lo` and a fake uplink 192.0.2.2/24 + 2001:db8::2/64
    /// with default routes via .1 / ::1. The uplink is a veth whose other end
    /// is in a second namespace of ours holding those gateway addresses and
    /// nothing else, so no packet can leave the machine. The daemon starts
    /// as root and drops to the service user, as in production.
    pub fn new(tag: &str) -> Env {
        Self::with_args(tag, &[])
    }

    /// The same as `with_args`: every daemon of the harness runs as the
    /// service user unless a test asks for `--run-as-root`.
    pub fn unprivileged(tag: &str, args: &[&str]) -> Env {
        Self::with_args(tag, args)
    }

    /// As `new`, with `args` after the harness's own. Without `--run-as`
    /// or `--run-as-root` among them the daemon drops to the account it
    /// chooses itself, [`SERVICE_USER`].
    pub fn with_args(tag: &str, args: &[&str]) -> Env {
        let mut e = Self::without_daemon(tag);
        e.extra_args = args.iter().map(|s| s.to_string()).collect();
        e.start_daemon();
        e
    }

    /// The namespaces, the bus and the directories; no daemon yet.
    fn without_daemon(tag: &str) -> Env {
        ensure_service_account();
        let n = N.fetch_add(1, Ordering::SeqCst);
        let ns = format!("onc-{}-{}-{n}", std::process::id(), &tag[..tag.len().min(12)]);
        let dir = std::env::temp_dir().join(&ns);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("services")).unwrap();
        std::fs::create_dir_all(dir.join("state")).unwrap();
        // The state directory is root's, mode 0700, as the daemon wants it.
        sh(&format!("chmod 755 {} && chmod 700 {}/state", dir.display(), dir.display()));
        // Until `Env` exists its Drop cannot clean up: remove the namespaces
        // here if the set-up fails half-way.
        // No link-local address on the uplink and no duplicate address
        // detection: addresses that appear or settle mid-test would look
        // like a change made by the daemon.
        let nodad = "net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0";
        let undo_ns = format!("ip netns del {ns} 2>/dev/null; ip netns del {ns}-gw 2>/dev/null; exit 1");
        sh(&format!(
            "{{ ip netns add {ns} && ip netns add {ns}-gw && ip -n {ns} link set lo up && \
             ip netns exec {ns} sysctl -qw {nodad} && ip netns exec {ns}-gw sysctl -qw {nodad} && \
             ip -n {ns} link add name uplink0 type veth peer name gw0 && ip -n {ns} link set gw0 netns {ns}-gw && \
             ip -n {ns} link set uplink0 addrgenmode none && ip -n {ns}-gw link set gw0 addrgenmode none && \
             ip -n {ns}-gw addr add 192.0.2.1/24 dev gw0 && ip -n {ns}-gw -6 addr add 2001:db8::1/64 dev gw0 nodad && \
             ip -n {ns}-gw link set gw0 up && ip -n {ns}-gw link set lo up && ip -n {ns} link set uplink0 up && \
             ip -n {ns} addr add 192.0.2.2/24 dev uplink0 && ip -n {ns} route add default via 192.0.2.1 && \
             ip -n {ns} -6 addr add 2001:db8::2/64 dev uplink0 nodad && ip -n {ns} -6 route add default via 2001:db8::1; }} || {{ {undo_ns}; }}"
        ));
        let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bus.conf.in"))
            .unwrap()
            .replace("@DIR@", &dir.display().to_string());
        std::fs::write(dir.join("bus.conf"), conf).unwrap();
        let dbus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", dir.join("bus.conf").display()))
            .arg("--nofork")
            .arg("--nopidfile")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        let sock = dir.join("bus.sock");
        let t0 = Instant::now();
        // Until it accepts: the socket file appears at bind(), before listen().
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(t0.elapsed() < start_limit(), "dbus-daemon did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        let addr = format!("unix:path={}", sock.display());
        let mut e = Env { dir, ns, addr, dbus, daemon: None, extra_args: Vec::new(), prefix: Vec::new(), polkit: None };
        // The daemon's view of /dev/net/tun is a 0666 node (in its own mount
        // namespace), as distributions ship it; some test machines have it
        // 0600, which only root can open.
        let node = e.dir.join("tun");
        sh(&format!("mknod -m 666 {} c 10 200", node.display()));
        e.prefix = vec![
            "unshare".into(),
            "-m".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            format!("mount --bind {} /dev/net/tun && exec \"$0\" \"$@\"", node.display()),
        ];
        e
    }

    pub fn start_daemon(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).unwrap();
        let mut cmd = Command::new(self.prefix.first().map(String::as_str).unwrap_or("ip"));
        if !self.prefix.is_empty() {
            cmd.args(&self.prefix[1..]).arg("ip");
        }
        cmd.args(["netns", "exec", &self.ns])
            .arg(bin())
            .args(["--bus-address", &self.addr, "--idle-exit", "0", "--log-level", "6", "--state-dir"])
            .arg(self.dir.join("state"))
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log);
        // Here the daemon sees the host's /etc/resolv.conf: no DNS backend
        // unless a test chose one (tests/dns.rs runs the daemon through
        // tests/rigs/dns-rig.sh, with a private resolv.conf).
        let dns =
            |a: &String| a.starts_with("--dns-backend") || a.starts_with("--resolv-conf") || a == "--systemd-resolved";
        if !self.extra_args.iter().any(dns) {
            cmd.args(["--dns-backend", "none"]);
        }
        let child = cmd.spawn().expect("daemon");
        self.daemon = Some(child);
        let c = self.conn();
        let t0 = Instant::now();
        loop {
            let p = c.with_proxy("org.freedesktop.DBus", "/org/freedesktop/DBus", T);
            let (has,): (bool,) = p.method_call("org.freedesktop.DBus", "NameHasOwner", (DEST,)).unwrap();
            if has {
                break;
            }
            if let Some(st) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited early ({st}): {}", self.log());
            }
            assert!(t0.elapsed() < start_limit(), "daemon did not take its name: {}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
        self.check_dropped(&self.extra_args);
    }

    /// Unless `args` keep root, the daemon has no root id left (the kernel's
    /// word, /proc), whatever account it chose.
    fn check_dropped(&self, args: &[impl AsRef<str>]) {
        if args.iter().any(|a| a.as_ref() == "--run-as-root") {
            return;
        }
        let pid = self.daemon.as_ref().unwrap().id();
        let uids = status_field(pid, "Uid:");
        assert!(
            !uids.is_empty() && uids.split('\t').all(|u| u != "0"),
            "the daemon still has a root id (Uid: {uids}): {}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn conn(&self) -> Connection {
        let mut ch = Channel::open_private(&self.addr).expect("connect");
        ch.register().expect("hello");
        Connection::from(ch)
    }

    /// Runs `ip` inside the namespace and returns stdout.
    pub fn ip(&self, args: &str) -> String {
        sh(&format!("ip -n {} {args}", self.ns))
    }

    /// Everything observable in the namespace that the daemon might touch.
    pub fn kernel_snapshot(&self) -> String {
        format!(
            "{}{}{}{}{}{}",
            self.ip("-o link show"),
            self.ip("-o addr show"),
            self.ip("-4 route show table all"),
            self.ip("-6 route show table all"),
            self.ip("-4 rule show"),
            self.ip("-6 rule show")
        )
    }

    /// Links other than lo and the uplink.
    pub fn extra_links(&self) -> Vec<String> {
        self.ip("-o link show")
            .lines()
            .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap().to_string()))
            .filter(|n| n != "lo" && n != "uplink0")
            .collect()
    }

    /// Whether one of our routes has destination `dst` and reads `rest`
    /// after it (`ip route` text), e.g. ("192.0.2.1", "dev uplink0").
    pub fn has_our_route(&self, dst: &str, rest: &str) -> bool {
        let line = format!("{dst} {rest}");
        self.our_routes().lines().any(|l| l.trim_end() == line || l.starts_with(&format!("{line} ")))
    }

    pub fn our_routes(&self) -> String {
        format!("{}{}", self.ip("-4 route show table all proto 79"), self.ip("-6 route show table all proto 79"))
    }

    /// How many of our IPv4 /24 routes via a gateway the kernel has.
    pub fn our_gateway_24s(&self) -> usize {
        self.ip("-4 route show proto 79").lines().filter(|l| l.starts_with("10.") && l.contains("/24 via ")).count()
    }

    pub fn daemon_alive(&mut self) -> bool {
        let alive = self.daemon.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none());
        alive && ping(&self.conn())
    }

    pub fn signal_daemon(&mut self, sig: &str) -> std::process::ExitStatus {
        let pid = self.daemon.as_ref().unwrap().id();
        // `ip netns exec` execs the daemon, so the child pid is the daemon.
        sh(&format!("kill -{sig} {pid}"));
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                return st;
            }
            assert!(t0.elapsed() < T, "daemon did not exit after SIG{sig}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip").args(["netns", "del", &format!("{}-gw", self.ns)]).status();
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn ping(c: &Connection) -> bool {
    c.with_proxy(DEST, "/", T).method_call::<(), _, _, _>("org.freedesktop.DBus.Peer", "Ping", ()).is_ok()
}

/// Calls a method on the daemon; Err holds (error name, message).
pub fn call<A: AppendAll, R: ReadAll>(
    c: &Connection,
    path: &str,
    member: &str,
    args: A,
) -> Result<R, (String, String)> {
    c.with_proxy(DEST, path, T)
        .method_call(IFACE, member, args)
        .map_err(|e| (e.name().unwrap_or("").to_string(), e.message().unwrap_or("").to_string()))
}

/// Sends a prepared message and waits for the reply.
pub fn send(c: &Connection, m: Message) -> Result<Message, (String, String)> {
    c.channel()
        .send_with_reply_and_block(m, T)
        .map_err(|e| (e.name().unwrap_or("").to_string(), e.message().unwrap_or("").to_string()))
}

pub fn method(path: &str, member: &str) -> Message {
    Message::new_method_call(DEST, path, IFACE, member).unwrap()
}

pub fn set_prop<V: RefArg + dbus::arg::Arg + dbus::arg::Append>(
    c: &Connection,
    path: &str,
    name: &str,
    v: V,
) -> Result<(), (String, String)> {
    c.with_proxy(DEST, path, T)
        .method_call("org.freedesktop.DBus.Properties", "Set", (IFACE, name, Variant(v)))
        .map_err(|e| (e.name().unwrap_or("").to_string(), e.message().unwrap_or("").to_string()))
}

pub fn get_prop<R: for<'b> dbus::arg::Get<'b> + 'static>(c: &Connection, path: &str, name: &str) -> R {
    let (v,): (Variant<R>,) =
        c.with_proxy(DEST, path, T).method_call("org.freedesktop.DBus.Properties", "Get", (IFACE, name)).unwrap();
    v.0
}

pub fn create(c: &Connection, name: &str) -> String {
    let (p,): (dbus::Path<'static>,) = call(c, MGR, "CreateVirtualInterface", (name,)).unwrap();
    p.to_string()
}

/// The session of the real client (reference §4.11), up to but not including Establish.
pub fn configure_like_real_client(c: &Connection, p: &str) {
    configure_with_network(c, p, "10.97.0.0");
}

/// As `configure_like_real_client`, routing the /24 at `net` instead
/// (sessions that run at the same time each need their own network).
pub fn configure_with_network(c: &Connection, p: &str, net: &str) {
    set_prop(c, p, "dns_scope", "global".to_string()).unwrap();
    let _: () = call(c, p, "AddIPAddress", ("10.98.0.2", 24u32, "10.98.0.1", false)).unwrap();
    let _: () = call(c, p, "AddIPAddress", ("fd00:98::1000", 64u32, "fd00:98::1", true)).unwrap();
    let _: () = call(c, p, "SetRemoteAddress", ("10.99.0.1", false)).unwrap();
    set_prop(c, p, "layer", 3u32).unwrap();
    set_prop(c, p, "mtu", 1500u16).unwrap();
    let nets = vec![(net.to_string(), 24u32, -1i32, false, false)];
    let _: () = call(c, p, "AddNetworks", (nets,)).unwrap();
}

pub fn establish(c: &Connection, p: &str) -> OwnedFd {
    let r = send(c, method(p, "Establish")).expect("Establish");
    r.read1::<OwnedFd>().expect("Establish returns an fd")
}

/// Sends `big` on `first`, and while it has no reply, times trivial calls
/// of `second` one after another: how long `big` keeps another client
/// waiting. Returns the longest of those waits and the reply to `big`
/// (which may hold a tun fd).
pub fn wait_beside(first: &Connection, second: &Connection, big: Message) -> (Duration, Message) {
    // Generous time-outs: `make bench` also measures daemons that take
    // seconds over such a call.
    let long = Duration::from_secs(120);
    let serial = first.channel().send(big).unwrap();
    first.channel().flush();
    let p = second.with_proxy(DEST, MGR, long);
    let mut longest = Duration::ZERO;
    let t0 = Instant::now();
    loop {
        let _ = first.channel().read_write(Some(Duration::ZERO));
        while let Some(m) = first.channel().pop_message() {
            if m.get_reply_serial() == Some(serial) {
                return (longest, m);
            }
        }
        assert!(t0.elapsed() < long, "no reply to the first call");
        let t = Instant::now();
        let _: (Variant<String>,) =
            p.method_call("org.freedesktop.DBus.Properties", "Get", (IFACE, "version")).unwrap();
        longest = longest.max(t.elapsed());
    }
}

/// Collects NetworkChange signals that arrive within `d`.
pub fn signals(c: &Connection, d: Duration) -> Vec<(u32, String, std::collections::HashMap<String, String>)> {
    let mut out = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < d {
        let _ = c.channel().read_write(Some(Duration::from_millis(20)));
        while let Some(m) = c.channel().pop_message() {
            if m.member().as_deref() == Some("NetworkChange") {
                out.push(m.read3().unwrap());
            }
        }
    }
    out
}

/// Runs busctl as another user (for ACL tests); returns (ok, stdout+stderr).
pub fn busctl_as(uid: u32, addr: &str, args: &str) -> (bool, String) {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("setpriv --reuid={uid} --regid={uid} --clear-groups busctl --address={addr} {args}"))
        .output()
        .unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// The GLib client (tests/demo/client.py) after it has established its
/// device and is waiting on stdin before it disconnects.
pub struct GlibClient {
    pub child: Child,
    pub out: std::io::BufReader<std::process::ChildStdout>,
    /// The tun device it got.
    pub dev: String,
    /// What it printed up to now.
    pub transcript: String,
}

/// Starts the GLib client against `env`; None (after `skip`) when
/// /usr/bin/python3 has no python3-gi.
// The caller waits for the child; a failed assert here ends the test anyway.
#[allow(clippy::zombie_processes)]
pub fn glib_client(env: &Env) -> Option<GlibClient> {
    use std::io::BufRead;
    if Command::new("/usr/bin/python3").args(["-c", "import gi"]).status().map(|s| !s.success()).unwrap_or(true) {
        skip("/usr/bin/python3 with python3-gi is not installed (make deps installs it)");
        return None;
    }
    let mut child = Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/demo/client.py"))
        .args([&env.addr, "--keep"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut transcript = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "client ended early:\n{transcript}\n{}", env.log());
        transcript.push_str(&line);
        if let Some(d) = line.strip_prefix("READY ") {
            let dev = d.trim().to_string();
            return Some(GlibClient { child, out, dev, transcript });
        }
    }
}

// ---------------------------------------------------------------------------
// DNS test helpers (tests/dns.rs). The rig script tests/rigs/dns-rig.sh runs
// the daemon, systemd-resolved and resolvectl in the test's namespace with a
// private mount namespace: the host's /etc/resolv.conf and /run stay untouched.

pub fn dns_rig() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rigs/dns-rig.sh"))
}

/// Makes sure the rig has an unpacked Debian package ("resolved" or
/// "openresolv"); if not, skips (see `skip`) and returns false.
pub fn dns_rig_fetch(what: &str) -> bool {
    let o = Command::new(dns_rig()).args(["fetch", what]).output().expect("dns-rig.sh");
    if !o.status.success() {
        skip(&format!("cannot get {what} from Debian's packages: {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    o.status.success()
}

/// Kills a helper process (systemd-resolved) when dropped.
pub struct Helper(pub Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` until it returns Some, for up to 10 s.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < T, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Env {
    /// An Env for DNS tests, without a daemon yet: `resolv_conf` is written to the file that stands in for
    /// /etc/resolv.conf. Start the daemon with `start_dns_daemon`.
    pub fn for_dns(tag: &str, resolv_conf: &[u8]) -> Env {
        let e = Env::without_daemon(tag);
        std::fs::write(e.dir.join("resolv.conf"), resolv_conf).unwrap();
        sh(&format!("chmod 644 {}", e.dir.join("resolv.conf").display()));
        e
    }

    /// The file that is /etc/resolv.conf for the daemon and resolved.
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    pub fn stop_daemon(&mut self, sig: &str) -> std::process::ExitStatus {
        let st = self.signal_daemon(sig);
        self.daemon = None;
        st
    }

    /// Starts the daemon through the rig (private /etc/resolv.conf and /run,
    /// `dir/sbin` first in PATH) with `args` after the harness's own.
    pub fn start_dns_daemon(&mut self, args: &[&str]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).unwrap();
        let child = Command::new(dns_rig())
            .arg("daemon")
            .arg(&self.dir)
            .arg(&self.ns)
            .arg(bin())
            .args(["--bus-address", &self.addr, "--idle-exit", "0", "--log-level", "6", "--state-dir"])
            .arg(self.dir.join("state"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dns-rig.sh daemon");
        self.daemon = Some(child);
        self.wait_name(DEST);
        self.check_dropped(args);
        // Start-up recovery runs after the name is taken, before the first
        // call is answered: one round trip and it is done.
        assert!(ping(&self.conn()), "{}", self.log());
    }

    fn wait_name(&mut self, name: &str) {
        let c = self.conn();
        let t0 = Instant::now();
        loop {
            let p = c.with_proxy("org.freedesktop.DBus", "/org/freedesktop/DBus", T);
            let (has,): (bool,) = p.method_call("org.freedesktop.DBus", "NameHasOwner", (name,)).unwrap();
            if has {
                return;
            }
            if let Some(st) = self.daemon.as_mut().and_then(|d| d.try_wait().unwrap()) {
                panic!("daemon exited early ({st}): {}", self.log());
            }
            assert!(t0.elapsed() < T, "{name} did not appear on the bus: {}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs a real systemd-resolved in the namespace, on this bus, and
    /// polkitd with the project's rules, which let the daemon's account
    /// change resolved's links (resolved allows only root without polkit).
    pub fn start_resolved(&mut self) -> Helper {
        if self.polkit.is_none() {
            let h = self.rig_helper(&["polkit", &self.dir.display().to_string(), &self.addr], "polkit");
            self.polkit = Some(h);
            self.wait_name("org.freedesktop.PolicyKit1");
        }
        let h = self.rig_helper(&["resolved", &self.dir.display().to_string(), &self.ns, &self.addr], "resolved");
        self.wait_name("org.freedesktop.resolve1");
        h
    }

    /// Runs `dns-rig.sh ARGS`, its output to `dir/NAME.log`.
    fn rig_helper(&self, args: &[&str], name: &str) -> Helper {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(dns_rig())
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("dns-rig.sh {name}: {e}"));
        Helper(child)
    }

    /// `resolvectl ARGS` in the namespace, against this bus.
    pub fn resolvectl(&self, args: &str) -> String {
        sh(&format!("{} resolvectl {} {} {args}", dns_rig().display(), self.ns, self.addr))
    }

    pub fn ifindex(&self, ifname: &str) -> u32 {
        self.ip(&format!("-o link show dev {ifname}")).split(':').next().unwrap().trim().parse().unwrap()
    }
}

/// A link's DNS settings as systemd-resolved reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDns {
    pub servers: Vec<String>,
    pub domains: Vec<(String, bool)>,
    pub default_route: bool,
    pub dnssec: String,
    pub dot: String,
}

/// Asks resolved for a link's settings (None if it does not know the link).
pub fn resolved_link(c: &Connection, ifindex: u32) -> Option<LinkDns> {
    let mgr = c.with_proxy("org.freedesktop.resolve1", "/org/freedesktop/resolve1", T);
    let (link,): (dbus::Path<'static>,) =
        mgr.method_call("org.freedesktop.resolve1.Manager", "GetLink", (ifindex as i32,)).ok()?;
    let p = c.with_proxy("org.freedesktop.resolve1", link, T);
    let get = |name: &str| -> Box<dyn RefArg> {
        let (v,): (Variant<Box<dyn RefArg>>,) =
            p.method_call("org.freedesktop.DBus.Properties", "Get", ("org.freedesktop.resolve1.Link", name)).unwrap();
        v.0
    };
    type Servers = Vec<(i32, Vec<u8>)>; // a(iay): family, address bytes
    let (dns,): (Variant<Servers>,) =
        p.method_call("org.freedesktop.DBus.Properties", "Get", ("org.freedesktop.resolve1.Link", "DNS")).unwrap();
    let (domains,): (Variant<Vec<(String, bool)>>,) =
        p.method_call("org.freedesktop.DBus.Properties", "Get", ("org.freedesktop.resolve1.Link", "Domains")).unwrap();
    let servers = dns
        .0
        .iter()
        .map(|(fam, b)| match (*fam, b.len()) {
            (2, 4) => std::net::IpAddr::from(<[u8; 4]>::try_from(b.as_slice()).unwrap()).to_string(),
            (10, 16) => std::net::IpAddr::from(<[u8; 16]>::try_from(b.as_slice()).unwrap()).to_string(),
            _ => format!("?{fam}:{b:?}"),
        })
        .collect();
    Some(LinkDns {
        servers,
        domains: domains.0,
        default_route: get("DefaultRoute").as_u64() == Some(1),
        dnssec: get("DNSSEC").as_str().unwrap_or("").to_string(),
        dot: get("DNSOverTLS").as_str().unwrap_or("").to_string(),
    })
}

/// A field of /proc/<pid>/status, e.g. ("CapEff:") -> "0000000000001000".
#[allow(dead_code)]
pub fn status_field(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_default()
}

/// ProtectSocket(remote, ipv6, device path), with the socket's fd if given.
pub fn protect(
    c: &Connection,
    remote: &str,
    v6: bool,
    dev: &str,
    fd: Option<std::os::fd::OwnedFd>,
) -> Result<bool, (String, String)> {
    let mut m = method(MGR, "ProtectSocket").append3(remote, v6, dbus::Path::from(dev));
    if let Some(fd) = fd {
        m = m.append1(fd);
    }
    send(c, m).map(|r| r.read1::<bool>().unwrap())
}

/// Runs `f` on a thread that has joined namespace `ns` (sockets made there stay there).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}
