//! Sustained ingest benchmark: MQTT → gateway → VictoriaMetrics with the
//! disk spool on (`cargo run --release -p e2e --bin ingest-load`).
//!
//! Real Mosquitto and VictoriaMetrics processes on loopback, the gateway
//! in this process (as the e2e tests run it). Three nodes publish QoS 1
//! telemetry of 32 channels each as fast as the broker takes it, a fixed
//! number of messages (`--messages N` per node, default 8000), bounded in
//! time (3 minutes). Measured: readings per second from the first publish
//! until the TSDB has acknowledged the last line, the gateway's handle→ack
//! delay (p50/p99), fsync latency, and CPU seconds per process, which show
//! what bounds the figure. Prints one JSON line.

use e2e::*;
use gateway::config::SinkConfig;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wire::{ChannelStatus, Quantity};

const CHANNELS: usize = 32;
const T0: u64 = 1_764_000_000_000;

/// CPU seconds (user + system) of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime are fields 14 and 15 of stat: 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let messages: u32 = std::env::args()
        .skip_while(|a| a != "--messages")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(8000);
    let vm = VictoriaMetrics::start();
    let sink = SinkConfig {
        url: vm.url(),
        batch_size: 5000,
        flush_interval_ms: 200,
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
    let nodes = users.len();
    let mut peers = Vec::new();
    for (user, pass) in &users {
        let (site, node) = user.split_once('.').expect("site.node");
        let peer = MqttPeer::connect(broker.addr(), user, (user, pass), None).await;
        peers.push((peer, format!("fire/v1/{site}/{node}/telemetry")));
    }
    // Payloads made before the clock starts.
    let ids: Vec<String> = (0..CHANNELS).map(|i| format!("rc{i}")).collect();
    let payload = |seq: u32| {
        let readings: Vec<(&str, Quantity, i32, ChannelStatus)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    id.as_str(),
                    Quantity::ResidualCurrent,
                    50 + ((seq as usize + i) % 100) as i32,
                    ChannelStatus::Ok,
                )
            })
            .collect();
        telemetry(9, seq, T0 + u64::from(seq) * 1000, &readings)
    };
    let payloads: Vec<Vec<u8>> = (0..messages).map(payload).collect();
    let total_lines = u64::from(messages) * nodes as u64 * CHANNELS as u64;

    let pid = std::process::id();
    let (bpid, vpid) = (broker.pid().unwrap_or(0), vm.pid().unwrap_or(0));
    let cpu0 = (cpu_secs(pid), cpu_secs(bpid), cpu_secs(vpid));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (peer, topic) in peers {
        let payloads = payloads.clone();
        tasks.push(tokio::spawn(async move {
            for p in payloads {
                peer.publish(&topic, p, false).await;
            }
            peer
        }));
    }
    let m = gw.metrics.clone();
    let deadline = Duration::from_secs(180);
    let mut acked_at = None;
    loop {
        let acked = m.ack_delay.count();
        if acked_at.is_none() && acked >= u64::from(messages) * nodes as u64 {
            acked_at = Some(t0.elapsed());
        }
        if m.sink_lines_written.load(Ordering::Relaxed) >= total_lines {
            break;
        }
        if t0.elapsed() > deadline {
            eprintln!(
                "deadline: {} of {total_lines} lines written",
                m.sink_lines_written.load(Ordering::Relaxed)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (
        cpu_secs(pid) - cpu0.0,
        cpu_secs(bpid) - cpu0.1,
        cpu_secs(vpid) - cpu0.2,
    );
    let written = m.sink_lines_written.load(Ordering::Relaxed);
    let acked_secs = acked_at.map_or(elapsed, |d| d.as_secs_f64());
    let total_cpu = cpu.0 + cpu.1 + cpu.2;
    let bound = if total_cpu / elapsed > 1.8 {
        "cpu: both cores busy (see cpu_secs per process)"
    } else if cpu.0 / elapsed > 0.9 {
        "cpu: the gateway process (pipeline task) on one core"
    } else {
        "not cpu: waiting (acks / fsync / broker inflight window)"
    };
    println!(
        "{{\"bench\":\"ingest\",\"nodes\":{nodes},\"channels_per_message\":{CHANNELS},\"readings\":{written},\"secs\":{elapsed:.2},\"readings_per_sec\":{:.0},\"acked_readings_per_sec\":{:.0},\"ack_p50_us\":{},\"ack_p99_us\":{},\"fsync_p50_us\":{},\"fsync_p99_us\":{},\"fsyncs\":{},\"cpu_secs\":{{\"gateway_and_publishers\":{:.1},\"mosquitto\":{:.1},\"victoria_metrics\":{:.1}}},\"cores_busy\":{:.2},\"bound\":\"{bound}\"}}",
        written as f64 / elapsed,
        (u64::from(messages) * nodes as u64 * CHANNELS as u64) as f64 / acked_secs,
        m.ack_delay.quantile_us(0.5),
        m.ack_delay.quantile_us(0.99),
        m.spool_fsync.quantile_us(0.5),
        m.spool_fsync.quantile_us(0.99),
        m.spool_fsync.count(),
        cpu.0,
        cpu.1,
        cpu.2,
        total_cpu / elapsed,
    );
    for t in tasks {
        if let Ok(peer) = t.await {
            peer.disconnect().await;
        }
    }
    gw.shutdown().await;
}
