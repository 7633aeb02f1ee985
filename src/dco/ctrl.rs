//! Generic-netlink controller: look a family up by name and read its id,
//! name and multicast groups from the reply (the rest is skipped: the
//! daemon needs nothing else).
//! Constants: `include/uapi/linux/genetlink.h`.

use std::fmt;

use crate::netlink::attr::{self, AttrError, NlMsg, NlMsgRef, NlStatus, NLM_F_REQUEST};

/// `GENL_ID_CTRL`: the controller's fixed family id.
pub const GENL_ID_CTRL: u16 = 0x10;
/// `CTRL_CMD_NEWFAMILY`: command of the reply.
pub const CTRL_CMD_NEWFAMILY: u8 = 1;
/// `CTRL_CMD_GETFAMILY`: command of the request.
pub const CTRL_CMD_GETFAMILY: u8 = 3;
/// Controller protocol version sent in requests (as genl_ctrl_resolve does).
pub const CTRL_VERSION: u8 = 1;
/// `CTRL_ATTR_FAMILY_ID` (u16).
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// `CTRL_ATTR_FAMILY_NAME` (string).
pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// `CTRL_ATTR_MCAST_GROUPS` (array of nests).
pub const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
/// `CTRL_ATTR_MCAST_GRP_NAME` (string).
pub const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
/// `CTRL_ATTR_MCAST_GRP_ID` (u32).
pub const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
/// `GENL_NAMSIZ`: family and group names, NUL included.
pub const GENL_NAMSIZ: usize = 16;

/// Most groups kept from one reply (ovpn has 1).
pub const MAX_ENTRIES: usize = 64;

/// Why a family could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtrlError {
    /// The name does not fit GENL_NAMSIZ or contains a NUL.
    BadName(String),
    /// The kernel answered with an error (ENOENT: family not registered).
    Kernel(NlStatus),
    /// The message is not a CTRL_CMD_NEWFAMILY reply.
    NotFamilyReply { nlmsg_type: u16 },
    /// The reply lacks CTRL_ATTR_FAMILY_ID.
    MissingId,
    /// More groups than [`MAX_ENTRIES`].
    TooManyEntries,
    /// The reply is malformed.
    Netlink(AttrError),
}

impl fmt::Display for CtrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtrlError::BadName(n) => write!(f, "invalid generic netlink family name {n:?}"),
            CtrlError::Kernel(s) => write!(f, "generic netlink family lookup failed: {}", s.describe()),
            CtrlError::NotFamilyReply { nlmsg_type } => {
                write!(f, "unexpected controller message type {nlmsg_type}")
            }
            CtrlError::MissingId => write!(f, "controller reply lacks the family id"),
            CtrlError::TooManyEntries => write!(f, "controller reply has too many entries"),
            CtrlError::Netlink(e) => write!(f, "malformed controller reply: {e}"),
        }
    }
}

impl std::error::Error for CtrlError {}

impl From<AttrError> for CtrlError {
    fn from(e: AttrError) -> Self {
        CtrlError::Netlink(e)
    }
}

/// A CTRL_CMD_NEWFAMILY reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilyInfo {
    /// The id to put in `nlmsg_type`.
    pub id: u16,
    /// The family name.
    pub name: String,
    /// Multicast groups (name, id).
    pub mcast_groups: Vec<(String, u32)>,
}

impl FamilyInfo {
    /// Returns the id of the multicast group `name`, if the family has it.
    pub fn mcast_group(&self, name: &str) -> Option<u32> {
        self.mcast_groups.iter().find(|(n, _)| n == name).map(|(_, id)| *id)
    }
}

/// Builds CTRL_CMD_GETFAMILY for `name` (seq 0, no ACK: the reply is the answer).
pub fn getfamily_request(name: &str) -> Result<NlMsg, CtrlError> {
    if name.is_empty() || name.len() >= GENL_NAMSIZ || name.contains('\0') {
        return Err(CtrlError::BadName(name.to_string()));
    }
    let mut m = NlMsg::genl(GENL_ID_CTRL, NLM_F_REQUEST, CTRL_CMD_GETFAMILY, CTRL_VERSION, 64)?;
    m.put_str(CTRL_ATTR_FAMILY_NAME, name)?;
    Ok(m)
}

fn name(a: &attr::Attr<'_>) -> Result<String, AttrError> {
    // Longer names cannot come from the kernel; cut rather than fail.
    Ok(attr::sanitize_text(a.str()?.as_bytes(), GENL_NAMSIZ - 1))
}

