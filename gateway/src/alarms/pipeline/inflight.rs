//! Batches in flight on the pipeline's writer — the SQLite writer thread
//! (`store::LocalWriter`), or on PostgreSQL a task of its own
//! (`store::TaskWriter`) committing through sqlx: while the writer commits
//! one batch, the pipeline evaluates the next, so the evaluation and the
//! database work of an alarm storm overlap on two cores instead of taking
//! turns.
//!
//! The guarantees stay those of one batch at a time:
//! - A batch is evaluated on the state its predecessor left, and the
//!   writer commits batches in the order they were evaluated.
//! - Nothing is announced or acknowledged before its own commit: results
//!   are taken in order, at the front of the queue.
//! - When a commit fails, no later batch commits: every job of the same
//!   "generation" shares a poison flag that the failed job sets and later
//!   ones check before they begin (the writer runs them one after another).
//!   The pipeline then goes back to the rule state before the failed batch
//!   and retries the failed batch and every batch after it as one batch.

use super::effects::{self, Announce, Effects};
use super::eval::Core;
use super::{Pipeline, COMMIT_TIMEOUT};
use crate::config::Config;
use crate::ingest::Inbound;
use crate::store::{LocalWriter, Store, StoreError, Submitted, TaskWriter};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a writer job answers: the batch's effects back, with what to
/// announce.
pub(super) type Outcome = Result<(Effects, Vec<Announce>), StoreError>;

/// Most batches handed to the writer and not yet answered: one committing,
/// one waiting behind it, so the writer never waits for the evaluation.
pub(super) const DEPTH: usize = 2;

/// A batch evaluated and handed to the writer, not yet known committed.
pub(super) struct InFlight {
    batch: Vec<Inbound>,
    attempts: u32,
    /// The rule state before this batch: where the pipeline goes back to
    /// when its commit fails.
    before: Core,
    job: Submitted<Outcome>,
    deadline: tokio::time::Instant,
}

/// Where the pipeline's batches are written.
#[derive(Clone)]
pub(super) enum Writer {
    /// SQLite: the store's writer thread.
    Local(LocalWriter),
    /// PostgreSQL: a task running the sqlx batches one after another.
    Task(TaskWriter),
}

impl Writer {
    /// The store's writer thread, or a new task (on the current runtime).
    pub(super) fn for_store(store: &Store) -> Writer {
        match store.local_writer() {
            Some(w) => Writer::Local(w.clone()),
            None => Writer::Task(TaskWriter::spawn()),
        }
    }
}

/// Queues `fx` on the writer, to be written in one transaction unless a
/// job before it of the same generation (`poison`) failed.
pub(super) fn submit(
    writer: &Writer,
    store: &Store,
    poison: Arc<AtomicBool>,
    fx: Effects,
    config: Arc<Config>,
    fence: Option<crate::store::Fence>,
) -> Result<Submitted<Outcome>, StoreError> {
    match writer {
        Writer::Local(writer) => {
            let audit_lock = store.audit_lock();
            writer.submit(move |conn| {
                if let Some(early) = before_writing(&poison, fx.needs_store()) {
                    return early.map(|()| (fx, Vec::new()));
                }
                // The audit chain's lock, then the database's write lock:
                // the order every writer of the chain takes them in.
                let _chain = audit_lock.blocking_lock();
                let written = crate::store::local_transaction(conn, |b| {
                    crate::store::ready(effects::write(b, &fx, &config))
                });
                after_writing(&poison, fx, written)
            })
        }
        Writer::Task(writer) => {
            let store = store.clone();
            writer.submit(async move {
                if let Some(early) = before_writing(&poison, fx.needs_store()) {
                    return early.map(|()| (fx, Vec::new()));
                }
                // `Store::batch` takes the audit chain's lock. A commit
                // cut off by the deadline is rolled back (or, if the
                // server had it already, retried: as before overlap).
                let attempt = async {
                    let mut b = store.batch().await?;
                    if let Some(f) = fence {
                        b.fence(f).await?;
                    }
                    let out = effects::write(&mut b, &fx, &config).await?;
                    b.commit().await?;
                    Ok::<_, StoreError>(out)
                };
                let written = match tokio::time::timeout(COMMIT_TIMEOUT, attempt).await {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::Timeout),
                };
                after_writing(&poison, fx, written)
            })
        }
    }
}

