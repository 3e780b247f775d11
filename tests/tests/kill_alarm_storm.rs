//! `kill -9` of the gateway binary in the middle of an alarm storm, then a
//! restart on the same database and broker session: the standing alarms
//! and open tickets are exactly those of an uninterrupted run over the same
//! input — none missing, none twice.
//!
//! The same deterministic storm (20 nodes × 2 channels, values swinging
//! across the pre-alarm and alarm setpoints) is published QoS 1 through a
//! real Mosquitto twice, each time to a fresh gateway binary with a fresh
//! SQLite database: run A uninterrupted (the reference), run B with the
//! gateway killed with SIGKILL after about a third of the messages and
//! started again while the nodes keep publishing (Mosquitto queues for the
//! gateway's persistent session and redelivers what was not acknowledged).
//! The rules judge by the messages' own timestamps, so both runs see the
//! same rule timing whatever the wall clock does.
//!
//! Besides the standing alarms and open tickets, the whole alarm log
//! (every transition with its timestamp and value), every alarm record and
//! each open ticket's alarm count must be equal too: a message evaluated
//! twice, or lost, shows there. (The saved `channel_state` rows are not
//! compared: they are written only with a batch that has a transition on
//! the channel, so even two uninterrupted runs differ in them by where the
//! batch boundaries fell.)

use e2e::*;
use gateway::config::{NodeConfig, SiteConfig};
use gateway::store::{AlarmFilter, Store, TicketFilter};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{ChannelStatus, Quantity};

/// Messages per node in the storm (one reading of each channel each).
const ROUNDS: u32 = 300;
/// Node timestamps: a fixed base, one message every 20 s of node time.
const T0: u64 = 1_764_000_000_000;
const STEP_MS: u64 = 20_000;
const BOOT: u32 = 7;
/// Wall-clock pace of the publisher, per round of all nodes.
const PACE: Duration = Duration::from_millis(25);
/// Two sites of ten nodes: `storm_a` with non-latching alarms and a 25 s
/// on-delay on residual current (so the final state depends on the whole
/// sequence, and pending delays span batches and the kill), `storm_b` with
/// the shipped defaults (alarms latch until reset).
const SITES: [&str; 2] = ["storm_a", "storm_b"];
const NODES_PER_SITE: usize = 10;
/// After the storm each node sends one open-circuit reading on this
/// channel: a fault raised for every node says the gateway has handled
/// everything before it (one node's messages arrive in order).
const SENTINEL: &str = "rc9";

/// xorshift64*: a small deterministic generator, no crate needed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
}

/// One channel's storm: values dwell in a zone (normal, around the
/// 预警 setpoint, around the 报警 setpoint) for 1–20 messages, then jump,
/// so levels rise, escalate, de-escalate and clear many times; short
/// dwells make bursts that trip flapping detection, jumps between zones
/// trip the temperature rate-of-rise rule.
fn series(seed: u64, zones: [(i32, i32); 3]) -> Vec<i32> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(ROUNDS as usize);
    let (mut zone, mut left) = (0usize, 0u64);
    for _ in 0..ROUNDS {
        if left == 0 {
            zone = match rng.next() % 10 {
                0..=4 => 0,
                5..=7 => 1,
                _ => 2,
            };
            left = 1 + rng.next() % 20;
        }
        left -= 1;
        out.push(rng.range(zones[zone].0, zones[zone].1));
    }
    out
}

/// Residual current, mA: defaults 预警 300, 报警 500, hysteresis 30.
const RC_ZONES: [(i32, i32); 3] = [(0, 260), (270, 490), (480, 700)];
/// Temperature, 0.1 °C: defaults 预警 600 (60 °C), 报警 800 (80 °C),
/// hysteresis 20, rate of rise 100 within 60 s. (200–650 would only ever
/// reach the pre-alarm: the storm goes to 95 °C.)
const T_ZONES: [(i32, i32); 3] = [(200, 560), (570, 790), (780, 950)];

struct Node {
    site: &'static str,
    node: String,
    rc: Vec<i32>,
    t: Vec<i32>,
}

fn storm() -> Vec<Node> {
    let mut nodes = Vec::new();
    for (si, site) in SITES.iter().enumerate() {
        for i in 0..NODES_PER_SITE {
            let k = (si * NODES_PER_SITE + i) as u64;
            nodes.push(Node {
                site,
                node: format!("n{:02}", i + 1),
                rc: series(1000 + 2 * k, RC_ZONES),
                t: series(1001 + 2 * k, T_ZONES),
            });
        }
    }
    nodes
}

fn sites() -> Vec<SiteConfig> {
    SITES
        .iter()
        .map(|id| SiteConfig {
            id: id.to_string(),
            name: format!("{id} 养老院"),
            rules: Default::default(),
            nodes: (1..=NODES_PER_SITE)
                .map(|i| NodeConfig {
                    id: format!("n{i:02}"),
                    location: format!("{i} 号配电箱"),
                    ..Default::default()
                })
                .collect(),
        })
        .collect()
}

