//! The QEMU sensor node end to end: the Cortex-M image (`firmware/qemu/`)
//! boots in `qemu-system-arm -M mps2-an386` with its UART bridged to the
//! broker, replays its scenario (normal leakage, a rise past 500 mA, a CT
//! break, recovery) and
//! (a) over a real Mosquitto (the deployment's configuration and ACL, the
//!     node logged in as `home_a.n01`): the gateway raises the alarm and
//!     opens its ticket, the node's own `event` arrives, and after a broker
//!     restart the node reconnects by itself, backfills, and the gateway
//!     counts no sequence gap;
//! (b) over the gateway's in-process broker (rumqttd): alarm and ticket.
//!
//! A missing `qemu-system-arm` or a failing image build fails loudly with
//! the command to run; nothing is skipped.

use e2e::*;
use gateway::config::BrokerMode;
use gateway::views::GatewayEvent;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Builds the image with `firmware/qemu/build.sh`, or fails naming it.
fn image() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware/qemu/build.sh");
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run firmware/qemu/build.sh: {e}"));
    assert!(
        out.status.success(),
        "building the QEMU node image failed: run `firmware/qemu/build.sh` \
         (needs `rustup target add thumbv7em-none-eabihf`)"
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
    assert!(
        path.is_file(),
        "no firmware image at {}: run `firmware/qemu/build.sh`",
        path.display()
    );
    path
}

/// The node running in QEMU; killed when dropped.
struct QemuNode {
    child: Child,
    log: PathBuf,
}

