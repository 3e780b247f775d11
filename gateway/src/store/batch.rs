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

use super::alarms::{alarm_by_id, ALARM_COLUMNS};
use super::audit::append_audit;
use super::tickets::open_or_attach;
use super::{
    query, query_as, AlarmInput, AlarmKey, AlarmRow, AuditEntry, BaselineRow, LinkedReading,
    LogEntry, Store, StoreError, TicketOutcome, TicketSpec,
};
use sqlx::{Any, Transaction};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

mod many;
mod pending;
pub use many::{Relevel, Settle};
use tokio::sync::OwnedMutexGuard;

/// Most rows in one many-row statement (SQLite takes 32,766 parameters).
const ROWS_PER_STATEMENT: usize = 256;

/// Splits `rows` into chunks of at most [`ROWS_PER_STATEMENT`], each with
/// the number of rows its statement has: the next power of two, the rows
/// after the chunk's own being copies of its first row that the statement
/// skips (a last column, `keep`, is false for them). A many-row statement
/// costs more to prepare than to run: with nine shapes per kind they stay
/// in each connection's prepared-statement cache, and a round of changes
/// is still one statement.
fn chunked<T>(rows: &[T]) -> impl Iterator<Item = (&[T], usize)> {
    rows.chunks(ROWS_PER_STATEMENT)
        .map(|chunk| (chunk, chunk.len().next_power_of_two()))
}

/// A chunk's rows then its padding, each with `keep`.
fn padded<T>(chunk: &[T], shape: usize) -> impl Iterator<Item = (&T, bool)> {
    let pad = std::iter::repeat_n((&chunk[0], false), shape - chunk.len());
    chunk.iter().map(|r| (r, true)).chain(pad)
}

/// A many-row statement's text, made once per call site, backend and
/// shape (`site` is the caller's `(file!(), line!())`) and kept: `build`
/// writes it with `?` placeholders, and PostgreSQL's copy is numbered
/// (`$N`, [`super::portable`]) once. Rewriting and renumbering up to
/// 3,840 placeholders for every statement cost the writer tens of
/// microseconds a statement while PostgreSQL waited for it.
fn shaped(
    sqlite: bool,
    site: (&'static str, u32),
    shape: usize,
    build: impl FnOnce() -> String,
) -> Arc<str> {
    type Key = (bool, &'static str, u32, usize);
    static TEXTS: LazyLock<Mutex<HashMap<Key, Arc<str>>>> = LazyLock::new(Default::default);
    let key = (sqlite, site.0, site.1, shape);
    if let Some(sql) = TEXTS.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return sql.clone();
    }
    let sql = build();
    // SQLite takes plain `?` best (see `Batch::sqlite`).
    let sql: Arc<str> = if sqlite {
        sql.into()
    } else {
        super::portable(&sql).into()
    };
    TEXTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, sql.clone());
    sql
}

/// A many-row statement (its text from [`shaped`]).
fn many(sql: Arc<str>) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
}

/// `(?, ?, …), (?, ?, …)…`: `rows` groups of `columns` placeholders.
fn values(columns: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; columns].join(", "));
    vec![one; rows].join(", ")
}

