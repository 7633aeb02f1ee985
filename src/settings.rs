//! What a client has asked for on one device, already validated. Every
//! D-Bus argument is checked here when it arrives, so nothing invalid is
//! ever stored and `plan` can trust its input.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::error::{Error, Result};

pub const MAX_NAME: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnAddr {
    pub addr: IpAddr,
    pub prefix: u8,
    /// The in-tunnel gateway (`route-gateway` / peer); routes go via it.
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub net: IpNetwork,
    pub metric: Option<u32>,
    pub exclude: bool,
}

/// An enum that is written as one word (a D-Bus property value, an
/// option): both directions come from one table.
pub trait Word: Copy + PartialEq + 'static {
    /// Every value with its word.
    const WORDS: &'static [(Self, &'static str)];

    fn as_str(self) -> &'static str {
        Self::WORDS.iter().find(|(v, _)| *v == self).map_or("?", |(_, w)| w)
    }

    fn from_word(s: &str) -> Option<Self> {
        Self::WORDS.iter().find(|(_, w)| *w == s).map(|(v, _)| *v)
    }
}

/// Declares a `Word` enum: each value named once, with its word.
macro_rules! words {
    (pub enum $name:ident { $($v:ident = $w:literal),* $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($v),*
        }

        impl $crate::settings::Word for $name {
            const WORDS: &'static [(Self, &'static str)] = &[$((Self::$v, $w)),*];
        }
    };
}
pub(crate) use words;

/// `s` as one of `allowed`; the error names `arg` and lists them.
pub fn word<T: Word>(arg: &'static str, s: &str, allowed: &[T]) -> Result<T> {
    allowed.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
        let list: Vec<&str> = allowed.iter().map(|v| v.as_str()).collect();
        Error::arg(arg, format!("'{}' is not one of {}", s.escape_debug(), list.join(", ")))
    })
}

words! {
    pub enum DnsSec { Unset = "unset", Yes = "yes", No = "no", Optional = "optional" }
}

words! {
    pub enum DnsTransport { Unset = "unset", Plain = "plain", Dot = "dot", Doh = "doh" }
}

words! {
    pub enum DnsScope { Global = "global", Tunnel = "tunnel" }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// 0 = unset, 2 = tap, 3 = tun.
    pub layer: u32,
    pub mtu: u16,
    pub txqueuelen: u16,
    pub reroute_ipv4: bool,
    pub reroute_ipv6: bool,
    pub remote: Option<IpAddr>,
    pub addrs: Vec<VpnAddr>,
    pub networks: Vec<Network>,
    pub dns_servers: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub dnssec: DnsSec,
    pub dns_transport: DnsTransport,
    pub dns_scope: DnsScope,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            layer: 0,
            mtu: 1500,
            txqueuelen: 0,
            reroute_ipv4: false,
            reroute_ipv6: false,
            remote: None,
            addrs: Vec::new(),
            networks: Vec::new(),
            dns_servers: Vec::new(),
            dns_search: Vec::new(),
            dnssec: DnsSec::Unset,
            dns_transport: DnsTransport::Unset,
            dns_scope: DnsScope::Global,
        }
    }
}

/// Rejects empty, over-long and control-character strings.
pub fn check_text(arg: &'static str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(Error::arg(arg, format!("longer than {max} bytes")));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(Error::arg(arg, format!("contains control character U+{:04X}", c as u32)));
    }
    Ok(())
}

/// Parses an IP address and checks it is of the family `ipv6` says.
pub fn parse_ip(arg: &'static str, s: &str, ipv6: bool) -> Result<IpAddr> {
    check_text(arg, s, 64)?;
    let a: IpAddr = s.parse().map_err(|_| Error::arg(arg, format!("'{s}' is not an IP address")))?;
    if a.is_ipv6() != ipv6 {
        return Err(Error::arg(arg, format!("'{s}' is not an {} address", if ipv6 { "IPv6" } else { "IPv4" })));
    }
    Ok(a)
}

