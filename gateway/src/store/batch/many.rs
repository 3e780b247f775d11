//! Set-based writes: many alarms raised, settled or re-levelled, many
//! readings linked, each in a few statements however many rows there are.
//!
//! The alarm path writes a batch's effects in rounds (see
//! `pipeline::effects`): within a round every channel has at most one
//! change, so the rows of a round are independent of each other and one
//! `UPDATE … FROM (VALUES …)` (SQLite ≥ 3.33 and PostgreSQL alike) can
//! take all of them. Each statement costs a round trip to the database's
//! worker (SQLite) or server (PostgreSQL); an alarm storm that wrote one
//! statement per change spent most of its time in those round trips.
//!
//! Rows are matched back to their inputs by key, never by the order of
//! `RETURNING` rows (which neither database promises).

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

/// A standing alarm's key, new state or new level, value and time: a row
/// of [`Batch::settle_and_relevel`].
type StandingChange<'a> = (
    &'a AlarmKey,
    Option<&'a str>,
    Option<&'a str>,
    Option<i32>,
    u64,
);

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

fn key_of(row: &AlarmRow) -> AlarmKey {
    AlarmKey {
        site: row.site.clone(),
        node: row.node.clone(),
        channel: row.channel.clone(),
        cause: row.cause.clone(),
    }
}

/// Where each key sits in the input (keys of one call are distinct).
fn positions<'a>(keys: impl Iterator<Item = &'a AlarmKey>) -> HashMap<&'a AlarmKey, usize> {
    let map: HashMap<_, _> = keys.enumerate().map(|(i, k)| (k, i)).collect();
    map
}

