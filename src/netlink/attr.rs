//! The netlink message writer and reader, for RTNL and generic netlink alike.
//!
//! Writer: [`NlMsg`] builds `nlmsghdr` + the family's fixed header (`rtmsg`,
//! `ifinfomsg`, `genlmsghdr`, ...) + 4-byte aligned attributes and nests into
//! a buffer whose capacity is fixed up front; a put that would exceed it
//! fails with [`AttrError::Full`] and leaves the message unchanged. The buffer
//! is wiped on drop because KEY_NEW messages carry cipher keys.
//!
//! Reader: [`messages`] walks the `nlmsghdr`s of a receive buffer and
//! [`attrs`] the attributes of a payload; [`parse_error`] and [`parse_done`]
//! read acks, errors and their extack (text sanitised). Every length is
//! checked against the bytes actually present and they stop at the first
//! malformed item; nothing here indexes without a check, so no input can
//! make them panic.
//!
//! Integers in netlink headers and attributes are in host byte order unless
//! the attribute is defined as big-endian (ports, IPv4 addresses).
//! Constants keep the names of `include/uapi/linux/netlink.h` and
//! `include/uapi/linux/genetlink.h`.

use std::fmt;

use crate::sys::wipe;

/// `NLMSG_HDRLEN`: size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// `GENL_HDRLEN`: size of `struct genlmsghdr` (cmd, version, reserved u16).
#[cfg(test)]
pub const GENL_HDRLEN: usize = 4;
/// `NLA_HDRLEN`: size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;
/// `NLA_ALIGNTO` (also `NLMSG_ALIGNTO`).
pub const NLA_ALIGNTO: usize = 4;

/// `NLA_F_NESTED`: the attribute carries nested attributes.
pub const NLA_F_NESTED: u16 = 1 << 15;
/// `NLA_F_NET_BYTEORDER`: the payload is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
/// `NLA_TYPE_MASK`: strips the two flag bits from `nla_type`.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// `NLMSG_ERROR`: payload is `struct nlmsgerr` (error 0 = ACK).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: end of a dump; payload is an `int` status.
pub const NLMSG_DONE: u16 = 3;

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x01;
/// `NLM_F_MULTI`: part of a multi-part reply.
#[cfg(test)]
pub const NLM_F_MULTI: u16 = 0x02;
/// `NLM_F_ACK`: ask for an acknowledgement.
pub const NLM_F_ACK: u16 = 0x04;
/// `NLM_F_DUMP` = `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_REPLACE`, `NLM_F_EXCL`, `NLM_F_CREATE`: for new objects.
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_CAPPED` (on NLMSG_ERROR): the request payload was not echoed.
pub const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` (on NLMSG_ERROR/DONE): extended-ack TLVs follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// `enum nlmsgerr_attrs` (extended ACK TLVs).
pub const NLMSGERR_ATTR_MSG: u16 = 1;
/// Byte offset of the offending attribute in the request.
pub const NLMSGERR_ATTR_OFFS: u16 = 2;
/// Type of a missing mandatory attribute.
pub const NLMSGERR_ATTR_MISS_TYPE: u16 = 5;
/// Offset of the nest that lacks it.
pub const NLMSGERR_ATTR_MISS_NEST: u16 = 6;

/// Longest extack text kept; the kernel's own messages are under 100 bytes.
pub const EXTACK_MSG_MAX: usize = 256;

/// Errors from writing or reading netlink messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrError {
    /// The bounded buffer has no room for the next item.
    Full { cap: usize, needed: usize },
    /// An attribute or nest would exceed the 16-bit `nla_len`.
    TooLong { len: usize },
    /// A string attribute contains a NUL byte.
    InteriorNul,
    /// A header or payload runs past the end of the bytes received.
    Truncated { at: usize },
    /// An attribute payload has the wrong size for its type.
    BadLength { ty: u16, len: usize },
    /// A string attribute is not UTF-8.
    BadString { ty: u16 },
    /// A message is not the kind the caller asked to parse.
    UnexpectedType { ty: u16 },
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrError::Full { cap, needed } => write!(f, "netlink message too large ({needed} bytes, limit {cap})"),
            AttrError::TooLong { len } => write!(f, "netlink attribute too long ({len} bytes)"),
            AttrError::InteriorNul => write!(f, "string contains a NUL byte"),
            AttrError::Truncated { at } => write!(f, "netlink message truncated at byte {at}"),
            AttrError::BadLength { ty, len } => write!(f, "netlink attribute {ty} has unexpected length {len}"),
            AttrError::BadString { ty } => write!(f, "netlink attribute {ty} is not valid text"),
            AttrError::UnexpectedType { ty } => write!(f, "unexpected netlink message type {ty}"),
        }
    }
}

