//! The pipeline's SQLite writer: one connection of its own (rusqlite, the
//! same bundled SQLite that sqlx links) on one thread, which runs a whole
//! batch's effects in one `BEGIN IMMEDIATE` transaction.
//!
//! Why not sqlx for this: its SQLite driver runs each statement on a worker
//! thread and hands every row back through a channel, converted to `Any`
//! values; in an alarm storm those round trips and conversions were more
//! than half of the gateway's CPU, and the pipeline waited on each. Here a
//! batch is one hand-over: the statements are plain one-row statements,
//! prepared once and cached on the connection, stepped back to back.
//!
//! [`LocalBatch`] implements [`BatchWrite`] with the same SQL meaning as
//! the sqlx [`super::Batch`] (the same rows, the same ticket numbers, the
//! same audit chain), so the effect writer is written once. Its methods
//! never wait for anything: [`ready`] runs their futures to completion on
//! the writer thread.
//!
//! The connection is the pipeline's alone, so no API request can hold it;
//! its settings are the pool's (WAL, `synchronous = FULL`, the busy
//! timeout, no automatic checkpoints).

use super::alarms::ALARM_COLUMNS;
use super::batch::BatchWrite;
use super::{
    AlarmInput, AlarmKey, AlarmRow, AuditEntry, BaselineRow, LinkedReading, LogEntry, Relevel,
    Settle, StoreError, TicketOutcome, TicketSpec, INITIAL_STATUS,
};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use std::future::Future;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// A job for the writer thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Msg {
    Job(Job),
    /// Close the connection and end the thread, then answer.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// The writer thread's handle; cheap to clone. The thread ends when the
/// last handle is dropped.
#[derive(Clone)]
pub struct LocalWriter {
    jobs: mpsc::Sender<Msg>,
    interrupt: std::sync::Arc<rusqlite::InterruptHandle>,
}

/// How long the writer waits for another connection's write lock before a
/// statement fails with SQLITE_BUSY (as the pool's connections do).
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

impl LocalWriter {
    /// Opens the database file at `path` (already created and migrated)
    /// and starts the writer thread.
    pub fn open(path: &Path) -> Result<LocalWriter, StoreError> {
        let conn = Connection::open(path)?;
        // The pool's settings (see `super::pool_options` for why each).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY;",
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(64);
        let interrupt = std::sync::Arc::new(conn.get_interrupt_handle());
        let (jobs, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(msg) = rx.recv() {
                    match msg {
                        Msg::Job(job) => job(&mut conn),
                        Msg::Close(done) => {
                            if let Err((_, e)) = conn.close() {
                                tracing::warn!(error = %e, "sqlite writer: closing the connection");
                            }
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Writer(format!("cannot start the writer thread: {e}")))?;
        Ok(LocalWriter { jobs, interrupt })
    }

    /// Queues `f` to run on the writer's connection after the jobs queued
    /// before it; [`Submitted::wait`] answers its result.
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> Result<Submitted<T>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs.send(Msg::Job(job)).map_err(|_| stopped())?;
        Ok(Submitted {
            rx,
            interrupt: Some(self.interrupt.clone()),
        })
    }

    /// Runs `f` on the writer's connection and answers its result (see
    /// [`Submitted::wait`] for `deadline`).
    pub async fn run<T: Send + 'static>(
        &self,
        deadline: Duration,
        f: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let at = tokio::time::Instant::now() + deadline;
        self.submit(f)?.wait(at).await
    }

    /// Closes the writer's connection once the jobs sent before are done;
    /// later jobs fail. Answers when the connection is closed.
    pub async fn close(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.jobs.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Writer("the writer thread has stopped".into())
}

/// A job queued on a writer ([`LocalWriter`] or [`TaskWriter`]).
pub struct Submitted<T> {
    rx: tokio::sync::oneshot::Receiver<T>,
    /// The SQLite writer's connection, to interrupt at the deadline; a
    /// [`TaskWriter`] job bounds its own time.
    interrupt: Option<std::sync::Arc<rusqlite::InterruptHandle>>,
}

impl<T> Submitted<T> {
    /// The job's result. When it has not come by `deadline`, the statement
    /// running is interrupted (it fails, and the job sees the error) and
    /// the result is still awaited: what comes back always says what
    /// happened, so a batch is never retried while its first attempt might
    /// yet commit. Cancel-safe: waiting again goes on waiting.
    pub async fn wait(&mut self, deadline: tokio::time::Instant) -> Result<T, StoreError> {
        let Some(interrupt) = &self.interrupt else {
            return (&mut self.rx).await.map_err(|_| stopped());
        };
        match tokio::time::timeout_at(deadline, &mut self.rx).await {
            Ok(r) => r.map_err(|_| stopped()),
            Err(_) => {
                interrupt.interrupt();
                (&mut self.rx).await.map_err(|_| stopped())
            }
        }
    }
}

/// Jobs run one after another on a tokio task of their own: the
/// pipeline's writer where there is no [`LocalWriter`] (PostgreSQL), so
/// that it too evaluates the next batch while the last one commits. Each
/// job bounds its own time. The task ends when the last handle is dropped.
#[derive(Clone)]
pub struct TaskWriter {
    jobs: tokio::sync::mpsc::UnboundedSender<TaskJob>,
}

type TaskJob = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl TaskWriter {
    /// Starts the task (on the current tokio runtime).
    pub fn spawn() -> TaskWriter {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<TaskJob>();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                job.await;
            }
        });
        TaskWriter { jobs }
    }

    /// Queues `job` to run after the jobs queued before it.
    pub fn submit<T: Send + 'static>(
        &self,
        job: impl Future<Output = T> + Send + 'static,
    ) -> Result<Submitted<T>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: TaskJob = Box::pin(async move {
            let _ = tx.send(job.await);
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        Ok(Submitted {
            rx,
            interrupt: None,
        })
    }
}

