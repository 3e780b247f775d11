//! Ingest partitions' fences (issue 16): a batch committed for a partition
//! is refused once another replica has taken the partition, on both
//! backends; on PostgreSQL a take waits for the batch being committed.

mod common;

use common::db::TestDb;
use gateway::store::{AlarmKey, Fence, LogEntry, Store, StoreError};
use std::time::Duration;

fn entry(key: &AlarmKey, at: u64) -> LogEntry<'_> {
    LogEntry {
        at,
        key,
        transition: "raised",
        level: Some("alarm"),
        value: Some(700),
        disposition: "notify",
        actor: "system",
    }
}

fn key() -> AlarmKey {
    AlarmKey {
        site: "home_a".into(),
        node: "n01".into(),
        channel: "rc1".into(),
        cause: "residual_current_high".into(),
    }
}

async fn log_under(store: &Store, fence: Fence, at: u64) -> Result<(), StoreError> {
    let k = key();
    let mut b = store.batch().await?;
    b.fence(fence).await?;
    b.log_transition(&entry(&k, at)).await?;
    b.commit().await
}

async fn logged(store: &Store) -> usize {
    store.alarm_log("home_a", None, 100).await.unwrap().len()
}

async fn a_batch_of_the_old_holder_is_refused(url: &str) {
    let store = Store::open(url).await.unwrap();
    let a = store.take_partition(3, "replica-a", 1).await.unwrap();
    assert_eq!(
        a,
        Fence {
            partition: 3,
            epoch: 1
        }
    );
    log_under(&store, a, 10).await.unwrap();
    // Another partition's take moves nothing here.
    assert_eq!(
        store.take_partition(4, "replica-b", 2).await.unwrap().epoch,
        1
    );
    log_under(&store, a, 11).await.unwrap();
    let b = store.take_partition(3, "replica-b", 3).await.unwrap();
    assert_eq!(b.epoch, 2);
    match log_under(&store, a, 12).await {
        Err(StoreError::Fenced {
            partition: 3,
            epoch: 1,
            current: Some(2),
        }) => {}
        other => panic!("the old holder's batch must be fenced off, got {other:?}"),
    }
    // Nothing of the refused batch is in the database.
    assert_eq!(logged(&store).await, 2);
    log_under(&store, b, 13).await.unwrap();
    // A partition never taken fences everything off.
    let never = Fence {
        partition: 9,
        epoch: 1,
    };
    assert!(matches!(
        log_under(&store, never, 14).await,
        Err(StoreError::Fenced { current: None, .. })
    ));
    let rows = store.partitions().await.unwrap();
    let holders: Vec<(i32, i64, &str)> = rows
        .iter()
        .map(|r| (r.partition, r.epoch, r.holder.as_str()))
        .collect();
    assert_eq!(holders, [(3, 2, "replica-b"), (4, 1, "replica-b")]);
    store.close().await;
}

#[tokio::test]
async fn sqlite_a_batch_of_the_old_holder_is_refused() {
    let db = TestDb::sqlite();
    a_batch_of_the_old_holder_is_refused(&db.url).await;
}

#[tokio::test]
async fn postgres_a_batch_of_the_old_holder_is_refused() {
    let db = TestDb::postgres().await;
    a_batch_of_the_old_holder_is_refused(&db.url).await;
}

/// The take waits for the batch the old holder is committing, so the new
/// holder's state load sees it; the old holder's next batch is refused.
#[tokio::test]
async fn postgres_a_take_waits_for_the_batch_being_committed() {
    let db = TestDb::postgres().await;
    let store = Store::open(&db.url).await.unwrap();
    let a = store.take_partition(5, "replica-a", 1).await.unwrap();
    let k = key();
    let mut batch = store.batch().await.unwrap();
    batch.fence(a).await.unwrap();
    batch.log_transition(&entry(&k, 20)).await.unwrap();
    let taker = {
        let store = store.clone();
        tokio::spawn(async move { store.take_partition(5, "replica-b", 2).await })
    };
    // The take is blocked on the batch's row lock: it cannot answer while
    // the batch is open (a generous window on a loaded machine).
    let mut taker = taker;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut taker)
            .await
            .is_err(),
        "the take must wait for the old holder's open batch"
    );
    batch.commit().await.unwrap();
    let b = taker.await.unwrap().unwrap();
    assert_eq!(b.epoch, 2);
    assert_eq!(logged(&store).await, 1);
    assert!(matches!(
        log_under(&store, a, 21).await,
        Err(StoreError::Fenced { .. })
    ));
    store.close().await;
}

