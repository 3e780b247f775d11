//! Set-based writes: many alarms raised, settled or re-levelled, many
//! tickets attached, many readings linked, each in a few statements however
//! many rows there are.
//!
//! The alarm path writes a batch's effects in rounds (see
//! `pipeline::effects`): within a round every channel has at most one
//! change, so the rows of a round are independent of each other. Alarm
//! rows change in memory ([`super::pending`]): a round reads the standing
//! rows of keys the transaction has not seen yet (one `SELECT … FOR
//! UPDATE`), and every row is written once, in its last state, when the
//! transaction commits or something else is about to read or change
//! alarms ([`Batch::flush_alarms`]). Tickets are found and counted with one
//! `UPDATE … FROM (VALUES …)` (SQLite ≥ 3.33 and PostgreSQL alike) a
//! round. Each statement costs a round trip to the database's worker
//! (SQLite) or server (PostgreSQL); an alarm storm that wrote one statement
//! per change spent most of its time in those round trips.
//!
//! Rows are matched back to their inputs by key, never by the order of
//! `RETURNING` rows (which neither database promises).

use super::pending::Flush;
use super::{chunked, padded, shaped, values, Batch};
use crate::store::alarms::ALARM_COLUMNS;
use crate::store::tickets::open_or_attach;
use crate::store::{
    AlarmInput, AlarmKey, AlarmRow, LinkedReading, StoreError, TicketOutcome, TicketSpec,
};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AssertSqlSafe};
use std::collections::HashMap;
use std::sync::Arc;

/// A standing alarm to latch or clear.
#[derive(Debug, Clone, Copy)]
pub struct Settle<'a> {
    pub key: &'a AlarmKey,
    /// `latched` or `cleared`.
    pub state: &'static str,
    pub value: Option<i32>,
    pub at: u64,
}

/// A standing alarm's new level (e.g. 报警 back to 预警).
#[derive(Debug, Clone, Copy)]
pub struct Relevel<'a> {
    pub key: &'a AlarmKey,
    pub level: &'static str,
    pub value: i32,
    pub at: u64,
}

/// A many-row statement answering rows (its text from [`super::shaped`]).
fn many_as<T>(sql: Arc<str>) -> sqlx::query::QueryAs<'static, Any, T, AnyArguments>
where
    T: for<'r> sqlx::FromRow<'r, AnyRow>,
{
    sqlx::query_as(AssertSqlSafe(sql))
}

/// Where each key sits in the input (keys of one call are distinct).
fn positions<'a>(keys: impl Iterator<Item = &'a AlarmKey>) -> HashMap<&'a AlarmKey, usize> {
    let map: HashMap<_, _> = keys.enumerate().map(|(i, k)| (k, i)).collect();
    map
}

