//! Attacks on what the gateway keeps per node, against a whole gateway with
//! its embedded broker, over real MQTT and HTTP (issue 14, items 5 and 8):
//!
//! - a node whose `(boot, seq)` sequence the de-duplication window cannot
//!   follow any more — a swapped board, a boot counter fallen back to 0, one
//!   spoofed message with `seq` = 4,294,967,295 — is judged again (an alarm
//!   still fires), the jump is told to the duty desk and counted, and it
//!   stays judged across a gateway restart (the window is saved);
//! - a node inventing channel ids cannot grow the per-channel state past
//!   the cap, and its real channels are still judged;
//! - a channel whose quantity changes keeps its standing alarm until an
//!   authorised reset, and is judged under the new quantity after it.
//!
//! Waiting is on PUBACKs (the gate answers them after the commit), the
//! event stream and the store, with deadlines; never on fixed sleeps.

use gateway::alarms::events::GatewayEvent;
use gateway::config::Config;
use gateway::store::AlarmFilter;
use gateway::tickets::Role;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(15);
const PASSWORD: &str = "node-limits-test-pw";
const TOPIC: &str = "fire/v1/home_a/n01/telemetry";

struct Gw {
    running: gateway::app::Running,
    broker: SocketAddr,
    base: String,
}

async fn start(dir: &Path) -> Gw {
    let mut config = Config::from_toml(
        "[mqtt]\nanonymous_config_nodes = true\n\
         [[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n\
         [[sites.nodes]]\nid = \"n01\"\nlocation = \"2号楼厨房配电箱\"\n",
    )
    .unwrap();
    config.storage.data_dir = dir.to_path_buf();
    let broker = SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.embedded_listen = broker;
    config.mqtt.client_id = "node-limits-test".into();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, http).await.unwrap();
    let base = format!("http://{}", running.http_addr);
    Gw {
        running,
        broker,
        base,
    }
}

/// The node: anonymous, client id `home_a.n01` (a file node without
/// credentials), persistent session as the firmware.
struct Node {
    client: AsyncClient,
    events: EventLoop,
}

async fn connect(broker: SocketAddr) -> Node {
    let mut o = MqttOptions::new("home_a.n01", broker.ip().to_string(), broker.port());
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false);
    let (client, mut events) = AsyncClient::new(o, 10);
    tokio::time::timeout(WITHIN, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("MQTT connect: {e}"),
            }
        }
    })
    .await
    .expect("no CONNACK within the deadline");
    Node { client, events }
}

impl Node {
    /// Publishes a telemetry message QoS 1 and waits for its PUBACK: the
    /// gateway has committed what it caused.
    async fn send(&mut self, boot: u32, seq: u32, ch: Value) {
        let body = json!({ "boot": boot, "seq": seq, "ts": 0, "ch": ch });
        self.client
            .publish(TOPIC, QoS::AtLeastOnce, false, body.to_string())
            .await
            .unwrap();
        tokio::time::timeout(WITHIN, async {
            loop {
                match self.events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => return,
                    Ok(_) => {}
                    Err(e) => panic!("MQTT: {e}"),
                }
            }
        })
        .await
        .expect("no PUBACK within the deadline");
    }
}

fn rc1(milliamps: i64) -> Value {
    json!([{ "id": "rc1", "q": "residual_current", "v": milliamps, "s": "ok" }])
}

fn t1(tenths: i64) -> Value {
    json!([{ "id": "t1", "q": "temperature", "v": tenths, "s": "ok" }])
}

/// One value of `/metrics`, read over HTTP.
async fn metric(gw: &Gw, line_start: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
}

/// Standing and past alarm records of the node with `cause`.
async fn alarms_with(gw: &Gw, cause: &str) -> Vec<gateway::store::AlarmRow> {
    gw.running
        .store
        .alarms(AlarmFilter::All, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.cause == cause)
        .collect()
}

