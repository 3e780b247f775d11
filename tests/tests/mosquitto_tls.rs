//! Mosquitto over TLS (issue 15 item 6): a real Mosquitto with the
//! deployment's TLS listeners (`deploy/mosquitto/tls.conf`), a broker
//! certificate for 127.0.0.1 and localhost from a CA made here, and the
//! node CA exported by `gateway::ingest::mosquitto::export_node_ca` as the cert
//! listener's `cafile`.
//!
//! - A node with a certificate (CN `home_a.n01`, signed by the node CA)
//!   publishes on the cert listener without a password; the gateway, on
//!   the password listener over TLS (`mqtt.external_tls`), raises the
//!   alarm. The same node publishing under another node's topics is not
//!   delivered (the ACL applies to the CN), and clients without a
//!   certificate, or with one from another CA, are refused.
//! - The gateway trusting another CA refuses the broker and says why on
//!   `/healthz` (`mqtt_error`: the certificate is not accepted).

use e2e::mosquitto_tls::{client_tls, connect_tls, publish, BrokerTls, TestCa as Ca};
use e2e::*;
use gateway::alarms::events::GatewayEvent;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wire::{ChannelStatus::Ok as OK, Quantity::*};

const WAIT: Duration = Duration::from_secs(20);

struct TlsStack {
    broker: Mosquitto,
    ports: e2e::mosquitto_tls::TlsPorts,
    broker_ca: Ca,
    node_ca: Ca,
    config: gateway::config::Config,
    dir: tempfile::TempDir,
}

