//! DNS: one `Dns` front that the daemon calls with the complete list of
//! sessions whenever something DNS-related changes; it picks a backend at
//! start-up and pushes the merged configuration to it.
//!
//! This is the hook surface the daemon uses; the backends live beside it.

use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use dbus::Message;

use crate::bus::Bus;
use crate::config::DnsChoice;
use crate::events::Event;
use crate::settings::{DnsScope, DnsSec, DnsTransport};

/// One device's DNS wishes, as the daemon sees them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Device object path (the sender path of its NetworkChange events).
    pub path: String,
    /// Kernel interface name and index (None before Establish).
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

/// A NetworkChange to send: (object path, device name, event).
pub type Change = (String, String, Event);

pub struct Dns {
    name: &'static str,
}

impl Dns {
    /// Chooses the backend (never fatal: falls back and logs).
    pub fn new(choice: &DnsChoice, _bus: &Bus, _state_dir: &Path) -> Dns {
        let _ = choice;
        Dns { name: "none" }
    }

    pub fn backend_name(&self) -> &'static str {
        self.name
    }

    /// Applies the full set of active sessions (ones with an established
    /// link); returns the NetworkChange events for what really changed.
    pub fn update(&mut self, _bus: &Bus, _sessions: &[Session]) -> Vec<Change> {
        Vec::new()
    }

    /// Offers a method return or error to the backend (async resolved
    /// calls); true if it was one of ours.
    pub fn on_reply(&mut self, _bus: &Bus, _m: &Message) -> bool {
        false
    }

    /// When the backend next needs `on_timeout` (retries, call timeouts).
    pub fn deadline(&self) -> Option<Instant> {
        None
    }

    pub fn on_timeout(&mut self, _bus: &Bus) {}

    /// Restores everything at shutdown; false if a restore failed (exit 4).
    pub fn shutdown(&mut self, _bus: &Bus) -> bool {
        true
    }

    pub fn global(&self, _servers: bool) -> Vec<String> { Vec::new() }
    pub fn recover(&mut self) {}
}