impl std::error::Error for AttrError {}

/// Rounds `len` up to the 4-byte netlink alignment.
pub const fn align(len: usize) -> usize {
    (len + NLA_ALIGNTO - 1) & !(NLA_ALIGNTO - 1)
}

/// A buffer that is wiped when it is dropped: a message's (KEY_NEW carries
/// cipher keys) and `dco::SecretBytes`'.
pub struct Wiped<B: AsMut<[u8]>>(pub B);

impl<B: AsMut<[u8]>> Drop for Wiped<B> {
    fn drop(&mut self) {
        wipe(self.0.as_mut());
    }
}

impl<B: AsMut<[u8]>> std::ops::Deref for Wiped<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.0
    }
}

impl<B: AsMut<[u8]>> std::ops::DerefMut for Wiped<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.0
    }
}

/// A netlink request under construction; always a complete, valid message.
///
/// `nlmsg_len` is kept current after every put, so [`NlMsg::as_bytes`] can be
/// sent at any time. Sequence number and port id start at 0.
pub struct NlMsg {
    /// Wiped on drop: KEY_NEW messages carry cipher keys.
    buf: Wiped<Vec<u8>>,
    cap: usize,
}

impl NlMsg {
    /// Starts a message of type `nlmsg_type` whose fixed family header is
    /// `hdr`; fails if `cap` cannot hold both headers.
    pub fn new(nlmsg_type: u16, flags: u16, hdr: &[u8], cap: usize) -> Result<Self, AttrError> {
        let needed = NLMSG_HDRLEN + align(hdr.len());
        if cap < needed || cap > u32::MAX as usize {
            return Err(AttrError::Full { cap, needed });
        }
        let mut m = NlMsg { buf: Wiped(Vec::with_capacity(cap)), cap };
        // nlmsg_len (set below), type, flags, seq and pid (0), the family header.
        for part in [&[0; 4][..], &nlmsg_type.to_ne_bytes(), &flags.to_ne_bytes(), &[0; 8], hdr] {
            m.buf.extend_from_slice(part);
        }
        m.buf.resize(needed, 0);
        m.sync_len();
        Ok(m)
    }

    /// Starts a generic-netlink message (`genlmsghdr`: cmd, version).
    pub fn genl(nlmsg_type: u16, flags: u16, cmd: u8, version: u8, cap: usize) -> Result<Self, AttrError> {
        Self::new(nlmsg_type, flags, &[cmd, version, 0, 0], cap)
    }

