//! The sampling schedule: a fixed period on a monotonic millisecond clock,
//! without drift (the next deadline is the previous one plus the period)
//! and without bursts after a stall (missed rounds are skipped, not
//! caught up).

/// When the next sampling round is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    period_ms: u64,
    next_ms: u64,
}

impl Schedule {
    /// A schedule with its first round at `start_ms`. A zero period is
    /// treated as 1 ms.
    pub const fn new(period_ms: u64, start_ms: u64) -> Self {
        Schedule {
            period_ms: if period_ms == 0 { 1 } else { period_ms },
            next_ms: start_ms,
        }
    }

    /// The period.
    pub const fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// Whether a round is due at `now_ms`; if so the schedule moves on to
    /// the next deadline after `now_ms`.
    pub fn due(&mut self, now_ms: u64) -> bool {
        if now_ms < self.next_ms {
            return false;
        }
        let missed = (now_ms - self.next_ms) / self.period_ms;
        self.next_ms += (missed + 1) * self.period_ms;
        true
    }
}
