//! The systemd-resolved backend: per-link DNS through
//! `org.freedesktop.resolve1.Manager` on the daemon's own bus connection.
//!
//! Scope "global": the search domains plus the routing domain `~.` and
//! DefaultRoute=true, so every name goes to the VPN's servers. Scope
//! "tunnel": split DNS, search domains only and DefaultRoute=false, so only
//! names under those domains go to the VPN.
//!
//! Never blocking: every call is sent asynchronously and its reply comes
//! back through the main loop (`on_reply`), matched by serial. Per link we
//! keep the wanted configuration; a newer configuration supersedes calls
//! still in flight: they are forgotten, and their replies ignored. A link
//! resolved does not know yet (it learns about new links from netlink,
//! possibly after our call), a missing service and a call without answer
//! are retried a bounded number of times; other errors are logged. A link that went away needs no RevertLink.
//!
//! A link whose calls failed for good (refused, or retries used up) is not
//! forgotten: it is sent again after RESEND_AFTER (at most MAX_RESENDS
//! times in a row), on the next update of any session, and whenever
//! resolved (re)appears on the bus, which also re-applies every other link:
//! a restarted resolved may have lost them.

use crate::vecmap::VecMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use dbus::message::MessageType;
use dbus::Message;

use super::{Backend, Session};
use crate::conn::Bus;
use crate::error::{Error, Result};
use crate::settings::{DnsScope, DnsSec, DnsTransport, Word};

const DEST: &str = "org.freedesktop.resolve1";
const PATH: &str = "/org/freedesktop/resolve1";
const MANAGER: &str = "org.freedesktop.resolve1.Manager";
const NO_SUCH_LINK: &str = "org.freedesktop.resolve1.NoSuchLink";
/// Errors worth another try: the link or the service may appear shortly.
const TRANSIENT: &[&str] = &[
    NO_SUCH_LINK,
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut",
    "org.freedesktop.DBus.Error.Disconnected",
];
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: u32 = 5;
/// Waited before attempt n+1: n * RETRY_STEP (0.25 s, 0.5 s, ...).
const RETRY_STEP: Duration = Duration::from_millis(250);
/// A link that failed for good is sent again this long after, up to
/// MAX_RESENDS times; then only an update or resolved's return re-sends it.
const RESEND_AFTER: Duration = Duration::from_secs(30);
const MAX_RESENDS: u32 = 4;
/// How long shutdown waits for the last replies.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Is systemd-resolved there? A Ping answers if it runs, and starts it
/// if it is D-Bus activatable. Blocking; start-up only.
pub fn probe(bus: &Bus) -> Result<()> {
    let m = Message::new_method_call(DEST, PATH, "org.freedesktop.DBus.Peer", "Ping").map_err(Error::failed)?;
    bus.call_blocking(m, CALL_TIMEOUT).map(|_| ())
}

/// Does the system resolve through resolved? True if resolv.conf is its
/// stub (or a link to its files), or glibc asks it directly (nss-resolve).
pub fn in_use() -> bool {
    let conf = Path::new(super::file::DEFAULT_PATH);
    if std::fs::read_link(conf).is_ok_and(|t| t.to_string_lossy().contains("run/systemd/resolve/")) {
        return true;
    }
    let servers = super::file::parse(&std::fs::read(conf).unwrap_or_default()).servers;
    let stub = servers.iter().any(|a| a == "127.0.0.53" || a == "127.0.0.54");
    stub || std::fs::read_to_string("/etc/nsswitch.conf").is_ok_and(|t| {
        t.lines().any(|l| l.trim_start().starts_with("hosts:") && l.split_whitespace().any(|w| w == "resolve"))
    })
}

/// What one link should have, in resolved's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LinkConf {
    servers: Vec<IpAddr>,
    /// (domain, routing-only).
    domains: Vec<(String, bool)>,
    default_route: bool,
    /// "" = resolved's default.
    dnssec: &'static str,
    dot: &'static str,
}

impl LinkConf {
    fn of(s: &Session) -> LinkConf {
        let global = s.scope == DnsScope::Global;
        // "~.": every name
        let route_all = global.then(|| (".".to_string(), true));
        let domains = s.search.iter().map(|d| (d.clone(), false)).chain(route_all).collect();
        let dnssec = match s.dnssec {
            DnsSec::Unset => "",
            DnsSec::Optional => "allow-downgrade",
            yes_or_no => yes_or_no.as_str(),
        };
        let dot = match s.transport {
            DnsTransport::Unset | DnsTransport::Doh => "",
            DnsTransport::Plain => "no",
            DnsTransport::Dot => "yes",
        };
        LinkConf { servers: s.servers.clone(), domains, default_route: global, dnssec, dot }
    }
}