    /// Returns the message's bytes, for a request that carries no secret.
    pub fn into_bytes(mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf.0)
    }

    /// The whole message for the transport, which stamps its header's
    /// sequence number and ack flag in place.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Sets `nlmsg_seq`; the daemon matches replies on it.
    pub fn set_seq(&mut self, seq: u32) {
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    }

    /// Appends a u8 attribute.
    pub fn put_u8(&mut self, ty: u16, v: u8) -> Result<(), AttrError> {
        self.put_bytes(ty, &[v])
    }

    /// Appends a host-order u16 attribute.
    pub fn put_u16(&mut self, ty: u16, v: u16) -> Result<(), AttrError> {
        self.put_bytes(ty, &v.to_ne_bytes())
    }

    /// Appends a host-order u32 attribute.
    pub fn put_u32(&mut self, ty: u16, v: u32) -> Result<(), AttrError> {
        self.put_bytes(ty, &v.to_ne_bytes())
    }

    /// Appends a big-endian u16 attribute (ports).
    pub fn put_be16(&mut self, ty: u16, v: u16) -> Result<(), AttrError> {
        self.put_bytes(ty, &v.to_be_bytes())
    }

    /// Appends a NUL-terminated string attribute; refuses interior NULs.
    pub fn put_str(&mut self, ty: u16, s: &str) -> Result<(), AttrError> {
        if s.as_bytes().contains(&0) {
            return Err(AttrError::InteriorNul);
        }
        self.put_parts(ty, &[s.as_bytes(), &[0]])
    }

    /// Appends an attribute with a raw payload, padded to 4 bytes.
    pub fn put_bytes(&mut self, ty: u16, payload: &[u8]) -> Result<(), AttrError> {
        self.put_parts(ty, &[payload])
    }

    /// Appends a nested attribute whose content `f` writes; `NLA_F_NESTED`
    /// is set when `flag` is true. On error the message is rolled back.
    pub fn nest<F>(&mut self, ty: u16, flag: bool, f: F) -> Result<(), AttrError>
    where
        F: FnOnce(&mut Self) -> Result<(), AttrError>,
    {
        let start = self.buf.len();
        let ty = if flag { ty | NLA_F_NESTED } else { ty };
        let res = self.put_parts(ty, &[]).and_then(|()| f(self)).and_then(|()| {
            let len = self.buf.len() - start;
            let len16 = u16::try_from(len).map_err(|_| AttrError::TooLong { len })?;
            self.buf[start..start + 2].copy_from_slice(&len16.to_ne_bytes());
            Ok(())
        });
        if res.is_err() {
            wipe(&mut self.buf[start..]);
            self.buf.truncate(start);
            self.sync_len();
        }
        res
    }

    fn put_parts(&mut self, ty: u16, parts: &[&[u8]]) -> Result<(), AttrError> {
        let payload: usize = parts.iter().map(|p| p.len()).sum();
        let attr_len = NLA_HDRLEN + payload;
        let len16 = u16::try_from(attr_len).map_err(|_| AttrError::TooLong { len: attr_len })?;
        let needed = self.buf.len() + align(attr_len);
        if needed > self.cap {
            return Err(AttrError::Full { cap: self.cap, needed });
        }
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.buf.resize(needed, 0);
        self.sync_len();
        Ok(())
    }

    fn sync_len(&mut self) {
        // cap <= u32::MAX was checked in new(), so this cannot truncate.
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Header accessors for tests and fuzzing; the daemon only writes.
#[cfg(any(test, feature = "fuzz"))]
impl NlMsg {
    /// Returns the whole message, headers included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Returns the message length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Returns false: a message always holds at least its headers.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Returns `nlmsg_type`.
    pub fn nlmsg_type(&self) -> u16 {
        u16::from_ne_bytes([self.buf[4], self.buf[5]])
    }

    /// Returns `nlmsg_flags`.
    pub fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }

    /// Replaces `nlmsg_flags`.
    pub fn set_flags(&mut self, flags: u16) {
        self.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
    }

    /// Returns `nlmsg_seq`.
    pub fn seq(&self) -> u32 {
        u32::from_ne_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }
}

#[cfg(any(test, feature = "fuzz"))]
impl fmt::Debug for NlMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload may hold cipher keys: print the header only.
        let (len, ty, flags, seq) = (self.len(), self.nlmsg_type(), self.flags(), self.seq());
        write!(f, "NlMsg {{ len: {len}, type: {ty}, flags: {flags:#x}, seq: {seq} }}")
    }
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?)?.try_into().ok().map(u16::from_ne_bytes)
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)?.try_into().ok().map(u32::from_ne_bytes)
}

/// One attribute of a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr<'a> {
    raw_type: u16,
    payload: &'a [u8],
}

impl<'a> Attr<'a> {
    /// Returns the attribute type without the flag bits.
    pub fn kind(&self) -> u16 {
        self.raw_type & NLA_TYPE_MASK
    }

    /// Returns the payload without header or padding.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Returns a payload of exactly `N` bytes.
    pub fn array<const N: usize>(&self) -> Result<[u8; N], AttrError> {
        <[u8; N]>::try_from(self.payload).map_err(|_| AttrError::BadLength { ty: self.kind(), len: self.payload.len() })
    }

    /// Returns a u8 payload; the length must be exactly 1.
    #[cfg(any(test, feature = "fuzz"))]
    pub fn u8(&self) -> Result<u8, AttrError> {
        Ok(self.array::<1>()?[0])
    }

