//! Interface addresses (RTM_NEWADDR / RTM_DELADDR).

use std::net::IpAddr;

use libc::{IFA_ADDRESS, IFA_BROADCAST, IFA_LOCAL, RTM_DELADDR, RTM_NEWADDR};

use super::attr::{NLM_F_CREATE, NLM_F_REPLACE};
use super::route::{family, ip_bytes};
use super::{encode, Req, What, OK_ADD, OK_DEL};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix: u8,
}

fn encode_addr(ty: u16, flags: u16, a: &Addr) -> Vec<u8> {
    // struct ifaddrmsg: family, prefix length, flags, scope (universe), index.
    let nodad = if a.addr.is_ipv6() { libc::IFA_F_NODAD as u8 } else { 0 };
    let mut hdr = [family(&a.addr), a.prefix, nodad, 0, 0, 0, 0, 0];
    hdr[4..].copy_from_slice(&a.ifindex.to_ne_bytes());
    encode(ty, flags, &hdr, |m| {
        let b = ip_bytes(&a.addr);
        m.put_bytes(IFA_LOCAL, &b)?;
        m.put_bytes(IFA_ADDRESS, &b)?;
        match a.addr {
            IpAddr::V4(v4) if a.prefix < 31 && ty == RTM_NEWADDR => {
                let mask = u32::MAX.checked_shr(a.prefix as u32).unwrap_or(0);
                m.put_bytes(IFA_BROADCAST, &(u32::from(v4) | mask).to_be_bytes())
            }
            _ => Ok(()),
        }
    })
}

pub fn add(a: &Addr) -> Req {
    let bytes = encode_addr(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, a);
    Req { bytes, ok_errnos: OK_ADD, what: What::Addr("add", a.clone()) }
}

pub fn del(a: &Addr) -> Req {
    Req { bytes: encode_addr(RTM_DELADDR, 0, a), ok_errnos: OK_DEL, what: What::Addr("delete", a.clone()) }
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
