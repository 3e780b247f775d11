//! Disk spool (磁盘缓冲) in front of the metrics sink: every accepted
//! reading is made durable here before its MQTT message is acknowledged,
//! and leaves only once the time-series DB has acknowledged it.
//!
//! Layout under `{data_dir}/spool/`:
//! - segment files `{id:016x}.seg`, append-only: an 8-byte magic
//!   (`FIRESPL1`), then records. A record is `len: u32 LE`, `crc: u32 LE`
//!   (CRC-32C of the four length bytes and the body), then `len` bytes of
//!   body: `source_len: u16 LE`, the message's `site/node`, `boot: u32 LE`,
//!   `seq: u32 LE`, `lines: u32 LE`, then the lines joined by `\n`.
//!   One record is one MQTT message's lines; its `(site/node, boot, seq)`
//!   lets a restarted gateway recognise redeliveries of spooled messages.
//! - `cursor`: where delivery resumes (`FIRECUR1`, segment id, offset,
//!   CRC-32C), replaced atomically (written to `cursor.tmp`, renamed) after
//!   the TSDB acknowledges a batch.
//!
//! Writing: [`Spool::append`] copies a framed record into memory and returns
//! a ticket (the record's number in this process); a flusher thread writes
//! what has accumulated, `fdatasync`s it and publishes the highest durable
//! ticket on a watch channel (group commit: records arriving during one
//! fsync go out in the next). Reading: [`Spool::read_batch`] hands out
//! whole records from the oldest durable data; [`Spool::commit`] persists
//! the cursor and deletes segments that were fully delivered.
//!
//! Recovery after `kill -9` or a power cut: every segment is scanned; a
//! torn or corrupt tail is truncated at the last whole record and counted
//! (`gateway_spool_torn_records_total`), never a panic.
//!
//! When full (`spool_max_bytes`), the oldest segment is deleted and its
//! undelivered lines are counted in
//! `gateway_sink_lines_dropped_total{reason="spool_full"}`: see
//! ARCHITECTURE.md for why the oldest and not the newest. The active
//! segment is never dropped, so the bound can be exceeded by what one
//! group commit writes into it (a pipeline batch's lines, or two).
//!
//! The spool never holds acknowledgements (alarms do not wait for the
//! time-series sink): a write or fsync that fails drops the lines it
//! carried, counted by reason (`disk_full`, `io_error`), marks the sink
//! degraded and still advances the durable watermark past them. A full
//! file system (ENOSPC) first costs the oldest segments, then new lines.
//! The next write that succeeds clears the degraded mark. A spool that
//! cannot be opened at start-up is set aside ([`set_aside`]).

use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{watch, Notify};

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
const BODY_FIXED: usize = 2 + 4 + 4 + 4;

const CURSOR_MAGIC: &[u8; 8] = b"FIRECUR1";
const CURSOR_LEN: usize = 8 + 8 + 8 + 4;

static CRC32C: crc::Crc<u32, crc::Table<16>> =
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

fn record_crc(len: &[u8], body: &[u8]) -> u32 {
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

/// A segment's file name.
pub fn segment_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

/// The id in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

// ---------------------------------------------------------------------------
// I/O part.
// ---------------------------------------------------------------------------

/// Sizes of the spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bound on the bytes of all segments; past it the oldest is dropped.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Wake the reader when this many lines are durable and unread.
    pub batch_lines: u64,
}

/// What start-up found on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub segments: u64,
    pub bytes: u64,
    /// Lines not yet delivered.
    pub lines: u64,
    /// Torn or corrupt tails truncated.
    pub torn: u64,
}

/// A batch of whole records handed to the sink.
#[derive(Debug)]
pub struct Batch {
    /// The lines, joined by `\n`.
    pub body: Vec<u8>,
    pub lines: u64,
    /// Where reading continues after this batch.
    pub end: Position,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Durable bytes (header included).
    bytes: u64,
    /// Durable lines.
    lines: u64,
}

/// Where the next batch starts, and the lines of its segment before it.
#[derive(Debug, Clone, Copy)]
struct ReadPos {
    pos: Position,
    lines_before: u64,
}

struct State {
    pending: Vec<u8>,
    pending_lines: u64,
    /// Tickets handed out: records appended by this process.
    appended: u64,
    /// Oldest first; the last one is being written.
    segments: VecDeque<Segment>,
    active: Arc<File>,
    next: ReadPos,
    /// Durable lines not yet handed out in a batch.
    unread_lines: u64,
    /// Lines accepted (pending or durable) and not yet delivered or dropped.
    backlog_lines: u64,
    total_bytes: u64,
    stopping: bool,
}

struct Shared {
    cfg: SpoolConfig,
    state: Mutex<State>,
    wake_flusher: Condvar,
    durable: watch::Sender<u64>,
    readable: Notify,
    metrics: Arc<Metrics>,
    /// The reader's open segment, so reads need no open() per batch.
    reader_file: Mutex<Option<(u64, Arc<File>)>>,
}

