//! The dnsmasq backend, for routers: on OpenWrt dnsmasq answers the LAN's
//! queries (and the router's own, through the 127.0.0.1 stub in
//! resolv.conf), so this is where a VPN's DNS has to go.
//!
//! dnsmasq reads a "servers file" (`servers-file=FILE`; OpenWrt's UCI
//! option `dhcp.@dnsmasq[0].serversfile`) at start and again on SIGHUP. We
//! write the VPN's servers there and send SIGHUP:
//! * tunnel scope (split DNS): `server=/DOMAIN/ADDR` for each of the
//!   session's domains and servers, so names in those domains, and only
//!   they, go to the VPN's servers;
//! * global scope: the same, plus `server=ADDR`, which makes the VPN's
//!   servers upstreams for every name. dnsmasq keeps the upstreams it has
//!   from elsewhere (resolv-file, its own `server=` lines) and sends each
//!   query to the one that answered fastest: no line in a servers file can
//!   take those away.
//!
//! The file is rewritten in place, never replaced: OpenWrt runs dnsmasq in
//! a ujail that bind-mounts this one file, and a bind mount keeps showing
//! the old inode after a rename. It is ours (the service user's), in a
//! directory nobody else may write, opened without following symbolic
//! links; what was in it before is kept below our lines and put back
//! byte for byte afterwards, also by the next start after a crash (state in
//! `<state dir>/dns`, as for the resolv.conf file).
//!
//! Which dnsmasq to signal: every process of this PID namespace named
//! `dnsmasq`, running as root or as the `dnsmasq` account, whose command
//! line (or the configuration file it names) reads our servers file. A
//! pidfd is taken before those checks and the signal goes through it, so a
//! reused pid cannot redirect it. dnsmasq runs as another user, so the
//! service user keeps CAP_KILL with this backend (and only with it).

use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode};

use super::backup::{self, overwrite, Backup, Kind, Orig};
use super::{unique, Backend, Session};
use crate::conn::Bus;
use crate::error::{Error, Result};
use crate::settings::{DnsScope, DnsTransport, Word};
use crate::state::{read_max, Dir};

/// A servers file of a few hundred lines is big; this is no servers file.
const MAX_SIZE: u64 = 256 * 1024;
/// dnsmasq's default configuration file when started without `-C`.
const DEFAULT_CONF: &str = "/etc/dnsmasq.conf";

/// The servers file for `dns::backup`.
static KIND: Kind = Kind { name: "dnsmasq", what: "dnsmasq servers", max_size: MAX_SIZE, look, write, put_other };

pub struct Dnsmasq {
    backup: Backup,
    /// The file changed since dnsmasq was last told.
    reload_due: bool,
    warned: bool,
}

impl Dnsmasq {
    pub fn new(path: &Path, dir: &Dir) -> Dnsmasq {
        Dnsmasq { backup: Backup::new(&KIND, path.to_path_buf(), dir), reload_due: false, warned: false }
    }

    fn set(&mut self, sessions: &[Session]) -> Result<()> {
        let p = self.backup.path.display();
        let warn = !self.warned;
        for s in sessions.iter().filter(|_| warn) {
            if s.scope == DnsScope::Tunnel && s.search.is_empty() {
                log::warn!(
                    "{p}: {} has split DNS (dns_scope tunnel) but no domains: dnsmasq gets none of its servers",
                    s.ifname
                );
                self.warned = true;
            }
            if matches!(s.transport, DnsTransport::Dot | DnsTransport::Doh) {
                let (name, transport) = (&s.ifname, s.transport.as_str());
                log::warn!("{p}: dnsmasq forwards plain DNS only; {name}'s {transport} setting is not applied");
                self.warned = true;
            }
        }
        let make = |orig: &Orig| match orig {
            Orig::File { bytes, .. } => generate(sessions, bytes),
            _ => generate(sessions, &[]),
        };
        self.reload_due |= self.backup.update(sessions.len(), make)?;
        // SIGHUP to every dnsmasq that reads the file, once per change.
        if self.reload_due {
            reload(&self.backup.path)?;
            self.reload_due = false;
        }
        Ok(())
    }
}