/// The gateway binary's configuration: external Mosquitto, fresh SQLite in
/// `dir`. The dead-man time is an hour so that no node goes offline while
/// the gateway is down (the offline timer runs on the gateway's wall
/// clock, the one thing that differs between the runs).
fn gateway_toml(broker_port: u16, http_port: u16, dir: &Path) -> String {
    let mut t = format!(
        "offline_after_secs = 3600\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
         [storage]\ndata_dir = \"{}\"\n\n\
         [mqtt]\nbroker = \"external\"\nhost = \"127.0.0.1\"\nport = {broker_port}\n\
         client_id = \"fire-gateway-storm\"\nusername = \"{}\"\npassword = \"{}\"\nkeep_alive_secs = 5\n",
        dir.display(),
        GATEWAY_USER.0,
        GATEWAY_USER.1,
    );
    for s in sites() {
        t.push_str(&format!(
            "\n[[sites]]\nid = \"{}\"\nname = \"{}\"\n",
            s.id, s.name
        ));
        if s.id == "storm_a" {
            t.push_str(
                "[sites.rules.residual_current]\nlatch_alarm = false\non_delay_ms = 25000\n\
                 [sites.rules.temperature]\nlatch_alarm = false\n",
            );
        }
        for n in &s.nodes {
            t.push_str(&format!(
                "[[sites.nodes]]\nid = \"{}\"\nlocation = \"{}\"\n",
                n.id, n.location
            ));
        }
    }
    t
}

/// An alarm's or a ticket's key: (site, node, channel, cause).
type Key = (String, String, String, String);

/// What a run left in the database.
#[derive(Default)]
struct Outcome {
    /// Standing alarms: (site, node, channel, cause, level, state).
    standing: Vec<(String, String, String, String, String, String)>,
    /// Open tickets: (site, node, channel, cause, status).
    open_tickets: Vec<(String, String, String, String, String)>,
    /// Open tickets with their alarm count and last alarm time.
    ticket_counts: BTreeMap<Key, Vec<(i64, i64)>>,
    /// Every alarm record: key, level, state, raised, cleared, flapping.
    alarms: Vec<String>,
    /// The alarm log: every transition, with its (node) time and value.
    log: Vec<String>,
    /// Figures of the run, for the summary line.
    received: f64,
    duplicates: f64,
    runtime: Duration,
}

async fn metric(gw: &GatewayProcess, name: &str) -> f64 {
    gw.metric(name).await.unwrap_or(0.0)
}

