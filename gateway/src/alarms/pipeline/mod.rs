//! The ingest pipeline (数据处理流水线): one task that takes MQTT messages
//! in arrival order, in batches, through the pure evaluation step
//! ([`eval::Core::step`]: topic check → node check → decode →
//! de-duplication → rules → self-test → suppression) and writes everything
//! a batch caused in ONE database transaction ([`effects::write`]), on the
//! pipeline's writer (the SQLite writer thread, or PostgreSQL's writer
//! task), evaluating the next batch while the last one commits
//! ([`inflight`]).
//!
//! Only once that transaction commits are the batch's lines handed to the
//! metrics sink, counters moved, events published (and so notifications
//! sent), and its messages acknowledged to the broker (QoS 1, manual acks;
//! with a sink, once its lines are durable in the spool). Nothing is
//! announced that is not committed; nothing is acknowledged that is not
//! committed. When the commit fails, the batch's new rule state is thrown
//! away, its messages stay unacknowledged, and the same batch is evaluated
//! and committed again with backoff until the database answers: the same
//! transitions come again, so the alarms are raised — late, once, with
//! their tickets — without anyone restarting anything. Meanwhile
//! `/healthz` says the database is unavailable and why, and `/metrics`
//! counts the outage.
//!
//! Anything that does not fit the contract is counted by reason in
//! `/metrics`, logged once per source per minute, and dropped; it never stops
//! the ingest of other messages.

use crate::alarms::events::GatewayEvent;
use crate::alarms::runtime::CAUSE_OFFLINE;
use crate::config::Config;
use crate::ingest::{Ack, Inbound};
use crate::metrics::{inc, Metrics};
use crate::sink::Sink;
use crate::store::{AlarmRow, Store, StoreError};
use effects::{Announce, Effects};
use eval::Core;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use wire::{NodeId, SiteId};

mod announce;
mod commands;
pub mod effects;
pub mod eval;
mod housekeeping;
pub use housekeeping::overdue;
mod inflight;
mod restore;
mod scope;
mod specs;

pub use scope::Scope;

/// An acknowledgement waiting for the spool to make `ticket` durable.
struct PendingAck {
    ticket: u64,
    handled: Instant,
    ack: Ack,
}

/// Logs a dropped message at most once per source per interval.
struct DropLog {
    last: HashMap<String, u64>,
    suppressed: HashMap<String, u64>,
}

const DROP_LOG_INTERVAL_MS: u64 = 60_000;

/// A sample stamped further ahead of the gateway's clock than this comes
/// from a node whose clock is wrong: its arrival time is used instead.
pub const MAX_CLOCK_AHEAD_MS: u64 = 5 * 60 * 1000;

impl DropLog {
    fn log(&mut self, source: &str, reason: &str, detail: &str, now: u64) {
        if self.last.len() > 10_000 {
            // A flood from ever-new topics must not grow this without bound.
            self.last.clear();
            self.suppressed.clear();
        }
        match self.last.get(source) {
            Some(&t) if now.saturating_sub(t) < DROP_LOG_INTERVAL_MS => {
                *self.suppressed.entry(source.to_string()).or_default() += 1;
            }
            _ => {
                let suppressed = self.suppressed.remove(source).unwrap_or(0);
                tracing::warn!(source, reason, detail, suppressed, "dropped message");
                self.last.insert(source.to_string(), now);
            }
        }
    }
}

/// Requests to the pipeline from the API: the pipeline owns the rule state.
pub enum Command {
    /// An authorised reset (复位) of a latched alarm.
    Reset {
        alarm_id: i64,
        by: String,
        /// The role code of who resets, for the audit trail.
        role: &'static str,
        reply: oneshot::Sender<Result<AlarmRow, ResetError>>,
    },
    /// Applies setpoints to a channel (an authorised, audited change),
    /// pushed to the node with `config`.
    ApplySetpoints {
        site: String,
        node: String,
        channel: String,
        pre_alarm: Option<i64>,
        alarm: i64,
        /// `recommendation` or `manual`.
        source: &'static str,
        by: String,
        role: &'static str,
        reply: oneshot::Sender<Result<crate::store::SetpointRow, SetpointError>>,
    },
    /// Starts an end-to-end self-test (自检) of a node; answers its id.
    SelfTest {
        site: String,
        node: String,
        by: String,
        role: &'static str,
        reply: oneshot::Sender<Result<i64, SelfTestError>>,
    },
}

