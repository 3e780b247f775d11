//! The cluster's once-only jobs (issue 16), run by one replica: the holder
//! of a PostgreSQL advisory lock ([`Store::try_lead`]). Every replica tries
//! each minute; the holder keeps its session, and with it the lock, until
//! it dies or loses the database, when another replica takes it at its
//! next try.
//!
//! The leader runs what must happen once for the whole cluster:
//! - alarm delivery (the notifier: first notices, escalation, reminders)
//!   and the GB/T 26875.3 northbound links, following every replica's
//!   events (the stream that `fanout` fills), so an alarm raised anywhere
//!   is delivered once; a new leader's notifier first reads the standing
//!   alarms and follows each, sending a first notice only where none was
//!   delivered (`notification_log`);
//! - the overdue-deadline check (逾期) and its escalation.
//!
//! Jobs that belong to a site (dead-man timers, offline tickets, rollups,
//! baselines) run in the pipeline of the partition holding the site.

use crate::alarms::events::GatewayEvent;
use crate::alarms::pipeline::HOUSEKEEPING_MS;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::northbound::gb26875::duty::DutyDesk;
use crate::store::{Leader, Store};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the leader runs the jobs with.
pub struct Jobs {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// This replica's own events (what it announces).
    pub events: broadcast::Sender<GatewayEvent>,
    /// Every replica's events.
    pub stream: broadcast::Sender<GatewayEvent>,
    pub duty: Arc<DutyDesk>,
}

/// The services a leader runs while it leads.
struct Led {
    lock: Leader,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Jobs {
    fn start_services(&self, lock: Leader, shutdown: &CancellationToken) -> Led {
        let stop = shutdown.child_token();
        let mut tasks = Vec::new();
        tasks.extend(crate::notify::start(
            self.config.clone(),
            self.store.clone(),
            self.stream.subscribe(),
            stop.clone(),
        ));
        tasks.extend(crate::northbound::gb26875::service::start(
            self.config.clone(),
            self.store.clone(),
            &self.stream,
            &self.metrics.gb26875,
            self.duty.clone(),
            stop.clone(),
        ));
        tracing::info!(
            "this replica leads: alarm delivery, northbound links and deadlines run here"
        );
        Led { lock, stop, tasks }
    }
}

async fn stop_services(led: Led) {
    led.stop.cancel();
    for t in led.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
}

/// Leads whenever this replica holds the lock, trying every `every` (and
/// checking deadlines once a minute while it leads), until `shutdown`.
pub async fn run(jobs: Jobs, every: Duration, shutdown: CancellationToken) {
    let mut led: Option<Led> = None;
    let mut tick = tokio::time::interval(every);
    let mut last_overdue = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        if let Some(l) = &mut led {
            if !l.lock.alive().await {
                tracing::warn!("lost the database session holding the cluster's once-only jobs");
                if let Some(l) = led.take() {
                    stop_services(l).await;
                }
            }
        }
        if led.is_none() {
            match jobs.store.try_lead().await {
                Ok(Some(lock)) => led = Some(jobs.start_services(lock, &shutdown)),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot ask who runs the once-only jobs"),
            }
        }
        jobs.metrics
            .leader
            .store(i64::from(led.is_some()), Ordering::Relaxed);
        let now = crate::domain::time::now_ms();
        if led.is_some() && now.saturating_sub(last_overdue) >= HOUSEKEEPING_MS {
            last_overdue = now;
            crate::alarms::pipeline::overdue(&jobs.store, &jobs.metrics, &jobs.events, now).await;
        }
    }
    if let Some(l) = led.take() {
        stop_services(l).await;
    }
}

/// How often leadership is tried: a leader's death leaves alarm delivery
/// to the next leader within this (whose notifier then catches up from the
/// standing alarms).
pub const EVERY: Duration = Duration::from_secs(5);
