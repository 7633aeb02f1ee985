//! The crash-safe backup of a file a DNS backend rewrites (resolv.conf,
//! dnsmasq's servers file), shared by those backends.
//!
//! Before the first write, what the file held is saved in the state dir's
//! `dns/` (`<name>-meta`, which marks the backup valid and names the path,
//! and `<name>-orig`), and each content we write is recorded there first
//! (`<name>-ours`). Restoring puts the original back only while the file
//! still holds what we wrote: if another program rewrote it since, its
//! version is newer than our backup and is kept. At start-up a backup left
//! by a killed run is restored the same way, and only if it is of the file
//! this run is configured for, so the state files can never make the
//! daemon write anywhere else.
//!
//! Both backends record the original in one format (`kind` file, with its
//! mode and owner; symlink; missing). A dnsmasq backup written before its
//! mode and owner were recorded is read as well.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::state::{read_max, Dir};

/// What the path held before the first write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orig {
    File { bytes: Vec<u8>, mode: u32, uid: u32, gid: u32 },
    Symlink(PathBuf),
    Missing,
}

impl Orig {
    /// True if it is a regular file with exactly `ours` in it.
    fn holds(&self, ours: &[u8]) -> bool {
        matches!(self, Orig::File { bytes, .. } if bytes == ours)
    }
}

/// How a backend's file is looked at and written; the backup does the rest.
pub struct Kind {
    /// Prefix of the state files.
    pub name: &'static str,
    /// What the file is, for the log.
    pub what: &'static str,
    /// Largest original (and content) accepted back from the state files.
    pub max_size: u64,
    pub look: fn(&Path) -> Result<Orig>,
    /// Writes `bytes` where the path held `orig`: our content, or the
    /// original's own bytes when it is put back.
    pub write: fn(&Path, &Orig, &[u8]) -> Result<()>,
    /// Puts back an original that was not a regular file.
    pub put_other: fn(&Path, &Orig) -> Result<()>,
}

impl Kind {
    fn state(&self, part: &str) -> String {
        format!("{}-{part}", self.name)
    }
}

pub struct Saved {
    orig: Orig,
    /// What we last wrote (None: backup taken, nothing written yet).
    ours: Option<Vec<u8>>,
}

pub struct Backup {
    kind: &'static Kind,
    /// The file backed up and rewritten.
    pub path: PathBuf,
    dir: Dir,
    saved: Option<Saved>,
}

impl Backup {
    pub fn new(kind: &'static Kind, path: PathBuf, dir: &Dir) -> Backup {
        Backup { kind, path, dir: dir.clone(), saved: None }
    }

    /// Makes the file hold `make(original)` for `n` sessions, or puts the
    /// original back when `n` is 0; true if the file changed.
    pub fn update(&mut self, n: usize, make: impl FnOnce(&Orig) -> Vec<u8>) -> Result<bool> {
        if n == 0 {
            return self.restore();
        }
        let text = make(self.original()?);
        let saved = self.saved.as_mut().expect("original() took the backup");
        if saved.ours.as_deref() == Some(text.as_slice()) {
            return Ok(false);
        }
        // Recorded before the write: after a crash the file holds either
        // the original (left alone) or this (restored).
        self.dir.write(&self.kind.state("ours"), &text)?;
        (self.kind.write)(&self.path, &saved.orig, &text)?;
        saved.ours = Some(text);
        log::info!("{}: written for {n} VPN session(s)", self.path.display());
        Ok(true)
    }

