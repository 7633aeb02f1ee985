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
//! The program runs while the daemon goes on serving: one child at a time,
//! its pidfd in the daemon's poll loop, killed after a time limit. Its
//! result decides what we announce, so the events come when it is done.
//!
//! What the child gets: a fixed PATH (the program is also looked up only
//! there), the bus address and nothing else from our environment, its own
//! process group (killed whole at the time-out, so a hook that forks cannot
//! outlive it), no_new_privs (inherited), and of our capabilities only
//! CAP_DAC_OVERRIDE, which it needs to write resolv.conf and its state
//! under /run as a user other than root. Our inheritable set holds nothing
//! else, so no hook can pick up CAP_NET_ADMIN through file capabilities.

use crate::vecmap::{VecMap, VecSet};
use std::collections::VecDeque;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags as F};
use nix::sys::signal::{killpg, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Pid};

use super::{Backend, Session};
use crate::conn::Bus;
use crate::error::{Error, Result};
use crate::state::Dir;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Where the program is looked for, and the child's PATH: never the
/// daemon's own environment.
const FIXED_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const LIST: &str = "resolvconf-ifaces";

/// The flavors told apart (for the log, and the arguments to give).
const OPENRESOLV: &str = "openresolv";
/// systemd's `resolvconf` symlink to resolvectl.
const RESOLVECTL: &str = "systemd-resolved's emulation";

pub struct Resolvconf {
    prog: PathBuf,
    flavor: &'static str,
    dir: Dir,
    /// Registered records: interface name -> the fragment given.
    applied: VecMap<String, String>,
    scope_warned: bool,
    /// The apply in flight, if any.
    job: Option<Job>,
}

/// The resolvconf program in the fixed PATH, if any.
pub fn find(dir: &Dir) -> Option<Resolvconf> {
    let prog = std::env::split_paths(FIXED_PATH)
        .map(|d| d.join("resolvconf"))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))?;
    let flavor = if fs::canonicalize(&prog).is_ok_and(|p| p.file_name().is_some_and(|n| n == "resolvectl")) {
        RESOLVECTL
    } else if run(&prog, &["--version"], "").is_ok_and(|out| out.starts_with("openresolv")) {
        OPENRESOLV
    } else {
        "not openresolv"
    };
    Some(Resolvconf { prog, flavor, dir: dir.clone(), applied: VecMap::new(), scope_warned: false, job: None })
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
        Ok(b) => String::from_utf8_lossy(&b.unwrap_or_default()).into_owned(),
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
                    let _ = run(&r.prog, &r.del_args(n), "").inspect_err(|e| log::debug!("{e}"));
                }
            }
            None => log::warn!("resolvconf records {names:?} of a previous run: no resolvconf program to delete them"),
        }
    }
    let _ = dir.remove(LIST);
}

/// One step of bringing the records to the wanted state: the record of
/// an interface name to register with a fragment, or (None) to delete.
type Step = (String, Option<String>);

/// An apply in flight (kept only while a child runs): the step whose
/// child runs, the steps after it, and what went wrong first.
struct Job {
    step: Step,
    child: Child,
    steps: VecDeque<Step>,
    first_err: Option<Error>,
}

impl Resolvconf {
    pub fn describe(&self) -> String {
        format!("{} ({})", self.prog.display(), self.flavor)
    }

    pub fn is_resolvectl(&self) -> bool {
        self.flavor == RESOLVECTL
    }

