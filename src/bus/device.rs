//! Methods of device objects `/net/openvpn/v3/netcfg/<pid>_<name>`.

use dbus::Message;

use crate::bus::manager::{bad, unhandled};
use crate::error::{Error, Result};
use crate::limits::{
    fits, ADDRS_PER_DEVICE, DNS_SEARCH_PER_DEVICE, DNS_SERVERS_PER_DEVICE, NETWORKS_PER_TURN, NETWORKS_PER_UID,
};
use crate::sessions::ops::Start;
use crate::sessions::Sessions;
use crate::settings;

/// Fails unless the caller may drive the device at `path`.
/// Returns the device owner's UID, whose share the call counts against.
fn check_access(s: &mut Sessions, m: &Message, path: &str) -> Result<u32> {
    let (_, c) = s.caller(m)?;
    let d = s.devices.get(path).ok_or_else(|| Error::not_found(format!("no device at {path}")))?;
    if !d.may(c.uid) {
        return Err(Error::access_denied(format!("uid {} may not use {path} (owner uid {})", c.uid, d.owner_uid)));
    }
    Ok(d.owner_uid)
}

/// A device's method, its signature checked (`super::dispatch`); `None`
/// when the answer comes later (a pending operation, `sessions::ops`).
pub(crate) fn device_call(s: &mut Sessions, m: &Message, path: &str, member: &str) -> Result<Option<Message>> {
    let uid = check_access(s, m, path)?;
    let networks_held = if member == "AddNetworks" { s.networks_of(uid) } else { 0 };
    let start = match member {
        "EnableDCO" => {
            let name: &str = m.read1().map_err(bad("dev_name"))?;
            settings::ifname("dev_name", name)?;
            return super::dco::enable_dco(s, m, path, name).map(Some);
        }
        "Establish" => Start::Establish,
        "Disable" | "ClearConfig" => Start::Clear(member == "Disable"),
        // A long list is decoded over several loop turns.
        "AddNetworks" if !fits(m.iter_init(), NETWORKS_PER_TURN) => {
            check_networks(m, networks_held)?;
            Start::AddNetworks
        }
        "Destroy" => Start::Destroy,
        _ => return set_setting(s, m, path, member, networks_held).map(Some),
    };
    s.begin(m, path, start).map(|_| None)
}

/// The methods that only record a setting for the next Establish
/// (DNS ones also take effect at once on an established device).
fn set_setting(s: &mut Sessions, m: &Message, path: &str, member: &str, networks_held: usize) -> Result<Message> {
    let d = s.devices.get_mut(path).ok_or_else(|| Error::not_found(format!("no device at {path}")))?;
    let st = &mut d.settings;
    match member {
        "AddIPAddress" => {
            if st.addrs.len() >= ADDRS_PER_DEVICE {
                return Err(Error::arg("ip_address", format!("at most {ADDRS_PER_DEVICE} addresses per device")));
            }
            let va = decode_addr(m)?;
            if !st.addrs.contains(&va) {
                st.addrs.push(va);
            }
        }
        "SetRemoteAddress" => {
            let (a, v6): (&str, bool) = m.read2().map_err(bad("ip_address"))?;
            st.remote = Some(settings::parse_ip("ip_address", a, v6)?);
        }
        "AddNetworks" => st.networks.extend(decode_networks(m, networks_held)?),
        "AddDNS" => {
            let parsed = decode_dns_servers(m)?;
            st.dns_servers = merged(&st.dns_servers, parsed, DNS_SERVERS_PER_DEVICE, "server_list", "servers")?;
        }
        "AddDNSSearch" => {
            let parsed = decode_dns_search(m)?;
            st.dns_search = merged(&st.dns_search, parsed, DNS_SEARCH_PER_DEVICE, "domains", "domains")?;
        }
        "SetDNSSEC" => st.dnssec = settings::dnssec(m.read1().map_err(bad("mode"))?)?,
        "SetDNSTransport" => st.dns_transport = settings::dns_transport(m.read1().map_err(bad("mode"))?)?,
        _ => return Err(unhandled(member)),
    }
    d.modified = true;
    // DNS changes on an established device take effect at once.
    if d.active && (member.starts_with("AddDNS") || member.starts_with("SetDNS")) {
        s.dns_sync();
    }
    Ok(m.method_return())
}

// The argument decoders of the device methods. They see only the message,
// so the fuzz targets run them on messages made from arbitrary bytes.

pub fn decode_addr(m: &Message) -> Result<settings::VpnAddr> {
    let (a, p, g, v6): (&str, u32, &str, bool) = m.read4().map_err(bad("ip_address"))?;
    settings::vpn_addr(a, p, g, v6)
}

/// AddNetworks' list, counted against the UID's share left (it holds
/// `held`) before anything is decoded; a bad element refuses them all.
pub fn decode_networks(m: &Message, held: usize) -> Result<Vec<settings::Network>> {
    check_networks(m, held)?;
    settings::networks_from(m, 0, usize::MAX)
}

/// Fails unless AddNetworks' list fits the UID's share left (it holds `held`).
pub fn check_networks(m: &Message, held: usize) -> Result<()> {
    if fits(m.iter_init(), NETWORKS_PER_UID.saturating_sub(held)) {
        return Ok(());
    }
    Err(Error::arg("networks", format!("at most {NETWORKS_PER_UID} networks per user, on all devices ({held} held)")))
}

pub fn decode_dns_servers(m: &Message) -> Result<Vec<std::net::IpAddr>> {
    let list = read_list(m, "server_list", DNS_SERVERS_PER_DEVICE, "servers")?;
    list.into_iter().map(settings::dns_server).collect()
}

pub fn decode_dns_search(m: &Message) -> Result<Vec<String>> {
    let list = read_list(m, "domains", DNS_SEARCH_PER_DEVICE, "domains")?;
    list.into_iter().map(settings::dns_domain).collect()
}

/// Reads an `as` argument of at most `max` items; a longer one is refused
/// after counting, before any item is decoded.
fn read_list<'a>(m: &'a Message, arg: &'static str, max: usize, what: &str) -> Result<Vec<&'a str>> {
    if !fits(m.iter_init(), max) {
        return Err(Error::arg(arg, format!("more than {max} items (at most {max} {what} per device)")));
    }
    m.read1().map_err(bad(arg))
}

/// `held` followed by the items of `new` it lacks, in order; at most `max`.
pub fn merged<T: Clone + Ord>(held: &[T], new: Vec<T>, max: usize, arg: &'static str, what: &str) -> Result<Vec<T>> {
    let mut seen: crate::vecmap::VecSet<T> = held.iter().cloned().collect();
    let mut all = held.to_vec();
    for x in new {
        if seen.add(x.clone()) {
            all.push(x);
        }
    }
    if all.len() > max {
        return Err(Error::arg(arg, format!("at most {max} {what} per device")));
    }
    Ok(all)
}
