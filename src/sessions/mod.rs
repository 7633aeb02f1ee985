//! The service's state: the device objects, their kernel changes and
//! DNS, protections, subscriptions, and the NetworkChange signals waiting
//! to go out. The D-Bus handlers (`crate::bus`) act on it; the loop
//! (`crate::daemon`) feeds it. `protect`, `watch` and `dco` hold the parts
//! of it that ProtectSocket, the kernel's notifications and DCO need.

pub mod dco;
pub mod ops;
pub mod outbox;
pub mod protect;
pub mod watch;

use crate::vecmap::VecMap;

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::Message;

use crate::apply::Kernel;
use crate::config::Config;
use crate::conn::{self, Bus, BUS_NAME, IFACE, LOG_SERVICE, MANAGER_PATH};
use crate::dco_session::DcoKernel;
use crate::device::Device;
use crate::dns::Dns;
use crate::error::{Error, Result};
use crate::journal::{Entry, Undo};
use crate::netlink::link;
use crate::settings::Word;
use outbox::Source;

pub const VERSION: &str = concat!("ovpn-netcfgd-", env!("CARGO_PKG_VERSION"));

pub struct Subscription {
    pub mask: u32,
    pub uid: u32,
}

pub struct Sessions {
    pub cfg: Config,
    pub bus: Bus,
    pub kernel: Kernel,
    /// Device objects by object path.
    pub devices: VecMap<String, Device>,
    /// NetworkChange subscribers by unique bus name.
    pub subs: VecMap<String, Subscription>,
    pub log_level: u32,
    pub dns: Dns,
    /// What ProtectSocket installed, by owner.
    pub protections: Vec<protect::Protection>,
    /// The fwmark method's rules, shared by all protections.
    pub fw_rules: crate::journal::Journal,
    /// Tun links of destroyed devices, left for their clients to close,
    /// with the UID each counts against: its tun device lives on while its
    /// client holds the fd.
    orphans: Vec<(u32, Entry)>,
    /// The resolved DCO generic-netlink family and its sockets.
    pub dco: Option<DcoKernel>,
    /// Owner and ACL of devices being removed, so their last events still
    /// reach exactly the UIDs that saw them.
    pub(crate) departed: VecMap<String, (u32, Vec<u32>)>,
    /// The kernel's link and route notifications (`watch`).
    pub(crate) watch: watch::Watch,
    /// NetworkChange signals not yet handed to libdbus (see `pace_signals`).
    pub(crate) signals: outbox::Outbox,
    log_owner: Option<String>,
    /// The pending operation (`ops`), and the calls waiting for it.
    pub(crate) op: Option<ops::Op>,
    pub(crate) held: std::collections::VecDeque<Message>,
    /// Devices whose client left the bus, to remove (path, why).
    leaving: std::collections::VecDeque<(String, String)>,
}

impl Sessions {
    /// The state at start-up: the sockets opened as root, the bus joined
    /// as the service user. `come_up` finishes it.
    pub fn new(cfg: Config, bus: Bus, kernel: Kernel, watch: watch::Watch, dco: Option<DcoKernel>, dns: Dns) -> Self {
        Sessions {
            log_level: cfg.log_level,
            cfg,
            bus,
            kernel,
            devices: VecMap::new(),
            subs: VecMap::new(),
            dns,
            protections: Vec::new(),
            fw_rules: crate::journal::Journal::default(),
            orphans: Vec::new(),
            dco,
            departed: VecMap::new(),
            watch,
            signals: Default::default(),
            log_owner: None,
            op: None,
            held: Default::default(),
            leaving: Default::default(),
        }
    }

    /// The last steps of start-up, in this order: the name watch, the
    /// recovery of what a predecessor left, DNS, and only then the name.
    pub(crate) fn come_up(&mut self, journals: [std::fs::File; 2]) -> Result<()> {
        // Our objects answer from the first message on (they are dispatched
        // by path, not registered), so asking for the name last means no
        // caller can reach us before we can answer.
        self.bus.add_match(
            "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged'",
        )?;
        self.log_owner = self.bus.name_owner(LOG_SERVICE);
        // Another instance would own the name: leave its state alone.
        if self.bus.name_owner(BUS_NAME).is_some() {
            return Err(Error::failed(format!("{BUS_NAME} is already running")));
        }
        // Undo what a killed predecessor left behind (kernel, then DNS)
        // before anyone can reach us; the DNS backend is chosen after its
        // recovery.
        let (wal, leftover) = crate::journal::Wal::open(journals);
        self.kernel.wal = wal;
        if !leftover.is_empty() {
            let (n, refused) = crate::apply::recover(&mut self.kernel.rtnl, &leftover);
            log::warn!("undid {n} change(s) left by a previous run (from its journal)");
            if refused > 0 {
                log::warn!("{refused} journal entr(ies) named something not ours in the kernel: left alone");
            }
        }
        match crate::apply::sweep(&mut self.kernel.rtnl) {
            Ok(0) => {}
            Ok(n) => log::warn!("removed {n} route(s)/rule(s) of ours that no journal accounted for"),
            Err(e) => log::warn!("sweeping stale routes: {e}"),
        }
        // Only now: a crash during the above replays the old file again.
        self.kernel.wal.start()?;
        self.dns.start(&self.cfg, &self.bus);
        crate::privs::fit_to_dns(&self.cfg, self.dns.backend_name()).map_err(Error::failed)?;
        self.bus.request_name(BUS_NAME)?;
        log::info!(
            "{VERSION} ready on {} as {BUS_NAME} (redirect method {}, DNS backend {}, log level {})",
            self.bus.ch.unique_name().unwrap_or_default(),
            self.cfg.redirect.as_str(),
            self.dns.backend_name(),
            self.log_level
        );
        Ok(())
    }

