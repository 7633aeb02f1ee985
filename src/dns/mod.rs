//! DNS: one `Dns` front that the daemon calls with the complete list of
//! sessions whenever something DNS-related changes. It picks a backend at
//! start-up, hands it the sessions that have DNS settings (newest first),
//! and turns the difference to what was applied before into NetworkChange
//! events.
//!
//! Backends (one small trait, `Backend`):
//! * `resolved`: systemd-resolved over D-Bus, per-link, asynchronous;
//! * `dnsmasq`: a servers file that dnsmasq reads again on SIGHUP (routers);
//! * `resolvconf`: the resolvconf(8) program (openresolv or compatible);
//! * `file`: rewriting resolv.conf ourselves, with a crash-safe backup.
//!
//! The choice is made at run time and a missing backend is never fatal.

mod backup;
mod dnsmasq;
mod file;
mod resolvconf;
mod resolved;

use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Instant;

use dbus::Message;

use crate::config::DnsChoice;
use crate::conn::Bus;
use crate::error::Result;
use crate::events::{self, Event};
use crate::settings::{DnsScope, DnsSec, DnsTransport};

/// The resolv.conf backup from its files' bytes (a fuzz entry point).
#[cfg(any(test, feature = "fuzz"))]
pub(crate) fn parse_resolv_conf_backup(meta: &[u8], orig: Vec<u8>) -> Result<std::path::PathBuf> {
    backup::parse("file", meta, orig, None).map(|(p, _)| p)
}

/// One device's DNS wishes, as the daemon sees them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Device object path (the sender path of its NetworkChange events).
    pub path: String,
    /// Kernel interface name and index of the established link.
    pub ifname: String,
    pub ifindex: u32,
    /// Creation order; newer sessions take precedence.
    pub order: u64,
    pub servers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub dnssec: DnsSec,
    pub transport: DnsTransport,
    pub scope: DnsScope,
}

impl Session {
    fn has_dns(&self) -> bool {
        !self.servers.is_empty() || !self.search.is_empty()
    }
}

/// A NetworkChange to send: (object path, device name, event).
pub type Change = (String, String, Event);

/// What every backend does. `apply` always gets the complete wanted state,
/// so a backend never has to remember why something changed.
pub trait Backend {
    /// Makes the system use `sessions` (newest first; each has at least a
    /// server or a search domain). An empty list means "put everything
    /// back". Err: not (completely) applied; the next update tries again.
    fn apply(&mut self, bus: &Bus, sessions: &[Session]) -> Result<()>;
    /// A method return or error for one of our asynchronous calls?
    fn on_reply(&mut self, _bus: &Bus, _m: &Message) -> bool {
        false
    }
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// The ifindexes whose settings the backend failed to apply for good
    /// (resolved refused, or never answered); `apply` sends them again.
    fn failed(&self) -> Vec<u32> {
        Vec::new()
    }
    /// A well-known bus name changed owner ("" = it left the bus).
    fn on_name_owner(&mut self, _bus: &Bus, _name: &str, _new_owner: &str) {}
    /// Called after `apply(&[])` at exit; false if something was not restored.
    fn shutdown(&mut self, _bus: &Bus) -> bool {
        true
    }
    /// The fd of a busy apply, which the loop polls: readable when it can
    /// progress. Busy: `apply` returned Ok with work left (resolvconf's
    /// child); its result comes from `progress` or `settle`, and no `apply`
    /// is made meanwhile.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Called when the fd is readable or the deadline has passed: moves on
    /// what is due (retries, call timeouts) or a busy apply; Some(result)
    /// once a busy apply has finished.
    fn progress(&mut self, _bus: &Bus) -> Option<Result<()>> {
        None
    }
    /// Waits (bounded by the backend's time limits) for a busy apply.
    fn settle(&mut self) -> Result<()> {
        Ok(())
    }
}

