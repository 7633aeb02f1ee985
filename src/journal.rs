//! The undo journal: every kernel change we make is recorded with its
//! inverse, so Disable, Destroy, client death and shutdown undo exactly
//! what was done, in reverse order, and nothing else.
//!
//! The same records go to a write-ahead file in the state directory
//! (`Wal`), fsync'd before the kernel is touched, so a restarted daemon can
//! undo what a killed one left behind.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::netlink::addr::Addr;
use crate::netlink::route::Route;
use crate::netlink::rule::Rule;
use crate::netlink::{self, Req};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    DelRoute(Route),
    DelAddr(Addr),
    DelRule(Rule),
    /// Set the link down again (configuration of a link we keep).
    LinkDown {
        ifindex: u32,
    },
    /// Delete a link we created; `name` guards against ifindex reuse.
    DelLink {
        ifindex: u32,
        name: String,
    },
    /// A link being created (written before RTM_NEWLINK, replaced by
    /// `DelLink` once its ifindex is known): delete the link called `name`
    /// only if it is of `kind`, so a crash in between leaks nothing and a
    /// same-named link of another kind is left alone.
    DelNewLink {
        name: String,
        kind: String,
    },
}

impl Undo {
    /// The netlink request that performs this undo step.
    pub fn request(&self) -> Req {
        match self {
            Undo::DelRoute(r) => netlink::route::del(r),
            Undo::DelAddr(a) => netlink::addr::del(a),
            Undo::DelRule(r) => netlink::rule::del(r),
            Undo::LinkDown { ifindex } => {
                let mut r = netlink::link::set(*ifindex, None, None, false);
                r.ok_errnos = netlink::OK_DEL;
                r
            }
            Undo::DelLink { ifindex, .. } => netlink::link::del(*ifindex),
            Undo::DelNewLink { name, .. } => netlink::link::del_by_name(name),
        }
    }

    pub fn is_link(&self) -> bool {
        matches!(self, Undo::DelLink { .. } | Undo::DelNewLink { .. })
    }

    /// One line of text (no newline), read back by `parse`.
    pub fn to_line(&self) -> String {
        let mut s = String::new();
        self.write_line(&mut s);
        s
    }

    /// Appends the `to_line` text to `out` (no allocation per entry: the
    /// journal writes 10k of these before a large Establish).
    pub fn write_line(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = match self {
            Undo::DelRoute(r) => {
                let _ = write!(out, "route {} ", r.dst);
                let _ = match r.gateway {
                    Some(g) => write!(out, "{g} "),
                    None => write!(out, "- "),
                };
                let _ = write!(out, "{} ", r.oif);
                let _ = match r.metric {
                    Some(m) => write!(out, "{m} "),
                    None => write!(out, "- "),
                };
                write!(out, "{} {} {}", r.table, r.protocol, r.onlink as u8)
            }
            Undo::DelAddr(a) => write!(out, "addr {} {} {}", a.ifindex, a.addr, a.prefix),
            Undo::DelRule(r) => write!(out, "{}", r.to_line()),
            Undo::LinkDown { ifindex } => write!(out, "down {ifindex}"),
            Undo::DelLink { ifindex, name } => write!(out, "link {ifindex} {name}"),
            Undo::DelNewLink { name, kind } => write!(out, "newlink {kind} {name}"),
        };
    }

    /// Parses a `to_line` line; None for anything malformed.
    pub fn parse(line: &str) -> Option<Undo> {
        let f: Vec<&str> = line.split(' ').collect();
        fn opt(s: &str) -> Option<&str> {
            (s != "-").then_some(s)
        }
        Some(match f.as_slice() {
            ["route", dst, gw, oif, metric, table, proto, onlink] => Undo::DelRoute(Route {
                dst: dst.parse().ok()?,
                gateway: match opt(gw) {
                    Some(g) => Some(g.parse::<IpAddr>().ok()?),
                    None => None,
                },
                oif: oif.parse().ok()?,
                metric: match opt(metric) {
                    Some(m) => Some(m.parse().ok()?),
                    None => None,
                },
                table: table.parse().ok()?,
                protocol: proto.parse().ok()?,
                onlink: *onlink == "1",
            }),
            ["addr", ifindex, addr, prefix] => Undo::DelAddr(Addr {
                ifindex: ifindex.parse().ok()?,
                addr: addr.parse().ok()?,
                prefix: prefix.parse().ok()?,
            }),
            ["rule", ..] => Undo::DelRule(Rule::parse(&f)?),
            ["down", ifindex] => Undo::LinkDown { ifindex: ifindex.parse().ok()? },
            ["link", ifindex, name] if !name.is_empty() && name.len() < 16 => {
                Undo::DelLink { ifindex: ifindex.parse().ok()?, name: name.to_string() }
            }
            ["newlink", kind, name] if !kind.is_empty() && !name.is_empty() && name.len() < 16 => {
                Undo::DelNewLink { name: name.to_string(), kind: kind.to_string() }
            }
            _ => return None,
        })
    }
}

