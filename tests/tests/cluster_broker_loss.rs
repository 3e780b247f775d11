//! One RabbitMQ node stopped while the sensor nodes publish (issue 16).
//!
//! Three brokers behind haproxy (the shipped `haproxy.cfg`: MQTT for the
//! nodes, AMQP for the replicas), two gateway replicas on PostgreSQL with
//! the sink to VictoriaMetrics, 12 nodes in 4 sites publishing QoS 1
//! through haproxy (a round every 50 ms), each crossing 700 mA at its own
//! round. From round 40 of 240, the broker leading the first site's partition queue is
//! stopped: its MQTT and AMQP clients are cut, the nodes reconnect through
//! haproxy to a live broker and resend what was not acknowledged, the
//! replica whose AMQP connection it carried reconnects too, and the
//! partition queues (quorum) elect new leaders. Nothing is lost: every
//! publish acknowledged, every reading in VictoriaMetrics, every node's
//! alarm raised once with one ticket. (A node's `cmd` queued while the
//! broker holding its queue's leader is down reaches it after it
//! reconnects: `rabbitmq_cluster.rs`.)

use e2e::rabbitmq::{Haproxy, RabbitCluster, ADMIN};
use e2e::*;
use gateway::config::cluster::ClusterConfig;
use gateway::config::{NodeConfig, SinkConfig, SiteConfig};
use gateway::ingest::rabbitmq::{partition_of, partition_queue, PARTITIONS};
use gateway::store::{AlarmFilter, Store};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{ChannelStatus::Ok as OK, Quantity};

const SITES: usize = 4;
const NODES_PER_SITE: usize = 3;
const ROUNDS: u32 = 240;
const PACE: Duration = Duration::from_millis(50);
const STEP_MS: u64 = 1000;
/// The broker is stopped after this many rounds.
const STOP_AFTER: u32 = 40;
const WAIT: Duration = Duration::from_secs(90);
const SELECTOR: &str = r#"{__name__=~"residual_current_value|temperature_value"}"#;

/// (site, node, the round from which its rc1 reads 700 mA).
fn nodes() -> Vec<(String, String, u32)> {
    let mut out = Vec::new();
    for s in 0..SITES {
        for n in 0..NODES_PER_SITE {
            let k = (s * NODES_PER_SITE + n) as u32;
            // Spread around and after the stop.
            out.push((
                format!("home_{s}"),
                format!("n{:02}", n + 1),
                30 + (k * 7) % (ROUNDS - 40),
            ));
        }
    }
    out
}

