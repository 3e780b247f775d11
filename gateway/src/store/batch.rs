//! One write transaction for many changes: the alarm path commits each
//! batch of messages with everything it caused — channel states, alarm
//! rows, the alarm log, tickets opened or attached, audit records, linked
//! readings — in ONE transaction ([`Store::batch`]), so either all of a
//! batch is in the database or none of it is.
//!
//! The same methods back the store's one-shot calls ([`Store::raise`],
//! [`Store::settle`], …), which open a batch, do one thing and commit: the
//! SQL is written once.
//!
//! A batch holds the audit chain's lock from begin to commit or drop
//! (tickets opened inside it append to the hash-chained audit log), and in
//! SQLite the database's write lock (`BEGIN IMMEDIATE`). Dropping a batch
//! without [`Batch::commit`] rolls it back.

use super::{
    alarm_by_id, append_audit, open_or_attach, query, query_as, AlarmInput, AlarmKey, AlarmRow,
    AuditEntry, BaselineRow, LinkedReading, LogEntry, Store, StoreError, TicketOutcome, TicketSpec,
    ALARM_COLUMNS,
};
use sqlx::{Any, Transaction};
use tokio::sync::OwnedMutexGuard;

/// Rows in one multi-row statement (SQLite allows 32,766 parameters).
const ROWS_PER_STATEMENT: usize = 200;

/// A many-row statement, placeholders as the backend takes them best.
fn many(sqlite: bool, sql: &str) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    if sqlite {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
    } else {
        query(sql)
    }
}

/// `(?, ?, …), (?, ?, …)…`: `rows` groups of `columns` placeholders.
fn values(columns: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; columns].join(", "));
    vec![one; rows].join(", ")
}

/// An open write transaction (see the module docs).
pub struct Batch {
    tx: Transaction<'static, Any>,
    /// SQLite takes the many-row statements with plain `?` placeholders:
    /// it looks each numbered one (`$N`, what [`super::portable`] writes)
    /// up by a linear scan, which made a 2,000-parameter statement cost
    /// milliseconds.
    sqlite: bool,
    _chain: OwnedMutexGuard<()>,
}

impl Store {
    /// Begins one write transaction for many changes.
    pub async fn batch(&self) -> Result<Batch, StoreError> {
        let chain = self.audit_lock.clone().lock_owned().await;
        let tx = self.begin().await?;
        Ok(Batch {
            tx,
            sqlite: self.backend == super::Backend::Sqlite,
            _chain: chain,
        })
    }
}

impl Batch {
    /// Makes every change of the batch durable at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Raises (or updates) the standing alarm for `a.key`; with a ticket
    /// spec, links it to the open ticket for the same key, opening one if
    /// there is none.
    pub async fn raise(
        &mut self,
        a: &AlarmInput,
        ticket: Option<&TicketSpec>,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        let tx = &mut self.tx;
        let k = &a.key;
        let at = a.at as i64;
        // One statement each way: the standing row updated in place (the
        // partial unique index allows one), or a new one inserted.
        let updated: Option<AlarmRow> = query_as(&format!(
            "UPDATE alarms SET level = ?, state = 'active', value = ?, setpoint = ?, \
             peak = CASE WHEN ? IS NULL THEN peak WHEN peak IS NULL OR ? > peak THEN ? ELSE peak END, \
             suppressed = suppressed AND ?, updated_at = ? \
             WHERE site = ? AND node = ? AND channel = ? AND cause = ? AND state <> 'cleared' \
             RETURNING {ALARM_COLUMNS}"
        ))
        .bind(a.level)
        .bind(a.value)
        .bind(a.setpoint)
        .bind(a.value)
        .bind(a.value)
        .bind(a.value)
        .bind(a.suppressed)
        .bind(at)
        .bind(&k.site)
        .bind(&k.node)
        .bind(&k.channel)
        .bind(&k.cause)
        .fetch_optional(&mut **tx)
        .await?;
        let row = match updated {
            Some(row) => row,
            None => {
                query_as(&format!(
                    "INSERT INTO alarms (site, node, channel, cause, kind, level, state, quantity, value, setpoint, peak, \
                     raised_at, updated_at, suppressed) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?) \
                     RETURNING {ALARM_COLUMNS}"
                ))
                .bind(&k.site)
                .bind(&k.node)
                .bind(&k.channel)
                .bind(&k.cause)
                .bind(a.kind)
                .bind(a.level)
                .bind(a.quantity)
                .bind(a.value)
                .bind(a.setpoint)
                .bind(a.value)
                .bind(at)
                .bind(at)
                .bind(a.suppressed)
                .fetch_one(&mut **tx)
                .await?
            }
        };
        let outcome = match (ticket, row.ticket_id) {
            (_, Some(id)) => return Ok((row, Some(TicketOutcome::AlreadyLinked { id }))),
            (None, None) => return Ok((row, None)),
            (Some(spec), None) => open_or_attach(tx, k, spec, row.id, at).await?,
        };
        let tid = match &outcome {
            TicketOutcome::Opened { id, .. }
            | TicketOutcome::Attached { id, .. }
            | TicketOutcome::Reopened { id, .. }
            | TicketOutcome::AlreadyLinked { id } => *id,
        };
        let row = query_as(&format!(
            "UPDATE alarms SET ticket_id = ? WHERE id = ? RETURNING {ALARM_COLUMNS}"
        ))
        .bind(tid)
        .bind(row.id)
        .fetch_one(&mut **tx)
        .await?;
        Ok((row, Some(outcome)))
    }

