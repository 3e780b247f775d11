//! Baseline learning (基线学习) through the pipeline: a simulated week of
//! readings (time is passed in, a reading every 10 minutes) goes through
//! the rules and the hourly rollups; at the end of the window the gateway
//! records each loop's natural level, recommends setpoints within the
//! standard's bounds, opens a 线路绝缘老化嫌疑 ticket for a loop that leaks
//! like an ageing one, and applies a recommendation as an audited change
//! the rules use at once and after a restart; setpoints outside the bounds
//! are refused with the reason. On SQLite and PostgreSQL.

mod common;

use common::db::TestDb;
use gateway::alarms::pipeline::{Pipeline, SetpointError};
use gateway::config::Config;
use gateway::ingest::Inbound;
use gateway::metrics::Metrics;
use gateway::store::{AlarmFilter, Store, TicketFilter};
use std::sync::Arc;

const H: u64 = 3_600_000;
/// Start of the simulated week (an hour boundary).
const T0: u64 = 1_790_000_000_000 - 1_790_000_000_000 % H;
const WEEK: u64 = 168 * H;

async fn pipeline(store: &Store) -> Pipeline {
    let config = Config::from_toml(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n\
         [[sites.nodes]]\nid = \"n01\"\nlocation = \"1号楼配电室\"\n",
    )
    .unwrap();
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let mut p = Pipeline::new(
        Arc::new(config),
        store.clone(),
        None,
        Arc::new(Metrics::default()),
        events,
    );
    p.start(T0, "config:test").await.unwrap();
    p
}

