//! MQTT 3.1.1 packet codec: encodes the packets a client sends (CONNECT,
//! PUBLISH, PUBACK, SUBSCRIBE, PINGREQ, DISCONNECT) into caller buffers and
//! frames and decodes the packets a broker sends (CONNACK, PUBLISH, PUBACK,
//! SUBACK, UNSUBACK, PINGRESP). Pure and allocation-free.
//!
//! Every incoming byte is hostile: a malformed remaining length, a wrong
//! fixed-header flag, a truncated variable header, a non-UTF-8 topic or a
//! packet type a broker never sends is a typed [`DecodeError`], never a
//! panic. A packet larger than the [`Framer`]'s buffer is skipped and
//! reported, so an oversized publication cannot stall the stream.

use core::fmt;

/// The protocol level of MQTT 3.1.1 in CONNECT.
pub const PROTOCOL_LEVEL: u8 = 4;

/// Why a packet could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer is too small.
    BufferFull,
    /// A string or payload is longer than MQTT allows (65,535 bytes for
    /// strings, 268,435,455 bytes for a packet).
    TooLong,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::BufferFull => "MQTT packet buffer too small",
            EncodeError::TooLong => "MQTT field too long",
        })
    }
}

/// Why incoming bytes are not a valid broker packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The remaining length uses more than four bytes.
    BadLength,
    /// Fixed-header flags, lengths or fields that 3.1.1 forbids.
    Malformed,
    /// A topic that is not UTF-8.
    BadUtf8,
    /// A packet type a broker never sends to a client (or QoS 2).
    Unexpected(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadLength => f.write_str("bad remaining length"),
            DecodeError::Malformed => f.write_str("malformed packet"),
            DecodeError::BadUtf8 => f.write_str("topic is not UTF-8"),
            DecodeError::Unexpected(t) => write!(f, "unexpected packet type {t}"),
        }
    }
}

/// A Last Will: published by the broker when the client vanishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Will<'a> {
    /// Topic of the will.
    pub topic: &'a str,
    /// Payload of the will.
    pub payload: &'a [u8],
    /// QoS (0 or 1).
    pub qos: u8,
    /// Whether the broker retains it.
    pub retain: bool,
}

/// The fields of a CONNECT packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connect<'a> {
    /// Client identifier.
    pub client_id: &'a str,
    /// Keep-alive interval in seconds.
    pub keep_alive_s: u16,
    /// `false` asks the broker to keep the session (subscriptions, queued QoS 1).
    pub clean_session: bool,
    /// User name, if any.
    pub username: Option<&'a str>,
    /// Password, if any (only with a user name).
    pub password: Option<&'a [u8]>,
    /// Last Will, if any.
    pub will: Option<Will<'a>>,
}

/// A packet received from the broker, borrowing the framer's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Answer to CONNECT; `code` 0 is accepted.
    ConnAck {
        /// The broker kept a session for this client id.
        session_present: bool,
        /// Return code (0 accepted, 1–5 refused).
        code: u8,
    },
    /// An application message.
    Publish {
        /// Duplicate flag.
        dup: bool,
        /// QoS 0 or 1.
        qos: u8,
        /// Retain flag.
        retain: bool,
        /// Topic name.
        topic: &'a str,
        /// Packet identifier (QoS 1 only).
        pkid: Option<u16>,
        /// Payload bytes.
        payload: &'a [u8],
    },
    /// Acknowledges our QoS 1 PUBLISH.
    PubAck {
        /// Packet identifier.
        pkid: u16,
    },
    /// Answer to SUBSCRIBE: the first return code (0x80 is failure).
    SubAck {
        /// Packet identifier.
        pkid: u16,
        /// First return code.
        code: u8,
    },
    /// Answer to UNSUBSCRIBE.
    UnsubAck {
        /// Packet identifier.
        pkid: u16,
    },
    /// Answer to PINGREQ.
    PingResp,
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn u8(&mut self, b: u8) -> Result<(), EncodeError> {
        let slot = self.buf.get_mut(self.pos).ok_or(EncodeError::BufferFull)?;
        *slot = b;
        self.pos += 1;
        Ok(())
    }
    fn u16(&mut self, v: u16) -> Result<(), EncodeError> {
        self.bytes(&v.to_be_bytes())
    }
    fn bytes(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        let end = self.pos.checked_add(b.len()).ok_or(EncodeError::TooLong)?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EncodeError::BufferFull)?;
        dst.copy_from_slice(b);
        self.pos = end;
        Ok(())
    }
    /// A length-prefixed string or binary field.
    fn field(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        let n = u16::try_from(b.len()).map_err(|_| EncodeError::TooLong)?;
        self.u16(n)?;
        self.bytes(b)
    }
    fn remaining_length(&mut self, mut n: usize) -> Result<(), EncodeError> {
        if n > 268_435_455 {
            return Err(EncodeError::TooLong);
        }
        loop {
            let mut b = (n % 128) as u8;
            n /= 128;
            if n > 0 {
                b |= 0x80;
            }
            self.u8(b)?;
            if n == 0 {
                return Ok(());
            }
        }
    }
}

