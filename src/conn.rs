//! The D-Bus connection: one libdbus connection driven from the poll loop
//! (watch fd + non-blocking read/write), calls to the bus daemon, caller
//! credentials, error replies and the typed reading of property values.
//! The object handlers (`bus/`) and the DNS backends use it; it uses
//! neither.

use crate::vecmap::VecMap;
use std::collections::VecDeque;
use std::ffi::CString;
use std::time::Duration;

use dbus::arg::ArgType;
use dbus::channel::Channel;
use dbus::message::MessageType;
use dbus::strings::ErrorName;
use dbus::Message;

use crate::error::{Error, Result};

pub const BUS_NAME: &str = "net.openvpn.v3.netcfg";
pub const IFACE: &str = "net.openvpn.v3.netcfg";
pub const MANAGER_PATH: &str = "/net/openvpn/v3/netcfg";
pub const LOG_SERVICE: &str = "net.openvpn.v3.log";
const DBUS: &str = "org.freedesktop.DBus";
/// Calls to the bus daemon itself; it answers in microseconds.
const BUS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub pid: u32,
}

pub struct Bus {
    /// The connection itself, for what needs no more than libdbus's own
    /// calls (its fd, the outgoing queue, the unique name).
    pub ch: Channel,
    creds: VecMap<String, Creds>,
    /// Calls whose senders' credentials are being asked for: the sender,
    /// the serial of the question, the calls in arrival order.
    creds_asked: VecMap<String, (u32, VecDeque<Message>)>,
}

/// libdbus's default system bus address (as vendored by libdbus-sys),
/// used when DBUS_SYSTEM_BUS_ADDRESS is not set.
const SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

impl Bus {
    /// Connects and says Hello. `address` None = the system bus (honours
    /// DBUS_SYSTEM_BUS_ADDRESS).
    pub fn connect(address: Option<&str>) -> Result<Self> {
        let env = || std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok().filter(|_| !crate::sys::secure_exec());
        let a = address.map(str::to_string).or_else(env).unwrap_or_else(|| SYSTEM_BUS.to_string());
        let mut ch = Channel::open_private(&a).map_err(|e| Error::failed(format!("D-Bus connect to {a}: {e}")))?;
        ch.register().map_err(|e| Error::failed(format!("D-Bus Hello: {e}")))?;
        ch.set_watch_enabled(true);
        Ok(Bus { ch, creds: VecMap::new(), creds_asked: VecMap::new() })
    }

    /// Non-blocking read and write; false once the connection is gone.
    /// libdbus reads at most about 4 KiB per call, so while more waits it
    /// is called again, up to 256 KiB a turn: a call queued behind a 1 MB
    /// message then waits a few turns, not 250.
    pub fn pump(&self) -> bool {
        for _ in 0..64 {
            if self.ch.read_write(Some(Duration::ZERO)).is_err() || !self.ch.is_connected() {
                return false;
            }
            if crate::sys::queued_bytes(self.ch.watch().fd, false).unwrap_or(0) == 0 {
                break;
            }
        }
        true
    }

    pub fn send(&self, m: Message) {
        if self.ch.send(m).is_err() {
            log::warn!("D-Bus: could not queue a message (out of memory or disconnected)");
        }
    }

    /// A blocking method call, for start-up probes only (before the loop
    /// runs, so nobody waits on us meanwhile).
    pub fn call_blocking(&self, m: Message, timeout: Duration) -> Result<Message> {
        self.ch
            .send_with_reply_and_block(m, timeout)
            .map_err(|e| Error::failed(format!("{}: {}", e.name().unwrap_or("error"), e.message().unwrap_or("failed"))))
    }

    fn call_bus(&self, member: &str, build: impl FnOnce(Message) -> Message) -> Result<Message> {
        self.ch
            .send_with_reply_and_block(build(to_bus(member)?), BUS_TIMEOUT)
            .map_err(|e| Error::failed(format!("{member}: {}", e.message().unwrap_or("failed"))))
    }

