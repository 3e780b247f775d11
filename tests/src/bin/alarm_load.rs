//! Alarm-path benchmark: 100 nodes → broker → gateway → store, TSDB and the
//! duty desk's event stream (`cargo run --release -p e2e --bin alarm-load`).
//! A load tool printing one JSON line per run, not a timed test.
//!
//! The load: `--nodes` (100) nodes, one MQTT connection each (MQTT 3.1.1
//! with the firmware's own codec, QoS 1, persistent session, client id =
//! username = `{site}.{node}` as the firmware logs in; one write carries
//! as many messages as the in-flight window has room for), each message a contract telemetry payload with
//! boot/seq/ts and two readings, `rc1` (residual current, mA) and `t1`
//! (temperature, 0.1 °C). Two shapes:
//! - `normal` — a normal day: each loop a steady leakage (per-node constant
//!   20–80 mA) ± 5 mA, temperature 25–35 °C in a ±0.2 °C random walk. No
//!   setpoint is ever crossed.
//! - `storm` — residual current uniform 0–599 mA, temperature uniform
//!   20–60 °C, per message: about half the residual-current readings are
//!   at or over the 300 mA pre-alarm setpoint, a sixth over the 500 mA
//!   alarm; a quarter of the temperatures over 50 °C.
//!
//! The rules: the shipped defaults, except (unless `--shipped-rules`) that
//! alarms do not latch, flapping suppression is off and the temperature
//! setpoints are 50/55 °C (defaults 60/80 °C, out of the storm's range).
//! With the shipped rules every residual-current alarm latches on its
//! first crossing and a channel with 6 swings in 10 min is "flapping", so
//! a storm goes quiet after its first seconds; the overrides keep every
//! crossing a transition that the store records and the event stream
//! carries, which is the load the alarm path must take.
//!
//! Two paths (`--path inprocess|mosquitto|both`): the gateway's embedded
//! broker behind its gate (nodes of the configuration without credentials
//! log in anonymously with their username, as the firmware does), or a
//! real Mosquitto with `deploy/mosquitto/mosquitto.conf` (which sets
//! `max_queued_messages 1000000` and `set_tcp_nodelay true`; nodes log in
//! with passwords, the generated ACL). The TSDB sink is on, to a real
//! VictoriaMetrics, with the shipped sink defaults; the store is SQLite
//! (`--store postgres`: a throwaway PostgreSQL server with its default
//! durability).
//!
//! Two modes:
//! - `--mode flood` (default): each node publishes `--messages` (2000) as
//!   fast as its PUBACKs allow, `--inflight` (100) unacknowledged at most,
//!   within `--deadline-secs` (300). Throughput is measured from the first
//!   publish until the gateway has acknowledged every message to the broker
//!   (which it does once the message is handled and its lines are durable
//!   in the spool) and VictoriaMetrics has taken every line.
//! - `--mode paced --rate 20000 --secs 60`: the total rate spread evenly
//!   over the nodes; reports the rate achieved, the backlog (published but
//!   not yet acknowledged by the gateway) each second and how long the
//!   gateway took to drain after the last publish.
//!
//! In both modes probe nodes (`s00.probe0` … `s00.probe11`, a connection
//! each) publish, from the start until the gateway has acknowledged the
//! whole load, one 700 mA residual-current reading every
//! `--probe-interval-ms` (1000) on a fresh channel (`p0`, `p1`, …, so no
//! latch or hysteresis is in the way; 30 channels a probe node, under the
//! gateway's cap of 32 channels a node); each is an `alarm_raised` on the gateway's SSE stream
//! `/api/v1/events` (as the duty desk sees it, logged in as an
//! administrator). Latency: from the probe's publish call to that event
//! arriving at the SSE client; p50/p99 and how many took longer than
//! `--probe-window-ms` (3000) or never came (a lagging SSE client misses
//! events: the stream says `lagged`).
//!
//! Processes: the gateway runs in this process (`gateway::app`, as the e2e
//! tests run it; this process does nothing else but poll its metrics every
//! 20 ms). The publishers, the probe and the SSE client run in a child
//! process (this binary, `--role nodes`), so their CPU is not the
//! gateway's. With `--path mosquitto` a Mosquitto-alone reference runs
//! first (unless `--no-reference`): the same publisher process and load to
//! a fresh Mosquitto, and one plain QoS 1 subscriber process
//! (`--role subscriber`) that only counts; its msg/s, and each Mosquitto
//! run's ratio to it. CPU seconds from `/proc/PID/stat` (user + system)
//! between the start and the end of each run, per process (and per thread
//! name within this process); peak RSS from `VmHWM` (reset for this
//! process at the start of each run, but memory the allocator kept from an
//! earlier run in the same invocation still counts: run one combination
//! per invocation for the gateway's own peak).

// The per-run JSON object is one `json!`, deeper than the default allows.
#![recursion_limit = "256"]

/// The gateway runs in this process: the same heap as the `gateway` binary.
#[global_allocator]
static HEAP: mimalloc::MiMalloc = mimalloc::MiMalloc;

use e2e::*;
use gateway::config::{BrokerMode, Config, NodeConfig, RuleOverride, SinkConfig, SiteConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use wire::{ChannelStatus, Quantity};

// ------------------------------------------------------------------ args

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
    fn str(&self, name: &str, default: &str) -> String {
        self.value(name).unwrap_or(default).to_string()
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("{name} {v}: not a number")),
        }
    }
    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}

fn main() {
    gateway::heap::no_huge_pages();
    let args = Args(std::env::args().skip(1).collect());
    if args.flag("--help") || args.flag("-h") {
        println!("{}", HELP);
        return;
    }
    // The gateway's warnings and errors on stderr (`RUST_LOG` to change;
    // rumqttd logs every node disconnect as an error, so it is off).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rumqttd=off")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match args.value("--role") {
        Some("nodes") => rt.block_on(nodes_role(&args)),
        Some("subscriber") => rt.block_on(subscriber_role(&args)),
        _ => rt.block_on(orchestrate(&args)),
    }
}

const HELP: &str = "alarm-load: the alarm-path benchmark (one JSON line per run)
  --mode flood|paced        (flood)
  --shape normal|storm|both (both)
  --path inprocess|mosquitto|both (both)
  --store sqlite|postgres   (sqlite)
  --nodes N                 (100)
  --messages N              flood: messages per node (2000)
  --inflight N              flood: unacknowledged publishes per connection (100)
  --rate N --secs N         paced: total msg/s (20000) for N s (60)
  --deadline-secs N         bound on each run's publishing (300)
  --probe-interval-ms N     (1000)   --probe-window-ms N (3000)
  --shipped-rules           the shipped rules (alarms latch, flapping suppressed)
  --no-reference            no Mosquitto-alone reference";

