//! The cluster's once-only jobs (issue 16): jobs that span every site
//! (today the overdue-deadline check, 逾期 and its escalation) run on one
//! replica, the holder of a PostgreSQL advisory lock
//! ([`Store::try_lead`]). Every replica tries each minute; the holder
//! keeps its session, and with it the lock, until it dies or loses the
//! database, when another replica takes it at its next try. Jobs that
//! belong to a site (dead-man timers, offline tickets, rollups, baselines)
//! run in the pipeline of the partition holding the site.

use crate::alarms::events::GatewayEvent;
use crate::alarms::pipeline::HOUSEKEEPING_MS;
use crate::metrics::Metrics;
use crate::store::{Leader, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Runs the once-only jobs whenever this replica leads, every `every`,
/// until `shutdown`.
pub async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<GatewayEvent>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut leader: Option<Leader> = None;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Some(l) = &mut leader {
            if !l.alive().await {
                tracing::warn!("lost the database session holding the cluster's once-only jobs");
                leader = None;
            }
        }
        if leader.is_none() {
            match store.try_lead().await {
                Ok(Some(l)) => {
                    tracing::info!("this replica runs the cluster's once-only jobs");
                    leader = Some(l);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot ask who runs the once-only jobs"),
            }
        }
        if leader.is_some() {
            metrics
                .leader
                .store(1, std::sync::atomic::Ordering::Relaxed);
            crate::alarms::pipeline::overdue(
                &store,
                &metrics,
                &events,
                crate::domain::time::now_ms(),
            )
            .await;
        } else {
            metrics
                .leader
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// How often the once-only jobs run (as the pipeline's housekeeping).
pub const EVERY: Duration = Duration::from_millis(HOUSEKEEPING_MS);