    /// Requests our well-known name; fails if someone else has it.
    pub fn request_name(&self, name: &str) -> Result<()> {
        const DO_NOT_QUEUE: u32 = 4;
        let r = self.call_bus("RequestName", |m| m.append2(name, DO_NOT_QUEUE))?;
        match r.read1::<u32>() {
            Ok(1) | Ok(4) => Ok(()),
            Ok(_) => Err(Error::failed(format!("the bus name {name} is already owned by another process"))),
            Err(e) => Err(Error::failed(format!("RequestName: {e}"))),
        }
    }

    pub fn add_match(&self, rule: &str) -> Result<()> {
        self.call_bus("AddMatch", |m| m.append1(rule)).map(|_| ())
    }

    /// The current owner of a well-known name, if any.
    pub fn name_owner(&self, name: &str) -> Option<String> {
        self.call_bus("GetNameOwner", |m| m.append1(name)).ok()?.read1::<String>().ok()
    }

    /// UID and PID of a connection, cached until the name leaves the bus
    /// (so Cleanup still works when the caller is already gone). Callers'
    /// credentials are asked for without blocking (`ask_creds`) before
    /// their calls are served, so this blocks only for other names.
    pub fn creds(&mut self, sender: &str) -> Result<Creds> {
        if let Some(c) = self.creds.get(sender) {
            return Ok(*c);
        }
        let r = self.call_bus("GetConnectionCredentials", |m| m.append1(sender))?;
        let c = parse_creds(&r)?;
        self.remember(sender, c);
        Ok(c)
    }

    /// Passes a call on once its sender's credentials are known. Until
    /// then they are asked for without blocking the loop, and the call
    /// (with any that follow from the same sender, in order) waits for
    /// `creds_answer`.
    pub fn creds_gate(&mut self, m: Message) -> Option<Message> {
        use crate::limits::{CALLS_AWAITING_CREDS, SENDERS_AWAITING_CREDS};
        let Some(sender) = m.sender().map(|s| s.to_string()) else { return Some(m) };
        if let Some((_, q)) = self.creds_asked.get_mut(&sender) {
            if q.len() < CALLS_AWAITING_CREDS {
                q.push_back(m);
            } else {
                self.refuse(&m, "too many calls waiting for this caller's credentials");
            }
            return None;
        }
        if self.creds.contains_key(&sender) {
            return Some(m);
        }
        if self.creds_asked.len() >= SENDERS_AWAITING_CREDS {
            self.refuse(&m, "too many callers' credentials being looked up");
            return None;
        }
        let ask = to_bus("GetConnectionCredentials").map(|q| q.append1(&sender));
        match ask.ok().and_then(|q| self.ch.send(q).ok()) {
            Some(serial) => {
                self.creds_asked.insert(sender, (serial, VecDeque::from([m])));
            }
            None => self.refuse(&m, "GetConnectionCredentials: could not queue the call"),
        }
        None
    }

    /// If `m` is the bus daemon's answer to `creds_gate`'s question: the
    /// calls that waited for it, in order. They are refused instead if
    /// their sender has no credentials (it left the bus).
    pub fn creds_answer(&mut self, m: &Message) -> Option<VecDeque<Message>> {
        if m.sender().as_deref() != Some(DBUS) {
            return None;
        }
        let serial = m.get_reply_serial()?;
        let sender = self.creds_asked.iter().find(|(_, (s, _))| *s == serial)?.0.clone();
        let (_, calls) = self.creds_asked.remove(&sender)?;
        let why = match m.msg_type() {
            MessageType::Error => format!("GetConnectionCredentials: {}", m.read1::<&str>().unwrap_or("failed")),
            _ => match parse_creds(m) {
                Ok(c) => {
                    self.remember(&sender, c);
                    return Some(calls);
                }
                Err(e) => e.to_string(),
            },
        };
        calls.iter().for_each(|call| self.refuse(call, &why));
        Some(VecDeque::new())
    }