    fn del_args<'a>(&self, ifname: &'a str) -> Vec<&'a str> {
        // -f: no error if the record is already gone.
        let force = (self.flavor == OPENRESOLV).then_some("-f");
        force.into_iter().chain(["-d", ifname]).collect()
    }

    fn save_list<'a>(&self, names: impl Iterator<Item = &'a String>) -> Result<()> {
        let text: String = names.collect::<VecSet<_>>().keys().map(|n| format!("{n}\n")).collect();
        self.dir.write(LIST, text.as_bytes())
    }

    /// Starts the next step's child (a step whose child cannot start is
    /// noted as failed, and the one after it tried); the job's result once
    /// no step is left.
    fn next(&mut self, mut steps: VecDeque<Step>, mut first_err: Option<Error>) -> Option<Result<()>> {
        while let Some(step) = steps.pop_front() {
            let spawned = match &step {
                (n, None) => Child::spawn(&self.prog, &self.del_args(n), ""),
                (n, Some(frag)) => Child::spawn(&self.prog, &["-a", n], frag),
            };
            match spawned {
                Ok(child) => {
                    self.job = Some(Job { step, child, steps, first_err });
                    return None;
                }
                Err(e) => self.record(&mut first_err, step, Err(e)),
            }
        }
        if self.applied.is_empty() {
            let _ = self.dir.remove(LIST);
        } else if let Err(e) = self.save_list(self.applied.keys()) {
            return Some(Err(e));
        }
        Some(first_err.map_or(Ok(()), Err))
    }

    /// The job's result once its last child has exited, else None.
    fn advance(&mut self) -> Option<Result<()>> {
        let r = self.job.as_mut()?.child.poll()?;
        let Job { step, steps, mut first_err, .. } = self.job.take()?;
        self.record(&mut first_err, step, r);
        self.next(steps, first_err)
    }

    /// Notes the outcome of one step's child. A failed add may have
    /// registered the record: it stays listed, as unknown (""), so the next
    /// apply adds it again or deletes it.
    fn record(&mut self, first_err: &mut Option<Error>, (n, frag): Step, r: Result<String>) {
        if let Err(e) = r {
            first_err.get_or_insert(e);
            if frag.is_some() {
                self.applied.insert(n, String::new());
            }
        } else if let Some(frag) = frag {
            log::info!("resolvconf: record {n} registered");
            self.applied.insert(n, frag);
        } else {
            log::info!("resolvconf: record {n} deleted");
            self.applied.remove(&n);
        }
    }

    fn child(&self) -> Option<&Child> {
        self.job.as_ref().map(|j| &j.child)
    }
}

/// resolvconf's children run while the loop serves other clients: `apply`
/// starts the first and returns; the loop polls the child's pidfd and calls
/// `progress` when it exits or its time is up. The daemon makes no other
/// `apply` meanwhile (it keeps the latest wanted state until this one is
/// done), so records change one child at a time, in the order asked.
impl Backend for Resolvconf {
    /// Starts bringing the records to `sessions`: the list first, then
    /// deletions, then additions, one child at a time. Ok while a
    /// child runs: its result comes from `progress` or `settle`.
    fn apply(&mut self, _bus: &Bus, sessions: &[Session]) -> Result<()> {
        debug_assert!(self.job.is_none(), "apply while busy");
        super::warn_no_split(&mut self.scope_warned, sessions, "resolvconf", "merged");
        let want: VecMap<String, String> = sessions.iter().map(|s| (s.ifname.clone(), fragment(s))).collect();
        // Listed before it is added: a crash right after leaves no orphan.
        self.save_list(self.applied.keys().chain(want.keys()))?;
        let gone = self.applied.keys().filter(|k| !want.contains_key(*k));
        let mut steps: VecDeque<Step> = gone.map(|n| (n.clone(), None)).collect();
        let changed = want.into_iter().filter(|(n, frag)| self.applied.get(n) != Some(frag));
        steps.extend(changed.map(|(n, frag)| (n, Some(frag))));
        self.next(steps, None).unwrap_or(Ok(()))
    }

    /// A job is kept only while its child runs (`advance`).
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.child().map(|c| c.pidfd.as_fd())
    }

    fn deadline(&self) -> Option<Instant> {
        self.child().map(|c| c.deadline)
    }

    fn progress(&mut self, _bus: &Bus) -> Option<Result<()>> {
        self.advance()
    }

    /// Without a job there is nothing to wait for (and `advance` would
    /// never finish one).
    fn settle(&mut self) -> Result<()> {
        while let Some(c) = self.child() {
            c.block();
            if let Some(r) = self.advance() {
                return r;
            }
        }
        Ok(())
    }
}

/// The resolv.conf fragment for one session (at most 32 servers and 64
/// domains: well below a pipe's buffer, so writing it cannot block).
fn fragment(s: &Session) -> String {
    let search = (!s.search.is_empty()).then(|| format!("search {}\n", s.search.join(" ")));
    let servers = s.servers.iter().map(|a| format!("nameserver {a}\n"));
    std::iter::once(format!("# ovpn-netcfgd {}\n", s.path)).chain(search).chain(servers).collect()
}

/// Runs the program with `input` on stdin and waits for it (start-up
/// only, before any client can call); what it printed (up to 4 KiB).
fn run(prog: &Path, args: &[&str], input: &str) -> Result<String> {
    let mut child = Child::spawn(prog, args, input)?;
    loop {
        child.block();
        if let Some(r) = child.poll() {
            return r;
        }
    }
}

