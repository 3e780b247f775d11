//! The pipeline's alarm semantics end to end, without a broker: dead-man
//! offline, root-cause suppression and its release, site uplink loss,
//! flapping, hovering at a setpoint, authorised reset, and the audit of rule
//! changes. Time is passed in; nothing sleeps.

mod common;

use common::db::TestDb;
use gateway::alarms::events::GatewayEvent;
use gateway::alarms::pipeline::{Pipeline, ResetError};
use gateway::config::Config;
use gateway::ingest::Inbound;
use gateway::metrics::Metrics;
use gateway::store::{AlarmFilter, AlarmRow, Store, TicketFilter};
use std::sync::Arc;
use tokio::sync::broadcast;

const T0: u64 = 1_790_000_000_000;

const CONFIG: &str = r#"
offline_after_secs = 60
[[sites]]
id = "home_a"
name = "阳光养老院"
[[sites.nodes]]
id = "n01"
[[sites.nodes]]
id = "n02"
"#;

struct Rig {
    p: Pipeline,
    store: Store,
    events: broadcast::Receiver<GatewayEvent>,
    seq: u32,
    _db: TestDb,
}

impl Rig {
    async fn new(db: TestDb, config: &str) -> Rig {
        let store = Store::open(&db.url).await.unwrap();
        let (tx, events) = broadcast::channel(256);
        let config = Arc::new(Config::from_toml(config).unwrap());
        let mut p = Pipeline::new(
            config,
            store.clone(),
            None,
            Arc::new(Metrics::default()),
            tx,
        );
        p.start(T0, "config:test.toml").await.unwrap();
        Rig {
            p,
            store,
            events,
            seq: 0,
            _db: db,
        }
    }

    async fn send(&mut self, topic: &str, payload: String, at: u64) {
        let msg = Inbound {
            topic: topic.into(),
            payload: payload.into_bytes().into(),
            arrived_ms: at,
            ack: None,
        };
        self.p.handle(&msg).await;
    }

    async fn rc(&mut self, node: &str, v: i32, at: u64) {
        self.seq += 1;
        let payload = format!(
            r#"{{"boot":1,"seq":{},"ts":{at},"ch":[{{"id":"rc1","q":"residual_current","v":{v},"s":"ok"}}]}}"#,
            self.seq
        );
        self.send(&format!("fire/v1/home_a/{node}/telemetry"), payload, at)
            .await;
    }

    async fn supply(&mut self, node: &str, level: &str, at: u64) {
        self.seq += 1;
        let payload = format!(
            r#"{{"boot":1,"seq":{},"ts":{at},"ch":"supply","level":"{level}","v":0}}"#,
            self.seq
        );
        self.send(&format!("fire/v1/home_a/{node}/event"), payload, at)
            .await;
    }

    async fn standing(&self) -> Vec<AlarmRow> {
        let mut rows = self.store.alarms(AlarmFilter::Standing, 100).await.unwrap();
        rows.sort_by_key(|r| r.id);
        rows
    }

    /// Events notified to the desk since the last call: (node, cause, suppressed, flapping).
    fn notified(&mut self) -> Vec<(String, String, bool, bool)> {
        let mut out = Vec::new();
        while let Ok(ev) = self.events.try_recv() {
            if let GatewayEvent::AlarmRaised { alarm, .. } | GatewayEvent::AlarmUpdated { alarm } =
                ev
            {
                out.push((
                    alarm.row.node,
                    alarm.row.cause,
                    alarm.row.suppressed,
                    alarm.row.flapping,
                ));
            }
        }
        out
    }
}

async fn a_silent_node_goes_offline_and_comes_back(db: TestDb) {
    let mut r = Rig::new(db, CONFIG).await;
    r.rc("n01", 150, T0 + 1_000).await;
    r.rc("n02", 150, T0 + 1_000).await;
    // n02 keeps reporting; n01 falls silent for the 60 s dead-man time.
    for s in 1..=70u64 {
        r.rc("n02", 150, T0 + 1_000 + s * 1_000).await;
        r.p.tick(T0 + 1_000 + s * 1_000).await;
    }
    let standing = r.standing().await;
    assert_eq!(standing.len(), 1, "{standing:?}");
    assert_eq!(
        (
            standing[0].node.as_str(),
            standing[0].cause.as_str(),
            standing[0].suppressed
        ),
        ("n01", "offline", false)
    );
    // It reports again: the offline alarm clears.
    r.rc("n01", 150, T0 + 80_000).await;
    assert!(r.standing().await.is_empty());
    let log = r.store.alarm_log("home_a", Some("n01"), 10).await.unwrap();
    let names: Vec<&str> = log.iter().rev().map(|l| l.transition.as_str()).collect();
    assert_eq!(names, ["offline_timeout", "online"]);
}