/// One replica at a time runs the once-only jobs: the holder of the
/// advisory lock; when its session goes, another takes it.
#[tokio::test]
async fn postgres_one_replica_leads_until_its_session_goes() {
    let db = TestDb::postgres().await;
    let a = Store::open(&db.url).await.unwrap();
    let b = Store::open(&db.url).await.unwrap();
    let mut lead_a = a
        .try_lead()
        .await
        .unwrap()
        .expect("the first replica leads");
    assert!(lead_a.alive().await);
    assert!(b.try_lead().await.unwrap().is_none(), "two leaders");
    assert!(
        a.try_lead().await.unwrap().is_none(),
        "a second session of the leader must not lead too"
    );
    drop(lead_a);
    // The session closes as the connection is dropped: b leads soon after.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut lead_b = loop {
        if let Some(l) = b.try_lead().await.unwrap() {
            break l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never took the lead"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(lead_b.alive().await);
    a.close().await;
    b.close().await;
}

/// A scoped pipeline whose partition another replica has taken stops at
/// its next commit: the batch is not written, its messages are not
/// acknowledged (the broker hands them to the new holder).
#[tokio::test]
async fn postgres_a_fenced_off_pipeline_stops_and_acknowledges_nothing() {
    use gateway::alarms::pipeline::{Pipeline, Scope};
    use gateway::config::Config;
    use gateway::ingest::rabbitmq::{partition_of, PARTITIONS};
    use gateway::ingest::Inbound;
    use gateway::store::AlarmFilter;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    const NOW: u64 = 1_790_000_000_000;
    let db = TestDb::postgres().await;
    let store = Store::open(&db.url).await.unwrap();
    let config = Config::from_toml(
        "[[sites]]\nid = \"home_a\"\n[[sites.nodes]]\nid = \"n01\"\n\
         [[sites]]\nid = \"home_b\"\n[[sites.nodes]]\nid = \"n01\"\n",
    )
    .unwrap();
    let p = partition_of("home_a", PARTITIONS);
    assert_ne!(p, partition_of("home_b", PARTITIONS));
    let fence = store.take_partition(p, "replica-a", NOW).await.unwrap();
    let (events, _) = tokio::sync::broadcast::channel(16);
    let metrics = Arc::new(gateway::metrics::Metrics::default());
    let mut pipeline = Pipeline::new(
        Arc::new(config),
        store.clone(),
        None,
        metrics.clone(),
        events,
    )
    .with_scope(Scope {
        fence,
        partitions: PARTITIONS,
    });
    pipeline.start(NOW, "config").await.unwrap();
    let acked = Arc::new(AtomicU32::new(0));
    let msg = |site: &str, seq: u32, rc: i32| {
        let acked = acked.clone();
        Inbound {
            topic: format!("fire/v1/{site}/n01/telemetry"),
            payload: format!(
                r#"{{"boot":1,"seq":{seq},"ts":0,"ch":[{{"id":"rc1","q":"residual_current","v":{rc},"s":"ok"}}]}}"#
            )
            .into_bytes()
            .into(),
            arrived_ms: NOW + u64::from(seq) * 1000,
            ack: Some(Box::new(move || {
                acked.fetch_add(1, Ordering::SeqCst);
            })),
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (_commands, commands_rx) = tokio::sync::mpsc::channel(1);
    let mut task = tokio::spawn(pipeline.run(rx, commands_rx));
    // Its own partition's message: committed, acknowledged. Another
    // partition's site is not this pipeline's: dropped, never judged.
    tx.send(msg("home_a", 0, 700)).await.unwrap();
    tx.send(msg("home_b", 0, 700)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked.load(Ordering::SeqCst) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // (A node's first message may also stand as a notice: rc1's alarm is
    // what is looked at.)
    let rc1 = |rows: Vec<gateway::store::AlarmRow>| -> Vec<(String, String)> {
        rows.into_iter()
            .filter(|a| a.channel == "rc1")
            .map(|a| (a.site, a.state))
            .collect()
    };
    let standing = rc1(store.alarms(AlarmFilter::Standing, 10).await.unwrap());
    assert_eq!(standing, [("home_a".to_string(), "active".to_string())]);
    let rc1_log = |log: Vec<gateway::store::AlarmLogRow>| -> Vec<String> {
        log.into_iter()
            .filter(|l| l.channel == "rc1")
            .map(|l| l.transition)
            .collect()
    };
    let log_before = rc1_log(store.alarm_log("home_a", None, 10).await.unwrap());
    assert!(!log_before.is_empty());
    // Replica-b takes the partition; the next batch is refused and the
    // pipeline stops by itself (its queue is still open).
    store
        .take_partition(p, "replica-b", NOW + 5000)
        .await
        .unwrap();
    tx.send(msg("home_a", 1, 100)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), &mut task)
        .await
        .expect("a fenced-off pipeline stops")
        .unwrap();
    assert_eq!(
        acked.load(Ordering::SeqCst),
        2,
        "nothing acknowledged after the take-over"
    );
    assert!(metrics
        .render()
        .contains("\ngateway_cluster_batches_fenced_total 1\n"));
    // The clearing reading was not written: the alarm stands as it was.
    let after = rc1(store.alarms(AlarmFilter::Standing, 10).await.unwrap());
    assert_eq!(after, standing);
    let log = rc1_log(store.alarm_log("home_a", None, 10).await.unwrap());
    assert_eq!(log, log_before);
    drop(tx);
    store.close().await;
}