impl QemuNode {
    fn start(broker_port: u16, dir: &Path) -> QemuNode {
        let qemu = require("qemu-system-arm", "qemu-system-arm");
        let elf = image();
        let log = dir.join("node.log");
        let child = Command::new(qemu)
            .args(["-M", "mps2-an386", "-display", "none", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("tcp:127.0.0.1:{broker_port},reconnect=1"))
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .arg("-kernel")
            .arg(&elf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn qemu-system-arm");
        QemuNode { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for QemuNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an observer saw on the node's topics.
#[derive(Debug)]
struct Seen {
    at: Instant,
    topic: String,
    json: serde_json::Value,
}

/// Subscribes to `fire/v1/#` as `user` and forwards every message.
async fn observer(
    port: u16,
    user: Option<(&str, &str)>,
) -> tokio::sync::mpsc::UnboundedReceiver<Seen> {
    let mut o = MqttOptions::new("qemu-observer", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5))
        .set_clean_session(false);
    if let Some((u, p)) = user {
        o.set_credentials(u, p);
    }
    let (client, mut ev) = AsyncClient::new(o, 100);
    client
        .subscribe("fire/v1/#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let json = serde_json::from_slice(&p.payload).unwrap_or_default();
                    let _ = tx.send(Seen {
                        at: Instant::now(),
                        topic: p.topic.clone(),
                        json,
                    });
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    rx
}

/// Waits for the gateway's residual-current alarm on home_a/n01 and its
/// ticket; returns when it arrived.
async fn wait_alarm_with_ticket(
    events: &mut tokio::sync::broadcast::Receiver<GatewayEvent>,
    within: Duration,
) -> Instant {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for the gateway's rc1 alarm");
        if let Ok(GatewayEvent::AlarmRaised { alarm, ticket }) = ev {
            let r = &alarm.row;
            if r.site == "home_a" && r.node == "n01" && r.channel == "rc1" && r.level == "alarm" {
                assert!(
                    matches!(ticket, Some(gateway::store::TicketOutcome::Opened { .. })),
                    "the alarm opened a ticket: {ticket:?}"
                );
                return Instant::now();
            }
        }
    }
}

/// Waits for a message on `topic_suffix` matching `pred`.
async fn wait_seen(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    within: Duration,
    what: &str,
    mut pred: impl FnMut(&Seen) -> bool,
) -> Seen {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(s)) if pred(&s) => return s,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("timed out after {within:?} waiting for {what}"),
        }
    }
}

fn rc1(s: &Seen) -> Option<(i64, String)> {
    let ch = s.json.get("ch")?.as_array()?;
    let r = ch.iter().find(|r| r["id"] == "rc1")?;
    Some((r["v"].as_i64()?, r["s"].as_str()?.to_string()))
}

fn seq(s: &Seen) -> i64 {
    s.json["seq"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_node_over_mosquitto_alarms_and_survives_a_broker_restart() {
    let Stack {
        mut broker,
        config: _,
        gw,
        dir,
        token: _,
    } = stack(
        &[("observer", "obs-pw")],
        "user observer\ntopic read fire/v1/#\n",
        |_| {},
    )
    .await;
    let mut events = gw.events.subscribe();
    let mut seen = observer(broker.port, Some(("observer", "obs-pw"))).await;
    let node = QemuNode::start(broker.port, dir.path());

    // Birth, then the rise past the setpoint: telemetry, the gateway's
    // alarm with its ticket, and the node's own event.
    wait_seen(
        &mut seen,
        Duration::from_secs(30),
        "the node's birth",
        |s| s.topic == "fire/v1/home_a/n01/status" && s.json["state"] == "online",
    )
    .await;
    let crossing = wait_seen(
        &mut seen,
        Duration::from_secs(30),
        "telemetry past 500 mA",
        |s| s.topic.ends_with("/telemetry") && rc1(s).is_some_and(|(v, _)| v >= 500),
    )
    .await;
    let alarm_at = wait_alarm_with_ticket(&mut events, Duration::from_secs(30)).await;
    eprintln!(
        "setpoint crossing (telemetry at the observer) → gateway alarm: {:?}",
        alarm_at.saturating_duration_since(crossing.at)
    );
    wait_seen(
        &mut seen,
        Duration::from_secs(10),
        "the node's alarm event",
        |s| {
            s.topic == "fire/v1/home_a/n01/event"
                && s.json["ch"] == "rc1"
                && s.json["level"] == "alarm"
        },
    )
    .await;
    let fault = wait_seen(&mut seen, Duration::from_secs(30), "the CT break", |s| {
        s.topic.ends_with("/telemetry") && rc1(s).is_some_and(|(_, st)| st == "open")
    })
    .await;
    wait_until(
        Duration::from_secs(20),
        "the CT fault at the gateway",
        || gw.metrics.faults_raised.load(Ordering::Relaxed) > 0,
    )
    .await;

    // Broker restart mid-run: the node buffers, reconnects by itself and
    // backfills; nothing is missing at the gateway.
    let before_stop = seq(&fault);
    let errors = gw.metrics.mqtt_connection_errors.load(Ordering::Relaxed);
    broker.stop();
    wait_until(
        Duration::from_secs(20),
        "the gateway noticed the broker stop",
        || gw.metrics.mqtt_connection_errors.load(Ordering::Relaxed) > errors,
    )
    .await;
    broker.start_again();
    let back = wait_seen(
        &mut seen,
        Duration::from_secs(60),
        "a birth after the restart",
        |s| s.topic == "fire/v1/home_a/n01/status" && s.json["state"] == "online",
    )
    .await;
    eprintln!("node reconnected: {}", back.json);
    let live = wait_seen(
        &mut seen,
        Duration::from_secs(60),
        "recovered telemetry after the restart",
        |s| {
            s.topic.ends_with("/telemetry")
                && seq(s) > before_stop + 20
                && rc1(s).is_some_and(|(v, st)| st == "ok" && v < 500)
        },
    )
    .await;
    let last = seq(&live) as u64;
    // Four channels per telemetry; at most three of the messages up to
    // `last` are events (alarm, fault, back to the latched alarm).
    let want = 4 * (last + 1).saturating_sub(3);
    wait_until(
        Duration::from_secs(30),
        "every reading up to the live one",
        || gw.metrics.readings_accepted.load(Ordering::Relaxed) >= want,
    )
    .await;
    let gaps = gw.metrics.seq_gaps.load(Ordering::Relaxed);
    let log = node.log();
    assert!(log.contains("connected #2"), "the node reconnected:\n{log}");
    assert_eq!(gaps, 0, "no sequence gap at the gateway; node log:\n{log}");
    eprintln!(
        "after the restart: {} readings accepted up to seq {last}, {gaps} gaps; node log:\n{log}",
        gw.metrics.readings_accepted.load(Ordering::Relaxed)
    );
    drop(node);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_node_over_the_embedded_broker_raises_the_alarm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut config = gateway_config(0, dir.path());
    config.mqtt.broker = BrokerMode::Embedded;
    config.mqtt.embedded_listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Through the gate, the observer reading every topic logs in as the
    // gateway's configured user; the node, a node of the file without
    // registered credentials, logs in as it always did.
    let gw = start_gateway(config).await;
    wait_until(
        Duration::from_secs(20),
        "the gateway connected to its broker",
        || gw.metrics.mqtt_connections.load(Ordering::Relaxed) > 0,
    )
    .await;
    let mut events = gw.events.subscribe();
    let mut seen = observer(port, Some(GATEWAY_USER)).await;
    let node = QemuNode::start(port, dir.path());
    wait_alarm_with_ticket(&mut events, Duration::from_secs(40)).await;
    wait_seen(
        &mut seen,
        Duration::from_secs(10),
        "the node's alarm event",
        |s| s.topic == "fire/v1/home_a/n01/event" && s.json["level"] == "alarm",
    )
    .await;
    assert_eq!(
        gw.metrics.seq_gaps.load(Ordering::Relaxed),
        0,
        "{}",
        node.log()
    );
    drop(node);
    gw.shutdown().await;
}