/// A running resolvconf, its group killed whole after TIMEOUT so a hung
/// script cannot hold its record (or the daemon's shutdown) forever.
struct Child {
    pid: Pid,
    /// Readable once the child has exited.
    pidfd: OwnedFd,
    out: OwnedFd,
    err: OwnedFd,
    what: String,
    deadline: Instant,
}

impl Child {
    /// Starts the program with `input` on stdin.
    ///
    /// posix_spawn (nix's safe wrapper) instead of std::process: the same
    /// vfork+exec, without std's general machinery (27 KiB). The child gets
    /// an empty signal mask (the daemon blocks its signals for the signalfd),
    /// SIGPIPE at its default, its own process group, the fixed PATH and the
    /// bus address, so variables like openresolv's IF_METRIC or IF_EXCLUSIVE
    /// in the daemon's environment cannot change what the script does.
    fn spawn(prog: &Path, args: &[&str], input: &str) -> Result<Child> {
        let what = format!("{} {}", prog.display(), args.join(" "));
        let io = |e: nix::Error| Error::io(what.clone(), e.into());
        let cstr = |t: &[u8]| CString::new(t).map_err(|_| Error::failed(format!("{what}: NUL in an argument")));
        let args = args.iter().map(|a| a.as_bytes());
        let argv: Vec<CString> =
            std::iter::once(prog.as_os_str().as_bytes()).chain(args).map(cstr).collect::<Result<_>>()?;
        let bus = std::env::var("DBUS_SYSTEM_BUS_ADDRESS").map(|a| format!("DBUS_SYSTEM_BUS_ADDRESS={a}"));
        let env = std::iter::once(format!("PATH={FIXED_PATH}")).chain(bus.ok());
        let envp: Vec<CString> = env.map(|v| cstr(v.as_bytes())).collect::<Result<_>>()?;
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
        attr.set_sigdefault(&SigSet::from(Signal::SIGPIPE)).map_err(io)?;
        attr.set_pgroup(Pid::from_raw(0)).map_err(io)?;
        attr.set_flags(F::POSIX_SPAWN_SETSIGMASK | F::POSIX_SPAWN_SETSIGDEF | F::POSIX_SPAWN_SETPGROUP).map_err(io)?;
        let pid = posix_spawn(prog, &actions, &attr, &argv, &envp).map_err(io)?;
        drop((in_r, out_w, err_w));
        // Our child, not yet waited for: the pid cannot name another process.
        let pidfd = crate::sys::pidfd_open(pid.as_raw() as u32).map_err(|e| {
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            Error::io(format!("{what}: pidfd_open"), e)
        })?;
        // The fragment is far below a pipe's buffer: this write cannot block.
        let _ = std::fs::File::from(in_w).write_all(input.as_bytes()); // dropped here: EOF
        Ok(Child { pid, pidfd, out: out_r, err: err_r, what, deadline: Instant::now() + TIMEOUT })
    }

    /// Sleeps until the child exits or its deadline (start-up and shutdown).
    fn block(&self) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis() + 1).unwrap_or(u16::MAX);
        let _ = poll(&mut [PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)], PollTimeout::from(ms));
    }

    /// Its result once it has exited, or once its time is up (then the
    /// whole group is killed); None while it runs.
    fn poll(&mut self) -> Option<Result<String>> {
        let status = match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < self.deadline => return None,
            Ok(WaitStatus::StillAlive) => {
                // The whole group: hooks the script started die with it.
                let _ = killpg(self.pid, Signal::SIGKILL);
                let _ = waitpid(self.pid, None);
                let e = format!("{}: no result within {} s; killed", self.what, TIMEOUT.as_secs());
                return Some(Err(Error::failed(e)));
            }
            // Only what is already there: a child the script left running
            // may keep the pipes open, and waiting for their end would
            // block the daemon.
            Ok(WaitStatus::Exited(_, 0)) => return Some(Ok(read_available(&self.out))),
            Ok(WaitStatus::Exited(_, code)) => format!("exit status {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig}"),
            Ok(_) => return None, // stopped or continued: keep waiting
            Err(e) => return Some(Err(Error::io(self.what.clone(), e.into()))),
        };
        Some(Err(Error::failed(format!("{}: {status}: {}", self.what, read_available(&self.err).trim()))))
    }
}

fn read_available(fd: &OwnedFd) -> String {
    if fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; 4096];
    let n = nix::unistd::read(fd, &mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{DnsScope, DnsSec, DnsTransport};

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
