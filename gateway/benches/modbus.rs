//! Modbus polling benchmark (`cargo bench -p gateway --bench modbus`):
//! devices polled per second against the in-process Modbus TCP server.
//!
//! 100 simulated AIM-R100-style 12-loop monitors (one merged 13-register
//! read each) behind 4 TCP connections of 25 devices, polled back to back
//! (period 0) for 5 s by the gateway's own poller; a poll counts when its
//! telemetry message reaches the pipeline's channel. Server and poller share
//! one 2-thread runtime, so the figure is the whole round trip on this
//! machine. Prints one JSON line.

use gateway::ingest::modbus::config::{Connection, Device, Transport};
use gateway::ingest::modbus::map::shipped;
use gateway::ingest::modbus::poll::{run_connection, Poller};
use gateway::ingest::modbus::sim::{serve_tcp, Simulator};
use gateway::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use wire::{ChannelId, NodeId, SiteId};

const CONNECTIONS: usize = 4;
const DEVICES_PER_CONNECTION: usize = 25;
const SECS: u64 = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let map = Arc::new(shipped("aim_r100").expect("shipped map"));
    // Pollers stop before the servers, so no request is cut off mid-way.
    let stop = CancellationToken::new();
    let servers_stop = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(10_000);
    let metrics = Arc::new(Metrics::default());
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let sim = Simulator::new();
        let mut devices = Vec::new();
        for d in 0..DEVICES_PER_CONNECTION {
            let unit = (d + 1) as u8;
            sim.add(unit, map.clone());
            for i in 1..=12 {
                sim.set(unit, &format!("rc{i}"), 100 + i);
            }
            devices.push(Device {
                site: SiteId::new("bench").expect("id"),
                node: NodeId::new(&format!("c{c}d{d}")).expect("id"),
                unit,
                map: map.clone(),
                interval: Duration::ZERO,
                skip: Vec::<ChannelId>::new(),
                rename: Default::default(),
            });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve_tcp(listener, sim, servers_stop.clone()));
        tasks.push(tokio::spawn(run_connection(Poller {
            connection: Connection {
                name: format!("bench[{c}]"),
                transport: Transport::Tcp {
                    address: addr.to_string(),
                },
                timeout: Duration::from_secs(1),
                retries: 0,
                backoff: Duration::ZERO,
                offline_after_failures: 3,
                devices,
            },
            tx: tx.clone(),
            metrics: metrics.clone(),
            shutdown: stop.clone(),
            boot: 1,
        })));
    }
    drop(tx);
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SECS);
    let (mut polls, mut other) = (0u64, 0u64);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) if m.topic.ends_with("/telemetry") => polls += 1,
            Ok(Some(_)) => other += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    stop.cancel();
    drop(rx);
    for t in tasks {
        let _ = t.await;
    }
    servers_stop.cancel();
    let text = metrics.render();
    let errors: u64 = text
        .lines()
        .filter(|l| l.starts_with("gateway_modbus_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    println!(
        "{{\"bench\":\"modbus_poll\",\"devices\":{},\"connections\":{CONNECTIONS},\"registers_per_poll\":13,\"secs\":{secs:.2},\"polls\":{polls},\"devices_polled_per_sec\":{:.0},\"status_messages\":{other},\"errors\":{errors}}}",
        CONNECTIONS * DEVICES_PER_CONNECTION,
        polls as f64 / secs
    );
}
