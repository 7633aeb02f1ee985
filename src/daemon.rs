//! The loop: one thread, one poll(2) over the D-Bus connection, the
//! signalfd, the idle timerfd, the kernel's notifications, the DCO sockets
//! and pipes, and a DNS child. Every handler runs to completion before the
//! next message is read; what a handler may not wait for (a caller's
//! credentials, a resolvconf child) comes back through this loop.

use std::os::fd::AsFd;
use std::time::Instant;

use dbus::message::MessageType;
use dbus::Message;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::config::Config;
use crate::conn::Bus;
use crate::error::{Error, Result};
use crate::sessions::Sessions;
use crate::sys::borrow_fd;

pub struct Daemon {
    s: Sessions,
    sigfd: SignalFd,
    timer: TimerFd,
    timer_armed: bool,
}

/// Runs the service until a signal, idle exit or bus loss; returns the exit code.
pub fn run(cfg: Config, state: crate::state::State) -> i32 {
    let Ok(mut d) = Daemon::start(cfg, state).inspect_err(|e| log::error!("{e}")) else { return 3 };
    let code = loop {
        if let Some(code) = d.turn() {
            break code;
        }
    };
    d.s.finish_op();
    match d.s.shutdown() {
        false if code == 0 => 4,
        _ => code,
    }
}

/// What an fd in the loop's poll set is for.
#[derive(Clone, Copy, PartialEq)]
enum Fd {
    Bus,
    Signal,
    Timer,
    /// A pending operation's answers (the kernel's notifications wait
    /// until it is complete).
    Ops,
    /// The kernel's notifications.
    Watch,
    /// The request socket: anything queued between requests is unasked.
    Rtnl,
    /// The DCO peers notification socket, pipes with records waiting.
    Dco,
    /// A DNS apply in flight (resolvconf's child).
    Dns,
}

