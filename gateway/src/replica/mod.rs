//! One replica of a cluster (issue 16): the partitions this replica's
//! consumers are active on, each with a pipeline of its own.
//!
//! When a partition's consumer becomes active ([`Delivery::Activated`]) the
//! replica takes the partition in the database (its epoch goes up; the
//! take waits for a batch the previous holder is still committing), then
//! starts a pipeline scoped to the partition's sites and fenced with that
//! epoch, which loads their committed state (rule state, de-duplication
//! windows, standing offline alarms) before it handles a message: the
//! messages the previous holder had not acknowledged come again, and those
//! it had committed are recognised as duplicates by the restored windows.
//! When the connection to RabbitMQ goes ([`Delivery::Lost`]) every
//! partition goes with it: the pipelines are stopped (what they had not
//! acknowledged is redelivered to whichever replica is active next).

pub mod fanout;
pub mod leader;

use crate::alarms::events::GatewayEvent;
use crate::alarms::pipeline::{Command, Commander, Pipeline, Scope};
use crate::ingest::partitions::Delivery;
use crate::ingest::Inbound;
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// What every partition's pipeline is made with.
pub struct Parts {
    pub live: crate::live::Live,
    pub store: Store,
    pub sink: Option<Sink>,
    pub metrics: Arc<Metrics>,
    pub events: broadcast::Sender<GatewayEvent>,
    pub commander: Commander,
    pub replica: String,
    pub partitions: u32,
    pub selftest_window_ms: u64,
    pub baseline_hours: u32,
}

/// A partition held: its pipeline's queues and task.
struct Held {
    tx: mpsc::Sender<Inbound>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl Parts {
    fn held(&self, n: usize) {
        self.metrics
            .partitions_held
            .store(n as i64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes partition `p` and starts its pipeline; tries again (1 s
    /// doubling to 10 s) while the database does not answer.
    async fn hold(&self, p: u32) -> Held {
        let mut wait = Duration::from_secs(1);
        loop {
            match self.try_hold(p).await {
                Ok(held) => return held,
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "cannot take the partition; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn try_hold(&self, p: u32) -> Result<Held, crate::store::StoreError> {
        let now = crate::domain::time::now_ms();
        let fence = self.store.take_partition(p, &self.replica, now).await?;
        let scope = Scope {
            fence,
            partitions: self.partitions,
        };
        let mut pipeline = Pipeline::new(
            self.live.config(),
            self.store.reserved(),
            self.sink.clone(),
            self.metrics.clone(),
            self.events.clone(),
        )
        .with_commander(self.commander.clone())
        .with_selftest_window(self.selftest_window_ms)
        .with_baseline_window(self.baseline_hours)
        .with_live(self.live.subscribe())
        .with_scope(scope);
        pipeline.start(now, "config").await?;
        self.announce_recent(&scope, now).await?;
        tracing::info!(partition = p, epoch = fence.epoch, replica = %self.replica, "partition taken: its sites are handled here");
        let (tx, rx) = mpsc::channel(10_000);
        let (commands, commands_rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            pipeline.run(rx, commands_rx).await;
        });
        Ok(Held { tx, commands, task })
    }
}

impl Parts {
    /// The partition's alarms still standing that were raised in the last
    /// [`RECENT_MS`], announced again as updates: the previous holder may
    /// have committed one and died before announcing it, and a duty desk
    /// (or the leader's notifier, which sends a first notice only where
    /// none was delivered) would never hear of it.
    async fn announce_recent(
        &self,
        scope: &Scope,
        now: u64,
    ) -> Result<(), crate::store::StoreError> {
        let since = now.saturating_sub(RECENT_MS) as i64;
        for row in self
            .store
            .alarms(crate::store::AlarmFilter::Standing, 10_000)
            .await?
        {
            if scope.contains(&row.site) && row.raised_at >= since {
                let _ = self.events.send(GatewayEvent::AlarmUpdated {
                    alarm: crate::alarms::events::AlarmView::from(row),
                });
            }
        }
        Ok(())
    }
}

/// How far back a partition's new holder announces standing alarms again.
pub const RECENT_MS: u64 = 5 * 60 * 1000;

/// The site a command from the API is about (a reset names its alarm).
async fn site_of(store: &Store, c: &Command) -> Option<String> {
    match c {
        Command::Reset { alarm_id, .. } => {
            store.alarm(*alarm_id).await.ok().flatten().map(|a| a.site)
        }
        Command::ApplySetpoints { site, .. } | Command::SelfTest { site, .. } => Some(site.clone()),
    }
}

/// Runs the partitions' pipelines from `deliveries` until it closes, then
/// stops them (each drains what it holds). A command from the API goes to
/// the pipeline of its site's partition; where this replica does not hold
/// that partition the command is dropped and the API answers that it is
/// not available here.
pub async fn run(
    parts: Parts,
    mut deliveries: mpsc::Receiver<Delivery>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut held: HashMap<u32, Held> = HashMap::new();
    loop {
        let d = tokio::select! {
            d = deliveries.recv() => match d {
                Some(d) => d,
                None => break,
            },
            Some(c) = commands.recv() => {
                let site = site_of(&parts.store, &c).await;
                let p = site.map(|s| crate::ingest::rabbitmq::partition_of(&s, parts.partitions));
                if let Some(h) = p.and_then(|p| held.get(&p)) {
                    let _ = h.commands.send(c).await;
                }
                continue;
            }
        };
        match d {
            Delivery::Activated(p) => {
                if let Some(old) = held.remove(&p) {
                    stop(p, old).await;
                }
                held.insert(p, parts.hold(p).await);
                parts.held(held.len());
            }
            Delivery::Message(p, msg) => match held.get(&p) {
                Some(h) => {
                    if h.tx.send(msg).await.is_err() {
                        // The pipeline stopped (fenced off): the message
                        // stays unacknowledged for the partition's holder.
                        held.remove(&p);
                        parts.held(held.len());
                    }
                }
                None => tracing::warn!(
                    partition = p,
                    "a message of a partition not held here; left unacknowledged"
                ),
            },
            Delivery::Lost => {
                for (p, h) in held.drain() {
                    stop(p, h).await;
                }
                parts.held(0);
            }
        }
    }
    for (p, h) in held.drain() {
        stop(p, h).await;
    }
}

async fn stop(p: u32, h: Held) {
    drop(h.tx);
    let _ = h.task.await;
    tracing::info!(partition = p, "partition released");
}
