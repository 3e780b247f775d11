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
