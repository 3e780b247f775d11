//! Sustained ingest benchmark: MQTT → gateway → VictoriaMetrics with the
//! disk spool on (`cargo run --release -p e2e --bin ingest-load`).
//!
//! Real Mosquitto and VictoriaMetrics processes on loopback, the gateway
//! in this process (as the e2e tests run it). Three nodes publish QoS 1
//! telemetry of 32 channels each (`--channels N`) as fast as the broker takes it, a fixed
//! number of messages (`--messages N` per node, default 8000), bounded in
//! time (`--deadline-secs`, default 180). Measured: readings per second from the first publish
//! until the TSDB has acknowledged the last line, the gateway's handle→ack
//! delay (p50/p99), fsync latency, and CPU seconds per process, which show
//! what bounds the figure. Prints one JSON line.

use e2e::*;
use gateway::config::SinkConfig;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wire::{ChannelStatus, Quantity};

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
    let arg = |name: &str, default: u32| -> u32 {
        std::env::args()
            .skip_while(|a| a != name)
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let messages = arg("--messages", 8000);
    let channels = arg("--channels", 32).clamp(1, 32) as usize;
    let deadline = Duration::from_secs(u64::from(arg("--deadline-secs", 180).min(600)));
    // `--no-sink`: the same ingest without the sink and spool (acks right
    // after handling), to show what the spool costs.
    let with_sink = !std::env::args().any(|a| a == "--no-sink");
    let vm = VictoriaMetrics::start();
    let sink = with_sink.then(|| SinkConfig {
        url: vm.url(),
        batch_size: 5000,
        flush_interval_ms: 200,
        ..Default::default()
    });
    let Stack {
        broker,
        config,
        gw,
        dir: _dir,
        token: _,
    } = stack(&[], "", |c| c.sink = sink).await;
    let users = node_users(&config);
    let nodes = users.len();
    let mut peers = Vec::new();
    for (user, pass) in &users {
        let (site, node) = user.split_once('.').expect("site.node");
        let peer = MqttPeer::connect(broker.addr(), user, (user, pass), None).await;
        peers.push((peer, format!("fire/v1/{site}/{node}/telemetry")));
    }
    // Payloads made before the clock starts.
    let ids: Vec<String> = (0..channels).map(|i| format!("rc{i}")).collect();
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
    let total_lines = u64::from(messages) * nodes as u64 * channels as u64;

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
    let mut acked_at = None;
    let done = || {
        if with_sink {
            m.sink_lines_written.load(Ordering::Relaxed)
        } else {
            m.readings_accepted.load(Ordering::Relaxed)
        }
    };
    loop {
        let acked = if with_sink {
            m.ack_delay.count()
        } else {
            m.messages_received.load(Ordering::Relaxed)
        };
        if acked_at.is_none() && acked >= u64::from(messages) * nodes as u64 {
            acked_at = Some(t0.elapsed());
        }
        if done() >= total_lines {
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
    let written = done();
    let acked_secs = acked_at.map_or(elapsed, |d| d.as_secs_f64());
    let total_cpu = cpu.0 + cpu.1 + cpu.2;
    // The machine's run queue over the last minute: other work on the
    // shared cores counts too.
    let loadavg: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    // 80 % of the 2 cores in use by our processes counts as CPU-bound:
    // scheduling and the flusher's fsync waits take the rest.
    let bound = if total_cpu / elapsed >= 1.6 {
        "cpu: the benchmark's processes keep both cores busy (cpu_secs: gateway with publishers, broker, TSDB)"
    } else if loadavg >= 1.9 {
        "cpu: both cores busy, other work on the machine included (see loadavg_1m)"
    } else if with_sink {
        "waiting: acks wait for group commit, and the broker sends at most its in-flight window unacknowledged"
    } else {
        "waiting: broker round trips"
    };
    println!(
        "{{\"bench\":\"ingest\",\"sink_and_spool\":{with_sink},\"nodes\":{nodes},\"channels_per_message\":{channels},\"readings\":{written},\"secs\":{elapsed:.2},\"readings_per_sec\":{:.0},\"acked_readings_per_sec\":{:.0},\"ack_p50_us\":{},\"ack_p99_us\":{},\"fsync_p50_us\":{},\"fsync_p99_us\":{},\"fsyncs\":{},\"cpu_secs\":{{\"gateway_and_publishers\":{:.1},\"mosquitto\":{:.1},\"victoria_metrics\":{:.1}}},\"cores_busy\":{:.2},\"loadavg_1m\":{loadavg},\"bound\":\"{bound}\",\"acked_messages\":{},\"spooled_lines\":{},\"write_errors\":{},\"lines_dropped\":{},\"messages_received\":{},\"duplicates\":{},\"mqtt_connections\":{},\"late_readings\":{},\"ack_failures\":{}}}",
        written as f64 / elapsed,
        (u64::from(messages) * nodes as u64 * channels as u64) as f64 / acked_secs,
        m.ack_delay.quantile_us(0.5),
        m.ack_delay.quantile_us(0.99),
        m.spool_fsync.quantile_us(0.5),
        m.spool_fsync.quantile_us(0.99),
        m.spool_fsync.count(),
        cpu.0,
        cpu.1,
        cpu.2,
        total_cpu / elapsed,
        m.ack_delay.count(),
        m.spool_lines_appended.load(Ordering::Relaxed),
        m.sink_write_errors.load(Ordering::Relaxed),
        m.sink_lines_dropped.load(Ordering::Relaxed),
        m.messages_received.load(Ordering::Relaxed),
        m.dropped("duplicate"),
        m.mqtt_connections.load(Ordering::Relaxed),
        m.readings_late.load(Ordering::Relaxed),
        m.mqtt_ack_failures.load(Ordering::Relaxed),
    );
    eprintln!("--- mosquitto log (tail) ---");
    let log = broker.log();
    for l in log
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        eprintln!("{l}");
    }
    for t in tasks {
        if let Ok(peer) = t.await {
            peer.disconnect().await;
        }
    }
    gw.shutdown().await;
}
