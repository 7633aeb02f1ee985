//! NetworkChange signals waiting to go out. An Establish of many routes
//! makes thousands; handed to libdbus at once, they would sit in the one
//! outgoing queue ahead of every other client's reply. They go out a batch
//! per tick instead, each made (event text and message) only as it goes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dbus::Message;

use crate::conn::IFACE;
use crate::events::Event;
use crate::plan::Notice;

/// At most BATCH signal messages per TICK (6,400 a second): small
/// batches, so that making one (about 20 µs a message) and the bus
/// daemon's routing of it stay short beside other clients' calls.
const BATCH: usize = 16;
const TICK: Duration = Duration::from_micros(2500);

/// Where a device's events come from.
pub enum Source {
    Events(Vec<Event>),
    /// A configuration coming or going: its events are made one by one.
    Notice(Notice),
}

impl Source {
    fn len(&self) -> usize {
        match self {
            Source::Events(v) => v.len(),
            Source::Notice(n) => n.len(),
        }
    }

    fn event(&self, i: usize) -> Event {
        match self {
            Source::Events(v) => v[i].clone(),
            Source::Notice(n) => n.event(i),
        }
    }
}

/// A device's events, `next` of them sent, each to the recipients (unique
/// name, event mask) whose mask wants it.
struct Item {
    path: String,
    device: String,
    source: Source,
    next: usize,
    to: Vec<(String, u32)>,
}

#[derive(Default)]
pub struct Outbox {
    q: VecDeque<Item>,
    /// When the last batch went, if one did.
    sent: Option<Instant>,
}

impl Outbox {
    pub fn push(&mut self, path: &str, device: &str, source: Source, to: Vec<(String, u32)>) {
        if to.is_empty() || source.len() == 0 {
            return;
        }
        if self.q.len() >= crate::limits::SIGNALS_QUEUED {
            log::warn!("NetworkChange: {} batches of signals wait to be sent; {path}'s are dropped", self.q.len());
            return;
        }
        self.q.push_back(Item { path: path.into(), device: device.into(), source, next: 0, to });
    }

    /// When the next batch is due, if any waits.
    pub fn deadline(&self) -> Option<Instant> {
        (!self.q.is_empty()).then(|| self.sent.map_or_else(Instant::now, |t| t + TICK))
    }

    /// The next batch, once it is due.
    pub fn due(&mut self) -> Vec<Message> {
        if self.sent.is_some_and(|t| t.elapsed() < TICK) {
            return Vec::new();
        }
        self.sent = Some(Instant::now());
        self.take(BATCH)
    }

    /// The next `max` signals.
    pub fn take(&mut self, max: usize) -> Vec<Message> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(it) = self.q.front_mut() else { break };
            if it.next == it.source.len() {
                self.q.pop_front();
                continue;
            }
            let e = it.source.event(it.next);
            it.next += 1;
            for (to, _) in it.to.iter().filter(|(_, mask)| mask & e.kind != 0) {
                out.extend(message(&it.path, &it.device, &e, to));
            }
        }
        out
    }
}

fn message(path: &str, device: &str, e: &Event, to: &str) -> Option<Message> {
    let details = dbus::arg::Dict::new(e.details.iter().map(|(k, v)| (*k, v.as_str())));
    let mut sig = Message::new_signal(path, IFACE, "NetworkChange").ok()?.append3(e.kind, device, details);
    sig.set_destination(Some(to.into()));
    Some(sig)
}
