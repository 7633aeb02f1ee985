//! The undo journal: every kernel change we make is recorded with its
//! inverse, so Disable, Destroy, client death and shutdown undo exactly
//! what was done, in reverse order, and nothing else.
//!
//! The same records go to a write-ahead file in the state directory
//! (`Wal`), written before the kernel is touched, so a restarted daemon can
//! undo what a killed one left behind. They are not fsync'd: what they
//! undo (routes, addresses, links) does not outlive the boot, only the
//! same boot's file is replayed, and a daemon that dies leaves its writes
//! in the page cache, where the next one reads them.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

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
                Req { ok_errnos: netlink::OK_DEL, ..netlink::link::set(*ifindex, None, None, false) }
            }
            Undo::DelLink { ifindex, .. } => netlink::link::del(*ifindex),
            Undo::DelNewLink { name, .. } => netlink::link::del_by_name(name),
        }
    }

    pub fn is_link(&self) -> bool {
        matches!(self, Undo::DelLink { .. } | Undo::DelNewLink { .. })
    }

    /// Parses a line as `Display` writes it; None for anything malformed.
    pub fn parse(line: &str) -> Option<Undo> {
        let f: Vec<&str> = line.split(' ').collect();
        Some(match f.as_slice() {
            ["route", dst, gw, oif, metric, table, proto, onlink] => Undo::DelRoute(Route {
                dst: dst.parse().ok()?,
                gateway: dash(gw)?,
                oif: oif.parse().ok()?,
                metric: dash(metric)?,
                table: table.parse().ok()?,
                protocol: proto.parse().ok()?,
                onlink: *onlink == "1",
            }),
            ["addr", ifindex, addr, prefix] => Undo::DelAddr(Addr {
                ifindex: ifindex.parse().ok()?,
                addr: addr.parse().ok()?,
                prefix: prefix.parse().ok()?,
            }),
            ["rule", v @ ("4" | "6"), priority, fwmark, table, proto] => Undo::DelRule(Rule {
                ipv6: *v == "6",
                priority: priority.parse().ok()?,
                fwmark: fwmark.parse().ok()?,
                table: table.parse().ok()?,
                protocol: proto.parse().ok()?,
            }),
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

/// One line of text (no newline), read back by `parse`; written straight
/// into the journal's buffer (no allocation per entry: it writes 10k of
/// these before a large Establish).
impl fmt::Display for Undo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undo::DelRoute(Route { dst, gateway: g, oif, metric: m, table, protocol, onlink }) => {
                write!(f, "route {dst} {} {oif} {} {table} {protocol} {}", Dash(*g), Dash(*m), *onlink as u8)
            }
            Undo::DelAddr(a) => write!(f, "addr {} {} {}", a.ifindex, a.addr, a.prefix),
            Undo::DelRule(Rule { ipv6, priority, fwmark, table, protocol }) => {
                write!(f, "rule {} {priority} {fwmark} {table} {protocol}", if *ipv6 { 6 } else { 4 })
            }
            Undo::LinkDown { ifindex } => write!(f, "down {ifindex}"),
            Undo::DelLink { ifindex, name } => write!(f, "link {ifindex} {name}"),
            Undo::DelNewLink { name, kind } => write!(f, "newlink {kind} {name}"),
        }
    }
}

/// An optional field as a line has it: `-` for none.
struct Dash<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Dash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Reads a `Dash` field; None if it is neither `-` nor a `T`.
fn dash<T: std::str::FromStr>(s: &str) -> Option<Option<T>> {
    (s == "-").then_some(None).or_else(|| s.parse().ok().map(Some))
}

/// One journal entry: its id in the write-ahead file and the undo step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub undo: Undo,
}

/// The undo entries of one holder (a device, the fwmark rules), oldest first.
#[derive(Debug, Default, Clone)]
pub struct Journal {
    pub entries: Vec<Entry>,
}

impl Journal {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes and returns every entry, newest first.
    pub fn take_all(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries).into_iter().rev().collect()
    }

    /// Removes and returns the configuration entries (not link deletions),
    /// newest first; links stay recorded for a later Destroy.
    pub fn take_config(&mut self) -> Vec<Entry> {
        let (links, cfg): (Vec<Entry>, Vec<Entry>) =
            std::mem::take(&mut self.entries).into_iter().partition(|e| e.undo.is_link());
        self.entries = links;
        cfg.into_iter().rev().collect()
    }
}

