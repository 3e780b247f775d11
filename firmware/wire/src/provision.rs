//! The provisioning artefact (配置文件) of a sensor node: everything the
//! firmware needs at boot — who it is, where its broker is, its MQTT
//! credentials, its channel map and per-channel setpoints — as one small
//! framed blob, written by the gateway (`gateway node add`, [`encode`],
//! feature `std`) and read by the node at boot ([`decode`], no heap).
//!
//! # Frame
//!
//! | bytes | what |
//! |---|---|
//! | 4 | magic `FPRV` |
//! | 1 | format version, [`VERSION`] (1) |
//! | 1 | reserved, 0 |
//! | 2 | body length `n`, little endian, `1..=`[`MAX_BODY`] |
//! | n | body: UTF-8 JSON, below |
//! | 4 | CRC-32 (ISO-HDLC, the zlib/PNG one) of everything before it, little endian |
//!
//! # Body (version 1)
//!
//! ```json
//! {"site":"home_a","node":"n01",
//!  "broker":{"host":"10.0.0.2","port":1883},
//!  "client_id":"home_a.n01","username":"home_a.n01","password":"…",
//!  "ch":[{"id":"rc1","q":"residual_current","sensor":"ct","ratio":1000,
//!         "set":{"pre_alarm":300,"alarm":500,"hysteresis":30}},
//!        {"id":"t1","q":"temperature","sensor":"ntc_b3950"},
//!        {"id":"p1","q":"water_pressure","sensor":"loop_4_20","lo":0,"hi":1000}]}
//! ```
//!
//! - `site`, `node`, channel `id`: the contract's identifier patterns.
//! - `client_id`: `[A-Za-z0-9._-]{1,64}`; `username`, `password`: printable
//!   ASCII without `"` or `\` (the node's JSON reader takes no escapes),
//!   1..=64 bytes; `broker.host`: a host name or address,
//!   `[A-Za-z0-9.:_-]{1,64}`, `broker.port` non-zero.
//! - `ch`: 1..=[`MAX_CHANNELS`] channels in the order of the node's inputs,
//!   ids unique. `sensor` is what is wired to the input: `ct` (zero-sequence
//!   current transformer; `ratio` 1..=10000 required; measures
//!   `residual_current` or `current`), `ntc_b3950` (10 kΩ B3950 thermistor;
//!   `temperature`), `loop_4_20` (a 4–20 mA transmitter; `lo` < `hi` are the
//!   values at 4 and 20 mA in the quantity's wire unit, required; measures
//!   `water_pressure`, `water_level`, `loop_current`, `current` or
//!   `voltage`).
//! - `set` (optional): setpoints in the quantity's wire unit, each optional,
//!   applied over the `rules` crate's default rule for the quantity on the
//!   node. Whether a setpoint is allowed (e.g. residual current at most
//!   1000 mA) is the `rules` crate's call — it depends on this crate, so the
//!   check runs beside [`decode`], not inside it: on the node when it turns
//!   the artefact into its channels, on the gateway before [`encode`].
//!
//! Every malformed blob is a typed [`ProvisionError`], never a panic.
//!
//! # Label short form
//!
//! [`label`] gives a QR-code-friendly form of a node's identity for the
//! sticker on the enclosure: `FN1:HOME.A/N01:7K`. It uses only the QR code
//! *alphanumeric* character set (`0-9 A-Z space $ % * + - . / :`), whose
//! symbols are about 40 % smaller than byte mode: ids are upper-cased and
//! `_` (not in that set) is written `.` (never in an id), so the mapping is
//! reversible. `FN1` names the format (fire node, version 1); the last two
//! characters are a check code — the CRC-32 of `site/node` modulo 36², in
//! base 36 — which catches a mistyped or misread label with probability
//! 1295/1296. [`parse_label`] accepts upper or lower case.