async fn a_whole_site_going_silent_is_one_uplink_alarm(db: TestDb) {
    let mut r = Rig::new(db, CONFIG).await;
    r.rc("n01", 150, T0).await;
    r.rc("n02", 150, T0).await;
    r.notified();
    r.p.tick(T0 + 61_000).await;
    let standing = r.standing().await;
    let site: Vec<_> = standing.iter().filter(|a| a.cause == "uplink").collect();
    let nodes: Vec<_> = standing.iter().filter(|a| a.cause == "offline").collect();
    assert_eq!(site.len(), 1, "one site-level alarm: {standing:?}");
    assert!(!site[0].suppressed);
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes.iter().all(|a| a.suppressed),
        "node alarms stand under the site's: {nodes:?}"
    );
    // One node is back: the uplink is back, the other node's offline alarm is its own again.
    r.rc("n01", 150, T0 + 62_000).await;
    let standing = r.standing().await;
    assert_eq!(standing.len(), 1, "{standing:?}");
    assert_eq!(
        (standing[0].node.as_str(), standing[0].cause.as_str()),
        ("n02", "offline")
    );
}

async fn alarms_behind_a_supply_failure_are_suppressed_then_released_with_their_ticket(db: TestDb) {
    let mut r = Rig::new(db, CONFIG).await;
    r.rc("n01", 150, T0).await;
    r.supply("n01", "fault", T0 + 1_000).await;
    r.rc("n01", 700, T0 + 2_000).await;
    let standing = r.standing().await;
    let supply = standing
        .iter()
        .find(|a| a.cause == "supply")
        .expect("supply alarm");
    let leak = standing
        .iter()
        .find(|a| a.cause == "residual_current_high")
        .expect("leakage alarm, recorded");
    assert!(
        !supply.suppressed && supply.ticket_id.is_some(),
        "the root cause has a 设备故障 ticket"
    );
    assert!(
        leak.suppressed && leak.ticket_id.is_none(),
        "suppressed: shown, no ticket"
    );
    let log = r.store.alarm_log("home_a", Some("n01"), 10).await.unwrap();
    assert!(log
        .iter()
        .any(|l| l.transition == "raised" && l.disposition == "suppressed"));

    // Mains back while the leakage stands: it is released and gets its ticket.
    r.supply("n01", "normal", T0 + 3_000).await;
    let leak = r
        .standing()
        .await
        .into_iter()
        .find(|a| a.cause == "residual_current_high")
        .unwrap();
    assert!(!leak.suppressed && leak.ticket_id.is_some(), "{leak:?}");
    let tickets = r.store.tickets(&TicketFilter::Open, 10).await.unwrap();
    assert_eq!(tickets.len(), 2);
}

async fn a_value_hovering_at_the_setpoint_raises_once(db: TestDb) {
    let mut r = Rig::new(db, CONFIG).await;
    // 288–312 mA around the 300 mA pre-alarm with a 30 mA return difference.
    for i in 0..200u64 {
        let v = 300 + if i % 2 == 0 { 12 } else { -12 } + (i % 5) as i32 - 2;
        r.rc("n01", v, T0 + i * 1_000).await;
    }
    let raised: Vec<_> = r
        .notified()
        .into_iter()
        .filter(|(n, c, ..)| n == "n01" && c == "residual_current_high")
        .collect();
    assert_eq!(raised.len(), 1, "one alarm, not a storm: {raised:?}");
    let log = r.store.alarm_log("home_a", Some("n01"), 500).await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
}

async fn a_flapping_channel_notifies_once_and_logs_every_swing(db: TestDb) {
    let mut r = Rig::new(db, CONFIG).await;
    // Swinging across the whole band every 10 s: pre-alarm raised and cleared.
    for i in 0..40u64 {
        let v = if i % 2 == 0 { 350 } else { 200 };
        r.rc("n01", v, T0 + i * 10_000).await;
    }
    let notes: Vec<_> = r
        .notified()
        .into_iter()
        .filter(|(_, c, ..)| c == "residual_current_high")
        .collect();
    // 5 swings before flapping is detected (6 transitions in 10 min), then one flapping notice.
    assert!(notes.len() <= 7, "no storm: {notes:?}");
    assert!(notes.iter().any(|(.., flapping)| *flapping), "{notes:?}");
    let standing = r.standing().await;
    assert!(standing.iter().any(|a| a.flapping), "{standing:?}");
    let log = r.store.alarm_log("home_a", Some("n01"), 500).await.unwrap();
    let swallowed = log.iter().filter(|l| l.disposition == "flapping").count();
    assert!(
        swallowed >= 30,
        "every swing is still recorded: {swallowed}"
    );
    assert!(log.iter().any(|l| l.transition == "flapping_started"));

    // Quiet for 10 minutes at a normal value: flapping ends, the record settles.
    for i in 0..12u64 {
        r.rc("n01", 150, T0 + 400_000 + i * 60_000).await;
    }
    let log = r.store.alarm_log("home_a", Some("n01"), 5).await.unwrap();
    assert!(
        log.iter().any(|l| l.transition == "flapping_ended"),
        "{log:?}"
    );
    assert!(r.standing().await.iter().all(|a| !a.flapping));
}

