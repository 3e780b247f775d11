//! De-duplication and gap counting on `(site, node, boot, seq)` (消息去重).
//!
//! QoS 1 redelivers, and a node backfills its offline buffer after an outage,
//! so the same message can arrive twice and messages can arrive late. Each
//! node's tracker keeps a window of the sequence numbers seen in its current
//! boot. Pure: no clock, no I/O.

/// Sequence numbers remembered behind the highest one seen.
pub const WINDOW: u32 = 4096;
const WORDS: usize = (WINDOW / 64) as usize;

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New and in order: feed the rules and store it.
    InOrder {
        /// Sequence numbers skipped since the previous in-order message
        /// (readings presumed lost, unless they arrive late).
        gap: u32,
    },
    /// New, but older than a message already seen (backfill or reordering):
    /// store it, but do not feed it to the rules, whose state has moved on.
    Late,
    /// Seen before: drop and count.
    Duplicate,
}

/// Per-node state.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    boot: u32,
    /// Highest sequence number seen in `boot`.
    highest: u32,
    /// Bit `i` set = `highest - i` was seen.
    seen: [u64; WORDS],
    started: bool,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            boot: 0,
            highest: 0,
            seen: [0; WORDS],
            started: false,
        }
    }
}

impl SeqTracker {
    fn mark(&mut self, back: u32) {
        let (w, b) = ((back / 64) as usize, back % 64);
        self.seen[w] |= 1 << b;
    }

    fn is_seen(&self, back: u32) -> bool {
        let (w, b) = ((back / 64) as usize, back % 64);
        self.seen[w] & (1 << b) != 0
    }

