//! Links (RTM_NEWLINK / RTM_DELLINK / RTM_GETLINK).

use libc::{IFLA_IFNAME, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINKINFO, IFLA_MTU, IFLA_TXQLEN};
use libc::{RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK};

use super::attr::{self, AttrError, NlMsg, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use super::{encode, Req, What, OK_DEL};

/// `struct ifinfomsg` (family unspecified): index, flags, change mask.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> Vec<u8> {
    [[0; 4], index.to_ne_bytes(), flags.to_ne_bytes(), change.to_ne_bytes()].concat()
}

/// A request on link `index` (0: named by IFLA_IFNAME), attributes by
/// `put`; a delete counts a link already gone as done.
fn req(ty: u16, index: u32, put: impl FnOnce(&mut NlMsg) -> Result<(), AttrError>, what: String) -> Req {
    let ok_errnos = if ty == RTM_DELLINK { OK_DEL } else { &[] };
    Req { bytes: encode(ty, 0, &ifinfomsg(index, 0, 0), put), ok_errnos, what: What::Text(what) }
}

/// Sets MTU / txqueuelen and the UP flag of an existing link.
pub fn set(ifindex: u32, mtu: Option<u32>, txqlen: Option<u32>, up: bool) -> Req {
    let up_flag = libc::IFF_UP as u32;
    let hdr = ifinfomsg(ifindex, if up { up_flag } else { 0 }, up_flag);
    let bytes = encode(RTM_NEWLINK, 0, &hdr, |m| {
        mtu.map_or(Ok(()), |v| m.put_u32(IFLA_MTU, v))?;
        txqlen.map_or(Ok(()), |v| m.put_u32(IFLA_TXQLEN, v))
    });
    let what = format!("set link #{ifindex} mtu {mtu:?} txqlen {txqlen:?} {}", if up { "up" } else { "down" });
    Req { bytes, ok_errnos: &[], what: What::Text(what) }
}

/// Creates a link of `kind` named `name`, with optional raw IFLA_INFO_DATA
/// attributes (already encoded).
///
/// Both nests carry NLA_F_NESTED, as in the request the upstream ovpn
/// module accepted; rtnetlink masks the flag, so older kernels take it too.
pub fn create(name: &str, kind: &str, info_data: Option<&[u8]>) -> Req {
    let put = |m: &mut NlMsg| {
        m.put_bytes(IFLA_IFNAME, &nul_terminated(name))?;
        m.nest(IFLA_LINKINFO, true, |m| {
            m.put_bytes(IFLA_INFO_KIND, &nul_terminated(kind))?;
            info_data.map_or(Ok(()), |d| m.put_bytes(IFLA_INFO_DATA | NLA_F_NESTED, d))
        })
    };
    let bytes = encode(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0), put);
    Req { bytes, ok_errnos: &[], what: What::Text(format!("create {kind} link {name}")) }
}

pub fn del(ifindex: u32) -> Req {
    req(RTM_DELLINK, ifindex, |_| Ok(()), format!("delete link #{ifindex}"))
}

/// Deletes the link called `name` (RTM_DELLINK by IFLA_IFNAME).
pub fn del_by_name(name: &str) -> Req {
    req(RTM_DELLINK, 0, |m| m.put_bytes(IFLA_IFNAME, &nul_terminated(name)), format!("delete link {name}"))
}

/// RTM_GETLINK for one link by name, acknowledged (so `Socket::dump`
/// returns at the ack).
pub fn get_by_name(name: &str) -> Vec<u8> {
    encode(RTM_GETLINK, NLM_F_ACK, &ifinfomsg(0, 0, 0), |m| m.put_bytes(IFLA_IFNAME, &nul_terminated(name)))
}

/// IFLA_IFALIAS (include/uapi/linux/if_link.h).
const IFLA_IFALIAS: u16 = 20;

/// The alias set on every link the daemon creates. Only a process with
/// CAP_NET_ADMIN can set one, so crash recovery takes it as proof that a
/// link is ours, not merely a name or index a journal line claims.
pub const MARKER: &str = "ovpn-netcfgd";

/// The link kinds the daemon creates: tun/tap, and the two DCO families'.
pub const OUR_KINDS: [&str; 3] = ["tun", "ovpn", "ovpn-dco"];

/// Sets `MARKER` as the alias of a link we just created.
pub fn mark(ifindex: u32) -> Req {
    let what = format!("mark link #{ifindex} as ours (alias {MARKER})");
    req(RTM_NEWLINK, ifindex, |m| m.put_bytes(IFLA_IFALIAS, MARKER.as_bytes()), what)
}

