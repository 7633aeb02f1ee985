//! Pending operations: the calls whose kernel work can be large
//! (Establish, Disable, ClearConfig, Destroy) send it a batch at a time on
//! the socket the loop polls (`Kernel::ops`). The loop answers other calls
//! between batches, reads a batch's answers when the socket is readable,
//! sends the next, and replies once the operation is complete.
//!
//! One operation runs at a time. While it runs, the calls that must see the
//! kernel as it leaves it wait in arrival order (`must_wait`): calls on its
//! device, calls that change the kernel, and clients leaving the bus. All
//! other calls are answered at once.

use std::os::fd::OwnedFd;

use dbus::Message;

use crate::conn;
use crate::device::Establishing;
use crate::error::{Error, Result};
use crate::plan::Notice;

use super::{Removal, Sessions};

/// Calls that change the kernel: they wait for a running operation.
const KERNEL_CALLS: &[&str] =
    &["Establish", "Disable", "ClearConfig", "Destroy", "EnableDCO", "ProtectSocket", "Cleanup"];

pub(crate) struct Op {
    /// A copy of the call, to answer it.
    call: Message,
    path: String,
    stage: Stage,
}

enum Stage {
    /// A second Establish: the previous configuration going first.
    Replacing { undo: crate::apply::Undoing, ignore: Vec<u32>, redirect: bool },
    /// Establish: the new configuration going in; `events` are the
    /// previous configuration's removal.
    Applying { est: Box<Establishing>, events: Vec<Notice> },
    /// Disable and ClearConfig: the configuration going, the device stays.
    Clearing { undo: crate::apply::Undoing, disable: bool },
    /// Destroy.
    Removing { r: Box<Removal>, why: String },
}

impl Sessions {
    /// Whether `m` must wait for the running operation (see the module doc).
    pub(crate) fn must_wait(&self, m: &Message) -> bool {
        let Some(op) = &self.op else { return false };
        let path = m.path().map(|p| p.to_string()).unwrap_or_default();
        let on = |p: &str| path == p || path.strip_suffix("/dco") == Some(p);
        let member = m.member();
        on(&op.path)
            || member.as_deref().is_some_and(|mb| KERNEL_CALLS.contains(&mb))
            || m.msg_type() == dbus::message::MessageType::Signal
            || self.held.iter().any(|h| h.path().is_some_and(|p| on(&p)))
    }

    pub(crate) fn hold(&mut self, m: Message) {
        self.held.push_back(m);
    }

    /// The next held message, once no operation runs.
    pub(crate) fn unhold(&mut self) -> Option<Message> {
        if self.op.is_some() {
            return None;
        }
        self.held.pop_front()
    }

    /// The fd the loop polls while an operation's batch waits for answers.
    pub(crate) fn op_fd(&self) -> Option<std::os::fd::RawFd> {
        self.op.as_ref().map(|_| self.kernel.ops.fd())
    }

    pub(crate) fn op_running(&self) -> bool {
        self.op.is_some()
    }

    /// Establish on `path` as a pending operation; the error if it fails
    /// before anything goes to the kernel in batches.
    pub(crate) fn begin_establish(&mut self, m: &Message, path: &str, ignore: Vec<u32>, redirect: bool) -> Result<()> {
        let d = self.devices.get_mut(path).ok_or_else(|| Error::NotFound(format!("no device at {path}")))?;
        let stage = match d.establish_teardown(&mut self.kernel) {
            Some(undo) => Stage::Replacing { undo, ignore, redirect },
            None => Stage::Applying {
                est: Box::new(d.establish_start(&mut self.kernel, &ignore, redirect)?),
                events: Vec::new(),
            },
        };
        self.begin(m, path, stage)
    }

    /// Disable or ClearConfig on `path` as a pending operation.
    pub(crate) fn begin_clear(&mut self, m: &Message, path: &str, disable: bool) -> Result<()> {
        let d = self.devices.get_mut(path).ok_or_else(|| Error::NotFound(format!("no device at {path}")))?;
        let undo = d.teardown_start(&mut self.kernel, false);
        self.begin(m, path, Stage::Clearing { undo, disable })
    }

    /// Destroy of `path` as a pending operation.
    pub(crate) fn begin_destroy(&mut self, m: &Message, path: &str, why: String) -> Result<()> {
        let r = self.removal_start(path, true).ok_or_else(|| Error::NotFound(format!("no device at {path}")))?;
        self.begin(m, path, Stage::Removing { r: Box::new(r), why })
    }