    /// Before a write: the original, saved first if the file does not hold
    /// what we last wrote (a first write, or another program's change).
    fn original(&mut self) -> Result<&Orig> {
        if self.saved.is_none() && self.dir.exists(&self.kind.state("meta")) {
            // A backup that start-up recovery could not restore: keep using
            // it, never overwrite it with our own old content.
            self.saved = load(self.kind, &self.dir).ok().filter(|(p, _)| *p == self.path).map(|(_, s)| s);
        }
        let now = (self.kind.look)(&self.path)?;
        let current = self.saved.as_ref().is_some_and(|s| s.ours.as_deref().is_some_and(|o| now.holds(o)));
        if !current {
            if self.saved.is_some() {
                log::warn!(
                    "{} was changed by another program; its version is the one restored later",
                    self.path.display()
                );
            }
            let (head, bytes) = match &now {
                Orig::File { bytes, mode, uid, gid } => {
                    (format!("file\nmode {mode:o}\nuid {uid}\ngid {gid}\n"), &bytes[..])
                }
                Orig::Symlink(t) => ("symlink\n".into(), t.as_os_str().as_bytes()),
                Orig::Missing => ("missing\n".into(), &b""[..]),
            };
            // A stale OURS must never match the file of this new backup.
            let _ = self.dir.remove(&self.kind.state("ours"));
            self.dir.write(&self.kind.state("orig"), bytes)?;
            let meta = format!("path {}\nkind {head}", self.path.display());
            self.dir.write(&self.kind.state("meta"), meta.as_bytes())?;
            self.saved = Some(Saved { orig: now, ours: None });
        }
        Ok(&self.saved.as_ref().expect("saved just above").orig)
    }

    /// Puts the original back and forgets the backup; true if we had
    /// written the file.
    fn restore(&mut self) -> Result<bool> {
        let Some(saved) = &self.saved else { return Ok(false) };
        put_back(self.kind, &self.dir, &self.path, saved)?;
        Ok(self.saved.take().is_some_and(|s| s.ours.is_some()))
    }
}

/// `std::path::absolute` less its POSIX `//` root (`state::open_parent`
/// walks components): `.` and repeated `/` go, a trailing `/` stays.
pub fn absolute(p: &Path) -> io::Result<PathBuf> {
    let cwd = if p.is_relative() { std::env::current_dir()? } else { PathBuf::new() };
    let mut n: PathBuf = cwd.join(p).components().collect();
    n.extend(p.as_os_str().as_bytes().ends_with(b"/").then_some(""));
    Ok(n)
}

/// Restores a backup left by a run that did not exit cleanly, if it is of
/// `configured`. Returns true if a file was put back.
pub fn recover(kind: &Kind, dir: &Dir, configured: &Path) -> bool {
    if !dir.exists(&kind.state("meta")) {
        return false;
    }
    let configured = absolute(configured).unwrap_or_else(|_| configured.to_path_buf());
    let here = dir.path.display();
    match load(kind, dir) {
        Ok((path, _)) if path != configured => log::error!(
            "a {} backup in {here} is of {}, not of {}: not restored, left there for inspection",
            kind.what,
            path.display(),
            configured.display()
        ),
        Ok((path, saved)) => {
            log::warn!("{}: a previous run did not exit cleanly; restoring the original", path.display());
            match put_back(kind, dir, &path, &saved) {
                Ok(()) => return true,
                Err(e) => log::error!("{}: {e}; the backup stays in {here}", path.display()),
            }
        }
        Err(e) => log::error!("unusable {} backup in {here}: {e}; left there for inspection", kind.what),
    }
    false
}

/// Puts the original back if the file still holds what we wrote (never
/// written: the original is still there), then forgets the backup.
fn put_back(kind: &Kind, dir: &Dir, path: &Path, saved: &Saved) -> Result<()> {
    if let Some(ours) = &saved.ours {
        if !(kind.look)(path)?.holds(ours) {
            log::warn!("{}: changed by another program after us; keeping its version", path.display());
        } else {
            match &saved.orig {
                Orig::File { bytes, .. } => (kind.write)(path, &saved.orig, bytes)?,
                other => (kind.put_other)(path, other)?,
            }
            log::info!("{}: original restored", path.display());
        }
    }
    for part in ["meta", "orig", "ours"] {
        let _ = dir.remove(&kind.state(part));
    }
    Ok(())
}

