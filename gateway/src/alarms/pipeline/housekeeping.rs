//! The pipeline's timers: the tick (offline deadlines, self-test windows),
//! the minute's rollups, and housekeeping (overdue tickets, offline
//! tickets, baselines, pruning).

use super::specs;
use super::{Pipeline, HOUSEKEEPING_MS};
use crate::alarms::events::{AlarmView, GatewayEvent};
use crate::metrics::inc;
use crate::store::AlarmKey;

impl Pipeline {
    /// Checks every node's dead-man timer and the self-test windows at
    /// `now`; a commit that fails is tried again at the next tick (the
    /// timers, thrown back, fire again).
    pub async fn tick(&mut self, now: u64) {
        if let Err(e) = self.evaluate_and_commit(|core| core.tick(now)).await {
            tracing::error!(error = %e, "store: timer outputs not committed; tried again next tick");
            return;
        }
        if now.saturating_sub(self.last_housekeeping) >= HOUSEKEEPING_MS {
            self.last_housekeeping = now;
            self.housekeeping(now).await;
        }
    }

    /// Merges the pending hourly rollups into the store; kept for the next
    /// try when the store fails.
    pub async fn flush_rollups(&mut self) {
        if self.rollups.is_empty() {
            return;
        }
        let rows = self.rollups.take();
        if let Err(e) = self.store.merge_rollups(&rows).await {
            inc(&self.metrics.store_errors);
            tracing::error!(error = %e, "store: hourly rollups not merged; kept for the next try");
            self.rollups.restore(rows);
        }
        let latest = self.rollups.take_last();
        if let Err(e) = self.store.save_latest(&latest).await {
            inc(&self.metrics.store_errors);
            tracing::error!(error = %e, "store: latest readings not saved");
        }
    }

    /// The slower duties of the tick: hourly rollups merged, baselines
    /// learned, the SQLite WAL checkpointed, 离线 tickets for nodes (and
    /// sites) offline past the configured time, and the overdue check of
    /// deadlines.
    pub async fn housekeeping(&mut self, now: u64) {
        self.flush_rollups().await;
        if let Err(e) = self.learn_baselines(now).await {
            inc(&self.metrics.store_errors);
            tracing::error!(error = %e, "store: cannot learn baselines");
        }
        if let Err(e) = self.store.checkpoint().await {
            tracing::warn!(error = %e, "store: WAL checkpoint failed; retried next minute");
        }
        let after = u64::from(self.config().tickets.offline_ticket_after_mins) * 60_000;
        let due = match self
            .store
            .offline_due_ticket(now.saturating_sub(after))
            .await
        {
            Ok(d) => d,
            Err(e) => {
                inc(&self.metrics.store_errors);
                tracing::error!(error = %e, "store: cannot list offline alarms");
                return;
            }
        };
        for row in due.into_iter().filter(|r| self.mine(&r.site)) {
            let key = AlarmKey {
                site: row.site.clone(),
                node: row.node.clone(),
                channel: row.channel.clone(),
                cause: row.cause.clone(),
            };
            let spec = specs::offline(self.config(), &key);
            match self
                .store
                .link_ticket(row.id, Some(&spec), false, now)
                .await
            {
                Ok((row, outcome)) => {
                    self.count_ticket(&outcome, row.id);
                    let _ = self.events.send(GatewayEvent::AlarmUpdated {
                        alarm: AlarmView::from(row),
                    });
                }
                Err(e) => {
                    inc(&self.metrics.store_errors);
                    tracing::error!(error = %e, "store: cannot open an offline ticket");
                }
            }
        }
        if self.scope.is_some() {
            // Deadlines span every site: the replica checks them once
            // across the cluster, not each partition's pipeline.
            return;
        }
        overdue(&self.store, &self.metrics, &self.events, now).await;
    }
}

/// Flags open tickets whose deadline has passed and escalates each, once;
/// announces them. A job that spans every site: a single gateway runs it
/// in its pipeline's housekeeping, a cluster once, on its leader
/// (`replica::leader`).
pub async fn overdue(
    store: &crate::store::Store,
    metrics: &crate::metrics::Metrics,
    events: &tokio::sync::broadcast::Sender<GatewayEvent>,
    now: u64,
) {
    match store.mark_overdue(now).await {
        Ok(tickets) => {
            for t in tickets {
                inc(&metrics.tickets_overdue);
                tracing::warn!(ticket = %t.number, escalated_to = ?t.escalated_to, "ticket overdue; escalated");
                let _ = events.send(GatewayEvent::TicketUpdated {
                    ticket: crate::alarms::events::TicketView::from(t),
                });
            }
        }
        Err(e) => {
            inc(&metrics.store_errors);
            tracing::error!(error = %e, "store: cannot mark overdue tickets");
        }
    }
}