/// Why setpoints were not applied.
#[derive(Debug, thiserror::Error)]
pub enum SetpointError {
    #[error("no such channel")]
    NotFound,
    /// Outside the bounds (简体中文 reason).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a self-test did not start.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    #[error("no such node")]
    NotFound,
    #[error("a self-test of this node is already running")]
    Running,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a reset did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("no such alarm")]
    NotFound,
    #[error("only a latched channel alarm can be reset")]
    NotLatched,
    #[error("the value is still past the setpoint, or the sensor is faulted")]
    StillActive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The next durable watermark; never resolves without a sink.
async fn durable_changed(rx: &mut Option<watch::Receiver<u64>>) -> u64 {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The spool is gone (shutdown): nothing more becomes durable.
                std::future::pending::<()>().await;
            }
            *rx.borrow_and_update()
        }
        None => std::future::pending().await,
    }
}

/// The next configuration in force; pending forever without one.
async fn live_changed(live: &mut Option<watch::Receiver<Arc<Config>>>) -> Arc<Config> {
    match live {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The live configuration is gone (shutdown): keep the last.
                *live = None;
                return std::future::pending().await;
            }
            rx.borrow_and_update().clone()
        }
        None => std::future::pending().await,
    }
}

/// Publishes commands to nodes (`fire/v1/{site}/{node}/cmd`).
pub type Commander = rumqttc::AsyncClient;

/// How often the dead-man timers are checked.
pub const TICK_MS: u64 = 1000;

/// How often offline tickets and overdue deadlines are checked.
pub const HOUSEKEEPING_MS: u64 = 60_000;

/// The pipeline's state.
pub struct Pipeline {
    /// The alarm path's state as last committed.
    core: Core,
    /// The configuration in force, when it can change while running (registration).
    live: Option<watch::Receiver<Arc<Config>>>,
    commander: Option<Commander>,
    last_housekeeping: u64,
    store: Store,
    sink: Option<Sink>,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<GatewayEvent>,
    drops: DropLog,
    /// Hourly rollups not yet merged into the store.
    rollups: crate::alarms::rollup::Rollups,
    /// Acknowledgements waiting for the spool, in arrival order.
    pending_acks: VecDeque<PendingAck>,
    /// How long a self-test waits for every channel.
    selftest_window_ms: u64,
    /// Baseline observation window, hours.
    baseline_hours: u32,
    /// A batch whose commit failed, waiting to be tried again.
    retry: Option<Retry>,
    /// Batches handed to the writer, oldest first ([`inflight`]).
    inflight: VecDeque<inflight::InFlight>,
    /// The poison flag of the jobs handed to the writer since the last
    /// failed commit ([`inflight`]).
    poison: Arc<std::sync::atomic::AtomicBool>,
    /// How far the spool has made lines durable (with a sink).
    durable: Option<watch::Receiver<u64>>,
    /// Where batches are written ([`inflight::Writer`]), from first use.
    writer: Option<inflight::Writer>,
    /// The messages found in the spool at start-up, by source, until
    /// [`Pipeline::start`] has compared them with the restored windows.
    spooled_at_start: HashMap<String, VecDeque<(u32, u32)>>,
    /// One partition's sites on a cluster ([`scope`]); every site when `None`.
    scope: Option<Scope>,
    /// Fenced off: another replica holds the partition now.
    fenced: bool,
}

/// A batch whose commit failed.
struct Retry {
    batch: Vec<Inbound>,
    attempts: u32,
    at: tokio::time::Instant,
}

/// The longest a batch commit may take before it counts as failed.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before trying a failed batch again: 100 ms doubling to 5 s.
fn retry_delay(attempts: u32) -> Duration {
    Duration::from_millis((100u64 << attempts.min(6)).min(5_000))
}

