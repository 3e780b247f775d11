//! The alarm rows one transaction has touched, kept in memory and written
//! once (`Batch::flush_alarms`): an alarm storm raises, re-levels and
//! clears the same channel's alarms several times within one batch, and
//! every in-place `UPDATE` of an alarm row changes its `state`, so
//! PostgreSQL wrote a new row version with an entry in each of the table's
//! four indexes for it. Kept here, an alarm raised and cleared within a
//! batch is inserted once, cleared; an alarm standing before the batch is
//! updated once, to its last state.
//!
//! Pure: the SQL statements the rows used to be changed with are the
//! specification, applied to the rows here (their `RETURNING` rows are
//! what [`Pending`] answers). The I/O around it (loading the standing rows
//! of new keys, allocating ids, writing at the end) is in `many.rs`.

use crate::store::{AlarmInput, AlarmKey, AlarmRow};
use std::collections::HashMap;

/// One alarm row and whether the database has it.
#[derive(Debug)]
struct Tracked {
    row: AlarmRow,
    /// Not in the database yet: inserted at the flush.
    new: bool,
    /// In the database, changed since: updated at the flush.
    dirty: bool,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// By key, the row standing now (an index into `rows`), or `None`
    /// when nothing stands. A key absent here is not known yet: its
    /// standing row (if any) is still to be read from the database.
    standing: HashMap<AlarmKey, Option<usize>>,
    rows: Vec<Tracked>,
}

/// What a flush writes: rows to update in place, rows to insert (in the
/// order of their ids).
pub(super) struct Flush {
    pub updates: Vec<AlarmRow>,
    pub inserts: Vec<AlarmRow>,
}

impl Pending {
    /// The keys of `keys` whose standing row is still to be read.
    pub fn unknown<'a>(&self, keys: impl Iterator<Item = &'a AlarmKey>) -> Vec<&'a AlarmKey> {
        let mut out: Vec<&AlarmKey> = keys.filter(|k| !self.standing.contains_key(*k)).collect();
        out.dedup();
        out
    }

    /// Records what the database has standing for `asked` (`rows`, read
    /// under a row lock held until the commit).
    pub fn loaded(&mut self, asked: &[&AlarmKey], rows: Vec<AlarmRow>) {
        for k in asked {
            self.standing.insert((*k).clone(), None);
        }
        for row in rows {
            let i = self.rows.len();
            self.standing.insert(key_of(&row), Some(i));
            self.rows.push(Tracked {
                row,
                new: false,
                dirty: false,
            });
        }
    }

    /// The row standing for `key` (the key must be known).
    #[cfg(test)]
    pub fn standing(&self, key: &AlarmKey) -> Option<&AlarmRow> {
        self.index(key).map(|i| &self.rows[i].row)
    }

    fn index(&self, key: &AlarmKey) -> Option<usize> {
        debug_assert!(self.standing.contains_key(key), "key not loaded");
        self.standing.get(key).copied().flatten()
    }

    /// A raise of a key with a standing row: `UPDATE alarms SET level,
    /// state = 'active', value, setpoint, peak (the larger), suppressed =
    /// suppressed AND new, updated_at`.
    pub fn raise_standing(&mut self, a: &AlarmInput) -> Option<AlarmRow> {
        let i = self.index(&a.key)?;
        let t = &mut self.rows[i];
        let r = &mut t.row;
        r.level = a.level.to_string();
        r.state = "active".to_string();
        r.value = a.value.map(i64::from);
        r.setpoint = a.setpoint.map(i64::from);
        if let Some(v) = r.value {
            if r.peak.is_none_or(|p| v > p) {
                r.peak = Some(v);
            }
        }
        r.suppressed = r.suppressed && a.suppressed;
        r.updated_at = a.at as i64;
        t.dirty = true;
        Some(r.clone())
    }

    /// A raise of a key with nothing standing: a new row `id` (allocated
    /// by the caller), as `INSERT INTO alarms` makes it.
    pub fn insert(&mut self, id: i64, a: &AlarmInput, ticket_id: Option<i64>) -> AlarmRow {
        debug_assert!(self.index(&a.key).is_none(), "one standing row per key");
        let at = a.at as i64;
        let row = AlarmRow {
            id,
            site: a.key.site.clone(),
            node: a.key.node.clone(),
            channel: a.key.channel.clone(),
            cause: a.key.cause.clone(),
            kind: a.kind.to_string(),
            level: a.level.to_string(),
            state: "active".to_string(),
            quantity: a.quantity.map(str::to_string),
            value: a.value.map(i64::from),
            setpoint: a.setpoint.map(i64::from),
            peak: a.value.map(i64::from),
            raised_at: at,
            updated_at: at,
            cleared_at: None,
            acked_at: None,
            acked_by: None,
            ticket_id,
            suppressed: a.suppressed,
            flapping: false,
        };
        let i = self.rows.len();
        self.standing.insert(a.key.clone(), Some(i));
        self.rows.push(Tracked {
            row: row.clone(),
            new: true,
            dirty: false,
        });
        row
    }

    /// Points the standing row of `key` at ticket `id`.
    pub fn set_ticket(&mut self, key: &AlarmKey, id: i64) {
        if let Some(i) = self.index(key) {
            let t = &mut self.rows[i];
            t.row.ticket_id = Some(id);
            t.dirty = true;
        }
    }

    /// Settles (`state`) or re-levels (`level`) the standing row of `key`:
    /// `UPDATE alarms SET state = COALESCE(state', state), level =
    /// COALESCE(level', level), value = COALESCE(value', value),
    /// updated_at, cleared_at (when cleared)`. `None` when nothing stands.
    pub fn change(
        &mut self,
        key: &AlarmKey,
        state: Option<&str>,
        level: Option<&str>,
        value: Option<i32>,
        at: u64,
    ) -> Option<AlarmRow> {
        let i = self.index(key)?;
        let t = &mut self.rows[i];
        let r = &mut t.row;
        if let Some(s) = state {
            r.state = s.to_string();
        }
        if let Some(l) = level {
            r.level = l.to_string();
        }
        if let Some(v) = value {
            r.value = Some(i64::from(v));
        }
        r.updated_at = at as i64;
        if state == Some("cleared") {
            r.cleared_at = Some(at as i64);
            self.standing.insert(key.clone(), None);
        }
        t.dirty = true;
        Some(r.clone())
    }

    /// Whether a flush has anything to write.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.rows.iter().all(|t| !t.new && !t.dirty)
    }

    /// Takes what must be written and forgets everything (the database is
    /// read again for later changes).
    pub fn take(&mut self) -> Flush {
        self.standing.clear();
        let mut updates = Vec::new();
        let mut inserts = Vec::new();
        for t in std::mem::take(&mut self.rows) {
            if t.new {
                inserts.push(t.row);
            } else if t.dirty {
                updates.push(t.row);
            }
        }
        inserts.sort_by_key(|r| r.id);
        Flush { updates, inserts }
    }
}