    /// Rewrites the journal file with the live entries (every entry not yet
    /// undone, in all the places that hold them) when it is mostly finished ones.
    pub(crate) fn compact_journal(&mut self) {
        if self.kernel.wal.wants_compaction() {
            let devices = self.devices.values().map(|d| &d.journal);
            let journals = devices.chain([&self.fw_rules]).flat_map(|j| &j.entries);
            let orphans = self.orphans.iter().map(|(_, e)| e);
            let live: Vec<&Entry> = journals.chain(orphans).chain(self.kernel.shared.entries()).collect();
            self.kernel.wal.compact(&live);
        }
    }

    /// Announces what a DNS apply changed (at once, or in the background).
    /// The ACLs of devices removed meanwhile were kept for these events;
    /// they go once DNS no longer lists the device.
    pub(crate) fn dns_finished(&mut self, changes: Vec<crate::dns::Change>) {
        for (path, dev, e) in changes {
            self.emit(&path, &dev, [Source::Events(vec![e])]);
        }
        let dns = &self.dns;
        self.departed.retain(|p, _| dns.lists(p));
    }

    /// Removes a device object and everything it made in the kernel.
    ///
    /// With `client_closes`, a tun device is left to the client, which the
    /// API asks to close its tun fd after Destroy (the kernel then removes
    /// the device; deleting it ourselves costs an RCU grace period, ~20 ms).
    /// It is kept in `orphans` and deleted at shutdown if still there.
    pub(crate) fn remove_device(&mut self, path: &str, why: &str, client_closes: bool) {
        if let Some(mut r) = self.removal_start(path, client_closes) {
            r.undo.run(&mut self.kernel);
            self.removal_finish(r, why);
        }
    }

    /// Takes the device out (its DCO peers first; the journal deletes the
    /// netdev) and prepares its teardown.
    pub(crate) fn removal_start(&mut self, path: &str, client_closes: bool) -> Option<Removal> {
        let mut d = self.devices.remove(path)?;
        // A DCO netdev has no client fd keeping it: it is always deleted.
        let keep_link = client_closes && d.dco.is_none();
        self.dco_release(&mut d);
        let undo = d.teardown_start(&mut self.kernel, !keep_link);
        Some(Removal { d, undo, keep_link })
    }

    /// After the teardown's undo: what the device held outside its link,
    /// its events, DNS.
    pub(crate) fn removal_finish(&mut self, r: Removal, why: &str) {
        let Removal { mut d, undo, keep_link } = r;
        let failed = undo.finish(&mut self.kernel);
        let events = d.teardown_finish(failed, !keep_link);
        if keep_link {
            self.orphans.extend(d.journal.take_all().into_iter().rev().map(|e| (d.owner_uid, e)));
        }
        self.prune_orphans();
        if self.devices.is_empty() {
            crate::sys::trim_heap();
        }
        let path = d.path.clone();
        self.drop_protections(|o| *o == crate::shared::Owner::Device(path.clone()));
        self.departed.insert(d.path.clone(), (d.owner_uid, d.acl.clone()));
        self.emit(&d.path, &d.name, events.into_iter().map(Source::Notice));
        log::info!("device {path} ({}) removed: {why}", d.name);
        // Its DNS events may come when a DNS apply finishes (`dns_finished`).
        self.dns_sync();
    }

    /// Forgets orphaned tun links that their clients have closed.
    fn prune_orphans(&mut self) {
        let (open, closed): (Vec<_>, Vec<_>) = std::mem::take(&mut self.orphans).into_iter().partition(|(_, e)| {
            matches!(&e.undo, Undo::DelLink { ifindex, name } if link::name_of(*ifindex).as_deref() == Some(name.as_str()))
        });
        // Entries for links that are gone need no undo; this only clears them
        // from the journal file (newest first, the order of an undo).
        crate::apply::undo(&mut self.kernel, closed.into_iter().rev().map(|(_, e)| e).collect());
        self.orphans = open;
    }

