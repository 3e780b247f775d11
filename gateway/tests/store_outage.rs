//! A database that stops answering must not lose an alarm. The pipeline
//! runs as in the gateway (batches, acknowledgements) while the database
//! really fails — SQLite locked by another process's connection for longer
//! than the busy timeout, PostgreSQL stopped and started again — and a node
//! crosses 700 mA meanwhile. While the database is away nothing is
//! acknowledged or announced and `/healthz`'s source says why; once it
//! answers, the alarm is raised exactly once, with one ticket, and every
//! message is acknowledged.

mod common;

use common::db::TestDb;
use gateway::alarms::events::GatewayEvent;
use gateway::alarms::pipeline::Pipeline;
use gateway::config::Config;
use gateway::ingest::Inbound;
use gateway::metrics::Metrics;
use gateway::store::{AlarmFilter, Store, TicketFilter};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

struct Running {
    tx: mpsc::Sender<Inbound>,
    acked: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    events: broadcast::Receiver<GatewayEvent>,
    store: Store,
    seq: u32,
    /// The wall clock at start (the dead-man timer runs on it).
    t0: u64,
    task: tokio::task::JoinHandle<()>,
    _commands: mpsc::Sender<gateway::alarms::pipeline::Command>,
}

async fn start(db: &TestDb) -> Running {
    let config =
        Config::from_toml("[[sites]]\nid = \"home_a\"\n[[sites.nodes]]\nid = \"n01\"\n").unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (events_tx, events) = broadcast::channel(1024);
    let mut p = Pipeline::new(
        Arc::new(config),
        store.clone(),
        None,
        metrics.clone(),
        events_tx,
    );
    let t0 = gateway::domain::time::now_ms();
    p.start(t0, "test").await.unwrap();
    let (tx, rx) = mpsc::channel(64);
    let (commands, commands_rx) = mpsc::channel(4);
    let task = tokio::spawn(p.run(rx, commands_rx));
    Running {
        tx,
        acked: Arc::new(AtomicU64::new(0)),
        metrics,
        events,
        store,
        seq: 0,
        t0,
        task,
        _commands: commands,
    }
}

impl Running {
    /// Sends one telemetry message with rc1 at `ma`.
    async fn send(&mut self, ma: i32) {
        let seq = self.seq;
        self.seq += 1;
        let acked = self.acked.clone();
        let payload = format!(
            r#"{{"boot":1,"seq":{seq},"ts":{},"ch":[{{"id":"rc1","q":"residual_current","v":{ma},"s":"ok"}},{{"id":"t1","q":"temperature","v":250,"s":"ok"}}]}}"#,
            self.t0 + u64::from(seq)
        );
        self.tx
            .send(Inbound {
                topic: "fire/v1/home_a/n01/telemetry".into(),
                payload: payload.into_bytes().into(),
                arrived_ms: self.t0 + u64::from(seq),
                ack: Some(Box::new(move || {
                    acked.fetch_add(1, Ordering::SeqCst);
                })),
            })
            .await
            .unwrap();
    }

