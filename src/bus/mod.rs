//! The D-Bus API: `dispatch` routes a call by object path and interface
//! to the handlers (`manager`, `device`, `dco`, `props`), which act on
//! the service's state (`crate::sessions`). The connection they answer on
//! is `crate::conn`.

pub mod dco;
pub mod device;
pub mod introspect;
pub mod manager;
pub mod props;

use dbus::Message;

use crate::conn::{self, IFACE, MANAGER_PATH};
use crate::error::Error;
use crate::sessions::Sessions;

/// Answers a call; `None` when there is no answer now (a pending
/// operation answers later) or none could be built.
pub fn dispatch(s: &mut Sessions, m: &Message) -> Option<Message> {
    let path = m.path().map(|p| p.to_string()).unwrap_or_default();
    let iface = m.interface().map(|i| i.to_string());
    let member = m.member().map(|s| s.to_string()).unwrap_or_default();
    let obj = classify(s, &path);
    let r = match (iface.as_deref(), member.as_str()) {
        (Some("org.freedesktop.DBus.Peer") | None, "Ping") => Ok(Some(m.method_return())),
        (Some("org.freedesktop.DBus.Peer") | None, "GetMachineId") => {
            let id = std::fs::read_to_string("/etc/machine-id")
                .or_else(|_| std::fs::read_to_string("/var/lib/dbus/machine-id"))
                .unwrap_or_default();
            Ok(Some(m.method_return().append1(id.trim())))
        }
        _ if matches!(obj, Obj::None) => {
            if let Some(r) = s.gone_reply(m, &path) {
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
            let uid = s.caller(m).map(|(_, c)| c.uid).ok();
            Ok(Some(m.method_return().append1(introspect(s, &obj, uid))))
        }
        (Some("org.freedesktop.DBus.Properties"), _) => return props::properties(s, m, &obj, &member),
        (Some(IFACE) | None, _) => match &obj {
            Obj::Manager => manager::manager_call(s, m, &member).map(Some),
            Obj::Device(p) => device::device_call(s, m, p, &member),
            Obj::Dco(p) => dco::dco_call(s, m, p, &member).map(Some),
            _ => Err(Error::NotFound(String::new())),
        },
        _ => Err(Error::NotFound(String::new())),
    };
    match r {
        Ok(reply) => reply,
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

fn classify(s: &Sessions, path: &str) -> Obj {
    match path {
        "/" => return Obj::Intermediate("net"),
        "/net" => return Obj::Intermediate("openvpn"),
        "/net/openvpn" => return Obj::Intermediate("v3"),
        "/net/openvpn/v3" => return Obj::Intermediate("netcfg"),
        MANAGER_PATH => return Obj::Manager,
        _ => {}
    }
    if s.devices.contains_key(path) {
        return Obj::Device(path.to_string());
    }
    if let Some(dev) = path.strip_suffix("/dco") {
        if s.devices.get(dev).is_some_and(|d| d.dco.is_some()) {
            return Obj::Dco(dev.to_string());
        }
    }
    Obj::None
}

fn introspect(s: &Sessions, obj: &Obj, uid: Option<u32>) -> String {
    use crate::bus::introspect::{xml, Node};
    match obj {
        Obj::Intermediate(c) => xml(Node::Intermediate { child: c }),
        Obj::Manager => {
            let kids: Vec<String> = s
                .devices
                .values()
                .filter(|d| uid.is_some_and(|u| d.may(u)))
                .filter_map(|d| d.path.strip_prefix(MANAGER_PATH).map(|s| s.trim_start_matches('/').to_string()))
                .collect();
            xml(Node::Manager { children: &kids })
        }
        Obj::Device(p) => xml(Node::Device { has_dco: s.devices.get(p).is_some_and(|d| d.dco.is_some()) }),
        Obj::Dco(_) => xml(Node::Dco),
        Obj::None => String::new(),
    }
}

pub enum Obj {
    Intermediate(&'static str),
    Manager,
    Device(String),
    Dco(String),
    None,
}