/// Waits until `cond` holds for the gateway's metric `name`.
async fn wait_metric(
    gw: &GatewayProcess,
    name: &str,
    within: Duration,
    cond: impl Fn(f64) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(gw, name).await;
        if cond(v) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting on {name} (now {v}); gateway log:\n{}",
            tail(&gw.log(), 60)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One run over the storm; with `kill`, the gateway is killed with SIGKILL
/// after a third of the messages and started again while they keep coming.
async fn run(kill: bool) -> Outcome {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = gateway_config(0, dir.path());
    config.sites = sites();
    let broker = mosquitto_for(&config, &[], "");
    let http_port = free_port();
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(
        &config_path,
        gateway_toml(broker.port, http_port, dir.path()),
    )
    .expect("config");
    let mut gw = GatewayProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_gateway-under-test")),
        &config_path,
        std::net::SocketAddr::from(([127, 0, 0, 1], http_port)),
        &dir.path().join("gateway.log"),
    );
    // Subscribed (not just connected): on a fresh broker, what nodes publish
    // before the gateway's subscription exists is for no one.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gw.log().contains("subscribed") {
        assert!(
            Instant::now() < deadline,
            "the gateway did not subscribe:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let nodes = storm();
    let total = nodes.len() as u64 * u64::from(ROUNDS);
    let mut peers = Vec::new();
    for n in &nodes {
        let user = gateway::ingest::mosquitto::node_username(n.site, &n.node);
        let pass = format!("pw-{user}");
        let peer = MqttPeer::connect(broker.addr(), &user, (&user, &pass), None).await;
        peers.push(peer);
    }
    let round = Arc::new(AtomicU32::new(0));
    let sentinels_sent = Arc::new(AtomicBool::new(false));
    let publisher = {
        let round = round.clone();
        let sentinels_sent = sentinels_sent.clone();
        tokio::spawn(async move {
            for r in 0..ROUNDS {
                for (n, peer) in nodes.iter().zip(&peers) {
                    let i = r as usize;
                    peer.publish(
                        &format!("fire/v1/{}/{}/telemetry", n.site, n.node),
                        telemetry(
                            BOOT,
                            r,
                            T0 + u64::from(r) * STEP_MS,
                            &[
                                ("rc1", Quantity::ResidualCurrent, n.rc[i], ChannelStatus::Ok),
                                ("t1", Quantity::Temperature, n.t[i], ChannelStatus::Ok),
                            ],
                        ),
                        false,
                    )
                    .await;
                }
                round.store(r + 1, Ordering::SeqCst);
                tokio::time::sleep(PACE).await;
            }
            sentinels_sent.store(true, Ordering::SeqCst);
            for (n, peer) in nodes.iter().zip(&peers) {
                peer.publish(
                    &format!("fire/v1/{}/{}/telemetry", n.site, n.node),
                    telemetry(
                        BOOT,
                        ROUNDS,
                        T0 + u64::from(ROUNDS) * STEP_MS,
                        &[(SENTINEL, Quantity::ResidualCurrent, 0, ChannelStatus::Open)],
                    ),
                    false,
                )
                .await;
            }
            for peer in peers {
                peer.wait_acked(u64::from(ROUNDS) + 1, Duration::from_secs(60))
                    .await;
                peer.disconnect().await;
            }
        })
    };

    let mut duplicates = 0.0;
    let mut received = 0.0;
    if kill {
        wait_metric(
            &gw,
            "gateway_messages_received_total",
            Duration::from_secs(60),
            |v| v >= total as f64 / 3.0,
        )
        .await;
        gw.kill9();
        let at_kill = round.load(Ordering::SeqCst);
        assert!(
            !sentinels_sent.load(Ordering::SeqCst) && at_kill < ROUNDS * 2 / 3,
            "the storm should be in full flow at the kill (round {at_kill} of {ROUNDS})"
        );
        // Down for a second while the nodes keep publishing.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let at_restart = round.load(Ordering::SeqCst);
        assert!(
            at_restart < ROUNDS,
            "the storm should still be flowing at the restart"
        );
        eprintln!(
            "kill -9 at round {at_kill}/{ROUNDS} of every node; restarted at round {at_restart}"
        );
        gw.start_again();
    }
    publisher.await.expect("publisher");
    // Every node's sentinel fault raised by the running gateway: it has
    // handled (and committed) everything published before.
    wait_metric(
        &gw,
        "gateway_faults_raised_total",
        Duration::from_secs(120),
        |v| v >= nodes_count() as f64,
    )
    .await;
    received += metric(&gw, "gateway_messages_received_total").await;
    duplicates += metric(&gw, "gateway_messages_dropped_total{reason=\"duplicate\"}").await;
    let log = gw.log();
    gw.stop();
    for bad in ["ERROR", "reconciled", "afresh"] {
        if log.contains(bad) {
            eprintln!(
                "gateway log ({}) mentions {bad:?}:\n{}",
                if kill { "run B" } else { "run A" },
                log.lines()
                    .filter(|l| l.contains(bad))
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }

    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("gateway.db").display()
    ))
    .await
    .expect("open the gateway's database");
    let mut out = Outcome {
        received,
        duplicates,
        ..Default::default()
    };
    for a in store
        .alarms(AlarmFilter::All, i64::MAX)
        .await
        .expect("alarms")
    {
        if a.state != "cleared" {
            out.standing.push((
                a.site.clone(),
                a.node.clone(),
                a.channel.clone(),
                a.cause.clone(),
                a.level.clone(),
                a.state.clone(),
            ));
        }
        out.alarms.push(format!(
            "{}/{}/{} {} {} {} raised {} cleared {:?} value {:?} peak {:?} flapping {} suppressed {} ticket {}",
            a.site,
            a.node,
            a.channel,
            a.cause,
            a.level,
            a.state,
            a.raised_at,
            a.cleared_at,
            a.value,
            a.peak,
            a.flapping,
            a.suppressed,
            a.ticket_id.is_some()
        ));
    }
    for t in store
        .tickets(&TicketFilter::Open, i64::MAX)
        .await
        .expect("tickets")
    {
        out.open_tickets.push((
            t.site.clone(),
            t.node.clone(),
            t.channel.clone(),
            t.cause.clone(),
            t.status.clone(),
        ));
        out.ticket_counts
            .entry((t.site, t.node, t.channel, t.cause))
            .or_default()
            .push((t.alarm_count, t.last_alarm_at));
    }
    for site in SITES {
        for l in store
            .alarm_log(site, None, i64::MAX)
            .await
            .expect("alarm log")
        {
            out.log.push(format!(
                "{} {}/{}/{} {} {} {:?} {:?} {} {}",
                l.at,
                l.site,
                l.node,
                l.channel,
                l.cause,
                l.transition,
                l.level,
                l.value,
                l.disposition,
                l.actor
            ));
        }
    }
    out.standing.sort();
    out.open_tickets.sort();
    out.alarms.sort();
    out.log.sort();
    out.runtime = started.elapsed();
    drop(broker);
    out
}

fn nodes_count() -> usize {
    SITES.len() * NODES_PER_SITE
}

/// Keys that appear more than once.
fn twice<K: Ord + Clone>(keys: impl Iterator<Item = K>) -> Vec<K> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for k in keys {
        if !seen.insert(k.clone()) {
            out.push(k);
        }
    }
    out
}