/// RTM_GETLINK dump of every link.
pub fn dump_request() -> Vec<u8> {
    encode(RTM_GETLINK, NLM_F_DUMP, &ifinfomsg(0, 0, 0), |_| Ok(()))
}

/// What crash recovery needs to know about a link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub kind: String,
    pub alias: String,
}

impl LinkInfo {
    /// Created by us: one of our kinds, carrying our marker.
    pub fn is_ours(&self) -> bool {
        OUR_KINDS.contains(&self.kind.as_str()) && self.alias == MARKER
    }
}

fn c_string(v: &[u8]) -> String {
    String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
}

/// Index, name, kind (IFLA_LINKINFO / IFLA_INFO_KIND; "" for links
/// without one, like loopback) and alias from an RTM_NEWLINK payload; None
/// if malformed.
pub fn parse_info(payload: &[u8]) -> Option<LinkInfo> {
    // struct ifinfomsg: family, pad, type (u16), index (i32), flags, change.
    let mut info = LinkInfo { index: u32::from_ne_bytes(payload.get(4..8)?.try_into().ok()?), ..Default::default() };
    for a in attr::attrs(payload.get(16..)?).map_while(Result::ok) {
        match a.kind() {
            libc::IFLA_IFNAME => info.name = c_string(a.payload()),
            IFLA_IFALIAS => info.alias = c_string(a.payload()),
            IFLA_LINKINFO => {
                for kind in a.nested().map_while(Result::ok).filter(|k| k.kind() == IFLA_INFO_KIND) {
                    info.kind = c_string(kind.payload());
                }
            }
            _ => {}
        }
    }
    Some(info)
}

/// Index and kind from an RTM_NEWLINK payload (see `parse_info`).
#[cfg(any(test, feature = "fuzz"))]
pub fn parse_kind(payload: &[u8]) -> Option<(u32, String)> {
    parse_info(payload).map(|l| (l.index, l.kind))
}

fn nul_terminated(name: &str) -> Vec<u8> {
    [name.as_bytes(), &[0]].concat()
}

/// The kernel's name for `ifindex`, if the link exists.
pub fn name_of(ifindex: u32) -> Option<String> {
    nix::net::if_::if_indextoname(ifindex).ok().map(|c| c.to_string_lossy().into_owned())
}

/// The index of link `name`, if it exists.
pub fn index_of(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_read_from_linkinfo() {
        // ifinfomsg (index 7), IFLA_IFNAME "x", IFLA_LINKINFO { IFLA_INFO_KIND "dummy" }.
        let mut p = vec![0u8; 16];
        p[4..8].copy_from_slice(&7u32.to_ne_bytes());
        // Attribute headers (length, type) are in host order.
        for (len, ty) in [(6u16, 3u16), (16, 18 | 0x8000), (10, 1)] {
            p.extend_from_slice(&len.to_ne_bytes());
            p.extend_from_slice(&ty.to_ne_bytes());
            if ty == 3 {
                p.extend_from_slice(&[b'x', 0, 0, 0]);
            }
        }
        p.extend_from_slice(b"dummy\0\0\0");
        assert_eq!(parse_kind(&p), Some((7, "dummy".to_string())));
        // No IFLA_LINKINFO (loopback): empty kind; a short payload: None.
        assert_eq!(parse_kind(&p[..24]), Some((7, String::new())));
        assert_eq!(parse_kind(&p[..6]), None);
        // A truncated attribute is not read past.
        assert_eq!(parse_kind(&p[..30]), Some((7, String::new())));
        // IFLA_IFNAME "tun0", IFLA_LINKINFO { KIND "tun" }, IFLA_IFALIAS: ours.
        let hdr = |len: u16, ty: u16| [len.to_ne_bytes(), ty.to_ne_bytes()].concat();
        let mut p = vec![0u8; 16];
        p[4..8].copy_from_slice(&7u32.to_ne_bytes());
        p.extend_from_slice(&hdr(9, 3));
        p.extend_from_slice(&[b't', b'u', b'n', b'0', 0, 0, 0, 0]);
        p.extend_from_slice(&hdr(12, 18 | 0x8000));
        p.extend_from_slice(&hdr(8, 1));
        p.extend_from_slice(&[b't', b'u', b'n', 0]);
        p.extend_from_slice(&hdr(17, 20));
        p.extend_from_slice(b"ovpn-netcfgd\0\0\0\0");
        let i = parse_info(&p).unwrap();
        assert_eq!((i.index, i.name.as_str(), i.kind.as_str(), i.alias.as_str()), (7, "tun0", "tun", MARKER));
        assert!(i.is_ours());
        assert!(!LinkInfo { kind: "veth".into(), ..i.clone() }.is_ours());
        assert!(!LinkInfo { alias: "x".into(), ..i }.is_ours());
    }
}