impl Backend for Dnsmasq {
    fn apply(&mut self, _bus: &Bus, sessions: &[Session]) -> Result<()> {
        self.set(sessions)
    }
}

/// Restores a servers file left by a run that did not exit cleanly (see
/// `backup::recover`), and tells dnsmasq.
pub fn recover(dir: &Dir, configured: &Path) {
    if backup::recover(&KIND, dir, configured) {
        if let Err(e) = reload(configured) {
            log::warn!("{e}; dnsmasq uses the restored file from its next reload on");
        }
    }
}

/// The lines for the sessions (newest first), then the file's own content.
fn generate(sessions: &[Session], orig: &[u8]) -> Vec<u8> {
    let names: Vec<&str> = sessions.iter().map(|s| s.ifname.as_str()).collect();
    let mut out = format!(
        "# Generated by ovpn-netcfgd: DNS of the VPN sessions on {} (newest first).\n\
         # What follows them was here before; it alone is put back when they end.\n",
        names.join(" ")
    );
    // Domains and addresses were validated on arrival: no '/', '#', white
    // space or line breaks can reach this text.
    let lines = sessions.iter().flat_map(|s| {
        let per_domain = s.search.iter().flat_map(|d| s.servers.iter().map(move |a| format!("server=/{d}/{a}\n")));
        per_domain.chain(s.servers.iter().filter(|_| s.scope == DnsScope::Global).map(|a| format!("server={a}\n")))
    });
    out.extend(unique(lines));
    [out.as_bytes(), orig].concat()
}

/// The directory holding `path`, checked: a real directory (not a link),
/// owned by root or by us, that nobody else may write to (else another
/// user could swap the file under us). Returns it with the file's name.
fn open_dir(path: &Path) -> Result<(OwnedFd, &std::ffi::OsStr)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::failed(format!("{}: not a file path", path.display())));
    };
    let err = |e: nix::Error| Error::io(format!("open {}", parent.display()), e.into());
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir = nix::fcntl::open(parent, flags, Mode::empty()).map_err(err)?;
    let st = fstat(&dir).map_err(err)?;
    let (uid, mode) = (st.st_uid, st.st_mode & 0o7777);
    if !owned_by_us_or_root(uid) || mode & 0o022 != 0 {
        let must = "must belong to root or to us and be writable by its owner only";
        return Err(Error::failed(format!("{}: owner uid {uid} mode {mode:o}: {must}", parent.display())));
    }
    Ok((dir, name))
}