// ------------------------------------------------------- the node fleet

/// `(site, node)` of each load node: sites `s00…` of ten nodes `n00…n09`.
fn node_ids(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("s{:02}", i / 10), format!("n{:02}", i % 10)))
        .collect()
}

/// The probe nodes' site; probe `k` is channel `p{k}` of node
/// `probe{k / PROBE_CHANNELS}`: a node keeps at most 32 channels (the
/// contract's cap, enforced by the gateway), so each probe node takes 30
/// fresh channels and the next probe node the next 30.
const PROBE_SITE: &str = "s00";
const PROBE_CHANNELS: u32 = 30;
/// Probe nodes: 360 probes, one a second, more than any run's deadline.
const PROBE_NODES: u32 = 12;

fn probe_node(k: u32) -> String {
    format!("probe{}", k / PROBE_CHANNELS)
}

fn user(site: &str, node: &str) -> String {
    gateway::ingest::mosquitto::node_username(site, node)
}

/// The gateway configuration: the sites and nodes, data in `dir`, the
/// benchmark's rule overrides unless `shipped_rules`.
fn bench_config(dir: &Path, nodes: usize, shipped_rules: bool) -> Config {
    let mut c = Config::default();
    c.storage.data_dir = dir.to_path_buf();
    c.offline_after_secs = 600;
    // `--auth anonymous` (the default): nodes of the file without
    // credentials log in through the embedded gate as themselves.
    c.mqtt.anonymous_config_nodes = true;
    let mut sites: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (s, n) in node_ids(nodes) {
        sites.entry(s).or_default().push(n);
    }
    for i in 0..PROBE_NODES {
        sites
            .entry(PROBE_SITE.to_string())
            .or_default()
            .push(probe_node(i * PROBE_CHANNELS));
    }
    c.sites = sites
        .into_iter()
        .map(|(id, nodes)| SiteConfig {
            name: format!("压测机构 {id}"),
            rules: Default::default(),
            nodes: nodes
                .into_iter()
                .map(|n| NodeConfig {
                    location: format!("{n} 配电箱"),
                    id: n,
                    ..Default::default()
                })
                .collect(),
            id,
        })
        .collect();
    if !shipped_rules {
        c.rules.insert(
            "residual_current".into(),
            RuleOverride {
                latch_alarm: Some(false),
                flap_transitions: Some(0),
                ..Default::default()
            },
        );
        c.rules.insert(
            "temperature".into(),
            RuleOverride {
                pre_alarm: Some(500),
                alarm: Some(550),
                latch_alarm: Some(false),
                flap_transitions: Some(0),
                ..Default::default()
            },
        );
    }
    c
}

/// splitmix64: reproducible, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
}

/// One node's readings, message after message.
struct Source {
    storm: bool,
    rng: Rng,
    base_rc: i32,
    temp: i32,
    temp_base: i32,
}

impl Source {
    fn new(storm: bool, seed: u64) -> Source {
        let mut rng = Rng(seed);
        let base_rc = rng.range(20, 80);
        let temp_base = rng.range(250, 350);
        Source {
            storm,
            rng,
            base_rc,
            temp: temp_base,
            temp_base,
        }
    }

    /// `(rc1 mA, t1 0.1 °C)`.
    fn next(&mut self) -> (i32, i32) {
        if self.storm {
            (self.rng.range(0, 599), self.rng.range(200, 600))
        } else {
            let rc = self.base_rc + self.rng.range(-5, 5);
            // A ±0.2 °C walk, kept within ±3 °C of the node's own level
            // (and so within 25–35 °C ± 3) so the rate-of-rise rule
            // (10 °C a minute) never fires.
            self.temp =
                (self.temp + self.rng.range(-2, 2)).clamp(self.temp_base - 30, self.temp_base + 30);
            (rc, self.temp)
        }
    }
}

fn now_ms() -> u64 {
    gateway::domain::time::now_ms()
}

fn payload(seq: u32, rc: i32, t: i32) -> Vec<u8> {
    telemetry(
        1,
        seq,
        now_ms(),
        &[
            ("rc1", Quantity::ResidualCurrent, rc, ChannelStatus::Ok),
            ("t1", Quantity::Temperature, t, ChannelStatus::Ok),
        ],
    )
}

// ------------------------------------------------------- /proc readings

/// CPU seconds (user + system) of a process or thread so far.
fn cpu_of(stat_path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return 0.0;
    };
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn cpu_secs(pid: u32) -> f64 {
    cpu_of(&format!("/proc/{pid}/stat"))
}

/// Peak resident set (VmHWM) in MiB.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets this process's VmHWM to its current RSS (Linux `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU seconds by thread of this process: `tid → (name, secs)`.
fn thread_cpu() -> HashMap<u32, (String, f64)> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let name = std::fs::read_to_string(e.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let secs = cpu_of(&e.path().join("stat").display().to_string());
        out.insert(tid, (name, secs));
    }
    out
}

