//! org.freedesktop.DBus.Properties for the manager and device objects.

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::Message;

use crate::bus::Obj;
use crate::conn::{self, Value, IFACE};
use crate::device::Device;
use crate::error::Error;
use crate::sessions::{Sessions, VERSION};
use crate::settings::{self, Word};

const MANAGER_PROPS: &[&str] =
    &["global_dns_servers", "global_dns_search", "log_level", "config_file", "version", "dco_family"];
const DEVICE_PROPS: &[&str] = &[
    "log_level",
    "owner",
    "acl",
    "active",
    "modified",
    "dns_name_servers",
    "dns_search_domains",
    "dnssec_mode",
    "dns_transport",
    "dns_scope",
    "device_name",
    "layer",
    "mtu",
    "reroute_ipv4",
    "reroute_ipv6",
    "txqueuelen",
];

enum PropErr {
    Unknown,
    ReadOnly,
    Type(&'static str),
    Other(Error),
}

pub(crate) fn properties(s: &mut Sessions, m: &Message, obj: &Obj, member: &str) -> Option<Message> {
    // A device's settings are its owner's, its ACL's and root's to read.
    if let (Obj::Device(p), "Get" | "GetAll") = (obj, member) {
        match s.caller(m) {
            Ok((_, c)) if s.may_see(p, c.uid) => {}
            Ok((_, c)) => {
                let e = Error::AccessDenied(format!("uid {} may not read the properties of {p}", c.uid));
                return conn::error_reply(m, &e);
            }
            Err(e) => return conn::error_reply(m, &e),
        }
    }
    match member {
        "Get" => Some(get_call(s, m, obj)),
        "GetAll" => Some(get_all_call(s, m, obj)),
        "Set" => set_call(s, m, obj),
        _ => {
            Some(conn::std_error(m, "org.freedesktop.DBus.Error.UnknownMethod", &format!("No such method '{member}'")))
        }
    }
}

fn get_call(s: &Sessions, m: &Message, obj: &Obj) -> Message {
    let Ok((iface, name)) = m.read2::<&str, &str>() else {
        return invalid(m, "Get takes (ss)");
    };
    if iface != IFACE && !iface.is_empty() {
        return unknown_interface(m, iface);
    }
    match prop_get(s, obj, name) {
        Some(v) => m.method_return().append1(Variant(v)),
        None => unknown(m, name),
    }
}

fn get_all_call(s: &Sessions, m: &Message, obj: &Obj) -> Message {
    let names: &[&str] = match obj {
        Obj::Manager => MANAGER_PROPS,
        Obj::Device(_) => DEVICE_PROPS,
        _ => &[],
    };
    let Ok(iface) = m.read1::<&str>() else {
        return invalid(m, "GetAll takes (s)");
    };
    let mut map = PropMap::new();
    if iface == IFACE || iface.is_empty() {
        for n in names {
            if let Some(v) = prop_get(s, obj, n) {
                map.insert(n.to_string(), Variant(v));
            }
        }
    }
    m.method_return().append1(map)
}

/// Set, then PropertiesChanged for what changed; `None` when the error
/// reply could not be built.
fn set_call(s: &mut Sessions, m: &Message, obj: &Obj) -> Option<Message> {
    let mut it = m.iter_init();
    let (Some(iface), Some(name), Some(value)) = (
        it.get::<&str>(),
        it.next().then(|| it.get::<&str>()).flatten(),
        it.next().then(|| Value::read(&mut it)).flatten(),
    ) else {
        return Some(invalid(m, "Set takes (ssv)"));
    };
    if iface != IFACE && !iface.is_empty() {
        return Some(unknown_interface(m, iface));
    }
    Some(match prop_set(s, m, obj, name, &value) {
        Ok(()) => {
            if name == "dns_scope" {
                s.dns_sync();
            }
            if let (Some(v), Some(p), Some(who)) = (prop_get(s, obj, name), m.path(), m.sender()) {
                s.props_changed(&p, &who, name, v);
            }
            m.method_return()
        }
        Err(PropErr::Unknown) => unknown(m, name),
        Err(PropErr::ReadOnly) => conn::std_error(
            m,
            "org.freedesktop.DBus.Error.PropertyReadOnly",
            &format!("Property '{name}' is read-only"),
        ),
        Err(PropErr::Type(want)) => invalid(
            m,
            &format!("Error setting property '{name}': expected type '{want}' but got '{}'", value.signature()),
        ),
        Err(PropErr::Other(e)) => return conn::error_reply(m, &e),
    })
}

fn prop_get(s: &Sessions, obj: &Obj, name: &str) -> Option<Box<dyn RefArg>> {
    match obj {
        Obj::Manager => Some(match name {
            "global_dns_servers" => Box::new(global_dns(s, true)),
            "global_dns_search" => Box::new(global_dns(s, false)),
            "log_level" => Box::new(s.log_level),
            "config_file" => Box::new(s.cfg.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
            "version" => Box::new(VERSION.to_string()),
            // DCO (issue 6): "ovpn", "ovpn-dco-v2", or "" when neither resolves.
            "dco_family" => Box::new(s.dco_family()),
            _ => return None,
        }),
        Obj::Device(p) => {
            let d = s.devices.get(p)?;
            let s = &d.settings;
            Some(match name {
                "log_level" => Box::new(d.log_level),
                "owner" => Box::new(d.owner_uid),
                "acl" => Box::new(d.acl.clone()),
                "active" => Box::new(d.active),
                "modified" => Box::new(d.modified),
                "dns_name_servers" => Box::new(s.dns_servers.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
                "dns_search_domains" => Box::new(s.dns_search.clone()),
                "dnssec_mode" => Box::new(s.dnssec.as_str().to_string()),
                "dns_transport" => Box::new(s.dns_transport.as_str().to_string()),
                "dns_scope" => Box::new(s.dns_scope.as_str().to_string()),
                "device_name" => Box::new(d.name.clone()),
                "layer" => Box::new(s.layer),
                "mtu" => Box::new(s.mtu),
                "reroute_ipv4" => Box::new(s.reroute_ipv4),
                "reroute_ipv6" => Box::new(s.reroute_ipv6),
                "txqueuelen" => Box::new(s.txqueuelen),
                _ => return None,
            })
        }
        _ => None,
    }
}

fn prop_set(s: &mut Sessions, m: &Message, obj: &Obj, name: &str, v: &Value) -> Result<(), PropErr> {
    match obj {
        Obj::Manager => match name {
            "log_level" => {
                let (_, c) = s.caller(m).map_err(PropErr::Other)?;
                if c.uid != 0 {
                    return Err(PropErr::Other(Error::AccessDenied(
                        "only root may change the service log level".into(),
                    )));
                }
                s.log_level = log_level(v)?;
                crate::logging::set_level(s.log_level);
                Ok(())
            }
            n if MANAGER_PROPS.contains(&n) => Err(PropErr::ReadOnly),
            _ => Err(PropErr::Unknown),
        },
        Obj::Device(p) => {
            let (_, c) = s.caller(m).map_err(PropErr::Other)?;
            let d = s.devices.get_mut(p).ok_or(PropErr::Unknown)?;
            if !DEVICE_PROPS.contains(&name) {
                return Err(PropErr::Unknown);
            }
            if !d.may(c.uid) {
                return Err(PropErr::Other(Error::AccessDenied(format!("uid {} may not change {p}", c.uid))));
            }
            set_device_prop(d, name, v)?;
            d.modified = true;
            Ok(())
        }
        _ => Err(PropErr::Unknown),
    }
}

/// The DNS servers (or search domains) the DNS backend applied, newest
/// session first (the order in effect).
fn global_dns(s: &Sessions, servers: bool) -> Vec<String> {
    s.dns.global(servers)
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

fn log_level(v: &Value) -> Result<u32, PropErr> {
    let n = v.unsigned("u").ok_or(PropErr::Type("u"))?;
    if n > 6 {
        return Err(PropErr::Other(Error::arg("log_level", format!("{n} is not a level 0-6"))));
    }
    Ok(n as u32)
}

/// A writable device property, checked and stored (for the next Establish).
fn set_device_prop(d: &mut Device, name: &str, v: &Value) -> Result<(), PropErr> {
    let s = &mut d.settings;
    let arg = |e: Error| PropErr::Other(e);
    match name {
        "log_level" => d.log_level = log_level(v)?,
        "layer" => {
            let n = v.unsigned("u").ok_or(PropErr::Type("u"))?;
            if n != 2 && n != 3 {
                return Err(arg(Error::arg("layer", format!("{n} is not 3 (tun) or 2 (tap)"))));
            }
            s.layer = n as u32;
        }
        "mtu" => {
            let n = v.unsigned("qu").ok_or(PropErr::Type("q"))?;
            if !(68..=65535).contains(&n) {
                return Err(arg(Error::arg("mtu", format!("{n} is outside 68-65535"))));
            }
            s.mtu = n as u16;
        }
        "txqueuelen" => {
            let n = v.unsigned("qu").ok_or(PropErr::Type("q"))?;
            if n > 65535 {
                return Err(arg(Error::arg("txqueuelen", format!("{n} is larger than 65535"))));
            }
            s.txqueuelen = n as u16;
        }
        "reroute_ipv4" | "reroute_ipv6" => {
            let Value::Bool(b) = *v else {
                return Err(PropErr::Type("b"));
            };
            if name == "reroute_ipv4" {
                s.reroute_ipv4 = b;
            } else {
                s.reroute_ipv6 = b;
            }
        }
        "dns_scope" => {
            let Value::Str(t) = v else {
                return Err(PropErr::Type("s"));
            };
            s.dns_scope = settings::dns_scope(t).map_err(arg)?;
        }
        _ => return Err(PropErr::ReadOnly),
    }
    Ok(())
}