/// What only one side has, by count; `None` when equal.
fn difference<T: Ord + Clone + std::fmt::Debug>(what: &str, a: &[T], b: &[T]) -> Option<String> {
    if a == b {
        return None;
    }
    let count = |v: &[T]| {
        let mut m: BTreeMap<T, usize> = BTreeMap::new();
        for x in v {
            *m.entry(x.clone()).or_default() += 1;
        }
        m
    };
    let (ca, cb) = (count(a), count(b));
    let mut diff = Vec::new();
    for k in ca.keys().chain(cb.keys()).collect::<BTreeSet<_>>() {
        let (x, y) = (
            ca.get(k).copied().unwrap_or(0),
            cb.get(k).copied().unwrap_or(0),
        );
        if x != y {
            diff.push(format!("  uninterrupted ×{x}, killed ×{y}: {k:?}"));
        }
    }
    const SHOWN: usize = 40;
    let more = diff.len().saturating_sub(SHOWN);
    diff.truncate(SHOWN);
    if more > 0 {
        diff.push(format!("  … and {more} more"));
    }
    Some(format!(
        "{what} differ ({} uninterrupted vs {} killed):\n{}",
        a.len(),
        b.len(),
        diff.join("\n")
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_alarm_storm_leaves_the_same_alarms_and_tickets() {
    let a = run(false).await;
    let b = run(true).await;

    let mut failures = Vec::new();
    for (name, o) in [("uninterrupted", &a), ("killed", &b)] {
        let keys = twice(o.standing.iter().map(|s| (&s.0, &s.1, &s.2, &s.3)));
        if !keys.is_empty() {
            failures.push(format!("{name} run: two standing alarms for {keys:?}"));
        }
        let keys = twice(o.open_tickets.iter().map(|t| (&t.0, &t.1, &t.2, &t.3)));
        if !keys.is_empty() {
            failures.push(format!("{name} run: two open tickets for {keys:?}"));
        }
    }
    // The storm really stormed: alarms, pre-alarms, latches, clears.
    let standing: Vec<_> = a.standing.iter().filter(|s| s.2 != SENTINEL).collect();
    assert!(standing.iter().any(|s| s.4 == "alarm" && s.5 == "active"));
    assert!(standing.iter().any(|s| s.4 == "alarm" && s.5 == "latched"));
    assert!(standing.iter().any(|s| s.4 == "pre_alarm"));
    assert!(a.log.iter().any(|l| l.contains(" cleared ")));

    let counts = |o: &Outcome| o.ticket_counts.clone().into_iter().collect::<Vec<_>>();
    failures.extend(
        [
            difference("standing alarms", &a.standing, &b.standing),
            difference("open tickets", &a.open_tickets, &b.open_tickets),
            difference("open tickets' alarm counts", &counts(&a), &counts(&b)),
            difference("alarm records", &a.alarms, &b.alarms),
            difference("alarm log transitions", &a.log, &b.log),
        ]
        .into_iter()
        .flatten(),
    );
    assert!(
        failures.is_empty(),
        "kill -9 mid-storm changed the outcome:\n{}",
        failures.join("\n")
    );

    let tickets = a.open_tickets.iter().filter(|t| t.2 != SENTINEL).count();
    let attached: i64 = a
        .ticket_counts
        .iter()
        .filter(|(k, _)| k.2 != SENTINEL)
        .flat_map(|(_, v)| v.iter().map(|c| c.0))
        .sum();
    eprintln!(
        "alarm storm: {} messages from {} nodes; {} standing alarms ({} alarm active, {} latched, {} pre-alarm), {} open tickets ({} alarms attached), {} alarm records, {} log transitions: equal with and without kill -9 (run A {:.1} s, {} received; run B {:.1} s, {} received after the restart, {} duplicates dropped)",
        nodes_count() as u32 * ROUNDS,
        nodes_count(),
        standing.len(),
        standing.iter().filter(|s| s.4 == "alarm" && s.5 == "active").count(),
        standing.iter().filter(|s| s.5 == "latched").count(),
        standing.iter().filter(|s| s.4 == "pre_alarm").count(),
        tickets,
        attached,
        a.alarms.len(),
        a.log.len(),
        a.runtime.as_secs_f64(),
        a.received,
        b.runtime.as_secs_f64(),
        b.received,
        b.duplicates,
    );
}
