//! Links (RTM_NEWLINK / RTM_DELLINK / RTM_GETLINK).

use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Ifla, IflaInfo, RtAddrFamily, Rtm};
use neli::rtnl::IfinfomsgBuilder;
use neli::types::RtBuffer;

use super::{encode, rta, Req, What, OK_DEL};

/// Sets MTU / txqueuelen and the UP flag of an existing link.
pub fn set(ifindex: u32, mtu: Option<u32>, txqlen: Option<u32>, up: bool) -> Req {
    let mut attrs = RtBuffer::new();
    if let Some(m) = mtu {
        attrs.push(rta(Ifla::Mtu, &m.to_ne_bytes()));
    }
    if let Some(q) = txqlen {
        attrs.push(rta(Ifla::Txqlen, &q.to_ne_bytes()));
    }
    let b = IfinfomsgBuilder::default().ifi_family(RtAddrFamily::Unspecified).ifi_index(ifindex as i32);
    let b = if up { b.up() } else { b.down() };
    let msg = b.rtattrs(attrs).build().expect("all fields set");
    Req {
        bytes: encode(Rtm::Newlink, NlmF::REQUEST, msg),
        ok_errnos: &[],
        what: What::Text(format!(
            "set link #{ifindex} mtu {mtu:?} txqlen {txqlen:?} {}",
            if up { "up" } else { "down" }
        )),
    }
}

/// Creates a link of `kind` named `name`, with optional raw IFLA_INFO_DATA
/// attributes (already encoded).
pub fn create(name: &str, kind: &str, info_data: Option<&[u8]>) -> Req {
    let mut attrs = RtBuffer::new();
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    attrs.push(rta(Ifla::Ifname, &n));
    let mut k = kind.as_bytes().to_vec();
    k.push(0);
    let mut linkinfo = rta(Ifla::Linkinfo, &[]);
    linkinfo = linkinfo.nest(&rta(IflaInfo::Kind, &k)).expect("in-memory");
    if let Some(d) = info_data {
        linkinfo = linkinfo.nest(&rta(IflaInfo::Data, d)).expect("in-memory");
    }
    attrs.push(linkinfo);
    let msg = IfinfomsgBuilder::default()
        .ifi_family(RtAddrFamily::Unspecified)
        .rtattrs(attrs)
        .build()
        .expect("all fields set");
    Req {
        bytes: encode(Rtm::Newlink, NlmF::REQUEST | NlmF::CREATE | NlmF::EXCL, msg),
        ok_errnos: &[],
        what: What::Text(format!("create {kind} link {name}")),
    }
}

pub fn del(ifindex: u32) -> Req {
    let msg = IfinfomsgBuilder::default()
        .ifi_family(RtAddrFamily::Unspecified)
        .ifi_index(ifindex as i32)
        .build()
        .expect("all fields set");
    Req {
        bytes: encode(Rtm::Dellink, NlmF::REQUEST, msg),
        ok_errnos: OK_DEL,
        what: What::Text(format!("delete link #{ifindex}")),
    }
}

/// The kernel's name for `ifindex`, if the link exists.
pub fn name_of(ifindex: u32) -> Option<String> {
    nix::net::if_::if_indextoname(ifindex).ok().map(|c| c.to_string_lossy().into_owned())
}

/// The index of link `name`, if it exists.
pub fn index_of(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}