    /// Waits (bounded) until `cond` holds.
    async fn until(&self, what: &str, within: Duration, cond: impl Fn(&Running) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !cond(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until every message sent is acknowledged.
    async fn until_all_acked(&self, within: Duration) {
        let sent = u64::from(self.seq);
        self.until("every message to be acknowledged", within, |r| {
            r.acked() == sent
        })
        .await;
    }

    fn raised_events(&mut self) -> usize {
        let mut n = 0;
        while let Ok(e) = self.events.try_recv() {
            if let GatewayEvent::AlarmRaised { alarm, .. } = e {
                assert_ne!(alarm.row.cause, "offline", "{alarm:?}");
                n += 1;
            }
        }
        n
    }

    /// While the database is away: the outage is reported, nothing more is
    /// acknowledged, nothing announced.
    async fn assert_held(&mut self, acked_before: u64) {
        self.until("the outage to be reported", Duration::from_secs(30), |r| {
            r.metrics.store_health.outage().is_some()
        })
        .await;
        assert_eq!(self.acked(), acked_before, "acknowledged before commit");
        assert_eq!(self.raised_events(), 0, "announced before commit");
        assert!(self.metrics.render().contains("gateway_store_available 0"));
    }

    /// Once the database answers: every message acknowledged, one alarm
    /// with one ticket, announced once.
    async fn assert_recovered(&mut self) {
        self.until_all_acked(Duration::from_secs(60)).await;
        assert!(self.metrics.store_health.outage().is_none());
        let standing = self.store.alarms(AlarmFilter::Standing, 100).await.unwrap();
        assert_eq!(standing.len(), 1, "one standing alarm: {standing:?}");
        assert_eq!(standing[0].level, "alarm");
        assert_eq!(standing[0].channel, "rc1");
        assert!(standing[0].ticket_id.is_some(), "the alarm has its ticket");
        let tickets = self.store.tickets(&TicketFilter::All, 100).await.unwrap();
        assert_eq!(tickets.len(), 1, "one ticket: {tickets:?}");
        let raised = self
            .store
            .alarm_log("home_a", Some("n01"), 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.transition == "raised")
            .count();
        assert_eq!(raised, 1, "raised once in the alarm log");
        assert_eq!(self.raised_events(), 1, "announced once");
        assert!(self.metrics.batch_commit_failures.load(Ordering::Relaxed) >= 1);
        assert!(!self
            .metrics
            .render()
            .contains("gateway_store_unavailable_seconds_total 0.000\n"));
    }

    async fn stop(self) {
        drop(self.tx);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("pipeline stops")
            .unwrap();
    }
}

/// Another connection's `BEGIN EXCLUSIVE` on the test's SQLite file, as a
/// backup, a VACUUM or a long report holds it.
async fn lock_sqlite(db: &TestDb) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut locker = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    locker
}

/// A running pipeline whose first reading, a normal one (100 mA), is
/// committed and acknowledged.
async fn start_normal(db: &TestDb) -> Running {
    let mut r = start(db).await;
    r.send(100).await;
    r.until("the first message", Duration::from_secs(10), |r| {
        r.acked() == 1
    })
    .await;
    r
}

/// Ends [`lock_sqlite`]'s transaction and closes its connection.
async fn unlock_sqlite(mut locker: sqlx::SqliteConnection) {
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    drop(locker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_past_the_busy_timeout_delays_the_alarm_but_never_loses_it() {
    let db = TestDb::sqlite();
    let mut r = start_normal(&db).await;

    // Another process's connection holds the write lock (a backup, a
    // VACUUM, a long report) for longer than the 5 s busy timeout.
    let locker = lock_sqlite(&db).await;
    for _ in 0..5 {
        r.send(700).await;
    }
    r.assert_held(1).await;
    // Past the busy timeout, still held: the batch keeps being retried.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(r.acked(), 1);
    unlock_sqlite(locker).await;
    for _ in 0..3 {
        r.send(700).await;
    }
    r.assert_recovered().await;
    r.stop().await;
}

/// What a run left: the alarm log's transitions and the alarm rows, in
/// order, without times or ids.
async fn outcome(store: &Store) -> Vec<String> {
    let mut out: Vec<String> = store
        .alarm_log("home_a", Some("n01"), 1000)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|l| {
            format!(
                "log {} {} {:?} {:?}",
                l.channel, l.transition, l.level, l.value
            )
        })
        .collect();
    let mut alarms = store.alarms(AlarmFilter::All, 1000).await.unwrap();
    alarms.sort_by_key(|a| a.id);
    out.extend(alarms.iter().map(|a| {
        format!(
            "alarm {} {} {} {} ticket {}",
            a.channel,
            a.cause,
            a.level,
            a.state,
            a.ticket_id.is_some()
        )
    }));
    out
}

/// The readings of [`sqlite_a_failed_commit_takes_the_batches_queued_behind_it_back_too`]:
/// an alarm, back to normal, an alarm again.
const SWINGS: [i32; 3] = [700, 100, 700];

/// On SQLite the pipeline evaluates the next batch while the writer thread
/// commits the last (`alarms/pipeline/inflight.rs`). Messages sent apart go
/// in separate batches, so when the first commit fails (the database
/// locked past the busy timeout) the next batch was already evaluated on
/// its state and queued behind it. The lock is released the moment the
/// first commit has failed, so the queued batch *could* commit: it must
/// not (its transitions come from a state never committed), and the retry
/// of both must leave exactly what an uninterrupted run leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failed_commit_takes_the_batches_queued_behind_it_back_too() {
    // The uninterrupted run.
    let reference = {
        let db = TestDb::sqlite();
        let mut r = start(&db).await;
        r.send(100).await;
        for ma in SWINGS {
            r.send(ma).await;
        }
        r.until_all_acked(Duration::from_secs(20)).await;
        let out = outcome(&r.store).await;
        r.stop().await;
        out
    };
    assert!(
        reference.iter().filter(|l| l.starts_with("log")).count() >= 2,
        "the swings are transitions: {reference:?}"
    );

    let db = TestDb::sqlite();
    let mut r = start_normal(&db).await;
    let locker = lock_sqlite(&db).await;
    // One batch each: the first waits for the lock on the writer thread,
    // the second is evaluated on the state the first leaves and queued
    // behind it, the third waits for room.
    for ma in SWINGS {
        r.send(ma).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    r.until("the first commit to fail", Duration::from_secs(30), |r| {
        r.metrics.batch_commit_failures.load(Ordering::Relaxed) >= 1
    })
    .await;
    unlock_sqlite(locker).await;
    r.until_all_acked(Duration::from_secs(60)).await;
    assert_eq!(outcome(&r.store).await, reference);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_again_delays_the_alarm_but_never_loses_it() {
    let db = TestDb::postgres().await;
    let mut r = start_normal(&db).await;

    common::db::stop_postgres();
    for _ in 0..5 {
        r.send(700).await;
    }
    r.assert_held(1).await;
    // Down for 20 s in all.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(r.acked(), 1);
    common::db::start_postgres();
    for _ in 0..3 {
        r.send(700).await;
    }
    r.assert_recovered().await;
    r.stop().await;
}
