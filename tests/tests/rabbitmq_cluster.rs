//! Nodes on a real three-node RabbitMQ cluster behind haproxy (issue 16,
//! deploy/cluster/): the users `rabbitmq-sync` writes from the registry
//! let a node publish its own topics and nothing else, anonymous logins and
//! wrong passwords are refused, a revoked node is refused after the next
//! sync; and with the broker node holding a node's persistent `cmd`
//! subscription stopped, a command published meanwhile still reaches the
//! node when it reconnects through haproxy (the subscription is a quorum
//! queue). The shipped haproxy configuration passes `haproxy -c`.

use e2e::mosquitto_tls::{client_tls, connect_tls, publish as tls_publish};
use e2e::rabbitmq::{
    haproxy_cfg, haproxy_check, haproxy_tls, shipped_haproxy_cfg, Fronts, Haproxy, RabbitCluster,
    HAPROXY_CERT,
};
use e2e::*;
use gateway::commissioning::registry::{Actor, ChannelSpec, Location, NewNode};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const CLI: Actor<'static> = Actor {
    name: "cli:e2e",
    role: "admin",
};

#[test]
fn the_shipped_haproxy_configuration_is_valid() {
    // As shipped, with a certificate where the TLS frontend reads it.
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = haproxy_tls(dir.path());
    let shipped = shipped_haproxy_cfg();
    assert!(shipped.contains(HAPROXY_CERT));
    let (ok, said) = haproxy_check(&shipped.replace(HAPROXY_CERT, &cert.display().to_string()));
    assert!(ok, "deploy/cluster/haproxy/haproxy.cfg: {said}");
    let fronts = Fronts::free();
    let cfg = haproxy_cfg(
        &fronts,
        &cert,
        &[
            ("mq1".into(), "127.0.0.1:1".into()),
            ("mq1-amqp".into(), "127.0.0.1:2".into()),
        ],
    );
    assert!(cfg.contains("server mq1 127.0.0.1:1 "), "{cfg}");
    assert!(cfg.contains("server mq1-amqp 127.0.0.1:2 "), "{cfg}");
    for port in [fronts.mqtt, fronts.amqp, fronts.http] {
        assert!(cfg.contains(&format!("bind 127.0.0.1:{port}\n")), "{cfg}");
    }
    assert!(
        cfg.contains(&format!(
            "bind 127.0.0.1:{} ssl crt {}\n",
            fronts.mqtts,
            cert.display()
        )),
        "{cfg}"
    );
    let (ok, said) = haproxy_check(&cfg);
    assert!(ok, "{said}");
    let (ok, _) = haproxy_check(&cfg.replace("balance leastconn", "balance nosuchalgo"));
    assert!(!ok, "haproxy -c accepted an unknown balance algorithm");
}

/// A CONNECT: the client and its event loop once CONNACK 0 came, or the
/// refusal or error.
async fn connect(
    broker: SocketAddr,
    client_id: &str,
    login: Option<(&str, &str)>,
    clean: bool,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let mut o = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
    o.set_keep_alive(Duration::from_secs(10))
        .set_clean_session(clean);
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    let (client, mut ev) = AsyncClient::new(o, 100);
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
    .expect("no CONNACK from RabbitMQ")?;
    Ok((client, ev))
}

fn refused(r: &Result<(AsyncClient, EventLoop), ConnectionError>) -> bool {
    matches!(
        r,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
        ))
    )
}