use crate::id::{ChannelId, IdError, NodeId, SiteId};
use crate::payload::Quantity;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Magic at the start of every artefact.
pub const MAGIC: [u8; 4] = *b"FPRV";
/// The format version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Bytes before the body: magic, version, reserved, length.
pub const HEADER_LEN: usize = 8;
/// Bytes after the body: the CRC-32.
pub const TRAILER_LEN: usize = 4;
/// Longest body, bytes.
pub const MAX_BODY: usize = 2048;
/// Longest artefact, bytes.
pub const MAX_LEN: usize = HEADER_LEN + MAX_BODY + TRAILER_LEN;
/// Most channels one artefact describes.
pub const MAX_CHANNELS: usize = 8;
/// Longest broker host, client id, username or password, bytes.
pub const MAX_FIELD: usize = 64;

/// A bounded string of the artefact.
pub type Field = heapless::String<MAX_FIELD>;

/// The broker the node connects to. On QEMU the UART is already joined to
/// the broker's port, so there it is only logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broker {
    /// Host name or address.
    pub host: Field,
    /// TCP port.
    pub port: u16,
}

/// What is wired to one input of the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sensor {
    /// A zero-sequence current transformer with this turns ratio (`ratio:1`).
    Ct {
        /// Turns ratio, 1..=10000.
        ratio: u16,
    },
    /// A 10 kΩ B3950 NTC thermistor.
    NtcB3950,
    /// A 4–20 mA transmitter: `lo` at 4 mA, `hi` at 20 mA, in the quantity's
    /// wire unit.
    Loop {
        /// Value at 4 mA.
        lo: i32,
        /// Value at 20 mA.
        hi: i32,
    },
}

impl Sensor {
    /// The name used in the artefact.
    pub const fn name(self) -> &'static str {
        match self {
            Sensor::Ct { .. } => "ct",
            Sensor::NtcB3950 => "ntc_b3950",
            Sensor::Loop { .. } => "loop_4_20",
        }
    }

    /// Whether this sensor can measure `q`.
    pub const fn measures(self, q: Quantity) -> bool {
        matches!(
            (self, q),
            (
                Sensor::Ct { .. },
                Quantity::ResidualCurrent | Quantity::Current
            ) | (Sensor::NtcB3950, Quantity::Temperature)
                | (
                    Sensor::Loop { .. },
                    Quantity::WaterPressure
                        | Quantity::WaterLevel
                        | Quantity::LoopCurrent
                        | Quantity::Current
                        | Quantity::Voltage
                )
        )
    }
}

/// Setpoints of one channel in the quantity's wire unit, each optional:
/// what is absent keeps the `rules` default for the quantity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setpoints {
    /// Pre-alarm (预警) setpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_alarm: Option<i32>,
    /// Alarm (报警) setpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<i32>,
    /// Return difference (回差).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<i32>,
}

impl Setpoints {
    /// Whether no setpoint is given.
    pub const fn is_empty(&self) -> bool {
        self.pre_alarm.is_none() && self.alarm.is_none() && self.hysteresis.is_none()
    }
}

/// One channel of the node: an input, what it measures, its setpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSpec {
    /// The channel id on the wire.
    pub id: ChannelId,
    /// What it measures.
    pub q: Quantity,
    /// What is wired to the input.
    pub sensor: Sensor,
    /// Setpoints over the quantity's defaults.
    pub set: Setpoints,
}

/// Everything a node needs at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provision {
    /// The node's site.
    pub site: SiteId,
    /// The node's id within the site.
    pub node: NodeId,
    /// Where the broker is.
    pub broker: Broker,
    /// MQTT client id.
    pub client_id: Field,
    /// MQTT user name.
    pub username: Field,
    /// MQTT password.
    pub password: Field,
    /// The channels, in the order of the node's inputs.
    pub channels: heapless::Vec<ChannelSpec, MAX_CHANNELS>,
}

/// Which field of the artefact is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldName {
    /// `site`.
    Site,
    /// `node`.
    Node,
    /// `broker.host`.
    BrokerHost,
    /// `broker.port`.
    BrokerPort,
    /// `client_id`.
    ClientId,
    /// `username`.
    Username,
    /// `password`.
    Password,
    /// `ch`.
    Channels,
}

impl FieldName {
    /// The field's name in the body.
    pub const fn as_str(self) -> &'static str {
        match self {
            FieldName::Site => "site",
            FieldName::Node => "node",
            FieldName::BrokerHost => "broker.host",
            FieldName::BrokerPort => "broker.port",
            FieldName::ClientId => "client_id",
            FieldName::Username => "username",
            FieldName::Password => "password",
            FieldName::Channels => "ch",
        }
    }
}