    /// Returns a host-order u16 payload; the length must be exactly 2.
    pub fn u16(&self) -> Result<u16, AttrError> {
        Ok(u16::from_ne_bytes(self.array()?))
    }

    /// Returns a host-order u32 payload; the length must be exactly 4.
    pub fn u32(&self) -> Result<u32, AttrError> {
        Ok(u32::from_ne_bytes(self.array()?))
    }

    /// Returns a big-endian u16 payload (ports); the length must be exactly 2.
    pub fn be16(&self) -> Result<u16, AttrError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Returns a host-order unsigned integer of 1, 2, 4 or 8 bytes.
    ///
    /// The kernel's `uint` type uses 4 bytes until a value needs 8, and some
    /// module versions put a field as u8 or u16 that the spec calls u32.
    pub fn uint(&self) -> Result<u64, AttrError> {
        match self.payload.len() {
            1 => Ok(u64::from(self.array::<1>()?[0])),
            2 => self.u16().map(u64::from),
            4 => self.u32().map(u64::from),
            8 => Ok(u64::from_ne_bytes(self.array()?)),
            len => Err(AttrError::BadLength { ty: self.kind(), len }),
        }
    }

    /// Returns [`Attr::uint`] narrowed to u32, or `BadLength` if it does not fit.
    pub fn uint32(&self) -> Result<u32, AttrError> {
        u32::try_from(self.uint()?).map_err(|_| AttrError::BadLength { ty: self.kind(), len: self.payload.len() })
    }

    /// Returns a string payload up to its first NUL; must be UTF-8.
    pub fn str(&self) -> Result<&'a str, AttrError> {
        let end = self.payload.iter().position(|&b| b == 0).unwrap_or(self.payload.len());
        std::str::from_utf8(&self.payload[..end]).map_err(|_| AttrError::BadString { ty: self.kind() })
    }

    /// Iterates the attributes nested in this one.
    pub fn nested(&self) -> AttrIter<'a> {
        attrs(self.payload)
    }
}

/// Iterator over a run of length-prefixed items (attributes, or the
/// messages of a receive buffer); yields an error once, then stops.
#[derive(Clone, Debug)]
pub struct Walk<'a, T> {
    buf: &'a [u8],
    pos: usize,
    item: ItemAt<'a, T>,
}

/// Reads the item at an offset: where it ends, and the item.
type ItemAt<'a, T> = fn(&'a [u8], usize) -> Result<(usize, T), AttrError>;

impl<T> Iterator for Walk<'_, T> {
    type Item = Result<T, AttrError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let item = (self.item)(self.buf, self.pos);
        // The last item may lack its padding; after an error, nothing more.
        self.pos = item.as_ref().map_or(self.buf.len(), |(end, _)| align(*end).min(self.buf.len()));
        Some(item.map(|(_, t)| t))
    }
}

pub type AttrIter<'a> = Walk<'a, Attr<'a>>;

/// Iterates the attributes in `buf` (a payload after the fixed headers).
pub fn attrs(buf: &[u8]) -> AttrIter<'_> {
    Walk { buf, pos: 0, item: attr_at }
}

fn attr_at(b: &[u8], at: usize) -> Result<(usize, Attr<'_>), AttrError> {
    let (Some(len), Some(ty)) = (read_u16(b, at), read_u16(b, at + 2)) else {
        return Err(AttrError::Truncated { at });
    };
    let len = usize::from(len);
    if len < NLA_HDRLEN {
        return Err(AttrError::BadLength { ty, len });
    }
    let payload = b.get(at + NLA_HDRLEN..at + len).ok_or(AttrError::Truncated { at })?;
    Ok((at + len, Attr { raw_type: ty, payload }))
}

/// Returns the first attribute of kind `kind` in `buf`, or None.
pub fn find(buf: &[u8], kind: u16) -> Result<Option<Attr<'_>>, AttrError> {
    // The first match or the first malformed attribute, whichever comes first.
    attrs(buf).find(|a| a.as_ref().map_or(true, |a| a.kind() == kind)).transpose()
}

/// One message of a receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlMsgRef<'a> {
    /// `nlmsg_type`: a family id, or NLMSG_ERROR / NLMSG_DONE.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`: 0 for multicast notifications.
    pub seq: u32,
    /// `nlmsg_pid`: 0 for messages from the kernel that are multicast.
    pub pid: u32,
    /// Everything after the `nlmsghdr`.
    pub payload: &'a [u8],
}

