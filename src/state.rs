//! The state directory, and every file the daemon opens as root or with
//! CAP_DAC_OVERRIDE: what it trusts must not be writable by its clients.
//!
//! Rules, each checked on the opened descriptor (never stat-then-open):
//! * paths are walked from `/` one component at a time with O_NOFOLLOW;
//!   every directory above the state directory (or the log file) is root's
//!   and not writable by group or others, unless it is sticky (`/tmp`);
//! * the state directory is root's, or the dedicated account's when the
//!   daemon runs as that account, and not writable by group or others;
//! * a state file is a regular file with one link, owned by root or by the
//!   account the daemon runs as, not writable by group or others;
//! * new files are made with O_CREAT|O_EXCL and renamed into place by
//!   directory descriptor; nothing is ever chowned.
//!
//! When the state directory given belongs to the account the daemon runs
//! as and that account is not the dedicated one (OpenVPN 3's own account,
//! which every client backend also runs as), the directory is the clients'
//! to write: its netcfg.json is ignored, and the daemon's own state goes to
//! a root-owned subdirectory `private` created there before privileges are
//! dropped. The journal files are opened as root and kept open, so the
//! daemon needs no write access to that directory afterwards.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use nix::fcntl::{openat, renameat, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, mkdirat, FileStat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// The account made for this daemon alone (dist/sysusers.d). A state
/// directory it owns is trusted only while the daemon runs as it.
pub const DEDICATED_ACCOUNT: &str = "ovpn-netcfgd";
/// Where the daemon keeps its state inside a directory its clients own.
pub const PRIVATE: &str = "private";
/// The two journal files (see `journal::Wal`).
pub const JOURNALS: [&str; 2] = ["journal", "journal.alt"];
const CONFIG: &str = "netcfg.json";
const CONFIG_MAX: u64 = 64 * 1024;
/// A directory on the way to a state file or the log.
const DIR: OFlag = OFlag::O_DIRECTORY.union(OFlag::O_NOFOLLOW).union(OFlag::O_RDONLY).union(OFlag::O_CLOEXEC);
/// On every file opened: no symlink followed, no controlling terminal, no
/// wait for a FIFO's other end.
const SAFE: OFlag = OFlag::O_NOFOLLOW.union(OFlag::O_CLOEXEC).union(OFlag::O_NOCTTY).union(OFlag::O_NONBLOCK);

/// The account the daemon will run as (`privs::account`), looked up once.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub user: nix::unistd::User,
    /// Why this account: `--run-as`, or the first that exists.
    pub why: String,
}

impl RunAs {
    /// Whether it is `DEDICATED_ACCOUNT` (not the clients' account).
    pub fn dedicated(&self) -> bool {
        self.user.name == DEDICATED_ACCOUNT
    }
}

/// A directory opened by descriptor, with the owners its files may have.
#[derive(Clone, Debug)]
pub struct Dir {
    fd: Rc<OwnedFd>,
    pub path: PathBuf,
    uids: [u32; 2],
}

/// Everything `prepare` opened while the daemon was still root.
pub struct State {
    pub dir: Dir,
    pub dns: Dir,
    pub journals: [File; 2],
    /// netcfg.json, when present and trusted.
    pub config: Option<String>,
    pub warnings: Vec<String>,
    /// The account given to `prepare` (None: running as root).
    pub run_as: Option<RunAs>,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn writable_by_others(st: &FileStat) -> bool {
    st.st_mode & 0o022 != 0
}

/// Why an opened file may not be trusted, if it may not: it must be a
/// regular file with one link, owned by one of `uids`, that nobody else
/// may write.
fn untrusted(st: &FileStat, uids: [u32; 2]) -> Option<String> {
    let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    let ok = regular && st.st_nlink == 1 && uids.contains(&st.st_uid) && !writable_by_others(st);
    (!ok).then(|| {
        format!(
            "not a regular file with one link, owned by root or this daemon's account and writable by nobody \
             else ({}, {} links)",
            owner(st),
            st.st_nlink
        )
    })
}

/// `uid U, mode M`, for errors about a file's owner and mode.
fn owner(st: &FileStat) -> String {
    format!("uid {}, mode {:o}", st.st_uid, st.st_mode & 0o7777)
}

/// The error for a directory `path` that is not root's with mode 0700.
fn not_root_0700(path: &Path, st: &FileStat) -> String {
    format!("{} must be a directory owned by root with mode 0700 (it has {})", path.display(), owner(st))
}

/// Opens the directory that holds `path`'s last component, walking from
/// `/` without following symlinks; each directory on the way must be
/// root's and not writable by others unless sticky. Returns it and the
/// last component.
pub fn open_parent(path: &Path) -> io::Result<(OwnedFd, OsString)> {
    let refuse = |why: &str| Err(bad(format!("{}: {why}", path.display())));
    if !path.is_absolute() {
        return refuse("not an absolute path");
    }
    // The first component is the root.
    let normal = |c| if let Component::Normal(n) = c { Some(n) } else { None };
    let Some(mut names) = path.components().skip(1).map(normal).collect::<Option<Vec<&OsStr>>>() else {
        return refuse("'.' or '..' in the path");
    };
    let Some(last) = names.pop() else { return refuse("no file name") };
    let mut dir = openat(AT_FDCWD, "/", DIR, Mode::empty())?;
    let mut walked = PathBuf::from("/");
    let mut names = names.into_iter();
    loop {
        let st = fstat(&dir)?;
        if st.st_uid != 0 || (writable_by_others(&st) && st.st_mode & libc::S_ISVTX == 0) {
            return Err(bad(format!(
                "{}: the directory {} is not root's or is writable by others ({})",
                path.display(),
                walked.display(),
                owner(&st)
            )));
        }
        let Some(n) = names.next() else { break };
        walked.push(n);
        dir = openat(&dir, n, DIR, Mode::empty()).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("{}: opening {}: {e}", path.display(), walked.display()))
        })?;
    }
    Ok((dir, last.to_os_string()))
}