/// The write-ahead file: `B <boot id> <generation>` header, then
/// `A <id> <undo>` before a change, `D <id>` once it is undone (or turned
/// out not to be ours).
///
/// Two files, opened as root at start-up and kept open, so the daemon never
/// needs to create or rename anything in its state directory (which may be
/// root's). A rewrite goes to the file not in use, with generation 0 in its
/// header until it is complete; then the real generation is
/// written in place. Loading takes the complete file of the highest
/// generation, so a crash mid-rewrite leaves the old file in force.
pub struct Wal {
    files: Option<[File; 2]>,
    /// The file appended to (the one in force).
    active: usize,
    generation: u64,
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
/// Lines and bytes read from a journal file at most.
const MAX_LINES: usize = 2_000_000;
const MAX_BYTES: u64 = 256 << 20;
/// Width of the generation field, so it can be written in place.
const GEN_WIDTH: usize = 20;

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// A journal file's content: its boot id, generation (0: incomplete) and
/// the entries still live, oldest first. Linear in the number of lines.
pub fn parse_file(text: &str) -> (String, u64, Vec<Undo>) {
    let mut boot = String::new();
    let mut generation = 0;
    let mut live: Vec<Option<Undo>> = Vec::new();
    let mut by_id: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for (n, line) in text.lines().take(MAX_LINES).enumerate() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            // Only the first line is a header: a `B` further down is garbage.
            "B" if n == 0 => {
                let mut f = rest.split(' ');
                boot = f.next().unwrap_or_default().to_string();
                // An old file has no generation: complete by construction.
                generation = f.next().map_or(1, |g| g.parse().unwrap_or(0));
            }
            "A" => {
                let entry = rest.split_once(' ').and_then(|(id, u)| Some((id.parse::<u64>().ok()?, Undo::parse(u)?)));
                if let Some((id, u)) = entry {
                    if let Some(old) = by_id.insert(id, live.len()) {
                        live[old] = None; // a repeated id: the later line wins
                    }
                    live.push(Some(u));
                }
            }
            "D" => {
                if let Some(i) = rest.parse::<u64>().ok().and_then(|id| by_id.remove(&id)) {
                    live[i] = None;
                }
            }
            _ => {}
        }
    }
    (boot, generation, live.into_iter().flatten().collect())
}

impl Wal {
    /// A journal that is not persisted (tests and benches).
    pub fn memory() -> Wal {
        Wal { files: None, active: 0, generation: 0, len: 0, next: 1, live: 0, dead: 0, compact_after: COMPACT_AFTER }
    }

    /// Reads the two journal files (opened by `state::prepare`): returns
    /// the entries a previous run left live (newest first) when it ran in
    /// this boot. The files stay as they are until `start`, so a crash while
    /// they are undone loses none of them (undoing twice is harmless).
    pub fn open(mut files: [File; 2]) -> (Wal, Vec<Undo>) {
        let [a, b] = files.each_mut().map(|f| {
            let mut v = Vec::new();
            let _ = f.seek(SeekFrom::Start(0)).and_then(|_| f.take(MAX_BYTES).read_to_end(&mut v));
            parse_file(&String::from_utf8_lossy(&v))
        });
        let active = usize::from(b.1 > a.1);
        let (boot, generation, live) = if active == 0 { a } else { b };
        let mut leftover = Vec::new();
        if generation > 0 && boot == boot_id() {
            leftover = live.into_iter().rev().collect();
        } else if !live.is_empty() {
            log::info!("the journal is from an earlier boot; nothing of it is left in the kernel");
        }
        (Wal { files: Some(files), active, generation, ..Wal::memory() }, leftover)
    }

    /// Starts a fresh file (after the leftovers are undone). An error here
    /// means crash recovery would not work: start-up fails.
    pub fn start(&mut self) -> Result<()> {
        self.rewrite(&[]).map_err(|e| Error::failed(format!("cannot write the undo journal: {e}")))
    }

    /// Replaces the file in force by one holding only `live` (see `Wal`).
    fn rewrite(&mut self, live: &[&Entry]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let Some(files) = &mut self.files else { return Ok(()) };
        let target = 1 - self.active;
        let generation = self.generation + 1;
        let mut text = format!("B {} {:0w$}\n", boot_id(), 0, w = GEN_WIDTH);
        let gen_at = (text.len() - 1 - GEN_WIDTH) as u64;
        append_lines(&mut text, live.iter().copied());
        let f = &mut files[target];
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(text.as_bytes())?;
        // Not fsync'd (see the module doc): the page cache orders these
        // writes for the next reader, and a sync would hold the loop on the disk.
        f.write_all_at(format!("{generation:0w$}", w = GEN_WIDTH).as_bytes(), gen_at)?;
        // The new file is in force; the old one is cleared (were that lost,
        // the higher generation still wins).
        let _ = files[self.active].set_len(0);
        self.active = target;
        self.generation = generation;
        self.len = text.len() as u64;
        self.live = live.len();
        self.dead = 0;
        Ok(())
    }