    fn begin(&mut self, m: &Message, path: &str, stage: Stage) -> Result<()> {
        let mut call = m.duplicate().map_err(|e| Error::Failed(format!("copying the call: {e}")))?;
        // A copy has no serial; the reply must name the call's.
        call.set_serial(m.get_serial().unwrap_or_default());
        self.op = Some(Op { call, path: path.to_string(), stage });
        self.advance_op();
        Ok(())
    }

    /// Moves the running operation on: reads its batch's answers if they
    /// are there and sends the next; replies when it is complete.
    pub(crate) fn advance_op(&mut self) {
        while let Some(mut op) = self.op.take() {
            match self.step(&op.path.clone(), op.stage) {
                Next::Wait(stage) => {
                    op.stage = stage;
                    self.op = Some(op);
                    return;
                }
                Next::Stage(stage) => {
                    op.stage = stage;
                    self.op = Some(op);
                }
                Next::Done(r) => self.answer(&op.call, r),
            }
        }
    }

    /// Runs the operation to the end (at shutdown).
    pub(crate) fn finish_op(&mut self) {
        self.advance_op();
        while let Some(op) = &mut self.op {
            let k = &mut self.kernel;
            match &mut op.stage {
                Stage::Replacing { undo, .. } | Stage::Clearing { undo, .. } => undo.wait(k),
                Stage::Removing { r, .. } => r.undo.wait(k),
                Stage::Applying { est, .. } => est.applying.wait(k),
            }
            self.advance_op();
        }
    }

    fn step(&mut self, path: &str, stage: Stage) -> Next {
        let k = &mut self.kernel;
        match stage {
            Stage::Replacing { mut undo, ignore, redirect } => {
                if !undo.advance(k) {
                    return Next::Wait(Stage::Replacing { undo, ignore, redirect });
                }
                let failed = undo.finish(k);
                let Some(d) = self.devices.get_mut(path) else { return Next::Done(Err(gone(path))) };
                let events = d.teardown_finish(failed, false);
                match d.establish_start(k, &ignore, redirect) {
                    Ok(est) => Next::Stage(Stage::Applying { est: Box::new(est), events }),
                    Err(e) => {
                        self.announce(path, events);
                        Next::Done(Err(e))
                    }
                }
            }
            Stage::Applying { mut est, mut events } => {
                if !est.applying.advance(k) {
                    return Next::Wait(Stage::Applying { est, events });
                }
                let Some(d) = self.devices.get_mut(path) else { return Next::Done(Err(gone(path))) };
                let r = d.establish_commit(k, *est);
                let r = r.map(|(fd, added, notes)| {
                    for n in notes {
                        log::warn!("{path}: {n}");
                    }
                    log::info!("{path}: established {}", d.name);
                    events.extend(added);
                    fd
                });
                self.announce(path, events);
                Next::Done(r)
            }
            Stage::Clearing { mut undo, disable } => {
                if !undo.advance(k) {
                    return Next::Wait(Stage::Clearing { undo, disable });
                }
                let failed = undo.finish(k);
                let Some(d) = self.devices.get_mut(path) else { return Next::Done(Err(gone(path))) };
                let events = d.teardown_finish(failed, false);
                // The client supplies its settings again before the next Establish.
                d.settings.addrs.clear();
                d.settings.networks.clear();
                if disable {
                    d.settings.dns_servers.clear();
                    d.settings.dns_search.clear();
                }
                log::info!("{path}: {}", if disable { "disabled" } else { "configuration cleared" });
                self.announce(path, events);
                Next::Done(Ok(None))
            }
            Stage::Removing { mut r, why } => {
                if !r.undo.advance(k) {
                    return Next::Wait(Stage::Removing { r, why });
                }
                self.removal_finish(*r, &why);
                Next::Done(Ok(None))
            }
        }
    }

    /// A configuration's events, then DNS.
    fn announce(&mut self, path: &str, events: Vec<Notice>) {
        let name = self.devices.get(path).map(|d| d.name.clone()).unwrap_or_default();
        self.emit_notices(path, &name, events);
        self.dns_sync();
    }

    fn answer(&mut self, call: &Message, r: Result<Option<OwnedFd>>) {
        if call.get_no_reply() {
            return;
        }
        let reply = match r {
            // A DCO device has no tun fd: the reply is empty (reference §7.2).
            Ok(Some(fd)) => Some(call.method_return().append1(fd)),
            Ok(None) => Some(call.method_return()),
            Err(e) => {
                log::debug!("{}: {e}", call.path().map(|p| p.to_string()).unwrap_or_default());
                conn::error_reply(call, &e)
            }
        };
        if let Some(m) = reply {
            self.bus.send(m);
        }
    }
}

enum Next {
    Wait(Stage),
    Stage(Stage),
    Done(Result<Option<OwnedFd>>),
}

fn gone(path: &str) -> Error {
    Error::NotFound(format!("no device at {path}"))
}
