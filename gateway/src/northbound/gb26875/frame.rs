//! The GB/T 26875.3-2011 frame (报文): `@@`, the control unit, the
//! application data unit, a checksum and `##`; and a streaming deframer for
//! a TCP byte stream. Pure: bytes in, frames out.
//!
//! ```text
//! 0  2   启动符 '@@'
//! 2  2   业务流水号 (serial, little-endian)
//! 4  2   协议版本号 (main, user)
//! 6  6   时间标签 (s, min, h, day, month, year-2000; binary)
//! 12 6   源地址
//! 18 6   目的地址
//! 24 2   应用数据单元长度 (little-endian, <= 1024)
//! 26 1   命令字节
//! 27 n   应用数据单元
//! 27+n 1 校验和 (sum of bytes 2 .. 27+n, mod 256)
//! 28+n 2 结束符 '##'
//! ```

use crate::domain::time::{civil_from_days, days_from_civil};
use std::fmt;

/// Start marker `@@`.
pub const START: [u8; 2] = [0x40, 0x40];
/// End marker `##`.
pub const END: [u8; 2] = [0x23, 0x23];
/// Bytes before the application data unit, start marker included.
pub const HEADER_LEN: usize = 27;
/// Frame length minus the application data length.
pub const OVERHEAD: usize = 30;
/// The largest application data unit the standard allows.
pub const MAX_DATA: usize = 1024;
/// The largest frame.
pub const MAX_FRAME: usize = MAX_DATA + OVERHEAD;

/// 时间标签: a local (China Standard Time) calendar time to the second,
/// year counted from 2000. Binary, not BCD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct TimeLabel {
    pub year: u8,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

const CST_OFFSET_MS: i64 = 8 * 3_600_000;

impl TimeLabel {
    /// The label of a Unix time in ms, in China Standard Time (UTC+8).
    /// Years outside 2000..=2255 are clamped.
    pub fn from_unix_ms(ms: u64) -> TimeLabel {
        let local = ms as i64 + CST_OFFSET_MS;
        let days = local.div_euclid(86_400_000);
        let secs = local.rem_euclid(86_400_000) / 1000;
        let (y, m, d) = civil_from_days(days);
        if y < 2000 {
            return TimeLabel {
                year: 0,
                month: 1,
                day: 1,
                ..TimeLabel::default()
            };
        }
        TimeLabel {
            year: (y - 2000).min(255) as u8,
            month: m as u8,
            day: d as u8,
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
        }
    }

    /// The Unix time in ms this label names (CST), or `None` when it is not
    /// a calendar time.
    pub fn to_unix_ms(&self) -> Option<u64> {
        if !self.is_valid() {
            return None;
        }
        let days = days_from_civil(
            2000 + i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        );
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        u64::try_from(secs * 1000 - CST_OFFSET_MS).ok()
    }

    /// Whether the fields name a real calendar time.
    pub fn is_valid(&self) -> bool {
        if !(1..=12).contains(&self.month) || self.day == 0 {
            return false;
        }
        let y = 2000 + i64::from(self.year);
        let dim = match self.month {
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        self.day <= dim && self.hour < 24 && self.minute < 60 && self.second < 60
    }

    /// Wire order: second first.
    pub fn to_bytes(self) -> [u8; 6] {
        [
            self.second,
            self.minute,
            self.hour,
            self.day,
            self.month,
            self.year,
        ]
    }

    pub fn from_bytes(b: [u8; 6]) -> TimeLabel {
        TimeLabel {
            second: b[0],
            minute: b[1],
            hour: b[2],
            day: b[3],
            month: b[4],
            year: b[5],
        }
    }
}

impl fmt::Display for TimeLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            2000 + u16::from(self.year),
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second
        )
    }
}

/// 命令字节.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// 1 控制命令 (e.g. time sync).
    Control,
    /// 2 发送数据.
    Send,
    /// 3 确认.
    Confirm,
    /// 4 请求.
    Request,
    /// 5 应答.
    Response,
    /// 6 否认.
    Deny,
}