/// Opens (creating it root's, mode 0700, if missing) the directory `name`
/// in `parent`, never following a symlink.
fn open_or_make_dir(parent: &impl AsFd, name: &OsStr) -> io::Result<(OwnedFd, FileStat)> {
    let open = || openat(parent, name, DIR, Mode::empty());
    let fd = match open() {
        Err(nix::Error::ENOENT) => match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(nix::Error::EEXIST) => open(),
            Err(e) => Err(e),
        },
        r => r,
    }?;
    let st = fstat(&fd)?;
    Ok((fd, st))
}

/// Opens the state directory for `run_as` (None: running as root), while
/// still root. Creates it if missing. Errors are fatal start-up errors.
pub fn prepare(path: &Path, run_as: Option<RunAs>) -> Result<State, String> {
    let fail = |e: io::Error| format!("state directory {}: {e}", path.display());
    let (parent, name) = open_parent(path).map_err(fail)?;
    let (fd, st) = open_or_make_dir(&parent, &name).map_err(fail)?;
    let euid = nix::unistd::Uid::effective().as_raw();
    let me = run_as.as_ref().map_or(euid, |r| r.user.uid.as_raw());
    let dedicated = run_as.as_ref().map_or(true, RunAs::dedicated);
    let mut warnings = Vec::new();
    let sound = is_dir(&st) && !writable_by_others(&st);
    let (dir_fd, dir_path, config_ok) = if sound && (st.st_uid == 0 || (dedicated && st.st_uid == me)) {
        (fd, path.to_path_buf(), true)
    } else if sound && st.st_uid == me {
        // The clients' account owns it (OpenVPN 3's own state directory).
        let (p, pst) = open_or_make_dir(&fd, OsStr::new(PRIVATE)).map_err(fail)?;
        if pst.st_uid != 0 || pst.st_mode & 0o077 != 0 || !is_dir(&pst) {
            return Err(not_root_0700(&path.join(PRIVATE), &pst));
        }
        warnings.push(format!(
            "state directory {} belongs to uid {me}, the account this daemon and its clients run as: \
             its {CONFIG} is ignored, and the daemon keeps its own state in {PRIVATE}/ there",
            path.display()
        ));
        (p, path.join(PRIVATE), false)
    } else {
        return Err(format!(
            "state directory {} must be a directory owned by root{} and not writable by group or others \
             (it has {}); fix it with: chown root:root {p} && chmod 700 {p}",
            path.display(),
            if dedicated && run_as.is_some() { " or by the daemon's own account" } else { "" },
            owner(&st),
            p = path.display()
        ));
    };
    // netcfg.json and the journal files (made as root) belong to root, or
    // to the dedicated account: never to the account the clients run as.
    let dir = Dir { fd: Rc::new(dir_fd), path: dir_path, uids: [0, if dedicated { me } else { 0 }] };
    let in_file = |e: &dyn std::fmt::Display| format!("{}/{CONFIG}: {e}", path.display());
    let bytes = if config_ok { dir.read(CONFIG, CONFIG_MAX).map_err(|e| in_file(&e))? } else { None };
    let config = bytes.map(String::from_utf8).transpose().map_err(|_| in_file(&"not UTF-8"))?;
    let (dns_fd, dst) =
        open_or_make_dir(&*dir.fd, OsStr::new("dns")).map_err(|e| format!("{}/dns: {e}", dir.path.display()))?;
    // The DNS backups are written after privileges are dropped, so they
    // belong to the account the daemon runs as. If that is the clients'
    // account, only a directory they cannot enter keeps them out.
    if !is_dir(&dst) || writable_by_others(&dst) || dst.st_uid != 0 || (!dedicated && dst.st_mode & 0o077 != 0) {
        return Err(not_root_0700(&dir.path.join("dns"), &dst));
    }
    let dns = Dir { fd: Rc::new(dns_fd), path: dir.path.join("dns"), uids: [0, me] };
    let open_journal = |n: &str| dir.open_rw(n).map_err(|e| format!("{}/{n}: {e}", dir.path.display()));
    let journals = [open_journal(JOURNALS[0])?, open_journal(JOURNALS[1])?];
    Ok(State { dir, dns, journals, config, warnings, run_as })
}