    /// Appends whole lines to the file in force; a failed write is cut
    /// back, so the next one starts clean.
    fn append(&mut self, text: &str) -> std::io::Result<()> {
        let Some(files) = &mut self.files else { return Ok(()) };
        let f = &mut files[self.active];
        if let Err(e) = f.write_all(text.as_bytes()) {
            let _ = f.set_len(self.len).and_then(|_| f.seek(SeekFrom::Start(self.len)));
            return Err(e);
        }
        self.len += text.len() as u64;
        Ok(())
    }

    /// Records `undos` (one id each) before the caller touches the kernel.
    /// If that fails the caller must not make the change: a crash would
    /// leave it behind with nothing to undo it.
    pub fn record(&mut self, undos: Vec<Undo>) -> Result<Vec<Entry>> {
        let entries: Vec<Entry> = undos.into_iter().zip(self.next..).map(|(undo, id)| Entry { id, undo }).collect();
        if self.files.is_some() {
            let mut buf = String::with_capacity(entries.len() * 64);
            append_lines(&mut buf, &entries);
            self.append(&buf)
                .map_err(|e| Error::failed(format!("cannot write the undo journal, so nothing was changed: {e}")))?;
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
            let _ = writeln!(buf, "D {id}");
            self.live = self.live.saturating_sub(1);
            self.dead += 1;
        }
        if self.live > 0 {
            let _ = self.append(&buf);
        } else if self.dead > 0 {
            if let Err(e) = self.rewrite(&[]) {
                log::warn!("cannot start a fresh journal: {e}");
            }
        }
    }

    /// Whether the file is mostly finished entries (see `compact`).
    pub fn wants_compaction(&self) -> bool {
        self.files.is_some() && self.dead >= self.compact_after && self.dead > 2 * self.live
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
        match self.rewrite(live) {
            Ok(()) => log::debug!("journal compacted: {before} -> {} bytes, {} live entries", self.len, live.len()),
            Err(e) => {
                // The old file is still complete and in force.
                log::warn!("cannot compact the journal: {e}");
                self.dead = 0;
            }
        }
    }
}

