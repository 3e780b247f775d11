//! Which readings to keep with open tickets (关联读数): the pure decision,
//! per channel, with time passed in.
//!
//! A ticket should carry what the data said while it was open without
//! copying the whole stream into the SQL store: every abnormal reading is
//! kept, at most one a minute per channel, and a normal one every fifteen
//! minutes — about 300 rows for a 72-hour proof period. A reading that
//! changes the channel's condition (its status, rule level or rate-of-rise
//! state) is kept at once: the reading that raised an alarm, and so opened a
//! ticket, and the moment the channel went back to normal are on record.

use std::collections::HashMap;

/// Spacing of kept abnormal readings per channel.
pub const ABNORMAL_EVERY_MS: u64 = 60_000;
/// Spacing of kept normal readings per channel.
pub const NORMAL_EVERY_MS: u64 = 15 * 60_000;

/// What the rules made of a channel after a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    /// The channel status on the wire (`ok`, `open`, …).
    pub status: &'static str,
    /// The rules' level (`normal`, `pre_alarm`, `alarm`).
    pub level: &'static str,
    /// The rate-of-rise rule is raised.
    pub rising: bool,
}

impl Condition {
    pub fn abnormal(&self) -> bool {
        self.status != "ok" || self.level != "normal" || self.rising
    }
}

#[derive(Debug, Clone, Copy)]
struct Last {
    at: u64,
    condition: Condition,
}

/// Remembers, per channel, the last reading offered for linking.
#[derive(Debug, Default, Clone)]
pub struct Linker {
    last: HashMap<(String, String, String), Last>,
}

impl Linker {
    /// Whether a reading at `at` should be linked; records it if so.
    /// Readings older than the last one kept (backfill) are kept only when
    /// their spacing from it allows, in either direction.
    pub fn due(
        &mut self,
        site: &str,
        node: &str,
        channel: &str,
        condition: Condition,
        at: u64,
    ) -> bool {
        let key = (site.to_string(), node.to_string(), channel.to_string());
        let due = match self.last.get(&key) {
            None => true,
            Some(last) if last.condition != condition => true,
            Some(last) => {
                let every = if condition.abnormal() {
                    ABNORMAL_EVERY_MS
                } else {
                    NORMAL_EVERY_MS
                };
                at.abs_diff(last.at) >= every
            }
        };
        if due {
            self.last.insert(key, Last { at, condition });
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NORMAL: Condition = Condition {
        status: "ok",
        level: "normal",
        rising: false,
    };
    const PRE: Condition = Condition {
        level: "pre_alarm",
        ..NORMAL
    };
    const ALARM: Condition = Condition {
        level: "alarm",
        ..NORMAL
    };

    #[test]
    fn abnormal_every_minute_normal_every_quarter_hour_changes_at_once() {
        let mut l = Linker::default();
        let mut due = |c, at| l.due("s", "n", "rc1", c, at);
        assert!(due(PRE, 0));
        assert!(!due(PRE, 10_000));
        // The reading that raises the alarm changes the condition: kept.
        assert!(due(ALARM, 20_000));
        assert!(!due(ALARM, 79_999));
        assert!(due(ALARM, 80_000));
        // Back to normal: kept at once.
        assert!(due(NORMAL, 90_000));
        assert!(!due(NORMAL, 90_000 + NORMAL_EVERY_MS - 1));
        assert!(due(NORMAL, 90_000 + NORMAL_EVERY_MS));
        // A sensor fault: at once.
        let open = Condition {
            status: "open",
            ..NORMAL
        };
        assert!(open.abnormal() && !NORMAL.abnormal());
        assert!(due(open, 90_000 + NORMAL_EVERY_MS + 10));
    }

    #[test]
    fn channels_are_independent() {
        let mut l = Linker::default();
        assert!(l.due("s", "n", "rc1", NORMAL, 0));
        assert!(l.due("s", "n", "t1", NORMAL, 1));
        assert!(!l.due("s", "n", "rc1", NORMAL, 2));
    }
}
