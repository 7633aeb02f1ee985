//! Reader (and a test encoder) for the `openvpn.DcoKeyConfig` protobuf that
//! `NewKey(u key_slot, s key_config)` carries base64-encoded (reference §7.4,
//! openvpn3-linux `src/dco/dco-keyconfig.proto`, proto2):
//!
//! ```text
//! DcoKeyConfig { 1 key_id int32 req; 2 remote_peer_id int32 req;
//!                3 cipher_alg uint32 req; 4 encrypt KeyDirection req;
//!                5 decrypt KeyDirection req }
//! KeyDirection { 1 cipher_key bytes req; 2 hmac_key bytes opt;
//!                3 nonce_tail bytes opt; 4 cipher_key_size uint32 req }
//! ```
//!
//! Wire format handled: varint (0), 64-bit (1), length-delimited (2), 32-bit
//! (5); groups (3, 4) and 6/7 are refused. Unknown fields are skipped. A known
//! field with the wrong wire type, a varint over 10 bytes or 64 bits, a length
//! past the end, a field number 0 or an int32/uint32 value out of range are
//! typed errors. Scalars and bytes: the last occurrence wins; a repeated
//! KeyDirection merges into the earlier one (proto2 rules). All byte fields
//! are copied into wiped-on-drop memory; nothing here can panic.

use std::fmt;

use super::b64::{self, B64Error};
use super::model::{CipherAlg, KeyConfig, KeyDir, KeyId, KeySlot, PeerId};
use super::secret::SecretBytes;
use super::DcoError;

/// Largest decoded key configuration accepted (a real one is about 100 bytes).
pub const KEYCONFIG_MAX: usize = 2048;

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

/// Why a key configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyConfigError {
    /// Input larger than [`KEYCONFIG_MAX`].
    TooLong(usize),
    /// Not strict base64.
    Base64(B64Error),
    /// A varint longer than 10 bytes or above 64 bits, at this offset.
    VarintOverflow(usize),
    /// Input ends inside a field starting at this offset.
    Truncated(usize),
    /// A length prefix points past the end of its message.
    LengthOverflow(usize),
    /// Field number 0 at this offset.
    FieldZero(usize),
    /// A field arrived with a wire type it cannot have.
    WireType { field: u32, wire: u8 },
    /// An int32/uint32 field holds a value outside its type.
    Range { field: &'static str },
    /// A required field is absent.
    Missing(&'static str),
    /// `cipher_key_size` is larger than `cipher_key`.
    KeySizeField { size: u32, have: usize },
}

impl fmt::Display for KeyConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The reference service answers every case with this prefix.
        f.write_str("Failed to parse DCO key configuration: ")?;
        match self {
            KeyConfigError::TooLong(n) => write!(f, "too large ({n} bytes)"),
            KeyConfigError::Base64(e) => write!(f, "{e}"),
            KeyConfigError::VarintOverflow(at) => write!(f, "varint overflow at byte {at}"),
            KeyConfigError::Truncated(at) => write!(f, "truncated field at byte {at}"),
            KeyConfigError::LengthOverflow(at) => write!(f, "length past the end at byte {at}"),
            KeyConfigError::FieldZero(at) => write!(f, "field number 0 at byte {at}"),
            KeyConfigError::WireType { field, wire } => {
                write!(f, "field {field} has wrong wire type {wire}")
            }
            KeyConfigError::Range { field } => write!(f, "{field} out of range"),
            KeyConfigError::Missing(name) => write!(f, "required field {name} missing"),
            KeyConfigError::KeySizeField { size, have } => {
                write!(f, "cipher_key_size {size} exceeds the {have}-byte cipher_key")
            }
        }
    }
}

impl std::error::Error for KeyConfigError {}

/// One `KeyDirection` message.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyDirection {
    /// Field 1, required.
    pub cipher_key: SecretBytes,
    /// Field 2, optional, unused by the kernel.
    pub hmac_key: Option<SecretBytes>,
    /// Field 3, optional in the schema; AEAD needs exactly 8 bytes.
    pub nonce_tail: Option<SecretBytes>,
    /// Field 4, required: how many bytes of `cipher_key` are the key.
    pub cipher_key_size: u32,
}