#[derive(Default)]
struct Link {
    name: String,
    /// None: revert the link to resolved's own settings.
    want: Option<LinkConf>,
    attempt: u32,
    /// Reply deadline of the calls in flight, or (none in flight) when to
    /// send again: after a transient error, or for a resend round.
    timer: Option<Instant>,
    /// The last attempt failed for good; sent again later (module doc).
    failed: bool,
    /// Resend rounds since the configuration last changed or succeeded.
    resends: u32,
}

impl Link {
    /// After a failure for good: schedules the next resend round, if any is left.
    fn resend_later(&mut self, now: Instant) {
        self.attempt = 0;
        if self.resends >= MAX_RESENDS {
            log::error!(
                "systemd-resolved: {}: sent again only on the next DNS update or when systemd-resolved comes back",
                self.name
            );
            return;
        }
        self.resends += 1;
        self.timer = Some(now + RESEND_AFTER);
        log::warn!(
            "systemd-resolved: {}: sending its DNS settings again in {} s ({}/{MAX_RESENDS})",
            self.name,
            RESEND_AFTER.as_secs(),
            self.resends
        );
    }
}

#[derive(Default)]
pub struct Resolved {
    links: VecMap<u32, Link>,
    /// Serial of a call in flight -> (ifindex, method): only calls of a
    /// link's current attempt (older ones are removed when it starts).
    pending: VecMap<u32, (u32, &'static str)>,
    /// A revert gave up (reported at shutdown).
    revert_failed: bool,
}

impl Resolved {
    /// Sends the link's calls: a `first` attempt, or a retry.
    fn send(&mut self, bus: &Bus, ifindex: u32, first: bool) {
        let Some(l) = self.links.get_mut(&ifindex) else { return };
        if first {
            l.attempt = 0;
        }
        l.failed = false;
        self.pending.retain(|_, p| p.0 != ifindex);
        l.timer = Some(Instant::now() + CALL_TIMEOUT);
        for (method, m) in calls(ifindex as i32, l.want.as_ref()) {
            let Some(serial) = bus.ch.send(m).ok() else { return self.again(ifindex, "the call could not be queued") };
            self.pending.insert(serial, (ifindex, method));
        }
        log::debug!("systemd-resolved: {} sent for link {ifindex} (attempt {})", describe(l), l.attempt + 1);
    }

    /// A transient failure: try again later, or give up after MAX_ATTEMPTS.
    fn again(&mut self, ifindex: u32, why: &str) {
        let Some(l) = self.links.get_mut(&ifindex) else { return };
        self.pending.retain(|_, p| p.0 != ifindex); // their replies are stale now
        l.attempt += 1;
        if l.attempt < MAX_ATTEMPTS {
            log::debug!("systemd-resolved: link {} ({}): {why}; trying again", ifindex, l.name);
            l.timer = Some(Instant::now() + RETRY_STEP * l.attempt);
            return;
        }
        let (what, name) = (describe(l), &l.name);
        log::error!("systemd-resolved: giving up on {what} for {name} after {MAX_ATTEMPTS} attempts: {why}");
        l.failed = true;
        self.revert_failed |= l.want.is_none();
        self.done(ifindex);
    }

    fn done(&mut self, ifindex: u32) {
        let Some(l) = self.links.get_mut(&ifindex) else { return };
        l.timer = None;
        l.attempt = 0;
        if !l.failed {
            log::info!("systemd-resolved: {} done for {}", describe(l), l.name);
        }
        if l.want.is_none() {
            self.links.remove(&ifindex);
        } else if l.failed {
            l.resend_later(Instant::now());
        } else {
            l.resends = 0;
        }
    }

    fn busy(&self) -> bool {
        self.links.values().any(|l| l.timer.is_some())
    }

    /// The ifindexes of the links `pick` picks.
    fn links_where(&self, pick: impl Fn(u32, &Link) -> bool) -> Vec<u32> {
        self.links.iter().filter(|(i, l)| pick(**i, l)).map(|(i, _)| *i).collect()
    }
}

fn describe(l: &Link) -> &'static str {
    l.want.as_ref().map_or("RevertLink", |_| "link DNS configuration")
}

