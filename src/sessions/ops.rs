//! Pending operations: the calls whose kernel work can be large
//! (Establish, Disable, ClearConfig, Destroy) send it a batch at a time on
//! the socket the loop polls (`Kernel::ops`). The loop answers other calls
//! between batches, reads a batch's answers when the socket is readable,
//! sends the next, and replies once the operation is complete.
//!
//! One operation runs at a time. While it runs, the calls that must see the
//! kernel as it leaves it wait in arrival order (`must_wait`): calls on its
//! device, calls that change the kernel, and clients leaving the bus. All
//! other calls are answered at once. A client that leaves the bus has its
//! devices removed the same way, one operation each, with no call to answer.

use std::os::fd::OwnedFd;

use dbus::message::MessageType;
use dbus::Message;

use crate::config::RedirectMethod;
use crate::conn;
use crate::device::{Device, Establishing, Linked};
use crate::error::{Error, Result};
use crate::limits::NETWORKS_PER_TURN;
use crate::plan::Notice;
use crate::vecmap::VecMap;

use super::{Removal, Sessions, Source};

/// Calls that wait for a running operation wherever they go: the ones that
/// change the kernel, and AddNetworks (a long list is itself one).
const WAITING_CALLS: &[&str] =
    &["Establish", "Disable", "ClearConfig", "Destroy", "EnableDCO", "ProtectSocket", "Cleanup", "AddNetworks"];