/// One `DcoKeyConfig` message.
#[derive(Debug, PartialEq, Eq)]
pub struct DcoKeyConfig {
    /// Field 1.
    pub key_id: i32,
    /// Field 2.
    pub remote_peer_id: i32,
    /// Field 3: 0 none, 1 AES-GCM, 2 ChaCha20-Poly1305.
    pub cipher_alg: u32,
    /// Field 4.
    pub encrypt: KeyDirection,
    /// Field 5.
    pub decrypt: KeyDirection,
}

/// Field value as read off the wire.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the outermost input, for error positions.
    base: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, KeyConfigError> {
        let start = self.base + self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(KeyConfigError::Truncated(start))?;
            self.pos += 1;
            // The 10th byte may only contribute bit 63.
            if i == 9 && b > 1 {
                return Err(KeyConfigError::VarintOverflow(start));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(KeyConfigError::VarintOverflow(start))
    }

    fn skip(&mut self, n: usize, start: usize) -> Result<&'a [u8], KeyConfigError> {
        let end = self.pos.checked_add(n).ok_or(KeyConfigError::LengthOverflow(start))?;
        let s = self.buf.get(self.pos..end).ok_or(KeyConfigError::Truncated(start))?;
        self.pos = end;
        Ok(s)
    }

    /// Returns the next (field, wire type, value, field offset), or None at the end.
    fn field(&mut self) -> Result<Option<(u32, u8, Value<'a>, usize)>, KeyConfigError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.base + self.pos;
        let tag = self.varint()?;
        let field = u32::try_from(tag >> 3).map_err(|_| KeyConfigError::VarintOverflow(start))?;
        if field == 0 {
            return Err(KeyConfigError::FieldZero(start));
        }
        let wire = (tag & 7) as u8;
        let value = match wire {
            WT_VARINT => Value::Varint(self.varint()?),
            WT_I64 | WT_I32 => {
                self.skip(if wire == WT_I64 { 8 } else { 4 }, start)?;
                Value::Fixed
            }
            WT_LEN => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| KeyConfigError::LengthOverflow(start))?;
                if len > self.buf.len() - self.pos {
                    return Err(KeyConfigError::LengthOverflow(start));
                }
                Value::Bytes(self.skip(len, start)?)
            }
            _ => return Err(KeyConfigError::WireType { field, wire }),
        };
        Ok(Some((field, wire, value, start)))
    }
}

fn want_varint(field: u32, wire: u8, v: &Value<'_>) -> Result<u64, KeyConfigError> {
    match v {
        Value::Varint(x) => Ok(*x),
        _ => Err(KeyConfigError::WireType { field, wire }),
    }
}

fn want_bytes<'a>(field: u32, wire: u8, v: &Value<'a>) -> Result<&'a [u8], KeyConfigError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(KeyConfigError::WireType { field, wire }),
    }
}

/// int32 on the wire: non-negative values as is, negative ones sign-extended to 64 bits.
fn int32(v: u64, field: &'static str) -> Result<i32, KeyConfigError> {
    i32::try_from(v as i64).map_err(|_| KeyConfigError::Range { field })
}

fn uint32(v: u64, field: &'static str) -> Result<u32, KeyConfigError> {
    u32::try_from(v).map_err(|_| KeyConfigError::Range { field })
}

#[derive(Default)]
struct PartialDir {
    cipher_key: Option<SecretBytes>,
    hmac_key: Option<SecretBytes>,
    nonce_tail: Option<SecretBytes>,
    cipher_key_size: Option<u32>,
}