/// Checks that `prefix` fits the family of `a`.
fn check_prefix(arg: &'static str, a: &IpAddr, prefix: u32) -> Result<u8> {
    let max = if a.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(Error::arg(arg, format!("{prefix} is larger than {max}")));
    }
    Ok(prefix as u8)
}

pub fn vpn_addr(addr: &str, prefix: u32, gateway: &str, ipv6: bool) -> Result<VpnAddr> {
    let a = parse_ip("ip_address", addr, ipv6)?;
    let prefix = check_prefix("prefix", &a, prefix)?;
    if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
        return Err(Error::arg("ip_address", format!("'{addr}' cannot be an interface address")));
    }
    let gateway = if gateway.is_empty() { None } else { Some(parse_ip("gateway", gateway, ipv6)?) };
    Ok(VpnAddr { addr: a, prefix, gateway })
}

pub fn network(addr: &str, prefix: u32, metric: i32, ipv6: bool, exclude: bool) -> Result<Network> {
    let a = parse_ip("networks.ip_address", addr, ipv6)?;
    let net = IpNetwork::new(a, check_prefix("networks.prefix", &a, prefix)?)
        .map_err(|e| Error::arg("networks.prefix", e.to_string()))?;
    if net.network() != a {
        return Err(Error::arg(
            "networks.ip_address",
            format!("{addr}/{prefix} has host bits set (did you mean {}/{prefix}?)", net.network()),
        ));
    }
    let metric = match metric {
        -1 => None,
        m if m >= 0 => Some(m as u32),
        m => return Err(Error::arg("networks.metric", format!("{m} is negative (use -1 for the default)"))),
    };
    Ok(Network { net, metric, exclude })
}

/// Up to `n` networks of AddNetworks' list, from its element `from` on
/// (the signature is checked).
pub fn networks_from(m: &dbus::Message, from: usize, n: usize) -> Result<Vec<Network>> {
    let mut it = m.iter_init();
    let mut a = it.recurse(dbus::arg::ArgType::Array).ok_or_else(|| Error::arg("networks", "not an array"))?;
    for _ in 0..from {
        a.next();
    }
    let mut out = Vec::new();
    while out.len() < n && a.arg_type() != dbus::arg::ArgType::Invalid {
        let (addr, p, metric, v6, ex): (&str, u32, i32, bool, bool) =
            a.get().ok_or_else(|| Error::arg("networks", "an element is not (suibb)"))?;
        out.push(network(addr, p, metric, v6, ex)?);
        a.next();
    }
    Ok(out)
}

pub fn dns_server(s: &str) -> Result<IpAddr> {
    check_text("server_list", s, 64)?;
    // Refused, not trimmed: the reference trims nothing either (it stores
    // the string; its resolved backend drops addresses that do not parse).
    if s.trim() != s {
        return Err(Error::arg("server_list", format!("'{s}' has white space around the address")));
    }
    let a: IpAddr = s.parse().map_err(|_| Error::arg("server_list", format!("'{s}' is not an IP address")))?;
    if a.is_unspecified() || a.is_multicast() {
        return Err(Error::arg("server_list", format!("'{s}' cannot be a DNS server")));
    }
    Ok(a)
}

/// A DNS name: 1-253 bytes, labels of 1-63 letters, digits, '-' or '_',
/// not starting or ending with '-'; one trailing dot allowed.
pub fn dns_domain(s: &str) -> Result<String> {
    let d = s.strip_suffix('.').unwrap_or(s);
    if d.is_empty() || d.len() > 253 {
        return Err(Error::arg("domains", format!("'{s}' must be 1-253 characters")));
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !ok {
            return Err(Error::arg("domains", format!("'{s}' is not a valid domain name")));
        }
    }
    Ok(d.to_ascii_lowercase())
}

pub fn dnssec(s: &str) -> Result<DnsSec> {
    word("mode", s, &[DnsSec::Yes, DnsSec::No, DnsSec::Optional])
}