fn replica(
    name: &str,
    proxy: &Haproxy,
    db: &str,
    vm: &str,
    dir: &std::path::Path,
) -> gateway::config::Config {
    let mut c = gateway_config(proxy.fronts.mqtt, dir);
    c.storage.database_url = Some(db.into());
    c.mqtt.client_id = format!("fire-gateway-{name}");
    c.mqtt.username = Some(ADMIN.0.into());
    c.mqtt.password = Some(ADMIN.1.into());
    c.cluster = Some(ClusterConfig {
        amqp_url: format!(
            "amqp://{}:{}@127.0.0.1:{}/%2f",
            ADMIN.0, ADMIN.1, proxy.fronts.amqp
        ),
        replica: name.into(),
        prefetch: 500,
    });
    c.sink = Some(SinkConfig {
        url: vm.into(),
        batch_size: 2000,
        flush_interval_ms: 100,
        timeout_ms: 2000,
        retry_max_ms: 1000,
        ..Default::default()
    });
    let mut sites: Vec<SiteConfig> = Vec::new();
    for (site, node, _) in nodes() {
        if sites.last().map(|s| s.id != site).unwrap_or(true) {
            sites.push(SiteConfig {
                id: site.clone(),
                name: format!("{site} 养老院"),
                rules: Default::default(),
                nodes: Vec::new(),
            });
        }
        sites.last_mut().unwrap().nodes.push(NodeConfig {
            id: node.clone(),
            location: format!("{node} 配电箱"),
            ..Default::default()
        });
    }
    c.sites = sites;
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_while_nodes_publish_loses_nothing() {
    let started = Instant::now();
    let mut cluster = RabbitCluster::start();
    let pg = Postgres::start(false);
    let vm = VictoriaMetrics::start();
    let db = pg.url();
    let proxy = Haproxy::in_front_of(&cluster);
    let (da, dbb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_gateway(replica("replica-a", &proxy, &db, &vm.url(), da.path())).await;
    let b = start_gateway(replica("replica-b", &proxy, &db, &vm.url(), dbb.path())).await;
    let nodes = nodes();
    // Both replicas consume (the topology is declared before any publish).
    let first = partition_queue(partition_of(&nodes[0].0, PARTITIONS));
    let queue = format!("/api/queues/%2F/{first}");
    cluster
        .wait_consumers(&queue, 2, WAIT, "the replicas never subscribed")
        .await;

    let mut peers = Vec::new();
    for (site, node, _) in &nodes {
        peers.push(
            MqttPeer::connect(proxy.mqtt_addr(), &format!("{site}.{node}"), ADMIN, None).await,
        );
    }
    let t0 = gateway::domain::time::now_ms() - u64::from(ROUNDS) * STEP_MS - 60_000;
    let round = Arc::new(AtomicU32::new(0));
    let publisher = {
        let round = round.clone();
        let script = nodes.clone();
        tokio::spawn(async move {
            for r in 0..ROUNDS {
                for ((site, node, alarm_at), peer) in script.iter().zip(&peers) {
                    let rc = if r >= *alarm_at { 700 } else { 40 };
                    peer.publish(
                        &format!("fire/v1/{site}/{node}/telemetry"),
                        telemetry(
                            1,
                            r,
                            t0 + u64::from(r) * STEP_MS,
                            &[
                                ("rc1", Quantity::ResidualCurrent, rc, OK),
                                ("t1", Quantity::Temperature, 250 + (r % 7) as i32, OK),
                            ],
                        ),
                        false,
                    )
                    .await;
                }
                round.store(r + 1, Ordering::SeqCst);
                tokio::time::sleep(PACE).await;
            }
            peers
        })
    };

    // The broker leading the first site's partition queue stops.
    let deadline = Instant::now() + WAIT;
    while round.load(Ordering::SeqCst) < STOP_AFTER {
        assert!(Instant::now() < deadline, "the nodes did not publish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, q) = cluster.mgmt(0, "GET", &queue, None);
    let q: serde_json::Value = serde_json::from_str(&q).unwrap();
    let leader = q["leader"].as_str().unwrap_or_default().to_string();
    let down = cluster
        .nodes
        .iter()
        .position(|n| n.name == leader)
        .unwrap_or_else(|| panic!("{first}'s leader {leader:?} is not one of ours: {q}"));
    let stop_at = Instant::now();
    let round_at_stop = round.load(Ordering::SeqCst);
    cluster.stop_node(down);
    let stopped_in = stop_at.elapsed();
    let round_at_stopped = round.load(Ordering::SeqCst);
    assert!(
        round_at_stopped < ROUNDS - 40,
        "the broker took until round {round_at_stopped} to stop: the nodes must go on publishing after"
    );

    // Every publish acknowledged (resent through haproxy where the broker
    // went before its PUBACK).
    let peers = publisher.await.unwrap();
    for (p, (site, node, _)) in peers.iter().zip(&nodes) {
        let acked = p.acked.clone();
        let deadline = Instant::now() + WAIT;
        while acked.load(Ordering::SeqCst) < u64::from(ROUNDS) {
            assert!(
                Instant::now() < deadline,
                "{site}/{node}: {} of {ROUNDS} publishes acknowledged; haproxy:\n{}",
                acked.load(Ordering::SeqCst),
                proxy.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let published_in = stop_at.elapsed();

    // Every reading in VictoriaMetrics (exact copies allowed, counted).
    let expected = nodes.len() * ROUNDS as usize * 2;
    let deadline = Instant::now() + WAIT;
    let (samples, unique) = loop {
        let samples = vm.samples(SELECTOR).await;
        let unique: BTreeSet<_> = samples.iter().map(|(s, t, _)| (s.clone(), *t)).collect();
        if unique.len() >= expected || Instant::now() > deadline {
            break (samples, unique);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        unique.len(),
        expected,
        "readings in VictoriaMetrics (exact copies {} besides)",
        samples.len() - unique.len()
    );

    // Every node's alarm raised once, with one ticket each.
    let store = Store::open(&db).await.unwrap();
    let deadline = Instant::now() + WAIT;
    let rc1 = loop {
        let all = store.alarms(AlarmFilter::All, 1000).await.unwrap();
        let rc1: Vec<_> = all.into_iter().filter(|a| a.channel == "rc1").collect();
        if rc1.len() >= nodes.len() && rc1.iter().all(|a| a.ticket_id.is_some()) {
            break rc1;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} alarms raised: {rc1:?}",
            rc1.len(),
            nodes.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let keys: BTreeSet<_> = rc1
        .iter()
        .map(|a| (a.site.clone(), a.node.clone()))
        .collect();
    assert_eq!(keys.len(), nodes.len(), "one alarm per node: {rc1:?}");
    assert_eq!(rc1.len(), nodes.len(), "none raised twice: {rc1:?}");
    let tickets: BTreeSet<_> = rc1.iter().filter_map(|a| a.ticket_id).collect();
    // One ticket per node's alarm, or per site where a site's alarms share
    // one open ticket (attached): never more tickets than alarms.
    assert!(!tickets.is_empty() && tickets.len() <= rc1.len());
    for (site, node, _) in &nodes {
        let raised = store
            .alarm_log(site, Some(node), 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.channel == "rc1" && l.transition == "raised")
            .count();
        assert_eq!(raised, 1, "{site}/{node} raised {raised} times");
    }
    eprintln!(
        "broker {leader} stopped from round {round_at_stop} to {round_at_stopped} ({stopped_in:?}); all {} publishes acknowledged {published_in:?} after the stop; {expected} readings in VictoriaMetrics ({} exact copies); {} alarms, {} tickets; test {:?}",
        nodes.len() as u32 * ROUNDS,
        samples.len() - unique.len(),
        rc1.len(),
        tickets.len(),
        started.elapsed()
    );
    for p in peers {
        p.disconnect().await;
    }
    a.shutdown().await;
    b.shutdown().await;
    store.close().await;
}
