//! A replica cut off from RabbitMQ but not from PostgreSQL cannot commit
//! once another replica is active (issue 16, fencing end to end).
//!
//! The replica holding a site's partition hangs (SIGSTOP: it runs no code,
//! its sockets stay open) while the site's node keeps publishing and
//! crosses 700 mA; the broker, as on a network cut between it and the
//! brokers, closes its AMQP connections (the management API's force
//! close). RabbitMQ makes the other replica's consumer active; that
//! replica takes the partition (epoch + 1), goes on from the committed
//! state and raises the alarm. Then the hung replica runs again: the
//! deliveries that reached it before the cut (in its socket's buffer) go
//! into a batch, and the fence refuses its commit — the pipeline stops,
//! nothing of it is written or acknowledged. One alarm, one ticket, every
//! message handled; the cut replica reconnects and waits in line again.

use e2e::rabbitmq::{RabbitCluster, ADMIN};
use e2e::*;
use gateway::ingest::rabbitmq::{partition_of, partition_queue, PARTITIONS};
use gateway::store::{AlarmFilter, Store};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{ChannelStatus::Ok as OK, Quantity::*};

const WAIT: Duration = Duration::from_secs(60);

/// The names of `replica`'s AMQP connections, as the management API
/// lists them (the gateway names each `{replica} {purpose}`).
fn connections_of(cluster: &RabbitCluster, replica: &str) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..cluster.nodes.len() {
        let (_, body) = cluster.mgmt(i, "GET", "/api/connections", None);
        let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
        for c in list {
            let named = c["client_properties"]["connection_name"]
                .as_str()
                .unwrap_or("");
            if named.starts_with(&format!("{replica} ")) {
                if let Some(n) = c["name"].as_str() {
                    names.push(n.to_string());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_rabbitmq_cannot_commit_once_another_is_active() {
    let cluster = RabbitCluster::start();
    let pg = Postgres::start(false);
    let db = pg.url();
    let bin = Path::new(env!("CARGO_BIN_EXE_gateway-under-test"));
    let sites = [("home_a".to_string(), vec!["n01".to_string()])];
    let spawn = |name: &str, node: usize| {
        let dir = tempfile::tempdir().expect("temp dir");
        let http = free_port();
        let path = dir.path().join("gateway.toml");
        let toml = ReplicaToml {
            name,
            http,
            dir: dir.path(),
            db: &db,
            mqtt: cluster.nodes[node].mqtt_port,
            amqp: cluster.nodes[node].amqp_port,
            login: ADMIN,
            vm: None,
            sites: &sites,
        };
        std::fs::write(&path, toml.text()).unwrap();
        let gw = GatewayProcess::spawn(
            bin,
            &path,
            SocketAddr::from(([127, 0, 0, 1], http)),
            &dir.path().join("gateway.log"),
        );
        (gw, dir)
    };
    let (a, _da) = spawn("replica-a", 0);
    a.wait_log("consuming the ingest partitions", WAIT).await;
    let (b, _db) = spawn("replica-b", 1);
    b.wait_log("consuming the ingest partitions", WAIT).await;
    let node = MqttPeer::connect(cluster.nodes[2].mqtt_addr(), "home_a.n01", ADMIN, None).await;
    // The node reports every 50 ms while `rc` ≥ 0 (0 pauses it); `rc` is
    // what it reads now.
    let rc = Arc::new(AtomicI32::new(100));
    let sent = Arc::new(AtomicU32::new(0));
    let publisher = {
        let (rc, sent) = (rc.clone(), sent.clone());
        tokio::spawn(async move {
            let mut seq = 0u32;
            loop {
                let v = rc.load(Ordering::SeqCst);
                if v < 0 {
                    return node;
                }
                if v > 0 {
                    node.publish(
                        "fire/v1/home_a/n01/telemetry",
                        telemetry(1, seq, 0, &[("rc1", ResidualCurrent, v, OK)]),
                        false,
                    )
                    .await;
                    seq += 1;
                    sent.store(seq, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let acked = || async {
        a.metric("gateway_messages_acked_total")
            .await
            .unwrap_or(0.0)
            + b.metric("gateway_messages_acked_total")
                .await
                .unwrap_or(0.0)
    };
    let p = partition_of("home_a", PARTITIONS);
    let queue = format!("/api/queues/%2F/{}", partition_queue(p));
    let store = Store::open(&db).await.unwrap();
    // Some readings handled, then the node pauses until the holder has
    // committed everything: it hangs idle, not inside a transaction (a
    // transaction left open would hold the take-over back until it ran
    // again — correct, but not this test).
    let deadline = Instant::now() + WAIT;
    while acked().await < 20.0 {
        assert!(Instant::now() < deadline, "nothing handled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rc.store(0, Ordering::SeqCst);
    let deadline = Instant::now() + WAIT;
    while acked().await < f64::from(sent.load(Ordering::SeqCst)) {
        assert!(
            Instant::now() < deadline,
            "the first readings not all handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row = store
        .partitions()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.partition == p as i32)
        .expect("home_a's partition held");
    let (cut, cut_name, other_name) = if row.holder == "replica-a" {
        (&a, "replica-a", "replica-b")
    } else {
        (&b, "replica-b", "replica-a")
    };
    // Its three connections (partitions, events, commands) once listed.
    let deadline = Instant::now() + WAIT;
    let conns = loop {
        let conns = connections_of(&cluster, cut_name);
        if conns.len() >= 2 {
            break conns;
        }
        assert!(
            Instant::now() < deadline,
            "{cut_name}'s connections not listed: {}",
            cluster.mgmt(0, "GET", "/api/connections", None).1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The holder hangs; the node crosses 700 mA; what it sends reaches the
    // hung holder's socket until the broker closes its connections.
    cut.freeze();
    rc.store(700, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cut_at = Instant::now();
    for name in &conns {
        let path = format!(
            "/api/connections/{}",
            gateway::domain::text::percent_encode(name)
        );
        let (status, body) = cluster.mgmt(0, "DELETE", &path, None);
        assert!(
            status == 204 || status == 404,
            "closing {name}: {status} {body}"
        );
    }
    // The other replica takes the partition and raises the alarm.
    let deadline = Instant::now() + WAIT;
    let taken = loop {
        let r = store
            .partitions()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.partition == p as i32)
            .unwrap();
        if r.epoch > row.epoch {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "home_a's partition not taken over after the cut"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = cut_at.elapsed();
    assert_eq!(
        taken.holder, other_name,
        "taken by the replica still connected"
    );
    let deadline = Instant::now() + WAIT;
    while !store
        .alarms(AlarmFilter::Standing, 100)
        .await
        .unwrap()
        .iter()
        .any(|a| a.channel == "rc1")
    {
        assert!(Instant::now() < deadline, "no alarm from {other_name}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The hung replica runs again: its late batch meets the fence.
    cut.thaw();
    let deadline = Instant::now() + WAIT;
    while cut.metric("gateway_cluster_batches_fenced_total").await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "{cut_name}'s late batch was not refused; its log:\n{}",
            cut.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cut.wait_log("partition taken over by another replica", WAIT)
        .await;

    // Everything sent is handled (the refused batch's messages by the new
    // holder), once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rc.store(-1, Ordering::SeqCst);
    let node = publisher.await.unwrap();
    let total = sent.load(Ordering::SeqCst);
    node.wait_acked(u64::from(total), WAIT).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, q) = cluster.mgmt(0, "GET", &queue, None);
        let q: serde_json::Value = serde_json::from_str(&q).unwrap_or_default();
        if q["messages"].as_u64() == Some(0) && acked().await >= f64::from(total) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} messages handled after the cut; queue {q}",
            acked().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = store.alarms(AlarmFilter::All, 100).await.unwrap();
    let rc1: Vec<_> = all.iter().filter(|a| a.channel == "rc1").collect();
    assert_eq!(rc1.len(), 1, "raised once: {rc1:?}");
    assert!(rc1[0].ticket_id.is_some(), "raised with its ticket");
    let raised = store
        .alarm_log("home_a", Some("n01"), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.channel == "rc1" && l.transition == "raised")
        .count();
    assert_eq!(raised, 1);
    let tickets: std::collections::BTreeSet<_> = all.iter().filter_map(|a| a.ticket_id).collect();
    assert_eq!(tickets.len(), 1, "one ticket: {tickets:?}");

    // The cut replica connects again: its consumer waits behind the
    // holder's, ready to take over in turn.
    cluster
        .wait_consumers(
            &queue,
            2,
            WAIT,
            &format!("{cut_name} did not subscribe again"),
        )
        .await;
    eprintln!(
        "{cut_name} hung and cut off: home_a's partition taken by {other_name} {took:?} after the connections closed (epoch {} → {}); its late batch fenced; {total} messages, {} acknowledgements",
        row.epoch,
        taken.epoch,
        acked().await
    );
    node.disconnect().await;
    store.close().await;
}