impl Batch {
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
        let mut standing: Vec<Option<AlarmRow>> = vec![None; items.len()];
        // 1. Standing rows updated in place (the partial unique index
        //    allows one per key).
        for (chunk, shape) in chunked(items) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "UPDATE alarms SET level = v.column5, state = 'active', value = v.column6, setpoint = v.column7, \
                     peak = CASE WHEN v.column6 IS NULL THEN peak WHEN peak IS NULL OR v.column6 > peak THEN v.column6 ELSE peak END, \
                     suppressed = suppressed AND v.column8, updated_at = v.column9 \
                     FROM (VALUES {}) AS v \
                     WHERE alarms.site = v.column1 AND alarms.node = v.column2 AND alarms.channel = v.column3 \
                     AND alarms.cause = v.column4 AND alarms.state <> 'cleared' AND v.column10 \
                     RETURNING {ALARM_COLUMNS}",
                    values(10, shape)
                )
            });
            let mut q = many_as::<AlarmRow>(sql);
            for ((a, _), keep) in padded(chunk, shape) {
                q = q
                    .bind(a.key.site.clone())
                    .bind(a.key.node.clone())
                    .bind(a.key.channel.clone())
                    .bind(a.key.cause.clone())
                    .bind(a.level)
                    .bind(a.value)
                    .bind(a.setpoint)
                    .bind(a.suppressed)
                    .bind(a.at as i64)
                    .bind(keep);
            }
            for row in q.fetch_all(&mut *self.tx).await? {
                if let Some(&i) = pos.get(&key_of(&row)) {
                    standing[i] = Some(row);
                }
            }
        }
        // 2. Tickets first, so that a fresh alarm is inserted already
        //    linked (updating `ticket_id` afterwards rewrote every index of
        //    the row: in a storm, the costliest statement of the batch).
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
        for (chunk, shape) in chunked(&fresh) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "INSERT INTO alarms (site, node, channel, cause, kind, level, state, quantity, value, setpoint, peak, \
                     raised_at, updated_at, suppressed, ticket_id) \
                     SELECT column1, column2, column3, column4, column5, column6, 'active', column7, column8, column9, \
                     column10, column11, column12, column13, column15 FROM (VALUES {}) AS v WHERE v.column14 \
                     RETURNING {ALARM_COLUMNS}",
                    values(15, shape)
                )
            });
            let mut q = many_as::<AlarmRow>(sql);
            for (&i, keep) in padded(chunk, shape) {
                let a = items[i].0;
                q = q
                    .bind(a.key.site.clone())
                    .bind(a.key.node.clone())
                    .bind(a.key.channel.clone())
                    .bind(a.key.cause.clone())
                    .bind(a.kind)
                    .bind(a.level)
                    .bind(a.quantity)
                    .bind(a.value)
                    .bind(a.setpoint)
                    .bind(a.value)
                    .bind(a.at as i64)
                    .bind(a.at as i64)
                    .bind(a.suppressed)
                    .bind(keep)
                    .bind(attached_to(&outcomes[i]));
            }
            for row in q.fetch_all(&mut *self.tx).await? {
                if let Some(&i) = pos.get(&key_of(&row)) {
                    standing[i] = Some(row);
                }
            }
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
        //    attached now, tickets opened or reopened) do. Nothing else of
        //    the rows changes, so they are not read back.
        let links: Vec<(usize, i64)> = wanted
            .iter()
            .filter_map(|&i| match &outcomes[i] {
                Some(
                    TicketOutcome::Opened { id, .. }
                    | TicketOutcome::Attached { id, .. }
                    | TicketOutcome::Reopened { id, .. }
                    | TicketOutcome::AlreadyLinked { id },
                ) => Some((i, *id)),
                None => None,
            })
            .filter(|&(i, _)| rows[i].ticket_id.is_none())
            .collect();
        for (chunk, shape) in chunked(&links) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "UPDATE alarms SET ticket_id = v.column2 FROM (VALUES {}) AS v \
                     WHERE alarms.id = v.column1 AND v.column3",
                    values(3, shape)
                )
            });
            let mut q = super::many(sql);
            for ((i, ticket), keep) in padded(chunk, shape) {
                q = q.bind(rows[*i].id).bind(*ticket).bind(keep);
            }
            q.execute(&mut *self.tx).await?;
        }
        for (i, ticket) in links {
            rows[i].ticket_id = Some(ticket);
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
        // A row settles (a state, its level kept) or re-levels (a level,
        // its state kept); both may carry a value, kept when absent.
        let rows: Vec<StandingChange<'_>> = settles
            .iter()
            .map(|s| (s.key, Some(s.state), None, s.value, s.at))
            .chain(
                levels
                    .iter()
                    .map(|r| (r.key, None, Some(r.level), Some(r.value), r.at)),
            )
            .collect();
        let pos = positions(settles.iter().map(|s| s.key));
        let mut out = vec![None; settles.len()];
        for (chunk, shape) in chunked(&rows) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "UPDATE alarms SET state = COALESCE(v.column5, alarms.state), \
                     level = COALESCE(v.column6, alarms.level), value = COALESCE(v.column7, alarms.value), \
                     updated_at = v.column8, \
                     cleared_at = CASE WHEN v.column5 = 'cleared' THEN v.column8 ELSE cleared_at END \
                     FROM (VALUES {}) AS v \
                     WHERE alarms.site = v.column1 AND alarms.node = v.column2 AND alarms.channel = v.column3 \
                     AND alarms.cause = v.column4 AND alarms.state <> 'cleared' AND v.column9 \
                     RETURNING {ALARM_COLUMNS}",
                    values(9, shape)
                )
            });
            let mut q = many_as::<AlarmRow>(sql);
            for ((key, state, level, value, at), keep) in padded(chunk, shape) {
                q = q
                    .bind(key.site.clone())
                    .bind(key.node.clone())
                    .bind(key.channel.clone())
                    .bind(key.cause.clone())
                    .bind(state.map(str::to_string))
                    .bind(level.map(str::to_string))
                    .bind(*value)
                    .bind(*at as i64)
                    .bind(keep);
            }
            for row in q.fetch_all(&mut *self.tx).await? {
                if let Some(&i) = pos.get(&key_of(&row)) {
                    out[i] = Some(row);
                }
            }
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
