//! The QEMU sensor node end to end: the Cortex-M image (`firmware/qemu/`)
//! boots in `qemu-system-arm -M mps2-an386` with its UART bridged to the
//! broker, replays its scenario (normal leakage, a rise past 500 mA, a CT
//! break, recovery) and
//! (a) over a real Mosquitto (the deployment's configuration and ACL, the
//!     node logged in as `home_a.n01`): the gateway raises the alarm and
//!     opens its ticket, the node's own `event` arrives, and after a broker
//!     restart the node reconnects by itself, backfills, and the gateway
//!     counts no sequence gap;
//! (b) over the gateway's in-process broker (rumqttd): alarm and ticket;
//! (c) from its provisioning artefact (`wire::provision`): with no artefact
//!     the node says why and halts; with one it logs in with the
//!     artefact's credentials, its setpoints are in force (rc1 alarm at
//!     700 mA: the scenario's 650 mA is a pre-alarm, not the default's
//!     alarm), a `selftest` command is acked and gives a test alarm and its
//!     reset on every channel, a `config` command beyond the standard's
//!     limit is refused and one within it is acked and raises the alarm on
//!     the next sample, and after a restart with its saved boot counter
//!     sectors the node publishes as boot 2.
//!
//! Every node boots from an artefact written with `wire::provision::encode`
//! and loaded by QEMU at 0x00300000 (`-device loader`).
//!
//! A missing `qemu-system-arm` or a failing image build fails loudly with
//! the command to run; nothing is skipped.

use e2e::*;
use gateway::alarms::events::GatewayEvent;
use gateway::config::BrokerMode;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wire::provision::{Broker, ChannelSpec, Provision, Sensor, Setpoints};
use wire::Quantity;

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

/// Where the image reads its provisioning artefact.
const PROVISION_ADDR: u32 = 0x0030_0000;
/// Where the image keeps its boot counter's two 4 KiB sectors.
const BOOT_FLASH_ADDR: u32 = 0x0038_0000;
const BOOT_FLASH_LEN: usize = 8192;

/// The artefact of home_a/n01 on the board as built (rc1 CT 1000:1, t1
/// NTC, p1 0–1000 kPa, l1 0–5000 mm) logging in with `password`, with
/// `rc1` and `l1` setpoints.
fn artefact(password: &str, rc1: Setpoints, l1: Setpoints) -> Vec<u8> {
    let s = |v: &str| heapless::String::try_from(v).unwrap();
    let ch = |id: &str, q, sensor, set| ChannelSpec {
        id: wire::ChannelId::new(id).unwrap(),
        q,
        sensor,
        set,
    };
    let mut channels = heapless::Vec::new();
    for c in [
        ch(
            "rc1",
            Quantity::ResidualCurrent,
            Sensor::Ct { ratio: 1000 },
            rc1,
        ),
        ch(
            "t1",
            Quantity::Temperature,
            Sensor::NtcB3950,
            Setpoints::default(),
        ),
        ch(
            "p1",
            Quantity::WaterPressure,
            Sensor::Loop { lo: 0, hi: 1000 },
            Setpoints::default(),
        ),
        ch(
            "l1",
            Quantity::WaterLevel,
            Sensor::Loop { lo: 0, hi: 5000 },
            l1,
        ),
    ] {
        channels.push(c).unwrap();
    }
    let p = Provision {
        site: wire::SiteId::new("home_a").unwrap(),
        node: wire::NodeId::new("n01").unwrap(),
        broker: Broker {
            host: s("127.0.0.1"),
            port: 1883,
        },
        client_id: s("home_a.n01"),
        username: s("home_a.n01"),
        password: s(password),
        channels,
    };
    wire::provision::encode(&p).expect("a valid artefact")
}

/// The artefact the older tests use: default setpoints, the harness's
/// password for home_a.n01.
fn default_artefact(dir: &Path) -> PathBuf {
    let path = dir.join("node.fprv");
    let blob = artefact("pw-home_a.n01", Setpoints::default(), Setpoints::default());
    std::fs::write(&path, blob).expect("write artefact");
    path
}

/// The node running in QEMU; killed when dropped.
struct QemuNode {
    child: Child,
    log: PathBuf,
    monitor: Option<u16>,
}

