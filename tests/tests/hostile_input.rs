//! (c) Hostile input on the broker — malformed payloads, wrong topics, an
//! unknown node, oversized messages, a flood of garbage — while valid
//! telemetry keeps flowing: the gateway stays up, every valid reading
//! arrives, and every drop is counted by its reason in `/metrics`.

use e2e::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wire::{ChannelStatus, Quantity};

/// A peer allowed to publish anywhere under fire/v1, to reach the gateway
/// with what a node's ACL would stop.
const FUZZER: (&str, &str) = ("fuzzer", "fuzz-secret");

fn reading(id: &str, q: &str, v: &str, s: &str) -> Vec<u8> {
    format!(r#"{{"boot":1,"seq":1,"ts":0,"ch":[{{"id":"{id}","q":"{q}","v":{v},"s":"{s}"}}]}}"#)
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_by_reason_and_valid_telemetry_keeps_flowing() {
    let Stack {
        broker,
        config,
        gw,
        dir: _dir,
        token: _,
    } = stack(
        &[FUZZER],
        "user fuzzer
topic write fire/v1/#
",
        |_| {},
    )
    .await;
    wait_until(Duration::from_secs(20), "gateway connected", || {
        gw.metrics.mqtt_connections.load(Ordering::Relaxed) > 0
    })
    .await;

    let users = node_users(&config);
    let (user, pass) = &users[0];
    let node = MqttPeer::connect(broker.addr(), user, (user, pass), None).await;
    let fuzzer = MqttPeer::connect(broker.addr(), "fuzzer-1", FUZZER, None).await;

    let good = "fire/v1/home_a/n01/telemetry";
    // (topic, payload, expected drop reason), each sent `rounds` times.
    let mut big = br#"{"boot":1,"seq":1,"ts":0,"ch":[],"pad":""#.to_vec();
    big.resize(70 * 1024, b'x');
    let too_many = format!(
        r#"{{"boot":1,"seq":1,"ts":0,"ch":[{}]}}"#,
        vec![r#"{"id":"c","q":"temperature","v":1,"s":"ok"}"#; 33].join(",")
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (good, b"{not json".to_vec(), "bad_json"),
        (good, vec![0xff, 0xfe, 0xfd], "bad_json"),
        (good, br#"{"boot":1}"#.to_vec(), "bad_schema"),
        (
            good,
            reading("rc1", "plasma", "1", "ok"),
            "unknown_quantity",
        ),
        (
            good,
            reading("RC-1", "residual_current", "1", "ok"),
            "bad_id",
        ),
        (
            good,
            reading("rc1", "residual_current", "4294967296", "ok"),
            "out_of_range",
        ),
        (
            good,
            reading("rc1", "residual_current", "1", "melted"),
            "unknown_name",
        ),
        (good, too_many.into_bytes(), "too_many_channels"),
        (good, big, "too_large"),
        (
            "fire/v1/home_a/n01/telemetry/extra",
            reading("rc1", "residual_current", "1", "ok"),
            "bad_topic",
        ),
        (
            "fire/v1/Home A/n01/telemetry",
            reading("rc1", "residual_current", "1", "ok"),
            "bad_topic",
        ),
        ("fire/v1/home_a/n01/gossip", b"{}".to_vec(), "bad_topic"),
        (
            "fire/v1/home_a/n99/telemetry",
            reading("rc1", "residual_current", "900", "ok"),
            "unknown_node",
        ),
        (
            "fire/v1/nowhere/n01/status",
            br#"{"state":"online"}"#.to_vec(),
            "unknown_node",
        ),
    ];
    let rounds = 150u32; // 14 × 150 = 2100 garbage messages
    let mut sent_good = 0u32;
    for round in 0..rounds {
        for (topic, payload, _) in &cases {
            fuzzer.publish(topic, payload.clone(), false).await;
        }
        // Valid telemetry, interleaved with the flood.
        node.publish(
            good,
            telemetry(
                9,
                round,
                0,
                &[
                    ("rc1", Quantity::ResidualCurrent, 150, ChannelStatus::Ok),
                    ("t1", Quantity::Temperature, 300, ChannelStatus::Ok),
                ],
            ),
            false,
        )
        .await;
        sent_good += 1;
    }
    // Redelivered valid messages are duplicates, not new readings.
    for seq in 0..10 {
        node.publish(
            good,
            telemetry(
                9,
                seq,
                0,
                &[("rc1", Quantity::ResidualCurrent, 150, ChannelStatus::Ok)],
            ),
            false,
        )
        .await;
    }
    let total = u64::from(rounds) * cases.len() as u64 + u64::from(sent_good) + 10;
    wait_until(Duration::from_secs(60), "every message handled", || {
        gw.metrics.messages_received.load(Ordering::Relaxed) >= total
    })
    .await;

    assert_eq!(
        gw.metrics.readings_accepted.load(Ordering::Relaxed),
        u64::from(sent_good) * 2,
        "every valid reading arrived"
    );
    let mut want = std::collections::BTreeMap::<&str, u64>::new();
    for (_, _, reason) in &cases {
        *want.entry(reason).or_default() += u64::from(rounds);
    }
    want.insert("duplicate", 10);
    let metrics = get_text(gw.http_addr, "/metrics").await;
    for (reason, n) in &want {
        let line = format!("gateway_messages_dropped_total{{reason=\"{reason}\"}} {n}\n");
        assert!(metrics.contains(&line), "expected {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("gateway_seq_gaps_total 0\n"), "{metrics}");
    // Nothing from the garbage raised an alarm or a ticket.
    assert_eq!(gw.metrics.alarms_raised.load(Ordering::Relaxed), 0);
    assert_eq!(gw.metrics.tickets_opened.load(Ordering::Relaxed), 0);
    let health = get_json(gw.http_addr, None, "/healthz").await;
    assert_eq!(health["status"], "ok");
    gw.shutdown().await;
}