/// The writes of one pipeline batch, whatever carries them out: [`Batch`]
/// (sqlx, both backends) or [`super::LocalBatch`] (the SQLite writer
/// thread). The effect writer (`alarms::pipeline::effects::write`) is
/// written once against this.
#[allow(async_fn_in_trait)]
pub trait BatchWrite {
    /// See [`Batch::raise_many`].
    async fn raise_many(
        &mut self,
        items: &[(&AlarmInput, Option<&TicketSpec>)],
    ) -> Result<Vec<(AlarmRow, Option<TicketOutcome>)>, StoreError>;
    /// See [`Batch::settle_many`].
    async fn settle_many(
        &mut self,
        items: &[Settle<'_>],
    ) -> Result<Vec<Option<AlarmRow>>, StoreError>;
    /// See [`Batch::set_level_many`].
    async fn set_level_many(&mut self, items: &[Relevel<'_>]) -> Result<(), StoreError>;
    /// See [`Batch::log_transitions`].
    async fn log_transitions(&mut self, rows: &[LogEntry<'_>]) -> Result<(), StoreError>;
    /// See [`Batch::save_channel_states`].
    async fn save_channel_states(
        &mut self,
        rows: &[(&str, &str, &str, &str, &str, u64)],
    ) -> Result<(), StoreError>;
    /// See [`Batch::save_node_seqs`].
    async fn save_node_seqs(&mut self, rows: &[(&str, &str, &str)]) -> Result<(), StoreError>;
    /// See [`Batch::suppress_standing`].
    async fn suppress_standing(
        &mut self,
        site: &str,
        cause: &str,
        at: u64,
    ) -> Result<u64, StoreError>;
    /// See [`Batch::set_flapping`].
    async fn set_flapping(
        &mut self,
        key: &AlarmKey,
        flapping: bool,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError>;
    /// See [`Batch::suppressed_standing`].
    async fn suppressed_standing(
        &mut self,
        site: &str,
        node: Option<&str>,
    ) -> Result<Vec<AlarmRow>, StoreError>;
    /// See [`Batch::link_ticket`].
    async fn link_ticket(
        &mut self,
        id: i64,
        ticket: Option<&TicketSpec>,
        unsuppress: bool,
        at: u64,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError>;
    /// Keeps each reading with every open ticket on its channel, as of
    /// this point of the transaction: [`Batch`] writes them when a ticket
    /// is about to open and at commit (see [`Batch::owe_links`]), the
    /// SQLite writer at once.
    async fn link_readings(&mut self, rows: &[LinkedReading<'_>]) -> Result<(), StoreError>;
    /// See [`Batch::finish_selftest`].
    async fn finish_selftest(
        &mut self,
        id: i64,
        at: u64,
        passed: bool,
        channels_json: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError>;
    /// See [`Batch::save_baseline`].
    async fn save_baseline(&mut self, row: &BaselineRow) -> Result<(), StoreError>;
    /// See [`Batch::audit`].
    async fn audit(&mut self, e: &AuditEntry<'_>) -> Result<(), StoreError>;

    /// Settles some standing alarms and re-levels others (keys distinct
    /// across both): [`Self::settle_many`]'s answer. One statement where
    /// the backend makes statements cost a round trip.
    async fn settle_and_relevel(
        &mut self,
        settles: &[Settle<'_>],
        levels: &[Relevel<'_>],
    ) -> Result<Vec<Option<AlarmRow>>, StoreError> {
        let out = self.settle_many(settles).await?;
        self.set_level_many(levels).await?;
        Ok(out)
    }

    /// Raises one alarm (see [`Batch::raise_many`]).
    async fn raise(
        &mut self,
        a: &AlarmInput,
        ticket: Option<&TicketSpec>,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        let mut out = self.raise_many(&[(a, ticket)]).await?;
        Ok(out.remove(0))
    }
}

/// The trait by the inherent methods (which also serve one-shot calls).
impl BatchWrite for Batch {
    async fn raise_many(
        &mut self,
        items: &[(&AlarmInput, Option<&TicketSpec>)],
    ) -> Result<Vec<(AlarmRow, Option<TicketOutcome>)>, StoreError> {
        Batch::raise_many(self, items).await
    }
    async fn settle_many(
        &mut self,
        items: &[Settle<'_>],
    ) -> Result<Vec<Option<AlarmRow>>, StoreError> {
        Batch::settle_many(self, items).await
    }
    async fn set_level_many(&mut self, items: &[Relevel<'_>]) -> Result<(), StoreError> {
        Batch::set_level_many(self, items).await
    }
    async fn settle_and_relevel(
        &mut self,
        settles: &[Settle<'_>],
        levels: &[Relevel<'_>],
    ) -> Result<Vec<Option<AlarmRow>>, StoreError> {
        Batch::settle_and_relevel(self, settles, levels).await
    }
    async fn log_transitions(&mut self, rows: &[LogEntry<'_>]) -> Result<(), StoreError> {
        Batch::log_transitions(self, rows).await
    }
    async fn save_channel_states(
        &mut self,
        rows: &[(&str, &str, &str, &str, &str, u64)],
    ) -> Result<(), StoreError> {
        Batch::save_channel_states(self, rows).await
    }
    async fn save_node_seqs(&mut self, rows: &[(&str, &str, &str)]) -> Result<(), StoreError> {
        Batch::save_node_seqs(self, rows).await
    }
    async fn suppress_standing(
        &mut self,
        site: &str,
        cause: &str,
        at: u64,
    ) -> Result<u64, StoreError> {
        Batch::suppress_standing(self, site, cause, at).await
    }
    async fn set_flapping(
        &mut self,
        key: &AlarmKey,
        flapping: bool,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError> {
        Batch::set_flapping(self, key, flapping, at).await
    }
    async fn suppressed_standing(
        &mut self,
        site: &str,
        node: Option<&str>,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        Batch::suppressed_standing(self, site, node).await
    }
    async fn link_ticket(
        &mut self,
        id: i64,
        ticket: Option<&TicketSpec>,
        unsuppress: bool,
        at: u64,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        Batch::link_ticket(self, id, ticket, unsuppress, at).await
    }
    async fn link_readings(&mut self, rows: &[LinkedReading<'_>]) -> Result<(), StoreError> {
        self.owe_links(rows);
        Ok(())
    }
    async fn finish_selftest(
        &mut self,
        id: i64,
        at: u64,
        passed: bool,
        channels_json: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        Batch::finish_selftest(self, id, at, passed, channels_json, reason).await
    }
    async fn save_baseline(&mut self, row: &BaselineRow) -> Result<(), StoreError> {
        Batch::save_baseline(self, row).await
    }
    async fn audit(&mut self, e: &AuditEntry<'_>) -> Result<(), StoreError> {
        Batch::audit(self, e).await
    }
}

/// An open write transaction (see the module docs).
pub struct Batch {
    pub(super) tx: Transaction<'static, Any>,
    /// SQLite takes the many-row statements with plain `?` placeholders:
    /// it looks each numbered one (`$N`, what [`super::portable`] writes)
    /// up by a linear scan, which made a 2,000-parameter statement cost
    /// milliseconds.
    pub(super) sqlite: bool,
    /// Tickets attached to in this transaction, by key, and not yet
    /// counted (see [`Attachments`]).
    attached: Attachments,
    /// Readings to link, not yet written (see [`Batch::owe_links`]).
    links: Vec<OwedLink>,
    /// Alarm rows changed in memory, not yet written (see `pending.rs`):
    /// written before anything else reads or changes alarms in this
    /// transaction, and at commit.
    alarms: pending::Pending,
    /// SQLite: the next alarm id to give (see `Batch::alarm_ids`).
    next_alarm_id: Option<i64>,
    _chain: OwnedMutexGuard<()>,
}

/// A reading to link (an owned [`LinkedReading`]).
struct OwedLink {
    site: String,
    node: String,
    channel: String,
    quantity: String,
    value: i32,
    status: String,
    level: String,
    abnormal: bool,
    at: u64,
}

/// The open tickets this transaction attached alarms to, and what it owes
/// them. An alarm storm raises the same key many times a batch; the first
/// raise finds the key's open ticket (`UPDATE … RETURNING`, which also
/// locks the row until commit, so no one can close it meanwhile), later
/// ones attach to it without asking the database, and their counts and
/// `alarm_attached` events are written once, before the commit (and before
/// anything else writes ticket events, so their order is kept).
#[derive(Default)]
struct Attachments {
    open: HashMap<AlarmKey, (i64, String)>,
    /// Per ticket: attachments not yet added to `alarm_count`, and the
    /// last one's time.
    uncounted: HashMap<i64, (i64, i64)>,
    /// `(ticket, at, alarm)` of events not yet written, in order.
    events: Vec<(i64, i64, i64)>,
}

impl Store {
    /// Begins one write transaction for many changes.
    pub async fn batch(&self) -> Result<Batch, StoreError> {
        let chain = self.audit_lock.clone().lock_owned().await;
        let mut tx = self.begin().await?;
        let sqlite = self.backend == super::Backend::Sqlite;
        if !sqlite {
            // Every statement of a batch finds its rows by key through an
            // index (the standing alarm, the open ticket). With a list of
            // keys PostgreSQL would rather hash-join a sequential scan of
            // the whole alarms table, dead row versions and all: in an
            // alarm storm that made its CPU 250 us a message. Index probes
            // per key it is, for this transaction only.
            sqlx::raw_sql("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
                .execute(&mut *tx)
                .await?;
        }
        Ok(Batch {
            tx,
            sqlite,
            attached: Attachments::default(),
            links: Vec::new(),
            alarms: pending::Pending::default(),
            next_alarm_id: None,
            _chain: chain,
        })
    }
}

impl Batch {
    /// Makes every change of the batch durable at once.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.flush_alarms().await?;
        self.flush_owed().await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// Links `rows` to the tickets open on their channels when they are
    /// written: before anything opens or reopens a ticket in this
    /// transaction, or at commit. Tickets only open within a batch (they
    /// close by a person's hand, in a transaction of their own), so that
    /// is the set open now; the pipeline links readings a few at a time
    /// after each change of their channel, and one statement per 256 of
    /// them instead saves PostgreSQL a round trip per round.
    pub fn owe_links(&mut self, rows: &[LinkedReading<'_>]) {
        self.links.extend(rows.iter().map(|r| OwedLink {
            site: r.site.to_string(),
            node: r.node.to_string(),
            channel: r.channel.to_string(),
            quantity: r.quantity.to_string(),
            value: r.value,
            status: r.status.to_string(),
            level: r.level.to_string(),
            abnormal: r.abnormal,
            at: r.at,
        }));
    }

    /// Writes what this transaction owes: the readings to link, the
    /// tickets' attachments.
    async fn flush_owed(&mut self) -> Result<(), StoreError> {
        let owed = std::mem::take(&mut self.links);
        let rows: Vec<LinkedReading<'_>> = owed
            .iter()
            .map(|l| LinkedReading {
                site: &l.site,
                node: &l.node,
                channel: &l.channel,
                quantity: &l.quantity,
                value: l.value,
                status: &l.status,
                level: &l.level,
                abnormal: l.abnormal,
                at: l.at,
            })
            .collect();
        self.link_readings(&rows).await?;
        self.flush_attachments().await
    }

    /// Writes the attachments owed (see [`Attachments`]): the events in
    /// order, then each ticket's count, a few statements for all.
    async fn flush_attachments(&mut self) -> Result<(), StoreError> {
        let events = std::mem::take(&mut self.attached.events);
        for (chunk, shape) in chunked(&events) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "INSERT INTO ticket_events (ticket_id, at, actor, action, from_status, to_status, note) \
                     SELECT column1, column2, 'system', 'alarm_attached', NULL, NULL, column3 \
                     FROM (VALUES {}) AS v WHERE v.column4",
                    values(4, shape)
                )
            });
            let mut q = many(sql);
            for ((ticket, at, alarm), keep) in padded(chunk, shape) {
                q = q
                    .bind(*ticket)
                    .bind(*at)
                    .bind(format!("alarm #{alarm}"))
                    .bind(keep);
            }
            q.execute(&mut *self.tx).await?;
        }
        let counts: Vec<(i64, (i64, i64))> = self.attached.uncounted.drain().collect();
        for (chunk, shape) in chunked(&counts) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "UPDATE tickets SET alarm_count = alarm_count + v.column2, last_alarm_at = v.column3, \
                     updated_at = v.column3 FROM (VALUES {}) AS v WHERE tickets.id = v.column1 AND v.column4",
                    values(4, shape)
                )
            });
            let mut q = many(sql);
            for ((ticket, (n, at)), keep) in padded(chunk, shape) {
                q = q.bind(*ticket).bind(*n).bind(*at).bind(keep);
            }
            q.execute(&mut *self.tx).await?;
        }
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
        let mut out = self.raise_many(&[(a, ticket)]).await?;
        Ok(out.remove(0))
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
        let item = Settle {
            key,
            state,
            value,
            at,
        };
        Ok(self.settle_many(&[item]).await?.remove(0))
    }

    /// Changes the level of a standing alarm (e.g. 报警 back to 预警).
    pub async fn set_level(
        &mut self,
        key: &AlarmKey,
        level: &'static str,
        value: i32,
        at: u64,
    ) -> Result<(), StoreError> {
        let item = Relevel {
            key,
            level,
            value,
            at,
        };
        self.set_level_many(&[item]).await
    }

    /// Appends a rule transition to the alarm log.
    pub async fn log_transition(&mut self, e: &LogEntry<'_>) -> Result<(), StoreError> {
        self.log_transitions(std::slice::from_ref(e)).await
    }

    /// Appends many rule transitions to the alarm log, in order, a few
    /// statements for all of them.
    pub async fn log_transitions(&mut self, rows: &[LogEntry<'_>]) -> Result<(), StoreError> {
        for (chunk, shape) in chunked(rows) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "INSERT INTO alarm_log (at, site, node, channel, cause, transition, level, value, disposition, actor) \
                     SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9, column10 \
                     FROM (VALUES {}) AS v WHERE v.column11",
                    values(11, shape)
                )
            });
            let mut q = many(sql);
            for (e, keep) in padded(chunk, shape) {
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
                    .bind(e.actor.to_string())
                    .bind(keep);
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
        for (chunk, shape) in chunked(rows) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "INSERT INTO channel_state (site, node, channel, quantity, state, updated_at) \
                     SELECT column1, column2, column3, column4, column5, column6 FROM (VALUES {}) AS v WHERE v.column7 \
                     ON CONFLICT (site, node, channel) DO UPDATE SET quantity = excluded.quantity, state = excluded.state, \
                     updated_at = excluded.updated_at",
                    values(7, shape)
                )
            });
            let mut q = many(sql);
            for ((site, node, channel, quantity, state, at), keep) in padded(chunk, shape) {
                q = q
                    .bind(site.to_string())
                    .bind(node.to_string())
                    .bind(channel.to_string())
                    .bind(quantity.to_string())
                    .bind(state.to_string())
                    .bind(*at as i64)
                    .bind(keep);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Saves nodes' de-duplication windows (site, node, state), one row each.
    pub async fn save_node_seqs(&mut self, rows: &[(&str, &str, &str)]) -> Result<(), StoreError> {
        for (chunk, shape) in chunked(rows) {
            let sql = shaped(self.sqlite, (file!(), line!()), shape, || {
                format!(
                    "INSERT INTO node_seq (site, node, state) \
                     SELECT column1, column2, column3 FROM (VALUES {}) AS v WHERE v.column4 \
                     ON CONFLICT (site, node) DO UPDATE SET state = excluded.state",
                    values(4, shape)
                )
            });
            let mut q = many(sql);
            for ((site, node, state), keep) in padded(chunk, shape) {
                q = q
                    .bind(site.to_string())
                    .bind(node.to_string())
                    .bind(state.to_string())
                    .bind(keep);
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
        self.flush_alarms().await?;
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
        self.flush_alarms().await?;
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
        self.flush_alarms().await?;
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
        self.flush_alarms().await?;
        self.flush_owed().await?;
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
        self.link_readings(std::slice::from_ref(r)).await
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

#[cfg(test)]
mod tests {
    use super::{chunked, padded};

    #[test]
    fn chunks_keep_every_row_in_order_and_pad_to_a_power_of_two() {
        for n in 0..700usize {
            let rows: Vec<usize> = (0..n).collect();
            let mut kept = Vec::new();
            for (chunk, shape) in chunked(&rows) {
                assert!(shape.is_power_of_two() && shape <= 256 && shape >= chunk.len());
                let all: Vec<(&usize, bool)> = padded(chunk, shape).collect();
                assert_eq!(all.len(), shape);
                // Padding repeats the first row and is never kept.
                assert!(all[chunk.len()..]
                    .iter()
                    .all(|(r, k)| **r == chunk[0] && !k));
                kept.extend(all.iter().filter(|(_, k)| *k).map(|(r, _)| **r));
            }
            assert_eq!(kept, rows);
        }
    }
}