fn field_len(b: &[u8]) -> usize {
    2 + b.len()
}

fn start(buf: &mut [u8], first: u8, remaining: usize) -> Result<Writer<'_>, EncodeError> {
    let mut w = Writer { buf, pos: 0 };
    w.u8(first)?;
    w.remaining_length(remaining)?;
    Ok(w)
}

/// Encodes CONNECT into `buf`; returns the packet length.
pub fn connect(buf: &mut [u8], c: &Connect<'_>) -> Result<usize, EncodeError> {
    let mut flags = 0u8;
    if c.clean_session {
        flags |= 0x02;
    }
    let mut len = field_len(b"MQTT") + 1 + 1 + 2 + field_len(c.client_id.as_bytes());
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos & 0x03) << 3);
        if w.retain {
            flags |= 0x20;
        }
        len += field_len(w.topic.as_bytes()) + field_len(w.payload);
    }
    if let Some(u) = c.username {
        flags |= 0x80;
        len += field_len(u.as_bytes());
        if let Some(p) = c.password {
            flags |= 0x40;
            len += field_len(p);
        }
    }
    let mut w = start(buf, 0x10, len)?;
    w.field(b"MQTT")?;
    w.u8(PROTOCOL_LEVEL)?;
    w.u8(flags)?;
    w.u16(c.keep_alive_s)?;
    w.field(c.client_id.as_bytes())?;
    if let Some(will) = &c.will {
        w.field(will.topic.as_bytes())?;
        w.field(will.payload)?;
    }
    if let Some(u) = c.username {
        w.field(u.as_bytes())?;
        if let Some(p) = c.password {
            w.field(p)?;
        }
    }
    Ok(w.pos)
}

/// Encodes PUBLISH into `buf`; `pkid` is required for QoS 1 and ignored
/// for QoS 0. Returns the packet length.
pub fn publish(
    buf: &mut [u8],
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    dup: bool,
    pkid: u16,
) -> Result<usize, EncodeError> {
    let qos = qos.min(1);
    let mut first = 0x30 | (qos << 1);
    if retain {
        first |= 0x01;
    }
    if dup && qos > 0 {
        first |= 0x08;
    }
    let len = field_len(topic.as_bytes()) + if qos > 0 { 2 } else { 0 } + payload.len();
    let mut w = start(buf, first, len)?;
    w.field(topic.as_bytes())?;
    if qos > 0 {
        w.u16(pkid)?;
    }
    w.bytes(payload)?;
    Ok(w.pos)
}

/// Sets the DUP flag of an encoded QoS 1 PUBLISH (for a resend).
pub fn set_dup(packet: &mut [u8]) {
    if let Some(b) = packet.first_mut() {
        if *b >> 4 == 3 && (*b >> 1) & 0x03 != 0 {
            *b |= 0x08;
        }
    }
}

/// Encodes PUBACK for `pkid`.
pub fn puback(buf: &mut [u8], pkid: u16) -> Result<usize, EncodeError> {
    let mut w = start(buf, 0x40, 2)?;
    w.u16(pkid)?;
    Ok(w.pos)
}

/// Encodes SUBSCRIBE to one topic filter.
pub fn subscribe(buf: &mut [u8], pkid: u16, filter: &str, qos: u8) -> Result<usize, EncodeError> {
    let len = 2 + field_len(filter.as_bytes()) + 1;
    let mut w = start(buf, 0x82, len)?;
    w.u16(pkid)?;
    w.field(filter.as_bytes())?;
    w.u8(qos.min(2))?;
    Ok(w.pos)
}

/// Encodes PINGREQ.
pub fn pingreq(buf: &mut [u8]) -> Result<usize, EncodeError> {
    Ok(start(buf, 0xC0, 0)?.pos)
}

/// Encodes DISCONNECT.
pub fn disconnect(buf: &mut [u8]) -> Result<usize, EncodeError> {
    Ok(start(buf, 0xE0, 0)?.pos)
}

/// Parses a fixed header at the start of `buf`: `Ok(None)` while incomplete,
/// else `(first byte, remaining length, header length)`.
pub fn parse_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((first, len, 2 + i)));
        }
    }
    Err(DecodeError::BadLength)
}

fn be16(b: &[u8], at: usize) -> Result<u16, DecodeError> {
    match (b.get(at), b.get(at + 1)) {
        (Some(&h), Some(&l)) => Ok(u16::from_be_bytes([h, l])),
        _ => Err(DecodeError::Malformed),
    }
}

