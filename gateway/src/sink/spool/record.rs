//! The spool's on-disk codec (pure): segment header, record framing with
//! CRC-32C, the recovery scan that finds the last whole record, and the
//! cursor file. The byte layout is described in [`super`].

/// The first bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"FIRESPL1";
/// Bytes before the first record of a segment.
pub const HEADER_LEN: u64 = SEGMENT_MAGIC.len() as u64;
/// `len` and `crc` before each record's body.
pub const RECORD_PREFIX: usize = 8;
/// A record body longer than this is corruption, not data (a message's
/// lines are a few KiB at most).
pub const MAX_RECORD: usize = 1 << 20;
/// The body's fixed part: source length, boot, seq, line count.
pub(super) const BODY_FIXED: usize = 2 + 4 + 4 + 4;

pub(super) const CURSOR_MAGIC: &[u8; 8] = b"FIRECUR1";
pub(super) const CURSOR_LEN: usize = 8 + 8 + 8 + 4;

pub(super) static CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

// ---------------------------------------------------------------------------
// Pure part: record framing, parsing, recovery scan, cursor encoding.
// ---------------------------------------------------------------------------

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// `site/node` of the message the lines came from.
    pub source: &'a [u8],
    pub boot: u32,
    pub seq: u32,
    /// Number of lines in `text`.
    pub lines: u32,
    /// Lines of line protocol joined by `\n`.
    pub text: &'a [u8],
}

/// Appends one framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, record: &Record<'_>) {
    // A source is `site/node` (at most 65 bytes by the wire contract); cut
    // anything longer rather than write a length that lies.
    let source = &record.source[..record.source.len().min(u16::MAX as usize)];
    let body_len = BODY_FIXED + source.len() + record.text.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(source.len() as u16).to_le_bytes());
    out.extend_from_slice(source);
    out.extend_from_slice(&record.boot.to_le_bytes());
    out.extend_from_slice(&record.seq.to_le_bytes());
    out.extend_from_slice(&record.lines.to_le_bytes());
    out.extend_from_slice(record.text);
    let crc = record_crc(&out[start..start + 4], &out[start + RECORD_PREFIX..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub(super) fn record_crc(len: &[u8], body: &[u8]) -> u32 {
    let mut d = CRC32C.digest();
    d.update(len);
    d.update(body);
    d.finalize()
}

/// What is at the start of a byte slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, intact record of `size` bytes (prefix included).
    Record(Record<'a>, usize),
    /// Nothing at all: the slice is empty.
    End,
    /// The start of a record whose end is missing: a torn write at the end
    /// of a file (or a chunk that stops mid-record).
    Incomplete,
    /// Bytes that are not a record: bad length, checksum or body.
    Corrupt(&'static str),
}

/// Decodes the record at the start of `buf`.
pub fn decode_record(buf: &[u8]) -> Decoded<'_> {
    if buf.is_empty() {
        return Decoded::End;
    }
    if buf.len() < RECORD_PREFIX {
        return Decoded::Incomplete;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(BODY_FIXED..=MAX_RECORD).contains(&len) {
        return Decoded::Corrupt("record length out of range");
    }
    let Some(body) = buf.get(RECORD_PREFIX..RECORD_PREFIX + len) else {
        return Decoded::Incomplete;
    };
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if record_crc(&buf[..4], body) != crc {
        return Decoded::Corrupt("checksum mismatch");
    }
    let source_len = u16::from_le_bytes([body[0], body[1]]) as usize;
    let Some(rest) = body.get(2 + source_len..) else {
        return Decoded::Corrupt("source longer than the record");
    };
    if rest.len() < 12 {
        return Decoded::Corrupt("source longer than the record");
    }
    let word = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    let record = Record {
        source: &body[2..2 + source_len],
        boot: word(0),
        seq: word(4),
        lines: word(8),
        text: &rest[12..],
    };
    Decoded::Record(record, RECORD_PREFIX + len)
}

/// The result of scanning a segment's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scan {
    /// Bytes of whole, intact records from the start of the scanned slice.
    pub valid_len: usize,
    pub records: u64,
    pub lines: u64,
    /// Lines in the records that end at or before `mark` (see [`scan`]),
    /// and whether `mark` fell on a record boundary.
    pub lines_before_mark: u64,
    pub mark_on_boundary: bool,
    /// Why the scan stopped before the end, if it did.
    pub torn: Option<&'static str>,
}

/// Scans the records of a segment (the bytes after its header), calling
/// `each` for every intact record with the offset just past it. Stops at
/// the first record that is incomplete or corrupt: everything after it is
/// a torn tail. `mark` is an offset (relative to the slice) whose line
/// count is wanted: the delivery cursor.
pub fn scan(buf: &[u8], mark: usize, mut each: impl FnMut(&Record<'_>, usize)) -> Scan {
    let mut s = Scan {
        mark_on_boundary: mark == 0,
        ..Scan::default()
    };
    loop {
        match decode_record(&buf[s.valid_len..]) {
            Decoded::Record(r, size) => {
                s.valid_len += size;
                s.records += 1;
                s.lines += u64::from(r.lines);
                if s.valid_len <= mark {
                    s.lines_before_mark += u64::from(r.lines);
                }
                if s.valid_len == mark {
                    s.mark_on_boundary = true;
                }
                each(&r, s.valid_len);
            }
            Decoded::End => return s,
            Decoded::Incomplete => {
                s.torn = Some("incomplete record");
                return s;
            }
            Decoded::Corrupt(why) => {
                s.torn = Some(why);
                return s;
            }
        }
    }
}

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// The cursor file's bytes.
pub fn encode_cursor(p: Position) -> [u8; CURSOR_LEN] {
    let mut out = [0u8; CURSOR_LEN];
    out[..8].copy_from_slice(CURSOR_MAGIC);
    out[8..16].copy_from_slice(&p.segment.to_le_bytes());
    out[16..24].copy_from_slice(&p.offset.to_le_bytes());
    let crc = CRC32C.checksum(&out[..24]);
    out[24..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a cursor file's bytes; `None` if they are not a valid cursor.
pub fn decode_cursor(buf: &[u8]) -> Option<Position> {
    if buf.len() != CURSOR_LEN || &buf[..8] != CURSOR_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(buf[24..28].try_into().ok()?);
    if CRC32C.checksum(&buf[..24]) != crc {
        return None;
    }
    Some(Position {
        segment: u64::from_le_bytes(buf[8..16].try_into().ok()?),
        offset: u64::from_le_bytes(buf[16..24].try_into().ok()?),
    })
}
