//! Policy routing rules (RTM_NEWRULE / RTM_DELRULE), for the fwmark
//! redirect method: marked packets (the VPN's own socket) look up a table
//! of their own that holds the route the host used before the tunnel.

use neli::consts::nl::NlmF;
use neli::consts::rtnl::{FrAct, Frattr, RtAddrFamily, RtTable, Rtm};
use neli::rtnl::FibmsgBuilder;
use neli::types::RtBuffer;

use super::{encode, rta, Req, What, OK_ADD, OK_DEL};

/// `fwmark <mark> lookup <table>` for one family, tagged with our protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub ipv6: bool,
    pub priority: u32,
    pub fwmark: u32,
    pub table: u32,
    pub protocol: u8,
}

impl Rule {
    pub fn to_line(&self) -> String {
        format!(
            "rule {} {} {} {} {}",
            if self.ipv6 { 6 } else { 4 },
            self.priority,
            self.fwmark,
            self.table,
            self.protocol
        )
    }

    /// Parses the fields of a `to_line` line (already split on spaces).
    pub fn parse(f: &[&str]) -> Option<Rule> {
        match f {
            ["rule", fam, prio, mark, table, proto] => Some(Rule {
                ipv6: match *fam {
                    "4" => false,
                    "6" => true,
                    _ => return None,
                },
                priority: prio.parse().ok()?,
                fwmark: mark.parse().ok()?,
                table: table.parse().ok()?,
                protocol: proto.parse().ok()?,
            }),
            _ => None,
        }
    }
}

fn encode_rule(ty: Rtm, flags: NlmF, r: &Rule) -> Vec<u8> {
    let mut attrs = RtBuffer::new();
    attrs.push(rta(Frattr::Priority, &r.priority.to_ne_bytes()));
    attrs.push(rta(Frattr::Fwmark, &r.fwmark.to_ne_bytes()));
    attrs.push(rta(Frattr::Fwmask, &u32::MAX.to_ne_bytes()));
    attrs.push(rta(Frattr::Table, &r.table.to_ne_bytes()));
    attrs.push(rta(Frattr::Protocol, &[r.protocol]));
    let msg = FibmsgBuilder::default()
        .fib_family(if r.ipv6 { RtAddrFamily::Inet6 } else { RtAddrFamily::Inet })
        .fib_dst_len(0)
        .fib_src_len(0)
        .fib_tos(0)
        .fib_table(if r.table < 256 { RtTable::from(r.table as u8) } else { RtTable::Unspec })
        .fib_action(FrAct::FrActToTbl)
        .rtattrs(attrs)
        .build()
        .expect("all fields set");
    encode(ty, flags, msg)
}

pub fn add(r: &Rule) -> Req {
    Req {
        bytes: encode_rule(Rtm::Newrule, NlmF::REQUEST | NlmF::CREATE | NlmF::EXCL, r),
        ok_errnos: OK_ADD,
        what: What::Text(format!(
            "add rule fwmark {:#x} lookup {} (IPv{})",
            r.fwmark,
            r.table,
            if r.ipv6 { 6 } else { 4 }
        )),
    }
}

pub fn del(r: &Rule) -> Req {
    Req {
        bytes: encode_rule(Rtm::Delrule, NlmF::REQUEST, r),
        ok_errnos: OK_DEL,
        what: What::Text(format!("delete rule fwmark {:#x} lookup {}", r.fwmark, r.table)),
    }
}

/// A dump of all rules of one family.
pub fn dump_request(ipv6: bool) -> Vec<u8> {
    let msg = FibmsgBuilder::default()
        .fib_family(if ipv6 { RtAddrFamily::Inet6 } else { RtAddrFamily::Inet })
        .fib_dst_len(0)
        .fib_src_len(0)
        .fib_tos(0)
        .fib_table(RtTable::Unspec)
        .fib_action(FrAct::Unspec)
        .build()
        .expect("all fields set");
    encode(Rtm::Getrule, NlmF::REQUEST | NlmF::DUMP, msg)
}

/// Parses an RTM_NEWRULE payload into a `Rule` if it is one of ours
/// (protocol `proto`).
pub fn parse_ours(payload: &[u8], proto: u8) -> Option<Rule> {
    if payload.len() < 12 {
        return None;
    }
    let ipv6 = payload[0] as i32 == libc::AF_INET6;
    let mut r = Rule { ipv6, priority: 0, fwmark: 0, table: payload[4] as u32, protocol: 0 };
    for (t, p) in super::attrs(&payload[12..]) {
        let u = |p: &[u8]| p.try_into().ok().map(u32::from_ne_bytes);
        match t {
            t if t == u16::from(Frattr::Priority) => r.priority = u(p)?,
            t if t == u16::from(Frattr::Fwmark) => r.fwmark = u(p)?,
            t if t == u16::from(Frattr::Table) => r.table = u(p)?,
            t if t == u16::from(Frattr::Protocol) => r.protocol = *p.first()?,
            _ => {}
        }
    }
    (r.protocol == proto).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_encodes_and_parses_back() {
        let r = Rule { ipv6: true, priority: 32700, fwmark: 51820, table: 51820, protocol: 79 };
        let b = add(&r).bytes;
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), libc::RTM_NEWRULE);
        assert_eq!(parse_ours(&b[16..], 79), Some(r.clone()));
        assert_eq!(parse_ours(&b[16..], 3), None);
        assert_eq!(Rule::parse(&r.to_line().split(' ').collect::<Vec<_>>()), Some(r));
    }
}