/// Mosquitto with its TLS listeners: a broker certificate from
/// `broker_ca`, the node CA exported from the gateway's data directory.
fn tls_stack() -> TlsStack {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_ca = Ca::new("broker test CA");
    let node_ca = Ca::new("node test CA");
    let (cert, key) = broker_ca.issue(
        "127.0.0.1",
        &["127.0.0.1", "localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let files = dir.path().join("broker-files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("broker.pem"), cert).unwrap();
    std::fs::write(files.join("broker.key"), key).unwrap();
    // The node CA where `gateway ca init` keeps it, exported as
    // `mosquitto-export` does.
    let config = gateway_config(0, dir.path());
    let ca_dir = gateway::ingest::mosquitto::node_ca_path(&config.storage.data_dir);
    std::fs::create_dir_all(ca_dir.parent().unwrap()).unwrap();
    std::fs::write(&ca_dir, node_ca.pem()).unwrap();
    let exported = gateway::ingest::mosquitto::export_node_ca(&config.storage.data_dir, &files)
        .unwrap()
        .expect("the node CA is exported");
    assert_eq!(exported, files.join("ca.pem"));

    let nodes = node_users(&config);
    let mut users: Vec<(&str, &str)> = nodes
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    users.push(GATEWAY_USER);
    let acl = gateway::ingest::mosquitto::acl(&config, GATEWAY_USER.0);
    let (broker, ports) = Mosquitto::start_tls(
        &users,
        &acl,
        &BrokerTls {
            cert_file: files.join("broker.pem"),
            key_file: files.join("broker.key"),
            node_ca_file: exported,
        },
    );
    TlsStack {
        broker,
        ports,
        broker_ca,
        node_ca,
        config,
        dir,
    }
}

fn addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// The gateway on the password listener over TLS, trusting `ca_pem`.
fn gateway_over_tls(s: &TlsStack, ca_pem: &str) -> gateway::config::Config {
    let ca_file = s.dir.path().join("trusted-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let mut c = s.config.clone();
    c.mqtt.host = "localhost".into();
    c.mqtt.port = s.ports.password;
    c.mqtt.external_tls = true;
    c.tls.extra_ca_file = Some(ca_file);
    c
}

async fn next_alarm(rx: &mut tokio::sync::broadcast::Receiver<GatewayEvent>) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(GatewayEvent::AlarmRaised { alarm, .. })) => {
                return format!("{}/{}", alarm.row.site, alarm.row.node)
            }
            Ok(Ok(_)) => {}
            other => panic!("waiting for an alarm: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_certificate_raises_an_alarm_through_mosquitto_over_tls() {
    let s = tls_stack();
    let gw = start_gateway(gateway_over_tls(&s, &s.broker_ca.pem())).await;
    let metrics = gw.metrics.clone();
    wait_until(WAIT, "the gateway connected to Mosquitto over TLS", || {
        metrics.mqtt_connections.load(Ordering::Relaxed) > 0
    })
    .await;
    let mut events = gw.events.subscribe();

    // home_a.n01 logs in with its certificate alone: no username, no password.
    let (chain, key) = s.node_ca.node("home_a.n01");
    let node = connect_tls(
        addr(s.ports.cert),
        "127.0.0.1",
        "anything",
        None,
        client_tls(&s.broker_ca.pem(), Some((&chain, &key))),
    )
    .await
    .expect("the node's certificate is its login");
    let leak = |node_seq: u32| {
        telemetry(
            17,
            node_seq,
            1_764_000_000_000 + u64::from(node_seq),
            &[("rc1", ResidualCurrent, 650, OK)],
        )
    };
    // Outside its ACL first (n02's topic: dropped by Mosquitto), then its own.
    publish(&node, "fire/v1/home_a/n02/telemetry", leak(0)).await;
    publish(&node, "fire/v1/home_a/n01/telemetry", leak(1)).await;
    assert_eq!(next_alarm(&mut events).await, "home_a/n01");
    let alarms = get_json(
        gw.http_addr,
        Some(&admin_token(&gw).await),
        "/api/v1/alarms?state=active",
    )
    .await;
    let nodes: Vec<&str> = alarms
        .as_array()
        .expect("a list of alarms")
        .iter()
        .filter_map(|a| a["node"].as_str())
        .collect();
    assert_eq!(nodes, ["n01"], "{alarms}");
    let health = get_json(gw.http_addr, None, "/healthz").await;
    assert!(health.get("mqtt_error").is_none(), "{health}");

    // No certificate on the cert listener: refused, password or not.
    let refused = connect_tls(
        addr(s.ports.cert),
        "127.0.0.1",
        "home_a.n02",
        Some(("home_a.n02", "pw-home_a.n02")),
        client_tls(&s.broker_ca.pem(), None),
    )
    .await;
    assert!(
        refused.is_err(),
        "a client without a certificate was let in"
    );
    // A certificate from another CA: refused.
    let stranger = Ca::new("not the node CA");
    let (chain, key) = stranger.node("home_a.n02");
    let refused = connect_tls(
        addr(s.ports.cert),
        "127.0.0.1",
        "home_a.n02",
        None,
        client_tls(&s.broker_ca.pem(), Some((&chain, &key))),
    )
    .await;
    assert!(refused.is_err(), "a certificate of another CA was accepted");
    // A wrong password on the password listener over TLS: refused.
    let refused = connect_tls(
        addr(s.ports.password),
        "localhost",
        "home_a.n02",
        Some(("home_a.n02", "wrong")),
        client_tls(&s.broker_ca.pem(), None),
    )
    .await;
    assert!(refused.is_err(), "a wrong password was accepted");
    gw.shutdown().await;
    drop(s.broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_a_broker_whose_certificate_it_does_not_trust() {
    let s = tls_stack();
    let other = Ca::new("some other CA");
    let gw = start_gateway(gateway_over_tls(&s, &other.pem())).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let health = loop {
        let h = get_json(gw.http_addr, None, "/healthz").await;
        if h.get("mqtt_error").is_some() {
            break h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no mqtt_error on /healthz: {h}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = health["mqtt_error"].as_str().unwrap();
    assert!(
        error.contains("the broker's certificate is not accepted")
            && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert_eq!(health["mqtt_connected_once"], false, "{health}");
    assert_eq!(gw.metrics.mqtt_connections.load(Ordering::Relaxed), 0);
    gw.shutdown().await;
    drop(s.broker);
}

#[test]
fn external_tls_is_refused_with_the_embedded_broker() {
    let err =
        gateway::config::Config::from_toml("[mqtt]\nbroker = \"embedded\"\nexternal_tls = true\n")
            .expect_err("external_tls with the embedded broker");
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].path, "mqtt.external_tls");
    // With an external broker it is taken (other issues, such as an empty
    // system trust store on a slim machine, are not this test's subject).
    let issues = match gateway::config::Config::from_toml(
        "[mqtt]\nbroker = \"external\"\nhost = \"mqtt.example\"\nport = 8884\nexternal_tls = true\n",
    ) {
        Ok(c) => {
            assert!(c.mqtt.external_tls);
            Vec::new()
        }
        Err(e) => e.0,
    };
    assert!(
        issues.iter().all(|i| i.path != "mqtt.external_tls"),
        "{issues:?}"
    );
}