pub struct Dns {
    name: &'static str,
    backend: Option<Box<dyn Backend>>,
    /// `<state dir>/dns`: backups and records for crash recovery.
    dir: crate::state::Dir,
    /// The sessions the backend last applied, newest first.
    applied: Vec<Session>,
    /// The last apply failed, maybe halfway: the system may hold neither
    /// `applied` nor what was wanted, so even an unchanged state is applied.
    retry: bool,
    /// What a busy backend is applying, and the latest state wanted since:
    /// each apply is the complete state, so only the latest needs to wait.
    pending: Option<Vec<Session>>,
    queued: Option<Vec<Session>>,
}

impl Dns {
    /// No backend until `start`. Changes nothing on the system.
    pub fn new(dir: crate::state::Dir) -> Dns {
        Dns { name: "none", backend: None, dir, applied: Vec::new(), retry: false, pending: None, queued: None }
    }

    pub fn backend_name(&self) -> &'static str {
        self.name
    }

    /// Undoes what a previous run left behind when it did not exit cleanly
    /// (killed, crashed, power loss), then chooses the backend (never
    /// fatal: falls back and logs). Recovery first, so that `auto` judges
    /// the system's resolv.conf, not one a killed run generated. Call only
    /// once no other instance owns the bus name, so a second instance never
    /// undoes the live one's work. `cfg.dnsmasq_servers`: the servers file
    /// the dnsmasq backend writes (and `auto` looks for).
    pub fn start(&mut self, cfg: &crate::config::Config, bus: &Bus) {
        let (choice, servers) = (&cfg.dns, &cfg.dnsmasq_servers);
        let configured = if let DnsChoice::File(p) = choice { p.as_path() } else { Path::new(file::DEFAULT_PATH) };
        backup::recover(&file::KIND, &self.dir, configured);
        resolvconf::recover(&self.dir);
        dnsmasq::recover(&self.dir, servers);
        (self.name, self.backend) = choose(choice, bus, &self.dir, servers);
    }

    /// Applies the full set of active sessions (ones with an established
    /// link); returns the NetworkChange events for what really changed.
    /// While the backend is busy, the state waits for it (`service`).
    pub fn update(&mut self, bus: &Bus, sessions: &[Session]) -> Vec<Change> {
        if self.backend.is_none() {
            if sessions.iter().any(Session::has_dns) {
                log::debug!("DNS settings are not applied: no DNS backend");
            }
            return Vec::new();
        }
        let mut want: Vec<Session> = sessions.iter().filter(|s| s.has_dns()).cloned().collect();
        want.sort_by_key(|s| std::cmp::Reverse(s.order));
        if self.pending.is_some() {
            self.queued = Some(want);
            return Vec::new();
        }
        self.apply(bus, want)
    }

    fn apply(&mut self, bus: &Bus, want: Vec<Session>) -> Vec<Change> {
        let Some(b) = self.backend.as_mut() else { return Vec::new() };
        // Unchanged, but a failed apply, or a link that failed (resolved),
        // is tried again.
        if want == self.applied && !self.retry && b.failed().is_empty() {
            return Vec::new();
        }
        let r = b.apply(bus, &want);
        let busy = r.is_ok() && b.fd().is_some();
        self.pending = Some(want);
        if busy {
            return Vec::new();
        }
        self.finished(bus, r)
    }

    /// An apply finished: its events, then the queued state is started.
    /// On an error nothing is announced; the next update retries the whole
    /// state.
    fn finished(&mut self, bus: &Bus, r: Result<()>) -> Vec<Change> {
        let done = self.pending.take().unwrap_or_default();
        self.retry = r.is_err();
        let mut changes = match r {
            Ok(()) => diff(&std::mem::replace(&mut self.applied, done), &self.applied),
            Err(e) => {
                log::error!("DNS ({}): {e}", self.name);
                Vec::new()
            }
        };
        if let Some(next) = self.queued.take() {
            changes.extend(self.apply(bus, next));
        }
        changes
    }

    /// The applied servers (or search domains) of every session, newest
    /// session first, without repeats: the `global_dns_*` properties. A
    /// link whose settings failed for good is left out until they take.
    pub fn global(&self, servers: bool) -> Vec<String> {
        let failed = self.backend.as_ref().map(|b| b.failed()).unwrap_or_default();
        let applied = self.applied.iter().filter(|s| !failed.contains(&s.ifindex));
        let items = applied.flat_map(|s| {
            if servers {
                s.servers.iter().map(|a| a.to_string()).collect()
            } else {
                s.search.clone()
            }
        });
        unique(items)
    }

    /// Offers a method return or error to the backend (async resolved
    /// calls); true if it was one of ours.
    pub fn on_reply(&mut self, bus: &Bus, m: &Message) -> bool {
        self.backend.as_mut().is_some_and(|b| b.on_reply(bus, m))
    }

    /// When the backend next needs `progress` (retries, call timeouts)
    /// or a busy apply's time is up.
    pub fn deadline(&self) -> Option<Instant> {
        self.backend.as_ref().and_then(|b| b.deadline())
    }

    /// The fd of a busy apply, for the poll loop.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.backend.as_ref().and_then(|b| b.fd())
    }

    /// Whether the applied state still has a session of the device at
    /// `path`: then its removal is yet to be announced.
    pub fn lists(&self, path: &str) -> bool {
        self.applied.iter().any(|s| s.path == path)
    }

    pub fn on_name_owner(&mut self, bus: &Bus, name: &str, new_owner: &str) {
        if let Some(b) = self.backend.as_mut() {
            b.on_name_owner(bus, name, new_owner);
        }
    }

    /// After poll: `readable` if `fd` was. Serves a deadline that passed
    /// and a busy apply; the events of an apply that finished.
    pub fn service(&mut self, bus: &Bus, readable: bool) -> Vec<Change> {
        let due = self.deadline().is_some_and(|t| t <= Instant::now());
        let Some(b) = self.backend.as_mut().filter(|_| readable || due) else { return Vec::new() };
        b.progress(bus).map(|r| self.finished(bus, r)).unwrap_or_default()
    }

    /// Waits for a busy apply and the state queued behind it (shutdown);
    /// their events.
    pub fn settle(&mut self, bus: &Bus) -> Vec<Change> {
        let mut changes = Vec::new();
        while self.pending.is_some() {
            let Some(b) = self.backend.as_mut() else { break };
            let r = b.settle();
            changes.extend(self.finished(bus, r));
        }
        changes
    }

    /// Restores everything at shutdown; false if a restore failed (exit 4).
    pub fn shutdown(&mut self, bus: &Bus) -> bool {
        self.settle(bus);
        self.apply(bus, Vec::new());
        self.settle(bus);
        let Some(b) = self.backend.as_mut() else { return true };
        if !self.applied.is_empty() {
            log::error!("DNS ({}): not everything was restored at shutdown", self.name);
        }
        b.shutdown(bus) && self.applied.is_empty()
    }
}

