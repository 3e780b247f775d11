//! Cluster benchmark (issue 16): gateway replicas on a real three-node
//! RabbitMQ cluster, PostgreSQL and VictoriaMetrics, all on this machine.
//! `cargo build --release -p e2e --bins && target/release/cluster-load`
//! (the replicas are the `gateway-under-test` binary beside this one).
//! Prints one JSON line per run. Not a timed test.
//!
//! - **Throughput** (`--replicas 1,2,3`): `--nodes` (100) nodes in 10
//!   sites, one MQTT connection each spread over the three brokers, QoS 1,
//!   each message a normal-day telemetry payload with two readings (rc1,
//!   t1); each node publishes `--messages` (500) as fast as its in-flight
//!   window allows. Measured from the first publish until the replicas
//!   together have acknowledged every message (`gateway_messages_acked_total`
//!   summed over their `/metrics`): msg/s, and CPU seconds per process
//!   (each replica, the three RabbitMQ nodes, PostgreSQL, VictoriaMetrics,
//!   and this process, which runs the publishers).
//! - **Failover** (`--kills` 10, two replicas): the nodes publish a light
//!   load (one message a second each) while the replica holding the
//!   partitions is killed with SIGKILL, `--kills` times (started again
//!   after each, as its supervisor would); each time, from the kill until
//!   every partition with a site is held by the other replica
//!   (`partition_epoch`).

use e2e::rabbitmq::{RabbitCluster, ADMIN};
use e2e::*;
use gateway::ingest::rabbitmq::{partition_of, PARTITIONS};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{ChannelStatus::Ok as OK, Quantity};

struct Args {
    replicas: Vec<usize>,
    nodes: usize,
    messages: u32,
    kills: usize,
}

fn args() -> Args {
    let mut a = Args {
        replicas: vec![1, 2, 3],
        nodes: 100,
        messages: 500,
        kills: 10,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--replicas" => {
                a.replicas = v
                    .split(',')
                    .filter_map(|x| x.parse().ok())
                    .filter(|&n| (1..=3).contains(&n))
                    .collect()
            }
            "--nodes" => a.nodes = v.parse().unwrap_or(a.nodes),
            "--messages" => a.messages = v.parse().unwrap_or(a.messages),
            "--kills" => a.kills = v.parse().unwrap_or(a.kills),
            "--help" | "-h" => {
                eprintln!(
                    "cluster-load [--replicas 1,2,3] [--nodes 100] [--messages 500] [--kills 10]"
                );
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other}; see --help");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

/// CPU seconds (user + system) of `pid` and every process below it.
fn tree_cpu_secs(pid: u32) -> f64 {
    let mut parent: BTreeMap<u32, u32> = BTreeMap::new();
    let mut cpu: BTreeMap<u32, f64> = BTreeMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        parent.insert(p, num(1) as u32);
        cpu.insert(p, (num(11) + num(12)) / 100.0);
    }
    let mut total = 0.0;
    for (&p, &c) in &cpu {
        let mut q = p;
        for _ in 0..64 {
            if q == pid {
                total += c;
                break;
            }
            match parent.get(&q) {
                Some(&pp) if pp != 0 && pp != q => q = pp,
                _ => break,
            }
        }
    }
    total
}

fn sites(nodes: usize) -> Vec<(String, Vec<String>)> {
    let per = nodes.div_ceil(10).max(1);
    (0..10)
        .map(|s| {
            let ids = (0..per)
                .filter(|n| s * per + n < nodes)
                .map(|n| format!("n{:02}", n + 1))
                .collect();
            (format!("site_{s:02}"), ids)
        })
        .filter(|(_, ids): &(String, Vec<String>)| !ids.is_empty())
        .collect()
}

struct Bench {
    cluster: RabbitCluster,
    pg: Postgres,
    vm: VictoriaMetrics,
    bin: PathBuf,
    sites: Vec<(String, Vec<String>)>,
}

struct Replica {
    gw: GatewayProcess,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn replica(&self, name: &str, broker: usize) -> Replica {
        let dir = tempfile::tempdir().expect("temp dir");
        let http = free_port();
        let path = dir.path().join("gateway.toml");
        let db = self.pg.url();
        let vm = self.vm.url();
        let toml = ReplicaToml {
            name,
            http,
            dir: dir.path(),
            db: &db,
            mqtt: self.cluster.nodes[broker].mqtt_port,
            amqp: self.cluster.nodes[broker].amqp_port,
            login: ADMIN,
            vm: Some(&vm),
            sites: &self.sites,
        };
        std::fs::write(&path, toml.text()).expect("config");
        let gw = GatewayProcess::spawn(
            &self.bin,
            &path,
            SocketAddr::from(([127, 0, 0, 1], http)),
            &dir.path().join("gateway.log"),
        );
        Replica { gw, _dir: dir }
    }