/// What is wrong with one channel of the artefact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelFault {
    /// The id does not match `[a-z0-9_]{1,16}`.
    Id(IdError),
    /// The id is used twice.
    DuplicateId,
    /// `q` is not a quantity of the contract.
    UnknownQuantity,
    /// `sensor` is not `ct`, `ntc_b3950` or `loop_4_20`.
    UnknownSensor,
    /// A `ct` without `ratio` in 1..=10000, or `ratio` on another sensor.
    Ratio,
    /// A `loop_4_20` without `lo` < `hi`, or `lo`/`hi` on another sensor.
    LoopRange,
    /// The sensor cannot measure the quantity (e.g. an NTC measuring pressure).
    SensorQuantity,
}

impl fmt::Display for ChannelFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelFault::Id(e) => write!(f, "id must match {}: {e}", ChannelId::PATTERN),
            ChannelFault::DuplicateId => f.write_str("id used twice"),
            ChannelFault::UnknownQuantity => f.write_str("unknown quantity"),
            ChannelFault::UnknownSensor => f.write_str("sensor must be ct, ntc_b3950 or loop_4_20"),
            ChannelFault::Ratio => f.write_str("a ct needs ratio 1..=10000 (and only a ct)"),
            ChannelFault::LoopRange => {
                f.write_str("a loop_4_20 needs lo < hi (and only a loop_4_20)")
            }
            ChannelFault::SensorQuantity => f.write_str("the sensor cannot measure the quantity"),
        }
    }
}

/// Why an artefact was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProvisionError {
    /// Shorter than a header and a CRC.
    Truncated,
    /// Does not start with `FPRV`.
    BadMagic,
    /// A format version this firmware does not read.
    Version {
        /// The version in the header.
        found: u8,
    },
    /// The reserved header byte is not 0.
    Reserved,
    /// The body length is 0 or above [`MAX_BODY`], or the blob is not
    /// exactly header + body + CRC long.
    Length {
        /// The body length in the header.
        declared: usize,
        /// The blob's length.
        actual: usize,
    },
    /// The CRC-32 does not match: the blob is damaged.
    Crc {
        /// The CRC in the blob.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The body is not UTF-8 JSON (or uses string escapes, which the node
    /// does not read).
    Json,
    /// The body is JSON but not the artefact's shape: a field missing,
    /// unknown, mistyped, too long, or too many channels.
    Schema,
    /// A top-level field's value is not allowed.
    Field(FieldName),
    /// `site` or `node` does not match the contract's pattern.
    Id(FieldName, IdError),
    /// A channel (index in `ch`) is wrong.
    Channel(u8, ChannelFault),
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProvisionError::Truncated => f.write_str("artefact truncated"),
            ProvisionError::BadMagic => f.write_str("not a provisioning artefact (magic)"),
            ProvisionError::Version { found } => {
                write!(f, "artefact version {found}, this firmware reads {VERSION}")
            }
            ProvisionError::Reserved => f.write_str("reserved header byte is not 0"),
            ProvisionError::Length { declared, actual } => write!(
                f,
                "body length {declared} does not fit (1..={MAX_BODY}, blob {actual} bytes)"
            ),
            ProvisionError::Crc { stored, computed } => write!(
                f,
                "CRC mismatch: stored {stored:08x}, computed {computed:08x}"
            ),
            ProvisionError::Json => f.write_str("body is not JSON without escapes"),
            ProvisionError::Schema => f.write_str("body does not have the artefact's fields"),
            ProvisionError::Field(name) => write!(f, "{} not allowed", name.as_str()),
            ProvisionError::Id(name, e) => {
                write!(f, "{} must match its pattern: {e}", name.as_str())
            }
            ProvisionError::Channel(i, e) => write!(f, "ch[{i}]: {e}"),
        }
    }
}

impl core::error::Error for ProvisionError {}

/// CRC-32/ISO-HDLC (the zlib/PNG CRC), bitwise: no table in the node's flash.
pub fn crc32(bytes: &[u8]) -> u32 {
    !crc32_update(!0, bytes)
}

fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    crc
}

/// The whole artefact's length from its first [`HEADER_LEN`] bytes, so a
/// reader of raw memory knows how many bytes to take. Checks magic, version
/// and length only.
pub fn frame_len(header: &[u8]) -> Result<usize, ProvisionError> {
    let h = header.get(..HEADER_LEN).ok_or(ProvisionError::Truncated)?;
    if h[..4] != MAGIC {
        return Err(ProvisionError::BadMagic);
    }
    if h[4] != VERSION {
        return Err(ProvisionError::Version { found: h[4] });
    }
    if h[5] != 0 {
        return Err(ProvisionError::Reserved);
    }
    let n = usize::from(u16::from_le_bytes([h[6], h[7]]));
    if n == 0 || n > MAX_BODY {
        return Err(ProvisionError::Length {
            declared: n,
            actual: header.len(),
        });
    }
    Ok(HEADER_LEN + n + TRAILER_LEN)
}

// The body as read: strings first, checked afterwards, so every bad value
// is a precise error (serde-json-core keeps no error messages).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBody {
    site: Field,
    node: Field,
    broker: Broker,
    client_id: Field,
    username: Field,
    password: Field,
    ch: heapless::Vec<RawChannel, MAX_CHANNELS>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    id: heapless::String<32>,
    q: heapless::String<32>,
    sensor: heapless::String<16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ratio: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lo: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hi: Option<i32>,
    #[serde(default, skip_serializing_if = "Setpoints::is_empty")]
    set: Setpoints,
}

fn host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'_' | b'-')
}

fn client_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn secret_char(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

fn check_field(s: &str, name: FieldName, ok: fn(u8) -> bool) -> Result<(), ProvisionError> {
    if s.is_empty() || !s.bytes().all(ok) {
        Err(ProvisionError::Field(name))
    } else {
        Ok(())
    }
}

fn channel(i: u8, raw: &RawChannel) -> Result<ChannelSpec, ProvisionError> {
    let fault = |e| ProvisionError::Channel(i, e);
    let id = ChannelId::new(&raw.id).map_err(|e| fault(ChannelFault::Id(e)))?;
    let q = Quantity::from_wire(&raw.q).ok_or(fault(ChannelFault::UnknownQuantity))?;
    let sensor = match (raw.sensor.as_str(), raw.ratio, raw.lo, raw.hi) {
        ("ct", Some(ratio @ 1..=10_000), None, None) => Sensor::Ct { ratio },
        ("ct", _, None, None) => return Err(fault(ChannelFault::Ratio)),
        ("ntc_b3950", None, None, None) => Sensor::NtcB3950,
        ("loop_4_20", None, Some(lo), Some(hi)) if lo < hi => Sensor::Loop { lo, hi },
        ("loop_4_20", None, _, _) => return Err(fault(ChannelFault::LoopRange)),
        ("ct" | "ntc_b3950", _, _, _) if raw.lo.is_some() || raw.hi.is_some() => {
            return Err(fault(ChannelFault::LoopRange))
        }
        ("ntc_b3950" | "loop_4_20", _, _, _) => return Err(fault(ChannelFault::Ratio)),
        _ => return Err(fault(ChannelFault::UnknownSensor)),
    };
    if !sensor.measures(q) {
        return Err(fault(ChannelFault::SensorQuantity));
    }
    Ok(ChannelSpec {
        id,
        q,
        sensor,
        set: raw.set,
    })
}

fn from_raw(raw: RawBody) -> Result<Provision, ProvisionError> {
    let site = SiteId::new(&raw.site).map_err(|e| ProvisionError::Id(FieldName::Site, e))?;
    let node = NodeId::new(&raw.node).map_err(|e| ProvisionError::Id(FieldName::Node, e))?;
    check_field(&raw.broker.host, FieldName::BrokerHost, host_char)?;
    if raw.broker.port == 0 {
        return Err(ProvisionError::Field(FieldName::BrokerPort));
    }
    check_field(&raw.client_id, FieldName::ClientId, client_id_char)?;
    check_field(&raw.username, FieldName::Username, secret_char)?;
    check_field(&raw.password, FieldName::Password, secret_char)?;
    if raw.ch.is_empty() {
        return Err(ProvisionError::Field(FieldName::Channels));
    }
    let mut channels = heapless::Vec::new();
    for (i, c) in raw.ch.iter().enumerate() {
        let spec = channel(i as u8, c)?;
        if channels.iter().any(|s: &ChannelSpec| s.id == spec.id) {
            return Err(ProvisionError::Channel(i as u8, ChannelFault::DuplicateId));
        }
        // Both vectors hold MAX_CHANNELS: never full here.
        channels
            .push(spec)
            .map_err(|_| ProvisionError::Field(FieldName::Channels))?;
    }
    Ok(Provision {
        site,
        node,
        broker: raw.broker,
        client_id: raw.client_id,
        username: raw.username,
        password: raw.password,
        channels,
    })
}

/// Reads an artefact: exactly one frame, checked in order (length, magic,
/// version, CRC, JSON, fields). Allocation-free; about 1 KiB of stack.
pub fn decode(bytes: &[u8]) -> Result<Provision, ProvisionError> {
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(ProvisionError::Truncated);
    }
    let total = frame_len(bytes)?;
    if total != bytes.len() {
        return Err(ProvisionError::Length {
            declared: total - HEADER_LEN - TRAILER_LEN,
            actual: bytes.len(),
        });
    }
    let (framed, trailer) = bytes.split_at(total - TRAILER_LEN);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let computed = crc32(framed);
    if stored != computed {
        return Err(ProvisionError::Crc { stored, computed });
    }
    let body = &framed[HEADER_LEN..];
    if core::str::from_utf8(body).is_err() {
        return Err(ProvisionError::Json);
    }
    use serde_json_core::de::Error as E;
    let raw = match serde_json_core::from_slice::<RawBody>(body) {
        Ok((raw, n)) if body[n..].iter().all(u8::is_ascii_whitespace) => raw,
        Ok(_) | Err(E::TrailingCharacters) => return Err(ProvisionError::Json),
        Err(E::CustomError | E::InvalidType) => return Err(ProvisionError::Schema),
        Err(_) => return Err(ProvisionError::Json),
    };
    from_raw(raw)
}