impl PartialDir {
    fn merge(&mut self, buf: &[u8], base: usize) -> Result<(), KeyConfigError> {
        let mut r = Reader { buf, pos: 0, base };
        while let Some((field, wire, v, _)) = r.field()? {
            match field {
                1 => self.cipher_key = Some(SecretBytes::from_slice(want_bytes(field, wire, &v)?)),
                2 => self.hmac_key = Some(SecretBytes::from_slice(want_bytes(field, wire, &v)?)),
                3 => self.nonce_tail = Some(SecretBytes::from_slice(want_bytes(field, wire, &v)?)),
                4 => self.cipher_key_size = Some(uint32(want_varint(field, wire, &v)?, "cipher_key_size")?),
                _ => {} // unknown: already skipped by the reader
            }
        }
        Ok(())
    }

    /// The direction, if it and its required fields are there; `names`
    /// names the direction and those fields.
    fn finish(dir: Option<Self>, names: [&'static str; 3]) -> Result<KeyDirection, KeyConfigError> {
        let d = dir.ok_or(KeyConfigError::Missing(names[0]))?;
        Ok(KeyDirection {
            cipher_key: d.cipher_key.ok_or(KeyConfigError::Missing(names[1]))?,
            hmac_key: d.hmac_key,
            nonce_tail: d.nonce_tail,
            cipher_key_size: d.cipher_key_size.ok_or(KeyConfigError::Missing(names[2]))?,
        })
    }
}

/// Parses a serialized `DcoKeyConfig`; all required fields must be present.
pub fn parse(buf: &[u8]) -> Result<DcoKeyConfig, KeyConfigError> {
    if buf.len() > KEYCONFIG_MAX {
        return Err(KeyConfigError::TooLong(buf.len()));
    }
    let (mut key_id, mut peer, mut alg) = (None, None, None);
    let (mut enc, mut dec): (Option<PartialDir>, Option<PartialDir>) = (None, None);
    let mut r = Reader { buf, pos: 0, base: 0 };
    while let Some((field, wire, v, start)) = r.field()? {
        match field {
            1 => key_id = Some(int32(want_varint(field, wire, &v)?, "key_id")?),
            2 => peer = Some(int32(want_varint(field, wire, &v)?, "remote_peer_id")?),
            3 => alg = Some(uint32(want_varint(field, wire, &v)?, "cipher_alg")?),
            4 | 5 => {
                let body = want_bytes(field, wire, &v)?;
                let slot = if field == 4 { &mut enc } else { &mut dec };
                // The body starts after the tag and length; report offsets
                // relative to the outer input.
                let base = start + (r.pos - start - body.len());
                slot.get_or_insert_with(PartialDir::default).merge(body, base)?;
            }
            _ => {}
        }
    }
    Ok(DcoKeyConfig {
        key_id: key_id.ok_or(KeyConfigError::Missing("key_id"))?,
        remote_peer_id: peer.ok_or(KeyConfigError::Missing("remote_peer_id"))?,
        cipher_alg: alg.ok_or(KeyConfigError::Missing("cipher_alg"))?,
        encrypt: PartialDir::finish(enc, ["encrypt", "encrypt.cipher_key", "encrypt.cipher_key_size"])?,
        decrypt: PartialDir::finish(dec, ["decrypt", "decrypt.cipher_key", "decrypt.cipher_key_size"])?,
    })
}

/// Decodes the D-Bus `key_config` string (base64 of the protobuf) and parses it.
pub fn parse_base64(s: &str) -> Result<DcoKeyConfig, KeyConfigError> {
    // 4 base64 characters per 3 bytes: refuse before allocating.
    if s.len() / 4 * 3 > KEYCONFIG_MAX {
        return Err(KeyConfigError::TooLong(s.len() / 4 * 3));
    }
    let raw = b64::decode_secret(s).map_err(KeyConfigError::Base64)?;
    parse(raw.as_slice())
}

/// Returns the KEY_NEW parameters for the D-Bus `NewKey(u key_slot,
/// s key_config)` call: base64 -> protobuf -> checked [`KeyConfig`].
pub fn from_dbus(key_slot: u32, key_config: &str) -> Result<KeyConfig, DcoError> {
    parse_base64(key_config).map_err(DcoError::KeyConfig)?.to_key_config(key_slot)
}

impl KeyDirection {
    fn to_key_dir(&self, alg: CipherAlg) -> Result<KeyDir, DcoError> {
        let have = self.cipher_key.as_slice().len();
        let size = usize::try_from(self.cipher_key_size).unwrap_or(usize::MAX);
        let too_short = KeyConfigError::KeySizeField { size: self.cipher_key_size, have };
        let key = self.cipher_key.as_slice().get(..size).ok_or(DcoError::KeyConfig(too_short))?;
        let tail = self.nonce_tail.as_ref().map(|t| t.as_slice()).unwrap_or(&[]);
        KeyDir::new(alg, key, tail)
    }
}

impl DcoKeyConfig {
    /// Returns the KEY_NEW parameters for `slot` (the D-Bus argument), or the
    /// kernel rule they break: peer id 24 bits, key id 0..=7, cipher 1 or 2,
    /// key size for the cipher, nonce tail exactly 8 bytes.
    ///
    /// The key is the first `cipher_key_size` bytes of `cipher_key`, as in
    /// the reference service (which over-reads if the field is shorter; this
    /// refuses instead).
    pub fn to_key_config(&self, slot: u32) -> Result<KeyConfig, DcoError> {
        let slot = KeySlot::from_u32(slot)?;
        let peer = u32::try_from(self.remote_peer_id).map_err(|_| DcoError::PeerIdRange(self.remote_peer_id as u32))?;
        let key_id = u32::try_from(self.key_id).map_err(|_| DcoError::KeyIdRange(self.key_id as u32))?;
        let alg = CipherAlg::from_u32(self.cipher_alg)?;
        KeyConfig::new(
            PeerId::new(peer)?,
            slot,
            KeyId::new(key_id)?,
            alg,
            self.encrypt.to_key_dir(alg)?,
            self.decrypt.to_key_dir(alg)?,
        )
    }
}

#[cfg(any(test, feature = "fuzz"))]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(any(test, feature = "fuzz"))]
fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_varint(out, u64::from(field) << 3 | u64::from(WT_LEN));
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(any(test, feature = "fuzz"))]
fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v);
}

