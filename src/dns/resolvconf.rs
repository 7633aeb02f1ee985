//! The resolvconf(8) backend: one record per VPN link, handed to the
//! system's resolvconf program (openresolv, Debian's resolvconf, or
//! systemd's emulation), which merges it with the other interfaces' DNS.
//!
//! Records are named after the kernel interface (`tun0`): the default
//! interface order of openresolv and of Debian's resolvconf puts tun* before
//! physical interfaces. No metric (`-m`): openresolv sorts every record that
//! has one after all that have none, tun* included. No `-x` (exclusive):
//! with two sessions only the newest would be used.
//!
//! Every record is listed in the state dir before it is added, so records of
//! a killed run are deleted at the next start.
//!
//! The program runs synchronously with a time limit: it is a short shell
//! script, and its result decides what we announce.
//!
//! What the child gets: a fixed PATH (the program is also looked up only
//! there), the bus address and nothing else from our environment, its own
//! process group (killed whole at the time-out, so a hook that forks cannot
//! outlive it), no_new_privs (inherited), and of our capabilities only
//! CAP_DAC_OVERRIDE, which it needs to write resolv.conf and its state
//! under /run as a user other than root. Our inheritable set holds nothing
//! else, so no hook can pick up CAP_NET_ADMIN through file capabilities.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::unistd::pipe2;

use super::{Backend, Session};
use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::settings::DnsScope;
use crate::state::Dir;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Where the program is looked for, and the child's PATH: never the
/// daemon's own environment.
const FIXED_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const LIST: &str = "resolvconf-ifaces";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    OpenResolv,
    /// systemd's `resolvconf` symlink to resolvectl.
    Resolvectl,
    Other,
}

pub struct Resolvconf {
    prog: PathBuf,
    flavor: Flavor,
    dir: Dir,
    /// Registered records: interface name -> the fragment given.
    applied: BTreeMap<String, String>,
    scope_warned: bool,
}

/// The resolvconf program in the fixed PATH, if any.
pub fn find(dir: &Dir) -> Option<Resolvconf> {
    let prog = std::env::split_paths(FIXED_PATH)
        .filter(|d| d.is_absolute())
        .map(|d| d.join("resolvconf"))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))?;
    let flavor = if fs::canonicalize(&prog).is_ok_and(|p| p.file_name().is_some_and(|n| n == "resolvectl")) {
        Flavor::Resolvectl
    } else if run(&prog, &["--version"], "").is_ok_and(|out| out.starts_with("openresolv")) {
        Flavor::OpenResolv
    } else {
        Flavor::Other
    };
    Some(Resolvconf { prog, flavor, dir: dir.clone(), applied: BTreeMap::new(), scope_warned: false })
}

/// Deletes the records of a run that did not exit cleanly.
pub fn recover(dir: &Dir) {
    // As the other backends: nothing to do without the file, and nothing
    // this run could do where the DNS state is closed to it (backend none
    // keeps no right to it; `privs::needed`).
    if !dir.exists(LIST) {
        return;
    }
    let list = match dir.read(LIST, 64 * 1024) {
        Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(None) => return,
        Err(e) => {
            log::error!("resolvconf records of a previous run: {}/{LIST}: {e}", dir.path.display());
            return;
        }
    };
    let names: Vec<&str> = list.lines().filter(|l| crate::settings::ifname("ifname", l).is_ok()).collect();
    if !names.is_empty() {
        match find(dir) {
            Some(r) => {
                for n in names {
                    log::warn!("resolvconf: deleting the record {n} left by a previous run");
                    if let Err(e) = run(&r.prog, &r.del_args(n), "") {
                        log::debug!("{e}");
                    }
                }
            }
            None => log::warn!("resolvconf records {names:?} of a previous run: no resolvconf program to delete them"),
        }
    }
    let _ = dir.remove(LIST);
}

impl Resolvconf {
    pub fn describe(&self) -> String {
        let f = match self.flavor {
            Flavor::OpenResolv => "openresolv",
            Flavor::Resolvectl => "systemd-resolved's emulation",
            Flavor::Other => "not openresolv",
        };
        format!("{} ({f})", self.prog.display())
    }