async fn a_latched_alarm_needs_an_authorised_reset_once_the_value_is_back(db: TestDb) {
    let mut r = Rig::new(db, CONFIG).await;
    r.rc("n01", 650, T0).await;
    let id = r.standing().await[0].id;
    assert!(
        matches!(
            r.p.reset(id, "张三", T0 + 1).await,
            Err(ResetError::NotLatched)
        ),
        "live alarm"
    );
    r.rc("n01", 120, T0 + 1_000).await;
    let row = &r.standing().await[0];
    assert_eq!(row.state, "latched", "the value fell back; the alarm holds");
    let reset = r.p.reset(id, "张三", T0 + 2_000).await.unwrap();
    assert_eq!(reset.state, "cleared");
    let log = r.store.alarm_log("home_a", Some("n01"), 10).await.unwrap();
    assert_eq!(
        (log[0].transition.as_str(), log[0].actor.as_str()),
        ("reset", "张三")
    );
    assert!(matches!(
        r.p.reset(id, "张三", T0 + 3_000).await,
        Err(ResetError::NotLatched)
    ));
    assert!(matches!(
        r.p.reset(9_999, "张三", T0).await,
        Err(ResetError::NotFound)
    ));
}

async fn a_changed_setpoint_is_audited_at_start_up(db: TestDb) {
    let url = db.url.clone();
    let start = |config: String, at: u64| {
        let url = url.clone();
        async move {
            let store = Store::open(&url).await.unwrap();
            let (tx, _) = broadcast::channel(4);
            let config = Arc::new(Config::from_toml(&config).unwrap());
            let mut p = Pipeline::new(
                config,
                store.clone(),
                None,
                Arc::new(Metrics::default()),
                tx,
            );
            p.start(at, "config:/etc/fire-gateway/gateway.toml")
                .await
                .unwrap();
            let changes = store.rule_changes(100).await.unwrap();
            store.close().await;
            changes
        }
    };
    let first = start(CONFIG.to_string(), T0).await;
    assert!(
        first.iter().all(|c| c.scope.starts_with("defaults.")),
        "{first:?}"
    );
    let again = start(CONFIG.to_string(), T0 + 1).await;
    assert_eq!(
        again.len(),
        first.len(),
        "nothing changed, nothing recorded"
    );
    let changed = start(
        format!("{CONFIG}\n[rules.residual_current]\nalarm = 400\n"),
        T0 + 2,
    )
    .await;
    let newest = &changed[0];
    assert_eq!(newest.scope, "rules.residual_current");
    assert_eq!(
        (newest.old.as_deref(), newest.new.as_deref()),
        (None, Some(r#"{"alarm":400}"#))
    );
    assert_eq!(newest.actor, "config:/etc/fire-gateway/gateway.toml");
}

async fn a_restarted_gateway_carries_on_with_the_channel_state(db: TestDb) {
    let url = db.url.clone();
    let pipeline = |store: Store| {
        let (tx, _) = broadcast::channel(16);
        Pipeline::new(
            Arc::new(Config::from_toml(CONFIG).unwrap()),
            store,
            None,
            Arc::new(Metrics::default()),
            tx,
        )
    };
    let msg = |seq: u32, v: i32, at: u64| {
        Inbound {
        topic: "fire/v1/home_a/n01/telemetry".into(),
        payload: format!(r#"{{"boot":1,"seq":{seq},"ts":{at},"ch":[{{"id":"rc1","q":"residual_current","v":{v},"s":"ok"}}]}}"#)
            .into_bytes()
            .into(),
        arrived_ms: at,
        ack: None,
    }
    };
    {
        let store = Store::open(&url).await.unwrap();
        let mut p = pipeline(store.clone());
        p.start(T0, "config:test").await.unwrap();
        p.handle(&msg(1, 330, T0)).await; // 预警 (auto-clears)
        assert_eq!(
            store.alarms(AlarmFilter::Standing, 10).await.unwrap().len(),
            1
        );
        store.close().await;
    }
    // The gateway restarts; the leakage has gone down meanwhile.
    let store = Store::open(&url).await.unwrap();
    let mut p = pipeline(store.clone());
    p.start(T0 + 60_000, "config:test").await.unwrap();
    p.handle(&msg(2, 120, T0 + 61_000)).await;
    assert!(
        store
            .alarms(AlarmFilter::Standing, 10)
            .await
            .unwrap()
            .is_empty(),
        "the pre-alarm cleared after the restart"
    );
}

crate::on_both_backends!(
    a_silent_node_goes_offline_and_comes_back,
    a_whole_site_going_silent_is_one_uplink_alarm,
    alarms_behind_a_supply_failure_are_suppressed_then_released_with_their_ticket,
    a_value_hovering_at_the_setpoint_raises_once,
    a_flapping_channel_notifies_once_and_logs_every_swing,
    a_latched_alarm_needs_an_authorised_reset_once_the_value_is_back,
    a_changed_setpoint_is_audited_at_start_up,
    a_restarted_gateway_carries_on_with_the_channel_state,
);