/// The Manager calls that give a link `want` (None: RevertLink).
fn calls(ifindex: i32, want: Option<&LinkConf>) -> Vec<(&'static str, Message)> {
    fn call(method: &'static str, build: impl FnOnce(Message) -> Message) -> (&'static str, Message) {
        // Only constant, valid names: this cannot fail.
        (method, build(Message::new_method_call(DEST, PATH, MANAGER, method).expect("valid names")))
    }
    let Some(c) = want else { return vec![call("RevertLink", |m| m.append1(ifindex))] };
    let family_and_bytes = |a: &IpAddr| match a {
        IpAddr::V4(v) => (libc::AF_INET, v.octets().to_vec()),
        IpAddr::V6(v) => (libc::AF_INET6, v.octets().to_vec()),
    };
    let servers: Vec<(i32, Vec<u8>)> = c.servers.iter().map(family_and_bytes).collect();
    vec![
        call("SetLinkDNS", |m| m.append2(ifindex, servers)),
        call("SetLinkDomains", |m| m.append2(ifindex, c.domains.clone())),
        call("SetLinkDefaultRoute", |m| m.append2(ifindex, c.default_route)),
        call("SetLinkDNSSEC", |m| m.append2(ifindex, c.dnssec)),
        call("SetLinkDNSOverTLS", |m| m.append2(ifindex, c.dot)),
    ]
}

impl Backend for Resolved {
    fn apply(&mut self, bus: &Bus, sessions: &[Session]) -> Result<()> {
        for i in self.links_where(|i, l| l.want.is_some() && !sessions.iter().any(|s| s.ifindex == i)) {
            if let Some(l) = self.links.get_mut(&i) {
                l.want = None;
            }
            self.send(bus, i, true);
        }
        for s in sessions {
            let conf = LinkConf::of(s);
            let l = self.links.get_or_insert_with(s.ifindex, Link::default);
            if l.want.as_ref() != Some(&conf) {
                // What the session asks for that resolved will not do as asked.
                let name = &s.ifname;
                if s.transport == DnsTransport::Doh {
                    log::warn!("{name}: systemd-resolved does not support DNS-over-HTTPS; using its default transport");
                }
                if s.scope == DnsScope::Tunnel && s.search.is_empty() {
                    log::warn!("{name}: dns_scope tunnel without search domains: resolved will not use its servers");
                }
                l.resends = 0;
            } else if l.failed {
                log::info!("systemd-resolved: {}: sending the settings that failed again", s.ifname);
            } else {
                continue;
            }
            l.name = s.ifname.clone();
            l.want = Some(conf);
            self.send(bus, s.ifindex, true);
        }
        Ok(())
    }

    fn failed(&self) -> Vec<u32> {
        self.links_where(|_, l| l.failed && l.want.is_some())
    }

    /// resolved (re)appeared: it may have lost every link's settings (a
    /// restart), so all are sent again. Reverts still under way are moot.
    fn on_name_owner(&mut self, bus: &Bus, name: &str, new_owner: &str) {
        if name != DEST {
            return;
        }
        if new_owner.is_empty() {
            log::warn!("systemd-resolved left the bus; link settings are sent again when it is back");
            return;
        }
        self.links.retain(|_, l| {
            l.resends = 0;
            l.want.is_some()
        });
        let links = self.links_where(|_, _| true);
        self.pending.retain(|_, p| links.contains(&p.0));
        if !links.is_empty() {
            log::info!("systemd-resolved appeared on the bus as {new_owner}; sending {} link(s) again", links.len());
        }
        for i in links {
            self.send(bus, i, true);
        }
    }

    fn on_reply(&mut self, _bus: &Bus, m: &Message) -> bool {
        let Some((ifindex, method)) = m.get_reply_serial().and_then(|s| self.pending.remove(&s)) else { return false };
        let Some(l) = self.links.get_mut(&ifindex) else { return true };
        let reverting = l.want.is_none();
        if m.msg_type() == MessageType::Error {
            let e = m.duplicate().ok().and_then(|mut d| d.as_result().err());
            let name = e.as_ref().and_then(|e| e.name()).unwrap_or("").to_string();
            let text = e.as_ref().and_then(|e| e.message()).unwrap_or("").to_string();
            if name == NO_SUCH_LINK && reverting {
                // The link is gone, and its settings with it.
            } else if TRANSIENT.contains(&name.as_str()) {
                self.again(ifindex, &format!("{method}: {text}"));
                return true;
            } else {
                log::error!("systemd-resolved refused {method} for {}: {text} ({name})", l.name);
                l.failed = true;
                self.revert_failed |= reverting;
            }
        }
        if !self.pending.values().any(|p| p.0 == ifindex) {
            self.done(ifindex);
        }
        true
    }