/// CPU seconds per thread name between two [`thread_cpu`] readings.
fn thread_cpu_diff(
    before: &HashMap<u32, (String, f64)>,
    after: &HashMap<u32, (String, f64)>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (tid, (name, secs)) in after {
        let was = before.get(tid).map_or(0.0, |b| b.1);
        *out.entry(name.clone()).or_insert(0.0) += secs - was;
    }
    out.retain(|_, v| *v >= 0.05);
    out.into_iter()
        .map(|(k, v)| (k, (v * 10.0).round() / 10.0))
        .collect()
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The `q` quantile of sorted `v`.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

fn emit(v: &Value) {
    println!("{v}");
}

// ------------------------------------------------- child: the node fleet

/// One node's MQTT connection, speaking MQTT 3.1.1 with the firmware's
/// own codec (`firmware::mqtt::codec`) as a node does: QoS 1, a
/// persistent session, client id = username = `{site}.{node}`. Messages
/// go out as fast as the in-flight window allows, as many as fit in one
/// write; a reader task counts the PUBACKs. A general-purpose client
/// (rumqttc, as before) spent more CPU per message than the gateway
/// itself, on the same two cores, so the benchmark measured the load tool.
/// A lost connection is counted (`reconnects`) and not resumed: its
/// messages stay unacknowledged and the run reports itself incomplete.
struct Conn {
    write: tokio::net::tcp::OwnedWriteHalf,
    acked: Arc<AtomicU64>,
    acks: Arc<tokio::sync::Notify>,
    lost: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
    topic: String,
    inflight: u64,
    sent: u64,
    pkid: u16,
    buf: Vec<u8>,
    last_write: Instant,
}

impl Conn {
    async fn connect(
        broker: SocketAddr,
        site: &str,
        node: &str,
        password: bool,
        inflight: u16,
        reconnects: Arc<AtomicU64>,
    ) -> Conn {
        use firmware::mqtt::codec;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let id = user(site, node);
        // The firmware always sends its username; without credentials in
        // the gateway's registry the gate takes it as anonymous.
        let pass = if password {
            format!("pw-{id}")
        } else {
            "anonymous".to_string()
        };
        let stream = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::net::TcpStream::connect(broker),
        )
        .await
        .unwrap_or_else(|_| panic!("node {id}: connect timed out"))
        .unwrap_or_else(|e| panic!("node {id}: connect: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        let (mut read, mut write) = stream.into_split();
        let mut pkt = vec![0u8; 512];
        let n = codec::connect(
            &mut pkt,
            &codec::Connect {
                client_id: &id,
                keep_alive_s: KEEP_ALIVE_S,
                clean_session: false,
                username: Some(&id),
                password: Some(pass.as_bytes()),
                will: None,
            },
        )
        .expect("CONNECT fits");
        write.write_all(&pkt[..n]).await.expect("send CONNECT");
        // CONNACK: 4 bytes.
        let mut ack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(20), read.read_exact(&mut ack))
            .await
            .unwrap_or_else(|_| panic!("node {id}: no CONNACK"))
            .unwrap_or_else(|e| panic!("node {id}: CONNACK: {e}"));
        match codec::decode(&ack) {
            Ok(codec::Packet::ConnAck { code: 0, .. }) => {}
            other => panic!("node {id} could not connect: {other:?}"),
        }
        let acked = Arc::new(AtomicU64::new(0));
        let acks = Arc::new(tokio::sync::Notify::new());
        let lost = Arc::new(AtomicBool::new(false));
        let reader = {
            let (acked, acks, lost) = (acked.clone(), acks.clone(), lost.clone());
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match read.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let mut at = 0;
                    let mut puback = 0;
                    while let Ok(Some((first, len, hl))) = codec::parse_header(&buf[at..]) {
                        if buf.len() - at < hl + len {
                            break;
                        }
                        if first >> 4 == 4 {
                            puback += 1;
                        }
                        at += hl + len;
                    }
                    buf.drain(..at);
                    if puback > 0 {
                        acked.fetch_add(puback, Ordering::Relaxed);
                        acks.notify_one();
                    }
                }
                lost.store(true, Ordering::Relaxed);
                reconnects.fetch_add(1, Ordering::Relaxed);
                acks.notify_one();
            })
        };
        Conn {
            write,
            acked,
            acks,
            lost,
            reader,
            topic: format!("fire/v1/{site}/{node}/telemetry"),
            inflight: u64::from(inflight),
            sent: 0,
            pkid: 0,
            buf: Vec::with_capacity(64 * 1024),
            last_write: Instant::now(),
        }
    }

    /// Free places in the in-flight window, waiting for one; 0 once the
    /// connection is lost.
    async fn window(&self) -> u64 {
        loop {
            let notified = self.acks.notified();
            if self.lost.load(Ordering::Relaxed) {
                return 0;
            }
            let open = self.sent - self.acked.load(Ordering::Relaxed).min(self.sent);
            if open < self.inflight {
                return self.inflight - open;
            }
            notified.await;
        }
    }

    /// Adds one QoS 1 PUBLISH to the pending write.
    fn queue(&mut self, payload: &[u8]) {
        self.pkid = self.pkid.checked_add(1).unwrap_or(1);
        let start = self.buf.len();
        self.buf
            .resize(start + self.topic.len() + payload.len() + 16, 0);
        let n = firmware::mqtt::codec::publish(
            &mut self.buf[start..],
            &self.topic,
            payload,
            1,
            false,
            false,
            self.pkid,
        )
        .expect("PUBLISH fits");
        self.buf.truncate(start + n);
        self.sent += 1;
    }

    /// Writes what is queued.
    async fn flush(&mut self) {
        use tokio::io::AsyncWriteExt;
        if self.buf.is_empty() {
            return;
        }
        if self.write.write_all(&self.buf).await.is_err() {
            self.lost.store(true, Ordering::Relaxed);
        }
        self.buf.clear();
        self.last_write = Instant::now();
    }

    /// Publishes one message on `topic`, waiting for room in the window.
    async fn publish_to(&mut self, topic: &str, payload: &[u8]) {
        if self.window().await == 0 {
            return;
        }
        let own = std::mem::replace(&mut self.topic, topic.to_string());
        self.queue(payload);
        self.topic = own;
        self.flush().await;
    }

    /// Keeps an idle connection alive (PINGREQ).
    async fn keep_alive(&mut self) {
        if self.last_write.elapsed() > Duration::from_secs(u64::from(KEEP_ALIVE_S) / 2) {
            self.buf.extend_from_slice(&[0xC0, 0x00]);
            self.flush().await;
        }
    }

    async fn disconnect(mut self) {
        // The reader goes first: the broker closing the connection after
        // DISCONNECT is not a lost connection.
        self.reader.abort();
        self.buf.extend_from_slice(&[0xE0, 0x00]);
        self.flush().await;
    }
}

/// The nodes' MQTT keep-alive.
const KEEP_ALIVE_S: u16 = 60;

/// What the SSE client saw.
#[derive(Default)]
struct Seen {
    probes: HashMap<u32, Instant>,
    counts: BTreeMap<String, u64>,
    lagged_missed: u64,
    /// Why the stream ended before the run did, if it did.
    ended: Option<String>,
}

