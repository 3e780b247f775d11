//! Framing and the byte-level checks of the gate (pure): a packet is cut
//! out of the stream by its fixed header alone, and the strings of a CONNECT
//! or PUBLISH are checked against what MQTT 3.1.1 forbids before anything
//! else looks at them.

use bytes::{Buf, BytesMut};
use rumqttc::mqttbytes::v4::Connect;
use rumqttc::mqttbytes::FixedHeader;

/// Largest packet relayed: the embedded broker's 256 KiB payload limit plus
/// room for the topic and headers. Larger ones close the connection.
pub const MAX_PACKET: usize = 256 * 1024 + 1024;
/// Largest CONNECT read before a login is known: MQTT's longest username
/// (65,535 bytes) and a little more. A node's is a few hundred bytes; the
/// bound keeps what an unauthenticated connection can make the gate hold
/// small (times the cap on half-open connections).
pub const MAX_CONNECT: usize = 64 * 1024 + 1024;

/// A complete frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The fixed header's first byte (type and flags).
    pub byte1: u8,
    /// Bytes of the fixed header (1 + the remaining length's 1–4 bytes).
    pub header_len: usize,
    /// Bytes after the fixed header.
    pub remaining: usize,
}

impl FrameHeader {
    /// The whole frame's length.
    pub fn len(&self) -> usize {
        self.header_len + self.remaining
    }

    /// Always false: a frame has at least its fixed header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The packet type (1 = CONNECT … 14 = DISCONNECT).
    pub fn kind(&self) -> u8 {
        self.byte1 >> 4
    }

    /// The header as rumqttc's parsers take it.
    pub fn fixed(&self) -> FixedHeader {
        FixedHeader::new(self.byte1, self.header_len - 1, self.remaining)
    }
}

/// Why the bytes cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("remaining length longer than 4 bytes")]
    BadLength,
    #[error("packet of {0} bytes over the limit")]
    TooLarge(usize),
    #[error("bytes after the last whole packet")]
    Truncated,
}

/// Frames the packet at the start of `buf` by its fixed header: `Ok(None)`
/// until the whole packet is there. Never reads past `buf`, never panics.
/// A length over `max` is an error as soon as the length bytes are in, so
/// a remaining length of 268,435,455 is refused before anything is buffered.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<FrameHeader>, FrameError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    let mut i = 1;
    loop {
        if i > 4 {
            return Err(FrameError::BadLength);
        }
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let header = FrameHeader {
        byte1,
        header_len: i,
        remaining,
    };
    if header.len() > max {
        return Err(FrameError::TooLarge(header.len()));
    }
    Ok((buf.len() >= header.len()).then_some(header))
}

/// Whole frames less every PUBACK, in order; an error for bytes that are
/// not whole frames. Pure.
pub fn without_pubacks(frames: &[u8]) -> Result<BytesMut, FrameError> {
    let mut keep = BytesMut::with_capacity(frames.len());
    let mut rest = frames;
    while !rest.is_empty() {
        let Some(h) = frame(rest, usize::MAX)? else {
            return Err(FrameError::Truncated);
        };
        if h.kind() != 4 {
            keep.extend_from_slice(&rest[..h.len()]);
        }
        rest = &rest[h.len()..];
    }
    Ok(keep)
}

/// The packet id of a PUBREL frame (0 if it is too short).
pub fn pubrel_pkid(bytes: &bytes::Bytes, h: FrameHeader) -> u16 {
    let mut b = bytes.slice(h.header_len.min(bytes.len())..);
    if b.remaining() >= 2 {
        b.get_u16()
    } else {
        0
    }
}

/// The protocol level a CONNECT frame announces (4 = MQTT 3.1.1, 5 = MQTT
/// 5), read from its variable header before any of the rest is parsed: an
/// MQTT 5 CONNECT (properties, a Will with properties) is answered with
/// "unacceptable protocol version" without its properties ever being read.
/// `None` when the frame is too short or does not name MQTT.
pub fn protocol_level(frame: &[u8], h: FrameHeader) -> Option<u8> {
    let body = frame.get(h.header_len..)?;
    let name_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let name = body.get(2..2 + name_len)?;
    if name != b"MQTT" && name != b"MQIsdp" {
        return None;
    }
    body.get(2 + name_len).copied()
}

/// Why a string of a packet breaks MQTT 3.1.1's rules (the connection is
/// closed: the protocol allows no other answer).
pub fn string_fault(s: &str) -> Option<&'static str> {
    // UTF-8 validity is checked by the parser; U+0000 is the one code
    // point MQTT forbids that Rust's `str` can hold.
    s.contains('\0').then_some("U+0000 in a string")
}

