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
use crate::sessions::Sessions;

/// Answers a call; `None` when there is no answer now (a pending
/// operation answers later) or none could be built.
pub fn dispatch(s: &mut Sessions, m: &Message) -> Option<Message> {
    let path = m.path().map(|p| p.to_string()).unwrap_or_default();
    let iface = m.interface().map(|i| i.to_string());
    let member = m.member().map(|s| s.to_string()).unwrap_or_default();
    let obj = classify(s, &path);
    let unknown_method = || {
        let text =
            format!("No such method '{member}' on interface '{}' at '{path}'", iface.as_deref().unwrap_or_default());
        Some(conn::std_error(m, "org.freedesktop.DBus.Error.UnknownMethod", &text))
    };
    let r = match (iface.as_deref(), member.as_str()) {
        (Some("org.freedesktop.DBus.Peer") | None, "Ping") => Ok(Some(m.method_return())),
        (Some("org.freedesktop.DBus.Peer") | None, "GetMachineId") => {
            let read = std::fs::read_to_string;
            let id = read("/etc/machine-id").or_else(|_| read("/var/lib/dbus/machine-id")).unwrap_or_default();
            Ok(Some(m.method_return().append1(id.trim())))
        }
        _ if matches!(obj, Obj::None) => {
            let text = format!("Object does not exist at path '{path}'");
            let unknown = || conn::std_error(m, "org.freedesktop.DBus.Error.UnknownObject", &text);
            return Some(s.gone_reply(m, &path).unwrap_or_else(unknown));
        }
        (Some("org.freedesktop.DBus.Introspectable") | None, "Introspect") => {
            let uid = s.caller(m).map(|(_, c)| c.uid).ok();
            Ok(Some(m.method_return().append1(introspect(s, &obj, uid))))
        }
        (Some("org.freedesktop.DBus.Properties"), _) => props::properties(s, m, &obj, &member).map(Some),
        (Some(IFACE) | None, _) => {
            let methods = match obj {
                Obj::Manager => introspect::MANAGER,
                Obj::Device(_) => introspect::DEVICE,
                Obj::Dco(_) => introspect::DCO,
                Obj::Intermediate(_) | Obj::None => "",
            };
            let Some(sig) = introspect::in_signature(methods, &member) else { return unknown_method() };
            // Signature first, so a mistyped call never reaches an ACL lookup.
            // The transport socket's fd may follow the declared arguments.
            let with_fd = format!("{sig}h");
            let fd_after = if matches!(&*member, "ProtectSocket" | "NewPeer") { &with_fd } else { &sig };
            manager::expect_sig(m, &[&sig, fd_after]).and_then(|()| match &obj {
                Obj::Manager => manager::manager_call(s, m, &member).map(Some),
                Obj::Device(p) => device::device_call(s, m, p, &member),
                Obj::Dco(p) => dco::dco_call(s, m, p, &member).map(Some),
                Obj::Intermediate(_) | Obj::None => Ok(unknown_method()),
            })
        }
        _ => return unknown_method(),
    };
    r.unwrap_or_else(|e| {
        log::debug!("{path} {member}: {e}");
        Some(conn::error_reply(m, &e))
    })
}

fn classify(s: &Sessions, path: &str) -> Obj {
    let dco_of = path.strip_suffix("/dco").filter(|dev| s.devices.get(*dev).is_some_and(|d| d.dco.is_some()));
    match path {
        "/" => Obj::Intermediate("net"),
        "/net" => Obj::Intermediate("openvpn"),
        "/net/openvpn" => Obj::Intermediate("v3"),
        "/net/openvpn/v3" => Obj::Intermediate("netcfg"),
        MANAGER_PATH => Obj::Manager,
        _ if s.devices.contains_key(path) => Obj::Device(path.to_string()),
        _ => dco_of.map_or(Obj::None, |dev| Obj::Dco(dev.to_string())),
    }
}

fn introspect(s: &Sessions, obj: &Obj, uid: Option<u32>) -> String {
    let children: Vec<String> = match obj {
        Obj::Intermediate(c) => vec![c.to_string()],
        // The manager lists only the devices the caller may see.
        Obj::Manager => {
            let seen = s.paths_where(|d| uid.is_some_and(|u| d.may(u)));
            seen.iter()
                .filter_map(|p| Some(p.strip_prefix(MANAGER_PATH)?.trim_start_matches('/').to_string()))
                .collect()
        }
        Obj::Device(p) if s.devices.get(p).is_some_and(|d| d.dco.is_some()) => vec!["dco".into()],
        _ => Vec::new(),
    };
    introspect::xml(obj, &children)
}

pub enum Obj {
    Intermediate(&'static str),
    Manager,
    Device(String),
    Dco(String),
    None,
}