/// Decodes one complete packet (fixed header included, nothing after it).
pub fn decode(packet: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let (first, len, hl) = parse_header(packet)?.ok_or(DecodeError::Malformed)?;
    if packet.len() != hl + len {
        return Err(DecodeError::Malformed);
    }
    let body = &packet[hl..];
    let kind = first >> 4;
    let flags = first & 0x0F;
    let fixed = |want_flags: u8, want_len: usize| {
        if flags == want_flags && len == want_len {
            Ok(())
        } else {
            Err(DecodeError::Malformed)
        }
    };
    match kind {
        2 => {
            fixed(0, 2)?;
            if body[0] & 0xFE != 0 {
                return Err(DecodeError::Malformed);
            }
            Ok(Packet::ConnAck {
                session_present: body[0] & 1 == 1,
                code: body[1],
            })
        }
        3 => {
            let qos = (flags >> 1) & 0x03;
            if qos == 3 {
                return Err(DecodeError::Malformed);
            }
            if qos == 2 {
                return Err(DecodeError::Unexpected(kind));
            }
            let tlen = usize::from(be16(body, 0)?);
            let topic_bytes = body.get(2..2 + tlen).ok_or(DecodeError::Malformed)?;
            let topic = core::str::from_utf8(topic_bytes).map_err(|_| DecodeError::BadUtf8)?;
            let mut at = 2 + tlen;
            let pkid = if qos > 0 {
                let p = be16(body, at)?;
                if p == 0 {
                    return Err(DecodeError::Malformed);
                }
                at += 2;
                Some(p)
            } else {
                None
            };
            Ok(Packet::Publish {
                dup: flags & 0x08 != 0,
                qos,
                retain: flags & 0x01 != 0,
                topic,
                pkid,
                payload: body.get(at..).ok_or(DecodeError::Malformed)?,
            })
        }
        4 => {
            fixed(0, 2)?;
            Ok(Packet::PubAck {
                pkid: be16(body, 0)?,
            })
        }
        9 => {
            if flags != 0 || len < 3 {
                return Err(DecodeError::Malformed);
            }
            Ok(Packet::SubAck {
                pkid: be16(body, 0)?,
                code: body[2],
            })
        }
        11 => {
            fixed(0, 2)?;
            Ok(Packet::UnsubAck {
                pkid: be16(body, 0)?,
            })
        }
        13 => {
            fixed(0, 0)?;
            Ok(Packet::PingResp)
        }
        other => Err(DecodeError::Unexpected(other)),
    }
}

/// What feeding one byte to a [`Framer`] gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// More bytes needed.
    Pending,
    /// A whole packet of this length is in [`Framer::packet`].
    Ready(usize),
    /// A packet larger than the buffer was skipped entirely.
    Skipped,
}

/// Splits a byte stream into packets, one byte at a time, in a buffer of
/// `N` bytes. Packets that do not fit are skipped (and reported), so the
/// stream stays in step whatever their size.
#[derive(Clone, Debug)]
pub struct Framer<const N: usize> {
    buf: [u8; N],
    len: usize,
    skip: usize,
}

impl<const N: usize> Default for Framer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Framer<N> {
    /// An empty framer.
    pub const fn new() -> Self {
        Framer {
            buf: [0; N],
            len: 0,
            skip: 0,
        }
    }

    /// Forgets any partial packet (after a reconnect).
    pub fn reset(&mut self) {
        self.len = 0;
        self.skip = 0;
    }

    /// Feeds one byte. After [`Frame::Ready`] the packet is in
    /// [`Framer::packet`] until the next call.
    pub fn push(&mut self, b: u8) -> Result<Frame, DecodeError> {
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(if self.skip == 0 {
                Frame::Skipped
            } else {
                Frame::Pending
            });
        }
        if self.len >= N {
            // A previous Ready packet filled the buffer: start over.
            self.len = 0;
        }
        self.buf[self.len] = b;
        self.len += 1;
        let header = match parse_header(&self.buf[..self.len]) {
            Ok(h) => h,
            Err(e) => {
                self.len = 0;
                return Err(e);
            }
        };
        let Some((_, rem, hl)) = header else {
            return Ok(Frame::Pending);
        };
        let total = hl + rem;
        if total > N {
            self.len = 0;
            self.skip = rem;
            return Ok(if rem == 0 {
                Frame::Skipped
            } else {
                Frame::Pending
            });
        }
        if self.len == total {
            self.len = 0;
            return Ok(Frame::Ready(total));
        }
        Ok(Frame::Pending)
    }

    /// The packet of the last [`Frame::Ready`]`(n)`: the first `n` bytes.
    pub fn packet(&self, n: usize) -> &[u8] {
        &self.buf[..n.min(N)]
    }
}
