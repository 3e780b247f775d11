//! De-duplication and gap counting on `(site, node, boot, seq)` (消息去重).
//!
//! QoS 1 redelivers, and a node backfills its offline buffer after an outage,
//! so the same message can arrive twice and messages can arrive late. Each
//! node's tracker keeps a window of the sequence numbers seen in its current
//! boot. Pure: no clock, no I/O.
//!
//! **A node must stay judgeable.** A message the window cannot place — a
//! lower `boot` (a swapped board, a boot counter fallen back to 0), a `seq`
//! more than [`WINDOW`] behind, or one leaping more than [`MAX_LEAP`] ahead
//! (one spoofed `seq` = 4,294,967,295 would otherwise put every later real
//! message behind the window) — does not move the window. It is
//! [`Verdict::Unconfirmed`]: stored, not judged. It starts a *candidate*
//! sequence; when [`CONFIRM`] messages in a row continue it consistently
//! (same `boot`, `seq` rising by at most [`CONFIRM_STEP`]) with no in-order
//! message of the current sequence between them, the node is taken to have
//! restarted there: the window starts afresh at the candidate
//! ([`Verdict::Restarted`], judged, reported to the duty desk). A single
//! stray or spoofed message therefore never moves the window, and a node
//! whose sequence really changed is judged again after a few messages.
//! A normal restart (`boot` up, `seq` within [`MAX_LEAP`] of 0) is taken at
//! once, as before.

/// Sequence numbers remembered behind the highest one seen.
pub use crate::domain::sequence::WINDOW;
const WORDS: usize = (WINDOW / 64) as usize;

/// The furthest `seq` may leap ahead of the highest seen in the same boot
/// (and the highest first `seq` of a new boot) and still be in order.
/// Further is a candidate that must be confirmed. Small on purpose: a node
/// publishes in order over one QoS 1 session, so a real gap is messages
/// its offline buffer dropped; a spoofed leap within it leaves at most this
/// many real messages behind the window before they confirm themselves.
pub const MAX_LEAP: u32 = 64;

/// Consistent messages of a candidate sequence that make it the node's
/// sequence (the last of them is judged; the ones before are stored).
pub const CONFIRM: u8 = 3;

/// The largest step between two messages of a candidate sequence.
pub const CONFIRM_STEP: u32 = 64;

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
    /// Outside the window and not (yet) confirmed by the messages after it
    /// (a stray or spoofed `(boot, seq)`, or the first of a new sequence):
    /// store it, do not feed it to the rules, leave the window as it was.
    Unconfirmed,
    /// The [`CONFIRM`]th consistent message of a sequence the window could
    /// not follow: the node restarted where the window cannot see it (board
    /// swap, boot counter fallen back, a confirmed leap). The window now
    /// follows the new sequence; the message is in order (judged).
    Restarted {
        /// The `(boot, highest seq)` the window followed before.
        from: (u32, u32),
    },
}

/// A sequence the window could not follow, waiting for confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    boot: u32,
    /// Its sequence numbers seen, oldest first (`count` of them).
    seqs: [u32; CONFIRM as usize],
    count: u8,
}

impl Candidate {
    fn last(&self) -> u32 {
        self.seqs[usize::from(self.count.saturating_sub(1))]
    }
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
    /// Not saved with the window: after a gateway restart a candidate
    /// simply needs its [`CONFIRM`] messages again.
    candidate: Option<Candidate>,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            boot: 0,
            highest: 0,
            seen: [0; WORDS],
            started: false,
            candidate: None,
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

    /// Where `(boot, seq)` sits in the window, if it does.
    fn back_of(&self, boot: u32, seq: u32) -> Option<u32> {
        if !self.started || boot != self.boot || seq > self.highest {
            return None;
        }
        Some(self.highest - seq).filter(|b| *b < WINDOW)
    }

    /// Whether `(boot, seq)` is marked seen in the window (no change).
    pub fn contains(&self, boot: u32, seq: u32) -> bool {
        self.back_of(boot, seq).is_some_and(|b| self.is_seen(b))
    }

    /// Unmarks `(boot, seq)`; returns whether it was marked. Used on a copy
    /// of a restored window to keep the messages committed before a
    /// restart whose lines the spool does not hold (see
    /// [`crate::alarms::runtime::Runtime::restore_seq`]); never on the live window.
    pub fn take(&mut self, boot: u32, seq: u32) -> bool {
        match self.back_of(boot, seq) {
            Some(b) if self.is_seen(b) => {
                let (w, bit) = ((b / 64) as usize, b % 64);
                self.seen[w] &= !(1 << bit);
                true
            }
            _ => false,
        }
    }