/// Reads the gateway's event stream, noting when each probe's alarm
/// arrives. Returns once the stream answers (the subscription exists).
async fn watch_events(url: String, token: String, seen: Arc<Mutex<Seen>>) {
    let resp = reqwest::Client::new()
        .get(&url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    tokio::spawn(async move {
        let mut resp = resp;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    seen.lock().expect("seen").ended = Some("closed by the gateway".into());
                    break;
                }
                Err(e) => {
                    seen.lock().expect("seen").ended = Some(e.to_string());
                    break;
                }
            };
            let at = Instant::now();
            buf.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(len) = buf[start..].iter().position(|b| *b == b'\n') {
                let raw = &buf[start..start + len];
                start += len + 1;
                let line = String::from_utf8_lossy(raw);
                let line = line.trim_end();
                if let Some(name) = line.strip_prefix("event:") {
                    let mut s = seen.lock().expect("seen");
                    *s.counts.entry(name.trim().to_string()).or_insert(0) += 1;
                    continue;
                }
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                // Cheap filter first: storms carry thousands of events.
                if data.contains("\"lagged\"") {
                    if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                        let n = v["missed"].as_u64().unwrap_or(0);
                        seen.lock().expect("seen").lagged_missed += n;
                    }
                    continue;
                }
                if !data.contains("\"alarm_raised\"") || !data.contains("probe") {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                    continue;
                };
                let a = &v["alarm"];
                if a["site"] != PROBE_SITE {
                    continue;
                }
                let k = a["channel"]
                    .as_str()
                    .and_then(|c| c.strip_prefix('p'))
                    .and_then(|k| k.parse::<u32>().ok())
                    .filter(|k| a["node"].as_str() == Some(probe_node(*k).as_str()));
                if let Some(k) = k {
                    seen.lock().expect("seen").probes.entry(k).or_insert(at);
                }
            }
            buf.drain(..start);
        }
    });
}

async fn nodes_role(a: &Args) {
    let broker: SocketAddr = a.str("--broker", "").parse().expect("--broker ADDR");
    let password = a.str("--auth", "anonymous") == "password";
    let nodes: usize = a.num("--nodes", 100);
    let storm = a.str("--shape", "normal") == "storm";
    let paced = a.str("--mode", "flood") == "paced";
    let messages: u32 = a.num("--messages", 2000);
    let rate: f64 = a.num("--rate", 20000.0);
    let secs: f64 = a.num("--secs", 60.0);
    let inflight: u16 = a.num("--inflight", 100);
    let deadline = Duration::from_secs(a.num("--deadline-secs", 300));
    let probe_interval = Duration::from_millis(a.num("--probe-interval-ms", 1000));
    let probe_window = Duration::from_millis(a.num("--probe-window-ms", 3000));
    let events = a.value("--events-url").map(str::to_string);
    let token = a.str("--token", "");
    let seed: u64 = a.num("--seed", 1);

    let reconnects = Arc::new(AtomicU64::new(0));
    let mut connecting = Vec::new();
    // All from one address, as a fleet behind one NAT: a few connecting at
    // a time, as nodes with jittered back-off do; the gate allows 32
    // connections per address that have not yet sent CONNECT.
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    for (site, node) in node_ids(nodes) {
        let r = reconnects.clone();
        let gate = gate.clone();
        connecting.push(tokio::spawn(async move {
            let _turn = gate.acquire_owned().await.expect("semaphore");
            Conn::connect(broker, &site, &node, password, inflight, r).await
        }));
    }
    let mut conns = Vec::new();
    for c in connecting {
        conns.push(c.await.expect("connect task"));
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let probe = match &events {
        Some(url) => {
            watch_events(url.clone(), token.clone(), seen.clone()).await;
            let mut probes = Vec::new();
            for i in 0..PROBE_NODES {
                let node = probe_node(i * PROBE_CHANNELS);
                probes.push(
                    Conn::connect(
                        broker,
                        PROBE_SITE,
                        &node,
                        password,
                        inflight,
                        reconnects.clone(),
                    )
                    .await,
                );
            }
            Some(probes)
        }
        None => None,
    };
    emit(&json!({"ready": true}));
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let _ = stdin.next_line().await;

    let cpu0 = cpu_secs(std::process::id());
    let t0 = Instant::now();
    let published = Arc::new(AtomicU64::new(0));
    let sending_done = Arc::new(AtomicBool::new(false));
    let per_node_rate = rate / nodes as f64;
    let per_node_total = if paced {
        (per_node_rate * secs).round() as u64
    } else {
        u64::from(messages)
    };
    let mut tasks = Vec::new();
    for (i, conn) in conns.into_iter().enumerate() {
        let published = published.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = conn;
            let mut src = Source::new(storm, seed.wrapping_mul(1000).wrapping_add(i as u64));
            // Paced nodes start staggered over one 10 ms tick.
            let start = t0 + Duration::from_micros((i as u64 * 10_000) / nodes as u64);
            let mut sent = 0u64;
            while sent < per_node_total && t0.elapsed() < deadline {
                if paced {
                    let el = Instant::now()
                        .saturating_duration_since(start)
                        .as_secs_f64();
                    let due = ((el * per_node_rate) as u64 + 1).min(per_node_total);
                    while sent < due {
                        let free = conn.window().await;
                        if free == 0 {
                            break;
                        }
                        let n = free.min(due - sent);
                        for _ in 0..n {
                            let (rc, t) = src.next();
                            conn.queue(&payload(sent as u32 + 1, rc, t));
                            sent += 1;
                        }
                        conn.flush().await;
                        published.fetch_add(n, Ordering::Relaxed);
                    }
                    if conn.lost.load(Ordering::Relaxed) {
                        break;
                    }
                    if sent < per_node_total {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                } else {
                    // As many as the window has room for, in one write.
                    let free = conn.window().await;
                    if free == 0 {
                        break;
                    }
                    let n = free.min(per_node_total - sent);
                    for _ in 0..n {
                        let (rc, t) = src.next();
                        conn.queue(&payload(sent as u32 + 1, rc, t));
                        sent += 1;
                    }
                    conn.flush().await;
                    published.fetch_add(n, Ordering::Relaxed);
                }
            }
            let sent_at = t0.elapsed();
            // Every PUBACK, or the deadline.
            while conn.acked.load(Ordering::Relaxed) < sent
                && !conn.lost.load(Ordering::Relaxed)
                && t0.elapsed() < deadline
            {
                conn.keep_alive().await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (conn, sent, sent_at, t0.elapsed())
        }));
    }
    // Progress every second, and the end of sending.
    let progress = {
        let published = published.clone();
        let sending_done = sending_done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::from_std(t0 + Duration::from_secs(1)),
                Duration::from_secs(1),
            );
            while !sending_done.load(Ordering::Relaxed) {
                tick.tick().await;
                emit(&json!({
                    "progress": true,
                    "t": r2(t0.elapsed().as_secs_f64()),
                    "published": published.load(Ordering::Relaxed),
                }));
            }
        })
    };
    // The probe: a 700 mA reading on a fresh channel each interval, until
    // the orchestrator says `stop` (the gateway has caught up) or the
    // deadline.
    let probes_stop = Arc::new(AtomicBool::new(false));
    let probe_task = probe.map(|conn| {
        let sending_done = probes_stop.clone();
        tokio::spawn(async move {
            let mut conns = conn;
            let mut sends: Vec<(u32, Instant)> = Vec::new();
            let first = t0 + probe_interval / 2;
            let mut k = 0u32;
            loop {
                tokio::time::sleep_until(tokio::time::Instant::from_std(
                    first + probe_interval * k,
                ))
                .await;
                if sending_done.load(Ordering::Relaxed) || k >= PROBE_NODES * PROBE_CHANNELS {
                    break;
                }
                let p = telemetry(
                    1,
                    k % PROBE_CHANNELS + 1,
                    now_ms(),
                    &[(
                        &format!("p{k}"),
                        Quantity::ResidualCurrent,
                        700,
                        ChannelStatus::Ok,
                    )],
                );
                sends.push((k, Instant::now()));
                let node = probe_node(k);
                let topic = format!("fire/v1/{PROBE_SITE}/{node}/telemetry");
                conns[(k / PROBE_CHANNELS) as usize]
                    .publish_to(&topic, &p)
                    .await;
                k += 1;
            }
            (conns, sends)
        })
    });

    let mut sent_total = 0u64;
    let mut last_send = Duration::ZERO;
    let mut last_ack = Duration::ZERO;
    let mut acked_total = 0u64;
    let mut conns = Vec::new();
    for t in tasks {
        let (conn, sent, sent_at, done_at) = t.await.expect("node task");
        sent_total += sent;
        acked_total += conn.acked.load(Ordering::Relaxed).min(sent);
        last_send = last_send.max(sent_at);
        last_ack = last_ack.max(done_at);
        conns.push(conn);
    }
    sending_done.store(true, Ordering::Relaxed);
    progress.abort();
    emit(&json!({
        "sending_done": true,
        "t": r2(last_send.as_secs_f64()),
        "published": sent_total,
    }));
    if probe_task.is_some() {
        let left = deadline.saturating_sub(t0.elapsed()) + Duration::from_secs(60);
        let _ = tokio::time::timeout(left, stdin.next_line()).await;
    }
    probes_stop.store(true, Ordering::Relaxed);
    let mut probe_out = Value::Null;
    let mut probe_msgs = 0u64;
    if let Some(task) = probe_task {
        let (probe_conns, sends) = task.await.expect("probe task");
        probe_msgs = sends.len() as u64;
        // Late alarms: wait up to the window after the last probe.
        if let Some((_, last)) = sends.last() {
            let until = *last + probe_window;
            while Instant::now() < until && seen.lock().expect("seen").probes.len() < sends.len() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        probe_out = {
            let s = seen.lock().expect("seen");
            let mut lat: Vec<f64> = sends
                .iter()
                .filter_map(|(k, at)| {
                    s.probes
                        .get(k)
                        .map(|r| r.saturating_duration_since(*at).as_secs_f64() * 1000.0)
                })
                .collect();
            lat.sort_by(|a, b| a.total_cmp(b));
            let window_ms = probe_window.as_secs_f64() * 1000.0;
            let missed = sends.len() - lat.iter().filter(|l| **l <= window_ms).count();
            json!({
                "sent": sends.len(),
                "seen": lat.len(),
                "p50_ms": quantile(&lat, 0.5).map(r1),
                "p99_ms": quantile(&lat, 0.99).map(r1),
                "max_ms": lat.last().copied().map(r1),
                "missed_window": missed,
                "window_ms": window_ms,
                "stream_events": s.counts,
                "stream_lagged_missed": s.lagged_missed,
                "stream_ended_early": s.ended,
            })
        };
        for conn in probe_conns {
            conn.disconnect().await;
        }
    }
    let cpu = cpu_secs(std::process::id()) - cpu0;
    emit(&json!({
        "done": true,
        "published": sent_total,
        "acked": acked_total,
        "probe_messages": probe_msgs,
        "last_publish_secs": r2(last_send.as_secs_f64()),
        "last_puback_secs": r2(last_ack.as_secs_f64()),
        "reconnects": reconnects.load(Ordering::Relaxed),
        "probe": probe_out,
        "cpu_secs": r1(cpu),
        "peak_rss_mb": r1(peak_rss_mb(std::process::id())),
    }));
    for c in conns {
        c.disconnect().await;
    }
}

