//! Interface addresses (RTM_NEWADDR / RTM_DELADDR).

use std::net::IpAddr;

use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Ifa, IfaF, RtScope, Rtm};
use neli::rtnl::IfaddrmsgBuilder;
use neli::types::RtBuffer;

use super::route::{family, ip_bytes};
use super::{encode, rta, Req, What, OK_ADD, OK_DEL};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Addr {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix: u8,
}

fn encode_addr(ty: Rtm, flags: NlmF, a: &Addr) -> Vec<u8> {
    let mut attrs = RtBuffer::new();
    let b = ip_bytes(&a.addr);
    attrs.push(rta(Ifa::Local, &b));
    attrs.push(rta(Ifa::Address, &b));
    if let IpAddr::V4(v4) = a.addr {
        if a.prefix < 31 && ty == Rtm::Newaddr {
            let mask = u32::MAX.checked_shr(a.prefix as u32).unwrap_or(0);
            let bcast = u32::from(v4) | mask;
            attrs.push(rta(Ifa::Broadcast, &bcast.to_be_bytes()));
        }
    }
    let msg = IfaddrmsgBuilder::default()
        .ifa_family(family(&a.addr))
        .ifa_prefixlen(a.prefix)
        .ifa_flags(if a.addr.is_ipv6() { IfaF::NODAD } else { IfaF::empty() })
        .ifa_scope(RtScope::Universe)
        .ifa_index(a.ifindex)
        .rtattrs(attrs)
        .build()
        .expect("all fields set");
    encode(ty, flags, msg)
}

pub fn add(a: &Addr) -> Req {
    Req {
        bytes: encode_addr(Rtm::Newaddr, NlmF::REQUEST | NlmF::CREATE | NlmF::REPLACE, a),
        ok_errnos: OK_ADD,
        what: What::AddAddr(a.clone()),
    }
}

pub fn del(a: &Addr) -> Req {
    Req { bytes: encode_addr(Rtm::Deladdr, NlmF::REQUEST, a), ok_errnos: OK_DEL, what: What::DelAddr(a.clone()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_address_carries_broadcast() {
        let a = Addr { ifindex: 3, addr: "10.98.0.2".parse().unwrap(), prefix: 24 };
        let b = add(&a).bytes;
        // nlmsghdr(16) + ifaddrmsg(8): family, prefix, flags, scope, index
        assert_eq!(b[16], libc::AF_INET as u8);
        assert_eq!(b[17], 24);
        assert_eq!(u32::from_ne_bytes([b[20], b[21], b[22], b[23]]), 3);
        let attrs: Vec<_> = crate::netlink::attrs(&b[24..]).collect();
        assert!(attrs.contains(&(libc::IFA_BROADCAST, &[10u8, 98, 0, 255][..])));
        assert!(attrs.contains(&(libc::IFA_LOCAL, &[10u8, 98, 0, 2][..])));
    }
}