/// Checks a parsed CONNECT's strings: client id, username, password (a
/// string in 3.1.1's sense too), the Will's topic.
pub fn connect_fault(c: &Connect) -> Option<&'static str> {
    if let Some(f) = string_fault(&c.client_id) {
        return Some(f);
    }
    if let Some(l) = &c.login {
        if let Some(f) = string_fault(&l.username).or_else(|| string_fault(&l.password)) {
            return Some(f);
        }
    }
    if let Some(w) = &c.last_will {
        return publish_topic_fault(&w.topic);
    }
    None
}

/// Checks a PUBLISH (or Will) topic: at least one character, no U+0000, no
/// wildcard (MQTT 3.1.1 §4.7.3, §3.3.2.1).
pub fn publish_topic_fault(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        return Some("zero-length topic");
    }
    if topic.contains(['+', '#']) {
        return Some("wildcard in a PUBLISH topic");
    }
    string_fault(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::{LastWill, Login};
    use rumqttc::mqttbytes::QoS;

    #[test]
    fn framing() {
        assert_eq!(frame(&[], 100), Ok(None));
        assert_eq!(frame(&[0x30], 100), Ok(None));
        assert_eq!(
            frame(&[0xc0, 0x00], 100),
            Ok(Some(FrameHeader {
                byte1: 0xc0,
                header_len: 2,
                remaining: 0
            }))
        );
        assert_eq!(frame(&[0x30, 0x03, 1, 2], 100), Ok(None));
        assert_eq!(
            frame(&[0x30, 0x03, 1, 2, 3, 9], 100)
                .unwrap()
                .unwrap()
                .len(),
            5
        );
        // 321 = 0xC1 0x02.
        let h = frame(&[0x30, 0xc1, 0x02], 1000).unwrap();
        assert_eq!(h, None);
        assert_eq!(
            frame(&[0x30, 0xc1, 0x02], 100),
            Err(FrameError::TooLarge(324))
        );
        assert_eq!(
            frame(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX),
            Err(FrameError::BadLength)
        );
        // The largest remaining length MQTT can express, with no body yet.
        assert_eq!(
            frame(&[0x10, 0xff, 0xff, 0xff, 0x7f], MAX_CONNECT),
            Err(FrameError::TooLarge(268_435_460))
        );
    }

    #[test]
    fn protocol_levels() {
        let mut b = BytesMut::new();
        Connect::new("home_a.n01").write(&mut b).unwrap();
        let h = frame(&b, MAX_CONNECT).unwrap().unwrap();
        assert_eq!(protocol_level(&b, h), Some(4));
        let mut v5 = b.to_vec();
        v5[2 + 6] = 5;
        assert_eq!(protocol_level(&v5, h), Some(5));
        let mut other = b.to_vec();
        other[4] = b'X';
        assert_eq!(protocol_level(&other, h), None);
        for cut in 0..9 {
            let short = FrameHeader {
                remaining: cut.max(2) - 2,
                ..h
            };
            let _ = protocol_level(&b[..cut], short);
        }
        assert_eq!(
            protocol_level(&[0x10, 0x00], frame(&[0x10, 0x00], 10).unwrap().unwrap()),
            None
        );
    }

    #[test]
    fn strings_mqtt_forbids() {
        assert_eq!(publish_topic_fault("fire/v1/a/b/telemetry"), None);
        assert_eq!(publish_topic_fault(""), Some("zero-length topic"));
        assert!(publish_topic_fault("fire/v1/+/b/telemetry").is_some());
        assert!(publish_topic_fault("fire/#").is_some());
        assert!(publish_topic_fault("fire/v1/a\0/b/telemetry").is_some());
        assert_eq!(publish_topic_fault(&"/".repeat(65_000)), None);
        let mut c = Connect::new("home_a.n01");
        assert_eq!(connect_fault(&c), None);
        c.client_id = "home_a\0n01".into();
        assert!(connect_fault(&c).is_some());
        c.client_id = "home_a.n01".into();
        c.login = Some(Login::new("home_a.n01\0", "pw"));
        assert!(connect_fault(&c).is_some());
        c.login = Some(Login::new("home_a.n01", "pw"));
        c.last_will = Some(LastWill::new("", "x", QoS::AtLeastOnce, true));
        assert!(connect_fault(&c).is_some());
        c.last_will = Some(LastWill::new(
            "fire/v1/home_a/n01/status",
            "x",
            QoS::AtLeastOnce,
            true,
        ));
        assert_eq!(connect_fault(&c), None);
    }
}