    /// Sends `r` unless the caller wants no reply.
    pub fn reply(&self, call: &Message, r: Option<Message>) {
        if let Some(r) = r.filter(|_| !call.get_no_reply()) {
            self.send(r);
        }
    }

    /// Refuses a call that cannot be served now (Failed, with `why`).
    pub fn refuse(&self, m: &Message, why: &str) {
        self.reply(m, Some(error_reply(m, &Error::failed(why.to_string()))));
    }

    fn remember(&mut self, sender: &str, c: Creds) {
        if self.creds.len() > 4096 {
            self.creds.clear(); // bounded; entries are cheap to look up again
        }
        self.creds.insert(sender.to_string(), c);
    }

    pub fn cached_creds(&self, sender: &str) -> Option<Creds> {
        self.creds.get(sender).copied()
    }

    pub fn forget(&mut self, name: &str) {
        self.creds.remove(name);
    }
}

/// A method call to the bus daemon itself.
fn to_bus(member: &str) -> Result<Message> {
    Message::new_method_call(DBUS, "/org/freedesktop/DBus", DBUS, member).map_err(Error::failed)
}

/// UnixUserID and ProcessID from a GetConnectionCredentials reply (a{sv},
/// walked instead of built into a map of boxed values).
fn parse_creds(r: &Message) -> Result<Creds> {
    let (mut uid, mut pid) = (None, None);
    let mut it = r.iter_init();
    if let Some(mut entries) = it.recurse(ArgType::Array) {
        while let Some(mut e) = entries.recurse(ArgType::DictEntry) {
            let key = e.get::<&str>().unwrap_or_default();
            e.next();
            let v = Value::read(&mut e).and_then(|(_, v)| v.unsigned("u")).map(|v| v as u32);
            match key {
                "UnixUserID" => uid = v,
                "ProcessID" => pid = v,
                _ => {}
            }
            if !entries.next() {
                break;
            }
        }
    }
    Ok(Creds {
        uid: uid.ok_or_else(|| Error::failed("caller has no UnixUserID"))?,
        pid: pid.ok_or_else(|| Error::failed("caller has no ProcessID"))?,
    })
}

/// The error reply to `m` for `e`.
pub fn error_reply(m: &Message, e: &Error) -> Message {
    std_error(m, e.dbus_name(), &e.to_string())
}

/// A standard org.freedesktop.DBus.Error.* reply.
pub fn std_error(m: &Message, name: &'static str, text: &str) -> Message {
    let text = CString::new(text.replace('\0', "")).unwrap_or_default();
    m.error(&ErrorName::from(name), &text)
}

/// A property value as it arrived in a `v`, read by signature. Typed
/// reading (instead of dbus-rs's `Box<dyn RefArg>`) keeps the generic
/// any-type decoder, float formatting included, out of the binary.
#[derive(Debug, PartialEq)]
pub enum Value {
    /// y, q, u or t (the signature character), widened.
    Unsigned(char, u64),
    Bool(bool),
    Str(String),
    /// Any other type.
    Other,
}

impl Value {
    /// Reads the variant `it` points at: its signature (for error
    /// messages) and its value.
    pub fn read(it: &mut dbus::arg::Iter) -> Option<(String, Value)> {
        let mut v = it.recurse(ArgType::Variant)?;
        let sig = v.signature().to_string();
        let value = match &*sig {
            "y" => Value::Unsigned('y', v.get::<u8>()?.into()),
            "q" => Value::Unsigned('q', v.get::<u16>()?.into()),
            "u" => Value::Unsigned('u', v.get::<u32>()?.into()),
            "t" => Value::Unsigned('t', v.get::<u64>()?),
            "b" => Value::Bool(v.get::<bool>()?),
            "s" => Value::Str(v.get::<&str>()?.to_string()),
            _ => Value::Other,
        };
        Some((sig, value))
    }

    /// The integer, if its signature is one of `sigs` (e.g. "qu").
    pub fn unsigned(&self, sigs: &str) -> Option<u64> {
        match self {
            Value::Unsigned(c, v) if sigs.contains(*c) => Some(*v),
            _ => None,
        }
    }
}