/// Appends an `A` line to `buf` for each entry.
fn append_lines<'a>(buf: &mut String, entries: impl IntoIterator<Item = &'a Entry>) {
    for e in entries {
        let _ = writeln!(buf, "A {} {}", e.id, e.undo);
    }
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
        j.entries.push(e(1, Undo::DelLink { ifindex: 5, name: "tun0".into() }));
        j.entries.push(e(2, Undo::LinkDown { ifindex: 5 }));
        j.entries.push(e(3, Undo::DelAddr(Addr { ifindex: 5, addr: "10.0.0.2".parse().unwrap(), prefix: 24 })));
        let c = j.take_config();
        assert!(matches!(c[0].undo, Undo::DelAddr(_)));
        assert_eq!(c[1].undo, Undo::LinkDown { ifindex: 5 });
        assert_eq!(j.entries.len(), 1);
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
            Undo::DelRoute(r.clone()),
            Undo::DelAddr(Addr { ifindex: 4, addr: "10.0.0.2".parse().unwrap(), prefix: 24 }),
            Undo::LinkDown { ifindex: 9 },
            Undo::DelLink { ifindex: 9, name: "tun3".into() },
            Undo::DelNewLink { name: "dco0".into(), kind: "ovpn-dco-v2".into() },
        ] {
            assert_eq!(Undo::parse(&u.to_string()), Some(u.clone()), "{u}");
        }
        // The format on disk, as earlier versions wrote it.
        let r = Route { metric: Some(7), ..r };
        assert_eq!(Undo::DelRoute(r.clone()).to_string(), "route 2001:db8::/32 fe80::1 3 7 254 79 1");
        let r = Route { gateway: None, metric: None, onlink: false, ..r };
        assert_eq!(Undo::DelRoute(r).to_string(), "route 2001:db8::/32 - 3 - 254 79 0");
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

    use std::path::{Path, PathBuf};

    fn files(dir: &Path) -> [File; 2] {
        let o = |n: &str| {
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(n)).unwrap()
        };
        [o("journal"), o("journal.alt")]
    }

    fn open(dir: &Path) -> (Wal, Vec<Undo>) {
        Wal::open(files(dir))
    }

    /// Bytes in both files together.
    fn file_bytes(dir: &Path) -> u64 {
        ["journal", "journal.alt"].iter().map(|n| std::fs::metadata(dir.join(n)).unwrap().len()).sum()
    }

    #[test]
    fn wal_returns_live_entries_newest_first() {
        let dir = temp_dir("order");
        let (mut w, left) = open(&dir);
        assert!(left.is_empty());
        w.start().unwrap();
        let es = w
            .record(vec![Undo::LinkDown { ifindex: 1 }, Undo::LinkDown { ifindex: 2 }, Undo::LinkDown { ifindex: 3 }])
            .unwrap();
        w.done([es[1].id]);
        drop(w); // a crash: nothing more is written
        let (_w, left) = open(&dir);
        assert_eq!(left, vec![Undo::LinkDown { ifindex: 3 }, Undo::LinkDown { ifindex: 1 }]);
        // A crash while they are undone: the next run finds them all again.
        let (mut w, again) = open(&dir);
        assert_eq!(again, left);
        w.start().unwrap();
        let (_w, left) = open(&dir);
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
    fn an_incomplete_rewrite_leaves_the_old_file_in_force() {
        let dir = temp_dir("gen");
        let (mut w, _) = open(&dir);
        w.start().unwrap();
        w.record(vec![Undo::LinkDown { ifindex: 4 }]).unwrap();
        let in_force = if w.active == 0 { "journal" } else { "journal.alt" };
        let other = if w.active == 0 { "journal.alt" } else { "journal" };
        drop(w);
        // A rewrite that died before its generation was written.
        let boot = boot_id();
        std::fs::write(dir.join(other), format!("B {boot} {:020}\nA 9 down 9\n", 0)).unwrap();
        let (_w, left) = open(&dir);
        assert_eq!(
            left,
            vec![Undo::LinkDown { ifindex: 4 }],
            "{}",
            std::fs::read_to_string(dir.join(in_force)).unwrap()
        );
        // A complete one of a higher generation wins.
        std::fs::write(dir.join(other), format!("B {boot} {:020}\nA 9 down 9\n", 99)).unwrap();
        let (w, left) = open(&dir);
        assert_eq!(left, vec![Undo::LinkDown { ifindex: 9 }]);
        assert_eq!(w.generation, 99);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_long_journal_loads_to_its_live_entries() {
        let mut text = format!("B {} 1\n", boot_id());
        let n = 200_000u64;
        for id in 1..=n {
            text.push_str(&format!("A {id} down {id}\n"));
        }
        for id in 1..n {
            text.push_str(&format!("D {id}\n"));
        }
        // How long it takes is a `make bench` figure (journal load).
        let (_, generation, live) = parse_file(&text);
        assert_eq!((generation, live), (1, vec![Undo::LinkDown { ifindex: n as u32 }]));
    }

    #[test]
    fn a_failed_write_refuses_the_change_and_leaves_no_partial_line() {
        let dir = temp_dir("full");
        let (mut w, _) = open(&dir);
        w.start().unwrap();
        let kept = w.record(vec![Undo::LinkDown { ifindex: 1 }]).unwrap();
        let good = w.files.take();
        let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        w.files = Some([full(), full()]);
        assert!(w.record(vec![Undo::LinkDown { ifindex: 2 }]).is_err());
        assert_eq!(w.live, 1, "nothing counted for the refused change");
        w.files = good;
        let next = w.record(vec![Undo::LinkDown { ifindex: 3 }]).unwrap();
        assert_eq!(next[0].id, kept[0].id + 1, "ids stay dense");
        drop(w);
        let (_w, left) = open(&dir);
        assert_eq!(left, vec![Undo::LinkDown { ifindex: 3 }, Undo::LinkDown { ifindex: 1 }]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compaction_keeps_exactly_the_live_entries_and_bounds_the_file() {
        let dir = temp_dir("compact");
        let (mut w, _) = open(&dir);
        w.compact_after = 200;
        w.start().unwrap();
        let long = w.record(vec![Undo::LinkDown { ifindex: 7 }]).unwrap();
        let mut size_at_compaction = 0;
        for round in 0..3 {
            while !w.wants_compaction() {
                let es = w.record(vec![Undo::LinkDown { ifindex: 8 }, Undo::LinkDown { ifindex: 9 }]).unwrap();
                w.done(es.iter().map(|e| e.id));
            }
            let size = file_bytes(&dir);
            assert!(round == 0 || size <= size_at_compaction * 11 / 10, "the file does not grow from round to round");
            size_at_compaction = size;
            // A caller that forgets an entry gets no compaction.
            w.compact(&[]);
            assert_eq!(file_bytes(&dir), size);
            while !w.wants_compaction() {
                let es = w.record(vec![Undo::LinkDown { ifindex: 8 }]).unwrap();
                w.done(es.iter().map(|e| e.id));
            }
            w.compact(&long.iter().collect::<Vec<_>>());
            assert!(file_bytes(&dir) < 100);
        }
        // Still appendable, and a crash now leaves the long entry and the new one.
        let late = w.record(vec![Undo::LinkDown { ifindex: 10 }]).unwrap();
        w.done([late[0].id]);
        let late = w.record(vec![Undo::LinkDown { ifindex: 11 }]).unwrap();
        drop(w);
        let (_w, left) = open(&dir);
        assert_eq!(left, vec![late[0].undo.clone(), long[0].undo.clone()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