// -------------------------------------------- child: plain subscriber

async fn subscriber_role(a: &Args) {
    let broker: SocketAddr = a.str("--broker", "").parse().expect("--broker ADDR");
    let expect: u64 = a.num("--expect", 0);
    let deadline = Duration::from_secs(a.num("--deadline-secs", 300));
    let mut o = MqttOptions::new(
        "bench-ref-subscriber",
        broker.ip().to_string(),
        broker.port(),
    );
    o.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30))
        .set_credentials(GATEWAY_USER.0, GATEWAY_USER.1)
        .set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    client
        .subscribe("fire/v1/+/+/telemetry", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let mut received = 0u64;
    let mut cpu0 = 0.0;
    let mut ready_at: Option<Instant> = None;
    let end = loop {
        if ready_at.is_some_and(|r| r.elapsed() > deadline) {
            break false;
        }
        let Ok(ev) = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await else {
            continue;
        };
        match ev {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                cpu0 = cpu_secs(std::process::id());
                ready_at = Some(Instant::now());
                emit(&json!({"ready": true}));
            }
            Ok(Event::Incoming(Packet::Publish(_))) => {
                received += 1;
                if received >= expect {
                    break true;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("reference subscriber: {e}"),
        }
    };
    emit(&json!({
        "done": true,
        "complete": end,
        "received": received,
        "cpu_secs": r1(cpu_secs(std::process::id()) - cpu0),
        "peak_rss_mb": r1(peak_rss_mb(std::process::id())),
    }));
    // Let the last PUBACKs leave.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        loop {
            let _ = eventloop.poll().await;
        }
    })
    .await;
}

// ------------------------------------------------------ the orchestrator

#[derive(Clone, Copy, PartialEq, Eq)]
enum PathKind {
    InProcess,
    Mosquitto,
}

impl PathKind {
    fn name(self) -> &'static str {
        match self {
            PathKind::InProcess => "inprocess",
            PathKind::Mosquitto => "mosquitto",
        }
    }
}

/// A child process of this binary speaking JSON lines.
struct ChildProc {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stdin: Option<tokio::process::ChildStdin>,
}

