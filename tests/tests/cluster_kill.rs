//! `kill -9` of the replica active on the ingest partitions (issue 16):
//! two gateway processes on a real three-node RabbitMQ cluster, one
//! PostgreSQL and VictoriaMetrics; 50 nodes in 10 sites publish over MQTT,
//! each raising one scripted residual-current alarm at its own moment,
//! some before the kill and some after. Replica-a (consuming first) is
//! active on the partitions (it gives five of its ten up to replica-b,
//! the fair share of ten partitions in use); it is killed with SIGKILL a
//! third of the way through. Then: replica-b holds every partition within 10 s; every
//! scripted alarm is raised exactly once, with one ticket; every reading is
//! in VictoriaMetrics (exact copies allowed, counted: what replica-a had
//! committed but not acknowledged comes again); a duty desk on replica-b's
//! console saw every alarm, replica-a's included.
//!
//! Replica-a is started again after the kill, as its supervisor would: its
//! spool still holds the lines it had acknowledged but not yet delivered
//! to VictoriaMetrics, and it delivers them (a lost machine's spool waits
//! for its disk).

use e2e::rabbitmq::{RabbitCluster, ADMIN};
use e2e::*;
use gateway::ingest::rabbitmq::{partition_of, PARTITIONS};
use gateway::store::{AlarmFilter, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{ChannelStatus::Ok as OK, Quantity};

const SITES: usize = 10;
const NODES_PER_SITE: usize = 5;
/// Messages per node, one round of all nodes every [`PACE`].
const ROUNDS: u32 = 120;
const PACE: Duration = Duration::from_millis(100);
/// Replica-a is killed after this many rounds.
const KILL_AFTER: u32 = 20;
/// Node time: one second a round.
const STEP_MS: u64 = 1000;
const BOOT: u32 = 7;
const WAIT: Duration = Duration::from_secs(60);
const SELECTOR: &str = r#"{__name__=~"residual_current_value|temperature_value"}"#;

struct NodeRef {
    site: String,
    node: String,
    /// The round from which its rc1 reads 700 mA (报警, latched).
    alarm_at: u32,
}

fn nodes() -> Vec<NodeRef> {
    let mut out = Vec::new();
    for s in 0..SITES {
        for n in 0..NODES_PER_SITE {
            let k = (s * NODES_PER_SITE + n) as u32;
            out.push(NodeRef {
                site: format!("care_{s}"),
                node: format!("n{:02}", n + 1),
                // Spread over the run: some before the kill, a few around
                // it, most after.
                alarm_at: 2 + (k * 11) % (ROUNDS - 6),
            });
        }
    }
    out
}

async fn wait_log(gw: &GatewayProcess, line: &str) {
    gw.wait_log(line, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_active_replica_loses_no_alarm_and_no_reading() {
    let started = Instant::now();
    let cluster = RabbitCluster::start();
    let pg = Postgres::start(false);
    let vm = VictoriaMetrics::start();
    let db = pg.url();
    let nodes = nodes();
    let bin = Path::new(env!("CARGO_BIN_EXE_gateway-under-test"));
    let spawn = |name: &str, node: usize| {
        let dir = tempfile::tempdir().expect("temp dir");
        let http = free_port();
        let path = dir.path().join("gateway.toml");
        let sites: Vec<(String, Vec<String>)> = nodes
            .iter()
            .map(|n| n.site.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|s| {
                let ids = nodes
                    .iter()
                    .filter(|n| n.site == s)
                    .map(|n| n.node.clone())
                    .collect();
                (s, ids)
            })
            .collect();
        let toml = ReplicaToml {
            name,
            http,
            dir: dir.path(),
            db: &db,
            mqtt: cluster.nodes[node].mqtt_port,
            amqp: cluster.nodes[node].amqp_port,
            login: ADMIN,
            vm: Some(&vm.url()),
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
    // Replica-a first: its consumers are the active ones.
    let (mut a, _da) = spawn("replica-a", 0);
    wait_log(&a, "consuming the ingest partitions").await;
    let (b, _db) = spawn("replica-b", 1);
    wait_log(&b, "consuming the ingest partitions").await;
    wait_log(&b, "sharing events with the other replicas").await;
    wait_log(&a, "sharing events with the other replicas").await;

    // A duty desk on replica-b's console.
    let store = Store::open(&db).await.unwrap();
    let now = gateway::domain::time::now_ms();
    store
        .add_user(
            "desk",
            "值班员",
            gateway::tickets::Role::Admin,
            None,
            "desk-password",
            now,
        )
        .await
        .unwrap();
    let (token, _) = store
        .login("desk", "desk-password", now)
        .await
        .unwrap()
        .expect("login");
    let desk = follow_events(b.http, &token).await;

    let mut peers = Vec::new();
    for n in &nodes {
        let id = format!("{}.{}", n.site, n.node);
        peers.push(MqttPeer::connect(cluster.nodes[2].mqtt_addr(), &id, ADMIN, None).await);
    }
    let t0 = gateway::domain::time::now_ms() - u64::from(ROUNDS) * STEP_MS - 60_000;
    let round = Arc::new(AtomicU32::new(0));
    let publisher = {
        let round = round.clone();
        let script: Vec<(String, String, u32)> = nodes
            .iter()
            .map(|n| (n.site.clone(), n.node.clone(), n.alarm_at))
            .collect();
        tokio::spawn(async move {
            for r in 0..ROUNDS {
                for ((site, node, alarm_at), peer) in script.iter().zip(&peers) {
                    let rc = if r >= *alarm_at { 700 } else { 40 };
                    peer.publish(
                        &format!("fire/v1/{site}/{node}/telemetry"),
                        telemetry(
                            BOOT,
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
    // The partitions are shared out first: replica-a, active on all ten
    // with traffic, gives those over its share (five of the ten) up to
    // replica-b, which takes them.
    let deadline = Instant::now() + WAIT;
    while round.load(Ordering::SeqCst) < KILL_AFTER
        || b.metric("gateway_cluster_partitions_held")
            .await
            .unwrap_or(0.0)
            < 5.0
    {
        assert!(
            Instant::now() < deadline,
            "replica-b was not given its five of the ten partitions in use:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shared_at = round.load(Ordering::SeqCst);
    let rows = store.partitions().await.unwrap();
    let by = |who: &str| rows.iter().filter(|r| r.holder == who).count();
    let said = |gw: &GatewayProcess| -> String {
        gw.log()
            .lines()
            .filter(|l| l.contains("partition"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        (by("replica-a"), by("replica-b")),
        (5, 5),
        "{rows:?}\nreplica-a:\n{}\nreplica-b:\n{}",
        said(&a),
        said(&b)
    );
    assert!(
        shared_at < ROUNDS - 20,
        "the share came too late to kill mid-stream: round {shared_at}"
    );
    a.kill9();
    let killed = Instant::now();

    // Replica-b holds every partition with a site within 10 s.
    let partitions: BTreeSet<i32> = nodes
        .iter()
        .map(|n| partition_of(&n.site, PARTITIONS) as i32)
        .collect();
    let taken_over = loop {
        let rows = store.partitions().await.unwrap();
        let by_b = rows
            .iter()
            .filter(|r| partitions.contains(&r.partition) && r.holder == "replica-b")
            .count();
        if by_b == partitions.len() {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "replica-b did not take every partition over: {rows:?}\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let peers = publisher.await.unwrap();
    for p in &peers {
        p.wait_acked(u64::from(ROUNDS), WAIT).await;
    }
    // Replica-a's supervisor starts it again: a standby now, delivering
    // what its spool still held.
    a.start_again();

    // Every scripted alarm raised, once, with one ticket.
    let deadline = Instant::now() + WAIT;
    let alarms = loop {
        let all = store.alarms(AlarmFilter::All, 100_000).await.unwrap();
        let rc: Vec<_> = all.into_iter().filter(|a| a.channel == "rc1").collect();
        if rc.len() >= nodes.len() || Instant::now() > deadline {
            break rc;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut per_node: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for a in &alarms {
        per_node
            .entry((a.site.clone(), a.node.clone()))
            .or_default()
            .push(a.ticket_id.unwrap_or(-1));
    }
    for n in &nodes {
        let tickets = per_node.get(&(n.site.clone(), n.node.clone()));
        assert!(
            matches!(tickets, Some(t) if t.len() == 1 && t[0] > 0),
            "{}/{}: one alarm with a ticket, got {tickets:?}",
            n.site,
            n.node
        );
    }
    let tickets: BTreeSet<i64> = per_node.values().flatten().copied().collect();
    assert_eq!(tickets.len(), nodes.len(), "one ticket per alarm");
    let mut raised = 0;
    for site in nodes
        .iter()
        .map(|n| n.site.as_str())
        .collect::<BTreeSet<_>>()
    {
        let log = store.alarm_log(site, None, 100_000).await.unwrap();
        let mut seen = BTreeSet::new();
        for l in log
            .iter()
            .filter(|l| l.transition == "raised" && l.channel == "rc1")
        {
            assert!(
                seen.insert(l.node.clone()),
                "{site}/{} raised twice",
                l.node
            );
            raised += 1;
        }
    }
    assert_eq!(raised, nodes.len());

    // Every reading in VictoriaMetrics, copies counted.
    let expected = nodes.len() * ROUNDS as usize * 2;
    // Copies count towards a plain sample count: wait for the distinct
    // readings (replica-a's spool is delivered after its restart).
    let deadline = Instant::now() + WAIT;
    let (samples, unique) = loop {
        let samples = vm.samples(SELECTOR).await;
        let unique: BTreeSet<(Series, u64)> =
            samples.iter().map(|(s, t, _)| (s.clone(), *t)).collect();
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

    // The duty desk on replica-b saw every alarm.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = desk.lock().unwrap().clone();
        let missing: Vec<String> = nodes
            .iter()
            .map(|n| {
                format!(
                    "\"site\":\"{}\",\"node\":\"{}\",\"channel\":\"rc1\"",
                    n.site, n.node
                )
            })
            .filter(|k| !seen.contains(k.as_str()))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not on replica-b's event stream: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before_kill = nodes.iter().filter(|n| n.alarm_at < shared_at).count();
    eprintln!(
        "take-over {taken_over:?}; alarms {} ({before_kill} scripted before the kill); \
         readings {expected}, exact copies {}; test {:?}",
        alarms.len(),
        samples.len() - unique.len(),
        started.elapsed()
    );
    assert!(
        taken_over < Duration::from_secs(10),
        "take-over took {taken_over:?}"
    );
    store.close().await;
}