    async fn until_consuming(&self, r: &Replica, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while r
            .gw
            .log()
            .matches("consuming the ingest partitions")
            .count()
            < times
        {
            assert!(
                Instant::now() < deadline,
                "replica not consuming:\n{}",
                r.gw.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn peers(&self) -> Vec<(String, MqttPeer)> {
        let mut out = Vec::new();
        let mut i = 0;
        for (site, nodes) in &self.sites {
            for n in nodes {
                let id = format!("{site}.{n}");
                let broker = self.cluster.nodes[i % 3].mqtt_addr();
                out.push((
                    format!("fire/v1/{site}/{n}/telemetry"),
                    MqttPeer::connect(broker, &id, ADMIN, None).await,
                ));
                i += 1;
            }
        }
        out
    }

    fn cpu(&self, replicas: &[Replica]) -> serde_json::Value {
        let r: Vec<f64> = replicas
            .iter()
            .map(|r| r.gw.pid().map(tree_cpu_secs).unwrap_or(0.0))
            .collect();
        let rabbit: Vec<f64> = self
            .cluster
            .nodes
            .iter()
            .map(|n| n.pid().map(tree_cpu_secs).unwrap_or(0.0))
            .collect();
        let pg: f64 = self.pg.pids().into_iter().map(tree_cpu_secs).sum();
        json!({
            "replicas": r,
            "rabbitmq_nodes": rabbit,
            "postgres": pg,
            "victoria_metrics": self.vm.pid().map(tree_cpu_secs).unwrap_or(0.0),
            "publishers_this_process": tree_cpu_secs(std::process::id()),
        })
    }
}

fn diff(after: &serde_json::Value, before: &serde_json::Value) -> serde_json::Value {
    match (after, before) {
        (serde_json::Value::Number(a), serde_json::Value::Number(b)) => {
            json!(((a.as_f64().unwrap_or(0.0) - b.as_f64().unwrap_or(0.0)) * 100.0).round() / 100.0)
        }
        (serde_json::Value::Array(a), serde_json::Value::Array(b)) => {
            serde_json::Value::Array(a.iter().zip(b).map(|(x, y)| diff(x, y)).collect())
        }
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => a
            .iter()
            .map(|(k, v)| (k.clone(), diff(v, b.get(k).unwrap_or(&json!(0.0)))))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        (a, _) => a.clone(),
    }
}

async fn acked(replicas: &[Replica]) -> f64 {
    let mut sum = 0.0;
    for r in replicas {
        sum +=
            r.gw.metric("gateway_messages_acked_total")
                .await
                .unwrap_or(0.0);
    }
    sum
}

async fn throughput(b: &Bench, n: usize, a: &Args) {
    let replicas: Vec<Replica> = (0..n)
        .map(|i| b.replica(&format!("gw{}-of-{n}", i + 1), i % 3))
        .collect();
    for r in &replicas {
        b.until_consuming(r, 1).await;
    }
    let peers = b.peers().await;
    let total = peers.len() as u64 * u64::from(a.messages);
    let base = acked(&replicas).await;
    let cpu0 = b.cpu(&replicas);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (k, (topic, peer)) in peers.into_iter().enumerate() {
        let messages = a.messages;
        tasks.push(tokio::spawn(async move {
            for seq in 0..messages {
                let leak = 20 + (k % 60) as i32 + (seq % 11) as i32 - 5;
                let payload = telemetry(
                    1,
                    seq,
                    0,
                    &[
                        ("rc1", Quantity::ResidualCurrent, leak, OK),
                        ("t1", Quantity::Temperature, 250 + (seq % 5) as i32, OK),
                    ],
                );
                peer.publish(&topic, payload, false).await;
            }
            peer
        }));
    }
    let deadline = t0 + Duration::from_secs(600);
    let done = loop {
        let got = acked(&replicas).await - base;
        if got >= total as f64 {
            break Some(t0.elapsed());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cpu = diff(&b.cpu(&replicas), &cpu0);
    let secs = done.map(|d| d.as_secs_f64());
    let mut held = Vec::new();
    for r in &replicas {
        held.push(
            r.gw.metric("gateway_cluster_partitions_held")
                .await
                .unwrap_or(0.0),
        );
    }
    println!(
        "{}",
        json!({
            "bench": "cluster",
            "replicas": n,
            "nodes": b.sites.iter().map(|(_, n)| n.len()).sum::<usize>(),
            "messages": total,
            "readings_per_message": 2,
            "complete": done.is_some(),
            "secs": secs,
            "msg_per_sec": secs.map(|s| (total as f64 / s).round()),
            "cpu_secs": cpu,
            "partitions_held": held,
        })
    );
    for t in tasks {
        if let Ok(p) = t.await {
            p.disconnect().await;
        }
    }
    for mut r in replicas {
        r.gw.stop();
    }
}

async fn failover(b: &Bench, a: &Args) {
    let store = gateway::store::Store::open(&b.pg.url())
        .await
        .expect("store");
    let mut reps = [b.replica("fo-a", 0), b.replica("fo-b", 1)];
    for r in &reps {
        b.until_consuming(r, 1).await;
    }
    let names = ["fo-a", "fo-b"];
    let peers = b.peers().await;
    let used: BTreeSet<i32> = b
        .sites
        .iter()
        .map(|(s, _)| partition_of(s, PARTITIONS) as i32)
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seq = 1_000_000u32;
            while !stop.load(Ordering::SeqCst) {
                for (topic, peer) in &peers {
                    let payload = telemetry(
                        2,
                        seq,
                        0,
                        &[
                            ("rc1", Quantity::ResidualCurrent, 30, OK),
                            ("t1", Quantity::Temperature, 250, OK),
                        ],
                    );
                    peer.publish(topic, payload, false).await;
                }
                seq += 1;
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            peers
        })
    };
    let holder_of_all = |rows: &[gateway::store::PartitionRow], who: &str| {
        used.iter()
            .all(|p| rows.iter().any(|r| r.partition == *p && r.holder == who))
    };
    let mut times = Vec::new();
    let mut starts = [1usize, 1];
    for k in 0..a.kills {
        // Who holds the partitions now (every used one by one replica).
        let deadline = Instant::now() + Duration::from_secs(60);
        let victim = loop {
            let rows = store.partitions().await.unwrap_or_default();
            if let Some(i) = (0..2).find(|&i| holder_of_all(&rows, names[i])) {
                break i;
            }
            assert!(
                Instant::now() < deadline,
                "no replica holds every partition: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let other = 1 - victim;
        reps[victim].gw.kill9();
        let killed = Instant::now();
        loop {
            let rows = store.partitions().await.unwrap_or_default();
            if holder_of_all(&rows, names[other]) {
                times.push(killed.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "kill {k}: no take-over: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        reps[victim].gw.start_again();
        starts[victim] += 1;
        b.until_consuming(&reps[victim], starts[victim]).await;
    }
    stop.store(true, Ordering::SeqCst);
    if let Ok(peers) = publisher.await {
        for (_, p) in peers {
            p.disconnect().await;
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(|x, y| x.total_cmp(y));
    let pct = |q: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    println!(
        "{}",
        json!({
            "bench": "cluster_failover",
            "replicas": 2,
            "kills": times.len(),
            "takeover_ms": times.iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>(),
            "p50_ms": pct(0.5),
            "max_ms": sorted.last(),
            "min_ms": sorted.first(),
            "measured": "SIGKILL of the replica holding every partition → every partition with a site held by the other (partition_epoch), nodes publishing 1 msg/s each",
        })
    );
    for r in &mut reps {
        r.gw.stop();
    }
    store.close().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    gateway::heap::no_huge_pages();
    let a = args();
    let bin = std::env::current_exe()
        .expect("this binary's path")
        .with_file_name("gateway-under-test");
    assert!(
        Path::new(&bin).is_file(),
        "{} is missing: cargo build --release -p e2e --bins",
        bin.display()
    );
    let b = Bench {
        cluster: RabbitCluster::start(),
        pg: Postgres::start(false),
        vm: VictoriaMetrics::start(),
        bin,
        sites: sites(a.nodes),
    };
    for &n in &a.replicas {
        throughput(&b, n, &a).await;
    }
    if a.kills > 0 {
        failover(&b, &a).await;
    }
}
