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
use segment::create_segment;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tokio::sync::{watch, Notify};

mod flusher;
mod record;
mod segment;
#[cfg(test)]
mod tests;

pub use record::{
    decode_cursor, decode_record, encode_cursor, encode_record, scan, Decoded, Position, Record,
    Scan, HEADER_LEN, MAX_RECORD, RECORD_PREFIX, SEGMENT_MAGIC,
};
pub use segment::{drop_reason, is_disk_full, parse_segment_name, segment_name, set_aside};

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