/// Runs `f` (in one `BEGIN IMMEDIATE` transaction on `conn`) with a
/// [`LocalBatch`], committing when it answers `Ok`.
pub fn transaction<T>(
    conn: &mut Connection,
    f: impl for<'t> FnOnce(&mut LocalBatch<'t>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut b = LocalBatch { tx: &tx };
    let out = f(&mut b)?;
    tx.commit()?;
    Ok(out)
}

/// Runs a future that never waits (a [`LocalBatch`] method, or code that
/// only awaits them) to its end on this thread.
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        // Not reached with the store's own futures; polling again is
        // still correct for any future that makes progress when polled.
        std::thread::yield_now();
    }
}

/// One open transaction on the writer's connection.
pub struct LocalBatch<'t> {
    tx: &'t Transaction<'t>,
}

/// An alarm row in [`ALARM_COLUMNS`] order.
fn alarm_row(r: &Row<'_>) -> rusqlite::Result<AlarmRow> {
    Ok(AlarmRow {
        id: r.get(0)?,
        site: r.get(1)?,
        node: r.get(2)?,
        channel: r.get(3)?,
        cause: r.get(4)?,
        kind: r.get(5)?,
        level: r.get(6)?,
        state: r.get(7)?,
        quantity: r.get(8)?,
        value: r.get(9)?,
        setpoint: r.get(10)?,
        peak: r.get(11)?,
        raised_at: r.get(12)?,
        updated_at: r.get(13)?,
        cleared_at: r.get(14)?,
        acked_at: r.get(15)?,
        acked_by: r.get(16)?,
        ticket_id: r.get(17)?,
        suppressed: r.get(18)?,
        flapping: r.get(19)?,
    })
}

/// `UPDATE alarms … WHERE` the standing alarm of a key (`?1`–`?4`).
const STANDING: &str =
    "site = ?1 AND node = ?2 AND channel = ?3 AND cause = ?4 AND state <> 'cleared'";