/// Runs `attack` against a node judged as `(boot 57, seq 1..=3)`, then
/// the node's own sequence from `(boot, first)`; checks the node is judged
/// again (a 700 mA reading raises the residual-current alarm), the counters
/// and the desk's notice, and that after a gateway restart the next
/// message of the same sequence is judged at once (a 90 °C reading raises
/// the temperature alarm).
async fn judged_again(
    attack: &[(u32, u32)],
    boot: u32,
    first: u32,
    restarts: u64,
    unconfirmed: u64,
) {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let mut node = connect(gw.broker).await;
    for seq in 1..=3 {
        node.send(57, seq, rc1(150)).await;
    }
    for (b, s) in attack {
        node.send(*b, *s, rc1(150)).await;
    }
    // The node's own sequence, with the leakage past the alarm setpoint.
    let mut seq = first;
    let mut raised = None;
    for _ in 0..3 {
        node.send(boot, seq, rc1(700)).await;
        seq += 1;
        raised = alarms_with(&gw, "residual_current_high").await.pop();
        if raised.is_some() {
            break;
        }
    }
    let raised = raised.expect("the node is judged again within 3 messages: alarm raised");
    assert_eq!((raised.level.as_str(), raised.value), ("alarm", Some(700)));
    assert_eq!(
        metric(&gw, "gateway_seq_restarts_total ").await,
        restarts,
        "restarts accepted"
    );
    assert_eq!(
        metric(&gw, "gateway_seq_unconfirmed_total ").await,
        unconfirmed,
        "messages stored but not judged"
    );
    let notices = alarms_with(&gw, "seq_restart").await;
    assert_eq!(notices.len() as u64, restarts, "{notices:?}");
    for n in &notices {
        assert_eq!((n.kind.as_str(), n.state.as_str()), ("fault", "cleared"));
    }

    // The window is saved: after a restart the same sequence goes on in order.
    drop(node);
    gw.running.shutdown().await;
    let gw = start(dir.path()).await;
    let mut node = connect(gw.broker).await;
    node.send(boot, seq, t1(900)).await;
    let t = alarms_with(&gw, "temperature_high").await;
    assert_eq!(t.len(), 1, "judged at once after the restart: {t:?}");
    assert_eq!(metric(&gw, "gateway_seq_unconfirmed_total ").await, 0);
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_board_is_judged_again() {
    // The new board's boot counter starts at 1: every message is a lower boot.
    judged_again(&[], 1, 0, 1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_counter_fallen_back_to_zero_is_judged_again() {
    judged_again(&[], 0, 1, 1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_spoofed_seq_does_not_stop_the_rules() {
    // Before: the window jumped to 4,294,967,295 and every real message
    // after it was "late" for good. Now the spoof is stored, not followed,
    // and the real seq 4 is judged at once: no restart to accept.
    judged_again(&[(57, u32::MAX)], 57, 4, 0, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_seq_and_boot_together_are_overcome() {
    // A spoofed higher boot near seq 0 is a normal restart and is followed
    // at once; the real node's messages confirm themselves after it.
    judged_again(&[(u32::MAX, 0)], 57, 4, 1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_channel_ids_stop_at_the_cap_and_real_ones_are_judged() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let mut node = connect(gw.broker).await;
    let cap = gateway::ingest::node_limits::MAX_NODE_CHANNELS;
    node.send(1, 1, rc1(150)).await;
    // Ten messages of 31 new channels each, beside rc1: 311 channel ids.
    for m in 0..10u32 {
        let mut ch = vec![json!({ "id": "rc1", "q": "residual_current", "v": 150, "s": "ok" })];
        for i in 0..31 {
            ch.push(json!({ "id": format!("x{m}_{i}"), "q": "temperature", "v": 900, "s": "ok" }));
        }
        node.send(1, 2 + m, Value::Array(ch)).await;
    }
    let states = gw.running.store.channel_states().await.unwrap();
    let kept: Vec<_> = states.iter().filter(|s| s.1 == "n01").collect();
    assert_eq!(
        kept.len(),
        cap,
        "rule state kept for at most {cap} channels"
    );
    assert_eq!(
        metric(
            &gw,
            "gateway_messages_dropped_total{reason=\"channel_limit\"} "
        )
        .await,
        9,
        "every message past the cap counted"
    );
    // Only the channels within the cap were judged (31 of x0_* at 90 °C).
    let hot = alarms_with(&gw, "temperature_high").await;
    assert_eq!(hot.len(), cap - 1, "{}", hot.len());
    assert!(hot.iter().all(|a| a.channel.starts_with("x0_")));
    // The node's real channel is still judged, in a message full of new ids.
    let mut ch = vec![json!({ "id": "rc1", "q": "residual_current", "v": 700, "s": "ok" })];
    for i in 0..31 {
        ch.push(json!({ "id": format!("y{i}"), "q": "temperature", "v": 250, "s": "ok" }));
    }
    node.send(1, 20, Value::Array(ch)).await;
    let rc = alarms_with(&gw, "residual_current_high").await;
    assert_eq!(rc.len(), 1, "{rc:?}");
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quantity_change_keeps_the_alarm_until_an_authorised_reset() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path()).await;
    let now = gateway::domain::time::now_ms();
    for (login, role) in [("duty_a", Role::Duty), ("bureau_a", Role::Inspector)] {
        gw.running
            .store
            .add_user(
                login,
                login,
                role,
                Some(&["home_a".to_string()]),
                PASSWORD,
                now,
            )
            .await
            .unwrap();
    }
    let mut events = gw.running.events.subscribe();
    let mut node = connect(gw.broker).await;
    node.send(1, 1, rc1(700)).await;
    let alarm = alarms_with(&gw, "residual_current_high")
        .await
        .pop()
        .unwrap();
    assert_eq!(alarm.state, "active");
    // The node now says rc1 measures temperature, at a harmless 25 °C:
    // before, the channel started afresh and the alarm's rule state was
    // gone. Now the reading is refused while the alarm stands.
    let as_temperature = |v: i64| json!([{ "id": "rc1", "q": "temperature", "v": v, "s": "ok" }]);
    node.send(1, 2, as_temperature(250)).await;
    node.send(1, 3, as_temperature(260)).await;
    assert_eq!(
        metric(
            &gw,
            "gateway_messages_dropped_total{reason=\"quantity_changed\"} "
        )
        .await,
        2
    );
    let standing = gw.running.store.alarm(alarm.id).await.unwrap().unwrap();
    assert_eq!(standing.state, "active", "the alarm still stands");
    let (q, _) = gw
        .running
        .store
        .channel_states()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.2 == "rc1")
        .map(|s| (s.3, s.4))
        .unwrap();
    assert_eq!(q, "residual_current", "the saved state is the alarm's");
    // The desk was told, once.
    let notices = alarms_with(&gw, "quantity_changed").await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    let mut told = false;
    while let Ok(e) = events.try_recv() {
        if let GatewayEvent::AlarmRaised { alarm, .. } = e {
            told |= alarm.row.cause == "quantity_changed"
                && alarm.notice_label.is_some_and(|l| l.contains("复位"));
        }
    }
    assert!(told, "a notice on the event stream");

    // Only an authorised reset releases it: not an inspector.
    let login = |who: &'static str| {
        let base = gw.base.clone();
        async move {
            let r: Value = reqwest::Client::new()
                .post(format!("{base}/api/v1/login"))
                .header("content-type", "application/json")
                .body(json!({ "login": who, "password": PASSWORD }).to_string())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .map(|t| serde_json::from_str(&t).unwrap())
                .unwrap();
            r["token"].as_str().unwrap().to_string()
        }
    };
    let reset = |token: String| {
        let url = format!("{}/api/v1/alarms/{}/reset", gw.base, alarm.id);
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(reset(login("bureau_a").await).await, 403);
    assert_eq!(
        gw.running
            .store
            .alarm(alarm.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        "active"
    );
    assert_eq!(reset(login("duty_a").await).await, 200);
    assert_eq!(
        gw.running
            .store
            .alarm(alarm.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        "cleared"
    );
    // From now on rc1 is a temperature channel, judged: 90 °C raises.
    node.send(1, 4, as_temperature(900)).await;
    let t = alarms_with(&gw, "temperature_high").await;
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].channel, "rc1");
    gw.running.shutdown().await;
}
