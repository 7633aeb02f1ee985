//! Methods of device objects `/net/openvpn/v3/netcfg/<pid>_<name>`.

use dbus::Message;

use crate::bus::manager::expect_sig;
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::settings::{self, MAX_ADDRS, MAX_DNS_SEARCH, MAX_DNS_SERVERS, MAX_NETWORKS};

fn bad(arg: &'static str) -> impl Fn(dbus::arg::TypeMismatchError) -> Error {
    move |e| Error::arg(arg, e.to_string())
}

impl Daemon {
    /// Fails unless the caller may drive the device at `path`.
    fn check_access(&mut self, m: &Message, path: &str) -> Result<()> {
        let (_, c) = self.caller(m)?;
        let d = self.devices.get(path).ok_or_else(|| Error::NotFound(format!("no device at {path}")))?;
        if !d.may(c.uid) {
            return Err(Error::AccessDenied(format!("uid {} may not use {path} (owner uid {})", c.uid, d.owner_uid)));
        }
        Ok(())
    }

    pub(crate) fn device_call(&mut self, m: &Message, path: &str, member: &str) -> Result<Message> {
        // Signature first, so a mistyped call never reaches the ACL lookup.
        let sig: &[&str] = match member {
            "AddIPAddress" => &["susb"],
            "SetRemoteAddress" => &["sb"],
            "AddNetworks" => &["a(suibb)"],
            "AddDNS" | "AddDNSSearch" => &["as"],
            "SetDNSSEC" | "SetDNSTransport" | "EnableDCO" => &["s"],
            "Establish" | "Disable" | "ClearConfig" | "Destroy" => &[""],
            _ => return Err(Error::NotFound(String::new())),
        };
        expect_sig(m, sig)?;
        let redirect = self.cfg.redirect != crate::config::RedirectMethod::None;
        let mut others = self.our_links();
        self.check_access(m, path)?;
        let d = self.devices.get_mut(path).ok_or_else(|| Error::NotFound(format!("no device at {path}")))?;
        match member {
            "AddIPAddress" => {
                let (a, p, g, v6): (&str, u32, &str, bool) = m.read4().map_err(bad("ip_address"))?;
                let va = settings::vpn_addr(a, p, g, v6)?;
                if d.settings.addrs.len() >= MAX_ADDRS {
                    return Err(Error::arg("ip_address", format!("at most {MAX_ADDRS} addresses per device")));
                }
                if !d.settings.addrs.contains(&va) {
                    d.settings.addrs.push(va);
                }
            }
            "SetRemoteAddress" => {
                let (a, v6): (&str, bool) = m.read2().map_err(bad("ip_address"))?;
                d.settings.remote = Some(settings::parse_ip("ip_address", a, v6)?);
            }
            "AddNetworks" => {
                let nets: Vec<(String, u32, i32, bool, bool)> = m.read1().map_err(bad("networks"))?;
                if d.settings.networks.len() + nets.len() > MAX_NETWORKS {
                    return Err(Error::arg("networks", format!("at most {MAX_NETWORKS} networks per device")));
                }
                // Validate all before storing any: a bad element stores nothing.
                let parsed = nets
                    .iter()
                    .map(|(a, p, metric, v6, ex)| settings::network(a, *p, *metric, *v6, *ex))
                    .collect::<Result<Vec<_>>>()?;
                d.settings.networks.extend(parsed);
            }
            "AddDNS" => {
                let list: Vec<String> = m.read1().map_err(bad("server_list"))?;
                let parsed = list.iter().map(|s| settings::dns_server(s)).collect::<Result<Vec<_>>>()?;
                let mut all = d.settings.dns_servers.clone();
                for a in parsed {
                    if !all.contains(&a) {
                        all.push(a);
                    }
                }
                if all.len() > MAX_DNS_SERVERS {
                    return Err(Error::arg("server_list", format!("at most {MAX_DNS_SERVERS} servers")));
                }
                d.settings.dns_servers = all;
            }
            "AddDNSSearch" => {
                let list: Vec<String> = m.read1().map_err(bad("domains"))?;
                let parsed = list.iter().map(|s| settings::dns_domain(s)).collect::<Result<Vec<_>>>()?;
                let mut all = d.settings.dns_search.clone();
                for s in parsed {
                    if !all.contains(&s) {
                        all.push(s);
                    }
                }
                if all.len() > MAX_DNS_SEARCH {
                    return Err(Error::arg("domains", format!("at most {MAX_DNS_SEARCH} domains")));
                }
                d.settings.dns_search = all;
            }
            "SetDNSSEC" => {
                let s: &str = m.read1().map_err(bad("mode"))?;
                d.settings.dnssec = settings::dnssec(s)?;
            }
            "SetDNSTransport" => {
                let s: &str = m.read1().map_err(bad("mode"))?;
                d.settings.dns_transport = settings::dns_transport(s)?;
            }
            "EnableDCO" => {
                let name: &str = m.read1().map_err(bad("dev_name"))?;
                settings::ifname("dev_name", name)?;
                let path = path.to_string();
                let name = name.to_string();
                return self.enable_dco(m, &path, &name);
            }
            "Establish" => {
                others.retain(|i| Some(*i) != d.link.as_ref().map(|l| l.0));
                let (fd, events, notes) = d.establish(&mut self.kernel, &others, redirect)?;
                for n in notes {
                    log::warn!("{path}: {n}");
                }
                let name = d.name.clone();
                log::info!("{path}: established {name}");
                self.emit_notices(path, &name, events);
                self.dns_sync();
                // A DCO device has no tun fd: the reply is empty (reference §7.2).
                return Ok(match fd {
                    Some(fd) => m.method_return().append1(fd),
                    None => m.method_return(),
                });
            }
            "Disable" | "ClearConfig" => {
                // ClearConfig, as the packaged netcfg answers it: the
                // addresses and routes go, queued and applied (the link
                // stays, down); DNS settings and properties stay.
                let events = d.teardown(&mut self.kernel, false);
                // The client supplies its settings again before the next Establish.
                d.settings.addrs.clear();
                d.settings.networks.clear();
                if member == "Disable" {
                    d.settings.dns_servers.clear();
                    d.settings.dns_search.clear();
                }
                let name = d.name.clone();
                log::info!("{path}: {}", if member == "Disable" { "disabled" } else { "configuration cleared" });
                self.emit_notices(path, &name, events);
                self.dns_sync();
                return Ok(m.method_return());
            }
            "Destroy" => {
                let sender = m.sender().map(|s| s.to_string()).unwrap_or_default();
                self.remove_device(path, &format!("Destroy by {sender}"), true);
                return Ok(m.method_return());
            }
            _ => unreachable!("filtered by the signature table"),
        }
        d.modified = true;
        // DNS changes on an established device take effect at once.
        if d.active && (member.starts_with("AddDNS") || member.starts_with("SetDNS")) {
            self.dns_sync();
        }
        Ok(m.method_return())
    }
}