fn owned_by_us_or_root(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Opens the file itself, never through a symbolic link, and checks it is
/// a regular file of ours or root's with no other names (hard links).
fn open_file(path: &Path, flags: OFlag) -> Result<Option<(File, fs::Metadata)>> {
    let (dir, name) = open_dir(path)?;
    let p = path.display();
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let f = match openat(&dir, name, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(nix::Error::ENOENT) => return Ok(None),
        Err(nix::Error::ELOOP) => return Err(Error::failed(format!("{p} is a symbolic link; refusing to use it"))),
        Err(e) => return Err(Error::errno(format!("open {p}"), e)),
    };
    let m = f.metadata().map_err(|e| Error::io(format!("stat {p}"), e))?;
    if !m.is_file() || m.nlink() != 1 || !owned_by_us_or_root(m.uid()) {
        return Err(Error::failed(format!("{p}: must be a regular file with one name, owned by root or by us")));
    }
    Ok(Some((f, m)))
}

fn look(path: &Path) -> Result<Orig> {
    let Some((f, m)) = open_file(path, OFlag::O_RDONLY)? else { return Ok(Orig::Missing) };
    let bytes = read_max(f, MAX_SIZE).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    Ok(Orig::File { bytes, mode: m.mode() & 0o7777, uid: m.uid(), gid: m.gid() })
}

/// Rewrites the file in place (its inode stays: see the module notes), or
/// creates it 0644 for dnsmasq's account to read; what was there before
/// does not matter.
fn write(path: &Path, _: &Orig, bytes: &[u8]) -> Result<()> {
    let err = |e: io::Error| Error::io(format!("write {}", path.display()), e);
    let f = match open_file(path, OFlag::O_WRONLY)? {
        Some((f, _)) => f,
        None => {
            let (dir, name) = open_dir(path)?;
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = openat(&dir, name, flags, Mode::from_bits_truncate(0o644)).map_err(|e| err(e.into()))?;
            fchmod(&fd, Mode::from_bits_truncate(0o644)).map_err(|e| err(e.into()))?;
            File::from(fd)
        }
    };
    overwrite(&f, bytes).map_err(err)
}

/// Puts back "no file". A servers file never was a link (`look` refuses
/// one), so a backup that says so is not acted on.
fn put_other(path: &Path, orig: &Orig) -> Result<()> {
    if *orig != Orig::Missing {
        return Err(Error::failed(format!("{}: not a backup of a servers file", path.display())));
    }
    let (dir, name) = open_dir(path)?;
    nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
        .map_err(|e| Error::io(format!("remove {}", path.display()), e.into()))
}

// ---- finding and signalling dnsmasq ------------------------------------

/// SIGHUP to every dnsmasq that reads `servers`. None running is fine (it
/// reads the file when it starts); one we may not signal is an error.
fn reload(servers: &Path) -> Result<()> {
    let found = instances(servers);
    if found.is_empty() {
        log::warn!("no running dnsmasq reads {}; it is used from dnsmasq's next start", servers.display());
    }
    for (pid, fd) in found {
        let sent = crate::sys::pidfd_send_signal(&fd, libc::SIGHUP);
        sent.map_err(|e| Error::io(format!("SIGHUP to dnsmasq (pid {pid})"), e))?;
        log::info!("dnsmasq (pid {pid}) told to read {} again", servers.display());
    }
    Ok(())
}

/// Every process of our PID namespace that is a dnsmasq of the system
/// reading `servers`, with a pidfd for it.
pub fn instances(servers: &Path) -> Vec<(u32, OwnedFd)> {
    let (Ok(entries), Some(servers)) = (fs::read_dir("/proc"), servers.to_str()) else { return Vec::new() };
    let account = nix::unistd::User::from_name("dnsmasq").ok().flatten().map(|u| u.uid.as_raw());
    let mut out = Vec::new();
    for pid in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
        let proc_file = |n: &str| read_small(Path::new(&format!("/proc/{pid}/{n}")), false);
        if proc_file("comm").map_or(true, |c| c.trim_end() != "dnsmasq") {
            continue;
        }
        // Taken before the checks: if the pid was reused by then, the
        // checks read the process the pidfd names, or the final liveness
        // test fails.
        let Ok(fd) = crate::sys::pidfd_open(pid) else { continue };
        let uids = proc_file("status").map(|s| status_uids(&s)).unwrap_or_default();
        if uids.is_empty() || !uids.iter().all(|u| *u == 0 || Some(*u) == account) {
            log::info!(
                "pid {pid} is named dnsmasq but runs as uid {uids:?}, neither root nor dnsmasq's account: ignored"
            );
            continue;
        }
        let Some(cmdline) = proc_file("cmdline") else { continue };
        let args: Vec<&str> = cmdline.split('\0').filter(|a| !a.is_empty()).collect();
        if !reads_servers_file(&args, servers, |p| read_small(Path::new(p), true), list_dir) {
            log::debug!("dnsmasq (pid {pid}) does not read {servers}");
        } else if crate::sys::pidfd_send_signal(&fd, 0).is_ok() {
            out.push((pid, fd));
        }
    }
    out
}

/// Real, effective and saved uid from /proc/PID/status.
fn status_uids(status: &str) -> Vec<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or("");
    line.split_whitespace().take(3).filter_map(|u| u.parse().ok()).collect()
}

