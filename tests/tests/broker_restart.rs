//! (d) The broker is restarted mid-stream: nothing a node published with
//! QoS 1 is lost. Node and gateway both hold persistent sessions with fixed
//! client ids; Mosquitto persists sessions and queued messages; what was in
//! flight is resent after the restart and de-duplicated by the gateway.

use e2e::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wire::{ChannelStatus, Quantity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_no_qos1_reading() {
    let Stack {
        mut broker,
        config,
        gw,
        dir: _dir,
        token: _,
    } = stack(&[], "", |_| {}).await;
    wait_until(Duration::from_secs(20), "gateway connected", || {
        gw.metrics.mqtt_connections.load(Ordering::Relaxed) > 0
    })
    .await;

    let users = node_users(&config);
    let nodes: Vec<(String, MqttPeer)> = {
        let mut v = Vec::new();
        for (user, pass) in users.iter().take(2) {
            let (site, node) = user.split_once('.').unwrap();
            v.push((
                format!("fire/v1/{site}/{node}/telemetry"),
                MqttPeer::connect(broker.addr(), user, (user, pass), None).await,
            ));
        }
        v
    };
    let per_node = 400u32;
    let reading = |seq: u32| {
        telemetry(
            2,
            seq,
            0,
            &[(
                "rc1",
                Quantity::ResidualCurrent,
                100 + (seq % 50) as i32,
                ChannelStatus::Ok,
            )],
        )
    };

    for seq in 0..per_node {
        for (topic, peer) in &nodes {
            peer.publish(topic, reading(seq), false).await;
        }
        if seq == per_node / 4 {
            // Stop the broker with messages in flight; keep publishing
            // while it is down (the clients queue), then bring it back.
            broker.stop();
        }
        if seq == per_node / 2 {
            broker.start_again();
        }
        if seq % 20 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let total = u64::from(per_node) * nodes.len() as u64;
    for (_, peer) in &nodes {
        peer.wait_acked(u64::from(per_node), Duration::from_secs(60))
            .await;
    }
    wait_until(Duration::from_secs(60), "every reading accepted", || {
        gw.metrics.readings_accepted.load(Ordering::Relaxed) >= total
    })
    .await;
    assert_eq!(
        gw.metrics.readings_accepted.load(Ordering::Relaxed),
        total,
        "each reading exactly once"
    );
    assert!(
        gw.metrics.mqtt_connections.load(Ordering::Relaxed) >= 2,
        "the gateway reconnected"
    );
    let m = get_text(gw.http_addr, "/metrics").await;
    let dup_line = m
        .lines()
        .find(|l| l.starts_with("gateway_messages_dropped_total{reason=\"duplicate\"}"))
        .unwrap_or("");
    eprintln!(
        "after the restart: {dup_line}; {}",
        m.lines()
            .find(|l| l.starts_with("gateway_seq_gaps_total"))
            .unwrap_or("")
    );
    gw.shutdown().await;
}