/// A parsed `genlmsghdr` and the attributes after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenlRef<'a> {
    /// `genlmsghdr.cmd`.
    pub cmd: u8,
    /// `genlmsghdr.version`.
    pub version: u8,
    /// The attribute bytes.
    pub attrs: &'a [u8],
}

impl<'a> NlMsgRef<'a> {
    /// Splits the payload into a `genlmsghdr` and its attributes.
    pub fn genl(&self) -> Result<GenlRef<'a>, AttrError> {
        match self.payload {
            [cmd, version, _, _, rest @ ..] => Ok(GenlRef { cmd: *cmd, version: *version, attrs: rest }),
            _ => Err(AttrError::Truncated { at: NLMSG_HDRLEN }),
        }
    }
}

/// Iterates the netlink messages in `buf`.
pub fn messages(buf: &[u8]) -> Walk<'_, NlMsgRef<'_>> {
    Walk { buf, pos: 0, item: message_at }
}

fn message_at(b: &[u8], at: usize) -> Result<(usize, NlMsgRef<'_>), AttrError> {
    let len = read_u32(b, at).ok_or(AttrError::Truncated { at })? as usize;
    if len < NLMSG_HDRLEN {
        return Err(AttrError::BadLength { ty: 0, len });
    }
    let end = at.checked_add(len).ok_or(AttrError::Truncated { at })?;
    let payload = b.get(at + NLMSG_HDRLEN..end).ok_or(AttrError::Truncated { at })?;
    let m = NlMsgRef {
        ty: read_u16(b, at + 4).ok_or(AttrError::Truncated { at })?,
        flags: read_u16(b, at + 6).ok_or(AttrError::Truncated { at })?,
        seq: read_u32(b, at + 8).ok_or(AttrError::Truncated { at })?,
        pid: read_u32(b, at + 12).ok_or(AttrError::Truncated { at })?,
        payload,
    };
    Ok((end, m))
}

/// Extended-ACK details the kernel attached to an error (NETLINK_EXT_ACK).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtAck {
    /// `NLMSGERR_ATTR_MSG`, control characters replaced, at most
    /// [`EXTACK_MSG_MAX`] bytes.
    pub msg: Option<String>,
    /// `NLMSGERR_ATTR_OFFS`: byte offset of the bad attribute in the request.
    pub offset: Option<u32>,
    /// `NLMSGERR_ATTR_MISS_TYPE`: a mandatory attribute that was missing.
    pub miss_type: Option<u32>,
    /// `NLMSGERR_ATTR_MISS_NEST`: offset of the nest that lacked it.
    pub miss_nest: Option<u32>,
}

impl ExtAck {
    /// The TLVs `tlvs`, if the message's `flags` say they are there.
    fn parse(flags: u16, tlvs: Result<&[u8], AttrError>) -> Result<Self, AttrError> {
        let mut ext = ExtAck::default();
        if flags & NLM_F_ACK_TLVS == 0 {
            return Ok(ext);
        }
        for a in attrs(tlvs?) {
            let a = a?;
            match a.kind() {
                NLMSGERR_ATTR_MSG => ext.msg = Some(sanitize_text(a.payload(), EXTACK_MSG_MAX)),
                NLMSGERR_ATTR_OFFS => ext.offset = Some(a.u32()?),
                NLMSGERR_ATTR_MISS_TYPE => ext.miss_type = Some(a.u32()?),
                NLMSGERR_ATTR_MISS_NEST => ext.miss_nest = Some(a.u32()?),
                _ => {} // cookie, policy: not needed to report the error
            }
        }
        Ok(ext)
    }
}

impl fmt::Display for ExtAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nest = self.miss_nest.map(|n| format!(" in nest at offset {n}")).unwrap_or_default();
        let missing = self.miss_type.map(|t| format!("missing attribute {t}{nest}"));
        let offset = self.offset.map(|o| format!("bad attribute at offset {o}"));
        f.write_str(&[self.msg.clone(), missing, offset].into_iter().flatten().collect::<Vec<_>>().join("; "))
    }
}