/// One journal entry: its id in the write-ahead file and the undo step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub undo: Undo,
}

#[derive(Debug, Default, Clone)]
pub struct Journal {
    entries: Vec<Entry>,
}

impl Journal {
    pub fn push(&mut self, e: Entry) {
        self.entries.push(e);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Removes and returns every entry, newest first.
    pub fn take_all(&mut self) -> Vec<Entry> {
        let mut v = std::mem::take(&mut self.entries);
        v.reverse();
        v
    }

    /// Removes and returns the configuration entries (not link deletions),
    /// newest first; links stay recorded for a later Destroy.
    pub fn take_config(&mut self) -> Vec<Entry> {
        let (links, mut cfg): (Vec<Entry>, Vec<Entry>) =
            std::mem::take(&mut self.entries).into_iter().partition(|e| e.undo.is_link());
        self.entries = links;
        cfg.reverse();
        cfg
    }

    /// Drops entries about a link that no longer exists: the kernel removed
    /// its routes and addresses with it (routes elsewhere stay recorded).
    pub fn forget_link(&mut self, ifindex: u32) -> Vec<Entry> {
        let (gone, keep): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries).into_iter().partition(|e| {
            matches!(&e.undo,
                Undo::DelRoute(r) if r.oif == ifindex)
                || matches!(&e.undo, Undo::DelAddr(a) if a.ifindex == ifindex)
                || matches!(&e.undo, Undo::LinkDown { ifindex: i } | Undo::DelLink { ifindex: i, .. } if *i == ifindex)
        });
        self.entries = keep;
        gone
    }
}

/// The write-ahead file: `B <boot id>` header, then `A <id> <undo>` before a
/// change, `D <id>` once it is undone (or turned out not to be ours).
pub struct Wal {
    path: Option<PathBuf>,
    file: Option<File>,
    /// Bytes of whole lines in the file (a failed write is cut back to it).
    len: u64,
    next: u64,
    live: usize,
    /// `D` lines since the file was last rewritten.
    dead: usize,
    compact_after: usize,
}

/// Rewrite the file once it holds this many finished entries, and more
/// than twice as many as live ones (a long session beside many short ones
/// would otherwise grow it without bound).
const COMPACT_AFTER: usize = 4096;

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

impl Wal {
    /// A journal that is not persisted (tests, or no usable state dir).
    pub fn memory() -> Wal {
        Wal { path: None, file: None, len: 0, next: 1, live: 0, dead: 0, compact_after: COMPACT_AFTER }
    }