/// Reads the backup (meta, orig and, if written, ours). Its files are
/// trusted only as `state::Dir` allows.
fn load(kind: &Kind, dir: &Dir) -> Result<(PathBuf, Saved)> {
    let read = |part: &str, max: u64| {
        let n = kind.state(part);
        dir.read(&n, max).map_err(|e| Error::io(format!("read {}/{n}", dir.path.display()), e))
    };
    let need = |part: &str, max: u64| {
        read(part, max)?.ok_or_else(|| Error::failed(format!("{}/{}-{part} is missing", dir.path.display(), kind.name)))
    };
    let (meta, orig) = (need("meta", 4096)?, need("orig", kind.max_size)?);
    parse(kind.name, &meta, orig, read("ours", kind.max_size)?)
}

/// The backup `name` from its three files' bytes (`ours` may be missing).
pub fn parse(name: &str, meta: &[u8], bytes: Vec<u8>, ours: Option<Vec<u8>>) -> Result<(PathBuf, Saved)> {
    let bad = |what: String| Error::failed(format!("{name}-meta{what}"));
    let text = std::str::from_utf8(meta).map_err(|_| bad(" is not UTF-8".into()))?;
    let get = |key: &str| {
        let value = text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' '));
        value.ok_or_else(|| bad(format!(" has no '{key}'")))
    };
    let num = |key: &str, radix| match get(key) {
        // dnsmasq backups of older versions record no mode and owner (the
        // servers file is rewritten in place, keeping them).
        Err(_) if name == "dnsmasq" => Ok(0),
        v => u32::from_str_radix(v?, radix).map_err(|_| bad(format!(": bad '{key}'"))),
    };
    let orig = match get("kind")? {
        "file" => Orig::File { bytes, mode: num("mode", 8)? & 0o7777, uid: num("uid", 10)?, gid: num("gid", 10)? },
        "symlink" => Orig::Symlink(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))),
        "missing" => Orig::Missing,
        k => return Err(bad(format!(": unknown kind '{k}'"))),
    };
    // The file the backup is of: an absolute path.
    let path = PathBuf::from(get("path")?);
    if !path.is_absolute() {
        return Err(bad(": the path is not absolute".into()));
    }
    Ok((path, Saved { orig, ours }))
}

/// At most `max` bytes of the file at `path`, a symbolic link followed
/// only if `follow`; more is an error.
pub fn read_path(path: &Path, follow: bool, max: u64) -> io::Result<Vec<u8>> {
    let flags = if follow { 0 } else { libc::O_NOFOLLOW };
    read_max(std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path)?, max)
}

/// Replaces the whole content of an open file in place.
pub fn overwrite(mut f: &std::fs::File, bytes: &[u8]) -> io::Result<()> {
    f.set_len(0)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_is_std_s_but_for_a_double_slash_root() {
        let paths = ["/etc/resolv.conf", "/etc//./r.conf/", "./a/../b", "a//b/", "/..", "."];
        for p in paths {
            assert_eq!(absolute(Path::new(p)).unwrap().as_os_str(), std::path::absolute(p).unwrap().as_os_str(), "{p}");
        }
    }

    #[test]
    fn meta_needs_mode_and_owner_except_in_an_old_dnsmasq_backup() {
        let old = b"path /run/s\nkind file\n";
        assert!(parse("file", old, b"x".to_vec(), None).is_err());
        let (p, s) = parse("dnsmasq", old, b"x".to_vec(), None).unwrap();
        assert_eq!(
            (p, s.orig),
            (PathBuf::from("/run/s"), Orig::File { bytes: b"x".to_vec(), mode: 0, uid: 0, gid: 0 })
        );
        let new = b"path /etc/resolv.conf\nkind file\nmode 644\nuid 0\ngid 0\n";
        assert!(parse("file", new, Vec::new(), None).is_ok());
        assert!(parse("file", b"path /x\nkind file\nmode 9\nuid 0\ngid 0\n", Vec::new(), None).is_err());
    }
}