impl ChildProc {
    fn spawn(args: &[String]) -> ChildProc {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = tokio::process::Command::new(exe)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        ChildProc {
            child,
            lines: BufReader::new(stdout).lines(),
            stdin,
        }
    }

    async fn next(&mut self) -> Option<Value> {
        loop {
            let line = self.lines.next_line().await.ok()??;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return Some(v);
            }
            eprintln!("child: {line}");
        }
    }

    async fn wait_ready(&mut self, what: &str) {
        match tokio::time::timeout(Duration::from_secs(120), self.next()).await {
            Ok(Some(v)) if v["ready"] == true => {}
            other => panic!("{what} did not get ready: {other:?}"),
        }
    }

    async fn go(&mut self) {
        self.say("go").await;
    }

    async fn say(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(format!("{line}\n").as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }
}

/// The settings shared by every run.
struct Plan {
    mode: String,
    nodes: usize,
    messages: u32,
    rate: f64,
    secs: f64,
    inflight: u16,
    deadline_secs: u64,
    probe_interval_ms: u64,
    probe_window_ms: u64,
    postgres: bool,
    shipped_rules: bool,
}

impl Plan {
    fn paced(&self) -> bool {
        self.mode == "paced"
    }

    /// Load messages of a run (the probe's not counted).
    fn planned(&self) -> u64 {
        if self.paced() {
            ((self.rate / self.nodes as f64 * self.secs).round() as u64) * self.nodes as u64
        } else {
            u64::from(self.messages) * self.nodes as u64
        }
    }

    fn node_args(&self, broker: SocketAddr, password: bool, storm: bool) -> Vec<String> {
        vec![
            "--role".into(),
            "nodes".into(),
            "--broker".into(),
            broker.to_string(),
            "--auth".into(),
            if password { "password" } else { "anonymous" }.into(),
            "--nodes".into(),
            self.nodes.to_string(),
            "--shape".into(),
            if storm { "storm" } else { "normal" }.into(),
            "--mode".into(),
            self.mode.clone(),
            "--messages".into(),
            self.messages.to_string(),
            "--rate".into(),
            self.rate.to_string(),
            "--secs".into(),
            self.secs.to_string(),
            "--inflight".into(),
            self.inflight.to_string(),
            "--deadline-secs".into(),
            self.deadline_secs.to_string(),
            "--probe-interval-ms".into(),
            self.probe_interval_ms.to_string(),
            "--probe-window-ms".into(),
            self.probe_window_ms.to_string(),
        ]
    }
}

async fn orchestrate(a: &Args) {
    let plan = Plan {
        mode: a.str("--mode", "flood"),
        nodes: a.num("--nodes", 100),
        messages: a.num("--messages", 2000),
        rate: a.num("--rate", 20000.0),
        secs: a.num("--secs", 60.0),
        inflight: a.num("--inflight", 100),
        deadline_secs: a.num("--deadline-secs", 300),
        probe_interval_ms: a.num("--probe-interval-ms", 1000),
        probe_window_ms: a.num("--probe-window-ms", 3000),
        postgres: a.str("--store", "sqlite") == "postgres",
        shipped_rules: a.flag("--shipped-rules"),
    };
    assert!(
        matches!(plan.mode.as_str(), "flood" | "paced"),
        "--mode flood|paced"
    );
    let shapes: Vec<bool> = match a.str("--shape", "both").as_str() {
        "normal" => vec![false],
        "storm" => vec![true],
        "both" => vec![false, true],
        s => panic!("--shape {s}: normal|storm|both"),
    };
    let paths: Vec<PathKind> = match a.str("--path", "both").as_str() {
        "inprocess" => vec![PathKind::InProcess],
        "mosquitto" => vec![PathKind::Mosquitto],
        "both" => vec![PathKind::InProcess, PathKind::Mosquitto],
        s => panic!("--path {s}: inprocess|mosquitto|both"),
    };
    for path in paths {
        let mut reference = None;
        if path == PathKind::Mosquitto && !a.flag("--no-reference") {
            let r = mosquitto_alone(&plan).await;
            reference = r["msg_per_sec"].as_f64();
            emit(&r);
        }
        for &storm in &shapes {
            let mut r = run_gateway(&plan, path, storm).await;
            if let (Some(base), Some(got)) = (reference, r["msg_per_sec"].as_f64()) {
                r["mosquitto_alone_msg_per_sec"] = json!(base);
                r["ratio_vs_mosquitto_alone"] = json!(r2(got / base));
                // Acknowledged by the gateway against received by the
                // reference subscriber: the same end point on both sides.
                if let Some(acked) = r["msg_per_sec_acked"].as_f64() {
                    r["ratio_acked_vs_mosquitto_alone"] = json!(r2(acked / base));
                }
            }
            emit(&r);
        }
    }
}

/// Mosquitto alone: the same publisher process and load (normal shape, no
/// probe) into a fresh Mosquitto, one plain QoS 1 subscriber process that
/// counts. Time from the first publish to the subscriber's last message.
async fn mosquitto_alone(plan: &Plan) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = bench_config(dir.path(), plan.nodes, plan.shipped_rules);
    let broker = mosquitto_for(&config, &[], "");
    let bpid = broker.pid().unwrap_or(0);
    let expect = plan.planned();
    let mut sub = ChildProc::spawn(&[
        "--role".into(),
        "subscriber".into(),
        "--broker".into(),
        broker.addr().to_string(),
        "--expect".into(),
        expect.to_string(),
        "--deadline-secs".into(),
        plan.deadline_secs.to_string(),
    ]);
    sub.wait_ready("reference subscriber").await;
    let mut publ = ChildProc::spawn(&plan.node_args(broker.addr(), true, false));
    publ.wait_ready("reference publishers").await;
    let cpu0 = cpu_secs(bpid);
    let load0 = loadavg();
    let t0 = Instant::now();
    publ.go().await;
    let sub_done = sub.next().await.unwrap_or(Value::Null);
    let secs = t0.elapsed().as_secs_f64();
    let cpu_broker = cpu_secs(bpid) - cpu0;
    let rss_broker = peak_rss_mb(bpid);
    let mut pub_done = Value::Null;
    while let Some(v) = publ.next().await {
        if v["done"] == true {
            pub_done = v;
            break;
        }
    }
    let _ = publ.child.wait().await;
    let _ = sub.child.wait().await;
    let received = sub_done["received"].as_u64().unwrap_or(0);
    json!({
        "bench": "alarm",
        "run": "mosquitto_alone_reference",
        "mode": plan.mode,
        "shape": "normal",
        "nodes": plan.nodes,
        "readings_per_message": 2,
        "messages": expect,
        "received": received,
        "complete": sub_done["complete"] == true,
        "secs": r2(secs),
        "msg_per_sec": (received as f64 / secs).round(),
        "readings_per_sec": (2.0 * received as f64 / secs).round(),
        "publishers_last_puback_secs": pub_done["last_puback_secs"],
        "cpu_secs": {
            "mosquitto": r1(cpu_broker),
            "publishers": pub_done["cpu_secs"],
            "subscriber": sub_done["cpu_secs"],
        },
        "peak_rss_mb": {
            "mosquitto": r1(rss_broker),
            "publishers": pub_done["peak_rss_mb"],
            "subscriber": sub_done["peak_rss_mb"],
        },
        "loadavg_1m": [load0, loadavg()],
    })
}

