//! (b) Every reading published reaches a real time-series DB
//! (VictoriaMetrics, through the InfluxDB v2 `/api/v2/write` API) with the
//! right measurement, tags, value and timestamp; and a TSDB outage loses
//! nothing: the sink holds the lines and retries.

use e2e::*;
use gateway::config::SinkConfig;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wire::{ChannelStatus, Quantity};

const T0: u64 = 1_764_000_000_000;

/// (series labels, timestamp ms) → value, from VictoriaMetrics' export.
async fn exported(vm: &VictoriaMetrics) -> BTreeMap<(String, String, String, String, u64), i64> {
    let mut out = BTreeMap::new();
    for s in vm
        .export(r#"{__name__=~"residual_current_value|temperature_value"}"#)
        .await
    {
        let m = &s["metric"];
        let label = |k: &str| m[k].as_str().unwrap_or_default().to_string();
        let values = s["values"].as_array().cloned().unwrap_or_default();
        let stamps = s["timestamps"].as_array().cloned().unwrap_or_default();
        for (v, t) in values.iter().zip(stamps.iter()) {
            out.insert(
                (
                    label("__name__"),
                    label("site"),
                    label("node"),
                    label("ch"),
                    t.as_u64().unwrap_or(0),
                ),
                v.as_f64().unwrap_or(f64::NAN) as i64,
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_reaches_victoria_metrics_through_an_outage() {
    let vm = VictoriaMetrics::start();
    let sink = SinkConfig {
        url: vm.url(),
        batch_size: 50,
        flush_interval_ms: 100,
        timeout_ms: 2000,
        retry_max_ms: 1000,
        ..Default::default()
    };
    let Stack {
        broker,
        config,
        gw,
        dir: _dir,
        token: _,
    } = stack(&[], "", |c| c.sink = Some(sink)).await;

    let users = node_users(&config);
    let mut expected = BTreeMap::new();
    let mut peers = Vec::new();
    for (user, pass) in users.iter().take(2) {
        let (site, node) = user.split_once('.').unwrap();
        let peer = MqttPeer::connect(broker.addr(), user, (user, pass), None).await;
        let topic = format!("fire/v1/{site}/{node}/telemetry");
        for seq in 0..150u32 {
            let ts = T0 + u64::from(seq) * 1000;
            let rc = 100 + (seq as i32 * 7) % 200;
            let t = 250 + (seq as i32 * 3) % 100;
            peer.publish(
                &topic,
                telemetry(
                    4,
                    seq,
                    ts,
                    &[
                        ("rc1", Quantity::ResidualCurrent, rc, ChannelStatus::Ok),
                        ("t1", Quantity::Temperature, t, ChannelStatus::Ok),
                    ],
                ),
                false,
            )
            .await;
            expected.insert(
                (
                    "residual_current_value".to_string(),
                    site.to_string(),
                    node.to_string(),
                    "rc1".to_string(),
                    ts,
                ),
                i64::from(rc),
            );
            expected.insert(
                (
                    "temperature_value".to_string(),
                    site.to_string(),
                    node.to_string(),
                    "t1".to_string(),
                    ts,
                ),
                i64::from(t),
            );
        }
        peers.push(peer);
    }
    wait_until(Duration::from_secs(30), "600 lines written", || {
        gw.metrics.sink_lines_written.load(Ordering::Relaxed) >= 600
    })
    .await;

    // Read back until VictoriaMetrics has made every point searchable.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut got = exported(&vm).await;
    while got.len() < expected.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        got = exported(&vm).await;
    }
    assert_eq!(got.len(), expected.len(), "points in the TSDB");
    assert_eq!(got, expected);
    assert_eq!(gw.metrics.sink_lines_dropped.load(Ordering::Relaxed), 0);
    let m = get_text(gw.http_addr, "/metrics").await;
    assert!(m.contains("gateway_sink_backlog_lines 0\n"), "{m}");

    // Outage: the TSDB goes away; readings keep coming; the sink holds them
    // and writes them all once a TSDB is back on the same address.
    let port = vm.port;
    drop(vm);
    let peer = &peers[0];
    let (site, node) = users[0].0.split_once('.').unwrap();
    let topic = format!("fire/v1/{site}/{node}/telemetry");
    for seq in 150..200u32 {
        peer.publish(
            &topic,
            telemetry(
                4,
                seq,
                T0 + u64::from(seq) * 1000,
                &[("rc1", Quantity::ResidualCurrent, 111, ChannelStatus::Ok)],
            ),
            false,
        )
        .await;
    }
    wait_until(Duration::from_secs(20), "a failed write", || {
        gw.metrics.sink_write_errors.load(Ordering::Relaxed) > 0
    })
    .await;
    wait_until(Duration::from_secs(20), "50 lines held", || {
        gw.metrics.sink_backlog.load(Ordering::Relaxed) == 50
    })
    .await;
    let vm2 = VictoriaMetrics::start_on(port);
    wait_until(Duration::from_secs(60), "the backlog written", || {
        gw.metrics.sink_backlog.load(Ordering::Relaxed) == 0
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut after = exported(&vm2).await;
    while after.len() < 50 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = exported(&vm2).await;
    }
    assert_eq!(after.len(), 50, "readings written after the outage");
    assert!(after.values().all(|v| *v == 111));
    assert_eq!(gw.metrics.sink_lines_dropped.load(Ordering::Relaxed), 0);

    // Shutdown flushes what the sink holds: readings handled just before
    // the stop are in the TSDB afterwards.
    for seq in 200..220u32 {
        peer.publish(
            &topic,
            telemetry(
                4,
                seq,
                T0 + u64::from(seq) * 1000,
                &[("rc1", Quantity::ResidualCurrent, 222, ChannelStatus::Ok)],
            ),
            false,
        )
        .await;
    }
    wait_until(Duration::from_secs(20), "20 more readings handled", || {
        gw.metrics.readings_accepted.load(Ordering::Relaxed) >= 670
    })
    .await;
    let metrics = gw.metrics.clone();
    gw.shutdown().await;
    assert_eq!(
        metrics.sink_backlog.load(Ordering::Relaxed),
        0,
        "nothing left unwritten"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut flushed = exported(&vm2).await;
    while flushed.len() < 70 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        flushed = exported(&vm2).await;
    }
    assert_eq!(
        flushed.values().filter(|v| **v == 222).count(),
        20,
        "flushed on shutdown"
    );
}