    /// Pushes every active session's DNS settings to the DNS backend and
    /// announces what changed. Called after anything that changes them.
    pub(crate) fn dns_sync(&mut self) {
        let session = |d: &Device| {
            let (ifindex, ifname) = d.link.clone()?;
            Some(crate::dns::Session {
                path: d.path.clone(),
                ifname,
                ifindex,
                order: d.created,
                servers: d.settings.dns_servers.clone(),
                search: d.settings.dns_search.clone(),
                dnssec: d.settings.dnssec,
                transport: d.settings.dns_transport,
                scope: d.settings.dns_scope,
            })
        };
        let sessions: Vec<_> = self.devices.values().filter(|d| d.active).filter_map(session).collect();
        let changes = self.dns.update(&self.bus, &sessions);
        self.dns_finished(changes);
    }

    /// Whether `uid` may see the device at `path` (its events and
    /// properties): its owner, the UIDs in its ACL and root. A device
    /// that no longer exists is root's alone.
    pub(crate) fn may_see(&self, path: &str, uid: u32) -> bool {
        match (self.devices.get(path), self.departed.get(path)) {
            (Some(d), _) => d.may(uid),
            (None, Some((owner, acl))) => uid == 0 || uid == *owner || acl.contains(&uid),
            (None, None) => uid == 0,
        }
    }

    /// The subscribers that may see the device at `path` and want one of
    /// the event `kinds`: unique bus name, event mask.
    fn audience(&self, path: &str, kinds: u32) -> Vec<(String, u32)> {
        let to = self.subs.iter().filter(|(_, s)| s.mask & kinds != 0 && self.may_see(path, s.uid));
        to.map(|(n, s)| (n.clone(), s.mask)).collect()
    }

    /// Queues NetworkChange signals, each one unicast to the subscribers
    /// whose mask matches and who may see the device: the events of a
    /// configuration coming or going (`Source::Notice`), or others.
    pub(crate) fn emit(&mut self, path: &str, device: &str, sources: impl IntoIterator<Item = Source>) {
        for source in sources {
            let kinds = match &source {
                Source::Notice(n) => n.kinds(),
                Source::Events(v) => v.iter().fold(0, |k, e| k | e.kind),
            };
            // Who may see the device is asked once, not once per event.
            let to = self.audience(path, kinds);
            self.signals.push(path, device, source, to);
        }
    }

    /// Hands queued signals to libdbus a batch per tick, and only when its
    /// outgoing queue is empty and the bus daemon has read everything we
    /// wrote: it forwards our messages in order, so a reply to another
    /// client never waits behind more than one batch, however busy the bus
    /// daemon is. Signal delivery is the background work, not the replies.
    pub(crate) fn pace_signals(&mut self) {
        let unread = crate::sys::queued_bytes(self.bus.ch.watch().fd, true).unwrap_or(0);
        if self.bus.ch.has_messages_to_send() || unread > 0 {
            return;
        }
        for sig in self.signals.due() {
            self.bus.send(sig);
        }
    }

    /// Sends queued log records as Log signals to the log service, as the
    /// reference does. Without one they are not sent: they name devices,
    /// addresses and servers of every user, and a broadcast would show
    /// them to anyone listening (they are in the daemon's own log anyway).
    pub(crate) fn flush_log_signals(&mut self) {
        let records = crate::logging::drain();
        let Some(o) = &self.log_owner else { return };
        for (cat, msg) in records {
            let Ok(mut sig) = Message::new_signal(MANAGER_PATH, IFACE, "Log") else { continue };
            sig = sig.append3(8u32, cat, msg);
            sig.set_destination(Some(o.as_str().into()));
            self.bus.send(sig);
        }
    }

    /// The tun links of the devices `f` selects (all of them: every link
    /// we configure, never "the host's route").
    pub(crate) fn links_where(&self, f: impl Fn(&Device) -> bool) -> Vec<u32> {
        self.devices.values().filter(|d| f(d)).filter_map(|d| d.link.as_ref().map(|l| l.0)).collect()
    }

    /// The paths of the devices `f` selects.
    pub(crate) fn paths_where(&self, f: impl Fn(&Device) -> bool) -> Vec<String> {
        self.devices.values().filter(|d| f(d)).map(|d| d.path.clone()).collect()
    }