    /// Whether any sequence number is marked.
    pub fn is_empty(&self) -> bool {
        self.seen.iter().all(|w| *w == 0)
    }

    /// How many sequence numbers are marked.
    pub fn count(&self) -> usize {
        self.seen.iter().map(|w| w.count_ones() as usize).sum()
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
            candidate: None,
        })
    }

    /// Classifies message `(boot, seq)` and records it.
    pub fn observe(&mut self, boot: u32, seq: u32) -> Verdict {
        if !self.started {
            // First message since the gateway started: nothing to compare with.
            self.restart(boot, seq);
            return Verdict::InOrder { gap: 0 };
        }
        if boot > self.boot && seq <= MAX_LEAP {
            // The node restarted: its sequence starts again at 0, so
            // everything before `seq` in the new boot is missing.
            self.restart(boot, seq);
            self.candidate = None;
            return Verdict::InOrder { gap: seq };
        }
        let mut late = false;
        if boot == self.boot {
            if seq > self.highest && seq - self.highest <= MAX_LEAP {
                let by = seq - self.highest;
                self.advance(by);
                self.highest = seq;
                self.mark(0);
                // The current sequence goes on: whatever strayed is not it.
                self.candidate = None;
                return Verdict::InOrder { gap: by - 1 };
            }
            if seq <= self.highest && self.highest - seq < WINDOW {
                let back = self.highest - seq;
                if self.is_seen(back) {
                    return Verdict::Duplicate;
                }
                self.mark(back);
                late = true;
            }
        }
        self.stray(boot, seq, late)
    }

    /// A message the window cannot take in order: a lower boot, a higher
    /// boot that does not start near 0, a leap ahead, one behind the
    /// highest seen (`late`: inside the window, already marked). A run of
    /// [`CONFIRM`] consistent ones — the node's real sequence, below a
    /// spoofed or stale highest, or in a boot the window does not follow —
    /// becomes the window's sequence.
    fn stray(&mut self, boot: u32, seq: u32, late: bool) -> Verdict {
        let pending = if late {
            Verdict::Late
        } else {
            Verdict::Unconfirmed
        };
        match self.candidate.as_mut() {
            Some(c) if c.boot == boot && c.seqs[..usize::from(c.count)].contains(&seq) => {
                Verdict::Duplicate
            }
            Some(c) if c.boot == boot && seq > c.last() && seq - c.last() <= CONFIRM_STEP => {
                c.seqs[usize::from(c.count)] = seq;
                c.count += 1;
                if c.count < CONFIRM {
                    return pending;
                }
                let confirmed = *c;
                let from = (self.boot, self.highest);
                self.restart(boot, seq);
                // The candidate's earlier messages were stored: a
                // redelivery of one is a duplicate.
                for s in &confirmed.seqs {
                    if let Some(back) = seq.checked_sub(*s).filter(|b| *b < WINDOW) {
                        self.mark(back);
                    }
                }
                self.candidate = None;
                Verdict::Restarted { from }
            }
            _ => {
                let mut seqs = [0; CONFIRM as usize];
                seqs[0] = seq;
                self.candidate = Some(Candidate {
                    boot,
                    seqs,
                    count: 1,
                });
                pending
            }
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
        for seq in [3, 4, 9, 60, 100] {
            t.observe(7, seq);
        }
        let mut back = SeqTracker::from_text(&t.to_text().unwrap()).unwrap();
        assert_eq!(back.observe(7, 100), Verdict::Duplicate);
        assert_eq!(back.observe(7, 99), Verdict::Late);
        assert_eq!(back.observe(7, 101), Verdict::InOrder { gap: 0 });
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
        assert_eq!(t.observe(3, 51), Verdict::Unconfirmed);
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
            t.observe(1, 2998 + MAX_LEAP),
            Verdict::InOrder { gap: MAX_LEAP - 1 }
        );
        let mut highest = 2998 + MAX_LEAP;
        while highest < 2998 + WINDOW {
            highest += MAX_LEAP;
            assert_eq!(
                t.observe(1, highest),
                Verdict::InOrder { gap: MAX_LEAP - 1 }
            );
        }
        assert_eq!(
            t.observe(1, 2998),
            Verdict::Unconfirmed,
            "beyond the window: stored, not judged"
        );
    }

    #[test]
    fn huge_jumps_and_extremes_do_not_panic() {
        let mut t = SeqTracker::default();
        t.observe(u32::MAX, 0);
        assert_eq!(t.observe(u32::MAX, u32::MAX), Verdict::Unconfirmed);
        assert_eq!(t.observe(u32::MAX, u32::MAX), Verdict::Duplicate);
        assert_eq!(t.observe(u32::MAX, 1), Verdict::InOrder { gap: 0 });
        assert_eq!(
            t.observe(u32::MAX, MAX_LEAP + 1),
            Verdict::InOrder { gap: MAX_LEAP - 1 }
        );
        let mut t = SeqTracker::default();
        t.observe(0, u32::MAX - 1);
        assert_eq!(t.observe(0, u32::MAX), Verdict::InOrder { gap: 0 });
        assert_eq!(t.observe(u32::MAX, u32::MAX), Verdict::Unconfirmed);
    }

    /// Feeds `boot` with `seqs` and answers the verdicts.
    fn run(t: &mut SeqTracker, boot: u32, seqs: impl IntoIterator<Item = u32>) -> Vec<Verdict> {
        seqs.into_iter().map(|s| t.observe(boot, s)).collect()
    }

    /// A node running for a while: boot 57, seq up to 100,000.
    fn settled() -> SeqTracker {
        let mut t = SeqTracker::default();
        run(&mut t, 57, 99_990..=100_000);
        t
    }

    const FROM: (u32, u32) = (57, 100_000);

    #[test]
    fn a_swapped_board_is_followed_after_a_few_messages() {
        let mut t = settled();
        // The new board's counter starts at 1 and its seq at 0.
        let got = run(&mut t, 1, 0..6);
        assert_eq!(
            got,
            [
                Verdict::Unconfirmed,
                Verdict::Unconfirmed,
                Verdict::Restarted { from: FROM },
                Verdict::InOrder { gap: 0 },
                Verdict::InOrder { gap: 0 },
                Verdict::InOrder { gap: 0 },
            ]
        );
        // The stored first two are duplicates when redelivered; the old
        // board's late messages are strays now, never judged.
        assert_eq!(t.observe(1, 0), Verdict::Duplicate);
        assert_eq!(t.observe(1, 1), Verdict::Duplicate);
        assert_eq!(t.observe(57, 100_001), Verdict::Unconfirmed);
        // And the new board's restart is an ordinary one.
        assert_eq!(t.observe(2, 0), Verdict::InOrder { gap: 0 });
    }

    #[test]
    fn a_boot_counter_fallen_back_to_zero_is_followed() {
        let mut t = settled();
        let got = run(&mut t, 0, [0, 1, 3, 4]);
        assert_eq!(got[2], Verdict::Restarted { from: FROM });
        assert_eq!(got[3], Verdict::InOrder { gap: 0 });
        let saved = SeqTracker::from_text(&t.to_text().unwrap()).unwrap();
        let mut back = saved.clone();
        assert_eq!(
            back.observe(0, 5),
            Verdict::InOrder { gap: 0 },
            "kept across a restart"
        );
        assert_eq!(back.observe(0, 3), Verdict::Duplicate);
    }

    #[test]
    fn one_spoofed_seq_never_moves_the_window() {
        let mut t = settled();
        assert_eq!(t.observe(57, u32::MAX), Verdict::Unconfirmed);
        assert_eq!(t.observe(57, 100_001), Verdict::InOrder { gap: 0 });
        assert_eq!(t.observe(57, 100_001), Verdict::Duplicate);
        // A second spoof after real messages starts over, never confirms.
        for s in 100_002..100_010 {
            assert_eq!(t.observe(57, u32::MAX - (s % 2)), Verdict::Unconfirmed);
            assert_eq!(t.observe(57, s), Verdict::InOrder { gap: 0 });
        }
        // A leap past MAX_LEAP is not in order; one within it is.
        assert_eq!(t.observe(57, 100_009 + MAX_LEAP + 1), Verdict::Unconfirmed);
        assert_eq!(
            t.observe(57, 100_009 + MAX_LEAP),
            Verdict::InOrder { gap: MAX_LEAP - 1 }
        );
    }

    #[test]
    fn a_spoofed_leap_within_bounds_costs_at_most_a_few_real_messages() {
        let mut t = settled();
        assert_eq!(t.observe(57, 100_060), Verdict::InOrder { gap: 59 });
        // The real node goes on from 100,000: behind the spoof, fresh, consistent.
        let got = run(&mut t, 57, 100_001..100_005);
        assert_eq!(
            got,
            [
                Verdict::Late,
                Verdict::Late,
                Verdict::Restarted {
                    from: (57, 100_060)
                },
                Verdict::InOrder { gap: 0 },
            ]
        );
    }

    #[test]
    fn a_window_poisoned_before_recovers_from_the_real_sequence() {
        // What a gateway before this fix saved after one spoofed message:
        // the window at u32::MAX, every real message far behind it.
        let mut poisoned = SeqTracker::default();
        poisoned.observe(57, 0);
        poisoned.highest = u32::MAX;
        let mut t = SeqTracker::from_text(&poisoned.to_text().unwrap()).unwrap();
        let got = run(&mut t, 57, 100_001..100_005);
        assert_eq!(
            got,
            [
                Verdict::Unconfirmed,
                Verdict::Unconfirmed,
                Verdict::Restarted {
                    from: (57, u32::MAX)
                },
                Verdict::InOrder { gap: 0 },
            ]
        );
    }

    #[test]
    fn an_inconsistent_candidate_is_never_confirmed() {
        let mut t = settled();
        // Lower boots, but each breaking the one before: never a sequence.
        for (b, s) in [(3, 10), (3, 9), (3, 200), (4, 201), (3, 202), (3, 10_000)] {
            assert_eq!(t.observe(b, s), Verdict::Unconfirmed, "({b}, {s})");
        }
        assert_eq!(t.observe(57, 100_001), Verdict::InOrder { gap: 0 });
        // An in-order message between candidate messages starts it over.
        assert_eq!(t.observe(3, 1), Verdict::Unconfirmed);
        assert_eq!(t.observe(3, 2), Verdict::Unconfirmed);
        assert_eq!(t.observe(57, 100_002), Verdict::InOrder { gap: 0 });
        assert_eq!(t.observe(3, 3), Verdict::Unconfirmed);
        assert_eq!(t.observe(3, 4), Verdict::Unconfirmed);
        assert_eq!(
            t.observe(3, 5),
            Verdict::Restarted {
                from: (57, 100_002)
            }
        );
    }

    #[test]
    fn a_higher_boot_far_from_zero_needs_confirming() {
        let mut t = settled();
        assert_eq!(t.observe(58, MAX_LEAP + 1), Verdict::Unconfirmed);
        assert_eq!(t.observe(58, MAX_LEAP + 2), Verdict::Unconfirmed);
        assert_eq!(
            t.observe(58, MAX_LEAP + 3),
            Verdict::Restarted { from: FROM }
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 3000, ..Default::default() })]

        /// Whatever came before — spoofed boots and seqs, extremes, stale
        /// windows — a node sending its own consistent sequence is judged
        /// again within CONFIRM messages and stays judged, provided nothing
        /// before used the very numbers it now sends.
        #[test]
        fn a_consistent_sequence_is_always_judged_again(
            b0 in proptest::prelude::any::<u32>(),
            s0 in 0u32..u32::MAX - 10_000,
            prefix in proptest::collection::vec(
                (0u8..6, proptest::prelude::any::<u32>(), -300i64..300, proptest::prelude::any::<bool>()),
                0..40,
            ),
            step in 1u32..3,
        ) {
            const L: u32 = 12;
            let mut t = SeqTracker::default();
            let taken = |b: u32, s: u32| b == b0 && s >= s0 && s <= s0 + (L + 1) * step + CONFIRM_STEP;
            for (which, any, near, near_s0) in prefix {
                let b = match which {
                    0 => b0,
                    1 => b0.wrapping_sub(1),
                    2 => b0.wrapping_add(1),
                    3 => 0,
                    4 => u32::MAX,
                    _ => any,
                };
                let s = if near_s0 {
                    (i64::from(s0) + near).clamp(0, i64::from(u32::MAX)) as u32
                } else {
                    any
                };
                if !taken(b, s) {
                    t.observe(b, s);
                }
            }
            let verdicts: Vec<Verdict> = (0..L).map(|i| t.observe(b0, s0 + i * step)).collect();
            let first = verdicts
                .iter()
                .position(|v| matches!(v, Verdict::InOrder { .. } | Verdict::Restarted { .. }));
            proptest::prop_assert!(
                first.is_some_and(|f| f < usize::from(CONFIRM)),
                "{:?}", verdicts
            );
            for v in &verdicts[first.unwrap_or(0) + 1..] {
                proptest::prop_assert_eq!(*v, Verdict::InOrder { gap: step - 1 });
            }
        }
    }

    #[test]
    fn take_unmarks_once_and_only_inside_the_window() {
        let mut t = SeqTracker::default();
        for seq in 0..10 {
            t.observe(1, seq);
        }
        assert_eq!(t.count(), 10);
        assert!(t.contains(1, 3));
        assert!(t.take(1, 3));
        assert!(!t.take(1, 3), "once");
        assert!(!t.contains(1, 3));
        assert!(!t.take(2, 4), "another boot");
        assert!(!t.take(1, 11), "ahead of the window");
        assert_eq!(t.count(), 9);
        for seq in (0..10).filter(|s| *s != 3) {
            assert!(t.take(1, seq));
        }
        assert!(t.is_empty());
    }
}