/// A job's answer; a failed write poisons its generation.
fn after_writing(
    poison: &AtomicBool,
    fx: Effects,
    written: Result<Vec<Announce>, StoreError>,
) -> Outcome {
    match written {
        Ok(out) => Ok((fx, out)),
        Err(e) => {
            poison.store(true, Ordering::SeqCst);
            Err(e)
        }
    }
}

/// A job's first check: `Some(Err)` when a job of its generation failed
/// before it, `Some(Ok)` when it has nothing to write.
fn before_writing(poison: &AtomicBool, needs_store: bool) -> Option<Result<(), StoreError>> {
    if poison.load(Ordering::SeqCst) {
        return Some(Err(StoreError::Writer(
            "an earlier batch was not committed".into(),
        )));
    }
    (!needs_store).then_some(Ok(()))
}

/// The front batch's outcome; pending forever while nothing is in flight.
/// Cancel-safe (the job stays at the front).
pub(super) async fn front(queue: &mut VecDeque<InFlight>) -> Outcome {
    match queue.front_mut() {
        Some(f) => f.job.wait(f.deadline).await.and_then(|r| r),
        None => std::future::pending().await,
    }
}

impl Pipeline {
    /// Evaluates `batch` on the state the batches before it leave and hands
    /// its effects to the writer, without waiting for the commit; a failed
    /// commit keeps it for a retry.
    pub(super) async fn dispatch(&mut self, batch: Vec<Inbound>, attempts: u32) {
        let before = self.core.clone();
        let fx = self.core.step(&batch);
        if self.inflight.is_empty() && !fx.needs_store() {
            self.committed(batch, fx, Vec::new()).await;
            return;
        }
        let writer = self.writer();
        let job = submit(
            &writer,
            &self.store,
            self.poison.clone(),
            fx,
            self.core.config.clone(),
            self.fence(),
        );
        match job {
            Ok(job) => self.inflight.push_back(InFlight {
                batch,
                attempts,
                before,
                job,
                deadline: tokio::time::Instant::now() + COMMIT_TIMEOUT,
            }),
            // The writer has stopped: this batch and those in flight go
            // back for a retry.
            Err(e) => self.abandon(e, Some((batch, before, attempts))),
        }
    }

    /// Takes the front batch's outcome: announced and acknowledged when it
    /// committed; otherwise it and every batch after it are retried.
    pub(super) async fn finish_front(&mut self, outcome: Outcome) {
        match outcome {
            Ok((fx, out)) => {
                let Some(front) = self.inflight.pop_front() else {
                    return;
                };
                if fx.needs_store() {
                    self.record_commit(&Ok(()));
                }
                self.committed(front.batch, fx, out).await;
            }
            Err(e) => {
                self.record_commit(&Err(&e));
                self.abandon(e, None);
            }
        }
    }

    /// Waits for every batch in flight (before anything that must see the
    /// committed state: a command, the timers, shutting down).
    pub(super) async fn drain(&mut self) {
        while !self.inflight.is_empty() {
            let outcome = front(&mut self.inflight).await;
            self.finish_front(outcome).await;
        }
    }

    /// The front batch failed (or `extra`, not yet in flight, could not
    /// be handed over): back to the state before the first of them, and
    /// all of them are retried, in order, as one batch.
    fn abandon(&mut self, e: StoreError, mut extra: Option<(Vec<Inbound>, Core, u32)>) {
        let (mut batch, before, attempts) = match self.inflight.pop_front() {
            Some(first) => (first.batch, first.before, first.attempts),
            None => match extra.take() {
                Some(x) => x,
                None => return,
            },
        };
        for later in self.inflight.drain(..) {
            batch.extend(later.batch);
        }
        if let Some((last, _, _)) = extra {
            batch.extend(last);
        }
        self.core = before;
        // Jobs still queued on the writer see the old flag set and do
        // nothing; the retry starts a new generation.
        self.poison = Arc::new(AtomicBool::new(false));
        self.retry_later(batch, attempts, &e);
    }

    /// A batch is committed: counters, lines, events, then its messages
    /// are acknowledged (once their lines are durable in the spool).
    pub(super) async fn committed(&mut self, batch: Vec<Inbound>, fx: Effects, out: Vec<Announce>) {
        self.after_commit(fx, out).await;
        self.metrics
            .batch_messages
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for mut msg in batch {
            if let Some(ack) = msg.ack.take() {
                self.ack_when_durable(ack);
            }
        }
    }
}
