//! The daemon: its state and the single poll(2) loop that multiplexes the
//! D-Bus connection, the signalfd and the idle timerfd. Single-threaded;
//! every handler runs to completion before the next message is read.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::message::MessageType;
use dbus::Message;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::config::Config;
use crate::conn::{self, Bus, BUS_NAME, IFACE, LOG_SERVICE, MANAGER_PATH};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::netlink::Socket;

pub const VERSION: &str = concat!("ovpn-netcfgd-", env!("CARGO_PKG_VERSION"));
/// NetworkChange signals go out at most SIGNAL_BATCH per SIGNAL_TICK
/// (6,400 a second): a few ms of the bus daemon's time per batch.
const SIGNAL_BATCH: usize = 32;
const SIGNAL_TICK: std::time::Duration = std::time::Duration::from_millis(5);

pub struct Subscription {
    pub mask: u32,
    pub uid: u32,
}

pub struct Daemon {
    pub cfg: Config,
    pub bus: Bus,
    pub kernel: crate::apply::Kernel,
    /// Device objects by object path.
    pub devices: BTreeMap<String, Device>,
    /// NetworkChange subscribers by unique bus name.
    pub subs: BTreeMap<String, Subscription>,
    pub log_level: u32,
    pub dns: crate::dns::Dns,
    /// What ProtectSocket installed, by owner.
    pub protections: Vec<crate::protect::Protection>,
    /// The fwmark method's rules, shared by all protections.
    pub fw_rules: crate::journal::Journal,
    /// Tun links of destroyed devices, left for their clients to close.
    pub orphans: crate::journal::Journal,
    /// The UID each orphaned link (by ifindex) counts against: its tun
    /// device lives on while its client holds the fd.
    orphan_owners: BTreeMap<u32, u32>,
    /// DCO (issue 6): the resolved generic-netlink family and its sockets.
    pub dco: Option<crate::dco_session::DcoKernel>,
    /// Owner and ACL of devices being removed, so their last events still
    /// reach exactly the UIDs that saw them.
    pub(crate) departed: BTreeMap<String, (u32, Vec<u32>)>,
    /// The kernel's link and route notifications (src/watch.rs).
    pub(crate) watch: crate::watch::Watch,
    /// NetworkChange signals not yet handed to libdbus (see `pace_signals`).
    signals: std::cell::RefCell<std::collections::VecDeque<QueuedSignal>>,
    /// When the last batch of them went out.
    signals_sent: std::time::Instant,
    log_owner: Option<String>,
    /// Calls whose senders' credentials are being asked for, in arrival
    /// order per sender (see `creds_gate`).
    awaiting_creds: BTreeMap<String, std::collections::VecDeque<Message>>,
    quit: bool,
    sigfd: SignalFd,
    timer: TimerFd,
    timer_armed: bool,
}

/// Runs the service until a signal, idle exit or bus loss; returns the exit code.
pub fn run(cfg: Config, state: crate::state::State) -> i32 {
    match Daemon::start(cfg, state) {
        Ok(mut d) => d.main_loop(),
        Err(e) => {
            log::error!("{e}");
            3
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP come through the returned signalfd; SIGPIPE
/// is blocked.
fn signal_fd() -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(|e| Error::errno("sigprocmask", e))?;
    // SIGPIPE would kill us when a peer goes away mid-write; blocked, it
    // turns into EPIPE. (std::process::Command resets the mask in children.)
    let mut pipe = SigSet::empty();
    pipe.add(Signal::SIGPIPE);
    pipe.thread_block().map_err(|e| Error::errno("sigprocmask", e))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(|e| Error::errno("signalfd", e))
}

/// Which of the loop's fds poll(2) found ready (the bus is always drained).
struct Ready {
    signal: bool,
    timer: bool,
    watch: bool,
    dco: bool,
    dns: bool,
}

/// poll(2)'s timeout for `deadline`, rounded up: waking a little early
/// would spin until the deadline.
fn poll_timeout(deadline: Option<std::time::Instant>) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(t) => {
            let us = t.saturating_duration_since(std::time::Instant::now()).as_micros();
            let ms = us.div_ceil(1000).min(60_000) as u16;
            PollTimeout::from(ms)
        }
    }
}