impl Daemon {
    fn start(cfg: Config, state: crate::state::State) -> Result<Self> {
        // SIGTERM, SIGINT and SIGHUP come through the signalfd.
        let mask = SigSet::from(Signal::SIGTERM) | Signal::SIGINT | Signal::SIGHUP;
        mask.thread_block().map_err(|e| Error::errno("sigprocmask", e))?;
        // SIGPIPE would kill us when a peer goes away mid-write; blocked, it
        // turns into EPIPE. (std::process::Command resets the mask in children.)
        SigSet::from(Signal::SIGPIPE).thread_block().map_err(|e| Error::errno("sigprocmask", e))?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| Error::errno("signalfd", e))?;
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)
            .map_err(|e| Error::errno("timerfd", e))?;
        let mut kernel = crate::apply::Kernel {
            rtnl: crate::netlink::Socket::open()?,
            ops: crate::netlink::Socket::open()?,
            // Replaced by the journal files' once `come_up` has read them.
            wal: crate::journal::Wal::memory(),
            shared: Default::default(),
        };
        let watch = crate::sessions::watch::Watch::open()?;
        // The DCO family is resolved while we still hold every capability.
        let dco = crate::dco_session::DcoKernel::probe();
        match &dco {
            Some(k) => log::info!("DCO: generic netlink family {} (id {})", k.genl.family, k.genl.id),
            None => log::info!("DCO: neither the ovpn nor the ovpn-dco-v2 family is available"),
        }
        // Sockets are open; from here on only the needed capabilities remain.
        // The bus connection is made after, so the service user owns the name.
        crate::privs::drop_privileges(&cfg, state.run_as.as_ref()).map_err(Error::failed)?;
        // Forked now, small and with only those capabilities.
        if let Err(e) = kernel.ops.detach() {
            log::warn!("{e}; the first large change tries again");
        }

        // When a bus activated us, answer on that bus.
        let address = cfg.bus_address.clone().or_else(|| std::env::var("DBUS_STARTER_ADDRESS").ok());
        let bus = Bus::connect(address.as_deref())?;
        let dns = crate::dns::Dns::new(state.dns);
        let mut s = Sessions::new(cfg, bus, kernel, watch, dco, dns);
        s.come_up(state.journals)?;
        Ok(Daemon { s, sigfd, timer, timer_armed: false })
    }

    /// One turn of the loop: libdbus drained, one poll, then what it found
    /// ready served (the pending operation, the kernel's notifications,
    /// signals, the idle timer, DNS). The exit code once the loop ends.
    fn turn(&mut self) -> Option<i32> {
        if !self.drain_bus() {
            return Some(3);
        }
        self.s.compact_journal();
        self.idle_timer(!self.s.cfg.idle_exit.is_zero() && self.s.is_idle());
        let Ok(ready) = self.wait().inspect_err(|e| log::error!("poll: {e}")) else { return Some(3) };
        let is = |f| ready.contains(&f);
        if is(Fd::Rtnl) {
            self.s.kernel.rtnl.discard_unasked();
        }
        if is(Fd::Dco) {
            self.s.dco_service();
        }
        // The pending operation moves on; once it is complete, the calls and
        // signals held for it are handled in their order (until one of them
        // starts the next operation).
        self.s.advance_op(false);
        while let Some(m) = self.s.unhold() {
            match m.msg_type() {
                MessageType::Signal => self.on_bus_signal(&m),
                _ => self.answer(&m),
            }
        }
        // The network changing under a pending operation is looked at once
        // it is complete (its fd is not polled meanwhile).
        if self.s.op.is_none() {
            self.s.watch_service(is(Fd::Watch));
        }
        let mut quit = is(Fd::Signal) && self.on_signals();
        if is(Fd::Timer) {
            let _ = self.timer.wait();
            if self.s.is_idle() {
                log::info!("idle for {} s, exiting", self.s.cfg.idle_exit.as_secs());
                quit = true;
            }
        }
        let changes = self.s.dns.service(&self.s.bus, is(Fd::Dns));
        self.s.dns_finished(changes);
        quit.then_some(0)
    }

    /// Drains libdbus completely before sleeping: a blocking call made by
    /// a handler may have queued messages that poll() cannot see. False
    /// when the connection is lost.
    fn drain_bus(&mut self) -> bool {
        loop {
            if !self.s.bus.pump() {
                log::error!("lost the D-Bus connection");
                return false;
            }
            let mut any = false;
            while let Some(m) = self.s.bus.ch.pop_message() {
                any = true;
                self.handle(m);
            }
            self.s.flush_log_signals();
            self.s.pace_signals();
            if !any {
                return true;
            }
        }
    }

    /// One poll(2) over every fd of the loop, until the nearest deadline;
    /// the fds found ready (the bus is always drained).
    fn wait(&self) -> nix::Result<Vec<Fd>> {
        let mut bus_ev = PollFlags::POLLIN;
        bus_ev.set(PollFlags::POLLOUT, self.s.bus.ch.has_messages_to_send());
        let mut set = vec![
            (Fd::Bus, borrow_fd(self.s.bus.ch.watch().fd), bus_ev),
            (Fd::Signal, self.sigfd.as_fd(), PollFlags::POLLIN),
            (Fd::Timer, self.timer.as_fd(), PollFlags::POLLIN),
            (Fd::Rtnl, borrow_fd(self.s.kernel.rtnl.fd()), PollFlags::POLLIN),
        ];
        // While an operation runs, its batches' answers instead.
        match self.s.op {
            Some(_) => set
                .extend(self.s.kernel.ops.poll_fds().into_iter().map(|fd| (Fd::Ops, borrow_fd(fd), PollFlags::POLLIN))),
            None => set.push((Fd::Watch, borrow_fd(self.s.watch.fd()), PollFlags::POLLIN)),
        }
        set.extend(self.s.dco_poll_fds().into_iter().map(|(fd, ev)| (Fd::Dco, borrow_fd(fd), ev)));
        set.extend(self.s.dns.fd().map(|fd| (Fd::Dns, fd, PollFlags::POLLIN)));
        // Queued signals: wake for their next tick.
        let watch = self.s.op.is_none().then(|| self.s.watch.deadline()).flatten();
        // A pending operation that needs no answer goes on at once.
        let now = self.s.op_ready().then(Instant::now);
        let deadline = [self.s.dns.deadline(), self.s.signals.deadline(), watch, now].into_iter().flatten().min();
        // Rounded up: waking a little early would spin until the deadline.
        let ms = |t: Instant| t.saturating_duration_since(Instant::now()).as_micros().div_ceil(1000).min(60_000) as u16;
        let mut fds: Vec<PollFd> = set.iter().map(|(_, fd, ev)| PollFd::new(*fd, *ev)).collect();
        // A signal that interrupts the wait is read from the signalfd.
        poll(&mut fds, PollTimeout::from(deadline.map(ms)))
            .or_else(|e| if e == Errno::EINTR { Ok(0) } else { Err(e) })?;
        // Readable; for DCO and DNS, whose owners look at errors and
        // hang-ups themselves, any event.
        let ready = set.iter().zip(&fds).filter(|((what, ..), f)| {
            let want = if matches!(what, Fd::Dco | Fd::Dns) { PollFlags::all() } else { PollFlags::POLLIN };
            f.revents().is_some_and(|r| r.intersects(want))
        });
        Ok(ready.map(|((what, ..), _)| *what).collect())
    }

    /// Reads the signals that came; true if one asks to shut down.
    fn on_signals(&mut self) -> bool {
        let mut quit = false;
        while let Ok(Some(si)) = self.sigfd.read_signal() {
            match Signal::try_from(si.ssi_signo as i32) {
                Ok(Signal::SIGHUP) => {
                    log::info!("SIGHUP: reopening the log file");
                    crate::logging::reopen_file();
                }
                Ok(s) => {
                    log::info!("{s}: shutting down");
                    quit = true;
                }
                Err(_) => {}
            }
        }
        quit
    }

    /// Arms the idle timer (`want`) or stops it. Any call stops it; it is
    /// armed again before the next poll if the service is still idle.
    fn idle_timer(&mut self, want: bool) {
        if want && !self.timer_armed {
            let t = TimeSpec::from(self.s.cfg.idle_exit);
            self.timer_armed = self.timer.set(Expiration::OneShot(t), TimerSetTimeFlags::empty()).is_ok();
        } else if !want && self.timer_armed {
            let _ = self.timer.unset();
            self.timer_armed = false;
        }
    }

    fn handle(&mut self, m: Message) {
        match m.msg_type() {
            MessageType::MethodCall => {
                self.idle_timer(false);
                if let Some(m) = self.s.bus.creds_gate(m) {
                    self.serve_call(m);
                }
            }
            MessageType::Signal if self.s.must_wait(&m) => self.s.held.push_back(m),
            MessageType::Signal => self.on_bus_signal(&m),
            MessageType::MethodReturn | MessageType::Error => match self.s.bus.creds_answer(&m) {
                Some(calls) => calls.into_iter().for_each(|m| self.serve_call(m)),
                None => {
                    self.s.dns.on_reply(&self.s.bus, &m);
                }
            },
        }
    }

    /// Answers a call now, or holds it while a pending operation runs
    /// (see `sessions::ops`).
    fn serve_call(&mut self, m: Message) {
        if self.s.must_wait(&m) {
            match self.s.may_hold(&m) {
                Ok(()) => self.s.held.push_back(m),
                Err(e) => self.s.bus.refuse(&m, &format!("{e}; try again once the change in progress is done")),
            }
            return;
        }
        self.answer(&m);
    }

    fn answer(&mut self, m: &Message) {
        let r = crate::bus::dispatch(&mut self.s, m);
        self.s.bus.reply(m, r);
    }

    fn on_bus_signal(&mut self, m: &Message) {
        if m.member().as_deref() != Some("NameOwnerChanged") || m.sender().as_deref() != Some("org.freedesktop.DBus") {
            return;
        }
        let Ok((name, _old, new)) = m.read3::<String, String, String>() else { return };
        self.s.name_owner_changed(&name, &new);
    }
}