impl Dir {
    /// A directory for unit tests: created if missing, files of `uid` trusted.
    #[cfg(test)]
    pub fn for_tests(path: &Path) -> Dir {
        std::fs::create_dir_all(path).unwrap();
        let fd =
            openat(AT_FDCWD, path, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        let me = nix::unistd::Uid::effective().as_raw();
        Dir { fd: Rc::new(fd), path: path.to_path_buf(), uids: [0, me] }
    }

    /// Checks an opened state file (see `untrusted`).
    fn check(&self, name: &str, f: &OwnedFd) -> io::Result<()> {
        match untrusted(&fstat(f)?, self.uids) {
            Some(why) => Err(bad(format!("{}/{name} is {why}; refusing to use it", self.path.display()))),
            None => Ok(()),
        }
    }

    fn open(&self, name: &str, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
        Ok(openat(&*self.fd, name, flags | SAFE, Mode::from_bits_truncate(mode))?)
    }

    /// Reads a state file of at most `max` bytes; None if it does not exist.
    pub fn read(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let fd = match self.open(name, OFlag::O_RDONLY, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            r => r?,
        };
        self.check(name, &fd)?;
        read_max(File::from(fd), max).map(Some)
    }

    /// Opens (or creates, mode 0600) a state file for reading and writing.
    pub fn open_rw(&self, name: &str) -> io::Result<File> {
        let fd = self.open(name, OFlag::O_RDWR | OFlag::O_CREAT, 0o600)?;
        self.check(name, &fd)?;
        let f = File::from(fd);
        // Back to blocking: O_NONBLOCK was only against FIFOs at open.
        nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()))?;
        Ok(f)
    }

    /// Replaces a state file atomically: a new file (O_EXCL) renamed over it.
    pub fn write(&self, name: &str, bytes: &[u8]) -> crate::error::Result<()> {
        let tmp = format!("{name}.tmp");
        let _ = self.remove(&tmp);
        let r = (|| {
            let mut f = File::from(self.open(&tmp, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, 0o600)?);
            f.write_all(bytes)?;
            f.sync_all()?;
            renameat(&*self.fd, tmp.as_str(), &*self.fd, name)?;
            nix::unistd::fsync(&*self.fd).map_err(io::Error::from)
        })();
        r.inspect_err(|_| drop(self.remove(&tmp)))
            .map_err(|e| crate::error::Error::io(format!("write {}/{name}", self.path.display()), e))
    }

    /// Removes a state file (a missing one is fine).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match unlinkat(&*self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Whether an entry called `name` exists (whatever it is).
    pub fn exists(&self, name: &str) -> bool {
        nix::sys::stat::fstatat(&*self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    }
}

/// At most `max` bytes read from `f`; more is an error.
pub fn read_max(f: impl Read, max: u64) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    f.take(max + 1).read_to_end(&mut v)?;
    if v.len() as u64 > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("larger than {max} bytes")));
    }
    Ok(v)
}

/// Opens the log file for appending, safely as root: no symlink anywhere
/// on the path, the directories above are root's (see `open_parent`), and
/// the file (created 0640 if missing) is a regular file with one link,
/// owned by root or `dedicated` (the daemon's own account, if it runs as
/// that), and writable by nobody else.
pub fn open_log(path: &Path, dedicated: Option<u32>) -> io::Result<File> {
    let (parent, name) = open_parent(path)?;
    let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | SAFE;
    let fd = openat(&parent, name.as_bytes(), flags, Mode::from_bits_truncate(0o640))?;
    match untrusted(&fstat(&fd)?, [0, dedicated.unwrap_or(0)]) {
        Some(why) => Err(bad(why)),
        None => Ok(File::from(fd)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn paths_with_dot_dot_or_relative_are_refused() {
        assert!(open_parent(Path::new("relative/x")).is_err());
        assert!(open_parent(Path::new("/tmp/../etc/x")).is_err());
        assert!(open_parent(Path::new("/")).is_err());
    }

    #[test]
    fn symlinks_and_hard_links_are_refused() {
        let d = tmp("links");
        let dir = Dir::for_tests(&d);
        std::os::unix::fs::symlink("/etc/hostname", d.join("l")).unwrap();
        assert_eq!(dir.read("l", 100).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert!(dir.open_rw("l").is_err());
        std::fs::write(d.join("a"), "x").unwrap();
        std::fs::hard_link(d.join("a"), d.join("b")).unwrap();
        assert!(dir.read("b", 100).unwrap_err().to_string().contains("2 links"));
        std::fs::remove_file(d.join("a")).unwrap();
        assert_eq!(dir.read("b", 100).unwrap().unwrap(), b"x");
        dir.write("b", b"yz").unwrap();
        assert_eq!(dir.read("b", 100).unwrap().unwrap(), b"yz");
        assert!(dir.read("b", 1).is_err(), "bounded");
        assert_eq!(dir.read("missing", 1).unwrap(), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