    /// Reads `<dir>/journal`: returns the entries a previous run left live
    /// (newest first) when it ran in this boot. The file stays as it is
    /// until `start`, so a crash while they are undone loses none of them
    /// (undoing twice is harmless).
    pub fn open(dir: &Path) -> (Wal, Vec<Undo>) {
        let path = dir.join("journal");
        let mut leftover = Vec::new();
        if let Ok(f) = File::open(&path) {
            let mut live: Vec<(u64, Undo)> = Vec::new();
            let mut same_boot = false;
            for line in BufReader::new(f).lines().map_while(std::result::Result::ok).take(2_000_000) {
                let (tag, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                match tag {
                    "B" => same_boot = rest == boot_id(),
                    "A" => {
                        if let Some((id, u)) = rest.split_once(' ') {
                            if let (Ok(id), Some(u)) = (id.parse(), Undo::parse(u)) {
                                live.push((id, u));
                            }
                        }
                    }
                    "D" => {
                        if let Ok(id) = rest.parse::<u64>() {
                            live.retain(|(i, _)| *i != id);
                        }
                    }
                    _ => {}
                }
            }
            if same_boot {
                leftover = live.into_iter().rev().map(|(_, u)| u).collect();
            } else if !live.is_empty() {
                log::info!("journal {} is from an earlier boot; nothing of it is left in the kernel", path.display());
            }
        }
        (
            Wal { path: Some(path), file: None, len: 0, next: 1, live: 0, dead: 0, compact_after: COMPACT_AFTER },
            leftover,
        )
    }

    /// Starts a fresh file (after the leftovers are undone). If the state
    /// directory cannot be written, crash recovery is off, and logged.
    pub fn start(&mut self) {
        self.rewrite(&[]);
    }

    /// Replaces the file by one holding only `live` (atomically: a crash
    /// leaves the old or the new file, both complete).
    fn rewrite(&mut self, live: &[&Entry]) {
        let Some(path) = self.path.clone() else { return };
        let tmp = path.with_extension("new");
        let mut text = format!("B {}\n", boot_id());
        for e in live {
            append_line(&mut text, e);
        }
        let done = OpenOptions::new().create(true).write(true).truncate(true).open(&tmp).and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(f)
        });
        match done {
            Ok(f) => {
                self.file = Some(f);
                self.len = text.len() as u64;
                self.live = live.len();
                self.dead = 0;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                if self.file.is_none() {
                    log::warn!("cannot write the journal {}: {e}; crash recovery is off", path.display());
                    self.path = None;
                } else {
                    // The old file is still complete and in use.
                    log::warn!("cannot compact the journal {}: {e}", path.display());
                }
            }
        }
    }

    /// Records `undos` (one id each) and syncs before the caller touches the
    /// kernel. If that fails the caller must not make the change: a crash
    /// would leave it behind with nothing to undo it.
    pub fn record(&mut self, undos: Vec<Undo>) -> Result<Vec<Entry>> {
        let first = self.next;
        let entries: Vec<Entry> = undos.into_iter().zip(first..).map(|(undo, id)| Entry { id, undo }).collect();
        if let Some(f) = &mut self.file {
            let mut buf = String::with_capacity(entries.len() * 64);
            for e in &entries {
                append_line(&mut buf, e);
            }
            if let Err(e) = f.write_all(buf.as_bytes()).and_then(|_| f.sync_data()) {
                // Cut a partial line off, so the next record starts clean.
                let _ = f.set_len(self.len).and_then(|_| f.seek(SeekFrom::Start(self.len)));
                return Err(Error::Failed(format!("cannot write the undo journal, so nothing was changed: {e}")));
            }
            self.len += buf.len() as u64;
        }
        self.next += entries.len() as u64;
        self.live += entries.len();
        Ok(entries)
    }

    /// Marks entries as no longer needing undo; starts afresh when nothing
    /// is live. A lost `D` line only means a harmless second undo.
    pub fn done(&mut self, ids: impl IntoIterator<Item = u64>) {
        let mut buf = String::new();
        for id in ids {
            use std::fmt::Write;
            let _ = writeln!(buf, "D {id}");
            self.live = self.live.saturating_sub(1);
            self.dead += 1;
        }
        if self.live == 0 {
            if self.dead > 0 {
                self.start();
            }
        } else if let Some(f) = &mut self.file {
            if f.write_all(buf.as_bytes()).is_ok() {
                self.len += buf.len() as u64;
            } else {
                let _ = f.set_len(self.len).and_then(|_| f.seek(SeekFrom::Start(self.len)));
            }
        }
    }

    /// Whether the file is mostly finished entries (see `compact`).
    pub fn wants_compaction(&self) -> bool {
        self.file.is_some() && self.dead >= self.compact_after && self.dead > 2 * self.live
    }

    /// Rewrites the file with only `live`, which must be every entry not yet
    /// undone (the daemon's journals together).
    pub fn compact(&mut self, live: &[&Entry]) {
        if live.len() != self.live {
            // Something holds entries the caller did not list: keep them all.
            log::warn!("journal compaction skipped: {} live entries known, {} given", self.live, live.len());
            self.dead = 0;
            return;
        }
        let before = self.len;
        self.rewrite(live);
        log::debug!("journal compacted: {before} -> {} bytes, {} live entries", self.len, live.len());
    }
}