impl Daemon {
    fn start(cfg: Config, state: crate::state::State) -> Result<Self> {
        let sigfd = signal_fd()?;
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)
            .map_err(|e| Error::errno("timerfd", e))?;
        let rtnl = Socket::open()?;
        let watch = crate::watch::Watch::open()?;
        // DCO (issue 6): resolve the family while we still hold every capability.
        let dco = crate::dco_session::DcoKernel::probe();
        match &dco {
            Some(k) => log::info!("DCO: generic netlink family {} (id {})", k.family(), k.genl.id()),
            None => log::info!("DCO: neither the ovpn nor the ovpn-dco-v2 family is available"),
        }
        // Sockets are open; from here on only the needed capabilities remain.
        // The bus connection is made after, so the service user owns the name.
        crate::privs::drop_privileges(&cfg).map_err(Error::Failed)?;

        // When a bus activated us, answer on that bus.
        let address = cfg.bus_address.clone().or_else(|| std::env::var("DBUS_STARTER_ADDRESS").ok());
        let bus = Bus::connect(address.as_deref())?;
        let log_level = cfg.log_level;
        let dns = crate::dns::Dns::new(state.dns).with_dnsmasq_servers(&cfg.dnsmasq_servers);
        let mut d = Daemon {
            cfg,
            bus,
            kernel: crate::apply::Kernel {
                rtnl,
                wal: crate::journal::Wal::memory(),
                shared: crate::shared::Shared::default(),
            },
            devices: BTreeMap::new(),
            subs: BTreeMap::new(),
            log_level,
            dns,
            protections: Vec::new(),
            fw_rules: crate::journal::Journal::default(),
            orphans: crate::journal::Journal::default(),
            orphan_owners: BTreeMap::new(),
            dco,
            departed: BTreeMap::new(),
            watch,
            signals: Default::default(),
            signals_sent: std::time::Instant::now(),
            log_owner: None,
            awaiting_creds: BTreeMap::new(),
            quit: false,
            sigfd,
            timer,
            timer_armed: false,
        };
        d.come_up(state.journals)?;
        Ok(d)
    }

    /// The last steps of start-up, in this order: the name watch, the
    /// recovery of what a predecessor left, DNS, and only then the name.
    fn come_up(&mut self, journals: [std::fs::File; 2]) -> Result<()> {
        // Our objects answer from the first message on (they are dispatched
        // by path, not registered), so asking for the name last means no
        // caller can reach us before we can answer.
        self.bus.add_match(
            "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged'",
        )?;
        self.log_owner = self.bus.name_owner(LOG_SERVICE);
        // Another instance would own the name: leave its state alone.
        if self.bus.name_owner(BUS_NAME).is_some() {
            return Err(Error::Failed(format!("{BUS_NAME} is already running")));
        }
        // Undo what a killed predecessor left behind (kernel, then DNS)
        // before anyone can reach us; the DNS backend is chosen after its
        // recovery.
        self.recover_kernel(journals)?;
        self.dns.start(&self.cfg.dns, &self.bus);
        crate::privs::fit_to_dns(&self.cfg, self.dns.backend_name()).map_err(Error::Failed)?;
        self.bus.request_name(BUS_NAME)?;
        log::info!(
            "{VERSION} ready on {} as {BUS_NAME} (redirect method {}, DNS backend {}, log level {})",
            self.bus.unique_name(),
            self.cfg.redirect.as_str(),
            self.dns.backend_name(),
            self.log_level
        );
        Ok(())
    }

    fn recover_kernel(&mut self, files: [std::fs::File; 2]) -> Result<()> {
        let (wal, leftover) = crate::journal::Wal::open(files);
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
        self.kernel.wal.start()
    }

    /// Every journal entry not yet undone, in all the places that hold them.
    fn live_entries(&self) -> Vec<&crate::journal::Entry> {
        let devices = self.devices.values().map(|d| &d.journal);
        let journals = devices.chain([&self.fw_rules, &self.orphans]).flat_map(|j| j.entries());
        journals.chain(self.kernel.shared.entries()).collect()
    }

    fn main_loop(&mut self) -> i32 {
        let mut code = 0;
        loop {
            if !self.drain_bus() {
                self.quit = true;
                code = 3;
            }
            if self.quit {
                break;
            }
            if self.kernel.wal.wants_compaction() {
                let mut wal = std::mem::replace(&mut self.kernel.wal, crate::journal::Wal::memory());
                wal.compact(&self.live_entries());
                self.kernel.wal = wal;
            }
            self.update_idle_timer();
            let ready = match self.wait() {
                Ok(r) => r,
                Err(e) => {
                    log::error!("poll: {e}");
                    code = 3;
                    break;
                }
            };
            self.serve(ready);
            if self.quit {
                break;
            }
        }
        if !self.shutdown() && code == 0 {
            code = 4;
        }
        code
    }

    /// Drains libdbus completely before sleeping: a blocking call made by
    /// a handler may have queued messages that poll() cannot see. False
    /// when the connection is lost.
    fn drain_bus(&mut self) -> bool {
        loop {
            if !self.bus.pump() {
                log::error!("lost the D-Bus connection");
                return false;
            }
            let mut any = false;
            while let Some(m) = self.bus.pop() {
                any = true;
                self.handle(m);
            }
            self.flush_log_signals();
            self.pace_signals();
            if !any {
                return true;
            }
        }
    }

    /// One poll(2) over every fd of the loop, until the nearest deadline.
    fn wait(&mut self) -> nix::Result<Ready> {
        let bus_fd = crate::sys::borrow_fd(self.bus.fd());
        let mut bus_ev = PollFlags::POLLIN;
        if self.bus.wants_write() {
            bus_ev |= PollFlags::POLLOUT;
        }
        let mut fds = vec![
            PollFd::new(bus_fd, bus_ev),
            PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.timer.as_fd(), PollFlags::POLLIN),
            PollFd::new(crate::sys::borrow_fd(self.watch.fd()), PollFlags::POLLIN),
        ];
        // DCO (issue 6): the peers notification socket, pipes with records waiting.
        let dco_fds = self.dco_poll_fds();
        fds.extend(dco_fds.iter().map(|(fd, ev)| PollFd::new(crate::sys::borrow_fd(*fd), *ev)));
        // A DNS apply in flight (resolvconf's child): last in the set.
        let dns = self.dns.fd().map(|fd| fds.push(PollFd::new(fd, PollFlags::POLLIN))).is_some();
        // Queued signals: wake for their next tick.
        let signal_tick = (!self.signals.get_mut().is_empty()).then(|| self.signals_sent + SIGNAL_TICK);
        let deadline = [self.dns.deadline(), signal_tick, self.watch.deadline()].into_iter().flatten().min();
        match poll(&mut fds, poll_timeout(deadline)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        let readable = |f: &PollFd| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
        let dns = dns && fds.pop().is_some_and(|f| f.revents().is_some_and(|r| !r.is_empty()));
        Ok(Ready {
            signal: readable(&fds[1]),
            timer: readable(&fds[2]),
            watch: readable(&fds[3]),
            dco: fds[4..].iter().any(|f| f.revents().is_some_and(|r| !r.is_empty())),
            dns,
        })
    }

    /// Serves what `wait` found ready, then the DNS backend's fd and deadline.
    fn serve(&mut self, ready: Ready) {
        if ready.dco {
            self.dco_service();
        }
        self.watch_service(ready.watch);
        if ready.signal {
            self.on_signals();
        }
        if ready.timer {
            let _ = self.timer.wait();
            if self.is_idle() {
                log::info!("idle for {} s, exiting", self.cfg.idle_exit.as_secs());
                self.quit = true;
            }
        }
        let changes = self.dns.service(&self.bus, ready.dns);
        self.dns_finished(changes);
    }

    /// Announces what a DNS apply that ran in the background changed. The
    /// ACLs of devices removed meanwhile were kept for these events.
    fn dns_finished(&mut self, changes: Vec<crate::dns::Change>) {
        for (path, dev, e) in changes {
            self.emit_events(&path, &dev, vec![e]);
        }
        let dns = &self.dns;
        self.departed.retain(|p, _| dns.lists(p));
    }

    fn on_signals(&mut self) {
        while let Ok(Some(si)) = self.sigfd.read_signal() {
            match Signal::try_from(si.ssi_signo as i32) {
                Ok(Signal::SIGHUP) => {
                    log::info!("SIGHUP: reopening the log file");
                    crate::logging::reopen_file();
                }
                Ok(s) => {
                    log::info!("{s}: shutting down");
                    self.quit = true;
                }
                Err(_) => {}
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.devices.is_empty() && self.subs.is_empty()
    }

    fn update_idle_timer(&mut self) {
        let want = !self.cfg.idle_exit.is_zero() && self.is_idle();
        if want && !self.timer_armed {
            let t = TimeSpec::from(self.cfg.idle_exit);
            if self.timer.set(Expiration::OneShot(t), TimerSetTimeFlags::empty()).is_ok() {
                self.timer_armed = true;
            }
        } else if !want && self.timer_armed {
            let _ = self.timer.unset();
            self.timer_armed = false;
        }
    }

    /// Re-arms the idle timer: any call counts as activity.
    fn touch(&mut self) {
        if self.timer_armed {
            let _ = self.timer.unset();
            self.timer_armed = false;
        }
    }

    /// Undoes every device and DNS change, then flushes what is left to
    /// send. False if DNS could not be restored.
    fn shutdown(&mut self) -> bool {
        let paths: Vec<String> = self.devices.keys().cloned().collect();
        for p in paths {
            self.remove_device(&p, "service shutdown", false);
        }
        let orphans = self.orphans.take_all();
        for f in crate::apply::undo(&mut self.kernel, orphans) {
            log::warn!("removing a device left to its client: {f}");
        }
        self.drop_protections(|_| true);
        let changes = self.dns.settle(&self.bus);
        self.dns_finished(changes);
        let ok = self.dns.shutdown(&self.bus);
        self.flush_log_signals();
        for q in self.signals.get_mut().drain(..) {
            if let Some(sig) = q.message() {
                self.bus.send(sig);
            }
        }
        self.bus.flush();
        ok
    }

    fn handle(&mut self, m: Message) {
        match m.msg_type() {
            MessageType::MethodCall => {
                self.touch();
                if let Some(m) = self.creds_gate(m) {
                    self.serve_call(&m);
                }
            }
            MessageType::Signal => self.on_bus_signal(&m),
            MessageType::MethodReturn | MessageType::Error => match self.bus.creds_answer(&m) {
                Some((sender, r)) => self.creds_known(&sender, r),
                None => {
                    self.dns.on_reply(&self.bus, &m);
                }
            },
        }
    }

    fn serve_call(&mut self, m: &Message) {
        if let Some(r) = self.dispatch(m) {
            if !m.get_no_reply() {
                self.bus.send(r);
            }
        }
    }

    /// Passes a call on once its sender's credentials are known. Until
    /// then they are asked for without blocking the loop, and the call
    /// (with any that follow from the same sender, in order) waits.
    fn creds_gate(&mut self, m: Message) -> Option<Message> {
        use crate::limits::{CALLS_AWAITING_CREDS, SENDERS_AWAITING_CREDS};
        let Some(sender) = m.sender().map(|s| s.to_string()) else {
            return Some(m);
        };
        if let Some(q) = self.awaiting_creds.get_mut(&sender) {
            if q.len() < CALLS_AWAITING_CREDS {
                q.push_back(m);
            } else {
                self.refuse(&m, "too many calls waiting for this caller's credentials");
            }
            return None;
        }
        if self.bus.cached_creds(&sender).is_some() {
            return Some(m);
        }
        if self.awaiting_creds.len() >= SENDERS_AWAITING_CREDS {
            self.refuse(&m, "too many callers' credentials being looked up");
            return None;
        }
        match self.bus.ask_creds(&sender) {
            Ok(()) => {
                self.awaiting_creds.insert(sender, std::collections::VecDeque::from([m]));
            }
            Err(e) => self.refuse(&m, &e.to_string()),
        }
        None
    }

    /// The bus daemon answered about `sender`: its waiting calls are served
    /// in order, or refused if it has no credentials (it left the bus).
    fn creds_known(&mut self, sender: &str, r: Result<conn::Creds>) {
        let Some(calls) = self.awaiting_creds.remove(sender) else {
            return;
        };
        for m in calls {
            match &r {
                Ok(_) => self.serve_call(&m),
                Err(e) => self.refuse(&m, &e.to_string()),
            }
        }
    }

    fn refuse(&mut self, m: &Message, why: &str) {
        if let Some(r) = conn::error_reply(m, &Error::Failed(why.to_string())) {
            if !m.get_no_reply() {
                self.bus.send(r);
            }
        }
    }

    fn on_bus_signal(&mut self, m: &Message) {
        if m.member().as_deref() != Some("NameOwnerChanged") || m.sender().as_deref() != Some("org.freedesktop.DBus") {
            return;
        }
        let Ok((name, _old, new)) = m.read3::<String, String, String>() else {
            return;
        };
        if name == LOG_SERVICE {
            self.log_owner = if new.is_empty() { None } else { Some(new) };
            return;
        }
        if !name.starts_with(':') {
            self.dns.on_name_owner(&self.bus, &name, &new);
            return;
        }
        if !new.is_empty() {
            return;
        }
        // A client left the bus: its devices and subscription go with it.
        let gone: Vec<String> =
            self.devices.iter().filter(|(_, d)| d.owner_bus == name).map(|(p, _)| p.clone()).collect();
        for p in gone {
            self.remove_device(&p, &format!("its creator {name} left the bus"), false);
        }
        self.drop_protections(|o| matches!(o, crate::shared::Owner::Client { bus, .. } if *bus == name));
        self.watch.forget_owner(&name);
        if self.subs.remove(&name).is_some() {
            log::info!("subscriber {name} left the bus; subscription removed");
        }
        self.bus.forget(&name);
    }

    fn dispatch(&mut self, m: &Message) -> Option<Message> {
        let path = m.path().map(|p| p.to_string()).unwrap_or_default();
        let iface = m.interface().map(|i| i.to_string());
        let member = m.member().map(|s| s.to_string()).unwrap_or_default();
        let obj = self.classify(&path);
        let r = match (iface.as_deref(), member.as_str()) {
            (Some("org.freedesktop.DBus.Peer") | None, "Ping") => Ok(m.method_return()),
            (Some("org.freedesktop.DBus.Peer") | None, "GetMachineId") => {
                let id = std::fs::read_to_string("/etc/machine-id")
                    .or_else(|_| std::fs::read_to_string("/var/lib/dbus/machine-id"))
                    .unwrap_or_default();
                Ok(m.method_return().append1(id.trim()))
            }
            _ if matches!(obj, Obj::None) => {
                if let Some(r) = self.gone_reply(m, &path) {
                    return Some(r);
                }
                return Some(conn::std_error(
                    m,
                    "org.freedesktop.DBus.Error.UnknownObject",
                    &format!("Object does not exist at path '{path}'"),
                ));
            }
            (Some("org.freedesktop.DBus.Introspectable") | None, "Introspect") => {
                // The manager lists only the devices the caller may see.
                let uid = self.caller(m).map(|(_, c)| c.uid).ok();
                Ok(m.method_return().append1(self.introspect(&obj, uid)))
            }
            (Some("org.freedesktop.DBus.Properties"), _) => return self.properties(m, &obj, &member),
            (Some(IFACE) | None, _) => match &obj {
                Obj::Manager => self.manager_call(m, &member),
                Obj::Device(p) => self.device_call(m, p, &member),
                Obj::Dco(p) => self.dco_call(m, p, &member),
                _ => Err(Error::NotFound(String::new())),
            },
            _ => Err(Error::NotFound(String::new())),
        };
        match r {
            Ok(reply) => Some(reply),
            Err(Error::NotFound(s)) if s.is_empty() => Some(conn::std_error(
                m,
                "org.freedesktop.DBus.Error.UnknownMethod",
                &format!("No such method '{member}' on interface '{}' at '{path}'", iface.unwrap_or_default()),
            )),
            Err(e) => {
                log::debug!("{path} {member}: {e}");
                conn::error_reply(m, &e)
            }
        }
    }

    pub(crate) fn classify(&self, path: &str) -> Obj {
        match path {
            "/" => return Obj::Intermediate("net"),
            "/net" => return Obj::Intermediate("openvpn"),
            "/net/openvpn" => return Obj::Intermediate("v3"),
            "/net/openvpn/v3" => return Obj::Intermediate("netcfg"),
            MANAGER_PATH => return Obj::Manager,
            _ => {}
        }
        if self.devices.contains_key(path) {
            return Obj::Device(path.to_string());
        }
        if let Some(dev) = path.strip_suffix("/dco") {
            if self.devices.get(dev).is_some_and(|d| self.has_dco(d)) {
                return Obj::Dco(dev.to_string());
            }
        }
        Obj::None
    }

    fn introspect(&self, obj: &Obj, uid: Option<u32>) -> String {
        use crate::bus::introspect::{xml, Node};
        match obj {
            Obj::Intermediate(c) => xml(Node::Intermediate { child: c }),
            Obj::Manager => {
                let kids: Vec<String> = self
                    .devices
                    .values()
                    .filter(|d| uid.is_some_and(|u| d.may(u)))
                    .filter_map(|d| d.path.strip_prefix(MANAGER_PATH).map(|s| s.trim_start_matches('/').to_string()))
                    .collect();
                xml(Node::Manager { children: &kids })
            }
            Obj::Device(p) => xml(Node::Device { has_dco: self.devices.get(p).is_some_and(|d| self.has_dco(d)) }),
            Obj::Dco(_) => xml(Node::Dco),
            Obj::None => String::new(),
        }
    }

    /// Removes a device object and everything it made in the kernel.
    ///
    /// With `client_closes`, a tun device is left to the client, which the
    /// API asks to close its tun fd after Destroy (the kernel then removes
    /// the device; deleting it ourselves costs an RCU grace period, ~20 ms).
    /// It is kept in `orphans` and deleted at shutdown if still there.
    pub(crate) fn remove_device(&mut self, path: &str, why: &str, client_closes: bool) {
        let Some(mut d) = self.devices.remove(path) else {
            return;
        };
        // A DCO netdev has no client fd keeping it: it is always deleted.
        let keep_link = client_closes && d.dco.is_none();
        self.dco_release(&mut d); // DCO (issue 6): peers first; the journal deletes the netdev
        let events = d.teardown(&mut self.kernel, !keep_link);
        if keep_link {
            for e in d.journal.take_all().into_iter().rev() {
                if let crate::journal::Undo::DelLink { ifindex, .. } = &e.undo {
                    self.orphan_owners.insert(*ifindex, d.owner_uid);
                }
                self.orphans.push(e);
            }
        }
        self.prune_orphans();
        if self.devices.is_empty() {
            crate::sys::trim_heap();
        }
        self.drop_protections(|o| *o == crate::shared::Owner::Device(path.to_string()));
        self.departed.insert(d.path.clone(), (d.owner_uid, d.acl.clone()));
        self.emit_notices(&d.path, &d.name, events);
        log::info!("device {path} ({}) removed: {why}", d.name);
        self.dns_sync();
        // Its DNS events may come when a DNS apply finishes (`dns_finished`).
        if !self.dns.lists(&d.path) {
            self.departed.remove(&d.path);
        }
    }

    /// Forgets orphaned tun links that their clients have closed.
    fn prune_orphans(&mut self) {
        let gone: Vec<crate::journal::Entry> = self.orphans.take_all();
        let (alive, closed): (Vec<_>, Vec<_>) = gone.into_iter().partition(|e| match &e.undo {
            crate::journal::Undo::DelLink { ifindex, name } => {
                crate::netlink::link::name_of(*ifindex).as_deref() == Some(name.as_str())
            }
            _ => false,
        });
        // Entries for links that are gone need no undo; this only clears them
        // from the journal file.
        crate::apply::undo(&mut self.kernel, closed);
        let alive_links: Vec<u32> = alive
            .iter()
            .filter_map(|e| match &e.undo {
                crate::journal::Undo::DelLink { ifindex, .. } => Some(*ifindex),
                _ => None,
            })
            .collect();
        self.orphan_owners.retain(|i, _| alive_links.contains(i));
        for e in alive.into_iter().rev() {
            self.orphans.push(e);
        }
    }

    /// Pushes every active session's DNS settings to the DNS backend and
    /// announces what changed. Called after anything that changes them.
    pub(crate) fn dns_sync(&mut self) {
        let sessions: Vec<crate::dns::Session> = self
            .devices
            .values()
            .filter(|d| d.active)
            .filter_map(|d| {
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
            })
            .collect();
        for (path, dev, e) in self.dns.update(&self.bus, &sessions) {
            self.emit_events(&path, &dev, vec![e]);
        }
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
    /// the event `kinds`, by unique bus name.
    fn audience(&self, path: &str, kinds: u32) -> Vec<&str> {
        self.subs
            .iter()
            .filter(|(_, s)| s.mask & kinds != 0 && self.may_see(path, s.uid))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Announces configurations coming or going; the events are only made
    /// when some subscriber who may see the device wants their kinds.
    pub(crate) fn emit_notices(&self, path: &str, device: &str, notices: Vec<crate::plan::Notice>) {
        for n in notices {
            if !self.audience(path, n.kinds()).is_empty() {
                self.emit_events(path, device, n.events());
            }
        }
    }

    /// Sends NetworkChange signals, each one unicast to the subscribers
    /// whose mask matches and who may see the device.
    pub(crate) fn emit_events(&self, path: &str, device: &str, events: Vec<Event>) {
        // Who may see the device is asked once, not once per event.
        let viewers: Vec<(&str, u32)> =
            self.subs.iter().filter(|(_, s)| self.may_see(path, s.uid)).map(|(n, s)| (n.as_str(), s.mask)).collect();
        for e in events {
            let e = std::rc::Rc::new((path.to_string(), device.to_string(), e));
            for (name, _) in viewers.iter().filter(|(_, mask)| mask & e.2.kind != 0) {
                self.queue_signal(QueuedSignal { event: e.clone(), to: name.to_string() });
            }
        }
    }

    /// Queues a NetworkChange signal. An Establish of many routes makes
    /// thousands; handed to libdbus at once, they would sit in the one
    /// outgoing queue ahead of every other client's reply.
    fn queue_signal(&self, sig: QueuedSignal) {
        let mut q = self.signals.borrow_mut();
        if q.len() >= crate::limits::SIGNALS_QUEUED {
            log::debug!("NetworkChange: queue full, a signal to {} dropped", sig.to);
            return;
        }
        q.push_back(sig);
        if q.len() == crate::limits::SIGNALS_QUEUED {
            log::warn!("NetworkChange: {} signals wait to be sent; more are dropped until they drain", q.len());
        }
    }

    /// Hands queued signals to libdbus a batch per tick, and only when its
    /// outgoing queue is empty: the bus daemon forwards our messages in
    /// order, so a reply to another client never waits behind more than
    /// one batch. Signal delivery is the background work, not the replies.
    fn pace_signals(&mut self) {
        if self.bus.wants_write() || self.signals_sent.elapsed() < SIGNAL_TICK {
            return;
        }
        let q = self.signals.get_mut();
        // Built here, not when queued: marshalling thousands of messages
        // is itself the work that would keep other clients waiting.
        for sig in q.drain(..q.len().min(SIGNAL_BATCH)).filter_map(|q| q.message()) {
            self.bus.send(sig);
        }
        self.signals_sent = std::time::Instant::now();
    }

    /// Sends queued log records as Log signals to the log service, as the
    /// reference does. Without one they are not sent: they name devices,
    /// addresses and servers of every user, and a broadcast would show
    /// them to anyone listening (they are in the daemon's own log anyway).
    fn flush_log_signals(&mut self) {
        let records = crate::logging::drain();
        let Some(o) = &self.log_owner else { return };
        for (cat, msg) in records {
            let Ok(mut sig) = Message::new_signal(MANAGER_PATH, IFACE, "Log") else {
                continue;
            };
            sig = sig.append3(8u32, cat, msg);
            sig.set_destination(Some(o.as_str().into()));
            self.bus.send(sig);
        }
    }

    /// The ifindexes of every link we configure (never "the host's route").
    pub(crate) fn our_links(&self) -> Vec<u32> {
        self.devices.values().filter_map(|d| d.link.as_ref().map(|l| l.0)).collect()
    }

    /// PropertiesChanged: broadcast for the manager; for a device, unicast
    /// to its owner's connection, the setter and the subscribers who may
    /// see it (a broadcast would show its settings to every listener).
    pub(crate) fn props_changed(&self, path: &str, setter: &str, name: &str, value: Box<dyn RefArg>) {
        let mut changed = PropMap::new();
        changed.insert(name.to_string(), Variant(value));
        let Ok(sig) = Message::new_signal(path, "org.freedesktop.DBus.Properties", "PropertiesChanged") else {
            return;
        };
        let sig = sig.append3(IFACE, changed, Vec::<String>::new());
        let Some(d) = self.devices.get(path) else {
            self.bus.send(sig);
            return;
        };
        let mut to: Vec<&str> = self.audience(path, u32::MAX);
        to.extend([d.owner_bus.as_str(), setter]);
        to.sort_unstable();
        to.dedup();
        for name in to.into_iter().filter(|n| !n.is_empty()) {
            let Ok(mut m) = sig.duplicate() else { continue };
            m.set_destination(Some(name.into()));
            self.bus.send(m);
        }
    }

    pub(crate) fn caller(&mut self, m: &Message) -> Result<(String, conn::Creds)> {
        let sender = m.sender().map(|s| s.to_string()).ok_or_else(|| Error::Failed("message has no sender".into()))?;
        let c = self.bus.creds(&sender)?;
        Ok((sender, c))
    }

    /// Whether `uid` may create one more device: its own share first,
    /// then the daemon-wide safety cap. Tun links left to their clients
    /// after Destroy count until they are closed: otherwise a client could
    /// keep creating, establishing and destroying, and hold any number.
    pub(crate) fn check_device_limits(&mut self, uid: u32) -> Result<()> {
        use crate::limits::{DEVICES_PER_UID, DEVICES_TOTAL};
        let held = |me: &Self| {
            me.devices.values().filter(|d| d.owner_uid == uid).count()
                + me.orphan_owners.values().filter(|u| **u == uid).count()
        };
        if held(self) >= DEVICES_PER_UID {
            self.prune_orphans();
        }
        let mine = held(self);
        if mine >= DEVICES_PER_UID {
            return Err(Error::Failed(format!(
                "uid {uid} already owns {mine} devices (limit {DEVICES_PER_UID} per user)"
            )));
        }
        if self.devices.len() >= DEVICES_TOTAL {
            return Err(Error::Failed(format!("too many devices (limit {DEVICES_TOTAL} in all)")));
        }
        Ok(())
    }

    /// Networks held by the devices `uid` owns.
    pub(crate) fn networks_of(&self, uid: u32) -> usize {
        self.devices.values().filter(|d| d.owner_uid == uid).map(|d| d.settings.networks.len()).sum()
    }

    /// Whether `uid` may add one more subscription.
    pub(crate) fn check_sub_limits(&self, uid: u32) -> Result<()> {
        use crate::limits::{SUBSCRIPTIONS_PER_UID, SUBSCRIPTIONS_TOTAL};
        let mine = self.subs.values().filter(|s| s.uid == uid).count();
        if mine >= SUBSCRIPTIONS_PER_UID {
            return Err(Error::Failed(format!(
                "uid {uid} already has {mine} subscriptions (limit {SUBSCRIPTIONS_PER_UID} per user)"
            )));
        }
        if self.subs.len() >= SUBSCRIPTIONS_TOTAL {
            return Err(Error::Failed(format!("too many subscribers (limit {SUBSCRIPTIONS_TOTAL} in all)")));
        }
        Ok(())
    }
}

/// A NetworkChange for one subscriber: (device path, device name, event),
/// shared by all its recipients, and the recipient's unique name.
struct QueuedSignal {
    event: std::rc::Rc<(String, String, Event)>,
    to: String,
}

impl QueuedSignal {
    fn message(&self) -> Option<Message> {
        let (path, device, e) = &*self.event;
        let details: std::collections::HashMap<&str, &str> = e.details.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut sig = Message::new_signal(path.as_str(), IFACE, "NetworkChange").ok()?.append3(e.kind, device, details);
        sig.set_destination(Some(self.to.as_str().into()));
        Some(sig)
    }
}

pub enum Obj {
    Intermediate(&'static str),
    Manager,
    Device(String),
    Dco(String),
    None,
}