/// `items` without repeats, in their order (through a sorted set: the
/// crate's maps already have its code, a hash set would add its own).
fn unique<T: Ord + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = crate::vecmap::VecSet::new();
    items.into_iter().filter(|i| seen.add(i.clone())).collect()
}

/// Warns once (`warned`) that `who` cannot split DNS: what it does with
/// the VPN's servers instead (they `are` ...).
fn warn_no_split(warned: &mut bool, sessions: &[Session], who: &str, are: &str) {
    if !*warned && sessions.iter().any(|s| s.scope == DnsScope::Tunnel) {
        log::warn!("{who}: split DNS (dns_scope tunnel) needs systemd-resolved; the VPN's servers are {are}");
        *warned = true;
    }
}

/// Events for what differs between two applied states, per session and
/// link: removals first, then additions.
fn diff(old: &[Session], new: &[Session]) -> Vec<Change> {
    use events::{DNS_SEARCH_ADDED, DNS_SEARCH_REMOVED, DNS_SERVER_ADDED, DNS_SERVER_REMOVED};
    let mut out = Vec::new();
    let passes = [(old, new, DNS_SERVER_REMOVED, DNS_SEARCH_REMOVED), (new, old, DNS_SERVER_ADDED, DNS_SEARCH_ADDED)];
    for (from, to, server_kind, search_kind) in passes {
        for s in from {
            // The same session on the same link (a second Establish is a new link).
            let other = to.iter().find(|o| o.path == s.path && o.ifindex == s.ifindex);
            let change = |e: Event| (s.path.clone(), s.ifname.clone(), e);
            let servers = s.servers.iter().filter(|a| !other.is_some_and(|o| o.servers.contains(a)));
            out.extend(servers.map(|a| change(Event::new(server_kind).with("dns_server", a))));
            let search = s.search.iter().filter(|d| !other.is_some_and(|o| o.search.contains(d)));
            out.extend(search.map(|d| change(Event::new(search_kind).with("search_domain", d))));
        }
    }
    out
}