/// A text file of at most 1 MiB (configuration may be a link; /proc files
/// are not).
fn read_small(path: &Path, follow: bool) -> Option<String> {
    backup::read_path(path, follow, 1 << 20).ok().map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Whether a dnsmasq command line reads `servers`: `--servers-file` on the
/// command line, or `servers-file=` in its configuration: the main file
/// (`-C`, else /etc/dnsmasq.conf; OpenWrt writes the line there), and one
/// level of `conf-file=` and `conf-dir=` below it or on the command line
/// (Debian passes /etc/dnsmasq.d with `-7`). At most 64 files are read.
fn reads_servers_file(
    args: &[&str],
    servers: &str,
    read: impl Fn(&str) -> Option<String>,
    list: impl Fn(&str) -> Vec<String>,
) -> bool {
    let mut main = Some(DEFAULT_CONF.to_string());
    let mut dirs: Vec<String> = Vec::new();
    let mut args = args.iter().skip(1);
    while let Some(&a) = args.next() {
        // `--opt=VAL`, `-CVAL` (`-7VAL`), or the option, then its value.
        let (opt, val) = match a.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v)),
            _ if (a.starts_with("-C") || a.starts_with("-7")) && a.len() > 2 => (&a[..2], Some(&a[2..])),
            _ if ["--servers-file", "-C", "--conf-file", "-7", "--conf-dir"].contains(&a) => (a, args.next().copied()),
            _ => (a, None),
        };
        match opt {
            "--servers-file" if val == Some(servers) => return true,
            "-C" | "--conf-file" => main = val.filter(|v| *v != "-").map(String::from),
            "-7" | "--conf-dir" => dirs.extend(val.map(String::from)),
            _ => {}
        }
    }
    let settings = |text: String| -> Vec<(String, String)> {
        let pairs = text.lines().filter_map(|l| l.trim().split_once('='));
        pairs.map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
    };
    let mut files: Vec<String> = Vec::new();
    for (k, v) in main.and_then(|m| read(&m)).map(settings).unwrap_or_default() {
        match k.as_str() {
            "servers-file" if v == servers => return true,
            "conf-file" => files.push(v),
            "conf-dir" => dirs.push(v),
            _ => {}
        }
    }
    for d in &dirs {
        files.extend(conf_dir_files(d, &list));
    }
    let names = |t: String| settings(t).iter().any(|(k, v)| k == "servers-file" && v == servers);
    files.iter().take(64).any(|f| read(f).is_some_and(names))
}

/// The files `conf-dir=DIR[,*.ext|,.ext]...` makes dnsmasq read: not
/// hidden, not editor backups, matching one `*.ext` if any is given, and
/// none of the plain `.ext` exclusions.
fn conf_dir_files(spec: &str, list: impl Fn(&str) -> Vec<String>) -> Vec<String> {
    let mut parts = spec.split(',');
    let dir = parts.next().unwrap_or("").trim_end_matches('/');
    let (with, without): (Vec<&str>, Vec<&str>) = parts.filter(|p| !p.is_empty()).partition(|p| p.starts_with('*'));
    let mut names: Vec<String> = list(dir)
        .into_iter()
        .filter(|n| !(n.starts_with('.') || n.ends_with('~') || (n.starts_with('#') && n.ends_with('#'))))
        .filter(|n| with.is_empty() || with.iter().any(|w| n.ends_with(&w[1..])))
        .filter(|n| !without.iter().any(|w| n.ends_with(w)))
        .collect();
    names.sort();
    names.into_iter().map(|n| format!("{dir}/{n}")).collect()
}