impl QemuNode {
    fn start(broker_port: u16, dir: &Path) -> QemuNode {
        let artefact = default_artefact(dir);
        Self::start_with(broker_port, dir, Some(&artefact), None, "node.log")
    }

    /// Boots with `artefact` (none: nothing at the address) and, with
    /// `counter`, the boot counter's sectors from that file; a monitor on a
    /// free port lets the test save the sectors.
    fn start_with(
        broker_port: u16,
        dir: &Path,
        artefact: Option<&Path>,
        counter: Option<&Path>,
        log_name: &str,
    ) -> QemuNode {
        let qemu = require("qemu-system-arm", "qemu-system-arm");
        let elf = image();
        let log = dir.join(log_name);
        let monitor = free_port();
        let mut cmd = Command::new(qemu);
        cmd.args(["-M", "mps2-an386", "-display", "none"])
            .arg("-monitor")
            .arg(format!("tcp:127.0.0.1:{monitor},server=on,wait=off"))
            .arg("-serial")
            .arg(format!("tcp:127.0.0.1:{broker_port},reconnect=1"))
            .arg("-serial")
            .arg(format!("file:{}", log.display()));
        for (file, addr) in [(artefact, PROVISION_ADDR), (counter, BOOT_FLASH_ADDR)] {
            if let Some(f) = file {
                cmd.arg("-device").arg(format!(
                    "loader,file={},addr={addr:#010x},force-raw=on",
                    f.display()
                ));
            }
        }
        let child = cmd
            .arg("-kernel")
            .arg(&elf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn qemu-system-arm");
        QemuNode {
            child,
            log,
            monitor: Some(monitor),
        }
    }

    /// Saves the boot counter's sectors to `path` through the monitor.
    fn save_boot_counter(&self, path: &Path) {
        use std::io::{Read, Write};
        let port = self.monitor.expect("monitor");
        let mut m = std::net::TcpStream::connect(("127.0.0.1", port)).expect("QEMU monitor");
        m.set_read_timeout(Some(Duration::from_millis(500))).ok();
        let line = format!(
            "pmemsave {BOOT_FLASH_ADDR:#x} {BOOT_FLASH_LEN} \"{}\"\n",
            path.display()
        );
        m.write_all(line.as_bytes()).expect("monitor write");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut sink = [0u8; 512];
        while std::fs::metadata(path).map(|md| md.len()).unwrap_or(0) < BOOT_FLASH_LEN as u64 {
            assert!(
                Instant::now() < deadline,
                "pmemsave did not write {}",
                path.display()
            );
            let _ = m.read(&mut sink);
        }
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
    observer_client(port, user).await.1
}

/// [`observer`], and its client to publish with.
async fn observer_client(
    port: u16,
    user: Option<(&str, &str)>,
) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
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
    let publisher = client.clone();
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
    (publisher, rx)
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
    config.mqtt.anonymous_config_nodes = true;
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

/// Waits until the node's log contains `text`.
async fn wait_log(node: &QemuNode, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = node.log();
        if log.contains(text) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no `{text}` in the node log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_node_boots_from_its_artefact_counts_boots_and_selftests() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The node's password exists only in the artefact and the broker's
    // password file: the node connects only if it read the artefact.
    let password = "Zk8-prov-test";
    let config = gateway_config(0, dir.path());
    let acl = format!(
        "{}\nuser observer\ntopic read fire/v1/#\ntopic write fire/v1/home_a/n01/cmd\n",
        gateway::ingest::mosquitto::acl(&config, GATEWAY_USER.0)
    );
    let broker = Mosquitto::start(
        &[
            ("home_a.n01", password),
            GATEWAY_USER,
            ("observer", "obs-pw"),
        ],
        &acl,
    );

    // No artefact: the node says why and stops, without defaults.
    let bare = QemuNode::start_with(broker.port, dir.path(), None, None, "bare.log");
    let log = wait_log(&bare, "halted", Duration::from_secs(30)).await;
    assert!(log.contains("no valid provisioning artefact"), "{log}");
    assert!(log.contains("not a provisioning artefact (magic)"), "{log}");
    drop(bare);

    let blob = artefact(
        password,
        Setpoints {
            pre_alarm: Some(400),
            alarm: Some(700),
            hysteresis: Some(30),
        },
        Setpoints {
            pre_alarm: Some(1000),
            alarm: Some(500),
            hysteresis: Some(50),
        },
    );
    let art = dir.path().join("n01.fprv");
    std::fs::write(&art, &blob).expect("artefact");
    // Fresh counter sectors: erased flash.
    let fresh = dir.path().join("boot-fresh.bin");
    std::fs::write(&fresh, vec![0xFFu8; BOOT_FLASH_LEN]).expect("counter");

    let (client, mut seen) = observer_client(broker.port, Some(("observer", "obs-pw"))).await;
    let node = QemuNode::start_with(broker.port, dir.path(), Some(&art), Some(&fresh), "n1.log");
    let birth = wait_seen(&mut seen, Duration::from_secs(30), "the birth", |s| {
        s.topic == "fire/v1/home_a/n01/status" && s.json["state"] == "online"
    })
    .await;
    assert_eq!(birth.json["boot"], 1, "{}", birth.json);
    let log = node.log();
    assert!(log.contains("home_a.n01 boot 1"), "{log}");
    assert!(log.contains("broker 127.0.0.1:1883 as home_a.n01"), "{log}");
    assert!(log.contains("label FN1:HOME.A/N01:"), "{log}");
    assert!(
        broker.log().contains("u'home_a.n01'"),
        "the node logged in with the artefact's user:\n{}",
        broker.log()
    );

    // The artefact's rc1 setpoints: 650 mA is a pre-alarm (default: alarm).
    let mut rc1_events = Vec::new();
    let pre = wait_seen(&mut seen, Duration::from_secs(30), "rc1 pre-alarm", |s| {
        if s.topic.ends_with("/event") && s.json["ch"] == "rc1" {
            rc1_events.push(s.json["level"].as_str().unwrap_or("").to_string());
        }
        s.topic.ends_with("/event") && s.json["ch"] == "rc1" && s.json["level"] == "pre_alarm"
    })
    .await;
    assert_eq!(pre.json["boot"], 1);
    let v = pre.json["v"].as_i64().unwrap();
    assert!((500..700).contains(&v), "{}", pre.json);
    // Through the rise to the CT break, the node never alarms on rc1.
    let brk = wait_seen(&mut seen, Duration::from_secs(30), "the CT break", |s| {
        if s.topic.ends_with("/event") && s.json["ch"] == "rc1" {
            rc1_events.push(s.json["level"].as_str().unwrap_or("").to_string());
        }
        s.topic.ends_with("/telemetry") && rc1(s).is_some_and(|(_, st)| st == "open")
    })
    .await;
    assert!(
        !rc1_events.iter().any(|l| l == "alarm"),
        "rc1 events: {rc1_events:?}"
    );
    wait_seen(&mut seen, Duration::from_secs(30), "recovered rc1", |s| {
        s.topic.ends_with("/telemetry")
            && seq(s) > seq(&brk)
            && rc1(s).is_some_and(|(v, st)| st == "ok" && v < 400)
    })
    .await;

    // Self-test: the ack, then a test alarm and its reset on every channel.
    client
        .publish(
            "fire/v1/home_a/n01/cmd",
            QoS::AtLeastOnce,
            false,
            br#"{"id":"st-1","op":"selftest"}"#.to_vec(),
        )
        .await
        .expect("publish selftest");
    let mut alarms = std::collections::BTreeMap::new();
    let mut normals = std::collections::BTreeSet::new();
    let mut acked = None;
    wait_seen(
        &mut seen,
        Duration::from_secs(30),
        "selftest ack, alarms and resets",
        |s| {
            if s.topic == "fire/v1/home_a/n01/cmd/ack" && s.json["id"] == "st-1" {
                acked = Some(s.json.clone());
            }
            if s.topic.ends_with("/event") && s.json["boot"] == 1 {
                let ch = s.json["ch"].as_str().unwrap_or("").to_string();
                match s.json["level"].as_str() {
                    Some("alarm") => {
                        alarms.insert(ch, s.json["v"].as_i64().unwrap_or(0));
                    }
                    Some("normal") if alarms.contains_key(&ch) => {
                        normals.insert(ch);
                    }
                    _ => {}
                }
            }
            acked.is_some() && normals.len() == 4
        },
    )
    .await;
    assert_eq!(acked.unwrap(), serde_json::json!({"id":"st-1","ok":true}));
    let want: std::collections::BTreeMap<String, i64> =
        [("rc1", 700), ("t1", 800), ("p1", 100), ("l1", 500)]
            .into_iter()
            .map(|(c, v)| (c.to_string(), v))
            .collect();
    assert_eq!(alarms, want, "a test alarm at each channel's setpoint");
    wait_log(&node, "self-test ended", Duration::from_secs(5)).await;

    // `config`: setpoints beyond the standard's limit are refused, the rule
    // unchanged; accepted ones judge the next sample (the recovered ~150 mA
    // is an alarm under an alarm setpoint of 120 mA).
    for (id, payload) in [
        (
            "cfg-bad",
            &br#"{"id":"cfg-bad","op":"config","ch":"rc1","pre_alarm":400,"alarm":1200}"#[..],
        ),
        (
            "cfg-1",
            br#"{"id":"cfg-1","op":"config","ch":"rc1","pre_alarm":null,"alarm":120}"#,
        ),
    ] {
        client
            .publish(
                "fire/v1/home_a/n01/cmd",
                QoS::AtLeastOnce,
                false,
                payload.to_vec(),
            )
            .await
            .expect("publish config");
        let ack = wait_seen(&mut seen, Duration::from_secs(30), id, |s| {
            s.topic == "fire/v1/home_a/n01/cmd/ack" && s.json["id"] == id
        })
        .await;
        assert_eq!(ack.json["ok"], id == "cfg-1", "{}", ack.json);
    }
    let log = node.log();
    assert!(
        log.contains("cmd cfg-bad config: refused: setpoints refused:"),
        "{log}"
    );
    assert!(
        log.contains("cmd cfg-1 config: ok, rc1 pre_alarm none alarm 120 hysteresis 30"),
        "{log}"
    );
    let alarm = wait_seen(
        &mut seen,
        Duration::from_secs(30),
        "rc1 alarm at 120 mA",
        |s| s.topic.ends_with("/event") && s.json["ch"] == "rc1" && s.json["level"] == "alarm",
    )
    .await;
    let v = alarm.json["v"].as_i64().unwrap();
    assert!((120..400).contains(&v), "{}", alarm.json);

    // The counter sectors survive a restart (saved and loaded by the test,
    // as QEMU has no flash here): the next boot is 2.
    let saved = dir.path().join("boot-saved.bin");
    node.save_boot_counter(&saved);
    drop(node);
    let node = QemuNode::start_with(broker.port, dir.path(), Some(&art), Some(&saved), "n2.log");
    let birth = wait_seen(
        &mut seen,
        Duration::from_secs(30),
        "the second birth",
        |s| {
            s.topic == "fire/v1/home_a/n01/status"
                && s.json["state"] == "online"
                && s.json["boot"] != 1
        },
    )
    .await;
    assert_eq!(birth.json["boot"], 2, "{}", birth.json);
    let t = wait_seen(
        &mut seen,
        Duration::from_secs(30),
        "boot 2 telemetry",
        |s| s.topic.ends_with("/telemetry") && s.json["boot"] != 1,
    )
    .await;
    assert_eq!(t.json["boot"], 2);
    assert_eq!(t.json["seq"], 0, "seq starts again in the new boot");
    // The `config` lived in RAM: boot 2 runs the artefact's setpoints again,
    // so its first ~150 mA readings raise nothing on rc1.
    let mut boot2_events = Vec::new();
    wait_seen(&mut seen, Duration::from_secs(30), "boot 2 samples", |s| {
        if s.topic.ends_with("/event") && s.json["boot"] == 2 {
            boot2_events.push(s.json.clone());
        }
        s.topic.ends_with("/telemetry")
            && s.json["boot"] == 2
            && seq(s) >= 4
            && rc1(s).is_some_and(|(v, st)| st == "ok" && v < 400)
    })
    .await;
    assert!(
        !boot2_events.iter().any(|e| e["ch"] == "rc1"),
        "{boot2_events:?}"
    );
    drop(node);
}