/// Returns printable text: up to the first NUL, lossy UTF-8, control
/// characters replaced by '?', cut to at most `max` bytes.
pub fn sanitize_text(raw: &[u8], max: usize) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let mut out = String::new();
    for c in String::from_utf8_lossy(&raw[..end]).chars() {
        let c = if c.is_control() { '?' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// The outcome carried by NLMSG_ERROR (an ACK when `error` is 0) or by the
/// NLMSG_DONE that ends a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NlStatus {
    /// 0, or a negative errno as the kernel sent it.
    pub error: i32,
    /// `nlmsg_seq` of the request this answers (0 for NLMSG_DONE).
    pub request_seq: u32,
    /// Extended-ACK TLVs, empty without NETLINK_EXT_ACK.
    pub ext: ExtAck,
}

impl NlStatus {
    /// Returns the positive errno, or 0 for success.
    pub fn errno(&self) -> i32 {
        self.error.checked_neg().unwrap_or(i32::MAX)
    }

    /// Returns a one-line description for logs, D-Bus errors and the pipe,
    /// e.g. "No such file or directory (os error 2): ovpn: cannot find peer with id 1".
    pub fn describe(&self) -> String {
        let base = std::io::Error::from_raw_os_error(self.errno()).to_string();
        let ext = self.ext.to_string();
        if ext.is_empty() {
            base
        } else {
            format!("{base}: {ext}")
        }
    }
}

/// Parses an NLMSG_ERROR message (error or ACK, with or without extack).
pub fn parse_error(msg: &NlMsgRef<'_>) -> Result<NlStatus, AttrError> {
    if msg.ty != NLMSG_ERROR {
        return Err(AttrError::UnexpectedType { ty: msg.ty });
    }
    let p = msg.payload;
    let error = read_u32(p, 0).ok_or(AttrError::Truncated { at: NLMSG_HDRLEN })? as i32;
    // struct nlmsgerr = int error + the request's nlmsghdr.
    let orig_len = read_u32(p, 4).ok_or(AttrError::Truncated { at: NLMSG_HDRLEN + 4 })? as usize;
    let request_seq = read_u32(p, 12).ok_or(AttrError::Truncated { at: NLMSG_HDRLEN + 12 })?;
    let mut tlv_at = 4 + NLMSG_HDRLEN;
    if msg.flags & NLM_F_CAPPED == 0 {
        // The whole request is echoed after its header.
        if orig_len < NLMSG_HDRLEN {
            return Err(AttrError::BadLength { ty: NLMSG_ERROR, len: orig_len });
        }
        // The error, then the echo, aligned (4 + align(len) is align(4 + len)).
        // Checked (and saturating below): a length near u32::MAX overflows
        // a 32-bit usize.
        let end = orig_len.checked_add(4 + NLA_ALIGNTO - 1).ok_or(AttrError::Truncated { at: NLMSG_HDRLEN })?;
        tlv_at = end & !(NLA_ALIGNTO - 1);
    }
    let tlvs = p.get(tlv_at..).ok_or(AttrError::Truncated { at: NLMSG_HDRLEN.saturating_add(tlv_at) });
    Ok(NlStatus { error, request_seq, ext: ExtAck::parse(msg.flags, tlvs)? })
}

/// Parses the NLMSG_DONE that ends a dump: an int status, then extack TLVs.
pub fn parse_done(msg: &NlMsgRef<'_>) -> Result<NlStatus, AttrError> {
    if msg.ty != NLMSG_DONE {
        return Err(AttrError::UnexpectedType { ty: msg.ty });
    }
    // Some senders omit the status; an empty NLMSG_DONE means success.
    let error = if msg.payload.is_empty() {
        0
    } else {
        read_u32(msg.payload, 0).ok_or(AttrError::Truncated { at: NLMSG_HDRLEN })? as i32
    };
    let ext = ExtAck::parse(msg.flags, Ok(msg.payload.get(4..).unwrap_or(&[])))?;
    Ok(NlStatus { error, request_seq: msg.seq, ext })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_libc() {
        assert_eq!(NLA_F_NESTED, libc::NLA_F_NESTED as u16);
        assert_eq!(NLA_F_NET_BYTEORDER, libc::NLA_F_NET_BYTEORDER as u16);
        assert_eq!(NLA_TYPE_MASK, libc::NLA_TYPE_MASK as u16);
        assert_eq!(NLMSG_ERROR, libc::NLMSG_ERROR as u16);
        assert_eq!(NLMSG_DONE, libc::NLMSG_DONE as u16);
        assert_eq!(NLM_F_REQUEST, libc::NLM_F_REQUEST as u16);
        assert_eq!(NLM_F_MULTI, libc::NLM_F_MULTI as u16);
        assert_eq!(NLM_F_ACK, libc::NLM_F_ACK as u16);
        assert_eq!(NLM_F_DUMP, libc::NLM_F_DUMP as u16);
        assert_eq!(NLM_F_REPLACE, libc::NLM_F_REPLACE as u16);
        assert_eq!(NLM_F_EXCL, libc::NLM_F_EXCL as u16);
        assert_eq!(NLM_F_CREATE, libc::NLM_F_CREATE as u16);
        assert_eq!(NLM_F_CAPPED, libc::NLM_F_CAPPED as u16);
        assert_eq!(NLM_F_ACK_TLVS, libc::NLM_F_ACK_TLVS as u16);
        assert_eq!(NLMSG_HDRLEN, std::mem::size_of::<libc::nlmsghdr>());
        assert_eq!(NLA_HDRLEN, std::mem::size_of::<libc::nlattr>());
        assert_eq!(GENL_HDRLEN, std::mem::size_of::<libc::genlmsghdr>());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn writer_aligns_and_updates_length() {
        let mut m = NlMsg::genl(0x23, NLM_F_REQUEST, 7, 1, 128).unwrap();
        m.put_u8(1, 0xab).unwrap();
        m.put_be16(2, 1194).unwrap();
        m.nest(3, true, |m| m.put_u32(1, 5)).unwrap();
        m.put_str(4, "ab").unwrap();
        m.set_seq(9);
        let want: &[u8] = &[
            0x38, 0, 0, 0, 0x23, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr, len 56
            7, 1, 0, 0, // genlmsghdr
            5, 0, 1, 0, 0xab, 0, 0, 0, // u8 + 3 pad
            6, 0, 2, 0, 0x04, 0xaa, 0, 0, // be16 + 2 pad
            12, 0, 3, 0x80, 8, 0, 1, 0, 5, 0, 0, 0, // nest{u32}
            7, 0, 4, 0, b'a', b'b', 0, 0, // "ab\0" + pad
        ];
        assert_eq!(m.as_bytes(), want);
        assert_eq!((m.seq(), m.flags(), m.nlmsg_type()), (9, 1, 0x23));
    }

    #[test]
    fn writer_fails_cleanly_when_full() {
        let mut m = NlMsg::genl(0x10, 1, 3, 1, 28).unwrap();
        m.put_u32(1, 1).unwrap(); // 20 + 8 = 28: exactly full
        let before = m.as_bytes().to_vec();
        assert_eq!(m.put_u8(2, 1), Err(AttrError::Full { cap: 28, needed: 36 }));
        assert_eq!(m.as_bytes(), &before[..]);
        // A nest whose content overflows is rolled back whole.
        let mut m = NlMsg::genl(0x10, 1, 3, 1, 36).unwrap();
        let r = m.nest(2, true, |m| {
            m.put_u32(1, 1)?;
            m.put_u32(2, 2)
        });
        assert!(matches!(r, Err(AttrError::Full { .. })));
        assert_eq!(m.len(), 20);
        assert_eq!(read_u32(m.as_bytes(), 0), Some(20));
        assert!(NlMsg::genl(0x10, 1, 3, 1, 19).is_err());
    }

    #[test]
    fn writer_refuses_oversize_attributes_and_nul() {
        let mut m = NlMsg::genl(0x10, 1, 3, 1, 200_000).unwrap();
        let big = vec![0u8; 70_000];
        assert_eq!(m.put_bytes(1, &big), Err(AttrError::TooLong { len: 70_004 }));
        assert_eq!(m.put_str(1, "a\0b"), Err(AttrError::InteriorNul));
        let r = m.nest(1, true, |m| {
            m.put_bytes(1, &big[..40_000])?;
            m.put_bytes(2, &big[..40_000])
        });
        assert_eq!(r, Err(AttrError::TooLong { len: 80_012 }));
        assert_eq!(m.len(), 20);
    }

    /// An attribute header (nla_len, nla_type) in host order, then `rest`.
    fn nla(len: u16, ty: u16, rest: &[u8]) -> Vec<u8> {
        [&len.to_ne_bytes()[..], &ty.to_ne_bytes(), rest].concat()
    }

    #[test]
    fn reader_rejects_malformed_attributes() {
        // nla_len 3 (< header)
        let b = nla(3, 1, &[]);
        let mut it = attrs(&b);
        assert!(matches!(it.next(), Some(Err(AttrError::BadLength { .. }))));
        assert!(it.next().is_none());
        // nla_len past the end
        let b = nla(9, 1, &[1, 2, 3, 4]);
        let mut it = attrs(&b);
        assert_eq!(it.next(), Some(Err(AttrError::Truncated { at: 0 })));
        // 2 trailing bytes after a good attribute
        let b = nla(5, 1, &[7, 0, 0, 0, 1, 0]);
        let v: Vec<_> = attrs(&b).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].unwrap().u8(), Ok(7));
        assert_eq!(v[1], Err(AttrError::Truncated { at: 8 }));
        // last attribute without padding is fine
        let b = nla(6, 0x4005, &[0x04, 0xaa]);
        let v: Vec<_> = attrs(&b).collect();
        assert_eq!(v.len(), 1);
        let a = v[0].unwrap();
        assert_eq!((a.kind(), a.raw_type, a.be16()), (5, 0x4005, Ok(1194)));
    }

    #[test]
    fn reader_integer_widths_are_checked() {
        let a = Attr { raw_type: 1, payload: &[1, 0, 0] };
        assert!(a.u32().is_err() && a.u16().is_err() && a.uint().is_err());
        let want = 1u64 << 32;
        let a = Attr { raw_type: 1, payload: &want.to_ne_bytes() };
        assert!(a.u32().is_err());
        assert_eq!(a.uint(), Ok(want));
        assert!(a.uint32().is_err());
    }

    #[test]
    fn error_echo_length_near_u32_max_is_refused() {
        // nlmsgerr: error, then the echoed request's header claiming
        // u32::MAX bytes. Aligning it overflowed a 32-bit usize.
        let mut payload = (-22i32).to_ne_bytes().to_vec();
        payload.extend_from_slice(&u32::MAX.to_ne_bytes());
        payload.extend_from_slice(&[0; 12]);
        let msg = NlMsgRef { ty: NLMSG_ERROR, flags: NLM_F_ACK_TLVS, seq: 1, pid: 0, payload: &payload };
        assert!(matches!(parse_error(&msg), Err(AttrError::Truncated { .. })));
        // Without extack nothing after the echo is read: no panic is all.
        let _ = parse_error(&NlMsgRef { flags: 0, ..msg });
    }

    #[test]
    fn message_iterator_checks_lengths() {
        // nlmsg_len larger than the buffer
        let mut b = vec![0u8; 20];
        b[0..4].copy_from_slice(&40u32.to_ne_bytes());
        assert_eq!(messages(&b).next(), Some(Err(AttrError::Truncated { at: 0 })));
        // nlmsg_len smaller than a header
        b[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(messages(&b).next(), Some(Err(AttrError::BadLength { .. }))));
        // two messages, the second unaligned and short
        let mut b = vec![0u8; 40];
        b[0..4].copy_from_slice(&20u32.to_ne_bytes());
        b[20..24].copy_from_slice(&17u32.to_ne_bytes());
        let v: Vec<_> = messages(&b).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].unwrap().payload.len(), 4);
        assert_eq!(v[1].unwrap().payload.len(), 1);
        // 3 stray bytes after an aligned message are a truncated header
        let mut b = vec![0u8; 23];
        b[0..4].copy_from_slice(&20u32.to_ne_bytes());
        let v: Vec<_> = messages(&b).collect();
        assert_eq!(v[1], Err(AttrError::Truncated { at: 20 }));
    }

    #[test]
    fn sanitize_replaces_controls_and_bounds_length() {
        assert_eq!(sanitize_text(b"a\nb\x1bc\0tail", 100), "a?b?c");
        assert_eq!(sanitize_text("é".repeat(10).as_bytes(), 5), "éé");
        assert_eq!(sanitize_text(b"\xff", 10), "\u{fffd}");
    }
}