impl LocalBatch<'_> {
    fn alarm_by_id(&self, id: i64) -> Result<AlarmRow, StoreError> {
        let sql = format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = ?1");
        Ok(self
            .tx
            .prepare_cached(&sql)?
            .query_row(params![id], alarm_row)?)
    }

    fn raise_one(
        &self,
        a: &AlarmInput,
        spec: Option<&TicketSpec>,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        let k = &a.key;
        let at = a.at as i64;
        let update = format!(
            "UPDATE alarms SET level = ?5, state = 'active', value = ?6, setpoint = ?7, \
             peak = CASE WHEN ?6 IS NULL THEN peak WHEN peak IS NULL OR ?6 > peak THEN ?6 ELSE peak END, \
             suppressed = suppressed AND ?8, updated_at = ?9 WHERE {STANDING} RETURNING {ALARM_COLUMNS}"
        );
        let standing = self
            .tx
            .prepare_cached(&update)?
            .query_row(
                params![
                    k.site,
                    k.node,
                    k.channel,
                    k.cause,
                    a.level,
                    a.value,
                    a.setpoint,
                    a.suppressed,
                    at
                ],
                alarm_row,
            )
            .optional()?;
        // A fresh alarm whose key has an open ticket (a storm's usual
        // raise: the hazard's ticket is still being worked on) is inserted
        // already linked to it: one row version, not an insert then an
        // update of `ticket_id` and its index.
        let mut attached = None;
        let mut row = match standing {
            Some(row) => row,
            None => {
                if spec.is_some() {
                    attached = self.attach_open(k, at)?;
                }
                let insert = format!(
                    "INSERT INTO alarms (site, node, channel, cause, kind, level, state, quantity, value, setpoint, \
                     peak, raised_at, updated_at, suppressed, ticket_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', ?7, ?8, ?9, ?8, ?10, ?10, ?11, ?12) RETURNING {ALARM_COLUMNS}"
                );
                self.tx.prepare_cached(&insert)?.query_row(
                    params![
                        k.site,
                        k.node,
                        k.channel,
                        k.cause,
                        a.kind,
                        a.level,
                        a.quantity,
                        a.value,
                        a.setpoint,
                        at,
                        a.suppressed,
                        attached.as_ref().map(|(id, _)| *id)
                    ],
                    alarm_row,
                )?
            }
        };
        let outcome = match (row.ticket_id, spec) {
            (Some(id), _) => match attached {
                Some((_, number)) => {
                    self.attached_event(id, at, row.id)?;
                    Some(TicketOutcome::Attached { id, number })
                }
                None => Some(TicketOutcome::AlreadyLinked { id }),
            },
            (None, None) => None,
            (None, Some(spec)) => {
                let o = self.open_or_attach(k, spec, row.id, at)?;
                if let TicketOutcome::Opened { id, .. }
                | TicketOutcome::Attached { id, .. }
                | TicketOutcome::Reopened { id, .. } = &o
                {
                    self.tx
                        .prepare_cached("UPDATE alarms SET ticket_id = ?1 WHERE id = ?2")?
                        .execute(params![id, row.id])?;
                    row.ticket_id = Some(*id);
                }
                Some(o)
            }
        };
        Ok((row, outcome))
    }

    /// The ticket for a newly raised alarm: the open one of its key
    /// (counted), a closed one reopened within its window, or a new one.
    /// The same rows as the sqlx `open_or_attach`.
    fn open_or_attach(
        &self,
        k: &AlarmKey,
        spec: &TicketSpec,
        alarm_id: i64,
        at: i64,
    ) -> Result<TicketOutcome, StoreError> {
        if let Some((id, number)) = self.attach_open(k, at)? {
            self.attached_event(id, at, alarm_id)?;
            return Ok(TicketOutcome::Attached { id, number });
        }
        let recent: Option<(i64, String)> = self
            .tx
            .prepare_cached(
                "SELECT id, number FROM tickets WHERE site = ?1 AND node = ?2 AND channel = ?3 AND cause = ?4 \
                 AND status = 'closed' AND closed_at >= ?5 ORDER BY closed_at DESC LIMIT 1",
            )?
            .query_row(
                params![
                    k.site,
                    k.node,
                    k.channel,
                    k.cause,
                    at.saturating_sub(spec.reopen_window_ms as i64)
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((id, number)) = recent {
            self.tx
                .prepare_cached(
                    "UPDATE tickets SET status = 'rectifying', closed_at = NULL, reviewed = FALSE, rectified_at = NULL, \
                     alarm_count = alarm_count + 1, last_alarm_at = ?1, updated_at = ?1 WHERE id = ?2",
                )?
                .execute(params![at, id])?;
            let note = format!("hazard recurred: alarm #{alarm_id}");
            self.add_event(
                id,
                at,
                "reopened",
                Some("closed"),
                Some("rectifying"),
                &note,
            )?;
            self.append_audit(&AuditEntry {
                at: at as u64,
                actor: "system",
                role: "system",
                action: "ticket.reopen",
                subject: format!("ticket:{id}"),
                details: serde_json::json!({ "alarm": alarm_id }).to_string(),
            })?;
            return Ok(TicketOutcome::Reopened { id, number });
        }
        // The number needs the row id: insert with a placeholder unique to
        // this transaction, then set it.
        let placeholder = format!("pending-{alarm_id}-{at}");
        let id: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO tickets (number, site, node, channel, cause, source, category, grade, status, title, \
                 location, opened_at, updated_at, alarm_count, last_alarm_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, 1, ?12) RETURNING id",
            )?
            .query_row(
                params![
                    placeholder,
                    k.site,
                    k.node,
                    k.channel,
                    k.cause,
                    spec.source,
                    spec.category,
                    spec.grade,
                    INITIAL_STATUS,
                    spec.title,
                    spec.location,
                    at
                ],
                |r| r.get(0),
            )?;
        let number = format!(
            "{}{}-{id:05}",
            spec.prefix,
            crate::domain::time::date_cst(at as u64)
        );
        self.tx
            .prepare_cached("UPDATE tickets SET number = ?1 WHERE id = ?2")?
            .execute(params![number, id])?;
        self.add_event(
            id,
            at,
            "opened",
            None,
            Some(INITIAL_STATUS),
            &format!("opened automatically by alarm #{alarm_id}"),
        )?;
        Ok(TicketOutcome::Opened { id, number })
    }

    /// Counts one more alarm on the open ticket of `k`, if there is one:
    /// its id and number.
    fn attach_open(&self, k: &AlarmKey, at: i64) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "UPDATE tickets SET alarm_count = alarm_count + 1, last_alarm_at = ?5, updated_at = ?5 \
                 WHERE site = ?1 AND node = ?2 AND channel = ?3 AND cause = ?4 AND status <> 'closed' \
                 RETURNING id, number",
            )?
            .query_row(params![k.site, k.node, k.channel, k.cause, at], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// The ticket event of an alarm attached to an open ticket.
    fn attached_event(&self, ticket_id: i64, at: i64, alarm_id: i64) -> Result<(), StoreError> {
        self.add_event(
            ticket_id,
            at,
            "alarm_attached",
            None,
            None,
            &format!("alarm #{alarm_id}"),
        )
    }

    fn add_event(
        &self,
        ticket_id: i64,
        at: i64,
        action: &str,
        from: Option<&str>,
        to: Option<&str>,
        note: &str,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO ticket_events (ticket_id, at, actor, action, from_status, to_status, note) \
                 VALUES (?1, ?2, 'system', ?3, ?4, ?5, ?6)",
            )?
            .execute(params![ticket_id, at, action, from, to, note])?;
        Ok(())
    }

    /// Appends to the hash-chained audit log (the caller holds the
    /// store's audit lock, as every writer of the chain does).
    fn append_audit(&self, e: &AuditEntry<'_>) -> Result<(), StoreError> {
        let last: Option<(i64, String)> = self
            .tx
            .prepare_cached("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (id, prev) = match last {
            Some((id, hash)) => (id + 1, hash),
            None => (1, crate::domain::audit::GENESIS.to_string()),
        };
        let at = e.at as i64;
        let hash = crate::domain::audit::hash(
            &prev, id, at, e.actor, e.role, e.action, &e.subject, &e.details,
        );
        self.tx
            .prepare_cached(
                "INSERT INTO audit_log (id, at, actor, role, action, subject, details, prev_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                id, at, e.actor, e.role, e.action, e.subject, e.details, prev, hash
            ])?;
        Ok(())
    }
}