/// Connects, retrying through haproxy while a broker is going away (a
/// refused login is not retried).
async fn connect_retrying(
    broker: SocketAddr,
    client_id: &str,
    login: (&str, &str),
    clean: bool,
) -> (AsyncClient, EventLoop) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = connect(broker, client_id, Some(login), clean).await;
        match r {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("{client_id} could not connect: {e}"),
            Err(ConnectionError::ConnectionRefused(code)) => {
                panic!("{client_id} refused: {code:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Drives `ev` until `want` holds for an incoming packet; `Err` with what
/// happened if the connection ends first, or nothing within `within`.
async fn until(
    ev: &mut EventLoop,
    within: Duration,
    mut want: impl FnMut(&Packet) -> bool,
) -> Result<Packet, String> {
    tokio::time::timeout(within, async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(p)) if want(&p) => return Ok(p),
                Ok(_) => {}
                Err(e) => return Err(format!("connection ended: {e}")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("nothing within {within:?}")))
}

fn publish_on<'a>(p: &'a Packet, topic: &str) -> Option<&'a rumqttc::Publish> {
    match p {
        Packet::Publish(m) if m.topic == topic => Some(m),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_nodes_on_a_three_node_rabbitmq_cluster_behind_haproxy() {
    let started = Instant::now();
    let mut cluster = RabbitCluster::start();
    let cluster_up = started.elapsed();

    // The registry: n07 registered, n01 of the file given credentials.
    let dir = tempfile::tempdir().unwrap();
    let config = gateway_config(0, dir.path());
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
    let n01 = gateway::commissioning::registry::rotate(&store, &config, "home_a", "n01", CLI, 2)
        .await
        .unwrap();

    let client =
        gateway::tls::HttpClient::new_or_system(&Default::default(), WAIT, "rabbitmq-sync");
    let sync = |store: &gateway::store::Store, base: String| {
        let client = client.clone();
        let store = store.clone();
        let config = config.clone();
        async move {
            let plan = gateway::ingest::rabbitmq::plan_from_store(&store, &config)
                .await
                .unwrap();
            gateway::ingest::rabbitmq::sync(&client, &base, rabbitmq_admin(), "/", &plan)
                .await
                .unwrap()
        }
    };
    let report = sync(&store, cluster.nodes[0].mgmt_url()).await;
    assert_eq!(report.users, 3, "{report:?}");
    assert!(report.without_hash.is_empty(), "{report:?}");
    // `rabbitmq-export`'s definitions file is one RabbitMQ 3.10 imports
    // (the same users again; the logins below still work).
    let plan = gateway::ingest::rabbitmq::plan_from_store(&store, &config)
        .await
        .unwrap();
    let defs = gateway::ingest::rabbitmq::definitions(&plan, "/").to_string();
    let (code, body) = cluster.mgmt(1, "POST", "/api/definitions", Some(&defs));
    assert!(
        (200..300).contains(&code),
        "definitions import: {code} {body}"
    );

    // haproxy in front of the three brokers.
    let proxy = Haproxy::in_front_of(&cluster);
    let front = proxy.mqtt_addr();

    // Anonymous and a wrong password: refused.
    assert!(
        refused(&connect(front, "anon", None, true).await),
        "anonymous login accepted"
    );
    assert!(refused(
        &connect(front, &n07.username, Some((&n07.username, "wrong")), true).await
    ));

    // The gateway's user reads every contract topic (on another broker).
    let (gw, mut gw_ev) = connect_retrying(
        cluster.nodes[1].mqtt_addr(),
        "fire-gateway-test",
        GATEWAY_USER,
        true,
    )
    .await;
    gw.subscribe("fire/v1/#", QoS::AtLeastOnce).await.unwrap();
    until(&mut gw_ev, WAIT, |p| matches!(p, Packet::SubAck(_)))
        .await
        .unwrap();

    // MQTT over TLS, ended by haproxy (the shipped `frontend mqtts`): n01
    // trusting haproxy's CA logs in and its reading reaches the gateway's
    // user; a client trusting another CA, or speaking plain MQTT to the
    // TLS port, gets no session.
    let login01 = (n01.username.as_str(), n01.password.as_str());
    let tls01 = connect_tls(
        proxy.mqtts_addr(),
        "127.0.0.1",
        &n01.username,
        Some(login01),
        client_tls(&proxy.ca_pem, None),
    )
    .await
    .expect("n01 over TLS through haproxy");
    let over_tls = telemetry(
        1,
        1,
        0,
        &[(
            "rc1",
            wire::Quantity::ResidualCurrent,
            42,
            wire::ChannelStatus::Ok,
        )],
    );
    tls_publish(&tls01, "fire/v1/home_a/n01/telemetry", over_tls.clone()).await;
    let p = until(&mut gw_ev, WAIT, |p| {
        publish_on(p, "fire/v1/home_a/n01/telemetry").is_some()
    })
    .await
    .expect("n01's reading over TLS");
    assert_eq!(
        publish_on(&p, "fire/v1/home_a/n01/telemetry").map(|m| m.payload.to_vec()),
        Some(over_tls)
    );
    let _ = tls01.disconnect().await;
    let stranger = e2e::mosquitto_tls::TestCa::new("not haproxy's CA");
    let refused_tls = connect_tls(
        proxy.mqtts_addr(),
        "127.0.0.1",
        "home_a.n01-b",
        Some(login01),
        client_tls(&stranger.pem(), None),
    )
    .await;
    assert!(
        refused_tls.is_err(),
        "a certificate from another CA was trusted"
    );
    assert!(
        connect(proxy.mqtts_addr(), &n01.username, Some(login01), true)
            .await
            .is_err(),
        "plain MQTT answered on the TLS port"
    );

    // n07 with its password, through haproxy, persistent session: its own
    // cmd subscription and telemetry are accepted.
    let login07 = (n07.username.as_str(), n07.password.as_str());
    let (c07, mut ev07) = connect_retrying(front, &n07.username, login07, false).await;
    c07.subscribe("fire/v1/home_a/n07/cmd", QoS::AtLeastOnce)
        .await
        .unwrap();
    match until(&mut ev07, WAIT, |p| matches!(p, Packet::SubAck(_))).await {
        Ok(Packet::SubAck(a)) => assert_eq!(
            a.return_codes,
            [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        ),
        other => panic!("n07's own cmd subscription: {other:?}"),
    }
    let reading = |seq, v| {
        telemetry(
            1,
            seq,
            0,
            &[(
                "rc1",
                wire::Quantity::ResidualCurrent,
                v,
                wire::ChannelStatus::Ok,
            )],
        )
    };
    c07.publish(
        "fire/v1/home_a/n07/telemetry",
        QoS::AtLeastOnce,
        false,
        reading(1, 650),
    )
    .await
    .unwrap();
    until(&mut ev07, WAIT, |p| matches!(p, Packet::PubAck(_)))
        .await
        .expect("PUBACK for n07's own telemetry");
    until(&mut gw_ev, WAIT, |p| {
        publish_on(p, "fire/v1/home_a/n07/telemetry").is_some()
    })
    .await
    .expect("the gateway's user received n07's telemetry");

    // The ingest topology the sync declared: n07's reading and n01's over
    // TLS are in their site's partition queue; a site no partition is
    // bound for lands in
    // `fire.unknown` through the alternate exchange.
    let partition = gateway::ingest::rabbitmq::partition_queue(
        gateway::ingest::rabbitmq::partition_of("home_a", gateway::ingest::rabbitmq::PARTITIONS),
    );
    // (A single-active-consumer queue refuses basic.get: read the message
    // counts, which the management statistics report a few seconds late.)
    let counts = |cluster: &RabbitCluster| -> Vec<(String, u64)> {
        let (code, body) = cluster.mgmt(0, "GET", "/api/queues?columns=name,messages", None);
        assert_eq!(code, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut out: Vec<(String, u64)> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|q| Some((q["name"].as_str()?.to_string(), q["messages"].as_u64()?)))
            .filter(|(name, n)| name.starts_with("fire.") && *n > 0)
            .collect();
        out.sort();
        out
    };
    let deadline = Instant::now() + WAIT;
    while counts(&cluster) != [(partition.clone(), 2)] {
        assert!(
            Instant::now() < deadline,
            "n07's and n01's readings are not (only) in {partition}: {:?}",
            counts(&cluster)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (code, body) = cluster.mgmt(
        1,
        "POST",
        "/api/exchanges/%2F/amq.topic/publish",
        Some(r#"{"routing_key":"fire.v1.nosuch.n1.telemetry","payload":"x","payload_encoding":"string","properties":{}}"#),
    );
    assert!(
        code == 200 && body.contains(r#""routed":true"#),
        "{code} {body}"
    );
    let get = r#"{"count":10,"ackmode":"ack_requeue_false","encoding":"auto"}"#;
    let (code, body) = cluster.mgmt(0, "POST", "/api/queues/%2F/fire.unknown/get", Some(get));
    assert!(
        code == 200 && body.contains("fire.v1.nosuch.n1.telemetry"),
        "{code} {body}"
    );

    // Under n01's topic: refused (RabbitMQ closes the connection, no PUBACK).
    c07.publish(
        "fire/v1/home_a/n01/telemetry",
        QoS::AtLeastOnce,
        false,
        reading(2, 900),
    )
    .await
    .unwrap();
    let r = until(&mut ev07, Duration::from_secs(10), |p| {
        matches!(p, Packet::PubAck(_))
    })
    .await;
    assert!(
        r.is_err(),
        "a publish under another node's topic was acknowledged"
    );
    // n01's cmd: not n07's to read.
    let (c07, mut ev07) = connect_retrying(front, &n07.username, login07, false).await;
    c07.subscribe("fire/v1/home_a/n01/cmd", QoS::AtLeastOnce)
        .await
        .unwrap();
    let r = until(&mut ev07, Duration::from_secs(10), |p| {
        matches!(p, Packet::SubAck(_))
    })
    .await;
    if let Ok(Packet::SubAck(a)) = &r {
        assert_eq!(
            a.return_codes,
            [rumqttc::SubscribeReasonCode::Failure],
            "{r:?}"
        );
    }
    // What reached the gateway's user: n07's second own reading, never n01's.
    let (c07, mut ev07) = connect_retrying(front, &n07.username, login07, false).await;
    c07.publish(
        "fire/v1/home_a/n07/telemetry",
        QoS::AtLeastOnce,
        false,
        reading(3, 660),
    )
    .await
    .unwrap();
    until(&mut ev07, WAIT, |p| matches!(p, Packet::PubAck(_)))
        .await
        .unwrap();
    // (The test's own publish to an unknown site, above, reaches it too.)
    let p = until(
        &mut gw_ev,
        WAIT,
        |p| matches!(p, Packet::Publish(m) if m.topic != "fire/v1/nosuch/n1/telemetry"),
    )
    .await
    .unwrap();
    assert_eq!(
        publish_on(&p, "fire/v1/home_a/n07/telemetry").map(|m| m.payload.to_vec()),
        Some(reading(3, 660)),
        "the gateway received something else first: {p:?}"
    );
    c07.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while ev07.poll().await.is_ok() {}
    })
    .await;

    // n07's persistent cmd subscription: a quorum queue on all three
    // brokers. Stop the broker holding its leader, publish a command
    // meanwhile, and n07 gets it when it comes back through haproxy.
    let queue = "mqtt-subscription-home_a.n07qos1";
    let (code, body) = cluster.mgmt(0, "GET", &format!("/api/queues/%2F/{queue}"), None);
    assert_eq!(code, 200, "{body}");
    let q: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(q["type"], "quorum", "{q}");
    assert_eq!(q["members"].as_array().map(Vec::len), Some(3), "{q}");
    let leader = q["leader"].as_str().unwrap().to_string();
    let down = cluster
        .nodes
        .iter()
        .position(|n| n.name == leader)
        .unwrap_or_else(|| panic!("leader {leader} is not one of ours"));
    let stop_started = Instant::now();
    cluster.stop_node(down);
    let stopped_in = stop_started.elapsed();

    let live = cluster.running();
    let (gw2, mut gw2_ev) = connect_retrying(
        cluster.nodes[live].mqtt_addr(),
        "fire-gateway-cmd",
        GATEWAY_USER,
        true,
    )
    .await;
    let cmd = br#"{"id":"c-42","op":"ping"}"#.to_vec();
    gw2.publish(
        "fire/v1/home_a/n07/cmd",
        QoS::AtLeastOnce,
        false,
        cmd.clone(),
    )
    .await
    .unwrap();
    until(&mut gw2_ev, WAIT, |p| matches!(p, Packet::PubAck(_)))
        .await
        .expect("PUBACK for the command with one broker down");

    let back = Instant::now();
    let (_c07, mut ev07) = connect_retrying(front, &n07.username, login07, false).await;
    let p = until(&mut ev07, WAIT, |p| {
        publish_on(p, "fire/v1/home_a/n07/cmd").is_some()
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the command did not reach n07 after {leader} stopped: {e}\n{}",
            proxy.log()
        )
    });
    assert_eq!(
        publish_on(&p, "fire/v1/home_a/n07/cmd")
            .unwrap()
            .payload
            .to_vec(),
        cmd
    );
    let cmd_after = back.elapsed();

    // The stopped broker rejoins.
    let restart = Instant::now();
    cluster.start_node(down);
    let rejoined_in = restart.elapsed();

    // Revoke n07 and sync: its user is gone, its login refused; n01 logs in.
    gateway::commissioning::registry::revoke(&store, &config, "home_a", "n07", CLI, 5)
        .await
        .unwrap();
    let report = sync(&store, cluster.nodes[cluster.running()].mgmt_url()).await;
    assert_eq!(report.deleted, ["home_a.n07"], "{report:?}");
    assert!(
        refused(&connect(front, &n07.username, Some(login07), false).await),
        "the revoked node still logs in"
    );
    let (c01, _ev01) =
        connect_retrying(front, &n01.username, (&n01.username, &n01.password), true).await;
    drop(c01);
    eprintln!(
        "timings: cluster up {cluster_up:?}; broker stop {stopped_in:?}; \
         cmd delivered {cmd_after:?} after reconnecting; broker rejoined {rejoined_in:?}; \
         test {:?}",
        started.elapsed()
    );
}

/// The management API's administrator in the harness.
fn rabbitmq_admin() -> (&'static str, &'static str) {
    e2e::rabbitmq::ADMIN
}