#[cfg(feature = "std")]
#[derive(Serialize)]
struct BodyOut<'a> {
    site: &'a str,
    node: &'a str,
    broker: &'a Broker,
    client_id: &'a str,
    username: &'a str,
    password: &'a str,
    ch: heapless::Vec<RawChannel, MAX_CHANNELS>,
}

/// Writes the artefact of `p` (gateway side). Refuses, with the error
/// [`decode`] would give, a `Provision` whose fields the node would not
/// accept (e.g. a password with `"`), so what is written always reads back
/// equal. Setpoints are not judged here: check them with the `rules` crate
/// first.
#[cfg(feature = "std")]
pub fn encode(p: &Provision) -> Result<std::vec::Vec<u8>, ProvisionError> {
    let mut ch = heapless::Vec::new();
    for c in &p.channels {
        let (ratio, lo, hi) = match c.sensor {
            Sensor::Ct { ratio } => (Some(ratio), None, None),
            Sensor::NtcB3950 => (None, None, None),
            Sensor::Loop { lo, hi } => (None, Some(lo), Some(hi)),
        };
        let raw = RawChannel {
            id: heapless::String::try_from(c.id.as_str()).map_err(|_| ProvisionError::Schema)?,
            q: heapless::String::try_from(c.q.as_str()).map_err(|_| ProvisionError::Schema)?,
            sensor: heapless::String::try_from(c.sensor.name())
                .map_err(|_| ProvisionError::Schema)?,
            ratio,
            lo,
            hi,
            set: c.set,
        };
        ch.push(raw).map_err(|_| ProvisionError::Schema)?;
    }
    let body = BodyOut {
        site: &p.site,
        node: &p.node,
        broker: &p.broker,
        client_id: &p.client_id,
        username: &p.username,
        password: &p.password,
        ch,
    };
    let mut buf = std::vec![0u8; MAX_BODY];
    let n = serde_json_core::to_slice(&body, &mut buf).map_err(|_| ProvisionError::Length {
        declared: MAX_BODY + 1,
        actual: 0,
    })?;
    let mut out = std::vec::Vec::with_capacity(HEADER_LEN + n + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(0);
    // n <= MAX_BODY < 65536.
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&buf[..n]);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    // Refuse what the node would refuse.
    let back = decode(&out)?;
    if back != *p {
        return Err(ProvisionError::Schema);
    }
    Ok(out)
}

