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

use dbus::message::MessageType;
use dbus::Message;

use crate::conn;
use crate::device::{Establishing, Linked};
use crate::error::{Error, Result};
use crate::limits::NETWORKS_PER_TURN;
use crate::plan::Notice;

use super::{Removal, Sessions};

/// Calls that wait for a running operation wherever they go: the ones that
/// change the kernel, and AddNetworks (a long list is itself one).
const WAITING_CALLS: &[&str] =
    &["Establish", "Disable", "ClearConfig", "Destroy", "EnableDCO", "ProtectSocket", "Cleanup", "AddNetworks"];

pub(crate) struct Op {
    /// A copy of the call, to answer it.
    call: Message,
    path: String,
    stage: Stage,
    /// It can go on at once (it waits for no answer from the kernel).
    ready: bool,
}

enum Stage {
    /// A second Establish: the previous configuration going first.
    Replacing { undo: crate::apply::Undoing, est: Est },
    /// Establish: the link to make.
    Linking(Est),
    /// Establish: the plan to make.
    Planning { linked: Box<Linked>, est: Est },
    /// Establish: the new configuration going in.
    Applying { applying: Box<Establishing>, est: Est },
    /// Establish: the outcome to keep (or undo).
    Committing { applying: Box<Establishing>, est: Est },
    /// Disable and ClearConfig: the configuration going, the device stays.
    Clearing { undo: crate::apply::Undoing, disable: bool },
    /// Destroy.
    Removing { r: Box<Removal>, why: String },
    /// AddNetworks of a long list: `nets` decoded so far.
    Adding { nets: Vec<crate::settings::Network> },
}

/// What an Establish carries from stage to stage: our other links, whether
/// the default route is redirected, and the removal of the previous
/// configuration to announce.
struct Est {
    ignore: Vec<u32>,
    redirect: bool,
    events: Vec<Notice>,
}

impl Sessions {
    /// Whether `m` must wait for the running operation (see the module doc).
    pub(crate) fn must_wait(&self, m: &Message) -> bool {
        let Some(op) = &self.op else { return false };
        let path = m.path().map(|p| p.to_string()).unwrap_or_default();
        let on = |p: &str| path == p || path.strip_suffix("/dco") == Some(p);
        let member = m.member();
        on(&op.path)
            || member.as_deref().is_some_and(|mb| WAITING_CALLS.contains(&mb))
            || m.msg_type() == MessageType::Signal
            || self.held.iter().any(|h| h.path().is_some_and(|p| on(&p)))
    }

    /// Whether one more call of its caller's UID may be held: each UID has
    /// its share, so one user's flood cannot get every other user's calls
    /// refused while an operation runs.
    pub(crate) fn may_hold(&self, m: &Message) -> Result<()> {
        use crate::limits::{CALLS_HELD, CALLS_HELD_PER_UID};
        let uid_of = |m: &Message| m.sender().and_then(|s| self.bus.cached_creds(&s)).map(|c| c.uid);
        let uid = uid_of(m);
        let mine = self.held.iter().filter(|h| h.msg_type() == MessageType::MethodCall && uid_of(h) == uid).count();
        crate::limits::check_share(
            "held calls",
            uid.unwrap_or(u32::MAX),
            mine,
            CALLS_HELD_PER_UID,
            self.held.len(),
            CALLS_HELD,
        )
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
        let call = copy(m)?;
        let d = self.devices.get_mut(path).ok_or_else(|| gone(path))?;
        let est = Est { ignore, redirect, events: Vec::new() };
        let stage = match d.establish_teardown(&mut self.kernel) {
            Some(undo) => Stage::Replacing { undo, est },
            None => Stage::Linking(est),
        };
        self.begin(call, path, stage);
        Ok(())
    }

    /// Disable or ClearConfig on `path` as a pending operation.
    pub(crate) fn begin_clear(&mut self, m: &Message, path: &str, disable: bool) -> Result<()> {
        let call = copy(m)?;
        let d = self.devices.get_mut(path).ok_or_else(|| gone(path))?;
        let undo = d.teardown_start(&mut self.kernel, false);
        self.begin(call, path, Stage::Clearing { undo, disable });
        Ok(())
    }

    /// AddNetworks of a long list on `path` as a pending operation (its
    /// share is checked).
    pub(crate) fn begin_add_networks(&mut self, m: &Message, path: &str) -> Result<()> {
        let call = copy(m)?;
        self.begin(call, path, Stage::Adding { nets: Vec::new() });
        Ok(())
    }

    /// Destroy of `path` as a pending operation.
    pub(crate) fn begin_destroy(&mut self, m: &Message, path: &str, why: String) -> Result<()> {
        let call = copy(m)?;
        let r = self.removal_start(path, true).ok_or_else(|| gone(path))?;
        self.begin(call, path, Stage::Removing { r: Box::new(r), why });
        Ok(())
    }