    fn deadline(&self) -> Option<Instant> {
        self.links.values().filter_map(|l| l.timer).min()
    }

    /// Calls without a reply in time, and links due to be sent again.
    fn progress(&mut self, bus: &Bus) -> Option<Result<()>> {
        let now = Instant::now();
        for i in self.links_where(|_, l| l.timer.is_some_and(|t| t <= now)) {
            if self.pending.values().any(|p| p.0 == i) {
                self.again(i, &format!("no reply within {} s", CALL_TIMEOUT.as_secs()));
            } else {
                self.send(bus, i, false);
            }
        }
        None
    }

    /// Waits (bounded) for the replies to the last calls, RevertLink
    /// included, so failures are logged and reflected in the exit code.
    fn shutdown(&mut self, bus: &Bus) -> bool {
        let end = Instant::now() + SHUTDOWN_WAIT;
        while self.busy() && Instant::now() < end && bus.pump() {
            // Anything but our replies that arrives now is dropped: we are
            // exiting. progress acts only on what is due.
            while let Some(m) = bus.ch.pop_message() {
                self.on_reply(bus, &m);
            }
            self.progress(bus);
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.busy() {
            log::error!("systemd-resolved: no answer to the last calls at shutdown");
            return false;
        }
        !self.revert_failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(scope: DnsScope, dnssec: DnsSec, transport: DnsTransport) -> Session {
        Session {
            path: "/p".into(),
            ifname: "tun0".into(),
            ifindex: 7,
            order: 1,
            servers: vec!["10.8.0.1".parse().unwrap(), "fd00::53".parse().unwrap()],
            search: vec!["corp.example".into()],
            dnssec,
            transport,
            scope,
        }
    }

    #[test]
    fn global_scope_routes_everything_and_tunnel_is_split() {
        let g = LinkConf::of(&session(DnsScope::Global, DnsSec::Optional, DnsTransport::Dot));
        assert_eq!(g.domains, vec![("corp.example".to_string(), false), (".".to_string(), true)]);
        assert!(g.default_route);
        assert_eq!((g.dnssec, g.dot), ("allow-downgrade", "yes"));
        let t = LinkConf::of(&session(DnsScope::Tunnel, DnsSec::Unset, DnsTransport::Doh));
        assert_eq!(t.domains, vec![("corp.example".to_string(), false)]);
        assert!(!t.default_route);
        assert_eq!((t.dnssec, t.dot), ("", ""));
    }

    #[test]
    fn a_failed_link_is_sent_again_a_bounded_number_of_times() {
        let mut l = Link { name: "tun0".into(), attempt: MAX_ATTEMPTS, failed: true, ..Link::default() };
        let now = Instant::now();
        for round in 1..=MAX_RESENDS {
            l.timer = None;
            l.resend_later(now);
            assert_eq!((l.timer, l.resends, l.attempt), (Some(now + RESEND_AFTER), round, 0));
        }
        l.timer = None;
        l.resend_later(now);
        assert_eq!((l.timer, l.resends), (None, MAX_RESENDS), "no round after the last");
    }

    #[test]
    fn calls_encode_addresses_as_family_and_bytes() {
        let c = LinkConf::of(&session(DnsScope::Global, DnsSec::Yes, DnsTransport::Plain));
        let v = calls(7, Some(&c));
        let names: Vec<&str> = v.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["SetLinkDNS", "SetLinkDomains", "SetLinkDefaultRoute", "SetLinkDNSSEC", "SetLinkDNSOverTLS"]
        );
        let (i, a): (i32, Vec<(i32, Vec<u8>)>) = v[0].1.read2().unwrap();
        assert_eq!(i, 7);
        assert_eq!(a[0], (2, vec![10, 8, 0, 1]));
        assert_eq!(a[1].0, 10);
        assert_eq!(a[1].1.len(), 16);
        let r = calls(7, None);
        assert_eq!(r[0].0, "RevertLink");
    }
}
