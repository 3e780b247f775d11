//! The pipeline without a broker: messages in, store and counters out.

mod common;

use common::db::TestDb;
use gateway::config::Config;
use gateway::metrics::Metrics;
use gateway::pipeline::{Inbound, Pipeline, MAX_CLOCK_AHEAD_MS};
use gateway::store::{AlarmFilter, Store};
use std::sync::atomic::Ordering;
use std::sync::Arc;

const NOW: u64 = 1_790_000_000_000;

async fn pipeline(db: &TestDb) -> (Pipeline, Store, Arc<Metrics>) {
    let config =
        Config::from_toml("[[sites]]\nid = \"home_a\"\n[[sites.nodes]]\nid = \"n01\"\n").unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (events, _) = tokio::sync::broadcast::channel(16);
    (
        Pipeline::new(
            Arc::new(config),
            store.clone(),
            None,
            metrics.clone(),
            events,
        ),
        store,
        metrics,
    )
}

fn msg(seq: u32, ts: u64, rc: i32) -> Inbound {
    let payload = format!(
        r#"{{"boot":1,"seq":{seq},"ts":{ts},"ch":[{{"id":"rc1","q":"residual_current","v":{rc},"s":"ok"}}]}}"#
    );
    Inbound {
        topic: "fire/v1/home_a/n01/telemetry".into(),
        payload: payload.into_bytes().into(),
        arrived_ms: NOW,
        ack: None,
    }
}

async fn a_clock_running_ahead_is_replaced_by_arrival_time(db: TestDb) {
    let (mut p, store, metrics) = pipeline(&db).await;
    p.handle(&msg(0, NOW + MAX_CLOCK_AHEAD_MS + 1, 620)).await;
    let alarms = store.alarms(AlarmFilter::All, 10).await.unwrap();
    assert_eq!(alarms[0].raised_at, NOW as i64);
    assert_eq!(metrics.clock_ahead.load(Ordering::Relaxed), 1);
}

async fn no_wall_clock_means_arrival_time(db: TestDb) {
    let (mut p, store, metrics) = pipeline(&db).await;
    p.handle(&msg(0, 0, 620)).await;
    assert_eq!(
        store.alarms(AlarmFilter::All, 10).await.unwrap()[0].raised_at,
        NOW as i64
    );
    assert_eq!(metrics.clock_ahead.load(Ordering::Relaxed), 0);
}

async fn late_readings_are_kept_but_do_not_drive_the_rules(db: TestDb) {
    let (mut p, store, metrics) = pipeline(&db).await;
    p.handle(&msg(5, NOW - 1000, 150)).await;
    p.handle(&msg(3, NOW - 3000, 900)).await; // backfilled: older than what the rules have seen
    p.handle(&msg(3, NOW - 3000, 900)).await; // and redelivered
    assert!(store.alarms(AlarmFilter::All, 10).await.unwrap().is_empty());
    assert_eq!(metrics.readings_accepted.load(Ordering::Relaxed), 2);
    assert_eq!(metrics.readings_late.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.dropped("duplicate"), 1);
    p.handle(&msg(8, NOW, 150)).await;
    assert_eq!(
        metrics.seq_gaps.load(Ordering::Relaxed),
        2,
        "seq 6 and 7 missing"
    );
}

crate::on_both_backends!(
    a_clock_running_ahead_is_replaced_by_arrival_time,
    no_wall_clock_means_arrival_time,
    late_readings_are_kept_but_do_not_drive_the_rules,
);
