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

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::state::Dir;

/// What a backend's file is, as far as the backup is concerned.
pub trait Target {
    /// What the path held before the first write.
    type Orig: std::fmt::Debug;
    /// Prefix of the state files.
    const NAME: &'static str;
    /// What the file is, for the log.
    const WHAT: &'static str;
    /// Largest original (and content) accepted back from the state files.
    const MAX_SIZE: u64;
    fn look(path: &Path) -> Result<Self::Orig>;
    /// True if `now` is a regular file with exactly `ours` in it.
    fn holds(now: &Self::Orig, ours: &[u8]) -> bool;
    /// Puts the original back (the file holds what we wrote).
    fn put_orig(path: &Path, orig: &Self::Orig) -> Result<()>;
    /// The original as its `kind` line and further meta lines, and bytes.
    fn encode(orig: &Self::Orig) -> (String, &[u8]);
    fn decode(meta: &Meta, bytes: Vec<u8>) -> Result<Self::Orig>;
}

/// The parsed `<name>-meta` file.
pub struct Meta<'a> {
    name: &'static str,
    text: &'a str,
}

impl<'a> Meta<'a> {
    pub fn get(&self, key: &str) -> Result<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .ok_or_else(|| Error::Failed(format!("{}-meta has no '{key}'", self.name)))
    }

    pub fn num(&self, key: &str, radix: u32) -> Result<u32> {
        u32::from_str_radix(self.get(key)?, radix)
            .map_err(|_| Error::Failed(format!("{}-meta: bad '{key}'", self.name)))
    }

    fn parse(name: &'static str, meta: &'a [u8]) -> Result<Meta<'a>> {
        let text = std::str::from_utf8(meta).map_err(|_| Error::Failed(format!("{name}-meta is not UTF-8")))?;
        Ok(Meta { name, text })
    }

    /// The file the backup is of: an absolute path.
    fn path(&self) -> Result<PathBuf> {
        let path = PathBuf::from(self.get("path")?);
        if !path.is_absolute() {
            return Err(Error::Failed(format!("{}-meta: the path is not absolute", self.name)));
        }
        Ok(path)
    }

    pub fn unknown_kind(&self, kind: &str) -> Error {
        Error::Failed(format!("{}-meta: unknown kind '{kind}'", self.name))
    }
}

#[derive(Debug)]
pub struct Saved<O> {
    pub orig: O,
    /// What we last wrote (None: backup taken, nothing written yet).
    pub ours: Option<Vec<u8>>,
}

pub struct Backup<T: Target> {
    path: PathBuf,
    dir: Dir,
    saved: Option<Saved<T::Orig>>,
}