impl Command {
    pub fn code(self) -> u8 {
        match self {
            Command::Control => 1,
            Command::Send => 2,
            Command::Confirm => 3,
            Command::Request => 4,
            Command::Response => 5,
            Command::Deny => 6,
        }
    }

    pub fn from_code(code: u8) -> Option<Command> {
        Some(match code {
            1 => Command::Control,
            2 => Command::Send,
            3 => Command::Confirm,
            4 => Command::Request,
            5 => Command::Response,
            6 => Command::Deny,
            _ => return None,
        })
    }

    /// The installer's word for it.
    pub fn label(self) -> &'static str {
        match self {
            Command::Control => "控制",
            Command::Send => "发送数据",
            Command::Confirm => "确认",
            Command::Request => "请求",
            Command::Response => "应答",
            Command::Deny => "否认",
        }
    }
}

/// One frame. `data` is the application data unit, undecoded (see
/// [`super::unit::DataUnit`]); empty for a confirm, a deny or a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// 业务流水号: the initiator's number, echoed by the confirm or deny.
    pub serial: u16,
    /// 协议版本号 as sent: [main, user]; the standard's main version is 1.
    pub version: [u8; 2],
    pub time: TimeLabel,
    pub source: [u8; 6],
    pub destination: [u8; 6],
    pub command: Command,
    pub data: Vec<u8>,
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("application data unit of {0} bytes is over the 1024-byte limit")]
    TooLong(usize),
    #[error("{0} objects in one data unit; at most 255")]
    TooManyObjects(usize),
}

/// Why bytes were not a frame. Every variant that follows a readable
/// header carries its serial so the peer can be denied (命令 6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame shorter than 30 bytes")]
    Truncated,
    #[error("no start marker '@@'")]
    BadStart,
    #[error("data length {len} over 1024 (serial {serial})")]
    OverLength { serial: u16, len: usize },
    #[error("no end marker '##' (serial {serial})")]
    BadEnd { serial: u16 },
    #[error("checksum 0x{got:02X}, expected 0x{want:02X} (serial {serial})")]
    BadChecksum { serial: u16, got: u8, want: u8 },
    #[error("unknown command {code} (serial {serial})")]
    UnknownCommand { serial: u16, code: u8 },
    #[error("trailing bytes after the end marker")]
    Trailing,
}

impl FrameError {
    /// The serial of the refused frame, when its header was readable.
    pub fn serial(&self) -> Option<u16> {
        match self {
            FrameError::OverLength { serial, .. }
            | FrameError::BadEnd { serial }
            | FrameError::BadChecksum { serial, .. }
            | FrameError::UnknownCommand { serial, .. } => Some(*serial),
            _ => None,
        }
    }
}

/// Sum mod 256 of the bytes from the serial through the end of the data.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

impl Frame {
    /// The bytes on the wire.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.data.len() > MAX_DATA {
            return Err(EncodeError::TooLong(self.data.len()));
        }
        let mut out = Vec::with_capacity(self.data.len() + OVERHEAD);
        out.extend_from_slice(&START);
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&self.version);
        out.extend_from_slice(&self.time.to_bytes());
        out.extend_from_slice(&self.source);
        out.extend_from_slice(&self.destination);
        out.extend_from_slice(&(self.data.len() as u16).to_le_bytes());
        out.push(self.command.code());
        out.extend_from_slice(&self.data);
        let sum = checksum(&out[2..]);
        out.push(sum);
        out.extend_from_slice(&END);
        Ok(out)
    }

    /// Exactly one frame, nothing before or after it.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        match parse_at_start(bytes)? {
            Some((frame, used)) if used == bytes.len() => Ok(frame),
            Some(_) => Err(FrameError::Trailing),
            None => Err(FrameError::Truncated),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn six(b: &[u8], at: usize) -> [u8; 6] {
    let mut out = [0u8; 6];
    out.copy_from_slice(&b[at..at + 6]);
    out
}