    /// Shifts the window so that `highest` grows by `by`.
    fn advance(&mut self, by: u32) {
        if by >= WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = by % 64;
        for i in (0..WORDS).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.seen[s] << bits);
            let lo = match (bits, src.and_then(|s| s.checked_sub(1))) {
                (0, _) | (_, None) => 0,
                (_, Some(s)) => self.seen[s] >> (64 - bits),
            };
            self.seen[i] = hi | lo;
        }
    }

    fn restart(&mut self, boot: u32, seq: u32) {
        self.boot = boot;
        self.highest = seq;
        self.seen = [0; WORDS];
        self.mark(0);
        self.started = true;
    }

    /// The tracker as text, to keep it across a restart:
    /// `boot:highest:` and the window's bits in hex. `None` before any message.
    pub fn to_text(&self) -> Option<String> {
        if !self.started {
            return None;
        }
        let mut out = format!("{}:{}:", self.boot, self.highest);
        for w in &self.seen {
            out.push_str(&format!("{w:016x}"));
        }
        Some(out)
    }

    /// A tracker from [`SeqTracker::to_text`]; `None` for anything else.
    pub fn from_text(text: &str) -> Option<SeqTracker> {
        let mut parts = text.splitn(3, ':');
        let boot = parts.next()?.parse().ok()?;
        let highest = parts.next()?.parse().ok()?;
        let bits = parts.next()?;
        if bits.len() != WORDS * 16 || !bits.is_ascii() {
            return None;
        }
        let mut seen = [0u64; WORDS];
        for (i, w) in seen.iter_mut().enumerate() {
            *w = u64::from_str_radix(&bits[i * 16..i * 16 + 16], 16).ok()?;
        }
        Some(SeqTracker {
            boot,
            highest,
            seen,
            started: true,
        })
    }

    /// Classifies message `(boot, seq)` and records it.
    pub fn observe(&mut self, boot: u32, seq: u32) -> Verdict {
        if !self.started {
            // First message since the gateway started: nothing to compare with.
            self.restart(boot, seq);
            return Verdict::InOrder { gap: 0 };
        }
        if boot > self.boot {
            // The node restarted: its sequence starts again at 0, so
            // everything before `seq` in the new boot is missing.
            self.restart(boot, seq);
            return Verdict::InOrder { gap: seq };
        }
        if boot < self.boot {
            // A message from before the node's last restart, redelivered or
            // backfilled late. Its boot is gone from the window: store it.
            return Verdict::Late;
        }
        if seq > self.highest {
            let by = seq - self.highest;
            self.advance(by);
            self.highest = seq;
            self.mark(0);
            return Verdict::InOrder { gap: by - 1 };
        }
        let back = self.highest - seq;
        if back >= WINDOW {
            return Verdict::Late;
        }
        if self.is_seen(back) {
            Verdict::Duplicate
        } else {
            self.mark(back);
            Verdict::Late
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_keeps_the_window() {
        let mut t = SeqTracker::default();
        assert_eq!(t.to_text(), None);
        for seq in [3, 4, 9, 200, 5000] {
            t.observe(7, seq);
        }
        let mut back = SeqTracker::from_text(&t.to_text().unwrap()).unwrap();
        assert_eq!(back.observe(7, 5000), Verdict::Duplicate);
        assert_eq!(back.observe(7, 4999), Verdict::Late);
        assert_eq!(back.observe(7, 5001), Verdict::InOrder { gap: 0 });
        for bad in ["", "1:2", "1:2:zz", "x:2:00", "1:2:00"] {
            assert!(SeqTracker::from_text(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn in_order_duplicates_and_gaps() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(17, 100), Verdict::InOrder { gap: 0 });
        assert_eq!(t.observe(17, 101), Verdict::InOrder { gap: 0 });
        assert_eq!(t.observe(17, 101), Verdict::Duplicate);
        assert_eq!(t.observe(17, 100), Verdict::Duplicate);
        assert_eq!(t.observe(17, 105), Verdict::InOrder { gap: 3 });
        assert_eq!(t.observe(17, 103), Verdict::Late);
        assert_eq!(t.observe(17, 103), Verdict::Duplicate);
        assert_eq!(t.observe(17, 104), Verdict::Late);
        assert_eq!(t.observe(17, 102), Verdict::Late);
        assert_eq!(t.observe(17, 105), Verdict::Duplicate);
    }

    #[test]
    fn restart_of_the_node_counts_the_missing_start() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(3, 50), Verdict::InOrder { gap: 0 });
        assert_eq!(t.observe(4, 0), Verdict::InOrder { gap: 0 });
        assert_eq!(t.observe(3, 51), Verdict::Late);
        assert_eq!(t.observe(5, 2), Verdict::InOrder { gap: 2 });
        assert_eq!(t.observe(5, 2), Verdict::Duplicate);
    }

    #[test]
    fn window_slides_across_word_boundaries() {
        let mut t = SeqTracker::default();
        t.observe(1, 0);
        for seq in (2..3000).step_by(2) {
            assert_eq!(t.observe(1, seq), Verdict::InOrder { gap: 1 }, "seq {seq}");
        }
        // Every even number is a duplicate, every odd one late, across the window.
        for seq in (0..2999).rev() {
            let want = if seq % 2 == 0 {
                Verdict::Duplicate
            } else {
                Verdict::Late
            };
            assert_eq!(t.observe(1, seq), want, "seq {seq}");
        }
        assert_eq!(
            t.observe(1, 2998 + WINDOW + 10),
            Verdict::InOrder { gap: WINDOW + 9 }
        );
        assert_eq!(
            t.observe(1, 2998),
            Verdict::Late,
            "beyond the window: stored, not judged"
        );
    }

    #[test]
    fn huge_jumps_and_extremes_do_not_panic() {
        let mut t = SeqTracker::default();
        t.observe(u32::MAX, 0);
        assert_eq!(
            t.observe(u32::MAX, u32::MAX),
            Verdict::InOrder { gap: u32::MAX - 1 }
        );
        assert_eq!(t.observe(u32::MAX, u32::MAX), Verdict::Duplicate);
        assert_eq!(t.observe(u32::MAX, 0), Verdict::Late);
    }
}