impl Batch {
    /// Reads the standing rows of the keys this transaction has not seen
    /// yet into [`Batch::alarms`], locking them until the commit (a person
    /// acknowledging or resetting one waits for the batch).
    async fn load_standing<'k>(
        &mut self,
        keys: impl Iterator<Item = &'k AlarmKey>,
    ) -> Result<(), StoreError> {
        let ask = self.alarms.unknown(keys);
        let mut found = Vec::new();
        for (chunk, shape) in chunked(&ask) {
            let sqlite = self.sqlite;
            let sql = shaped(sqlite, (file!(), line!()), shape, || {
                format!(
                    "SELECT {ALARM_COLUMNS} FROM alarms JOIN (VALUES {}) AS v \
                     ON alarms.site = v.column1 AND alarms.node = v.column2 AND alarms.channel = v.column3 \
                     AND alarms.cause = v.column4 WHERE alarms.state <> 'cleared' AND v.column5{}",
                    values(5, shape),
                    if sqlite { "" } else { " FOR UPDATE OF alarms" }
                )
            });
            let mut q = many_as::<AlarmRow>(sql);
            for (k, keep) in padded(chunk, shape) {
                q = q
                    .bind(k.site.clone())
                    .bind(k.node.clone())
                    .bind(k.channel.clone())
                    .bind(k.cause.clone())
                    .bind(keep);
            }
            found.extend(q.fetch_all(&mut *self.tx).await?);
        }
        self.alarms.loaded(&ask, found);
        Ok(())
    }

    /// `n` fresh alarm ids, ascending: what `n` inserts would have been
    /// given, so rows written later keep the order they were raised in.
    async fn alarm_ids(&mut self, n: usize) -> Result<Vec<i64>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if self.sqlite {
            // The write lock is held from `BEGIN IMMEDIATE`: no one else
            // inserts meanwhile, and this transaction's own rows are
            // counted here until they are written.
            let next = match self.next_alarm_id {
                Some(next) => next,
                None => {
                    sqlx::query_scalar::<_, i64>(
                        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'alarms'), 0), \
                         COALESCE((SELECT MAX(id) FROM alarms), 0)) + 1",
                    )
                    .fetch_one(&mut *self.tx)
                    .await?
                }
            };
            self.next_alarm_id = Some(next + n as i64);
            return Ok((next..next + n as i64).collect());
        }
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "SELECT nextval(pg_get_serial_sequence('alarms', 'id')) FROM generate_series(1::bigint, $1)",
        )
        .bind(n as i64)
        .fetch_all(&mut *self.tx)
        .await?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// Writes the alarm rows changed in memory ([`Batch::alarms`]): each
    /// once, in its last state; standing rows first (one may have been
    /// cleared for a new one of its key to stand).
    pub(super) async fn flush_alarms(&mut self) -> Result<(), StoreError> {
        let Flush { updates, inserts } = self.alarms.take();
        for (chunk, shape) in chunked(&updates) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "UPDATE alarms SET level = v.column2, state = v.column3, value = v.column4, setpoint = v.column5, \
                     peak = v.column6, suppressed = v.column7, updated_at = v.column8, cleared_at = v.column9, \
                     ticket_id = v.column10 FROM (VALUES {}) AS v WHERE alarms.id = v.column1 AND v.column11",
                    values(11, shape)
                )
            });
            let mut q = super::many(sql);
            for (r, keep) in padded(chunk, shape) {
                q = q
                    .bind(r.id)
                    .bind(r.level.clone())
                    .bind(r.state.clone())
                    .bind(r.value)
                    .bind(r.setpoint)
                    .bind(r.peak)
                    .bind(r.suppressed)
                    .bind(r.updated_at)
                    .bind(r.cleared_at)
                    .bind(r.ticket_id)
                    .bind(keep);
            }
            q.execute(&mut *self.tx).await?;
        }
        for (chunk, shape) in chunked(&inserts) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "INSERT INTO alarms (id, site, node, channel, cause, kind, level, state, quantity, value, setpoint, \
                     peak, raised_at, updated_at, cleared_at, ticket_id, suppressed) \
                     SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9, column10, \
                     column11, column12, column13, column14, column15, column16, column17 \
                     FROM (VALUES {}) AS v WHERE v.column18",
                    values(18, shape)
                )
            });
            let mut q = super::many(sql);
            for (r, keep) in padded(chunk, shape) {
                q = q
                    .bind(r.id)
                    .bind(r.site.clone())
                    .bind(r.node.clone())
                    .bind(r.channel.clone())
                    .bind(r.cause.clone())
                    .bind(r.kind.clone())
                    .bind(r.level.clone())
                    .bind(r.state.clone())
                    .bind(r.quantity.clone())
                    .bind(r.value)
                    .bind(r.setpoint)
                    .bind(r.peak)
                    .bind(r.raised_at)
                    .bind(r.updated_at)
                    .bind(r.cleared_at)
                    .bind(r.ticket_id)
                    .bind(r.suppressed)
                    .bind(keep);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Raises (or updates) the standing alarm of each input, linking those
    /// with a ticket spec to the open ticket of their key (opening or
    /// reopening one where there is none). The keys must be distinct.
    /// Answers in the order of `items`.
    pub async fn raise_many(
        &mut self,
        items: &[(&AlarmInput, Option<&TicketSpec>)],
    ) -> Result<Vec<(AlarmRow, Option<TicketOutcome>)>, StoreError> {
        let at_of = |i: usize| items[i].0.at as i64;
        let pos = positions(items.iter().map(|(a, _)| &a.key));
        debug_assert_eq!(pos.len(), items.len(), "raise_many: keys must be distinct");
        // 1. Standing rows change in memory (written once, at the flush).
        self.load_standing(items.iter().map(|(a, _)| &a.key))
            .await?;
        let mut standing: Vec<Option<AlarmRow>> = items
            .iter()
            .map(|(a, _)| self.alarms.raise_standing(a))
            .collect();
        // 2. Tickets first, so that a fresh alarm is made already linked.
        //    Wanted: a spec and no ticket on the standing row, if any.
        let mut outcomes: Vec<Option<TicketOutcome>> = standing
            .iter()
            .map(|r| {
                r.as_ref()
                    .and_then(|r| r.ticket_id)
                    .map(|id| TicketOutcome::AlreadyLinked { id })
            })
            .collect();
        let wanted: Vec<usize> = (0..items.len())
            .filter(|&i| outcomes[i].is_none() && items[i].1.is_some())
            .collect();
        // 2a. Attached to the open ticket of the key: known already in
        //    this transaction, or found (and counted) in one statement for
        //    the rest. Counts and events of the known ones are owed until
        //    the commit (see `Attachments`).
        let mut ask: Vec<usize> = Vec::new();
        for &i in &wanted {
            match self.attached.open.get(&items[i].0.key) {
                Some((id, number)) => {
                    outcomes[i] = Some(TicketOutcome::Attached {
                        id: *id,
                        number: number.clone(),
                    });
                    let owed = self.attached.uncounted.entry(*id).or_insert((0, 0));
                    owed.0 += 1;
                    owed.1 = at_of(i);
                }
                None => ask.push(i),
            }
        }
        for (chunk, shape) in chunked(&ask) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "UPDATE tickets SET alarm_count = alarm_count + 1, last_alarm_at = v.column5, updated_at = v.column5 \
                     FROM (VALUES {}) AS v \
                     WHERE tickets.site = v.column1 AND tickets.node = v.column2 AND tickets.channel = v.column3 \
                     AND tickets.cause = v.column4 AND tickets.status <> 'closed' AND v.column6 \
                     RETURNING id, number, site, node, channel, cause",
                    values(6, shape)
                )
            });
            let mut q = many_as::<(i64, String, String, String, String, String)>(sql);
            for (&i, keep) in padded(chunk, shape) {
                let k = &items[i].0.key;
                q = q
                    .bind(k.site.clone())
                    .bind(k.node.clone())
                    .bind(k.channel.clone())
                    .bind(k.cause.clone())
                    .bind(at_of(i))
                    .bind(keep);
            }
            for (id, number, site, node, channel, cause) in q.fetch_all(&mut *self.tx).await? {
                let key = AlarmKey {
                    site,
                    node,
                    channel,
                    cause,
                };
                if let Some(&i) = pos.get(&key) {
                    outcomes[i] = Some(TicketOutcome::Attached {
                        id,
                        number: number.clone(),
                    });
                }
                self.attached.open.insert(key, (id, number));
            }
        }
        let attached_to = |o: &Option<TicketOutcome>| match o {
            Some(TicketOutcome::Attached { id, .. }) => Some(*id),
            _ => None,
        };
        // 3. New rows for the keys with nothing standing, linked to the
        //    ticket they were attached to.
        let fresh: Vec<usize> = (0..items.len())
            .filter(|&i| standing[i].is_none())
            .collect();
        let ids = self.alarm_ids(fresh.len()).await?;
        for (&i, id) in fresh.iter().zip(ids) {
            let row = self
                .alarms
                .insert(id, items[i].0, attached_to(&outcomes[i]));
            standing[i] = Some(row);
        }
        let mut rows: Vec<AlarmRow> = standing
            .into_iter()
            .map(|r| r.ok_or(StoreError::Db(sqlx::Error::RowNotFound)))
            .collect::<Result<_, _>>()?;
        if wanted.is_empty() {
            return Ok(rows.into_iter().zip(outcomes).collect());
        }
        // 4. An event on each ticket attached to, owed until the commit.
        for &i in &wanted {
            if let Some(id) = attached_to(&outcomes[i]) {
                self.attached.events.push((id, at_of(i), rows[i].id));
            }
        }
        // 5. No open ticket: reopened within its window, or opened (rare:
        //    once per hazard), one key at a time, after what is owed
        //    (ticket events stay in order; readings owed are linked to the
        //    tickets open before this one).
        if wanted.iter().any(|&i| outcomes[i].is_none()) {
            self.flush_owed().await?;
        }
        for &i in &wanted {
            if outcomes[i].is_none() {
                let (a, spec) = items[i];
                let spec = spec.expect("wanted has a spec");
                let outcome =
                    open_or_attach(&mut self.tx, &a.key, spec, rows[i].id, at_of(i)).await?;
                if let TicketOutcome::Opened { id, number }
                | TicketOutcome::Reopened { id, number }
                | TicketOutcome::Attached { id, number } = &outcome
                {
                    self.attached
                        .open
                        .insert(a.key.clone(), (*id, number.clone()));
                }
                outcomes[i] = Some(outcome);
            }
        }
        // 6. The alarms not yet pointing at their tickets (standing rows
        //    attached now, tickets opened or reopened) do.
        for &i in &wanted {
            if let Some(
                TicketOutcome::Opened { id, .. }
                | TicketOutcome::Attached { id, .. }
                | TicketOutcome::Reopened { id, .. }
                | TicketOutcome::AlreadyLinked { id },
            ) = &outcomes[i]
            {
                if rows[i].ticket_id.is_none() {
                    self.alarms.set_ticket(&items[i].0.key, *id);
                    rows[i].ticket_id = Some(*id);
                }
            }
        }
        Ok(rows.into_iter().zip(outcomes).collect())
    }

    /// Latches or clears the standing alarm of each key (distinct keys).
    /// Answers, in the order of `items`, each row or `None` where nothing
    /// was standing.
    pub async fn settle_many(
        &mut self,
        items: &[Settle<'_>],
    ) -> Result<Vec<Option<AlarmRow>>, StoreError> {
        self.settle_and_relevel(items, &[]).await
    }

    /// Settles the standing alarms of `settles` and re-levels those of
    /// `levels` in one statement (keys distinct across both); answers
    /// [`Self::settle_many`]'s rows for `settles`.
    pub async fn settle_and_relevel(
        &mut self,
        settles: &[Settle<'_>],
        levels: &[Relevel<'_>],
    ) -> Result<Vec<Option<AlarmRow>>, StoreError> {
        let keys = settles.iter().map(|s| s.key);
        self.load_standing(keys.chain(levels.iter().map(|r| r.key)))
            .await?;
        let out = settles
            .iter()
            .map(|s| {
                self.alarms
                    .change(s.key, Some(s.state), None, s.value, s.at)
            })
            .collect();
        for r in levels {
            self.alarms
                .change(r.key, None, Some(r.level), Some(r.value), r.at);
        }
        Ok(out)
    }

    /// Changes the level of each key's standing alarm (distinct keys).
    pub async fn set_level_many(&mut self, items: &[Relevel<'_>]) -> Result<(), StoreError> {
        self.settle_and_relevel(&[], items).await.map(|_| ())
    }

    /// Keeps each reading with every open ticket on its channel; answers
    /// how many links were made.
    pub async fn link_readings(&mut self, rows: &[LinkedReading<'_>]) -> Result<u64, StoreError> {
        let mut linked = 0;
        for (chunk, shape) in chunked(rows) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "INSERT INTO ticket_readings (ticket_id, at, quantity, value, status, level, abnormal) \
                     SELECT t.id, v.column4, v.column5, v.column6, v.column7, v.column8, v.column9 \
                     FROM (VALUES {}) AS v JOIN tickets t \
                     ON t.site = v.column1 AND t.node = v.column2 AND t.channel = v.column3 \
                     WHERE t.status <> 'closed' AND v.column10",
                    values(10, shape)
                )
            });
            let mut q = super::many(sql);
            for (r, keep) in padded(chunk, shape) {
                q = q
                    .bind(r.site.to_string())
                    .bind(r.node.to_string())
                    .bind(r.channel.to_string())
                    .bind(r.at as i64)
                    .bind(r.quantity.to_string())
                    .bind(r.value)
                    .bind(r.status.to_string())
                    .bind(r.level.to_string())
                    .bind(r.abnormal)
                    .bind(keep);
            }
            linked += q.execute(&mut *self.tx).await?.rows_affected();
        }
        Ok(linked)
    }
}