/// A frame at the start of `b`: `Ok(None)` when more bytes are needed,
/// else the frame and its length, or why it is not one.
fn parse_at_start(b: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if b.len() >= 2 && b[..2] != START {
        return Err(FrameError::BadStart);
    }
    if b.len() < HEADER_LEN {
        return Ok(None);
    }
    let serial = u16_at(b, 2);
    let len = usize::from(u16_at(b, 24));
    if len > MAX_DATA {
        return Err(FrameError::OverLength { serial, len });
    }
    let total = len + OVERHEAD;
    if b.len() < total {
        return Ok(None);
    }
    if b[total - 2..total] != END {
        return Err(FrameError::BadEnd { serial });
    }
    let want = checksum(&b[2..HEADER_LEN + len]);
    let got = b[HEADER_LEN + len];
    if got != want {
        return Err(FrameError::BadChecksum { serial, got, want });
    }
    let code = b[26];
    let command = Command::from_code(code).ok_or(FrameError::UnknownCommand { serial, code })?;
    let frame = Frame {
        serial,
        version: [b[4], b[5]],
        time: TimeLabel::from_bytes(six(b, 6)),
        source: six(b, 12),
        destination: six(b, 18),
        command,
        data: b[HEADER_LEN..HEADER_LEN + len].to_vec(),
    };
    Ok(Some((frame, total)))
}

/// Frames out of a TCP byte stream: several frames in one read, one frame
/// across several reads, garbage skipped up to the next `@@`.
///
/// Bounded: [`Deframer::push`] takes at most [`Deframer::ROOM`] bytes
/// beyond what is buffered and returns how many it took; the caller drains
/// frames with [`Deframer::next_frame`] before pushing the rest. What is held
/// never exceeds `ROOM + MAX_FRAME`.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Bytes dropped while looking for a start marker.
    pub skipped: u64,
}

impl Deframer {
    /// How much one push may add.
    pub const ROOM: usize = 4096;

    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Appends up to `ROOM` bytes (less when frames are waiting to be taken
    /// out); returns how many were taken.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let room = (Self::ROOM + MAX_FRAME).saturating_sub(self.buf.len());
        let n = bytes.len().min(room).min(Self::ROOM);
        self.buf.extend_from_slice(&bytes[..n]);
        n
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame or refused frame, `None` when more bytes are needed.
    ///
    /// Refused frames are those whose bounds are sure (both markers in
    /// place) but whose checksum or command is wrong: the caller denies
    /// them. An `@@` that turns out not to start a frame (no `##` where its
    /// length says, a length over 1024) is skipped silently, one byte, so
    /// that a real start one byte on is found; and while an `@@` waits for
    /// more bytes, a complete valid frame starting later in the buffer is
    /// taken instead of waiting behind a false start.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        loop {
            // Resync: drop everything before the next '@@'.
            match self.buf.windows(2).position(|w| w == START) {
                Some(0) => {}
                Some(at) => {
                    self.skipped += at as u64;
                    self.buf.drain(..at);
                }
                None => {
                    let keep = usize::from(self.buf.last() == Some(&START[0]));
                    let drop = self.buf.len() - keep;
                    self.skipped += drop as u64;
                    self.buf.drain(..drop);
                    return None;
                }
            }
            match parse_at_start(&self.buf) {
                Ok(None) => {
                    let later = (1..self.buf.len().saturating_sub(1))
                        .filter(|i| self.buf[*i..].starts_with(&START))
                        .find_map(|i| match parse_at_start(&self.buf[i..]) {
                            Ok(Some((frame, used))) => Some((i, frame, used)),
                            _ => None,
                        });
                    let (at, frame, used) = later?;
                    self.skipped += at as u64;
                    self.buf.drain(..at + used);
                    return Some(Ok(frame));
                }
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Some(Ok(frame));
                }
                Err(e @ (FrameError::BadChecksum { .. } | FrameError::UnknownCommand { .. })) => {
                    let drop = usize::from(u16_at(&self.buf, 24)) + OVERHEAD;
                    self.skipped += drop as u64;
                    self.buf.drain(..drop);
                    return Some(Err(e));
                }
                Err(_) => {
                    self.skipped += 1;
                    self.buf.drain(..1);
                }
            }
        }
    }
}
