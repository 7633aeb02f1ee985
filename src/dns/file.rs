//! The resolv.conf file backend: we write the file ourselves.
//!
//! Content: a header, one `search` line (the sessions' domains newest
//! session first, then the system's), the sessions' name servers newest
//! first, then the system's, then every other line of the original
//! (`options`, `sortlist`, ...). A `domain` line becomes part of the search
//! list: glibc lets the last search/domain line win, so keeping it would
//! cancel ours.
//!
//! Crash safety: the original (bytes, mode and owner; or the symlink; or
//! nothing) is kept as `dns::backup` describes.
//!
//! Symlinked resolv.conf (a stub of resolved, NetworkManager, resolvconf):
//! while sessions are up it is replaced by a regular file, and the symlink
//! itself is put back afterwards. We never write into the other program's
//! file, and the system part of ours is read from the link target at each
//! update, so it stays current.
//!
//! A resolv.conf that is a mount point (containers bind-mount it) cannot be
//! replaced by rename(2) (EBUSY); it is rewritten in place instead.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::backup::{overwrite, read_path, Backup, Kind, Orig};
use super::{unique, Backend, Session};
use crate::conn::Bus;
use crate::error::{Error, Result};
use crate::state::Dir;

pub const DEFAULT_PATH: &str = "/etc/resolv.conf";
/// resolv.conf is a few hundred bytes; anything this big is not one.
const MAX_SIZE: u64 = 64 * 1024;

/// resolv.conf for `dns::backup`.
pub static KIND: Kind = Kind { name: "file", what: "resolv.conf", max_size: MAX_SIZE, look, write, put_other };

pub struct FileBackend {
    backup: Backup,
    scope_warned: bool,
}

impl FileBackend {
    pub fn new(path: &Path, dir: &Dir) -> Result<Self> {
        // The state file keeps the path on one line.
        if path.as_os_str().is_empty() || path.to_str().map_or(true, |s| s.contains('\n')) {
            return Err(Error::failed("the path must be UTF-8 and have no newline"));
        }
        let path = super::backup::absolute(path).map_err(|e| Error::io("resolving the path", e))?;
        Ok(FileBackend { backup: Backup::new(&KIND, path, dir), scope_warned: false })
    }

    fn set(&mut self, sessions: &[Session]) -> Result<()> {
        let path = self.backup.path.clone();
        super::warn_no_split(&mut self.scope_warned, sessions, &path.display().to_string(), "used for all names");
        let make = |orig: &Orig| generate(sessions, &system_part(&path, orig)).into_bytes();
        self.backup.update(sessions.len(), make).map(drop)
    }
}

impl Backend for FileBackend {
    fn apply(&mut self, _bus: &Bus, sessions: &[Session]) -> Result<()> {
        self.set(sessions)
    }
}

fn look(path: &Path) -> Result<Orig> {
    let err = |e| Error::io(format!("read {}", path.display()), e);
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Orig::Missing),
        Err(e) => return Err(err(e)),
    };
    if m.file_type().is_symlink() {
        return Ok(Orig::Symlink(fs::read_link(path).map_err(err)?));
    }
    if !m.is_file() {
        return Err(Error::failed(format!("{} is not a regular file", path.display())));
    }
    let bytes = read_path(path, false, MAX_SIZE).map_err(err)?;
    Ok(Orig::File { bytes, mode: m.mode() & 0o7777, uid: m.uid(), gid: m.gid() })
}

/// The system's own part of resolv.conf.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct System {
    pub servers: Vec<String>,
    search: Vec<String>,
    other: Vec<String>,
}

fn system_part(path: &Path, orig: &Orig) -> System {
    match orig {
        Orig::File { bytes, .. } => parse(bytes),
        Orig::Symlink(t) => {
            let target = path.parent().unwrap_or(Path::new("/")).join(t);
            let bytes = read_path(&target, true, MAX_SIZE).inspect_err(|e| {
                log::debug!("{}: cannot read the link target {}: {e}", path.display(), target.display())
            });
            parse(&bytes.unwrap_or_default())
        }
        Orig::Missing => System::default(),
    }
}

pub fn parse(bytes: &[u8]) -> System {
    let mut s = System::default();
    let text = String::from_utf8_lossy(bytes);
    for t in text.lines().map(str::trim).filter(|t| !t.is_empty() && !t.starts_with(['#', ';'])) {
        let mut w = t.split_whitespace();
        match w.next() {
            Some("nameserver") => s.servers.extend(w.next().map(String::from)),
            // As in glibc, the last search or domain line is the one used.
            Some("search" | "domain") => s.search = w.map(String::from).collect(),
            _ => s.other.push(t.to_string()),
        }
    }
    s.servers = unique(s.servers);
    s
}

fn generate(sessions: &[Session], sys: &System) -> String {
    let names: Vec<&str> = sessions.iter().map(|s| s.ifname.as_str()).collect();
    let mut out = format!(
        "# Generated by ovpn-netcfgd: DNS of the VPN sessions on {} (newest first),\n\
         # then this system's own settings. The original is put back when they end.\n",
        names.join(" ")
    );
    let search = unique(sessions.iter().flat_map(|s| &s.search).chain(&sys.search).map(String::as_str));
    if !search.is_empty() {
        let _ = writeln!(out, "search {}", search.join(" "));
    }
    // glibc uses the first three name servers, so the VPN's come first.
    let vpn = sessions.iter().flat_map(|s| s.servers.iter().map(|a| a.to_string()));
    for a in unique(vpn.chain(sys.servers.iter().cloned())) {
        let _ = writeln!(out, "nameserver {a}");
    }
    for l in &sys.other {
        let _ = writeln!(out, "{l}");
    }
    out
}