/// Parses the controller's answer: a family description, or its error.
pub fn parse_family(msg: &NlMsgRef<'_>) -> Result<FamilyInfo, CtrlError> {
    if msg.ty == attr::NLMSG_ERROR {
        return Err(CtrlError::Kernel(attr::parse_error(msg)?));
    }
    let g = msg.genl()?;
    if msg.ty != GENL_ID_CTRL || g.cmd != CTRL_CMD_NEWFAMILY {
        return Err(CtrlError::NotFamilyReply { nlmsg_type: msg.ty });
    }
    let mut info = FamilyInfo::default();
    let mut id = None;
    for a in attr::attrs(g.attrs) {
        let a = a?;
        match a.kind() {
            CTRL_ATTR_FAMILY_ID => id = Some(a.u16()?),
            CTRL_ATTR_FAMILY_NAME => info.name = name(&a)?,
            CTRL_ATTR_MCAST_GROUPS => {
                for entry in a.nested() {
                    let (mut gname, mut gid) = (None, None);
                    for f in entry?.nested() {
                        let f = f?;
                        match f.kind() {
                            CTRL_ATTR_MCAST_GRP_NAME => gname = Some(name(&f)?),
                            CTRL_ATTR_MCAST_GRP_ID => gid = Some(f.u32()?),
                            _ => {}
                        }
                    }
                    if let (Some(n), Some(i)) = (gname, gid) {
                        if info.mcast_groups.len() == MAX_ENTRIES {
                            return Err(CtrlError::TooManyEntries);
                        }
                        info.mcast_groups.push((n, i));
                    }
                }
            }
            _ => {}
        }
    }
    info.id = id.ok_or(CtrlError::MissingId)?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dco::golden;

    #[test]
    fn constants_match_libc() {
        assert_eq!(GENL_ID_CTRL, libc::GENL_ID_CTRL as u16);
        assert_eq!(CTRL_CMD_GETFAMILY, libc::CTRL_CMD_GETFAMILY as u8);
        assert_eq!(CTRL_CMD_NEWFAMILY, libc::CTRL_CMD_NEWFAMILY as u8);
        assert_eq!(CTRL_ATTR_FAMILY_ID, libc::CTRL_ATTR_FAMILY_ID as u16);
        assert_eq!(CTRL_ATTR_FAMILY_NAME, libc::CTRL_ATTR_FAMILY_NAME as u16);
        assert_eq!(CTRL_ATTR_MCAST_GROUPS, libc::CTRL_ATTR_MCAST_GROUPS as u16);
        assert_eq!(CTRL_ATTR_MCAST_GRP_ID, libc::CTRL_ATTR_MCAST_GRP_ID as u16);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn getfamily_ovpn_matches_golden() {
        let mut m = getfamily_request("ovpn").unwrap();
        m.set_seq(1);
        assert_eq!(m.as_bytes(), golden::CTRL_GETFAMILY_OVPN_REQ);
    }

    #[test]
    fn getfamily_refuses_bad_names() {
        assert!(getfamily_request("").is_err());
        assert!(getfamily_request("sixteen-chars-xx").is_err());
        assert!(getfamily_request("a\0b").is_err());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn getfamily_v2_bytes() {
        // The recorded "ovpn" request's layout with the v2 name: 11 chars +
        // NUL fill the attribute exactly, so there is no padding. The guest
        // tests resolve the real module's family with this request.
        let mut m = getfamily_request("ovpn-dco-v2").unwrap();
        m.set_seq(1);
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x24, 0, 0, 0, 0x10, 0, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr: 36 bytes, GENL_ID_CTRL, REQUEST
            0x03, 0x01, 0, 0, // CTRL_CMD_GETFAMILY, version 1
            0x10, 0, 0x02, 0, b'o', b'v', b'p', b'n', b'-', b'd', b'c', b'o', b'-', b'v', b'2', 0, // CTRL_ATTR_FAMILY_NAME
        ];
        assert_eq!(m.as_bytes(), want);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_the_recorded_ovpn_reply() {
        let msg = attr::messages(golden::CTRL_GETFAMILY_OVPN_REPLY).next().unwrap().unwrap();
        let info = parse_family(&msg).unwrap();
        assert_eq!(info.id, 0x23);
        assert_eq!(info.name, "ovpn");
        assert_eq!(info.mcast_group("peers"), Some(15));
        assert_eq!(info.mcast_group("nope"), None);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn unknown_family_is_a_kernel_error() {
        // ENOENT answer to GETFAMILY, built per netlink(7) without extack:
        // error, then the whole request echoed (no NLM_F_CAPPED).
        let mut b = vec![0x34, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0xbe, 0, 0, 0];
        b.extend_from_slice(&(-2i32).to_ne_bytes());
        b.extend_from_slice(golden::CTRL_GETFAMILY_OVPN_REQ);
        let msg = attr::messages(&b).next().unwrap().unwrap();
        match parse_family(&msg) {
            Err(CtrlError::Kernel(s)) => assert_eq!((s.errno(), s.request_seq), (2, 1)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn reply_without_id_or_wrong_command() {
        let mut m = NlMsg::genl(GENL_ID_CTRL, 0, CTRL_CMD_NEWFAMILY, 2, 64).unwrap();
        m.put_str(CTRL_ATTR_FAMILY_NAME, "ovpn").unwrap();
        let msg = attr::messages(m.as_bytes()).next().unwrap().unwrap();
        assert_eq!(parse_family(&msg), Err(CtrlError::MissingId));
        let m = NlMsg::genl(GENL_ID_CTRL, 0, CTRL_CMD_GETFAMILY, 2, 64).unwrap();
        let msg = attr::messages(m.as_bytes()).next().unwrap().unwrap();
        assert_eq!(parse_family(&msg), Err(CtrlError::NotFamilyReply { nlmsg_type: 0x10 }));
    }

    #[test]
    fn too_many_groups_is_bounded() {
        let mut m = NlMsg::genl(GENL_ID_CTRL, 0, CTRL_CMD_NEWFAMILY, 2, 8192).unwrap();
        m.put_u16(CTRL_ATTR_FAMILY_ID, 30).unwrap();
        m.nest(CTRL_ATTR_MCAST_GROUPS, true, |m| {
            for i in 0..=MAX_ENTRIES as u16 {
                m.nest(i + 1, true, |m| {
                    m.put_str(CTRL_ATTR_MCAST_GRP_NAME, "g")?;
                    m.put_u32(CTRL_ATTR_MCAST_GRP_ID, u32::from(i))
                })?;
            }
            Ok(())
        })
        .unwrap();
        let msg = attr::messages(m.as_bytes()).next().unwrap().unwrap();
        assert_eq!(parse_family(&msg), Err(CtrlError::TooManyEntries));
    }
}