/// The run-time choice. `auto`: systemd-resolved if it answers on the bus
/// and the system resolves through it, else dnsmasq if a dnsmasq of the
/// system reads our servers file, else resolvconf(8) if installed, else the
/// resolv.conf file. A forced backend that is missing falls back to the
/// same order (without itself), with a warning; a forced dnsmasq is never
/// missing (it reads the file whenever it starts).
fn choose(choice: &DnsChoice, bus: &Bus, dir: &crate::state::Dir, servers: &Path) -> Choice {
    let auto = *choice == DnsChoice::Auto;
    let fallback = if auto { "auto" } else { "fallback" };
    let how = |forced: bool| if forced { "forced" } else { fallback };
    match choice {
        DnsChoice::Dnsmasq => return dnsmasq_backend(servers, dir, "forced"),
        DnsChoice::None => {
            log::info!("DNS backend: none (DNS settings are stored and shown, not applied)");
            return ("none", None);
        }
        DnsChoice::File(p) => return file_backend(p, dir, "forced"),
        _ => {}
    }
    let resolvconf = *choice == DnsChoice::Resolvconf;
    let serving = || {
        let n = dnsmasq::instances(servers).len();
        match n {
            0 => log::info!("no dnsmasq of this system reads {} (servers-file)", servers.display()),
            n => log::info!("{n} dnsmasq instance(s) read {}", servers.display()),
        }
        n > 0
    };
    resolvconf
        .then(|| try_resolvconf("forced", dir))
        .flatten()
        .or_else(|| try_resolved(bus, how(*choice == DnsChoice::Resolved)))
        .or_else(|| (auto && serving()).then(|| dnsmasq_backend(servers, dir, "auto")))
        .or_else(|| (!resolvconf).then(|| try_resolvconf(how(false), dir)).flatten())
        .unwrap_or_else(|| file_backend(Path::new(file::DEFAULT_PATH), dir, how(false)))
}