pub fn dns_transport(s: &str) -> Result<DnsTransport> {
    word("mode", s, &[DnsTransport::Plain, DnsTransport::Dot, DnsTransport::Doh])
}

pub fn dns_scope(s: &str) -> Result<DnsScope> {
    word("dns_scope", s, &[DnsScope::Global, DnsScope::Tunnel])
}

/// Turns a client's device name into a valid object-path element.
pub fn path_element(name: &str) -> Result<String> {
    check_text("device_name", name, MAX_NAME)?;
    if name.is_empty() {
        return Err(Error::arg("device_name", "empty"));
    }
    Ok(name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect())
}

/// Checks a kernel interface name (used for DCO devices).
pub fn ifname(arg: &'static str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() >= 16 {
        return Err(Error::arg(arg, "interface names are 1-15 bytes"));
    }
    if s == "." || s == ".." || s.bytes().any(|c| c <= b' ' || c == b'/' || c == b':' || c >= 0x7f) {
        return Err(Error::arg(arg, format!("'{}' is not a valid interface name", s.escape_debug())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_must_be_canonical_and_match_family() {
        assert!(network("10.0.0.0", 8, -1, false, false).is_ok());
        assert!(network("10.0.0.1", 8, -1, false, false).unwrap_err().to_string().contains("host bits"));
        assert!(network("10.0.0.0", 33, -1, false, false).is_err());
        assert!(network("2001:db8::", 32, 5, false, false).is_err());
        assert!(network("2001:db8::", 32, 5, true, true).unwrap().exclude);
        assert!(network("10.0.0.0", 8, -2, false, false).is_err());
    }

    #[test]
    fn addresses_and_names() {
        assert!(vpn_addr("10.8.0.2", 24, "10.8.0.1", false).is_ok());
        assert!(vpn_addr("10.8.0.2", 24, "fd00::1", false).is_err());
        assert!(vpn_addr("0.0.0.0", 24, "", false).is_err());
        assert_eq!(vpn_addr("fd00::2", 64, "", true).unwrap().gateway, None);
        assert_eq!(path_element("d444-c2.d1").unwrap(), "d444_c2_d1");
        assert!(path_element("a\nb").is_err());
        assert_eq!(dns_domain("Example.COM.").unwrap(), "example.com");
        for bad in ["", "a..b", "-a.b", "a b", &"x".repeat(64), "ex\u{e9}.com"] {
            assert!(dns_domain(bad).is_err(), "{bad}");
        }
        assert_eq!(dns_server("fd00::53").unwrap().to_string(), "fd00::53");
        for bad in ["10.0.0.1 ", " 10.0.0.1", "10.0.0.1\u{a0}"] {
            let e = dns_server(bad).unwrap_err().to_string();
            assert!(e.contains("white space around the address"), "{bad:?}: {e}");
        }
        assert!(ifname("dev_name", "ovpn0").is_ok());
        assert!(ifname("dev_name", "a/b").is_err());
        assert!(ifname("dev_name", "0123456789abcdef").is_err());
    }

    fn round_trip<T: Word + std::fmt::Debug>() {
        for (v, w) in T::WORDS {
            assert_eq!((v.as_str(), T::from_word(w)), (*w, Some(*v)));
        }
    }

    #[test]
    fn words_both_ways() {
        round_trip::<DnsSec>();
        round_trip::<DnsTransport>();
        round_trip::<DnsScope>();
        round_trip::<crate::config::RedirectMethod>();
        assert_eq!(dnssec("optional"), Ok(DnsSec::Optional));
        let e = dnssec("unset").unwrap_err().to_string();
        assert_eq!(e, "invalid argument 'mode': 'unset' is not one of yes, no, optional");
        assert!(dns_scope("tunnel\n").unwrap_err().to_string().contains("'tunnel\\n' is not one of global, tunnel"));
    }
}