/// Writes `bytes` to `path` without ever chowning: a temporary file in the
/// same directory renamed over it (readers see the old or the new file)
/// when the new file gets the right owner by itself, i.e. the original
/// (`orig`) is ours or no regular file; else, for an existing regular file
/// or a mount point, in place, which keeps its owner and mode. A new file
/// gets the original's mode (or 0644) less the write bits for group and
/// others.
fn write(path: &Path, orig: &Orig, bytes: &[u8]) -> Result<()> {
    let err = |e| Error::io(format!("write {}", path.display()), e);
    let me = (nix::unistd::Uid::effective().as_raw(), nix::unistd::Gid::effective().as_raw());
    let (mode, in_place) = match orig {
        Orig::File { mode, uid, gid, .. } => {
            (*mode, (*uid, *gid) != me && fs::symlink_metadata(path).is_ok_and(|m| m.is_file()))
        }
        _ => (0o644, false),
    };
    if !in_place {
        let r = via_temp(path, |tmp| {
            let mut f =
                OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(tmp)?;
            f.write_all(bytes)?;
            f.set_permissions(fs::Permissions::from_mode(mode & 0o644))?;
            f.sync_all()
        });
        // rename(2) over a mount point fails with EBUSY: that one is
        // rewritten in place.
        if r.as_ref().map_err(|e| e.raw_os_error()) != Err(Some(libc::EBUSY)) {
            return r.map_err(err);
        }
    }
    let f = OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(err)?;
    overwrite(&f, bytes).map_err(err)
}

/// Puts back a symlink (atomically as well) or nothing.
fn put_other(path: &Path, orig: &Orig) -> Result<()> {
    let r = match orig {
        Orig::Symlink(target) => via_temp(path, |tmp| std::os::unix::fs::symlink(target, tmp)),
        _ => fs::remove_file(path),
    };
    r.map_err(|e| Error::io(format!("restore {}", path.display()), e))
}

/// Makes a file or link with `make` at a temporary name beside `path`,
/// then renames it over `path`.
fn via_temp(path: &Path, make: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.ovpn-netcfgd-tmp"));
    let _ = fs::remove_file(&tmp);
    let r = make(&tmp).and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::backup::recover;

    fn session(ifname: &str, order: u64, servers: &[&str], search: &[&str]) -> Session {
        let s = crate::dns::test_session(&format!("/p/{ifname}"), order as u32, order, servers, search);
        Session { ifname: ifname.into(), ..s }
    }

    #[test]
    fn parse_keeps_other_lines_and_last_search_wins() {
        let s = parse(b"# c\nnameserver 1.1.1.1\ndomain old.example\nsearch a.example b.example\noptions edns0\n;x\nnameserver 1.1.1.1\n");
        assert_eq!(s.servers, vec!["1.1.1.1"]);
        assert_eq!(s.search, vec!["a.example", "b.example"]);
        assert_eq!(s.other, vec!["options edns0"]);
        assert_eq!(parse(b"search a\ndomain d\n").search, vec!["d"]);
    }

    #[test]
    fn generate_puts_newest_session_first_then_system() {
        let sys = parse(b"nameserver 192.0.2.53\nnameserver 10.1.0.1\nsearch lan\noptions rotate\n");
        let new = session("tun1", 2, &["10.2.0.1"], &["two.example"]);
        let old = session("tun0", 1, &["10.1.0.1"], &["one.example", "lan"]);
        let text = generate(&[new, old], &sys);
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            vec![
                "search two.example one.example lan",
                "nameserver 10.2.0.1",
                "nameserver 10.1.0.1",
                "nameserver 192.0.2.53",
                "options rotate"
            ]
        );
    }

    #[test]
    fn write_restore_and_recover_on_a_temp_dir() {
        let root = std::env::temp_dir().join(format!("ovpn-netcfgd-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let conf = root.join("resolv.conf");
        let orig = b"nameserver 192.0.2.53\n# keep me\n".to_vec();
        fs::write(&conf, &orig).unwrap();
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o640)).unwrap();
        let state = Dir::for_tests(&root.join("state"));
        let mut f = FileBackend::new(&conf, &state).unwrap();
        f.set(&[session("tun0", 1, &["10.1.0.1"], &[])]).unwrap();
        let text = fs::read_to_string(&conf).unwrap();
        assert!(text.contains("nameserver 10.1.0.1\nnameserver 192.0.2.53\n"), "{text}");
        assert_eq!(fs::metadata(&conf).unwrap().mode() & 0o777, 0o640);
        f.set(&[]).unwrap();
        assert_eq!(fs::read(&conf).unwrap(), orig);
        assert!(!state.exists("file-meta"));

        // A "killed" run: state left behind, then recovery.
        let mut f = FileBackend::new(&conf, &state).unwrap();
        f.set(&[session("tun0", 1, &["10.1.0.1"], &[])]).unwrap();
        drop(f);
        recover(&KIND, &state, &root.join("other.conf"));
        assert_ne!(fs::read(&conf).unwrap(), orig, "a backup of another file is not restored");
        recover(&KIND, &state, &conf);
        assert_eq!(fs::read(&conf).unwrap(), orig);

        // Someone else rewrote the file meanwhile: their version is kept.
        let mut f = FileBackend::new(&conf, &state).unwrap();
        f.set(&[session("tun0", 1, &["10.1.0.1"], &[])]).unwrap();
        fs::write(&conf, b"nameserver 198.51.100.1\n").unwrap();
        f.set(&[]).unwrap();
        assert_eq!(fs::read(&conf).unwrap(), b"nameserver 198.51.100.1\n");
        let _ = fs::remove_dir_all(&root);
    }
}