/// The disk spool. Cheap to clone; one flusher thread per spool.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    flusher: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock would be a bug; the state stays
    // usable (every update is a few plain assignments), so carry on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Whether an I/O error means the file system (or the quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// The `reason` label of lines dropped because of `e`.
pub fn drop_reason(e: &io::Error) -> &'static str {
    if is_disk_full(e) {
        "disk_full"
    } else {
        "io_error"
    }
}

/// Moves a spool directory that cannot be opened out of the way, to
/// `{dir}.broken-{now_ms}` beside it, so a fresh spool can start and an
/// operator can look at what failed. Returns the new path.
pub fn set_aside(dir: &Path, now_ms: u64) -> io::Result<PathBuf> {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".broken-{now_ms}"));
    let aside = dir.with_file_name(name);
    std::fs::rename(dir, &aside)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent);
    }
    Ok(aside)
}

fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    let path = dir.join(segment_name(id));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    if let Err(e) = f.write_all(SEGMENT_MAGIC).and_then(|_| f.sync_data()) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    sync_dir(dir);
    Ok(f)
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir`, recovering what a previous
    /// run left: torn tails are truncated and counted, delivered segments
    /// deleted. `each` sees every intact record still on disk, oldest first
    /// (the pipeline uses them to recognise redelivered messages).
    pub fn open(
        cfg: SpoolConfig,
        metrics: Arc<Metrics>,
        mut each: impl FnMut(&Record<'_>),
    ) -> io::Result<(Spool, Recovery)> {
        std::fs::create_dir_all(&cfg.dir)?;
        let _ = std::fs::remove_file(cfg.dir.join("cursor.tmp"));
        let cursor = std::fs::read(cfg.dir.join("cursor"))
            .ok()
            .and_then(|b| decode_cursor(&b));
        let mut ids: Vec<u64> = std::fs::read_dir(&cfg.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| parse_segment_name(&e.file_name().to_string_lossy()))
            .collect();
        ids.sort_unstable();

        let mut rec = Recovery::default();
        let mut segments = VecDeque::new();
        let mut next: Option<ReadPos> = None;
        let mut unread = 0u64;
        for id in ids {
            let path = cfg.dir.join(segment_name(id));
            if cursor.is_some_and(|c| id < c.segment) {
                // Delivered before the last stop.
                std::fs::remove_file(&path)?;
                continue;
            }
            let bytes = std::fs::read(&path)?;
            if bytes.len() < HEADER_LEN as usize || &bytes[..8] != SEGMENT_MAGIC {
                if bytes.len() < HEADER_LEN as usize && SEGMENT_MAGIC.starts_with(&bytes) {
                    // Created, then killed before its header was written.
                    std::fs::remove_file(&path)?;
                    rec.torn += 1;
                    continue;
                }
                let aside = path.with_extension("corrupt");
                tracing::error!(path = %path.display(), aside = %aside.display(), "spool: not a segment file; set aside");
                std::fs::rename(&path, &aside)?;
                rec.torn += 1;
                continue;
            }
            let mark = match cursor {
                Some(c) if c.segment == id => c.offset.saturating_sub(HEADER_LEN) as usize,
                _ => 0,
            };
            let s = scan(&bytes[HEADER_LEN as usize..], mark, |r, _| each(r));
            let valid = HEADER_LEN + s.valid_len as u64;
            if let Some(why) = s.torn {
                tracing::warn!(
                    segment = %path.display(),
                    kept = valid,
                    discarded = bytes.len() as u64 - valid,
                    why,
                    "spool: torn tail truncated"
                );
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(valid)?;
                f.sync_all()?;
                rec.torn += 1;
            }
            if next.is_none() {
                let (offset, lines_before) = if s.mark_on_boundary {
                    (HEADER_LEN + mark as u64, s.lines_before_mark)
                } else {
                    tracing::warn!(
                        segment = id,
                        "spool: cursor not on a record; delivering the segment again"
                    );
                    (HEADER_LEN, 0)
                };
                next = Some(ReadPos {
                    pos: Position {
                        segment: id,
                        offset,
                    },
                    lines_before,
                });
                unread += s.lines - lines_before;
            } else {
                unread += s.lines;
            }
            rec.bytes += valid;
            segments.push_back(Segment {
                id,
                bytes: valid,
                lines: s.lines,
            });
        }
        rec.segments = segments.len() as u64;
        rec.lines = unread;

        // Always write into a new segment: recovered ones stay as they are.
        let new_id = segments
            .back()
            .map(|s| s.id + 1)
            .or(cursor.map(|c| c.segment))
            .unwrap_or(0);
        let active = create_segment(&cfg.dir, new_id)?;
        segments.push_back(Segment {
            id: new_id,
            bytes: HEADER_LEN,
            lines: 0,
        });
        let next = next.unwrap_or(ReadPos {
            pos: Position {
                segment: new_id,
                offset: HEADER_LEN,
            },
            lines_before: 0,
        });
        let total_bytes = rec.bytes + HEADER_LEN;

        metrics
            .spool_torn_records
            .fetch_add(rec.torn, Ordering::Relaxed);
        let (durable, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(State {
                pending: Vec::with_capacity(1 << 20),
                pending_lines: 0,
                appended: 0,
                segments,
                active: Arc::new(active),
                next,
                unread_lines: unread,
                backlog_lines: unread,
                total_bytes,
                stopping: false,
            }),
            wake_flusher: Condvar::new(),
            durable,
            readable: Notify::new(),
            metrics,
            reader_file: Mutex::new(None),
        });
        {
            let st = lock(&shared.state);
            shared.gauges(&st);
        }
        let flusher_shared = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("spool-flusher".into())
            .spawn(move || flusher_shared.flusher())?;
        Ok((
            Spool {
                shared,
                flusher: Arc::new(Mutex::new(Some(flusher))),
            },
            rec,
        ))
    }

    /// Queues one message's lines; returns its ticket. The record is durable
    /// once [`Spool::durable`] reaches the ticket.
    pub fn append(&self, record: &Record<'_>) -> u64 {
        let s = &self.shared;
        let ticket = {
            let mut st = lock(&s.state);
            encode_record(&mut st.pending, record);
            st.pending_lines += u64::from(record.lines);
            st.backlog_lines += u64::from(record.lines);
            st.appended += 1;
            st.appended
        };
        s.metrics
            .spool_lines_appended
            .fetch_add(u64::from(record.lines), Ordering::Relaxed);
        s.wake_flusher.notify_one();
        ticket
    }

    /// Tickets handed out so far.
    pub fn appended(&self) -> u64 {
        lock(&self.shared.state).appended
    }

    /// The highest durable ticket, updated after every fsync.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.shared.durable.subscribe()
    }

    /// Resolves when a batch's worth of lines is durable and unread.
    pub async fn readable(&self) {
        self.shared.readable.notified().await
    }

    /// Lines accepted and not yet delivered or dropped.
    pub fn backlog_lines(&self) -> u64 {
        lock(&self.shared.state).backlog_lines
    }

    /// Hands out the next batch: whole records, from one segment, up to
    /// `max_lines` lines (at least one record). `None` when nothing durable
    /// is unread. Blocking file I/O.
    pub fn read_batch(&self, max_lines: u64) -> io::Result<Option<Batch>> {
        let s = &self.shared;
        loop {
            let (start, durable_end, durable_lines, sealed) = {
                let mut st = lock(&s.state);
                let Some(idx) = st.segments.iter().position(|g| g.id == st.next.pos.segment) else {
                    // Our segment was dropped while full: go on with the oldest.
                    let Some(front) = st.segments.front() else {
                        return Ok(None);
                    };
                    st.next = ReadPos {
                        pos: Position {
                            segment: front.id,
                            offset: HEADER_LEN,
                        },
                        lines_before: 0,
                    };
                    continue;
                };
                let seg = &st.segments[idx];
                let sealed = idx + 1 < st.segments.len();
                if st.next.pos.offset >= seg.bytes {
                    if sealed {
                        let id = st.segments[idx + 1].id;
                        st.next = ReadPos {
                            pos: Position {
                                segment: id,
                                offset: HEADER_LEN,
                            },
                            lines_before: 0,
                        };
                        continue;
                    }
                    return Ok(None);
                }
                (st.next, seg.bytes, seg.lines, sealed)
            };
            let file = self.reader_file(start.pos.segment)?;
            // Roughly a batch: ~120 bytes a line, at most 8 MiB at a time.
            let want = (max_lines.saturating_mul(120)).clamp(64 * 1024, 8 << 20);
            let len = (durable_end - start.pos.offset).min(want) as usize;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, start.pos.offset)?;
            let mut body = Vec::with_capacity(len);
            let mut used = 0usize;
            let mut lines = 0u64;
            let mut corrupt = None;
            while lines < max_lines {
                match decode_record(&buf[used..]) {
                    Decoded::Record(r, size) => {
                        if r.lines > 0 {
                            if !body.is_empty() {
                                body.push(b'\n');
                            }
                            body.extend_from_slice(r.text);
                        }
                        lines += u64::from(r.lines);
                        used += size;
                    }
                    Decoded::End => break,
                    Decoded::Incomplete if used == 0 => {
                        // One record larger than the chunk: read it whole.
                        let size = u32::from_le_bytes(buf[..4].try_into().unwrap_or_default())
                            as usize
                            + RECORD_PREFIX;
                        if size as u64 > durable_end - start.pos.offset {
                            corrupt = Some("record past the durable end");
                            break;
                        }
                        buf = vec![0u8; size];
                        file.read_exact_at(&mut buf, start.pos.offset)?;
                    }
                    Decoded::Incomplete => break,
                    Decoded::Corrupt(why) => {
                        corrupt = Some(why);
                        break;
                    }
                }
            }
            let mut st = lock(&s.state);
            if st.next.pos != start.pos {
                continue; // dropped while we read: read again from the new place
            }
            if let Some(why) = corrupt {
                // Durable data that no longer reads back: the disk is failing.
                // Skip to the end of what was durable when we looked; the
                // lines in between count as dropped.
                let lost = durable_lines.saturating_sub(start.lines_before + lines);
                tracing::error!(
                    segment = start.pos.segment,
                    offset = start.pos.offset + used as u64,
                    why,
                    lost,
                    "spool: corrupt record in durable data; skipped"
                );
                s.metrics.spool_torn_records.fetch_add(1, Ordering::Relaxed);
                s.metrics.drop_sink_lines("corrupt", lost);
                st.unread_lines = st.unread_lines.saturating_sub(lost);
                st.backlog_lines = st.backlog_lines.saturating_sub(lost);
                used = (durable_end - start.pos.offset) as usize;
                if body.is_empty() {
                    st.next = ReadPos {
                        pos: Position {
                            segment: start.pos.segment,
                            offset: durable_end,
                        },
                        lines_before: durable_lines,
                    };
                    continue;
                }
            }
            let mut end = ReadPos {
                pos: Position {
                    segment: start.pos.segment,
                    offset: start.pos.offset + used as u64,
                },
                lines_before: if corrupt.is_some() {
                    durable_lines
                } else {
                    start.lines_before + lines
                },
            };
            if sealed && end.pos.offset >= durable_end {
                if let Some(nx) = st.segments.iter().find(|g| g.id > start.pos.segment) {
                    end = ReadPos {
                        pos: Position {
                            segment: nx.id,
                            offset: HEADER_LEN,
                        },
                        lines_before: 0,
                    };
                }
            }
            st.next = end;
            st.unread_lines = st.unread_lines.saturating_sub(lines);
            return Ok(Some(Batch {
                body,
                lines,
                end: end.pos,
            }));
        }
    }

    fn reader_file(&self, id: u64) -> io::Result<Arc<File>> {
        let mut rf = self
            .shared
            .reader_file
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((rid, f)) = rf.as_ref() {
            if *rid == id {
                return Ok(f.clone());
            }
        }
        let f = Arc::new(File::open(self.shared.cfg.dir.join(segment_name(id)))?);
        *rf = Some((id, f.clone()));
        Ok(f)
    }

    /// Records that the TSDB acknowledged `batch`: persists the cursor and
    /// deletes the segments before it. Blocking file I/O.
    pub fn commit(&self, batch: &Batch) -> io::Result<()> {
        let s = &self.shared;
        let cur = s.cfg.dir.join("cursor");
        let tmp = s.cfg.dir.join("cursor.tmp");
        // Design: no fsync of the cursor. A process crash keeps it (the page
        // cache survives); a power cut may roll it back, and the batches
        // after the older cursor are delivered again (at-least-once).
        let persisted = std::fs::write(&tmp, encode_cursor(batch.end))
            .and_then(|_| std::fs::rename(&tmp, &cur));
        if persisted.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        // Design: the bookkeeping and the deletion go ahead even if the
        // cursor could not be written (a full disk): deleting delivered
        // segments is what makes room, and after a restart the old cursor
        // only means some delivered lines are sent again (at-least-once).
        let delete: Vec<u64> = {
            let mut st = lock(&s.state);
            st.backlog_lines = st.backlog_lines.saturating_sub(batch.lines);
            let mut delete = Vec::new();
            while st.segments.len() > 1 && st.segments[0].id < batch.end.segment {
                if let Some(g) = st.segments.pop_front() {
                    st.total_bytes = st.total_bytes.saturating_sub(g.bytes);
                    delete.push(g.id);
                }
            }
            s.gauges(&st);
            delete
        };
        for id in delete {
            s.delete_segment(id);
        }
        persisted
    }

    /// Writes and syncs everything appended, stops the flusher thread.
    /// Blocking; appends after this are lost (nothing appends by then).
    pub fn close(&self) {
        {
            let mut st = lock(&self.shared.state);
            st.stopping = true;
        }
        self.shared.wake_flusher.notify_all();
        let handle = self
            .flusher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Lines durable and not yet handed out.
    pub fn unread_lines(&self) -> u64 {
        lock(&self.shared.state).unread_lines
    }
}

impl Shared {
    fn gauges(&self, st: &State) {
        let m = &self.metrics;
        m.spool_bytes
            .store(st.total_bytes as i64, Ordering::Relaxed);
        m.spool_segments
            .store(st.segments.len() as i64, Ordering::Relaxed);
        m.sink_backlog
            .store(st.backlog_lines as i64, Ordering::Relaxed);
    }

    /// Closes the active segment and starts the next one; `false` if the
    /// new segment could not be created (writing goes on in the old one).
    fn rotate(&self) -> bool {
        match self.try_rotate() {
            Ok(()) => true,
            Err(e) => {
                self.metrics.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "spool: cannot start a new segment; writing on in the current one");
                false
            }
        }
    }

    /// [`Shared::rotate`] without logging or counting a failure.
    fn try_rotate(&self) -> io::Result<()> {
        let (next_id, old) = {
            let st = lock(&self.state);
            let Some(last) = st.segments.back() else {
                return Err(io::Error::other("no active segment"));
            };
            (last.id + 1, st.active.clone())
        };
        let _ = old.sync_data();
        let f = create_segment(&self.cfg.dir, next_id)?;
        let mut st = lock(&self.state);
        st.active = Arc::new(f);
        st.segments.push_back(Segment {
            id: next_id,
            bytes: HEADER_LEN,
            lines: 0,
        });
        st.total_bytes += HEADER_LEN;
        Ok(())
    }

    /// Drops the oldest segments while over the bound (never the active
    /// one); counts their undelivered lines.
    fn enforce_bound(&self, st: &mut State) -> Vec<u64> {
        let mut deleted = Vec::new();
        while st.total_bytes > self.cfg.max_bytes && st.segments.len() > 1 {
            let Some((id, lost)) = self.drop_oldest(st) else {
                break;
            };
            self.metrics.drop_sink_lines("spool_full", lost);
            if lost > 0 {
                tracing::warn!(
                    segment = id,
                    lines = lost,
                    "spool full: oldest undelivered segment dropped"
                );
            }
            deleted.push(id);
        }
        deleted
    }

    /// Takes the oldest segment out of the spool (never the active one);
    /// returns its id and its lines not yet handed out, which are lost.
    /// The caller counts them and deletes the file.
    fn drop_oldest(&self, st: &mut State) -> Option<(u64, u64)> {
        if st.segments.len() < 2 {
            return None;
        }
        let g = st.segments.pop_front()?;
        st.total_bytes = st.total_bytes.saturating_sub(g.bytes);
        let lost = if st.next.pos.segment == g.id {
            let lost = g.lines.saturating_sub(st.next.lines_before);
            if let Some(front) = st.segments.front() {
                st.next = ReadPos {
                    pos: Position {
                        segment: front.id,
                        offset: HEADER_LEN,
                    },
                    lines_before: 0,
                };
            }
            lost
        } else if st.next.pos.segment > g.id {
            0 // handed out already (the batch in flight is in memory)
        } else {
            g.lines
        };
        st.unread_lines = st.unread_lines.saturating_sub(lost);
        st.backlog_lines = st.backlog_lines.saturating_sub(lost);
        Some((g.id, lost))
    }

    /// Deletes a segment's file, closing the reader's handle on it first:
    /// an open file keeps its space.
    fn delete_segment(&self, id: u64) {
        {
            let mut rf = self.reader_file.lock().unwrap_or_else(|e| e.into_inner());
            if rf.as_ref().is_some_and(|(rid, _)| *rid == id) {
                *rf = None;
            }
        }
        let _ = std::fs::remove_file(self.cfg.dir.join(segment_name(id)));
    }

    /// The file system is full: frees space by dropping the oldest segment
    /// (its undelivered lines counted as `disk_full`). With only the active
    /// segment left, seals it (if it holds data) so that it can go next.
    /// `false` when there is nothing more to give up.
    fn make_room(&self) -> bool {
        let (dropped, active_has_data) = {
            let mut st = lock(&self.state);
            let dropped = self.drop_oldest(&mut st);
            self.gauges(&st);
            let has_data = st.segments.back().is_some_and(|g| g.bytes > HEADER_LEN);
            (dropped, has_data)
        };
        if let Some((id, lost)) = dropped {
            self.metrics.drop_sink_lines("disk_full", lost);
            tracing::warn!(
                segment = id,
                lines = lost,
                "spool: disk full; oldest segment dropped to make room"
            );
            self.delete_segment(id);
            return true;
        }
        // Quietly: on a full disk this fails too, and the write that
        // could not be made is what gets logged and counted.
        active_has_data && self.try_rotate().is_ok()
    }

    /// Writes `buf` at the end of the active segment's durable bytes and
    /// syncs it. Returns the segment written (id, file, its durable length
    /// before) with the outcome.
    fn write_active(&self, buf: &[u8]) -> (u64, Arc<File>, u64, io::Result<()>) {
        let (id, file, durable_len) = {
            let st = lock(&self.state);
            let (id, bytes) = st
                .segments
                .back()
                .map_or((0, HEADER_LEN), |g| (g.id, g.bytes));
            (id, st.active.clone(), bytes)
        };
        let r = file
            .write_all_at(buf, durable_len)
            .and_then(|_| file.sync_data());
        (id, file, durable_len, r)
    }

    /// A write or fsync failed for good: the lines in it are dropped and
    /// counted, the sink marked degraded, and the watermark advanced to
    /// `upto` all the same, so acknowledgements never wait on the sink.
    fn write_failed(&self, e: &io::Error, lines: u64, upto: u64, file: &File, durable_len: u64) {
        let reason = drop_reason(e);
        self.metrics.spool_errors.fetch_add(1, Ordering::Relaxed);
        self.metrics.drop_sink_lines(reason, lines);
        // Cut whatever part of the write landed: the segment ends at its
        // last durable record. If even that fails, write on in a new one.
        if let Err(e) = file.set_len(durable_len) {
            tracing::error!(error = %e, "spool: cannot cut a failed write; starting a new segment");
            self.rotate();
        }
        {
            let mut st = lock(&self.state);
            st.backlog_lines = st.backlog_lines.saturating_sub(lines);
            self.gauges(&st);
        }
        if self
            .metrics
            .set_sink_degraded(Some(format!("{reason}: {e}")))
        {
            tracing::error!(
                error = %e,
                reason,
                lines,
                "spool: write failed; metrics sink degraded: new lines are dropped (counted) \
                 and their messages acknowledged, so alarms go on; retried on every new append"
            );
        } else {
            tracing::debug!(error = %e, reason, lines, "spool: write failed; lines dropped");
        }
        self.durable.send_replace(upto);
    }

    fn flusher(&self) {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        loop {
            let (lines, upto) = {
                let mut st = lock(&self.state);
                while st.pending.is_empty() && !st.stopping {
                    st = self
                        .wake_flusher
                        .wait(st)
                        .unwrap_or_else(|e| e.into_inner());
                }
                if st.pending.is_empty() {
                    return;
                }
                buf.clear();
                std::mem::swap(&mut buf, &mut st.pending);
                let lines = std::mem::take(&mut st.pending_lines);
                (lines, st.appended)
            };
            let t0 = Instant::now();
            let (mut seg_id, mut file, mut durable_len, mut written) = self.write_active(&buf);
            // Design: a full disk costs the oldest data before the newest
            // (as the spool's own bound does): drop segments oldest first
            // and try again while there are any to drop.
            while written.as_ref().is_err_and(is_disk_full) {
                let _ = file.set_len(durable_len);
                if !self.make_room() {
                    break;
                }
                (seg_id, file, durable_len, written) = self.write_active(&buf);
            }
            if let Err(e) = written {
                self.write_failed(&e, lines, upto, &file, durable_len);
                continue;
            }
            self.metrics.spool_fsync.record(t0.elapsed());
            if self.metrics.set_sink_degraded(None) {
                tracing::warn!("spool: writes succeed again; metrics sink no longer degraded");
            }
            let (rotate, deleted, wake_reader) = {
                let mut st = lock(&self.state);
                if let Some(g) = st.segments.back_mut() {
                    debug_assert_eq!(g.id, seg_id);
                    g.bytes += buf.len() as u64;
                    g.lines += lines;
                }
                st.total_bytes += buf.len() as u64;
                st.unread_lines += lines;
                let rotate = st
                    .segments
                    .back()
                    .is_some_and(|g| g.bytes >= self.cfg.segment_bytes);
                let deleted = self.enforce_bound(&mut st);
                self.gauges(&st);
                (rotate, deleted, st.unread_lines >= self.cfg.batch_lines)
            };
            self.durable.send_replace(upto);
            for id in deleted {
                self.delete_segment(id);
            }
            if rotate {
                self.rotate();
            }
            if wake_reader {
                self.readable.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec<'a>(source: &'a str, seq: u32, text: &'a str) -> Record<'a> {
        Record {
            source: source.as_bytes(),
            boot: 7,
            seq,
            lines: if text.is_empty() {
                0
            } else {
                text.split('\n').count() as u32
            },
            text: text.as_bytes(),
        }
    }

    #[test]
    fn record_bytes_are_exact() {
        let mut out = Vec::new();
        encode_record(&mut out, &rec("a/b", 258, "x 1\ny 2"));
        let body_len = 14 + 3 + 7;
        let mut expected = Vec::new();
        expected.extend_from_slice(&(body_len as u32).to_le_bytes());
        let crc_placeholder = expected.len();
        expected.extend_from_slice(&[0; 4]);
        expected.extend_from_slice(&[3, 0, b'a', b'/', b'b']);
        expected.extend_from_slice(&[7, 0, 0, 0, 2, 1, 0, 0, 2, 0, 0, 0]);
        expected.extend_from_slice(b"x 1\ny 2");
        // CRC-32C (Castagnoli) of the length bytes and the body.
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI)
            .checksum(&[&expected[..4], &expected[8..]].concat());
        expected[crc_placeholder..crc_placeholder + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(out, expected);
        assert_eq!(out.len(), 8 + body_len);
        // The check value of CRC-32C, so the table is the right one.
        assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
        match decode_record(&out) {
            Decoded::Record(r, size) => {
                assert_eq!(size, out.len());
                assert_eq!(r, rec("a/b", 258, "x 1\ny 2"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_end_incomplete_and_corrupt() {
        let mut out = Vec::new();
        encode_record(&mut out, &rec("s/n", 1, "m,site=s value=1i 0"));
        assert_eq!(decode_record(&[]), Decoded::End);
        for cut in 1..out.len() {
            assert_eq!(decode_record(&out[..cut]), Decoded::Incomplete, "cut {cut}");
        }
        let mut bad = out.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(decode_record(&bad), Decoded::Corrupt("checksum mismatch"));
        let mut bad = out.clone();
        bad[0..4].copy_from_slice(&(MAX_RECORD as u32 + 1).to_le_bytes());
        assert_eq!(
            decode_record(&bad),
            Decoded::Corrupt("record length out of range")
        );
        bad[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            decode_record(&bad),
            Decoded::Corrupt("record length out of range")
        );
        // A zeroed tail (a file extended but never written) is not a record.
        assert_eq!(
            decode_record(&[0u8; 64]),
            Decoded::Corrupt("record length out of range")
        );
    }

    #[test]
    fn source_length_past_the_body_is_corrupt_with_a_valid_crc() {
        // The CRC is right but the body lies about its source length.
        let mut body = Vec::new();
        body.extend_from_slice(&200u16.to_le_bytes());
        body.extend_from_slice(&[0; 12]);
        let len = (body.len() as u32).to_le_bytes();
        let crc = record_crc(&len, &body);
        let mut out = len.to_vec();
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&body);
        assert_eq!(
            decode_record(&out),
            Decoded::Corrupt("source longer than the record")
        );
    }

    #[test]
    fn scan_counts_lines_and_finds_the_mark() {
        let mut out = Vec::new();
        encode_record(&mut out, &rec("s/n", 1, "a\nb"));
        let first = out.len();
        encode_record(&mut out, &rec("s/n", 2, ""));
        encode_record(&mut out, &rec("s/n", 3, "c\nd\ne"));
        let mut seqs = Vec::new();
        let s = scan(&out, first, |r, _| seqs.push(r.seq));
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(s.records, 3);
        assert_eq!(s.lines, 5);
        assert_eq!(s.valid_len, out.len());
        assert_eq!(s.lines_before_mark, 2);
        assert!(s.mark_on_boundary);
        assert_eq!(s.torn, None);
        let s = scan(&out, first + 1, |_, _| {});
        assert!(!s.mark_on_boundary);
    }

    /// SplitMix64: a deterministic stream for the sweeps below.
    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn random_segment(seed: &mut u64) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for seq in 0..(rng(seed) % 20) as u32 {
            let n = (rng(seed) % 4) as usize;
            let text: Vec<String> = (0..n)
                .map(|i| format!("q,site=s,node=n,ch=c{i} value={}i {seq}", rng(seed) % 1000))
                .collect();
            let text = text.join("\n");
            encode_record(&mut out, &rec("home_a/n01", seq, &text));
            ends.push(out.len());
        }
        (out, ends)
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_record() {
        let mut seed = 1;
        for _ in 0..200 {
            let (seg, ends) = random_segment(&mut seed);
            let cut = if seg.is_empty() {
                0
            } else {
                (rng(&mut seed) as usize) % (seg.len() + 1)
            };
            let s = scan(&seg[..cut], 0, |_, _| {});
            let whole = ends.iter().filter(|e| **e <= cut).count();
            assert_eq!(s.records, whole as u64);
            let want = if whole == 0 { 0 } else { ends[whole - 1] };
            assert_eq!(s.valid_len, want);
            assert_eq!(s.torn.is_some(), s.valid_len != cut);
        }
    }

    #[test]
    fn corrupt_bytes_never_panic_and_keep_only_intact_records() {
        let mut seed = 42;
        for _ in 0..2000 {
            let (mut seg, ends) = random_segment(&mut seed);
            if seg.is_empty() {
                continue;
            }
            // Flip, overwrite or insert a few bytes.
            let first_hit = (0..1 + rng(&mut seed) % 3)
                .map(|_| {
                    let at = (rng(&mut seed) as usize) % seg.len();
                    match rng(&mut seed) % 3 {
                        0 => seg[at] ^= 1 << (rng(&mut seed) % 8),
                        1 => seg[at] = rng(&mut seed) as u8,
                        _ => seg.insert(at, rng(&mut seed) as u8),
                    }
                    at
                })
                .min()
                .unwrap_or(0);
            let s = scan(&seg, 0, |r, _| {
                assert!(r.text.len() <= seg.len());
            });
            assert!(s.valid_len <= seg.len());
            // Records wholly before the first damaged byte are all kept.
            let intact = ends.iter().filter(|e| **e <= first_hit).count() as u64;
            assert!(s.records >= intact, "{} < {intact}", s.records);
        }
        // Pure noise.
        for _ in 0..2000 {
            let n = (rng(&mut seed) % 300) as usize;
            let noise: Vec<u8> = (0..n).map(|_| rng(&mut seed) as u8).collect();
            let s = scan(&noise, 0, |_, _| {});
            assert!(s.valid_len <= noise.len());
        }
    }

    #[test]
    fn cursor_round_trips_and_rejects_damage() {
        let p = Position {
            segment: 0x1234,
            offset: 99,
        };
        let b = encode_cursor(p);
        assert_eq!(&b[..8], b"FIRECUR1");
        assert_eq!(decode_cursor(&b), Some(p));
        for i in 0..b.len() {
            let mut d = b;
            d[i] ^= 0x10;
            assert_eq!(decode_cursor(&d), None, "byte {i}");
        }
        assert_eq!(decode_cursor(&b[..20]), None);
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_name(26), "000000000000001a.seg");
        assert_eq!(parse_segment_name("000000000000001a.seg"), Some(26));
        assert_eq!(parse_segment_name("1a.seg"), None);
        assert_eq!(parse_segment_name("000000000000001a.corrupt"), None);
        assert_eq!(parse_segment_name("00000000000000zz.seg"), None);
    }

    fn config(dir: &Path, max: u64, seg: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes: max,
            segment_bytes: seg,
            batch_lines: 1000,
        }
    }

    fn wait_durable(sp: &Spool, ticket: u64) {
        let rx = sp.durable();
        let deadline = Instant::now() + Duration::from_secs(10);
        while *rx.borrow() < ticket {
            assert!(Instant::now() < deadline, "not durable");
            std::thread::yield_now();
        }
    }

    fn drain(sp: &Spool) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(b) = sp.read_batch(3).unwrap() {
            got.extend(
                String::from_utf8(b.body.clone())
                    .unwrap()
                    .split('\n')
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
            sp.commit(&b).unwrap();
        }
        got
    }

    #[test]
    fn survives_reopen_delivers_in_order_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (sp, rec0) =
            Spool::open(config(dir.path(), 1 << 20, 256), metrics.clone(), |_| {}).unwrap();
        assert_eq!(rec0, Recovery::default());
        let mut t = 0;
        for i in 0..10u32 {
            let text = format!("l{i}a\nl{i}b");
            t = sp.append(&rec("s/n", i, &text));
        }
        wait_durable(&sp, t);
        // Deliver the first batch (3 lines: whole records, so 4).
        let b = sp.read_batch(3).unwrap().unwrap();
        assert_eq!(b.body, b"l0a\nl0b\nl1a\nl1b");
        sp.commit(&b).unwrap();
        sp.close();
        drop(sp);
        // A torn tail on the newest segment with data, as kill -9 leaves.
        let mut segs: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| parse_segment_name(&e.unwrap().file_name().to_string_lossy()))
            .collect();
        segs.sort();
        let mut last_with_data = None;
        for id in &segs {
            let p = dir.path().join(segment_name(*id));
            if std::fs::metadata(&p).unwrap().len() > HEADER_LEN {
                last_with_data = Some(p);
            }
        }
        let p = last_with_data.unwrap();
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2]).unwrap();
        drop(f);

        let mut seen = Vec::new();
        let (sp, rec1) = Spool::open(config(dir.path(), 1 << 20, 256), metrics.clone(), |r| {
            seen.push(r.seq)
        })
        .unwrap();
        assert_eq!(rec1.torn, 1);
        assert_eq!(rec1.lines, 16);
        assert_eq!(metrics.spool_torn_records.load(Ordering::Relaxed), 1);
        assert!(seen.ends_with(&[9]), "{seen:?}");
        let got = drain(&sp);
        let want: Vec<String> = (2..10)
            .flat_map(|i| [format!("l{i}a"), format!("l{i}b")])
            .collect();
        assert_eq!(got, want);
        assert_eq!(sp.backlog_lines(), 0);
        sp.close();
    }

    #[test]
    fn full_spool_drops_the_oldest_segment_and_counts_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        // Segments of ~2 records; room for ~3 segments.
        let (sp, _) = Spool::open(config(dir.path(), 300, 100), metrics.clone(), |_| {}).unwrap();
        let mut t = 0;
        for i in 0..40u32 {
            let text = format!("x{i:02}");
            t = sp.append(&rec("s/n", i, &text));
            wait_durable(&sp, t);
        }
        let _ = t;
        let dropped = metrics.sink_lines_dropped.load(Ordering::Relaxed);
        assert!(dropped > 0);
        assert_eq!(metrics.sink_dropped("spool_full"), dropped);
        let got = drain(&sp);
        // What is left is exactly the newest 40 - dropped lines, in order.
        let want: Vec<String> = (dropped as u32..40).map(|i| format!("x{i:02}")).collect();
        assert_eq!(got, want);
        assert!(metrics.spool_bytes.load(Ordering::Relaxed) <= 300 + 100);
        sp.close();
    }

    #[test]
    fn a_batch_in_flight_from_a_dropped_segment_is_not_counted_twice() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (sp, _) = Spool::open(config(dir.path(), 300, 100), metrics.clone(), |_| {}).unwrap();
        let t = sp.append(&rec("s/n", 0, "a0\na1\na2"));
        wait_durable(&sp, t);
        let inflight = sp.read_batch(2).unwrap().unwrap();
        assert_eq!(inflight.lines, 3);
        for i in 1..40u32 {
            let t = sp.append(&rec("s/n", i, &format!("x{i:02}")));
            wait_durable(&sp, t);
        }
        sp.commit(&inflight).unwrap();
        let dropped = metrics.sink_lines_dropped.load(Ordering::Relaxed);
        let rest = drain(&sp);
        assert_eq!(3 + dropped + rest.len() as u64, 3 + 39);
        sp.close();
    }
}