    pub fn is_resolvectl(&self) -> bool {
        self.flavor == Flavor::Resolvectl
    }

    fn del_args<'a>(&self, ifname: &'a str) -> Vec<&'a str> {
        match self.flavor {
            // -f: no error if the record is already gone.
            Flavor::OpenResolv => vec!["-f", "-d", ifname],
            _ => vec!["-d", ifname],
        }
    }

    fn save_list(&self, names: &BTreeSet<&String>) -> Result<()> {
        let text: String = names.iter().map(|n| format!("{n}\n")).collect();
        super::backup::write_state(&self.dir, LIST, text.as_bytes())
    }

    fn set(&mut self, sessions: &[Session]) -> Result<()> {
        if !self.scope_warned && sessions.iter().any(|s| s.scope == DnsScope::Tunnel) {
            log::warn!("resolvconf: split DNS (dns_scope tunnel) needs systemd-resolved; the VPN's servers are merged");
            self.scope_warned = true;
        }
        let want: BTreeMap<String, String> = sessions.iter().map(|s| (s.ifname.clone(), fragment(s))).collect();
        let mut first_err = None;
        let gone: Vec<String> = self.applied.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
        for n in gone {
            match run(&self.prog, &self.del_args(&n), "") {
                Ok(_) => {
                    self.applied.remove(&n);
                    log::info!("resolvconf: record {n} deleted");
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Listed before it is added: a crash right after leaves no orphan.
        self.save_list(&self.applied.keys().chain(want.keys()).collect())?;
        let mut unsure = BTreeSet::new();
        for (n, frag) in &want {
            if self.applied.get(n) == Some(frag) {
                continue;
            }
            match run(&self.prog, &["-a", n], frag) {
                Ok(_) => {
                    self.applied.insert(n.clone(), frag.clone());
                    log::info!("resolvconf: record {n} registered");
                }
                Err(e) => {
                    unsure.insert(n);
                    first_err.get_or_insert(e);
                }
            }
        }
        self.save_list(&self.applied.keys().chain(unsure).collect())?;
        if self.applied.is_empty() {
            let _ = self.dir.remove(LIST);
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Backend for Resolvconf {
    fn apply(&mut self, _bus: &Bus, sessions: &[Session]) -> Result<()> {
        self.set(sessions)
    }

    fn shutdown(&mut self, _bus: &Bus) -> bool {
        self.applied.is_empty()
    }
}

/// The resolv.conf fragment for one session (at most 32 servers and 64
/// domains: well below a pipe's buffer, so writing it cannot block).
fn fragment(s: &Session) -> String {
    let mut out = format!("# ovpn-netcfgd {}\n", s.path);
    if !s.search.is_empty() {
        out.push_str(&format!("search {}\n", s.search.join(" ")));
    }
    for a in &s.servers {
        out.push_str(&format!("nameserver {a}\n"));
    }
    out
}

/// Runs the program with `input` on stdin; returns what it printed (up to
/// 4 KiB). Killed after TIMEOUT so a hung script cannot stall the daemon.
///
/// posix_spawn (nix's safe wrapper) instead of std::process: the same
/// vfork+exec, without std's general machinery (27 KiB). The child gets
/// an empty signal mask (the daemon blocks its signals for the signalfd),
/// SIGPIPE at its default, its own process group, the fixed PATH and the
/// bus address, so variables like openresolv's IF_METRIC or IF_EXCLUSIVE
/// in the daemon's environment cannot change what the script does.
fn run(prog: &Path, args: &[&str], input: &str) -> Result<String> {
    use nix::sys::signal::{killpg, SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

    let what = format!("{} {}", prog.display(), args.join(" "));
    let io = |e: nix::Error| Error::io(what.clone(), e.into());
    let cstr = |t: &[u8]| CString::new(t).map_err(|_| Error::Failed(format!("{what}: NUL in an argument")));
    let mut argv = vec![cstr(prog.as_os_str().as_bytes())?];
    for a in args {
        argv.push(cstr(a.as_bytes())?);
    }
    let mut envp = vec![cstr(format!("PATH={FIXED_PATH}").as_bytes())?];
    if let Ok(a) = std::env::var("DBUS_SYSTEM_BUS_ADDRESS") {
        envp.push(cstr(format!("DBUS_SYSTEM_BUS_ADDRESS={a}").as_bytes())?);
    }
    // All three pipes are close-on-exec; the child sees only the dup2 copies.
    let (in_r, in_w) = pipe2(OFlag::O_CLOEXEC).map_err(io)?;
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(io)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(io)?;
    let mut actions = PosixSpawnFileActions::init().map_err(io)?;
    for (fd, to) in [(&in_r, 0), (&out_w, 1), (&err_w, 2)] {
        actions.add_dup2(fd.as_raw_fd(), to).map_err(io)?;
    }
    let mut attr = PosixSpawnAttr::init().map_err(io)?;
    attr.set_sigmask(&SigSet::empty()).map_err(io)?;
    let mut dfl = SigSet::empty();
    dfl.add(Signal::SIGPIPE);
    attr.set_sigdefault(&dfl).map_err(io)?;
    attr.set_pgroup(nix::unistd::Pid::from_raw(0)).map_err(io)?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
            | PosixSpawnFlags::POSIX_SPAWN_SETPGROUP,
    )
    .map_err(io)?;
    let pid = posix_spawn(prog, &actions, &attr, &argv, &envp).map_err(io)?;
    drop((in_r, out_w, err_w));
    // The fragment is far below a pipe's buffer: this write cannot block.
    let _ = std::fs::File::from(in_w).write_all(input.as_bytes()); // dropped here: EOF
    let t0 = Instant::now();
    let status = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if t0.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(5)),
            Ok(WaitStatus::StillAlive) => {
                // The whole group: hooks the script started die with it.
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(Error::Failed(format!("{what}: no result within {} s; killed", TIMEOUT.as_secs())));
            }
            Ok(WaitStatus::Exited(_, code)) => break Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => break Err(sig),
            Ok(_) => continue, // stopped or continued: keep waiting
            Err(e) => return Err(io(e)),
        }
    };
    // Only what is already there: a child the script left running may keep
    // the pipes open, and waiting for their end would block the daemon.
    let out = read_available(out_r);
    match status {
        Ok(0) => Ok(out),
        Ok(code) => Err(Error::Failed(format!("{what}: exit status {code}: {}", read_available(err_r).trim()))),
        Err(sig) => Err(Error::Failed(format!("{what}: killed by {sig}: {}", read_available(err_r).trim()))),
    }
}

fn read_available(fd: OwnedFd) -> String {
    if fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; 4096];
    let n = std::fs::File::from(fd).read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{DnsSec, DnsTransport};

    #[test]
    fn fragment_lists_search_then_servers() {
        let s = Session {
            path: "/net/openvpn/v3/netcfg/1_a".into(),
            ifname: "tun0".into(),
            ifindex: 3,
            order: 1,
            servers: vec!["10.8.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            search: vec!["corp.example".into()],
            dnssec: DnsSec::Unset,
            transport: DnsTransport::Unset,
            scope: DnsScope::Global,
        };
        assert_eq!(
            fragment(&s),
            "# ovpn-netcfgd /net/openvpn/v3/netcfg/1_a\nsearch corp.example\nnameserver 10.8.0.1\nnameserver fd00::1\n"
        );
    }

    #[test]
    fn run_returns_output_and_reports_failure() {
        let sh = Path::new("/bin/sh");
        assert_eq!(run(sh, &["-c", "cat"], "hello").unwrap(), "hello");
        let e = run(sh, &["-c", "echo nope >&2; exit 3"], "").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("status 3"), "{e}");
        // Only PATH (and the bus address) reach the script.
        let env = run(Path::new("/usr/bin/env"), &[], "").unwrap();
        assert!(env.starts_with("PATH="), "{env}");
        assert!(env.lines().all(|l| l.starts_with("PATH=") || l.starts_with("DBUS_SYSTEM_BUS_ADDRESS=")), "{env}");
        let e = run(sh, &["-c", "kill -9 $$"], "").unwrap_err().to_string();
        assert!(e.contains("SIGKILL"), "{e}");
        assert!(run(Path::new("/nonexistent/resolvconf"), &[], "").is_err());
    }
}
