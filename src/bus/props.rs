//! org.freedesktop.DBus.Properties for the manager and device objects.
//! One table per object names each property, its type and whether Set may
//! change it; Get, GetAll and the introspection XML are made from it.

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::Message;

use crate::bus::Obj;
use crate::conn::{self, Value, IFACE};
use crate::device::Device;
use crate::error::Error;
use crate::sessions::{Sessions, VERSION};
use crate::settings::{self, Word};

/// A property of a `T` (the service or a device): its name, D-Bus type,
/// whether it is writable (`set_manager_prop`/`set_device_prop` check and
/// store it) and its getter.
pub struct Prop<T> {
    pub name: &'static str,
    pub sig: &'static str,
    pub writable: bool,
    get: fn(&T) -> Box<dyn RefArg>,
}

const fn ro<T>(name: &'static str, sig: &'static str, get: fn(&T) -> Box<dyn RefArg>) -> Prop<T> {
    Prop { name, sig, writable: false, get }
}

const fn rw<T>(name: &'static str, sig: &'static str, get: fn(&T) -> Box<dyn RefArg>) -> Prop<T> {
    Prop { name, sig, writable: true, get }
}

pub const MANAGER_PROPS: &[Prop<Sessions>] = &[
    // The DNS servers (or search domains) the DNS backend applied, newest
    // session first (the order in effect).
    ro("global_dns_servers", "as", |s| Box::new(s.dns.global(true))),
    ro("global_dns_search", "as", |s| Box::new(s.dns.global(false))),
    rw("log_level", "u", |s| Box::new(s.log_level)),
    ro("config_file", "s", |s| {
        Box::new(s.cfg.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default())
    }),
    ro("version", "s", |_| Box::new(VERSION.to_string())),
    // DCO (issue 6): "ovpn", "ovpn-dco-v2", or "" when neither resolves.
    ro("dco_family", "s", |s| Box::new(s.dco.as_ref().map(|k| k.genl.family.to_string()).unwrap_or_default())),
];