fn reading(seq: u32, at: u64, chans: &[(&str, &str, i64)]) -> Inbound {
    let ch: Vec<String> = chans
        .iter()
        .map(|(id, q, v)| format!(r#"{{"id":"{id}","q":"{q}","v":{v},"s":"ok"}}"#))
        .collect();
    Inbound {
        topic: "fire/v1/home_a/n01/telemetry".into(),
        payload: format!(
            r#"{{"boot":1,"seq":{seq},"ts":{at},"ch":[{}]}}"#,
            ch.join(",")
        )
        .into_bytes()
        .into(),
        arrived_ms: at,
        ack: None,
    }
}

/// A week of a care home's loops: rc1 a healthy lighting loop (100–140 mA
/// over the day), rc2 an ageing one (240–280 mA), t1 a terminal at
/// 30–38 °C.
async fn a_week(p: &mut Pipeline) -> u32 {
    let mut seq = 0;
    let mut at = T0;
    while at < T0 + WEEK {
        let hour_of_day = (at / H) % 24;
        let load = (hour_of_day as i64 - 12).abs(); // 0 at noon, 12 at midnight
        seq += 1;
        p.handle(&reading(
            seq,
            at,
            &[
                ("rc1", "residual_current", 140 - 40 * load / 12),
                ("rc2", "residual_current", 280 - 40 * load / 12),
                ("t1", "temperature", 380 - 80 * load / 12),
            ],
        ))
        .await;
        at += 10 * 60_000;
        // (`is_multiple_of` is newer than the workspace's rust-version.)
        #[allow(clippy::manual_is_multiple_of)]
        let merge = at % (6 * H) == 0;
        if merge {
            p.housekeeping(at).await; // rollups merged as the gateway does every minute
        }
    }
    seq
}

async fn a_week_of_readings_gives_baselines_recommendations_and_a_hazard(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let mut p = pipeline(&store).await;
    let mut seq = a_week(&mut p).await;
    // Nothing learned before the window ends…
    p.learn_baselines(T0 + WEEK - 1).await.unwrap();
    assert!(store.baselines("home_a").await.unwrap().is_empty());
    // …and each loop once after.
    p.housekeeping(T0 + WEEK + 60_000).await;
    p.housekeeping(T0 + WEEK + 120_000).await;
    let rows = store.baselines("home_a").await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>(),
        ["rc1", "rc2", "t1"]
    );
    let learned = |ch: &str| {
        let r = rows.iter().find(|r| r.channel == ch).unwrap();
        let b: gateway::commissioning::baseline::Baseline =
            serde_json::from_str(&r.baseline).unwrap();
        let rec: gateway::commissioning::baseline::Recommendation =
            serde_json::from_str(r.recommendation.as_deref().unwrap()).unwrap();
        (b, rec)
    };
    let (b1, r1) = learned("rc1");
    assert_eq!((b1.hours, b1.readings), (168, 1008));
    assert!(
        (100..=140).contains(&b1.p50) && (130..=140).contains(&b1.p95),
        "{b1:?}"
    );
    let alarm = r1.alarm.unwrap();
    assert!(
        (300..=500).contains(&alarm) && alarm >= 2 * b1.p95,
        "{r1:?}"
    );
    assert!(r1.hazard.is_none());
    let (b2, r2) = learned("rc2");
    assert!(b2.p95 > 200, "{b2:?}");
    assert!(r2.alarm.unwrap() >= 2 * b2.p95 && r2.alarm.unwrap() <= 1000);
    assert!(r2.hazard.as_deref().unwrap().contains("线路绝缘老化嫌疑"));
    let (_, rt) = learned("t1");
    assert_eq!(
        rt.alarm,
        Some(800),
        "a cool terminal keeps the 80 °C default"
    );

    // The ageing loop is a 一般隐患 ticket, and a finding in the alarm record
    // that needs no reset.
    let tickets = store.tickets(&TicketFilter::Open, 10).await.unwrap();
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert!(
        tickets[0].title.contains("rc2 线路绝缘老化嫌疑"),
        "{}",
        tickets[0].title
    );
    assert_eq!(tickets[0].grade, "general");
    let standing = store.alarms(AlarmFilter::Active, 10).await.unwrap();
    assert!(standing.is_empty(), "{standing:?}");

    // Outside the bounds: refused, with the reason.
    let refused = |r: Result<_, SetpointError>| match r {
        Err(SetpointError::Refused(why)) => why,
        other => panic!("not refused: {other:?}"),
    };
    let now = T0 + WEEK + H;
    let why = refused(
        p.apply_setpoints(
            "home_a",
            "n01",
            "rc1",
            Some(300),
            1200,
            "manual",
            "王工",
            "installer",
            now,
        )
        .await,
    );
    assert!(why.contains("1000 mA"), "{why}");
    let why = refused(
        p.apply_setpoints(
            "home_a",
            "n01",
            "rc2",
            Some(200),
            300,
            "manual",
            "王工",
            "installer",
            now,
        )
        .await,
    );
    assert!(why.contains("2 倍"), "{why}");
    assert!(matches!(
        p.apply_setpoints(
            "home_a",
            "n01",
            "rc9",
            None,
            300,
            "manual",
            "王工",
            "installer",
            now
        )
        .await,
        Err(SetpointError::NotFound)
    ));

    // The recommendation applied: audited, and judged by at once: 330 mA
    // was a 预警 under the default 500 mA alarm, it is an alarm now.
    let row = p
        .apply_setpoints(
            "home_a",
            "n01",
            "rc1",
            r1.pre_alarm,
            alarm,
            "recommendation",
            "王工",
            "installer",
            now,
        )
        .await
        .unwrap();
    assert_eq!((row.alarm, row.source.as_str()), (alarm, "recommendation"));
    let audit = store.audit_records().await.unwrap();
    assert!(audit.iter().any(|r| r.action == "rule.setpoint"));
    seq += 1;
    p.handle(&reading(
        seq,
        now + 1000,
        &[("rc1", "residual_current", alarm + 30)],
    ))
    .await;
    let a = store.alarms(AlarmFilter::Active, 10).await.unwrap();
    assert_eq!(
        a.iter()
            .map(|a| (a.channel.as_str(), a.level.as_str()))
            .collect::<Vec<_>>(),
        [("rc1", "alarm")]
    );

    // After a restart the applied setpoints still hold: t1 set to alarm
    // at 70 °C, then 72 °C after the restart is an alarm, not the 预警 the
    // default 80 °C would give.
    p.apply_setpoints(
        "home_a",
        "n01",
        "t1",
        Some(600),
        700,
        "manual",
        "李站长",
        "site_manager",
        now,
    )
    .await
    .unwrap();
    drop(p);
    let mut p = pipeline(&store).await;
    p.handle(&reading(seq + 1, now + 2000, &[("t1", "temperature", 720)]))
        .await;
    let t1 = store.alarms(AlarmFilter::Active, 10).await.unwrap();
    let t1 = t1.iter().find(|a| a.channel == "t1").expect("t1 alarm");
    assert_eq!(t1.level, "alarm");
    assert_eq!(store.setpoints_in_force().await.unwrap().len(), 2);
}

crate::on_both_backends!(a_week_of_readings_gives_baselines_recommendations_and_a_hazard);