fn list_dir(dir: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().into_string().ok()).take(256).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::test_session;

    #[test]
    fn generate_split_and_global_lines_newest_first_then_the_original() {
        let mut split = test_session("/a", 1, 1, &["10.8.0.1", "fd00::53"], &["corp.example", "lab.example"]);
        split.scope = DnsScope::Tunnel;
        let global = test_session("/b", 2, 2, &["10.9.0.1", "10.8.0.1"], &["b.example"]);
        let text = String::from_utf8(generate(&[global, split], b"server=/lan/192.0.2.1\n")).unwrap();
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                "server=/b.example/10.9.0.1",
                "server=/b.example/10.8.0.1",
                "server=10.9.0.1",
                "server=10.8.0.1",
                "server=/corp.example/10.8.0.1",
                "server=/corp.example/fd00::53",
                "server=/lab.example/10.8.0.1",
                "server=/lab.example/fd00::53",
                "server=/lan/192.0.2.1",
            ]
        );
        assert!(text.starts_with("# Generated by ovpn-netcfgd: DNS of the VPN sessions on tun2 tun1"));
    }

    #[test]
    fn command_line_and_conf_files_are_understood() {
        let files = |list: &'static [(&'static str, &'static str)]| {
            move |p: &str| list.iter().find(|(n, _)| *n == p).map(|(_, t)| t.to_string())
        };
        const LINE: &str = "# x\nport=53\n  servers-file=/run/s  \n";
        let no_dirs = |_: &str| Vec::new();
        let none = |_: &str| None;
        let r = |args: &[&str], read: &dyn Fn(&str) -> Option<String>| {
            reads_servers_file(args, "/run/s", read, |d: &str| {
                if d == "/etc/dnsmasq.d" {
                    vec!["a.conf".into(), "b.conf.dpkg-old".into(), ".hidden".into(), "vpn.conf".into()]
                } else {
                    Vec::new()
                }
            })
        };
        assert!(reads_servers_file(&["dnsmasq", "-k", "--servers-file=/run/s"], "/run/s", none, no_dirs));
        assert!(reads_servers_file(&["dnsmasq", "--servers-file", "/run/s"], "/run/s", none, no_dirs));
        assert!(!reads_servers_file(&["dnsmasq", "--servers-file=/run/s2"], "/run/s", none, no_dirs));
        // A prefix of our path is not our path.
        assert!(!reads_servers_file(&["dnsmasq", "--servers-file=/run/s"], "/run/s.x", none, no_dirs));
        // OpenWrt: the line is in the generated main file.
        let owrt = ["/usr/sbin/dnsmasq", "-C", "/var/etc/dnsmasq.conf.cfg01411c", "-k", "-x", "/var/run/x.pid"];
        assert!(r(&owrt, &files(&[("/var/etc/dnsmasq.conf.cfg01411c", "servers-file=/run/s\n")])));
        assert!(r(&["dnsmasq", "-C/etc/d.conf"], &files(&[("/etc/d.conf", "servers-file=/run/s")])));
        assert!(r(&["dnsmasq", "--conf-file=/etc/d.conf"], &files(&[("/etc/d.conf", LINE)])));
        // Without -C dnsmasq reads its default file; with -C only that one.
        assert!(r(&["dnsmasq"], &files(&[(DEFAULT_CONF, LINE)])));
        assert!(!r(&["dnsmasq", "-C", "/other"], &files(&[(DEFAULT_CONF, LINE)])));
        // One level of includes: conf-file= and conf-dir= (with filters),
        // from the main file or the command line (Debian's -7).
        let inc = files(&[(DEFAULT_CONF, "conf-file=/etc/extra.conf\n"), ("/etc/extra.conf", LINE)]);
        assert!(r(&["dnsmasq"], &inc));
        let debian = ["dnsmasq", "-x", "/run/dnsmasq/dnsmasq.pid", "-7", "/etc/dnsmasq.d,.dpkg-dist,.dpkg-old"];
        assert!(r(&debian, &files(&[("/etc/dnsmasq.d/vpn.conf", LINE)])));
        assert!(!r(&debian, &files(&[("/etc/dnsmasq.d/b.conf.dpkg-old", LINE)])), "excluded by suffix");
        assert!(!r(&debian, &files(&[("/etc/dnsmasq.d/.hidden", LINE)])), "hidden files are skipped");
        let only_conf = files(&[(DEFAULT_CONF, "conf-dir=/etc/dnsmasq.d/,*.conf"), ("/etc/dnsmasq.d/vpn.conf", LINE)]);
        assert!(r(&["dnsmasq"], &only_conf));
        assert!(!r(
            &["dnsmasq"],
            &files(&[(DEFAULT_CONF, "conf-dir=/etc/dnsmasq.d,*.x"), ("/etc/dnsmasq.d/vpn.conf", LINE)])
        ));
        // Not deeper than one level.
        let deep = files(&[(DEFAULT_CONF, "conf-file=/a"), ("/a", "conf-file=/b"), ("/b", LINE)]);
        assert!(!r(&["dnsmasq"], &deep));
    }

    #[test]
    fn status_uids_reads_real_effective_saved() {
        assert_eq!(status_uids("Name:\tdnsmasq\nUid:\t999\t999\t0\t999\nGid:\t1\n"), vec![999, 999, 0]);
        assert!(status_uids("Name:\tx\n").is_empty());
    }

    #[test]
    fn file_checks_refuse_links_shared_dirs_and_hard_links() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("ovpn-netcfgd-dnsmasq-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let (target, servers) = (root.join("target"), root.join("servers"));
        fs::write(&target, b"keep\n").unwrap();
        std::os::unix::fs::symlink(&target, &servers).unwrap();
        let e = write(&servers, &Orig::Missing, b"x").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&target).unwrap(), b"keep\n");
        fs::remove_file(&servers).unwrap();
        fs::hard_link(&target, &servers).unwrap();
        assert!(write(&servers, &Orig::Missing, b"x").unwrap_err().to_string().contains("one name"));
        fs::remove_file(&servers).unwrap();
        // Created 0644, rewritten in place (same inode).
        write(&servers, &Orig::Missing, b"one\n").unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&servers).unwrap());
        write(&servers, &Orig::Missing, b"two\n").unwrap();
        let m = fs::metadata(&servers).unwrap();
        assert_eq!((std::os::unix::fs::MetadataExt::ino(&m), m.permissions().mode() & 0o777), (ino, 0o644));
        assert_eq!(fs::read(&servers).unwrap(), b"two\n");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(write(&servers, &Orig::Missing, b"x").unwrap_err().to_string().contains("writable by its owner only"));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn set_restore_and_recover_on_a_temp_dir() {
        let root = std::env::temp_dir().join(format!("ovpn-netcfgd-dnsmasq-unit2-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let servers = root.join("servers");
        let state = root.join("state");
        let dir = Dir::for_tests(&state);
        let orig = b"server=/lan/192.0.2.1\n".to_vec();
        fs::write(&servers, &orig).unwrap();
        let s = test_session("/a", 1, 1, &["10.8.0.1"], &["corp.example"]);
        let mut d = Dnsmasq::new(&servers, &dir);
        d.set(std::slice::from_ref(&s)).unwrap();
        let text = fs::read_to_string(&servers).unwrap();
        assert!(text.contains("server=/corp.example/10.8.0.1\nserver=10.8.0.1\nserver=/lan/192.0.2.1\n"), "{text}");
        d.set(&[]).unwrap();
        assert_eq!(fs::read(&servers).unwrap(), orig);
        assert!(!state.join("dnsmasq-meta").exists());
        // Killed: the next start restores.
        let mut d = Dnsmasq::new(&servers, &dir);
        d.set(std::slice::from_ref(&s)).unwrap();
        drop(d);
        // A backup of another file is left alone, then this one restored.
        let ours = fs::read(&servers).unwrap();
        recover(&dir, &root.join("elsewhere"));
        assert_eq!(fs::read(&servers).unwrap(), ours);
        assert!(state.join("dnsmasq-meta").exists());
        recover(&dir, &servers);
        assert_eq!(fs::read(&servers).unwrap(), orig);
        // Another program rewrote it meanwhile: its version is kept.
        let mut d = Dnsmasq::new(&servers, &dir);
        d.set(std::slice::from_ref(&s)).unwrap();
        fs::write(&servers, b"server=/other/192.0.2.9\n").unwrap();
        d.set(&[]).unwrap();
        assert_eq!(fs::read(&servers).unwrap(), b"server=/other/192.0.2.9\n");
        assert!(!state.join("dnsmasq-meta").exists());
        fs::write(&servers, &orig).unwrap();
        // Missing before: missing after.
        fs::remove_file(&servers).unwrap();
        let mut d = Dnsmasq::new(&servers, &dir);
        d.set(std::slice::from_ref(&s)).unwrap();
        assert!(servers.exists());
        d.set(&[]).unwrap();
        assert!(!servers.exists());
        let _ = fs::remove_dir_all(&root);
    }
}