    /// Moves the standing alarm for `key` to `latched` or `cleared`. Returns
    /// the row, or `None` when nothing was standing.
    pub async fn settle(
        &mut self,
        key: &AlarmKey,
        state: &'static str,
        value: Option<i32>,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError> {
        let at = at as i64;
        Ok(query_as(&format!(
            "UPDATE alarms SET state = ?, value = COALESCE(?, value), updated_at = ?, \
             cleared_at = CASE WHEN ? = 'cleared' THEN ? ELSE cleared_at END \
             WHERE site = ? AND node = ? AND channel = ? AND cause = ? AND state <> 'cleared' \
             RETURNING {ALARM_COLUMNS}"
        ))
        .bind(state)
        .bind(value)
        .bind(at)
        .bind(state)
        .bind(at)
        .bind(&key.site)
        .bind(&key.node)
        .bind(&key.channel)
        .bind(&key.cause)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    /// Changes the level of a standing alarm (e.g. 报警 back to 预警).
    pub async fn set_level(
        &mut self,
        key: &AlarmKey,
        level: &'static str,
        value: i32,
        at: u64,
    ) -> Result<(), StoreError> {
        query(
            "UPDATE alarms SET level = ?, value = ?, updated_at = ? \
             WHERE site = ? AND node = ? AND channel = ? AND cause = ? AND state <> 'cleared'",
        )
        .bind(level)
        .bind(value)
        .bind(at as i64)
        .bind(&key.site)
        .bind(&key.node)
        .bind(&key.channel)
        .bind(&key.cause)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Appends a rule transition to the alarm log.
    pub async fn log_transition(&mut self, e: &LogEntry<'_>) -> Result<(), StoreError> {
        self.log_transitions(std::slice::from_ref(e)).await
    }

    /// Appends many rule transitions to the alarm log, in order, a few
    /// statements for all of them.
    pub async fn log_transitions(&mut self, rows: &[LogEntry<'_>]) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO alarm_log (at, site, node, channel, cause, transition, level, value, disposition, actor) VALUES {}",
                values(10, chunk.len())
            );
            let mut q = many(self.sqlite, &sql);
            for e in chunk {
                q = q
                    .bind(e.at as i64)
                    .bind(e.key.site.clone())
                    .bind(e.key.node.clone())
                    .bind(e.key.channel.clone())
                    .bind(e.key.cause.clone())
                    .bind(e.transition)
                    .bind(e.level)
                    .bind(e.value)
                    .bind(e.disposition)
                    .bind(e.actor.to_string());
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Saves many channels' rule state (site, node, channel, quantity,
    /// state JSON, at), one row each, a few statements for all.
    pub async fn save_channel_states(
        &mut self,
        rows: &[(&str, &str, &str, &str, &str, u64)],
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO channel_state (site, node, channel, quantity, state, updated_at) VALUES {} \
                 ON CONFLICT (site, node, channel) DO UPDATE SET quantity = excluded.quantity, state = excluded.state, \
                 updated_at = excluded.updated_at",
                values(6, chunk.len())
            );
            let mut q = many(self.sqlite, &sql);
            for (site, node, channel, quantity, state, at) in chunk {
                q = q
                    .bind(site.to_string())
                    .bind(node.to_string())
                    .bind(channel.to_string())
                    .bind(quantity.to_string())
                    .bind(state.to_string())
                    .bind(*at as i64);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Saves nodes' de-duplication windows (site, node, state), one row each.
    pub async fn save_node_seqs(&mut self, rows: &[(&str, &str, &str)]) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO node_seq (site, node, state) VALUES {} \
                 ON CONFLICT (site, node) DO UPDATE SET state = excluded.state",
                values(3, chunk.len())
            );
            let mut q = many(self.sqlite, &sql);
            for (site, node, state) in chunk {
                q = q
                    .bind(site.to_string())
                    .bind(node.to_string())
                    .bind(state.to_string());
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Marks standing alarms of a site with `cause` suppressed (their root
    /// cause is now reported higher up, e.g. the site's uplink).
    pub async fn suppress_standing(
        &mut self,
        site: &str,
        cause: &str,
        at: u64,
    ) -> Result<u64, StoreError> {
        Ok(query(
            "UPDATE alarms SET suppressed = TRUE, updated_at = ? WHERE site = ? AND cause = ? AND state <> 'cleared' AND suppressed = FALSE",
        )
        .bind(at as i64)
        .bind(site)
        .bind(cause)
        .execute(&mut *self.tx)
        .await?
        .rows_affected())
    }

    /// Marks the standing alarm for `key` as flapping or not.
    pub async fn set_flapping(
        &mut self,
        key: &AlarmKey,
        flapping: bool,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError> {
        Ok(query_as(&format!(
            "UPDATE alarms SET flapping = ?, updated_at = ? \
             WHERE site = ? AND node = ? AND channel = ? AND cause = ? AND state <> 'cleared' \
             RETURNING {ALARM_COLUMNS}"
        ))
        .bind(flapping)
        .bind(at as i64)
        .bind(&key.site)
        .bind(&key.node)
        .bind(&key.channel)
        .bind(&key.cause)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    /// Standing alarms of a node (or every node of a site) that were
    /// raised suppressed.
    pub async fn suppressed_standing(
        &mut self,
        site: &str,
        node: Option<&str>,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE site = ? AND (? IS NULL OR node = ?) \
             AND state <> 'cleared' AND suppressed = TRUE ORDER BY id"
        );
        Ok(query_as(&sql)
            .bind(site)
            .bind(node)
            .bind(node)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    /// Links a standing alarm to a ticket (opening, attaching or reopening
    /// one), optionally lifting its suppression first.
    pub async fn link_ticket(
        &mut self,
        id: i64,
        ticket: Option<&TicketSpec>,
        unsuppress: bool,
        at: u64,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        let tx = &mut self.tx;
        if unsuppress {
            query("UPDATE alarms SET suppressed = FALSE, updated_at = ? WHERE id = ?")
                .bind(at as i64)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        let row = alarm_by_id(tx, id).await?;
        let key = AlarmKey {
            site: row.site.clone(),
            node: row.node.clone(),
            channel: row.channel.clone(),
            cause: row.cause.clone(),
        };
        let outcome = match (ticket, row.ticket_id) {
            (Some(spec), None) => {
                let o = open_or_attach(tx, &key, spec, id, at as i64).await?;
                if let TicketOutcome::Opened { id: t, .. }
                | TicketOutcome::Attached { id: t, .. }
                | TicketOutcome::Reopened { id: t, .. } = &o
                {
                    query("UPDATE alarms SET ticket_id = ? WHERE id = ?")
                        .bind(t)
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                }
                Some(o)
            }
            _ => None,
        };
        let row = alarm_by_id(tx, id).await?;
        Ok((row, outcome))
    }

    /// Saves a channel's rule state (JSON of `rules::ChannelState`).
    pub async fn save_channel_state(
        &mut self,
        site: &str,
        node: &str,
        channel: &str,
        quantity: &str,
        state: &str,
        at: u64,
    ) -> Result<(), StoreError> {
        self.save_channel_states(&[(site, node, channel, quantity, state, at)])
            .await
    }

    /// Keeps a reading with every open ticket on its channel; returns how
    /// many tickets it was linked to (0 when none is open).
    pub async fn link_reading(&mut self, r: &LinkedReading<'_>) -> Result<u64, StoreError> {
        Ok(query(
            "INSERT INTO ticket_readings (ticket_id, at, quantity, value, status, level, abnormal) \
             SELECT id, ?, ?, ?, ?, ?, ? FROM tickets \
             WHERE site = ? AND node = ? AND channel = ? AND status <> 'closed'",
        )
        .bind(r.at as i64)
        .bind(r.quantity)
        .bind(r.value)
        .bind(r.status)
        .bind(r.level)
        .bind(r.abnormal)
        .bind(r.site)
        .bind(r.node)
        .bind(r.channel)
        .execute(&mut *self.tx)
        .await?
        .rows_affected())
    }

    /// Records a self-test's end, once.
    pub async fn finish_selftest(
        &mut self,
        id: i64,
        at: u64,
        passed: bool,
        channels_json: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        query(
            "UPDATE selftests SET finished_at = ?, result = ?, channels = ?, reason = ? \
             WHERE id = ? AND finished_at IS NULL",
        )
        .bind(at as i64)
        .bind(if passed { "passed" } else { "failed" })
        .bind(channels_json)
        .bind(reason)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records a learned baseline, once per channel (a second record is a
    /// no-op: the first one stands).
    pub async fn save_baseline(&mut self, row: &BaselineRow) -> Result<(), StoreError> {
        query(
            "INSERT INTO baselines (site, node, channel, quantity, learned_at, baseline, recommendation) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, node, channel) DO NOTHING",
        )
        .bind(&row.site)
        .bind(&row.node)
        .bind(&row.channel)
        .bind(&row.quantity)
        .bind(row.learned_at)
        .bind(&row.baseline)
        .bind(&row.recommendation)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Appends one record to the hash-chained audit log.
    pub async fn audit(&mut self, e: &AuditEntry<'_>) -> Result<(), StoreError> {
        append_audit(&mut self.tx, e).await
    }
}
