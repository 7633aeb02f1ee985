//! Policy routing rules (RTM_NEWRULE / RTM_DELRULE), for the fwmark
//! redirect method: marked packets (the VPN's own socket) look up a table
//! of their own that holds the route the host used before the tunnel.

use libc::{RTM_DELRULE, RTM_GETRULE, RTM_NEWRULE};

use super::attr::{self, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use super::{encode, Req, What, OK_ADD, OK_DEL};

/// include/uapi/linux/fib_rules.h
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FRA_PROTOCOL: u16 = 21;
const FR_ACT_TO_TBL: u8 = 1;

/// `fwmark <mark> lookup <table>` for one family, tagged with our protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    pub ipv6: bool,
    pub priority: u32,
    pub fwmark: u32,
    pub table: u32,
    pub protocol: u8,
}

/// `struct fib_rule_hdr`: family, dst_len, src_len, tos, table (below 256;
/// else FRA_TABLE says which), two reserved bytes, action, flags.
fn fib_rule_hdr(ipv6: bool, table: u32, action: u8) -> [u8; 12] {
    let family = (if ipv6 { libc::AF_INET6 } else { libc::AF_INET }) as u8;
    [family, 0, 0, 0, if table < 256 { table as u8 } else { 0 }, 0, 0, action, 0, 0, 0, 0]
}

fn encode_rule(ty: u16, flags: u16, r: &Rule) -> Vec<u8> {
    let ints = [(FRA_PRIORITY, r.priority), (FRA_FWMARK, r.fwmark), (FRA_FWMASK, u32::MAX), (FRA_TABLE, r.table)];
    encode(ty, flags, &fib_rule_hdr(r.ipv6, r.table, FR_ACT_TO_TBL), |m| {
        for (ty, v) in ints {
            m.put_u32(ty, v)?;
        }
        m.put_u8(FRA_PROTOCOL, r.protocol)
    })
}

pub fn add(r: &Rule) -> Req {
    let what = format!("add rule fwmark {:#x} lookup {} (IPv{})", r.fwmark, r.table, if r.ipv6 { 6 } else { 4 });
    Req { bytes: encode_rule(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, r), ok_errnos: OK_ADD, what: What::Text(what) }
}

pub fn del(r: &Rule) -> Req {
    let what = format!("delete rule fwmark {:#x} lookup {}", r.fwmark, r.table);
    Req { bytes: encode_rule(RTM_DELRULE, 0, r), ok_errnos: OK_DEL, what: What::Text(what) }
}

/// A dump of all rules of one family.
pub fn dump_request(ipv6: bool) -> Vec<u8> {
    encode(RTM_GETRULE, NLM_F_DUMP, &fib_rule_hdr(ipv6, 0, 0), |_| Ok(()))
}

/// Parses an RTM_NEWRULE payload into a `Rule` if it is one of ours
/// (protocol `proto`).
pub fn parse_ours(payload: &[u8], proto: u8) -> Option<Rule> {
    // struct fib_rule_hdr (see `fib_rule_hdr`), then the attributes.
    let [family, _, _, _, table, _, _, _, _, _, _, _, attrs @ ..] = payload else {
        return None;
    };
    let ipv6 = i32::from(*family) == libc::AF_INET6;
    let mut r = Rule { ipv6, priority: 0, fwmark: 0, table: u32::from(*table), protocol: 0 };
    for a in attr::attrs(attrs).map_while(Result::ok) {
        match a.kind() {
            FRA_PRIORITY => r.priority = a.u32().ok()?,
            FRA_FWMARK => r.fwmark = a.u32().ok()?,
            FRA_TABLE => r.table = a.u32().ok()?,
            FRA_PROTOCOL => r.protocol = *a.payload().first()?,
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
        // The journal's line for its undo reads back as the same rule.
        let u = crate::journal::Undo::DelRule(r);
        assert_eq!(crate::journal::Undo::parse(&u.to_string()), Some(u));
    }
}
