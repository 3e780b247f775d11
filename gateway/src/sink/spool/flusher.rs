//! The write side of the spool: the flusher thread's group commit,
//! segment rotation, the size bound (the oldest segment dropped and
//! counted), and what a failed write or fsync does.

use super::record::{Position, HEADER_LEN};
use super::segment::{create_segment, drop_reason, is_disk_full, segment_name};
use super::{lock, ReadPos, Segment, Shared, State};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl Shared {
    pub(super) fn gauges(&self, st: &State) {
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
    pub(super) fn rotate(&self) -> bool {
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
    pub(super) fn try_rotate(&self) -> io::Result<()> {
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
    pub(super) fn enforce_bound(&self, st: &mut State) -> Vec<u64> {
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
    pub(super) fn drop_oldest(&self, st: &mut State) -> Option<(u64, u64)> {
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
    pub(super) fn delete_segment(&self, id: u64) {
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
    pub(super) fn make_room(&self) -> bool {
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
    pub(super) fn write_active(&self, buf: &[u8]) -> (u64, Arc<File>, u64, io::Result<()>) {
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
    pub(super) fn write_failed(
        &self,
        e: &io::Error,
        lines: u64,
        upto: u64,
        file: &File,
        durable_len: u64,
    ) {
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

    pub(super) fn flusher(&self) {
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