    /// PropertiesChanged: broadcast for the manager; for a device, unicast
    /// to its owner's connection, the setter and the subscribers who may
    /// see it (a broadcast would show its settings to every listener).
    pub(crate) fn props_changed(&self, path: &str, setter: &str, name: &str, value: Box<dyn RefArg>) {
        let changed = PropMap::from([(name.to_string(), Variant(value))]);
        let Ok(sig) = Message::new_signal(path, "org.freedesktop.DBus.Properties", "PropertiesChanged") else { return };
        let sig = sig.append3(IFACE, changed, Vec::<String>::new());
        let Some(d) = self.devices.get(path) else {
            self.bus.send(sig);
            return;
        };
        let subs = self.audience(path, u32::MAX).into_iter().map(|(n, _)| n);
        let to: crate::vecmap::VecSet<String> = subs.chain([d.owner_bus.clone(), setter.to_string()]).collect();
        for (name, ()) in to.into_iter().filter(|(n, _)| !n.is_empty()) {
            let Ok(mut m) = sig.duplicate() else { continue };
            m.set_destination(Some(name.as_str().into()));
            self.bus.send(m);
        }
    }

    pub(crate) fn caller(&mut self, m: &Message) -> Result<(String, conn::Creds)> {
        let sender = m.sender().map(|s| s.to_string()).ok_or_else(|| Error::failed("message has no sender"))?;
        self.bus.creds(&sender).map(|c| (sender, c))
    }

    /// Whether `uid` may create one more device: its own share first,
    /// then the daemon-wide safety cap. Tun links left to their clients
    /// after Destroy count until they are closed: otherwise a client could
    /// keep creating, establishing and destroying, and hold any number.
    pub(crate) fn check_device_limits(&mut self, uid: u32) -> Result<()> {
        use crate::limits::{DEVICES_PER_UID, DEVICES_TOTAL};
        let held = |me: &Self| {
            me.devices.values().filter(|d| d.owner_uid == uid).count()
                + me.orphans.iter().filter(|(u, e)| *u == uid && matches!(e.undo, Undo::DelLink { .. })).count()
        };
        if held(self) >= DEVICES_PER_UID {
            self.prune_orphans();
        }
        crate::limits::check_share("devices", uid, held(self), DEVICES_PER_UID, self.devices.len(), DEVICES_TOTAL)
    }

    /// Networks held by the devices `uid` owns.
    pub(crate) fn networks_of(&self, uid: u32) -> usize {
        self.devices.values().filter(|d| d.owner_uid == uid).map(|d| d.settings.networks.len()).sum()
    }

    /// Whether `uid` may add one more subscription.
    pub(crate) fn check_sub_limits(&self, uid: u32) -> Result<()> {
        use crate::limits::{check_share, SUBSCRIPTIONS_PER_UID, SUBSCRIPTIONS_TOTAL};
        let mine = self.subs.values().filter(|s| s.uid == uid).count();
        check_share("subscriptions", uid, mine, SUBSCRIPTIONS_PER_UID, self.subs.len(), SUBSCRIPTIONS_TOTAL)
    }

    /// NameOwnerChanged from the bus daemon: the log service, a DNS
    /// service, or a client that left the bus (its devices, protections
    /// and subscription go with it).
    pub(crate) fn name_owner_changed(&mut self, name: &str, new: &str) {
        match name {
            LOG_SERVICE => self.log_owner = (!new.is_empty()).then(|| new.to_string()),
            _ if !name.starts_with(':') => self.dns.on_name_owner(&self.bus, name, new),
            _ if new.is_empty() => {
                // Removed as pending operations (`unhold`), their links too.
                let why = format!("its creator {name} left the bus");
                let paths = self.paths_where(|d| d.owner_bus == name);
                self.leaving.extend(paths.into_iter().map(|p| (p, why.clone())));
                self.drop_protections(|o| matches!(o, crate::shared::Owner::Client { bus, .. } if *bus == name));
                self.watch.forget_owner(name);
                if self.subs.remove(name).is_some() {
                    log::info!("subscriber {name} left the bus; subscription removed");
                }
                self.bus.forget(name);
            }
            _ => {}
        }
    }

    /// Undoes every device and DNS change, then flushes what is left to
    /// send. False if DNS could not be restored.
    pub(crate) fn shutdown(&mut self) -> bool {
        for p in self.paths_where(|_| true) {
            self.remove_device(&p, "service shutdown", false);
        }
        let orphans = std::mem::take(&mut self.orphans).into_iter().rev().map(|(_, e)| e).collect();
        for f in crate::apply::undo(&mut self.kernel, orphans) {
            log::warn!("removing a device left to its client: {f}");
        }
        self.drop_protections(|_| true);
        let changes = self.dns.settle(&self.bus);
        self.dns_finished(changes);
        let ok = self.dns.shutdown(&self.bus);
        self.flush_log_signals();
        for sig in self.signals.take(usize::MAX) {
            self.bus.send(sig);
        }
        self.bus.ch.flush();
        ok
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.devices.is_empty() && self.subs.is_empty() && self.op.is_none()
    }
}

/// A device being removed: out of the map, its teardown's undo on its way.
pub(crate) struct Removal {
    d: Device,
    pub undo: crate::apply::Undoing,
    keep_link: bool,
}
