//! Registered nodes behind a real Mosquitto: the password file the gateway
//! exports (`$7$` hashes from its registry) and its ACL are what Mosquitto
//! runs on. A registered node logs in with the password it was given, its
//! telemetry raises an alarm at the gateway, a publish under another node's
//! topic never arrives; after a rotation and a revocation (exported again,
//! Mosquitto reloaded) the old passwords are refused and the new one works.
//! And our hash format is Mosquitto's: a line written by `mosquitto_passwd`
//! verifies with the gateway's code.

use e2e::*;
use gateway::alarms::events::GatewayEvent;
use gateway::commissioning::registry::{Actor, ChannelSpec, Location, NewNode};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet};
use std::sync::atomic::Ordering;
use std::time::Duration;
use wire::{ChannelStatus::Ok as OK, Quantity::ResidualCurrent};

const WAIT: Duration = Duration::from_secs(20);
const CLI: Actor<'static> = Actor {
    name: "cli:e2e",
    role: "admin",
};

/// One CONNECT: `Ok` on CONNACK 0, else the refusal.
async fn try_connect(
    broker: std::net::SocketAddr,
    user: &str,
    password: &str,
) -> Result<(), ConnectionError> {
    let mut o = MqttOptions::new(user, broker.ip().to_string(), broker.port());
    o.set_credentials(user, password)
        .set_keep_alive(Duration::from_secs(5));
    let (_client, mut ev) = AsyncClient::new(o, 10);
    tokio::time::timeout(WAIT, async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("no CONNACK from Mosquitto")
}

fn refused(r: Result<(), ConnectionError>) -> bool {
    matches!(
        r,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
        ))
    )
}

/// The exported files for the store's registry now.
async fn export(
    store: &gateway::store::Store,
    config: &gateway::config::Config,
) -> (String, String) {
    let reg = store.registry().await.unwrap();
    let passwd = gateway::ingest::mosquitto::passwd(&reg, Some(GATEWAY_USER)).unwrap();
    let acl = gateway::ingest::mosquitto::acl(
        &gateway::commissioning::registry::effective(config, &reg),
        GATEWAY_USER.0,
    );
    (passwd, acl)
}

#[test]
fn our_hash_format_is_mosquittos() {
    let tool = require("mosquitto_passwd", "mosquitto");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    std::fs::write(&file, "").unwrap();
    let st = std::process::Command::new(tool)
        .arg("-b")
        .arg(&file)
        .arg("home_a.n01")
        .arg("a-password-from-mosquitto")
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&file).unwrap();
    let hash = text.trim().strip_prefix("home_a.n01:").unwrap();
    assert!(hash.starts_with("$7$101$"), "{hash}");
    assert!(gateway::commissioning::credentials::verify(
        "a-password-from-mosquitto",
        hash
    ));
    assert!(!gateway::commissioning::credentials::verify(
        "another", hash
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_credentials_run_a_real_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    // The broker's port is needed in the configuration before the broker
    // starts: take one, and start Mosquitto on the exported files below.
    let mut config = gateway_config(0, dir.path());
    let store = gateway::store::Store::open(&config.storage.database_url())
        .await
        .unwrap();
    let node = NewNode {
        site: "home_a".into(),
        id: "n07".into(),
        location: Location {
            building: "1号楼".into(),
            floor: "2层".into(),
            room: "201".into(),
            panel: "AL-2".into(),
        },
        channels: vec![ChannelSpec::parse("rc1:residual_current:ct=1000").unwrap()],
    };
    let (_, n07) = gateway::commissioning::registry::add_node(&store, &config, &node, CLI, 1)
        .await
        .unwrap();
    // A node of the file gets its credentials the same way.
    let n01 = gateway::commissioning::registry::rotate(&store, &config, "home_a", "n01", CLI, 2)
        .await
        .unwrap();

    let (passwd, acl) = export(&store, &config).await;
    let broker = Mosquitto::start_with_files(&passwd, &acl);
    config.mqtt.port = broker.port;
    let gw = start_gateway(config.clone()).await;
    let metrics = gw.metrics.clone();
    wait_until(WAIT, "the gateway connected to Mosquitto", || {
        metrics.mqtt_connections.load(Ordering::Relaxed) > 0
    })
    .await;
    let mut events = gw.events.subscribe();

    // Wrong password: refused by Mosquitto itself.
    assert!(refused(
        try_connect(broker.addr(), &n07.username, "not-the-password").await
    ));

    // With its password: telemetry reaches the gateway and raises an alarm.
    let peer = MqttPeer::connect(
        broker.addr(),
        &n07.username,
        (&n07.username, &n07.password),
        None,
    )
    .await;
    let reading = |seq, v| telemetry(1, seq, 0, &[("rc1", ResidualCurrent, v, OK)]);
    peer.publish("fire/v1/home_a/n07/telemetry", reading(1, 650), false)
        .await;
    let alarm = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(GatewayEvent::AlarmRaised { alarm, .. }) = events.recv().await {
                return alarm;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no alarm for the registered node\n{}\n{}",
            gw.metrics.render(),
            broker.log()
        )
    });
    assert_eq!(alarm.row.node, "n07");

    // Under another node's topic: Mosquitto's ACL keeps it from the gateway.
    peer.publish("fire/v1/home_a/n01/telemetry", reading(1, 900), false)
        .await;
    peer.publish("fire/v1/home_a/n07/telemetry", reading(2, 660), false)
        .await;
    peer.wait_acked(3, WAIT).await;
    let received = gw.metrics.clone();
    wait_until(WAIT, "the second own message", || {
        received.messages_received.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert_eq!(
        gw.metrics.messages_received.load(Ordering::Relaxed),
        2,
        "the publish under home_a/n01 reached the gateway"
    );
    peer.disconnect().await;

    // Rotate n01 and revoke n07, export again, reload Mosquitto.
    let n01_new =
        gateway::commissioning::registry::rotate(&store, &config, "home_a", "n01", CLI, 3)
            .await
            .unwrap();
    gateway::commissioning::registry::revoke(&store, &config, "home_a", "n07", CLI, 4)
        .await
        .unwrap();
    let (passwd, acl) = export(&store, &config).await;
    assert!(!passwd.contains("home_a.n07:"), "{passwd}");
    broker.reload_files(&passwd, &acl);
    // Mosquitto reloads asynchronously: wait for the revocation to bite.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !refused(try_connect(broker.addr(), &n07.username, &n07.password).await) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Mosquitto still accepts the revoked node"
        );
    }
    assert!(refused(
        try_connect(broker.addr(), &n01.username, &n01.password).await
    ));
    assert!(
        try_connect(broker.addr(), &n01_new.username, &n01_new.password)
            .await
            .is_ok()
    );

    gw.shutdown().await;
    store.close().await;
}
