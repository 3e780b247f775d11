//! A simulated sensor node for integration tests: a real MQTT client that
//! behaves as the firmware does — telemetry every 100 ms (rc1 leakage from
//! [`SimNode::rc1`], t1 temperature, optionally rc2 a CT that is not
//! connected), an optional backdated history first (as a node backfills),
//! and on `cmd`: `selftest` → ack, 1 s of injected test signal past the
//! alarm setpoints with its own `event`s, then `normal` events; `config`
//! and anything else → ack, recorded in [`SimNode::commands`].

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to run the node.
pub struct NodeSpec<'a> {
    pub site: &'a str,
    pub node: &'a str,
    /// Username (also the client id) and password; none: anonymous, client id `{site}.{node}`.
    pub credentials: Option<(&'a str, &'a str)>,
    /// rc2 reports `open` (a CT not connected).
    pub faulted_rc2: bool,
    /// Backdated readings every 10 minutes from this time (ms) to now first.
    pub history_from: Option<u64>,
    pub boot: u32,
}

/// A running simulated node.
pub struct SimNode {
    /// rc1's real leakage, mA.
    pub rc1: Arc<AtomicI64>,
    /// Every command received, as JSON.
    pub commands: Arc<Mutex<Vec<Value>>>,
    /// Telemetry messages acknowledged by the broker.
    pub acked: Arc<AtomicU32>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl SimNode {
    pub fn commands(&self) -> Vec<Value> {
        self.commands.lock().unwrap().clone()
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The daily shape of a healthy loop: `base` at midnight, `base + swing` at noon.
fn daily(at: u64, base: i64, swing: i64) -> i64 {
    let hour = ((at / 3_600_000) % 24) as i64;
    base + swing - swing * (hour - 12).abs() / 12
}

pub fn spawn(broker: SocketAddr, spec: NodeSpec<'_>) -> SimNode {
    let username = spec
        .credentials
        .map(|(u, _)| u.to_string())
        .unwrap_or_else(|| format!("{}.{}", spec.site, spec.node));
    let mut o = MqttOptions::new(username.clone(), broker.ip().to_string(), broker.port());
    o.set_keep_alive(Duration::from_secs(15))
        .set_clean_session(false);
    if let Some((u, p)) = spec.credentials {
        o.set_credentials(u, p);
    }
    let (client, mut events) = AsyncClient::new(o, 1000);
    let prefix = format!("fire/v1/{}/{}", spec.site, spec.node);
    let rc1 = Arc::new(AtomicI64::new(150));
    let commands = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new(AtomicU32::new(0));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    {
        let acked = acked.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    ev = events.poll() => match ev {
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let _ = cmd_tx.send(serde_json::from_slice(&p.payload).unwrap_or_default());
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    },
                }
            }
        });
    }
    let (rc1_now, recorded) = (rc1.clone(), commands.clone());
    let (faulted_rc2, history_from, boot) = (spec.faulted_rc2, spec.history_from, spec.boot);
    tokio::spawn(async move {
        let _ = client
            .subscribe(format!("{prefix}/cmd"), QoS::AtLeastOnce)
            .await;
        let publish = |kind: &'static str, body: Value| {
            let (client, topic) = (client.clone(), format!("{prefix}/{kind}"));
            async move {
                let _ = client
                    .publish(topic, QoS::AtLeastOnce, false, body.to_string())
                    .await;
            }
        };
        let channels = |rc1: i64, t1: i64| {
            let mut ch = vec![
                json!({ "id": "rc1", "q": "residual_current", "v": rc1, "s": "ok" }),
                json!({ "id": "t1", "q": "temperature", "v": t1, "s": "ok" }),
            ];
            if faulted_rc2 {
                ch.push(json!({ "id": "rc2", "q": "residual_current", "v": 0, "s": "open" }));
            }
            ch
        };
        let mut seq = 0u32;
        if let Some(mut at) = history_from {
            let now = gateway::domain::time::now_ms();
            while at + 600_000 < now {
                seq += 1;
                publish(
                    "telemetry",
                    json!({ "boot": boot, "seq": seq, "ts": at,
                            "ch": channels(daily(at, 100, 40), daily(at, 300, 80)) }),
                )
                .await;
                at += 600_000;
            }
        }
        let mut test_until: Option<tokio::time::Instant> = None;
        let mut in_test = false;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                Some(cmd) = cmd_rx.recv() => {
                    recorded.lock().unwrap().push(cmd.clone());
                    if cmd["op"] == "selftest" {
                        test_until = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    publish("cmd/ack", json!({ "id": cmd["id"], "ok": true })).await;
                }
                _ = tick.tick() => {
                    let testing = test_until.is_some_and(|t| tokio::time::Instant::now() < t);
                    let (rc1, t1) = if testing {
                        (800, 900)
                    } else {
                        (rc1_now.load(Ordering::Relaxed), 250)
                    };
                    seq += 1;
                    publish("telemetry", json!({
                        "boot": boot, "seq": seq, "ts": 0, "ch": channels(rc1, t1),
                    })).await;
                    // The node's own rule: an event entering and leaving the test signal.
                    if testing != in_test {
                        in_test = testing;
                        if !testing {
                            test_until = None;
                        }
                        let level = if testing { "alarm" } else { "normal" };
                        for (ch, v) in [("rc1", rc1), ("t1", t1)] {
                            seq += 1;
                            publish("event", json!({
                                "boot": boot, "seq": seq, "ts": 0, "ch": ch, "level": level, "v": v,
                            })).await;
                        }
                    }
                }
            }
        }
    });
    SimNode {
        rc1,
        commands,
        acked,
        stop,
    }
}

/// Publishes one telemetry message as node home_a/n01 and waits for the
/// broker's PUBACK.
pub async fn publish_leakage(broker: SocketAddr, milliamps: i64) {
    let mut o = MqttOptions::new("home_a.n01", broker.ip().to_string(), broker.port());
    o.set_keep_alive(Duration::from_secs(15));
    let (client, mut events) = AsyncClient::new(o, 10);
    let payload = json!({
        "boot": 1, "seq": 1, "ts": 0,
        "ch": [{ "id": "rc1", "q": "residual_current", "v": milliamps, "s": "ok" }],
    });
    client
        .publish(
            "fire/v1/home_a/n01/telemetry",
            QoS::AtLeastOnce,
            false,
            payload.to_string(),
        )
        .await
        .unwrap();
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("MQTT: {e}"),
            }
        }
    })
    .await;
    assert!(acked.is_ok(), "no PUBACK within 10 s");
    let _ = client.disconnect().await;
}