fn append_line(buf: &mut String, e: &Entry) {
    use std::fmt::Write;
    let _ = write!(buf, "A {} ", e.id);
    e.undo.write_line(buf);
    buf.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: u64, undo: Undo) -> Entry {
        Entry { id, undo }
    }

    #[test]
    fn config_undo_keeps_links_and_reverses() {
        let mut j = Journal::default();
        j.push(e(1, Undo::DelLink { ifindex: 5, name: "tun0".into() }));
        j.push(e(2, Undo::LinkDown { ifindex: 5 }));
        j.push(e(3, Undo::DelAddr(Addr { ifindex: 5, addr: "10.0.0.2".parse().unwrap(), prefix: 24 })));
        let c = j.take_config();
        assert!(matches!(c[0].undo, Undo::DelAddr(_)));
        assert_eq!(c[1].undo, Undo::LinkDown { ifindex: 5 });
        assert_eq!(j.len(), 1);
        assert!(j.take_all()[0].undo.is_link());
        assert!(j.is_empty());
    }

    #[test]
    fn lines_round_trip() {
        let r = Route {
            dst: "2001:db8::/32".parse().unwrap(),
            gateway: Some("fe80::1".parse().unwrap()),
            oif: 3,
            metric: None,
            table: 254,
            protocol: 79,
            onlink: true,
        };
        for u in [
            Undo::DelRoute(r),
            Undo::DelAddr(Addr { ifindex: 4, addr: "10.0.0.2".parse().unwrap(), prefix: 24 }),
            Undo::LinkDown { ifindex: 9 },
            Undo::DelLink { ifindex: 9, name: "tun3".into() },
            Undo::DelNewLink { name: "dco0".into(), kind: "ovpn-dco-v2".into() },
        ] {
            assert_eq!(Undo::parse(&u.to_line()), Some(u.clone()), "{}", u.to_line());
        }
        for bad in [
            "",
            "route",
            "addr x y z",
            "link 1 ",
            "link 1 aaaaaaaaaaaaaaaaaaaa",
            "route 1.2.3.4/40 - 1 - 254 79 0",
            "newlink ovpn",
            "newlink  dco0",
        ] {
            assert_eq!(Undo::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn wal_returns_live_entries_newest_first() {
        let dir = std::env::temp_dir().join(format!("wal-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut w, left) = Wal::open(&dir);
        assert!(left.is_empty());
        w.start();
        let es = w
            .record(vec![Undo::LinkDown { ifindex: 1 }, Undo::LinkDown { ifindex: 2 }, Undo::LinkDown { ifindex: 3 }])
            .unwrap();
        w.done([es[1].id]);
        drop(w); // a crash: nothing more is written
        let (_w, left) = Wal::open(&dir);
        assert_eq!(left, vec![Undo::LinkDown { ifindex: 3 }, Undo::LinkDown { ifindex: 1 }]);
        // A crash while they are undone: the next run finds them all again.
        let (mut w, again) = Wal::open(&dir);
        assert_eq!(again, left);
        w.start();
        let (_w, left) = Wal::open(&dir);
        assert!(left.is_empty(), "a fresh file after recovery");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failed_write_refuses_the_change_and_leaves_no_partial_line() {
        let dir = temp_dir("full");
        let (mut w, _) = Wal::open(&dir);
        w.start();
        let kept = w.record(vec![Undo::LinkDown { ifindex: 1 }]).unwrap();
        let good = w.file.take();
        w.file = Some(OpenOptions::new().write(true).open("/dev/full").unwrap());
        assert!(w.record(vec![Undo::LinkDown { ifindex: 2 }]).is_err());
        assert_eq!(w.live, 1, "nothing counted for the refused change");
        w.file = good;
        let next = w.record(vec![Undo::LinkDown { ifindex: 3 }]).unwrap();
        assert_eq!(next[0].id, kept[0].id + 1, "ids stay dense");
        drop(w);
        let (_w, left) = Wal::open(&dir);
        assert_eq!(left, vec![Undo::LinkDown { ifindex: 3 }, Undo::LinkDown { ifindex: 1 }]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compaction_keeps_exactly_the_live_entries_and_bounds_the_file() {
        let dir = temp_dir("compact");
        let (mut w, _) = Wal::open(&dir);
        w.compact_after = 200;
        w.start();
        let long = w.record(vec![Undo::LinkDown { ifindex: 7 }]).unwrap();
        let mut size_at_compaction = 0;
        for round in 0..3 {
            while !w.wants_compaction() {
                let es = w.record(vec![Undo::LinkDown { ifindex: 8 }, Undo::LinkDown { ifindex: 9 }]).unwrap();
                w.done(es.iter().map(|e| e.id));
            }
            let size = std::fs::metadata(dir.join("journal")).unwrap().len();
            assert!(round == 0 || size <= size_at_compaction * 11 / 10, "the file does not grow from round to round");
            size_at_compaction = size;
            // A caller that forgets an entry gets no compaction.
            w.compact(&[]);
            assert_eq!(std::fs::metadata(dir.join("journal")).unwrap().len(), size);
            while !w.wants_compaction() {
                let es = w.record(vec![Undo::LinkDown { ifindex: 8 }]).unwrap();
                w.done(es.iter().map(|e| e.id));
            }
            w.compact(&long.iter().collect::<Vec<_>>());
            assert!(std::fs::metadata(dir.join("journal")).unwrap().len() < 100);
        }
        // Still appendable, and a crash now leaves the long entry and the new one.
        let late = w.record(vec![Undo::LinkDown { ifindex: 10 }]).unwrap();
        w.done([late[0].id]);
        let late = w.record(vec![Undo::LinkDown { ifindex: 11 }]).unwrap();
        drop(w);
        let (_w, left) = Wal::open(&dir);
        assert_eq!(left, vec![late[0].undo.clone(), long[0].undo.clone()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