/// Prefix of the label short form: fire node, label format 1.
pub const LABEL_PREFIX: &str = "FN1:";
/// Longest label: prefix, two 32-byte ids, `/`, `:`, two check characters.
pub const MAX_LABEL: usize = 4 + 32 + 1 + 32 + 1 + 2;

/// A label text.
pub type Label = heapless::String<MAX_LABEL>;

/// Why a label does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabelError {
    /// Does not start with `FN1:`.
    Prefix,
    /// Not `FN1:SITE/NODE:CC`.
    Shape,
    /// The site or node is not a valid identifier.
    Id(IdError),
    /// The check code does not match: mistyped or misread.
    Check,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelError::Prefix => f.write_str("label does not start with FN1:"),
            LabelError::Shape => f.write_str("label is not FN1:SITE/NODE:CC"),
            LabelError::Id(e) => write!(f, "label's site or node is invalid: {e}"),
            LabelError::Check => f.write_str("label check code does not match"),
        }
    }
}

impl core::error::Error for LabelError {}

const BASE36: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn check_code(site: &SiteId, node: &NodeId) -> [u8; 2] {
    let crc = crc32_update(!0, site.as_bytes());
    let crc = crc32_update(crc, b"/");
    let crc = !crc32_update(crc, node.as_bytes());
    let c = (crc % (36 * 36)) as usize;
    [BASE36[c / 36], BASE36[c % 36]]
}

fn push_id(out: &mut Label, id: &str) {
    for b in id.bytes() {
        // Ids are [a-z0-9_-]: upper-case, `_` as `.`. The label's capacity
        // covers the longest ids, so pushing cannot fail.
        let c = if b == b'_' {
            '.'
        } else {
            b.to_ascii_uppercase() as char
        };
        let _ = out.push(c);
    }
}

/// The label short form of a node, e.g. `FN1:HOME.A/N01:7K` (see the
/// module documentation).
pub fn label(site: &SiteId, node: &NodeId) -> Label {
    let mut out = Label::new();
    let _ = out.push_str(LABEL_PREFIX);
    push_id(&mut out, site);
    let _ = out.push('/');
    push_id(&mut out, node);
    let _ = out.push(':');
    for c in check_code(site, node) {
        let _ = out.push(c as char);
    }
    out
}

fn id_from_label(s: &str) -> heapless::String<MAX_LABEL> {
    let mut out = heapless::String::new();
    for b in s.bytes() {
        let c = if b == b'.' {
            '_'
        } else {
            b.to_ascii_lowercase() as char
        };
        let _ = out.push(c);
    }
    out
}

/// Reads a label back into `(site, node)`; upper or lower case.
pub fn parse_label(s: &str) -> Result<(SiteId, NodeId), LabelError> {
    if s.len() < LABEL_PREFIX.len()
        || !s.is_char_boundary(LABEL_PREFIX.len())
        || !s[..LABEL_PREFIX.len()].eq_ignore_ascii_case(LABEL_PREFIX)
    {
        return Err(LabelError::Prefix);
    }
    let rest = &s[LABEL_PREFIX.len()..];
    let (ids, check) = rest.rsplit_once(':').ok_or(LabelError::Shape)?;
    let (site, node) = ids.split_once('/').ok_or(LabelError::Shape)?;
    if check.len() != 2 || site.len() > SiteId::MAX_LEN || node.len() > NodeId::MAX_LEN {
        return Err(LabelError::Shape);
    }
    let site = SiteId::new(&id_from_label(site)).map_err(LabelError::Id)?;
    let node = NodeId::new(&id_from_label(node)).map_err(LabelError::Id)?;
    if !check
        .bytes()
        .map(|b| b.to_ascii_uppercase())
        .eq(check_code(&site, &node))
    {
        return Err(LabelError::Check);
    }
    Ok((site, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_zlib_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