pub(super) fn key_of(row: &AlarmRow) -> AlarmKey {
    AlarmKey {
        site: row.site.clone(),
        node: row.node.clone(),
        channel: row.channel.clone(),
        cause: row.cause.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ch: &str) -> AlarmKey {
        AlarmKey {
            site: "s".into(),
            node: "n".into(),
            channel: ch.into(),
            cause: "rc_high".into(),
        }
    }

    fn input(ch: &str, level: &'static str, value: Option<i32>, at: u64) -> AlarmInput {
        AlarmInput {
            key: key(ch),
            kind: "electrical_fire",
            level,
            quantity: Some("rc"),
            value,
            setpoint: Some(300),
            at,
            suppressed: false,
        }
    }

    #[test]
    fn raised_and_cleared_in_one_batch_is_one_insert_of_the_cleared_row() {
        let mut p = Pending::default();
        p.loaded(&[&key("rc1")], vec![]);
        assert!(p.standing(&key("rc1")).is_none());
        let row = p.insert(7, &input("rc1", "pre_alarm", Some(320), 10), Some(3));
        assert_eq!((row.state.as_str(), row.peak), ("active", Some(320)));
        let up = p
            .raise_standing(&input("rc1", "alarm", Some(510), 11))
            .unwrap();
        assert_eq!(
            (up.level.as_str(), up.peak, up.updated_at),
            ("alarm", Some(510), 11)
        );
        let down = p
            .change(&key("rc1"), None, Some("pre_alarm"), Some(400), 12)
            .unwrap();
        assert_eq!(
            (down.level.as_str(), down.peak, down.value),
            ("pre_alarm", Some(510), Some(400))
        );
        let cleared = p
            .change(&key("rc1"), Some("cleared"), None, None, 13)
            .unwrap();
        assert_eq!((cleared.cleared_at, cleared.value), (Some(13), Some(400)));
        assert!(p.standing(&key("rc1")).is_none());
        assert!(p
            .change(&key("rc1"), Some("cleared"), None, None, 14)
            .is_none());
        // Raised again: a second row.
        p.insert(8, &input("rc1", "pre_alarm", Some(300), 15), Some(3));
        let f = p.take();
        assert!(f.updates.is_empty());
        let ids: Vec<(i64, &str)> = f.inserts.iter().map(|r| (r.id, r.state.as_str())).collect();
        assert_eq!(ids, [(7, "cleared"), (8, "active")]);
        assert_eq!(f.inserts[0].ticket_id, Some(3));
        // Everything is forgotten: the next change reads the database.
        assert_eq!(p.unknown([key("rc1")].iter()).len(), 1);
    }

    #[test]
    fn a_standing_row_from_the_database_is_updated_once() {
        let mut p = Pending::default();
        p.loaded(&[&key("rc2")], vec![]);
        let mut standing = p.insert(4, &input("rc2", "alarm", Some(550), 1), None);
        p.take();
        standing.suppressed = true;
        p.loaded(&[&key("rc2"), &key("rc3")], vec![standing]);
        assert!(p.is_empty());
        assert!(p.standing(&key("rc3")).is_none());
        // A raise without a value keeps the peak; suppression is lifted.
        let r = p
            .raise_standing(&input("rc2", "pre_alarm", None, 5))
            .unwrap();
        assert_eq!((r.value, r.peak, r.suppressed), (None, Some(550), false));
        p.set_ticket(&key("rc2"), 9);
        let l = p
            .change(&key("rc2"), Some("latched"), None, None, 6)
            .unwrap();
        assert_eq!(
            (l.state.as_str(), l.cleared_at, l.ticket_id),
            ("latched", None, Some(9))
        );
        let f = p.take();
        assert!(f.inserts.is_empty());
        assert_eq!(f.updates.len(), 1);
        assert_eq!(f.updates[0].state, "latched");
    }
}
