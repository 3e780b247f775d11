//! The pipeline without a broker: messages in, store and counters out.

mod common;

use common::db::TestDb;
use gateway::alarms::pipeline::{Pipeline, MAX_CLOCK_AHEAD_MS};
use gateway::config::Config;
use gateway::ingest::Inbound;
use gateway::metrics::Metrics;
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

async fn readings_roll_up_into_daily_maxima_per_channel(db: TestDb) {
    let (mut p, store, _) = pipeline(&db).await;
    const H: u64 = 3_600_000;
    // A China day (starting 16:00 UTC the day before) two days back: every
    // reading is in the past, so its own timestamp counts.
    let day = (NOW + 8 * H) / (24 * H) * (24 * H) - 8 * H - 48 * H;
    // Day 1: 120 and 180 in one hour, 150 in another; day 2: 90.
    p.handle(&msg(1, day + H, 120)).await;
    p.handle(&msg(2, day + H + 60_000, 180)).await;
    // A merge in between: the next one adds to the stored hour.
    p.flush_rollups().await;
    p.handle(&msg(3, day + H + 120_000, 170)).await;
    p.handle(&msg(4, day + 5 * H, 150)).await;
    p.handle(&msg(5, day + 25 * H, 90)).await;
    p.flush_rollups().await;
    let rows = store
        .daily_max(
            "home_a",
            "residual_current",
            day as i64,
            (day + 48 * H) as i64,
        )
        .await
        .unwrap();
    let got: Vec<(i64, i64, i64)> = rows.iter().map(|r| (r.day_start, r.max, r.count)).collect();
    assert_eq!(
        got,
        [(day as i64, 180, 4), ((day + 24 * H) as i64, 90, 1)],
        "{rows:?}"
    );
    assert_eq!(rows[0].channel, "rc1");
    // The latest reading is kept too: the newest by its own time.
    let latest = store.latest_in(None).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!((latest[0].value, latest[0].at), (90, (day + 25 * H) as i64));
    assert!(rows[0].day.len() == 10 && rows[0].day != rows[1].day);
}

crate::on_both_backends!(
    readings_roll_up_into_daily_maxima_per_channel,
    a_clock_running_ahead_is_replaced_by_arrival_time,
    no_wall_clock_means_arrival_time,
    late_readings_are_kept_but_do_not_drive_the_rules,
);
