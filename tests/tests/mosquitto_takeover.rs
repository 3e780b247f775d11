//! Issue 14's session takeover, on a real Mosquitto running the deployment's
//! `mosquitto.conf`: a login with valid node credentials but the gateway's
//! client id (clean session off, subscribing to everything) must neither
//! knock the gateway off nor take its session. `use_username_as_clientid
//! true` makes the attacker's client id its username, so the gateway stays
//! connected and receives every message a node sends meanwhile.

use e2e::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wire::{ChannelStatus::Ok as OK, Quantity::ResidualCurrent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_the_gateways_client_id_takes_nothing_from_it() {
    let Stack {
        broker,
        config,
        gw,
        dir: _dir,
        token: _token,
    } = stack(&[], "", |_| {}).await;
    let users = node_users(&config);
    let (n01, n01_pw) = &users[0];
    let (n02, n02_pw) = &users[1];
    assert_eq!((n01.as_str(), n02.as_str()), ("home_a.n01", "home_a.n02"));
    let node = MqttPeer::connect(broker.addr(), n01, (n01, n01_pw), None).await;

    let mut attackers = Vec::new();
    let stolen = Arc::new(AtomicU64::new(0));
    for seq in 0..20u32 {
        if seq % 4 == 0 {
            // Another node's valid login, the gateway's client id, the
            // gateway's subscription.
            let mut o = MqttOptions::new(
                config.mqtt.client_id.clone(),
                broker.addr().ip().to_string(),
                broker.addr().port(),
            );
            o.set_clean_session(false)
                .set_credentials(n02.clone(), n02_pw.clone())
                .set_keep_alive(Duration::from_secs(5));
            let (client, mut ev) = AsyncClient::new(o, 100);
            client
                .subscribe("fire/v1/#", QoS::AtLeastOnce)
                .await
                .unwrap();
            let stolen = stolen.clone();
            attackers.push((
                client,
                tokio::spawn(async move {
                    loop {
                        match ev.poll().await {
                            Ok(Event::Incoming(Packet::Publish(_))) => {
                                stolen.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(_) => {}
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                }),
            ));
        }
        node.publish(
            "fire/v1/home_a/n01/telemetry",
            telemetry(
                5,
                seq,
                1_764_000_000_000 + u64::from(seq) * 1000,
                &[("rc1", ResidualCurrent, 100, OK)],
            ),
            false,
        )
        .await;
    }
    let m = gw.metrics.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while m.messages_received.load(Ordering::Relaxed) < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway received {} of 20 messages, connected {} times; node acked {}; Mosquitto:\n{}",
            m.messages_received.load(Ordering::Relaxed),
            m.mqtt_connections.load(Ordering::Relaxed),
            node.acked.load(Ordering::SeqCst),
            broker.log(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(m.messages_received.load(Ordering::Relaxed), 20);
    assert_eq!(
        m.mqtt_connections.load(Ordering::Relaxed),
        1,
        "the gateway was knocked off its session"
    );
    assert_eq!(
        stolen.load(Ordering::SeqCst),
        0,
        "the attacker received messages"
    );
    for (_, task) in attackers {
        task.abort();
    }
    node.disconnect().await;
}
