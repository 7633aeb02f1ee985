//! Methods of the manager object `/net/openvpn/v3/netcfg`.

use dbus::Message;

use crate::conn::MANAGER_PATH;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::sessions::{Sessions, Subscription};
use crate::settings;
use crate::shared::Owner;

/// Checks the call's in-signature against the accepted ones.
pub fn expect_sig(m: &Message, sigs: &[&str]) -> Result<()> {
    let got = signature(m);
    if sigs.contains(&got.as_str()) {
        return Ok(());
    }
    let why = format!("type of message, '({got})', does not match expected type '({})'", sigs[0]);
    Err(Error::arg("(signature)", why))
}

/// The full body signature of a message.
pub fn signature(m: &Message) -> String {
    let mut it = m.iter_init();
    let mut s = String::new();
    // At the end, next() leaves the iterator on Invalid.
    while it.arg_type() != dbus::arg::ArgType::Invalid {
        s.push_str(&it.signature());
        it.next();
    }
    s
}

/// An argument the signature check let through that still did not read.
pub fn bad(arg: &'static str) -> impl Fn(dbus::arg::TypeMismatchError) -> Error {
    move |e| Error::arg(arg, e.to_string())
}

/// A method the introspection declares but no handler's arm takes: a
/// refusal, never a panic of the daemon.
pub fn unhandled(member: &str) -> Error {
    Error::not_supported(format!("{member} is not implemented"))
}

/// A manager's method, its signature checked (`super::dispatch`).
pub(crate) fn manager_call(s: &mut Sessions, m: &Message, member: &str) -> Result<Message> {
    match member {
        "CreateVirtualInterface" => create_virtual_interface(s, m),
        "FetchInterfaceList" => {
            let (_, c) = s.caller(m)?;
            let paths: Vec<dbus::Path> = s.paths_where(|d| d.may(c.uid)).into_iter().map(dbus::Path::from).collect();
            Ok(m.method_return().append1(paths))
        }
        "ProtectSocket" => protect_socket_call(s, m),
        "DcoAvailable" => Ok(m.method_return().append1(s.dco_kernel().is_some())),
        "Cleanup" => cleanup_call(s, m),
        "NotificationSubscribe" => notification_subscribe(s, m),
        "NotificationUnsubscribe" => notification_unsubscribe(s, m),
        "NotificationSubscriberList" => {
            let (_, c) = s.caller(m)?;
            if c.uid != 0 {
                return Err(Error::access_denied("NotificationSubscriberList is restricted to root"));
            }
            let list: Vec<(String, u32)> = s.subs.iter().map(|(k, s)| (k.clone(), s.mask)).collect();
            Ok(m.method_return().append1(list))
        }
        _ => Err(unhandled(member)),
    }
}

fn create_virtual_interface(s: &mut Sessions, m: &Message) -> Result<Message> {
    let name: &str = m.read1().map_err(bad("device_name"))?;
    let elem = settings::path_element(name)?;
    let (sender, c) = s.caller(m)?;
    s.check_device_limits(c.uid)?;
    let path = format!("{MANAGER_PATH}/{}_{elem}", c.pid);
    if s.devices.contains_key(&path) {
        return Err(Error::state(format!("a device at {path} already exists")));
    }
    let d = Device::new(path.clone(), name.to_string(), c.uid, c.pid, sender, s.log_level);
    s.devices.insert(path.clone(), d);
    s.watch.forget_path(&path); // a new object at the path of one removed with its link
    log::info!("virtual device '{name}' registered on {path} (owner uid {}, pid {})", c.uid, c.pid);
    Ok(m.method_return().append1(dbus::Path::from(path)))
}

/// ProtectSocket's arguments and access check; the work is `protect_socket`'s.
fn protect_socket_call(s: &mut Sessions, m: &Message) -> Result<Message> {
    let (remote, ipv6, dev): (&str, bool, dbus::Path) = m.read3().map_err(bad("remote"))?;
    // Exactly the first attached fd is used; every fd is closed on return.
    let fds = crate::sys::message_fds(m);
    let remote = settings::parse_ip("remote", remote, ipv6)?;
    if remote.is_unspecified() || remote.is_multicast() || remote == std::net::Ipv4Addr::BROADCAST {
        return Err(Error::arg("remote", format!("{remote} cannot be a VPN server's address")));
    }
    let (sender, c) = s.caller(m)?;
    if &*dev != "/" && !s.devices.get(&*dev).is_some_and(|d| d.may(c.uid)) {
        return Err(Error::arg("device_path", format!("{} is not a device of yours", &*dev)));
    }
    let ok = s.protect_socket(remote, fds.first(), &dev, c, &sender)?;
    Ok(m.method_return().append1(ok))
}

/// Cleanup: the caller's devices and protections go.
fn cleanup_call(s: &mut Sessions, m: &Message) -> Result<Message> {
    let sender = m.sender().map(|s| s.to_string()).unwrap_or_default();
    // The client fires Cleanup and may leave before we read it:
    // fall back to what we remembered about its connection.
    let pid = s.bus.creds(&sender).ok().map(|c| c.pid);
    let gone = s.paths_where(|d| Some(d.owner_pid) == pid || d.owner_bus == sender);
    let who = pid.map_or("?".into(), |p| p.to_string());
    log::info!("cleaning up resources for pid {who} ({} device(s))", gone.len());
    for p in gone {
        s.remove_device(&p, "Cleanup", true);
    }
    if let Some(pid) = pid {
        // What ProtectSocket made for it.
        s.drop_protections(|o| matches!(o, Owner::Client { pid: p, .. } if *p == pid));
    }
    Ok(m.method_return())
}

fn notification_subscribe(s: &mut Sessions, m: &Message) -> Result<Message> {
    let mask: u32 = m.read1().map_err(bad("filter"))?;
    if mask == 0 || mask > 65535 {
        return Err(Error::arg("filter", format!("{mask} is not a mask in 1-65535 (events are 1-2047)")));
    }
    let (sender, c) = s.caller(m)?;
    if !s.subs.contains_key(&sender) {
        s.check_sub_limits(c.uid)?;
    }
    log::debug!("new subscription: {sender} (uid {}) filter {mask}", c.uid);
    s.subs.insert(sender, Subscription { mask, uid: c.uid });
    Ok(m.method_return())
}

fn notification_unsubscribe(s: &mut Sessions, m: &Message) -> Result<Message> {
    let target: &str = m.read1().map_err(bad("subscriber"))?;
    let (sender, c) = s.caller(m)?;
    let target = if target.is_empty() { sender.as_str() } else { target };
    if target != sender && c.uid != 0 {
        return Err(Error::access_denied("only root may remove another subscriber's subscription"));
    }
    settings::check_text("subscriber", target, 255)?;
    if s.subs.remove(target).is_none() {
        return Err(Error::not_found(format!("no subscription for '{target}'")));
    }
    Ok(m.method_return())
}