/// Load messages the gateway has handled: its accepted readings over two
/// (the probe's one-reading messages make it a few high). Not its acks,
/// which count redelivered duplicates too.
fn handled(m: &gateway::metrics::Metrics) -> u64 {
    m.readings_accepted.load(Ordering::Relaxed) / 2
}

/// CPU seconds of the processes of a run.
#[derive(Clone, Copy)]
struct CpuSnap {
    gateway: f64,
    broker: Option<f64>,
    vm: f64,
    pg: f64,
}

impl CpuSnap {
    fn minus(&self, o: &CpuSnap) -> CpuSnap {
        CpuSnap {
            gateway: self.gateway - o.gateway,
            broker: self.broker.zip(o.broker).map(|(a, b)| a - b),
            vm: self.vm - o.vm,
            pg: self.pg - o.pg,
        }
    }
}

/// One run through the gateway.
async fn run_gateway(plan: &Plan, path: PathKind, storm: bool) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let vm = VictoriaMetrics::start();
    let pg = plan.postgres.then(|| Postgres::start(true));
    let mut config = bench_config(dir.path(), plan.nodes, plan.shipped_rules);
    config.sink = Some(SinkConfig {
        url: vm.url(),
        ..Default::default()
    });
    if let Some(pg) = &pg {
        config.storage.database_url = Some(pg.url());
    }
    let broker = match path {
        PathKind::InProcess => {
            config.mqtt.broker = BrokerMode::Embedded;
            config.mqtt.embedded_listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
            None
        }
        PathKind::Mosquitto => {
            let b = mosquitto_for(&config, &[], "");
            config.mqtt.broker = BrokerMode::External;
            config.mqtt.host = "127.0.0.1".into();
            config.mqtt.port = b.port;
            config.mqtt.client_id = "fire-gateway-bench".into();
            config.mqtt.username = Some(GATEWAY_USER.0.into());
            config.mqtt.password = Some(GATEWAY_USER.1.into());
            Some(b)
        }
    };
    let issues = config.validate();
    assert!(issues.is_empty(), "configuration: {issues:?}");
    let broker_addr = match &broker {
        Some(b) => b.addr(),
        None => config.mqtt.embedded_listen,
    };
    let gw = start_gateway(config.clone()).await;
    let m = gw.metrics.clone();
    wait_until(
        Duration::from_secs(30),
        "the gateway connected to its broker",
        || m.mqtt_connections.load(Ordering::Relaxed) > 0,
    )
    .await;
    let token = admin_token(&gw).await;

    let mut args = plan.node_args(broker_addr, path == PathKind::Mosquitto, storm);
    args.extend([
        "--events-url".into(),
        format!("http://{}/api/v1/events", gw.http_addr),
        "--token".into(),
        token,
    ]);
    let mut nodes = ChildProc::spawn(&args);
    nodes.wait_ready("the node fleet").await;

    let me = std::process::id();
    let bpid = broker.as_ref().and_then(|b| b.pid());
    let vpid = vm.pid().unwrap_or(0);
    let mut pg_pids = pg.as_ref().map(|p| p.pids()).unwrap_or_default();
    let snap = |pg_pids: &[u32]| CpuSnap {
        gateway: cpu_secs(me),
        broker: bpid.map(cpu_secs),
        vm: cpu_secs(vpid),
        pg: pg_pids.iter().copied().map(cpu_secs).sum(),
    };
    reset_peak_rss();
    let threads0 = thread_cpu();
    let cpu0 = snap(&pg_pids);
    let load0 = loadavg();
    let t0 = Instant::now();
    nodes.go().await;

    // Poll the gateway's counters every 20 ms (CPU every 100 ms) into a
    // timeline; follow the child's lines. The run ends at the first sample
    // where the gateway has acknowledged every message the child reports
    // having published and VictoriaMetrics has taken every line.
    let deadline = t0 + Duration::from_secs(plan.deadline_secs + 60);
    let mut timeline: Vec<(f64, u64, u64)> = Vec::new();
    let mut cpu_timeline: Vec<(f64, CpuSnap)> = Vec::new();
    let mut max_backlog = 0u64;
    let mut backlog_at_end = None;
    let mut sending_done_at = None;
    let mut done: Option<Value> = None;
    let mut finished_at: Option<f64> = None;
    // When the gateway had acknowledged every message (before the sink's
    // last flush reached VictoriaMetrics): the counterpart of the
    // Mosquitto-alone subscriber's last message.
    let mut acked_at: Option<f64> = None;
    let mut child_open = true;
    let mut tick = 0u64;
    let mut load_published: Option<u64> = None;
    let mut stop_sent = false;
    loop {
        let t = t0.elapsed().as_secs_f64();
        timeline.push((
            t,
            m.ack_delay.count(),
            m.sink_lines_written.load(Ordering::Relaxed),
        ));
        if tick.is_multiple_of(5) {
            if tick.is_multiple_of(100) && pg.is_some() {
                pg_pids = pg.as_ref().map(|p| p.pids()).unwrap_or_default();
            }
            cpu_timeline.push((t, snap(&pg_pids)));
        }
        tick += 1;
        if let Some(d) = &done {
            let published = d["published"].as_u64().unwrap_or(0);
            let probes = d["probe_messages"].as_u64().unwrap_or(0);
            let (msgs, want_lines) = (published + probes, 2 * published + probes);
            if acked_at.is_none() {
                acked_at = timeline
                    .iter()
                    .find(|(_, acked, _)| *acked >= msgs)
                    .map(|s| s.0);
            }
            if let Some(s) = timeline
                .iter()
                .find(|(_, acked, lines)| *acked >= msgs && *lines >= want_lines)
            {
                finished_at = Some(s.0);
                break;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        // The probe runs until the gateway has caught up with the load.
        if !stop_sent && load_published.is_some_and(|p| handled(&m) >= p) {
            nodes.say("stop").await;
            stop_sent = true;
        }
        tokio::select! {
            line = nodes.next(), if child_open => match line {
                None => child_open = false,
                Some(v) if v["progress"] == true => {
                    let p = v["published"].as_u64().unwrap_or(0);
                    max_backlog = max_backlog.max(p.saturating_sub(handled(&m)));
                }
                Some(v) if v["sending_done"] == true => {
                    let p = v["published"].as_u64().unwrap_or(0);
                    backlog_at_end = Some(p.saturating_sub(handled(&m)));
                    max_backlog = max_backlog.max(backlog_at_end.unwrap_or(0));
                    sending_done_at = v["t"].as_f64();
                    load_published = Some(p);
                }
                Some(v) if v["done"] == true => done = Some(v),
                Some(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let end = finished_at.unwrap_or_else(|| t0.elapsed().as_secs_f64());
    // CPU at the first reading at or after the end.
    let cpu1 = cpu_timeline
        .iter()
        .find(|(t, _)| *t >= end)
        .map(|(_, c)| *c)
        .unwrap_or_else(|| snap(&pg_pids));
    let threads1 = thread_cpu();
    let peak = (
        peak_rss_mb(me),
        bpid.map(peak_rss_mb),
        peak_rss_mb(vpid),
        pg_pids.iter().copied().map(peak_rss_mb).sum::<f64>(),
    );
    let load1 = loadavg();
    let done = done.unwrap_or(Value::Null);
    let published = done["published"].as_u64().unwrap_or(0);
    let probe_msgs = done["probe_messages"].as_u64().unwrap_or(0);
    let msgs = published + probe_msgs;
    let readings = 2 * published + probe_msgs;
    let cpu = cpu1.minus(&cpu0);
    let total_cpu = cpu.gateway
        + cpu.broker.unwrap_or(0.0)
        + cpu.vm
        + cpu.pg
        + done["cpu_secs"].as_f64().unwrap_or(0.0);
    let mut r = json!({
        "bench": "alarm",
        "run": "gateway",
        "path": path.name(),
        "shape": if storm { "storm" } else { "normal" },
        "mode": plan.mode,
        "store": if plan.postgres { "postgres" } else { "sqlite" },
        "rules": if plan.shipped_rules { "shipped" } else { "unlatched_no_flap_temp_50_55" },
        "nodes": plan.nodes,
        "readings_per_message": 2,
        "planned_messages": plan.planned(),
        "messages": published,
        "probe_messages": probe_msgs,
        "complete": finished_at.is_some(),
        "secs": r2(end),
        "msg_per_sec": (msgs as f64 / end).round(),
        "readings_per_sec": (readings as f64 / end).round(),
        "acked_secs": acked_at.map(r2),
        "msg_per_sec_acked": acked_at.map(|t| (msgs as f64 / t).round()),
        "publishers_last_puback_secs": done["last_puback_secs"],
        "ack_delay_p50_ms": r2(m.ack_delay.quantile_us(0.5) as f64 / 1000.0),
        "ack_delay_p99_ms": r2(m.ack_delay.quantile_us(0.99) as f64 / 1000.0),
        "gateway_acked": m.ack_delay.count(),
        "sink_lines_written": m.sink_lines_written.load(Ordering::Relaxed),
        "alarms_raised": m.alarms_raised.load(Ordering::Relaxed),
        "alarms_cleared": m.alarms_cleared.load(Ordering::Relaxed),
        "tickets_opened": m.tickets_opened.load(Ordering::Relaxed),
        "tickets_attached": m.tickets_attached.load(Ordering::Relaxed),
        "store_errors": m.store_errors.load(Ordering::Relaxed),
        "gateway_batches": m.batches.load(Ordering::Relaxed),
        "gateway_mean_batch_messages": r1(m.batch_messages.load(Ordering::Relaxed) as f64
            / m.batches.load(Ordering::Relaxed).max(1) as f64),
        "duplicates": m.dropped("duplicate"),
        "readings_late": m.readings_late.load(Ordering::Relaxed),
        "reconnects": done["reconnects"],
        "gateway_mqtt_connects": m.mqtt_connections.load(Ordering::Relaxed),
        "gateway_mqtt_connection_errors": m.mqtt_connection_errors.load(Ordering::Relaxed),
        "gateway_mqtt_ack_failures": m.mqtt_ack_failures.load(Ordering::Relaxed),
        "probe": done["probe"],
        "cpu_secs": {
            "gateway": r1(cpu.gateway),
            "publishers_and_sse_client": done["cpu_secs"],
            "mosquitto": cpu.broker.map(r1),
            "victoria_metrics": r1(cpu.vm),
            "postgres": pg.is_some().then(|| r1(cpu.pg)),
        },
        "gateway_cpu_secs_by_thread": thread_cpu_diff(&threads0, &threads1),
        "cores_busy": r2(total_cpu / end),
        "peak_rss_mb": {
            "gateway": r1(peak.0),
            "publishers_and_sse_client": done["peak_rss_mb"],
            "mosquitto": peak.1.map(r1),
            "victoria_metrics": r1(peak.2),
            "postgres_sum_of_processes": pg.is_some().then(|| r1(peak.3)),
        },
        "loadavg_1m": [load0, load1],
    });
    if plan.paced() {
        let sent_secs = sending_done_at.unwrap_or(end);
        let sent_rate = published as f64 / sent_secs.max(0.001);
        let drain = finished_at.map(|f| r2((f - sent_secs).max(0.0)));
        r["target_msg_per_sec"] = json!(plan.rate);
        r["sent_msg_per_sec"] = json!(sent_rate.round());
        r["sending_secs"] = json!(sent_secs);
        r["max_backlog_msgs"] = json!(max_backlog);
        r["backlog_at_end_of_sending"] = json!(backlog_at_end);
        r["drain_secs_after_sending"] = json!(drain);
        // Kept up: the publishers held the rate and the gateway finished
        // within a second of the last publish.
        r["kept_up"] = json!(sent_rate >= 0.98 * plan.rate && drain.is_some_and(|d| d <= 1.0));
    }
    if !stop_sent {
        nodes.say("stop").await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), nodes.child.wait()).await;
    gw.shutdown().await;
    drop(broker);
    drop(vm);
    drop(pg);
    r
}