impl BatchWrite for LocalBatch<'_> {
    async fn raise_many(
        &mut self,
        items: &[(&AlarmInput, Option<&TicketSpec>)],
    ) -> Result<Vec<(AlarmRow, Option<TicketOutcome>)>, StoreError> {
        items
            .iter()
            .map(|(a, spec)| self.raise_one(a, *spec))
            .collect()
    }

    async fn settle_many(
        &mut self,
        items: &[Settle<'_>],
    ) -> Result<Vec<Option<AlarmRow>>, StoreError> {
        let sql = format!(
            "UPDATE alarms SET state = ?5, value = COALESCE(?6, value), updated_at = ?7, \
             cleared_at = CASE WHEN ?5 = 'cleared' THEN ?7 ELSE cleared_at END \
             WHERE {STANDING} RETURNING {ALARM_COLUMNS}"
        );
        let mut st = self.tx.prepare_cached(&sql)?;
        let mut out = Vec::with_capacity(items.len());
        for s in items {
            let k = s.key;
            out.push(
                st.query_row(
                    params![
                        k.site,
                        k.node,
                        k.channel,
                        k.cause,
                        s.state,
                        s.value,
                        s.at as i64
                    ],
                    alarm_row,
                )
                .optional()?,
            );
        }
        Ok(out)
    }

    async fn set_level_many(&mut self, items: &[Relevel<'_>]) -> Result<(), StoreError> {
        let sql =
            format!("UPDATE alarms SET level = ?5, value = ?6, updated_at = ?7 WHERE {STANDING}");
        let mut st = self.tx.prepare_cached(&sql)?;
        for r in items {
            let k = r.key;
            st.execute(params![
                k.site,
                k.node,
                k.channel,
                k.cause,
                r.level,
                r.value,
                r.at as i64
            ])?;
        }
        Ok(())
    }

    async fn log_transitions(&mut self, rows: &[LogEntry<'_>]) -> Result<(), StoreError> {
        let mut st = self.tx.prepare_cached(
            "INSERT INTO alarm_log (at, site, node, channel, cause, transition, level, value, disposition, actor) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for e in rows {
            st.execute(params![
                e.at as i64,
                e.key.site,
                e.key.node,
                e.key.channel,
                e.key.cause,
                e.transition,
                e.level,
                e.value,
                e.disposition,
                e.actor
            ])?;
        }
        Ok(())
    }

    async fn save_channel_states(
        &mut self,
        rows: &[(&str, &str, &str, &str, &str, u64)],
    ) -> Result<(), StoreError> {
        let mut st = self.tx.prepare_cached(
            "INSERT INTO channel_state (site, node, channel, quantity, state, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (site, node, channel) DO UPDATE SET quantity = excluded.quantity, \
             state = excluded.state, updated_at = excluded.updated_at",
        )?;
        for (site, node, channel, quantity, state, at) in rows {
            st.execute(params![site, node, channel, quantity, state, *at as i64])?;
        }
        Ok(())
    }

    async fn save_node_seqs(&mut self, rows: &[(&str, &str, &str)]) -> Result<(), StoreError> {
        let mut st = self.tx.prepare_cached(
            "INSERT INTO node_seq (site, node, state) VALUES (?1, ?2, ?3) \
             ON CONFLICT (site, node) DO UPDATE SET state = excluded.state",
        )?;
        for (site, node, state) in rows {
            st.execute(params![site, node, state])?;
        }
        Ok(())
    }

    async fn suppress_standing(
        &mut self,
        site: &str,
        cause: &str,
        at: u64,
    ) -> Result<u64, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "UPDATE alarms SET suppressed = TRUE, updated_at = ?1 \
                 WHERE site = ?2 AND cause = ?3 AND state <> 'cleared' AND suppressed = FALSE",
            )?
            .execute(params![at as i64, site, cause])? as u64)
    }

    async fn set_flapping(
        &mut self,
        key: &AlarmKey,
        flapping: bool,
        at: u64,
    ) -> Result<Option<AlarmRow>, StoreError> {
        let sql = format!(
            "UPDATE alarms SET flapping = ?5, updated_at = ?6 WHERE {STANDING} RETURNING {ALARM_COLUMNS}"
        );
        Ok(self
            .tx
            .prepare_cached(&sql)?
            .query_row(
                params![
                    key.site,
                    key.node,
                    key.channel,
                    key.cause,
                    flapping,
                    at as i64
                ],
                alarm_row,
            )
            .optional()?)
    }

    async fn suppressed_standing(
        &mut self,
        site: &str,
        node: Option<&str>,
    ) -> Result<Vec<AlarmRow>, StoreError> {
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE site = ?1 AND (?2 IS NULL OR node = ?2) \
             AND state <> 'cleared' AND suppressed = TRUE ORDER BY id"
        );
        let mut st = self.tx.prepare_cached(&sql)?;
        let rows = st.query_map(params![site, node], alarm_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn link_ticket(
        &mut self,
        id: i64,
        ticket: Option<&TicketSpec>,
        unsuppress: bool,
        at: u64,
    ) -> Result<(AlarmRow, Option<TicketOutcome>), StoreError> {
        if unsuppress {
            self.tx
                .prepare_cached(
                    "UPDATE alarms SET suppressed = FALSE, updated_at = ?1 WHERE id = ?2",
                )?
                .execute(params![at as i64, id])?;
        }
        let row = self.alarm_by_id(id)?;
        let outcome = match (ticket, row.ticket_id) {
            (Some(spec), None) => {
                let key = AlarmKey {
                    site: row.site.clone(),
                    node: row.node.clone(),
                    channel: row.channel.clone(),
                    cause: row.cause.clone(),
                };
                let o = self.open_or_attach(&key, spec, id, at as i64)?;
                if let TicketOutcome::Opened { id: t, .. }
                | TicketOutcome::Attached { id: t, .. }
                | TicketOutcome::Reopened { id: t, .. } = &o
                {
                    self.tx
                        .prepare_cached("UPDATE alarms SET ticket_id = ?1 WHERE id = ?2")?
                        .execute(params![t, id])?;
                }
                Some(o)
            }
            _ => None,
        };
        Ok((self.alarm_by_id(id)?, outcome))
    }

    async fn link_readings(&mut self, rows: &[LinkedReading<'_>]) -> Result<(), StoreError> {
        let mut st = self.tx.prepare_cached(
            "INSERT INTO ticket_readings (ticket_id, at, quantity, value, status, level, abnormal) \
             SELECT id, ?4, ?5, ?6, ?7, ?8, ?9 FROM tickets \
             WHERE site = ?1 AND node = ?2 AND channel = ?3 AND status <> 'closed'",
        )?;
        for r in rows {
            st.execute(params![
                r.site,
                r.node,
                r.channel,
                r.at as i64,
                r.quantity,
                r.value,
                r.status,
                r.level,
                r.abnormal
            ])?;
        }
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
        self.tx
            .prepare_cached(
                "UPDATE selftests SET finished_at = ?1, result = ?2, channels = ?3, reason = ?4 \
                 WHERE id = ?5 AND finished_at IS NULL",
            )?
            .execute(params![
                at as i64,
                if passed { "passed" } else { "failed" },
                channels_json,
                reason,
                id
            ])?;
        Ok(())
    }

    async fn save_baseline(&mut self, row: &BaselineRow) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO baselines (site, node, channel, quantity, learned_at, baseline, recommendation) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (site, node, channel) DO NOTHING",
            )?
            .execute(params![
                row.site,
                row.node,
                row.channel,
                row.quantity,
                row.learned_at,
                row.baseline,
                row.recommendation
            ])?;
        Ok(())
    }

    async fn audit(&mut self, e: &AuditEntry<'_>) -> Result<(), StoreError> {
        self.append_audit(e)
    }
}