type Choice = (&'static str, Option<Box<dyn Backend>>);

/// The level of a missing backend's message: a warning if it was forced.
fn missing(how: &str) -> log::Level {
    if how == "forced" {
        log::Level::Warn
    } else {
        log::Level::Info
    }
}

/// systemd-resolved, if it answers. `auto` also wants the system to resolve
/// through it: configuring it is useless when resolv.conf ignores it.
fn try_resolved(bus: &Bus, how: &str) -> Option<Choice> {
    if let Err(e) = resolved::probe(bus) {
        log::log!(missing(how), "systemd-resolved is not available: {e}");
        return None;
    }
    if !resolved::in_use() {
        if how != "forced" {
            log::info!("systemd-resolved answers, but {} does not use it; not using it for DNS", file::DEFAULT_PATH);
            return None;
        }
        log::warn!(
            "systemd-resolved answers, but {} does not use it: programs reading that file will not see VPN DNS",
            file::DEFAULT_PATH
        );
    }
    log::info!("DNS backend: systemd-resolved ({how})");
    Some(("systemd-resolved", Some(Box::new(resolved::Resolved::default()))))
}

/// resolvconf(8). Unless forced, systemd's resolvconf emulation is skipped:
/// it only works while resolved runs, and resolved was found unusable.
fn try_resolvconf(how: &str, dir: &crate::state::Dir) -> Option<Choice> {
    let Some(r) = resolvconf::find(dir).filter(|r| how == "forced" || !r.is_resolvectl()) else {
        log::log!(missing(how), "no usable resolvconf program in PATH");
        return None;
    };
    log::info!("DNS backend: resolvconf ({how}): {}", r.describe());
    Some(("resolvconf", Some(Box::new(r))))
}

fn dnsmasq_backend(servers: &Path, dir: &crate::state::Dir, how: &str) -> Choice {
    log::info!("DNS backend: dnsmasq ({how}), servers file {}", servers.display());
    ("dnsmasq", Some(Box::new(dnsmasq::Dnsmasq::new(servers, dir))))
}

fn file_backend(p: &Path, dir: &crate::state::Dir, how: &str) -> Choice {
    match file::FileBackend::new(p, dir) {
        Ok(f) => {
            log::info!("DNS backend: resolv.conf file {} ({how})", p.display());
            ("resolv.conf", Some(Box::new(f)))
        }
        Err(e) => {
            log::error!("DNS backend: cannot use {}: {e}; DNS settings will not be applied", p.display());
            ("none", None)
        }
    }
}

/// A global-scope session on `tun<ifindex>` for the backends' unit tests.
#[cfg(test)]
pub(crate) fn test_session(path: &str, ifindex: u32, order: u64, servers: &[&str], search: &[&str]) -> Session {
    Session {
        path: path.into(),
        ifname: format!("tun{ifindex}"),
        ifindex,
        order,
        servers: servers.iter().map(|a| a.parse().unwrap()).collect(),
        search: search.iter().map(|d| d.to_string()).collect(),
        dnssec: DnsSec::Unset,
        transport: DnsTransport::Unset,
        scope: DnsScope::Global,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_session as s;

    fn kinds(c: &[Change]) -> Vec<(u32, String)> {
        c.iter().map(|(_, _, e)| (e.kind, e.details[0].1.clone())).collect()
    }

    #[test]
    fn diff_announces_only_real_changes() {
        let a = s("/a", 1, 1, &["10.0.0.1"], &["a.example"]);
        let c = diff(&[], std::slice::from_ref(&a));
        assert_eq!(kinds(&c), vec![(128, "10.0.0.1".into()), (512, "a.example".into())]);
        assert!(diff(std::slice::from_ref(&a), std::slice::from_ref(&a)).is_empty());
        let a2 = s("/a", 1, 1, &["10.0.0.1", "10.0.0.2"], &["a.example"]);
        assert_eq!(kinds(&diff(std::slice::from_ref(&a), std::slice::from_ref(&a2))), vec![(128, "10.0.0.2".into())]);
        // A new link for the same device (second Establish) is a new session.
        let moved = s("/a", 2, 1, &["10.0.0.1", "10.0.0.2"], &["a.example"]);
        let c = diff(&[a2], &[moved]);
        assert_eq!(c.len(), 6);
        assert_eq!((c[0].1.as_str(), c[0].2.kind), ("tun1", 256));
        assert_eq!((c[5].1.as_str(), c[5].2.kind), ("tun2", 512));
        let c = diff(&[a], &[]);
        assert_eq!(kinds(&c), vec![(256, "10.0.0.1".into()), (1024, "a.example".into())]);
    }
}
