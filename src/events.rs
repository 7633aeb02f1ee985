//! NetworkChange event types (bit values of the API) and their details.

pub const DEVICE_ADDED: u32 = 1;
pub const DEVICE_REMOVED: u32 = 2;
pub const IPADDR_ADDED: u32 = 4;
pub const IPADDR_REMOVED: u32 = 8;
pub const ROUTE_ADDED: u32 = 16;
pub const ROUTE_REMOVED: u32 = 32;
pub const ROUTE_EXCLUDED: u32 = 64;
pub const DNS_SERVER_ADDED: u32 = 128;
pub const DNS_SERVER_REMOVED: u32 = 256;
pub const DNS_SEARCH_ADDED: u32 = 512;
pub const DNS_SEARCH_REMOVED: u32 = 1024;

/// One NetworkChange signal before the device name and path are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    pub details: Vec<(&'static str, String)>,
}

impl Event {
    pub fn new(kind: u32) -> Self {
        Event { kind, details: Vec::new() }
    }
    pub fn with(mut self, k: &'static str, v: impl ToString) -> Self {
        self.details.push((k, v.to_string()));
        self
    }
}

/// IPADDR_* details: ip_version, ip_address, prefix (deprecated) and prefix_size.
pub fn addr(kind: u32, &(a, prefix): &(std::net::IpAddr, u8)) -> Event {
    Event::new(kind)
        .with("ip_version", if a.is_ipv4() { "4" } else { "6" })
        .with("ip_address", a)
        .with("prefix", prefix)
        .with("prefix_size", prefix)
}

/// ROUTE_* details; `gateway` is left out for ROUTE_REMOVED, as in the API.
pub fn route(kind: u32, net: &ipnetwork::IpNetwork, gateway: Option<&std::net::IpAddr>) -> Event {
    let mut e = Event::new(kind)
        .with("ip_version", if net.is_ipv4() { "4" } else { "6" })
        .with("subnet", net.network())
        .with("prefix", net.prefix())
        .with("prefix_size", net.prefix());
    if kind != ROUTE_REMOVED {
        e = e.with("gateway", gateway.map(|g| g.to_string()).unwrap_or_default());
    }
    e
}
