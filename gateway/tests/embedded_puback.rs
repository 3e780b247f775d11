//! The embedded broker's gate acknowledges a node's QoS 1 publish only once
//! the pipeline has committed it: while the database is locked the node
//! gets no PUBACK (it still holds the reading, and would send it again to a
//! restarted gateway); once the lock goes, the PUBACK comes and the alarm
//! stands. A node that vanishes without DISCONNECT is reported offline
//! through its Last Will, which the gate hands to the pipeline. (That other
//! subscribers of the embedded broker still see the nodes' messages is
//! checked by `tests/tests/qemu_node.rs`, whose observer subscribes there.)

use gateway::config::Config;
use gateway::store::AlarmFilter;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;

const WITHIN: Duration = Duration::from_secs(20);

/// A client whose incoming packets are forwarded to a channel.
fn client(
    broker: SocketAddr,
    id: &str,
    will: Option<LastWill>,
) -> (
    AsyncClient,
    mpsc::UnboundedReceiver<Packet>,
    tokio::task::JoinHandle<()>,
) {
    let mut o = MqttOptions::new(id, broker.ip().to_string(), broker.port());
    o.set_keep_alive(Duration::from_secs(30));
    if let Some(w) = will {
        o.set_last_will(w);
    }
    let (c, mut el) = AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    (c, rx, task)
}

async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<Packet>,
    within: Duration,
    what: &str,
    pred: impl Fn(&Packet) -> bool,
) -> Packet {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) if pred(&p) => return p,
            Ok(Some(_)) => {}
            _ => panic!("timed out waiting for {what}"),
        }
    }
}

fn telemetry(seq: u32, rc: i32) -> String {
    format!(
        r#"{{"boot":1,"seq":{seq},"ts":0,"ch":[{{"id":"rc1","q":"residual_current","v":{rc},"s":"ok"}},{{"id":"t1","q":"temperature","v":250,"s":"ok"}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puback_waits_for_the_commit_and_a_vanished_node_is_offline_by_its_will() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        Config::from_toml("[[sites]]\nid = \"home_a\"\n[[sites.nodes]]\nid = \"n01\"\n").unwrap();
    config.storage.data_dir = dir.path().to_path_buf();
    config.mqtt.anonymous_config_nodes = true;
    let broker = SocketAddr::from(([127, 0, 0, 1], gateway::demo::free_port().unwrap()));
    config.mqtt.embedded_listen = broker;
    config.mqtt.client_id = "puback-test".into();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, http).await.unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("gateway.db").display());

    let will = LastWill::new(
        "fire/v1/home_a/n01/status",
        r#"{"state":"offline"}"#,
        QoS::AtLeastOnce,
        true,
    );
    let (node, mut node_rx, node_task) = client(broker, "home_a.n01", Some(will));
    next_matching(&mut node_rx, WITHIN, "CONNACK", |p| {
        matches!(p, Packet::ConnAck(_))
    })
    .await;

    node.publish(
        "fire/v1/home_a/n01/telemetry",
        QoS::AtLeastOnce,
        false,
        telemetry(0, 100),
    )
    .await
    .unwrap();
    next_matching(&mut node_rx, WITHIN, "the first PUBACK", |p| {
        matches!(p, Packet::PubAck(_))
    })
    .await;

    // Another connection holds the database's write lock past the busy timeout.
    let mut locker = sqlx::SqliteConnection::connect(&db_url).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    node.publish(
        "fire/v1/home_a/n01/telemetry",
        QoS::AtLeastOnce,
        false,
        telemetry(1, 700),
    )
    .await
    .unwrap();
    // The outage is reported (the busy timeout is 5 s), and still no PUBACK.
    let deadline = tokio::time::Instant::now() + WITHIN;
    while running.metrics.store_health.outage().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outage not reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while let Ok(p) = node_rx.try_recv() {
        assert!(
            !matches!(p, Packet::PubAck(_)),
            "PUBACK before the commit: {p:?}"
        );
    }
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    drop(locker);
    next_matching(&mut node_rx, WITHIN, "the PUBACK after the commit", |p| {
        matches!(p, Packet::PubAck(_))
    })
    .await;
    let standing = running
        .store
        .alarms(AlarmFilter::Standing, 10)
        .await
        .unwrap();
    assert!(
        standing
            .iter()
            .any(|a| a.channel == "rc1" && a.level == "alarm" && a.ticket_id.is_some()),
        "{standing:?}"
    );

    // The node vanishes without DISCONNECT: its Last Will reaches the
    // pipeline through the gate, and the node is offline.
    node_task.abort();
    drop(node);
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let offline = running
            .store
            .alarms(AlarmFilter::Standing, 10)
            .await
            .unwrap()
            .into_iter()
            .any(|a| a.cause == "offline" && a.node == "n01");
        if offline {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no offline alarm from the Last Will"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await;
}