pub const DEVICE_PROPS: &[Prop<Device>] = &[
    rw("log_level", "u", |d| Box::new(d.log_level)),
    ro("owner", "u", |d| Box::new(d.owner_uid)),
    ro("acl", "au", |d| Box::new(d.acl.clone())),
    ro("active", "b", |d| Box::new(d.active)),
    ro("modified", "b", |d| Box::new(d.modified)),
    ro("dns_name_servers", "as", |d| {
        Box::new(d.settings.dns_servers.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }),
    ro("dns_search_domains", "as", |d| Box::new(d.settings.dns_search.clone())),
    ro("dnssec_mode", "s", |d| Box::new(d.settings.dnssec.as_str().to_string())),
    ro("dns_transport", "s", |d| Box::new(d.settings.dns_transport.as_str().to_string())),
    rw("dns_scope", "s", |d| Box::new(d.settings.dns_scope.as_str().to_string())),
    ro("device_name", "s", |d| Box::new(d.name.clone())),
    rw("layer", "u", |d| Box::new(d.settings.layer)),
    rw("mtu", "q", |d| Box::new(d.settings.mtu)),
    rw("reroute_ipv4", "b", |d| Box::new(d.settings.reroute_ipv4)),
    rw("reroute_ipv6", "b", |d| Box::new(d.settings.reroute_ipv6)),
    rw("txqueuelen", "q", |d| Box::new(d.settings.txqueuelen)),
];

enum PropErr {
    Unknown,
    Type(&'static str),
    Other(Error),
}

pub(crate) fn properties(s: &mut Sessions, m: &Message, obj: &Obj, member: &str) -> crate::error::Result<Message> {
    // A device's settings are its owner's, its ACL's and root's to read.
    if let (Obj::Device(p), "Get" | "GetAll") = (obj, member) {
        let (_, c) = s.caller(m)?;
        if !s.may_see(p, c.uid) {
            return Err(Error::access_denied(format!("uid {} may not read the properties of {p}", c.uid)));
        }
    }
    Ok(match member {
        "Get" => get_call(s, m, obj),
        "GetAll" => get_all_call(s, m, obj),
        "Set" => set_call(s, m, obj)?,
        _ => conn::std_error(m, "org.freedesktop.DBus.Error.UnknownMethod", &format!("No such method '{member}'")),
    })
}

fn get_call(s: &Sessions, m: &Message, obj: &Obj) -> Message {
    let Ok((iface, name)) = m.read2::<&str, &str>() else { return invalid(m, "Get takes (ss)") };
    if iface != IFACE && !iface.is_empty() {
        return unknown_interface(m, iface);
    }
    match values(s, obj, Some(name)).pop() {
        Some((_, v)) => m.method_return().append1(Variant(v)),
        None => unknown(m, name),
    }
}

fn get_all_call(s: &Sessions, m: &Message, obj: &Obj) -> Message {
    let Ok(iface) = m.read1::<&str>() else { return invalid(m, "GetAll takes (s)") };
    let mut map = PropMap::new();
    if iface == IFACE || iface.is_empty() {
        map.extend(values(s, obj, None).into_iter().map(|(n, v)| (n.to_string(), Variant(v))));
    }
    m.method_return().append1(map)
}

/// The properties of `obj` (only the one named `want`, if given), with
/// their values.
fn values(s: &Sessions, obj: &Obj, want: Option<&str>) -> Vec<(&'static str, Box<dyn RefArg>)> {
    fn pick<T>(props: &[Prop<T>], of: &T, want: Option<&str>) -> Vec<(&'static str, Box<dyn RefArg>)> {
        props.iter().filter(|p| want.map_or(true, |w| w == p.name)).map(|p| (p.name, (p.get)(of))).collect()
    }
    match obj {
        Obj::Manager => pick(MANAGER_PROPS, s, want),
        Obj::Device(p) => s.devices.get(p).map(|d| pick(DEVICE_PROPS, d, want)).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Set, then PropertiesChanged for what changed.
fn set_call(s: &mut Sessions, m: &Message, obj: &Obj) -> crate::error::Result<Message> {
    let mut it = m.iter_init();
    let (Some(iface), Some(name), Some((got, value))) = (
        it.get::<&str>(),
        it.next().then(|| it.get::<&str>()).flatten(),
        it.next().then(|| Value::read(&mut it)).flatten(),
    ) else {
        return Ok(invalid(m, "Set takes (ssv)"));
    };
    if iface != IFACE && !iface.is_empty() {
        return Ok(unknown_interface(m, iface));
    }
    match prop_set(s, m, obj, name, &value) {
        Ok(()) => {}
        Err(PropErr::Unknown) => return Ok(unknown(m, name)),
        Err(PropErr::Type(want)) => {
            return Ok(invalid(m, &format!("Error setting property '{name}': expected type '{want}' but got '{got}'")));
        }
        Err(PropErr::Other(e)) => return Err(e),
    }
    if name == "dns_scope" {
        s.dns_sync();
    }
    if let (Some((_, v)), Some(p), Some(who)) = (values(s, obj, Some(name)).pop(), m.path(), m.sender()) {
        s.props_changed(&p, &who, name, v);
    }
    Ok(m.method_return())
}

fn prop_set(s: &mut Sessions, m: &Message, obj: &Obj, name: &str, v: &Value) -> Result<(), PropErr> {
    match obj {
        Obj::Manager => match name {
            "log_level" => {
                let (_, c) = s.caller(m).map_err(PropErr::Other)?;
                if c.uid != 0 {
                    return Err(PropErr::Other(Error::access_denied("only root may change the service log level")));
                }
                s.log_level = log_level(v)?;
                crate::logging::set_level(s.log_level);
                Ok(())
            }
            n if MANAGER_PROPS.iter().any(|p| p.name == n) => Err(read_only(n)),
            _ => Err(PropErr::Unknown),
        },
        Obj::Device(p) => {
            let (_, c) = s.caller(m).map_err(PropErr::Other)?;
            let d = s.devices.get_mut(p).ok_or(PropErr::Unknown)?;
            if !DEVICE_PROPS.iter().any(|p| p.name == name) {
                return Err(PropErr::Unknown);
            }
            if !d.may(c.uid) {
                return Err(PropErr::Other(Error::access_denied(format!("uid {} may not change {p}", c.uid))));
            }
            set_device_prop(d, name, v)?;
            d.modified = true;
            Ok(())
        }
        _ => Err(PropErr::Unknown),
    }
}

/// org.freedesktop.DBus.Error.PropertyReadOnly (see `Error::dbus_name`).
fn read_only(name: &str) -> PropErr {
    PropErr::Other(Error::read_only(format!("Property '{name}' is read-only")))
}

fn unknown(m: &Message, name: &str) -> Message {
    conn::std_error(m, "org.freedesktop.DBus.Error.UnknownProperty", &format!("No such property '{name}'"))
}

fn invalid(m: &Message, text: &str) -> Message {
    conn::std_error(m, "org.freedesktop.DBus.Error.InvalidArgs", text)
}

fn unknown_interface(m: &Message, iface: &str) -> Message {
    conn::std_error(m, "org.freedesktop.DBus.Error.UnknownInterface", &format!("No such interface '{iface}'"))
}

/// `v` as an integer of one of the types `sigs` (the first is the declared
/// one), if `ok` accepts it; else `why` names the refusal of `arg`.
fn unsigned(v: &Value, sigs: &'static str, arg: &'static str, ok: fn(u64) -> bool, why: &str) -> Result<u64, PropErr> {
    let n = v.unsigned(sigs).ok_or(PropErr::Type(&sigs[..1]))?;
    match ok(n) {
        true => Ok(n),
        false => Err(PropErr::Other(Error::arg(arg, format!("{n} {why}")))),
    }
}

fn log_level(v: &Value) -> Result<u32, PropErr> {
    Ok(unsigned(v, "u", "log_level", |n| n <= 6, "is not a level 0-6")? as u32)
}

/// A writable device property, checked and stored (for the next Establish).
fn set_device_prop(d: &mut Device, name: &str, v: &Value) -> Result<(), PropErr> {
    let s = &mut d.settings;
    let flag = |v: &Value| match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(PropErr::Type("b")),
    };
    match name {
        "log_level" => d.log_level = log_level(v)?,
        "layer" => s.layer = unsigned(v, "u", "layer", |n| n == 2 || n == 3, "is not 3 (tun) or 2 (tap)")? as u32,
        "mtu" => s.mtu = unsigned(v, "qu", "mtu", |n| (68..=65535).contains(&n), "is outside 68-65535")? as u16,
        "txqueuelen" => s.txqueuelen = unsigned(v, "qu", "txqueuelen", |n| n <= 65535, "is larger than 65535")? as u16,
        "reroute_ipv4" => s.reroute_ipv4 = flag(v)?,
        "reroute_ipv6" => s.reroute_ipv6 = flag(v)?,
        "dns_scope" => {
            let Value::Str(t) = v else { return Err(PropErr::Type("s")) };
            s.dns_scope = settings::dns_scope(t).map_err(PropErr::Other)?;
        }
        _ => return Err(read_only(name)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_mark_writable_exactly_what_set_accepts() {
        for p in DEVICE_PROPS {
            let mut d = Device::new("/x".into(), "tun0".into(), 1000, 1, ":1.1".into(), 3);
            let v = match p.sig {
                "b" => Value::Bool(true),
                "s" => Value::Str("x".into()),
                sig => Value::Unsigned(sig.chars().next().unwrap(), 1),
            };
            let read_only = matches!(set_device_prop(&mut d, p.name, &v), Err(PropErr::Other(Error::ReadOnly(_))));
            assert_eq!(p.writable, !read_only, "{}", p.name);
        }
        // The manager's Set (`prop_set`) accepts only log_level.
        let writable: Vec<&str> = MANAGER_PROPS.iter().filter(|p| p.writable).map(|p| p.name).collect();
        assert_eq!(writable, ["log_level"]);
    }
}
