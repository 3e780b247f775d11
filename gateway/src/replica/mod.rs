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
pub mod forward;
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
    /// The replicas' RabbitMQ user: forwarded commands must come from it.
    pub amqp_user: String,
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
/// that partition it goes to `forward`, for the replica that does
/// ([`forward`]), and commands forwarded here go to the partition's
/// pipeline, their answers back.
///
/// Partitions are shared out ([`Parts::share_out`], every
/// [`SHARE_EVERY`]).
pub async fn run(
    parts: Parts,
    mut deliveries: mpsc::Receiver<Delivery>,
    mut commands: mpsc::Receiver<Command>,
    release: mpsc::Sender<u32>,
    forward: mpsc::Sender<forward::Outgoing>,
) {
    let mut held: HashMap<u32, Held> = HashMap::new();
    let mut share_tick = tokio::time::interval(SHARE_EVERY);
    // Subscribed to the partitions: only then does this replica count as
    // one they can be shared with.
    let mut connected = false;
    loop {
        let d = tokio::select! {
            _ = share_tick.tick(), if connected => {
                parts.share_out(&mut held, &release).await;
                continue;
            }
            d = deliveries.recv() => match d {
                Some(d) => d,
                None => break,
            },
            Some(c) = commands.recv() => {
                let site = site_of(&parts.store, &c).await;
                // A reset of an alarm not found (or while the database is
                // away) is dropped: the API answers 503, try again.
                let Some(p) = site.map(|s| crate::ingest::rabbitmq::partition_of(&s, parts.partitions)) else {
                    continue;
                };
                match held.get(&p) {
                    Some(h) => {
                        let _ = h.commands.send(c).await;
                    }
                    None => {
                        if forward.try_send((p, c)).is_ok() {
                            parts.metrics.cluster_commands_forwarded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
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
                // Given up a moment ago: the channel closes next and the
                // message goes back to the queue.
                None => tracing::debug!(
                    partition = p,
                    "a message of a partition not held here; left unacknowledged"
                ),
            },
            Delivery::Command(p, incoming) => parts.forwarded(held.get(&p), incoming).await,
            Delivery::Connected => connected = true,
            Delivery::Lost => {
                connected = false;
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

impl Parts {
    /// A command another replica forwarded for partition `held`'s sites:
    /// checked ([`forward::accept`]), handed to the partition's pipeline,
    /// and answered from a task of its own (the loop feeding the pipelines
    /// never waits for an answer). One refused is acknowledged unanswered,
    /// counted; its caller's wait runs out.
    async fn forwarded(&self, held: Option<&Held>, incoming: forward::Incoming) {
        let now = crate::domain::time::now_ms();
        let accepted = forward::accept(
            &incoming.body,
            incoming.user_id.as_deref(),
            &self.amqp_user,
            now,
        );
        let (command, pending) = match (accepted, held) {
            (Ok(c), Some(_)) => c,
            (Ok(_), None) => {
                // Given up a moment ago: back to the queue with the rest.
                return;
            }
            (Err(e), _) => {
                self.metrics
                    .cluster_commands_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(reason = %e, "a forwarded command refused");
                incoming.answer(None).await;
                return;
            }
        };
        let sent = match held {
            Some(h) => h.commands.send(command).await.is_ok(),
            None => false,
        };
        self.metrics
            .cluster_commands_run
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            let reply = if sent {
                pending.reply().await
            } else {
                forward::Reply::Unavailable
            };
            incoming.answer(Some(forward::reply_body(&reply))).await;
        });
    }
}

/// How often a replica says it is alive and checks its share.
pub const SHARE_EVERY: Duration = Duration::from_secs(5);
/// A replica not seen for this long no longer counts.
const ALIVE_WITHIN_MS: u64 = 15_000;

impl Parts {
    /// Says this replica is alive and counts the replicas seen lately; one
    /// holding more than its share (`⌈partitions in use ÷ replicas⌉`) gives the
    /// surplus up — it stops the partition's pipeline (what is in flight is
    /// committed and acknowledged), then asks the consumers to `release` it
    /// (the channel closes, the rest goes back to the queue for the
    /// replica whose consumer is active next, which takes the partition
    /// with a new epoch).
    async fn share_out(&self, held: &mut HashMap<u32, Held>, release: &mpsc::Sender<u32>) {
        let now = crate::domain::time::now_ms();
        // Shared are the partitions that carry sites (ever taken: a row in
        // `partition_epoch`), not all 16: with ten in use and two replicas,
        // five each, not eight and two. The loop that feeds the pipelines
        // waits for this: never long.
        let asked = tokio::time::timeout(Duration::from_secs(2), async {
            let alive = self
                .store
                .replicas_alive(&self.replica, now, now.saturating_sub(ALIVE_WITHIN_MS))
                .await?;
            let in_use = self.store.partitions().await?.len() as u32;
            Ok::<_, crate::store::StoreError>((alive, in_use))
        })
        .await;
        let (n, in_use) = match asked {
            Ok(Ok(counts)) => counts,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot count the replicas alive and the partitions in use");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    "cannot count the replicas alive and the partitions in use: no answer within 2 s"
                );
                return;
            }
        };
        // Every held partition has its row (taken before held); the max
        // only matters if someone emptied the table under a running cluster.
        let share = fair_share(in_use.max(held.len() as u32), n);
        let mut mine: Vec<u32> = held.keys().copied().collect();
        mine.sort_unstable();
        for p in mine.into_iter().skip(share) {
            if let Some(h) = held.remove(&p) {
                stop(p, h).await;
                let _ = release.send(p).await;
                tracing::info!(
                    partition = p,
                    replicas = n,
                    share,
                    "partition given up to share the load"
                );
            }
        }
        self.held(held.len());
    }
}

/// How many partitions one of `replicas` replicas should hold at most.
pub fn fair_share(partitions: u32, replicas: u32) -> usize {
    partitions.div_ceil(replicas.max(1)) as usize
}

async fn stop(p: u32, h: Held) {
    drop(h.tx);
    let _ = h.task.await;
    tracing::info!(partition = p, "partition released");
}

#[cfg(test)]
mod tests {
    use super::fair_share;

    #[test]
    fn partitions_are_shared_out_rounding_up() {
        assert_eq!(fair_share(16, 1), 16);
        assert_eq!(fair_share(16, 2), 8);
        assert_eq!(fair_share(16, 3), 6);
        assert_eq!(fair_share(16, 0), 16);
        assert_eq!(fair_share(16, 40), 1);
    }
}
