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

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Backend, Session};
use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::settings::DnsScope;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Used when the daemon was started without PATH.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
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
    dir: PathBuf,
    /// Registered records: interface name -> the fragment given.
    applied: BTreeMap<String, String>,
    scope_warned: bool,
}

/// The resolvconf program in PATH, if any.
pub fn find(dir: &Path) -> Option<Resolvconf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let prog = std::env::split_paths(&path)
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
    Some(Resolvconf { prog, flavor, dir: dir.to_path_buf(), applied: BTreeMap::new(), scope_warned: false })
}

/// Deletes the records of a run that did not exit cleanly.
pub fn recover(dir: &Path) {
    let Ok(list) = fs::read_to_string(dir.join(LIST)) else {
        return;
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
    let _ = fs::remove_file(dir.join(LIST));
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
        super::file::write_private(&self.dir.join(LIST), text.as_bytes())
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
            let _ = fs::remove_file(self.dir.join(LIST));
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
fn run(prog: &Path, args: &[&str], input: &str) -> Result<String> {
    let what = format!("{} {}", prog.display(), args.join(" "));
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(what.clone(), e))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input.as_bytes()); // dropped here: EOF
    }
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if t0.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Failed(format!("{what}: no result within {} s; killed", TIMEOUT.as_secs())));
            }
            Err(e) => return Err(Error::io(what, e)),
        }
    };
    // Only what is already there: a child the script left running may keep
    // the pipes open, and waiting for their end would block the daemon.
    let out = child.stdout.take().map(read_available).unwrap_or_default();
    if status.success() {
        return Ok(out);
    }
    let err = child.stderr.take().map(read_available).unwrap_or_default();
    Err(Error::Failed(format!("{what}: {status}: {}", err.trim())))
}

fn read_available<R: Read + std::os::fd::AsFd>(mut r: R) -> String {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; 4096];
    let n = r.read(&mut buf).unwrap_or(0);
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
        assert!(e.contains("nope") && e.contains('3'), "{e}");
    }
}