impl<T: Target> Backup<T> {
    pub fn new(path: PathBuf, dir: &Dir) -> Backup<T> {
        Backup { path, dir: dir.clone(), saved: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Before a write: the original, saved first if the file does not hold
    /// what we last wrote (a first write, or another program's change).
    pub fn original(&mut self) -> Result<&T::Orig> {
        if self.saved.is_none() && self.dir.exists(&state_name::<T>("meta")) {
            // A backup that start-up recovery could not restore: keep using
            // it, never overwrite it with our own old content.
            if let Ok((p, s)) = load::<T>(&self.dir) {
                if p == self.path {
                    self.saved = Some(s);
                }
            }
        }
        let now = T::look(&self.path)?;
        let current = self.saved.as_ref().is_some_and(|s| s.ours.as_deref().is_some_and(|o| T::holds(&now, o)));
        if !current {
            if self.saved.is_some() {
                log::warn!(
                    "{} was changed by another program; its version is the one restored later",
                    self.path.display()
                );
            }
            save::<T>(&self.dir, &self.path, &now)?;
            self.saved = Some(Saved { orig: now, ours: None });
        }
        Ok(&self.saved.as_ref().expect("saved just above").orig)
    }

    /// Writes `text` with `put` unless it is what we last wrote; recorded
    /// before the write, so after a crash the file holds either the
    /// original (left alone) or this (restored). Call `original` first.
    pub fn write(&mut self, text: Vec<u8>, put: impl FnOnce(&Path, &T::Orig, &[u8]) -> Result<()>) -> Result<bool> {
        let Some(saved) = self.saved.as_mut() else {
            return Err(Error::Failed(format!("{}: no backup taken", self.path.display())));
        };
        if saved.ours.as_deref() == Some(text.as_slice()) {
            return Ok(false);
        }
        write_state(&self.dir, &state_name::<T>("ours"), &text)?;
        put(&self.path, &saved.orig, &text)?;
        saved.ours = Some(text);
        Ok(true)
    }

    /// Puts the original back and forgets the backup; true if we had
    /// written the file.
    pub fn restore(&mut self) -> Result<bool> {
        let Some(saved) = self.saved.take() else {
            return Ok(false);
        };
        if let Err(e) = put_back::<T>(&self.path, &saved) {
            self.saved = Some(saved);
            return Err(e);
        }
        clear::<T>(&self.dir);
        Ok(saved.ours.is_some())
    }
}

/// Restores a backup left by a run that did not exit cleanly, if it is of
/// `configured`. Returns true if a file was put back.
pub fn recover<T: Target>(dir: &Dir, configured: &Path) -> bool {
    if !dir.exists(&state_name::<T>("meta")) {
        return false;
    }
    let configured = std::path::absolute(configured).unwrap_or_else(|_| configured.to_path_buf());
    let here = dir.path.display();
    match load::<T>(dir) {
        Ok((path, _)) if path != configured => log::error!(
            "a {} backup in {here} is of {}, not of {}: not restored, left there for inspection",
            T::WHAT,
            path.display(),
            configured.display()
        ),
        Ok((path, saved)) => {
            log::warn!("{}: a previous run did not exit cleanly; restoring the original", path.display());
            match put_back::<T>(&path, &saved) {
                Ok(()) => {
                    clear::<T>(dir);
                    return true;
                }
                Err(e) => log::error!("{}: {e}; the backup stays in {here}", path.display()),
            }
        }
        Err(e) => log::error!("unusable {} backup in {here}: {e}; left there for inspection", T::WHAT),
    }
    false
}

/// Puts the original back if the file still holds what we wrote.
fn put_back<T: Target>(path: &Path, saved: &Saved<T::Orig>) -> Result<()> {
    let Some(ours) = &saved.ours else {
        return Ok(()); // never written: the original is still there
    };
    if !T::holds(&T::look(path)?, ours) {
        log::warn!("{}: changed by another program after us; keeping its version", path.display());
        return Ok(());
    }
    T::put_orig(path, &saved.orig)?;
    log::info!("{}: original restored", path.display());
    Ok(())
}

fn state_name<T: Target>(part: &str) -> String {
    format!("{}-{part}", T::NAME)
}

/// Writes a state file atomically (see `state::Dir::write`).
pub fn write_state(dir: &Dir, name: &str, bytes: &[u8]) -> Result<()> {
    dir.write(name, bytes).map_err(|e| Error::io(format!("write {}/{name}", dir.path.display()), e))
}

fn save<T: Target>(dir: &Dir, path: &Path, orig: &T::Orig) -> Result<()> {
    let (kind, bytes) = T::encode(orig);
    // A stale OURS must never match the file of this new backup.
    let _ = dir.remove(&state_name::<T>("ours"));
    write_state(dir, &state_name::<T>("orig"), bytes)?;
    write_state(dir, &state_name::<T>("meta"), format!("path {}\nkind {kind}", path.display()).as_bytes())
}

/// Reads the backup. Its files are trusted only as `state::Dir` allows.
fn load<T: Target>(dir: &Dir) -> Result<(PathBuf, Saved<T::Orig>)> {
    let (meta, orig, ours) = read_files(dir, T::NAME, T::MAX_SIZE)?;
    parse::<T>(&meta, orig, ours)
}

/// A backup's files: meta, orig and (if written) ours.
type Files = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// The three files of the backup `name` (not generic: one copy of this
/// code for every kind of backup).
fn read_files(dir: &Dir, name: &str, max: u64) -> Result<Files> {
    let read = |part: &str, max: u64| {
        let n = format!("{name}-{part}");
        dir.read(&n, max).map_err(|e| Error::io(format!("read {}/{n}", dir.path.display()), e))
    };
    let need = |part: &str, max: u64| {
        read(part, max)?.ok_or_else(|| Error::Failed(format!("{}/{name}-{part} is missing", dir.path.display())))
    };
    Ok((need("meta", 4096)?, need("orig", max)?, read("ours", max)?))
}

/// The backup from its three files' bytes (`ours` may be missing).
pub fn parse<T: Target>(meta: &[u8], orig: Vec<u8>, ours: Option<Vec<u8>>) -> Result<(PathBuf, Saved<T::Orig>)> {
    let meta = Meta::parse(T::NAME, meta)?;
    let orig = T::decode(&meta, orig)?;
    Ok((meta.path()?, Saved { orig, ours }))
}

fn clear<T: Target>(dir: &Dir) {
    for part in ["meta", "orig", "ours"] {
        let _ = dir.remove(&state_name::<T>(part));
    }
}