pub(crate) struct Op {
    /// A copy of the call, to answer it (None: a client left the bus).
    call: Option<Message>,
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
    /// Establish: the plan checked against the route table, a slice per turn.
    Checking { applying: Box<Establishing>, est: Est },
    /// Establish: the new configuration going in.
    Applying { applying: Box<Establishing>, est: Est },
    /// Establish: the table read back checked a slice per turn, then the
    /// outcome kept (or undone).
    Committing { applying: Box<Establishing>, est: Est },
    /// Establish (the previous link going) and Clearing: then the events
    /// announced, in a turn of their own, and the reply (carrying `fd`).
    Finishing { undo: crate::apply::Undoing, fd: Option<OwnedFd>, events: Vec<Notice> },
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
        on(&op.path)
            || m.member().is_some_and(|mb| WAITING_CALLS.contains(&&*mb))
            || m.msg_type() == MessageType::Signal
            || self.held.iter().any(|h| h.path().is_some_and(|p| on(&p)))
    }

    /// Whether one more call of its caller's UID may be held: each UID has
    /// its share, so one user's flood cannot get every other user's calls
    /// refused while an operation runs.
    pub(crate) fn may_hold(&self, m: &Message) -> Result<()> {
        use crate::limits::{check_share, CALLS_HELD, CALLS_HELD_PER_UID};
        let uid_of = |m: &Message| m.sender().and_then(|s| self.bus.cached_creds(&s)).map(|c| c.uid);
        let uid = uid_of(m);
        let mine = self.held.iter().filter(|h| h.msg_type() == MessageType::MethodCall && uid_of(h) == uid).count();
        check_share("held calls", uid.unwrap_or(u32::MAX), mine, CALLS_HELD_PER_UID, self.held.len(), CALLS_HELD)
    }

    /// The next held message, once no operation runs; first, the removal
    /// of the next device whose client left the bus is started.
    pub(crate) fn unhold(&mut self) -> Option<Message> {
        while let (None, Some((path, why))) = (&self.op, self.leaving.pop_front()) {
            if let Some(r) = self.removal_start(&path, false) {
                let stage = Stage::Removing { r: Box::new(r), why };
                self.op = Some(Op { call: None, path, stage, ready: true });
                self.advance_op(false);
            }
        }
        self.op.is_none().then(|| self.held.pop_front()).flatten()
    }

    /// Starts `what` on `path` as the pending operation; the error if it
    /// fails before anything goes to the kernel in batches.
    pub(crate) fn begin(&mut self, m: &Message, path: &str, what: Start) -> Result<()> {
        // A copy of the call, to answer it later. Made before anything is
        // taken out of a journal, so that a failure here loses nothing. A
        // copy has no serial; the reply must name the call's.
        let mut call = m.duplicate().map_err(|e| Error::failed(format!("copying the call: {e}")))?;
        call.set_serial(m.get_serial().unwrap_or_default());
        let stage = match what {
            Start::Establish => {
                // Our links other than the device's own are never "the host's route".
                let ignore = self.links_where(|d| d.path != path);
                let est = Est { ignore, redirect: self.cfg.redirect != RedirectMethod::None, events: Vec::new() };
                // A second Establish: the old configuration goes first (its
                // routes would collide with the new ones), the old link once
                // the new one works.
                let d = dev(&mut self.devices, path)?;
                match d.active || !d.journal.is_empty() {
                    true => Stage::Replacing { undo: d.teardown_start(&mut self.kernel, false), est },
                    false => Stage::Linking(est),
                }
            }
            Start::Clear(disable) => {
                let undo = dev(&mut self.devices, path)?.teardown_start(&mut self.kernel, false);
                Stage::Clearing { undo, disable }
            }
            Start::AddNetworks => Stage::Adding { nets: Vec::new() },
            Start::Destroy => {
                let why = format!("Destroy by {}", m.sender().as_deref().unwrap_or_default());
                let r = self.removal_start(path, true).ok_or_else(|| gone(path))?;
                Stage::Removing { r: Box::new(r), why }
            }
        };
        self.op = Some(Op { call: Some(call), path: path.to_string(), stage, ready: true });
        self.advance_op(false);
        Ok(())
    }

    /// Moves the running operation on: reads its batch's answers if they
    /// are there and sends the next; replies when it is complete.
    pub(crate) fn advance_op(&mut self, expect: bool) {
        let Some(op) = self.op.take() else { return };
        let r = match self.step(&op.path.clone(), op.call.as_ref(), op.stage, expect) {
            Ok(Next::Wait(stage)) => return self.op = Some(Op { stage, ready: false, ..op }),
            // The next stage runs on the next turn: other calls first.
            Ok(Next::Stage(stage)) => return self.op = Some(Op { stage, ready: true, ..op }),
            Ok(Next::Done(fd)) => Ok(fd),
            Err(e) => Err(e),
        };
        let Some(call) = &op.call else {
            return r.map_or_else(|e| log::warn!("{}: {e}", op.path), drop);
        };
        let reply = match r {
            // A DCO device has no tun fd: the reply is empty (reference §7.2).
            Ok(Some(fd)) => call.method_return().append1(fd),
            Ok(None) => call.method_return(),
            Err(e) => {
                log::debug!("{}: {e}", op.path);
                conn::error_reply(call, &e)
            }
        };
        self.bus.reply(call, Some(reply));
    }

    /// Whether the operation can go on without an answer from the kernel,
    /// or the next removal for a client that left can start (the loop then
    /// does not sleep).
    pub(crate) fn op_ready(&self) -> bool {
        self.op.as_ref().map_or(!self.leaving.is_empty(), |op| op.ready)
    }

    /// Runs the operation to the end (at shutdown): a batch waiting for
    /// answers fails unless they are there.
    pub(crate) fn finish_op(&mut self) {
        while let Some(op) = &self.op {
            let expect = !op.ready;
            self.advance_op(expect);
        }
    }

    /// Moves the stage on (`expect`: see `finish_op`).
    fn step(&mut self, path: &str, call: Option<&Message>, mut stage: Stage, expect: bool) -> Result<Next> {
        let k = &mut self.kernel;
        // A stage that sends batches goes on once its last one is answered.
        let sent = match &mut stage {
            Stage::Replacing { undo, .. } | Stage::Clearing { undo, .. } | Stage::Finishing { undo, .. } => {
                undo.advance(k, expect)
            }
            Stage::Removing { r, .. } => r.undo.advance(k, expect),
            Stage::Applying { applying, .. } => applying.applying.advance(k, expect),
            _ => true,
        };
        if !sent {
            return Ok(Next::Wait(stage));
        }
        match stage {
            Stage::Replacing { undo, mut est } => {
                est.events = self.torn_down(path, undo)?;
                Ok(Next::Stage(Stage::Linking(est)))
            }
            Stage::Linking(est) => match dev(&mut self.devices, path)?.establish_start(k) {
                Ok(linked) => Ok(Next::Stage(Stage::Planning { linked: Box::new(linked), est })),
                Err(e) => self.failed(path, est, e),
            },
            Stage::Planning { linked, est } => {
                let applying = dev(&mut self.devices, path)?.establish_plan(k, *linked, &est.ignore, est.redirect);
                Ok(Next::Stage(Stage::Checking { applying: Box::new(applying), est }))
            }
            Stage::Checking { applying, est } => self.checking(path, applying, est),
            Stage::Applying { applying, est } => Ok(Next::Stage(Stage::Committing { applying, est })),
            Stage::Committing { applying, est } => self.committing(path, applying, est),
            Stage::Finishing { undo, fd, events } => {
                for f in undo.finish(k) {
                    log::warn!("{path}: removing the previous device: {f}");
                }
                self.announce(path, events);
                Ok(Next::Done(fd))
            }
            Stage::Clearing { undo, disable } => {
                let events = self.torn_down(path, undo)?;
                let d = dev(&mut self.devices, path)?;
                // The client supplies its settings again before the next Establish.
                d.settings.addrs.clear();
                d.settings.networks.clear();
                if disable {
                    d.settings.dns_servers.clear();
                    d.settings.dns_search.clear();
                }
                log::info!("{path}: {}", if disable { "disabled" } else { "configuration cleared" });
                Ok(Next::Stage(Stage::Finishing { undo: crate::apply::undo_start(Vec::new()), fd: None, events }))
            }
            Stage::Adding { mut nets } => {
                let call = call.ok_or_else(|| Error::failed("AddNetworks without its call"))?;
                let more = crate::settings::networks_from(call, nets.len(), NETWORKS_PER_TURN)?;
                let done = more.len() < NETWORKS_PER_TURN;
                nets.extend(more);
                if !done {
                    return Ok(Next::Stage(Stage::Adding { nets }));
                }
                let d = dev(&mut self.devices, path)?;
                d.settings.networks.extend(nets);
                d.modified = true;
                Ok(Next::Done(None))
            }
            Stage::Removing { r, why } => {
                self.removal_finish(*r, &why);
                Ok(Next::Done(None))
            }
        }
    }

    /// Establish: the next slice of the check before anything is sent;
    /// once it is done, the changes go, or the attempt is given up.
    fn checking(&mut self, path: &str, mut applying: Box<Establishing>, est: Est) -> Result<Next> {
        if !applying.applying.check_step() {
            return Ok(Next::Stage(Stage::Checking { applying, est }));
        }
        match applying.applying.refused() {
            Some(e) => {
                let e = dev(&mut self.devices, path)?.establish_refused(&mut self.kernel, *applying, e);
                self.failed(path, est, e)
            }
            None => Ok(Next::Stage(Stage::Applying { applying, est })),
        }
    }

    /// Establish: the next slice of the check of the table read back;
    /// once it is done, the outcome kept (or undone).
    fn committing(&mut self, path: &str, mut applying: Box<Establishing>, mut est: Est) -> Result<Next> {
        if !applying.applying.check_step() {
            return Ok(Next::Stage(Stage::Committing { applying, est }));
        }
        let d = dev(&mut self.devices, path)?;
        match d.establish_commit(&mut self.kernel, *applying) {
            Ok(done) => {
                for n in done.notes {
                    log::warn!("{path}: {n}");
                }
                log::info!("{path}: established {}", d.name);
                est.events.extend(done.events);
                let undo = crate::apply::undo_start(done.old_links);
                Ok(Next::Stage(Stage::Finishing { undo, fd: done.fd, events: est.events }))
            }
            Err(e) => self.failed(path, est, e),
        }
    }

    /// A teardown whose batches are done: the events of the configuration
    /// it removed.
    fn torn_down(&mut self, path: &str, undo: crate::apply::Undoing) -> Result<Vec<Notice>> {
        let failed = undo.finish(&mut self.kernel);
        Ok(dev(&mut self.devices, path)?.teardown_finish(failed, false))
    }

    /// An Establish that failed: the previous configuration's removal is
    /// still announced.
    fn failed(&mut self, path: &str, est: Est, e: Error) -> Result<Next> {
        self.announce(path, est.events);
        Err(e)
    }

    /// A configuration's events, then DNS.
    fn announce(&mut self, path: &str, events: Vec<Notice>) {
        let name = self.devices.get(path).map(|d| d.name.clone()).unwrap_or_default();
        self.emit(path, &name, events.into_iter().map(Source::Notice));
        self.dns_sync();
    }
}

enum Next {
    Wait(Stage),
    Stage(Stage),
    Done(Option<OwnedFd>),
}

/// What a pending operation is to do.
pub(crate) enum Start {
    Establish,
    /// Disable (true) or ClearConfig.
    Clear(bool),
    /// AddNetworks of a long list (its share is checked).
    AddNetworks,
    Destroy,
}

fn gone(path: &str) -> Error {
    Error::not_found(format!("no device at {path}"))
}

fn dev<'a>(devices: &'a mut VecMap<String, Device>, path: &str) -> Result<&'a mut Device> {
    devices.get_mut(path).ok_or_else(|| gone(path))
}