/// Upper bound of a KeyDirection's encoding: payload plus at most 11 bytes
/// (tag + length varint) for each of its 4 fields.
#[cfg(any(test, feature = "fuzz"))]
fn dir_cap(d: &KeyDirection) -> usize {
    let opt = |b: &Option<SecretBytes>| b.as_ref().map_or(0, |b| b.len());
    d.cipher_key.len() + opt(&d.hmac_key) + opt(&d.nonce_tail) + 4 * 11
}

// Buffers are sized up front so that no reallocation leaves key bytes behind.
#[cfg(any(test, feature = "fuzz"))]
fn encode_dir(d: &KeyDirection) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir_cap(d));
    put_bytes(&mut out, 1, d.cipher_key.as_slice());
    if let Some(h) = &d.hmac_key {
        put_bytes(&mut out, 2, h.as_slice());
    }
    if let Some(n) = &d.nonce_tail {
        put_bytes(&mut out, 3, n.as_slice());
    }
    put_uint(&mut out, 4, u64::from(d.cipher_key_size));
    out
}

/// Serializes `cfg` in field order (for tests and fuzz seeds; the daemon
/// only parses). The result holds key material, hence SecretBytes.
#[cfg(any(test, feature = "fuzz"))]
pub fn encode(cfg: &DcoKeyConfig) -> SecretBytes {
    let mut out = Vec::with_capacity(dir_cap(&cfg.encrypt) + dir_cap(&cfg.decrypt) + 5 * 11);
    // int32 negatives are sign-extended to 64 bits on the wire.
    put_uint(&mut out, 1, cfg.key_id as i64 as u64);
    put_uint(&mut out, 2, cfg.remote_peer_id as i64 as u64);
    put_uint(&mut out, 3, u64::from(cfg.cipher_alg));
    for (field, d) in [(4, &cfg.encrypt), (5, &cfg.decrypt)] {
        let mut body = encode_dir(d);
        put_bytes(&mut out, field, &body);
        super::secret::wipe(&mut body);
    }
    let s = SecretBytes::from_slice(&out);
    super::secret::wipe(&mut out);
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn dir(key: &[u8], tail: &[u8]) -> KeyDirection {
        KeyDirection {
            cipher_key: SecretBytes::from_slice(key),
            hmac_key: None,
            nonce_tail: Some(SecretBytes::from_slice(tail)),
            cipher_key_size: key.len() as u32,
        }
    }

    /// The golden upstream KEY_NEW primary key (32x 0x11 / 8x 0xee encrypt,
    /// 32x 0x22 / 8x 0xdd decrypt) as the client would send it.
    pub(crate) fn golden_primary() -> DcoKeyConfig {
        DcoKeyConfig {
            key_id: 0,
            remote_peer_id: 1,
            cipher_alg: 1,
            encrypt: dir(&[0x11; 32], &[0xee; 8]),
            decrypt: dir(&[0x22; 32], &[0xdd; 8]),
        }
    }

    #[test]
    fn round_trip() {
        let cfg = golden_primary();
        let bytes = encode(&cfg);
        assert_eq!(parse(bytes.as_slice()).unwrap(), cfg);
        let text = b64::encode(bytes.as_slice());
        assert_eq!(parse_base64(&text).unwrap(), cfg);
    }

    #[test]
    fn encoder_buffers_never_grow() {
        let mut c = golden_primary();
        c.key_id = i32::MIN; // longest varints
        c.encrypt.hmac_key = Some(SecretBytes::from_slice(&[7; 300]));
        let body = encode_dir(&c.encrypt);
        assert!(body.len() <= dir_cap(&c.encrypt));
        assert_eq!(body.capacity(), dir_cap(&c.encrypt), "no reallocation");
        let all = encode(&c);
        assert!(all.len() <= dir_cap(&c.encrypt) + dir_cap(&c.decrypt) + 55);
        assert_eq!(parse(all.as_slice()).unwrap(), c);
    }

    #[test]
    fn hand_written_bytes() {
        // key_id 3, peer 7, alg 2, encrypt{key "k", tail "t", size 1},
        // decrypt{key "K", size 1, unknown field 9 varint}, unknown field 15 fixed32
        let bytes: &[u8] = &[
            0x08, 3, 0x10, 7, 0x18, 2, //
            0x22, 8, 0x0a, 1, b'k', 0x1a, 1, b't', 0x20, 1, //
            0x2a, 7, 0x0a, 1, b'K', 0x20, 1, 0x48, 0x05, //
            0x7d, 1, 2, 3, 4,
        ];
        let c = parse(bytes).unwrap();
        assert_eq!((c.key_id, c.remote_peer_id, c.cipher_alg), (3, 7, 2));
        assert_eq!(c.encrypt.cipher_key.as_slice(), b"k");
        assert_eq!(c.encrypt.nonce_tail.as_ref().unwrap().as_slice(), b"t");
        assert_eq!(c.decrypt.nonce_tail, None);
        assert_eq!(c.decrypt.cipher_key_size, 1);
    }

    #[test]
    fn negative_int32_sign_extended() {
        let mut cfg = golden_primary();
        cfg.key_id = -1;
        let bytes = encode(&cfg);
        // tag 0x08 + ten varint bytes for a sign-extended -1
        assert_eq!(&bytes.as_slice()[..11], &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        let back = parse(bytes.as_slice()).unwrap();
        assert_eq!(back.key_id, -1);
        assert_eq!(back.to_key_config(0), Err(DcoError::KeyIdRange(u32::MAX)));
    }

    #[test]
    fn required_fields() {
        let full = encode(&golden_primary());
        let b = full.as_slice();
        // Drop key_id (first 2 bytes).
        assert_eq!(parse(&b[2..]), Err(KeyConfigError::Missing("key_id")));
        assert_eq!(parse(&[]), Err(KeyConfigError::Missing("key_id")));
        let only_scalars = [0x08, 0, 0x10, 1, 0x18, 1];
        assert_eq!(parse(&only_scalars), Err(KeyConfigError::Missing("encrypt")));
        let mut no_size = only_scalars.to_vec();
        no_size.extend_from_slice(&[0x22, 3, 0x0a, 1, 1]); // encrypt{cipher_key}
        assert_eq!(parse(&no_size), Err(KeyConfigError::Missing("encrypt.cipher_key_size")));
        let mut no_key = only_scalars.to_vec();
        no_key.extend_from_slice(&[0x22, 2, 0x20, 1, 0x2a, 5, 0x0a, 1, 1, 0x20, 1]);
        assert_eq!(parse(&no_key), Err(KeyConfigError::Missing("encrypt.cipher_key")));
    }

    #[test]
    fn malformed_wire_data() {
        // varint running past 10 bytes
        let mut v = vec![0x08];
        v.extend_from_slice(&[0xff; 10]);
        v.push(0);
        assert_eq!(parse(&v), Err(KeyConfigError::VarintOverflow(1)));
        // 10th byte above 1
        let mut v = vec![0x08];
        v.extend_from_slice(&[0xff; 9]);
        v.push(0x02);
        assert_eq!(parse(&v), Err(KeyConfigError::VarintOverflow(1)));
        // truncated varint, truncated fixed32
        assert_eq!(parse(&[0x08, 0x80]), Err(KeyConfigError::Truncated(1)));
        assert_eq!(parse(&[0x7d, 1, 2]), Err(KeyConfigError::Truncated(0)));
        // length past the end, and a huge length
        assert_eq!(parse(&[0x22, 5, 0]), Err(KeyConfigError::LengthOverflow(0)));
        let mut v = vec![0x22];
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(parse(&v), Err(KeyConfigError::LengthOverflow(0)));
        // nested length past the end of the nest, with the right offset
        assert_eq!(parse(&[0x08, 0, 0x22, 2, 0x0a, 9]), Err(KeyConfigError::LengthOverflow(4)));
        // field 0, group wire types, wrong wire type for a known field
        assert_eq!(parse(&[0x00, 1]), Err(KeyConfigError::FieldZero(0)));
        assert_eq!(parse(&[0x0b]), Err(KeyConfigError::WireType { field: 1, wire: 3 }));
        assert_eq!(parse(&[0x0c]), Err(KeyConfigError::WireType { field: 1, wire: 4 }));
        assert_eq!(parse(&[0x0a, 0]), Err(KeyConfigError::WireType { field: 1, wire: 2 }));
        assert_eq!(parse(&[0x20, 1]), Err(KeyConfigError::WireType { field: 4, wire: 0 }));
        // a field number above 32 bits
        let mut v = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        v.push(0);
        assert_eq!(parse(&v), Err(KeyConfigError::VarintOverflow(0)));
        // values out of range
        assert_eq!(parse(&[0x08, 0x80, 0x80, 0x80, 0x80, 0x08]), Err(KeyConfigError::Range { field: "key_id" }));
        assert_eq!(parse(&[0x18, 0x80, 0x80, 0x80, 0x80, 0x10]), Err(KeyConfigError::Range { field: "cipher_alg" }));
        assert_eq!(parse(&vec![0; KEYCONFIG_MAX + 1]), Err(KeyConfigError::TooLong(KEYCONFIG_MAX + 1)));
    }

    #[test]
    fn repeated_fields_follow_proto2_rules() {
        let mut v = encode(&golden_primary()).as_slice().to_vec();
        // a later key_id wins; a second encrypt merges (replaces size only)
        v.extend_from_slice(&[0x08, 5, 0x22, 2, 0x20, 16]);
        let c = parse(&v).unwrap();
        assert_eq!(c.key_id, 5);
        assert_eq!(c.encrypt.cipher_key_size, 16);
        assert_eq!(c.encrypt.cipher_key.as_slice(), &[0x11; 32]);
    }

    #[test]
    fn conversion_enforces_kernel_rules() {
        let kc = golden_primary().to_key_config(0).unwrap();
        assert_eq!(kc.peer().get(), 1);
        assert_eq!(kc.alg(), CipherAlg::AesGcm);
        assert_eq!(kc.encrypt().key(), &[0x11; 32]);
        assert_eq!(kc.decrypt().nonce_tail(), &[0xdd; 8]);

        let mut c = golden_primary();
        c.cipher_alg = 0;
        assert_eq!(c.to_key_config(0), Err(DcoError::UnsupportedCipher(0)));
        assert_eq!(golden_primary().to_key_config(2), Err(DcoError::KeySlot(2)));
        let mut c = golden_primary();
        c.remote_peer_id = 0x100_0000;
        assert_eq!(c.to_key_config(0), Err(DcoError::PeerIdRange(0x100_0000)));
        let mut c = golden_primary();
        c.remote_peer_id = -1;
        assert_eq!(c.to_key_config(0), Err(DcoError::PeerIdRange(u32::MAX)));
        let mut c = golden_primary();
        c.key_id = 8;
        assert_eq!(c.to_key_config(0), Err(DcoError::KeyIdRange(8)));
        // cipher_key_size selects a prefix; larger than the key is refused
        let mut c = golden_primary();
        c.encrypt.cipher_key_size = 16;
        c.decrypt.cipher_key_size = 16;
        assert_eq!(c.to_key_config(0).unwrap().encrypt().key(), &[0x11; 16]);
        let mut c = golden_primary();
        c.encrypt.cipher_key_size = 33;
        assert_eq!(c.to_key_config(0), Err(DcoError::KeyConfig(KeyConfigError::KeySizeField { size: 33, have: 32 })));
        let mut c = golden_primary();
        c.encrypt.cipher_key_size = 20;
        assert!(matches!(c.to_key_config(0), Err(DcoError::KeySize { len: 20, .. })));
        // the nonce tail: missing or not 8 bytes
        let mut c = golden_primary();
        c.decrypt.nonce_tail = None;
        assert_eq!(c.to_key_config(0), Err(DcoError::NonceTail(0)));
        let mut c = golden_primary();
        c.decrypt.nonce_tail = Some(SecretBytes::from_slice(&[1; 12]));
        assert_eq!(c.to_key_config(0), Err(DcoError::NonceTail(12)));
        // ChaCha needs 32 bytes
        let mut c = golden_primary();
        c.cipher_alg = 2;
        assert!(c.to_key_config(1).is_ok());
        c.encrypt.cipher_key_size = 24;
        assert!(matches!(c.to_key_config(1), Err(DcoError::KeySize { .. })));
    }

    #[test]
    fn from_dbus_end_to_end() {
        let text = b64::encode(encode(&golden_primary()).as_slice());
        let k = from_dbus(1, &text).unwrap();
        assert_eq!((k.slot(), k.key_id().get(), k.peer().get()), (KeySlot::Secondary, 0, 1));
        assert_eq!(from_dbus(0, "!!!!"), Err(DcoError::KeyConfig(KeyConfigError::Base64(B64Error::BadChar(0)))));
        assert_eq!(from_dbus(5, &text), Err(DcoError::KeySlot(5)));
    }

    #[test]
    fn base64_errors_and_limit() {
        assert_eq!(parse_base64("AAA"), Err(KeyConfigError::Base64(B64Error::Length(3))));
        let big = "A".repeat(4 * 700);
        assert_eq!(parse_base64(&big), Err(KeyConfigError::TooLong(2100)));
    }

    #[test]
    fn display_has_reference_prefix() {
        let t = KeyConfigError::Missing("key_id").to_string();
        assert_eq!(t, "Failed to parse DCO key configuration: required field key_id missing");
    }
}