    fn begin(&mut self, call: Message, path: &str, stage: Stage) {
        self.op = Some(Op { call, path: path.to_string(), stage, ready: true });
        self.advance_op();
    }

    /// Moves the running operation on: reads its batch's answers if they
    /// are there and sends the next; replies when it is complete.
    pub(crate) fn advance_op(&mut self) {
        let Some(mut op) = self.op.take() else { return };
        match self.step(&op.path.clone(), &op.call, op.stage) {
            Next::Wait(stage) => {
                op.stage = stage;
                op.ready = false;
                self.op = Some(op);
            }
            // The next stage runs on the next turn: other calls first.
            Next::Stage(stage) => {
                op.stage = stage;
                op.ready = true;
                self.op = Some(op);
            }
            Next::Done(r) => self.answer(&op.call, r),
        }
    }

    /// Whether the operation can go on without an answer from the kernel
    /// (the loop then does not sleep).
    pub(crate) fn op_ready(&self) -> bool {
        self.op.as_ref().is_some_and(|op| op.ready)
    }

    /// Runs the operation to the end (at shutdown).
    pub(crate) fn finish_op(&mut self) {
        while let Some(op) = &mut self.op {
            let k = &mut self.kernel;
            if !op.ready {
                match &mut op.stage {
                    Stage::Replacing { undo, .. } | Stage::Clearing { undo, .. } => undo.expect_answer(k),
                    Stage::Removing { r, .. } => r.undo.expect_answer(k),
                    Stage::Applying { applying, .. } => applying.applying.expect_answer(k),
                    _ => {}
                }
            }
            self.advance_op();
        }
    }

    fn step(&mut self, path: &str, call: &Message, stage: Stage) -> Next {
        let k = &mut self.kernel;
        match stage {
            Stage::Replacing { mut undo, mut est } => {
                if !undo.advance(k) {
                    return Next::Wait(Stage::Replacing { undo, est });
                }
                let failed = undo.finish(k);
                let Some(d) = self.devices.get_mut(path) else { return Next::Done(Err(gone(path))) };
                est.events = d.teardown_finish(failed, false);
                Next::Stage(Stage::Linking(est))
            }
            Stage::Linking(est) => {
                let Some(d) = self.devices.get_mut(path) else { return Next::Done(Err(gone(path))) };
                match d.establish_start(k) {
                    Ok(linked) => Next::Stage(Stage::Planning { linked: Box::new(linked), est }),
                    Err(e) => self.failed(path, est, e),
                }
            }
            Stage::Planning { linked, est } => {
                let Some(d) = self.devices.get_mut(path) else { return Next::Done(Err(gone(path))) };
                match d.establish_plan(k, *linked, &est.ignore, est.redirect) {
                    Ok(applying) => Next::Stage(Stage::Applying { applying: Box::new(applying), est }),
                    Err(e) => self.failed(path, est, e),
                }
            }
            Stage::Applying { mut applying, est } => match applying.applying.advance(k) {
                false => Next::Wait(Stage::Applying { applying, est }),
                true => Next::Stage(Stage::Committing { applying, est }),
            },
            Stage::Committing { applying, mut est } => {
                let Some(d) = self.devices.get_mut(path) else { return Next::Done(Err(gone(path))) };
                let r = d.establish_commit(k, *applying).map(|(fd, added, notes)| {
                    for n in notes {
                        log::warn!("{path}: {n}");
                    }
                    log::info!("{path}: established {}", d.name);
                    est.events.extend(added);
                    fd
                });
                self.announce(path, est.events);
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
            Stage::Adding { mut nets } => {
                let more = match crate::settings::networks_from(call, nets.len(), NETWORKS_PER_TURN) {
                    Ok(more) => more,
                    Err(e) => return Next::Done(Err(e)),
                };
                let done = more.len() < NETWORKS_PER_TURN;
                nets.extend(more);
                if !done {
                    return Next::Stage(Stage::Adding { nets });
                }
                let Some(d) = self.devices.get_mut(path) else { return Next::Done(Err(gone(path))) };
                d.settings.networks.extend(nets);
                d.modified = true;
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

    /// An Establish that failed: the previous configuration's removal is
    /// still announced.
    fn failed(&mut self, path: &str, est: Est, e: Error) -> Next {
        self.announce(path, est.events);
        Next::Done(Err(e))
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

/// A copy of the call to answer later (made before anything is taken
/// out of a journal, so that a failure here loses nothing).
fn copy(m: &Message) -> Result<Message> {
    let mut call = m.duplicate().map_err(|e| Error::Failed(format!("copying the call: {e}")))?;
    // A copy has no serial; the reply must name the call's.
    call.set_serial(m.get_serial().unwrap_or_default());
    Ok(call)
}

fn gone(path: &str) -> Error {
    Error::NotFound(format!("no device at {path}"))
}