impl Pipeline {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        sink: Option<Sink>,
        metrics: Arc<Metrics>,
        events: broadcast::Sender<GatewayEvent>,
    ) -> Self {
        Pipeline {
            live: None,
            commander: None,
            last_housekeeping: 0,
            core: Core::new(config, sink.is_some()),
            store,
            sink,
            metrics,
            events,
            drops: DropLog {
                last: HashMap::new(),
                suppressed: HashMap::new(),
            },
            rollups: Default::default(),
            pending_acks: VecDeque::new(),
            selftest_window_ms: crate::alarms::selftest::DEFAULT_WINDOW_MS,
            baseline_hours: crate::alarms::baseline::DEFAULT_WINDOW_HOURS,
            retry: None,
            inflight: VecDeque::new(),
            poison: Default::default(),
            durable: None,
            writer: None,
            spooled_at_start: HashMap::new(),
            scope: None,
            fenced: false,
        }
    }

    fn config(&self) -> &Arc<Config> {
        &self.core.config
    }

    /// How long a self-test waits for every channel (tests shorten it).
    pub fn with_selftest_window(mut self, window_ms: u64) -> Self {
        self.selftest_window_ms = window_ms;
        self
    }

    /// How long baselines are learned for (tests shorten it).
    pub fn with_baseline_window(mut self, hours: u32) -> Self {
        self.baseline_hours = hours;
        self
    }

    /// Marks messages found in the spool at start-up as seen, so that the
    /// broker's redelivery of one whose acknowledgement a crash cut off is
    /// a counted duplicate, not a second copy in the TSDB.
    pub fn mark_spooled(&mut self, spooled: crate::sink::Spooled) {
        for (source, ids) in spooled {
            let Some((site, node)) = source.split_once('/') else {
                continue;
            };
            let (Ok(site), Ok(node)) = (SiteId::new(site), NodeId::new(node)) else {
                continue;
            };
            if !self.core.runtime.knows(&site, &node) {
                continue;
            }
            for &(boot, seq) in &ids {
                let _ = self.core.runtime.observe_seq(&site, &node, boot, seq);
            }
            // Kept (not copied) for `start`, which compares them with the
            // windows restored from the store.
            self.spooled_at_start.insert(source, ids);
        }
    }

    /// Follows the configuration in force: nodes registered while running
    /// are accepted (and watched by the dead-man timer) from the moment they
    /// appear, revoked ones are forgotten.
    pub fn with_live(mut self, mut live: watch::Receiver<Arc<Config>>) -> Self {
        // Registered nodes are in force from the start, not only once the
        // registry next changes.
        let current = live.borrow_and_update().clone();
        if !Arc::ptr_eq(&current, self.config()) {
            self.reconfigure(current, crate::domain::time::now_ms());
        }
        self.live = Some(live);
        self
    }

    /// Takes a new configuration in force (see [`Pipeline::with_live`]).
    pub fn reconfigure(&mut self, config: Arc<Config>, now: u64) {
        let config = match &self.scope {
            Some(s) => scope::narrowed(&config, s),
            None => config,
        };
        self.core.runtime.reconfigure(config.clone(), now);
        self.core.config = config;
    }

    /// Lets the pipeline send commands (reset) to nodes.
    pub fn with_commander(mut self, commander: Commander) -> Self {
        self.commander = Some(commander);
        self
    }

    /// Prepares the rule state at start-up (`now`): starts every configured
    /// node's dead-man timer, marks nodes whose offline alarm still stands as
    /// offline (so their return clears it), restores the channels' saved
    /// rule state, reconciled with the standing alarms, and records rule
    /// settings that changed since the last start as audited changes.
    pub async fn start(&mut self, now: u64, config_source: &str) -> Result<(), StoreError> {
        self.core.runtime.start(now);
        for row in self.store.standing_with_cause(None, CAUSE_OFFLINE).await? {
            if !self.mine(&row.site) {
                continue;
            }
            if let (Ok(s), Ok(n)) = (SiteId::new(&row.site), NodeId::new(&row.node)) {
                self.core.runtime.restore_offline(&s, &n, now);
            }
        }
        // Setpoints applied at run time, before the channels are restored
        // (the restored state is judged by them).
        for sp in self.store.setpoints_in_force().await? {
            if !self.mine(&sp.site) {
                continue;
            }
            self.use_setpoint(&sp);
        }
        // Each node's de-duplication window as the last commit left it: a
        // message committed whose acknowledgement a crash cut off is a
        // counted duplicate when it comes again, not a second evaluation.
        // The window is saved with the commit, and the batch's lines reach
        // the spool just after it: a kill between the two leaves messages
        // the window marks but the spool lacks. Their redelivery is not
        // judged again, but its lines go to the spool (once).
        let spooled = std::mem::take(&mut self.spooled_at_start);
        let mut unspooled = 0;
        for (site, node, state) in self.store.node_seqs().await? {
            if !self.mine(&site) {
                continue;
            }
            if let (Ok(s), Ok(n)) = (SiteId::new(&site), NodeId::new(&node)) {
                if !self.core.runtime.restore_seq(&s, &n, &state) {
                    tracing::warn!(
                        site,
                        node,
                        "saved de-duplication window unreadable; starting afresh"
                    );
                } else if self.sink.is_some() {
                    let ids = spooled.get(&format!("{site}/{node}"));
                    unspooled += self.core.runtime.keep_unspooled(
                        &s,
                        &n,
                        ids.into_iter().flatten().copied(),
                    );
                }
            }
        }
        if unspooled > 0 {
            tracing::info!(
                messages = unspooled,
                "committed messages not in the spool: a redelivery of one is written to the TSDB, not judged again"
            );
        }
        self.restore_channels(now).await?;
        if self.scope.is_some() {
            // Rule settings are the replica's, audited once at its start.
            return Ok(());
        }
        let changes = self
            .store
            .sync_rule_settings(&self.config().rule_settings(), config_source, now)
            .await?;
        for c in &changes {
            tracing::info!(scope = %c.scope, old = ?c.old, new = ?c.new, "rule settings changed (audited)");
        }
        Ok(())
    }

    /// Handles messages and commands until the message channel closes:
    /// messages in batches (up to `storage.batch_max_messages`, gathered
    /// for at most `storage.batch_max_ms` while more keep coming), each
    /// committed in one transaction and acknowledged after; checks the
    /// dead-man timers every [`TICK_MS`].
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut durable = self.sink.as_ref().map(|s| s.durable());
        self.durable = durable.clone();
        while !self.fenced {
            let retry_at = self.retry.as_ref().map(|r| r.at);
            let room = self.inflight.len() < inflight::DEPTH;
            tokio::select! {
                msg = rx.recv(), if self.retry.is_none() && room => match msg {
                    Some(first) => {
                        let batch = self.gather(first, &mut rx).await;
                        self.dispatch(batch, 0).await;
                    }
                    None => break,
                },
                outcome = inflight::front(&mut self.inflight) => {
                    self.finish_front(outcome).await;
                }
                _ = sleep_until(retry_at), if retry_at.is_some() => {
                    if rx.is_closed() {
                        // Shutting down with the database still away: the
                        // broker redelivers the unacknowledged batch.
                        break;
                    }
                    if let Some(r) = self.retry.take() {
                        self.dispatch(r.batch, r.attempts).await;
                    }
                }
                Some(cmd) = commands.recv() => self.command(cmd).await,
                _ = tick.tick(), if self.retry.is_none() => self.tick(crate::domain::time::now_ms()).await,
                config = live_changed(&mut self.live) => {
                    self.drain().await;
                    self.reconfigure(config, crate::domain::time::now_ms());
                }
                upto = durable_changed(&mut durable), if !self.pending_acks.is_empty() => {
                    self.release_acks(upto);
                }
            }
        }
        self.drain().await;
        if let Some(r) = self.retry.take() {
            tracing::warn!(
                messages = r.batch.len(),
                "stopped with a batch not committed; the broker will redeliver it"
            );
        }
        // Ingest has stopped (and said goodbye to the broker): acks still
        // pending are moot; the broker redelivers those messages next time
        // and the spooled ones are recognised as duplicates.
        if !self.pending_acks.is_empty() {
            tracing::info!(
                messages = self.pending_acks.len(),
                "stopped with acknowledgements pending; the broker will redeliver"
            );
        }
        self.flush_rollups().await;
        tracing::info!("pipeline drained");
    }

    /// A batch: `first`, then what else is queued, up to the configured
    /// count, waiting at most the configured time for more.
    async fn gather(&self, first: Inbound, rx: &mut mpsc::Receiver<Inbound>) -> Vec<Inbound> {
        let max = self.config().storage.batch_max_messages.max(1);
        let linger = Duration::from_millis(self.config().storage.batch_max_ms);
        let deadline = tokio::time::Instant::now() + linger;
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) if linger.is_zero() || batch.len() == 1 => break,
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(m)) => batch.push(m),
                    _ => break,
                },
            }
        }
        batch
    }

    /// The pipeline's writer, started on first use.
    fn writer(&mut self) -> inflight::Writer {
        self.writer
            .get_or_insert_with(|| inflight::Writer::for_store(&self.store))
            .clone()
    }

    /// Keeps a batch whose commit failed (after `attempts` earlier tries)
    /// to be evaluated and committed again after the backoff.
    fn retry_later(&mut self, batch: Vec<Inbound>, attempts: u32, e: &StoreError) {
        if self.check_fenced(e) {
            // Not ours any more: the broker has handed these messages to
            // the replica now holding the partition.
            return;
        }
        let delay = retry_delay(attempts);
        tracing::error!(error = %e, messages = batch.len(), attempts = attempts + 1, retry_in_ms = delay.as_millis() as u64, "store: batch not committed; its rule state is discarded and the batch retried, unacknowledged");
        self.retry = Some(Retry {
            batch,
            attempts: attempts + 1,
            at: tokio::time::Instant::now() + delay,
        });
    }

    /// Handles one message at once (a batch of one), without its
    /// acknowledgement. A commit that fails leaves the rule state as it was.
    pub async fn handle(&mut self, msg: &Inbound) {
        if let Err(e) = self
            .evaluate_and_commit(|core| core.step(std::slice::from_ref(msg)))
            .await
        {
            tracing::error!(error = %e, "store: message not committed; rule state left as it was");
        }
    }

    /// Evaluates with `f` on a copy of the committed state and commits its
    /// effects in one transaction; the copy becomes the committed state only
    /// then, and only then is anything announced.
    async fn evaluate_and_commit(
        &mut self,
        f: impl FnOnce(&mut Core) -> Effects,
    ) -> Result<(), StoreError> {
        self.drain().await;
        let mut next = self.core.clone();
        let fx = f(&mut next);
        let (fx, out) = self.commit(fx).await?;
        self.core = next;
        self.after_commit(fx, out).await;
        Ok(())
    }

    /// Writes `fx` in one transaction on the pipeline's writer (the SQLite
    /// writer thread, or PostgreSQL's writer task: [`inflight::Writer`]),
    /// and hands it back with what to announce. Nothing to write, nothing
    /// to commit.
    async fn commit(&mut self, fx: Effects) -> Result<(Effects, Vec<Announce>), StoreError> {
        if !fx.needs_store() {
            return Ok((fx, Vec::new()));
        }
        let config = self.core.config.clone();
        // One job on the writer, alone (nothing is in flight here).
        let writer = self.writer();
        let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
        let fence = self.fence();
        let result =
            match inflight::submit(&writer, &self.store, Default::default(), fx, config, fence) {
                Ok(mut job) => job.wait(deadline).await.and_then(|r| r),
                Err(e) => Err(e),
            };
        self.record_commit(&result.as_ref().map(|_| ()));
        if let Err(e) = &result {
            self.check_fenced(e);
        }
        result
    }

    /// Counts a commit, or a failed one (`/healthz`, `/metrics`).
    fn record_commit(&self, result: &Result<(), &StoreError>) {
        let now = crate::domain::time::now_ms();
        match result {
            Ok(()) => {
                inc(&self.metrics.batches);
                self.metrics.store_health.ok(now);
            }
            Err(e) => {
                inc(&self.metrics.store_errors);
                inc(&self.metrics.batch_commit_failures);
                self.metrics.store_health.failed(now, e.to_string());
            }
        }
    }

    /// Once committed: counters, rollups, lines to the sink, events, and
    /// setpoints re-sent to nodes back online.
    async fn after_commit(&mut self, fx: Effects, out: Vec<Announce>) {
        let seq = self.core.counts;
        self.metrics
            .seq_restarts
            .store(seq.restarts, Ordering::Relaxed);
        self.metrics
            .seq_unconfirmed
            .store(seq.unconfirmed, Ordering::Relaxed);
        let now = crate::domain::time::now_ms();
        for n in fx.notes {
            self.note(n, now);
        }
        for r in &fx.rollups {
            self.rollups
                .add(&r.site, &r.node, &r.channel, r.quantity, r.value, r.at);
        }
        if let Some(sink) = &self.sink {
            for l in &fx.lines {
                sink.push(&l.source, l.boot, l.seq, l.count, &l.text);
            }
        }
        self.announce(out);
        self.metrics
            .nodes_online
            .store(self.core.runtime.online_count() as i64, Ordering::Relaxed);
        for (site, node) in fx.push_setpoints {
            self.push_node_setpoints(&site, &node).await;
        }
    }

    /// Acknowledges now without a sink; with one, once the spool has made
    /// durable everything appended so far (this message's lines included).
    fn ack_when_durable(&mut self, ack: Ack) {
        let (Some(sink), Some(durable)) = (&self.sink, &self.durable) else {
            ack();
            inc(&self.metrics.messages_acked);
            return;
        };
        let ticket = sink.appended();
        if self.pending_acks.is_empty() && *durable.borrow() >= ticket {
            ack();
            inc(&self.metrics.messages_acked);
            self.metrics.ack_delay.record(std::time::Duration::ZERO);
            return;
        }
        self.pending_acks.push_back(PendingAck {
            ticket,
            handled: Instant::now(),
            ack,
        });
    }

    /// Fires, in order, the acknowledgements whose ticket is durable.
    fn release_acks(&mut self, durable: u64) {
        while self
            .pending_acks
            .front()
            .is_some_and(|p| p.ticket <= durable)
        {
            if let Some(p) = self.pending_acks.pop_front() {
                (p.ack)();
                inc(&self.metrics.messages_acked);
                self.metrics.ack_delay.record(p.handled.elapsed());
            }
        }
    }
}

/// Sleeps until `at`; pending forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
