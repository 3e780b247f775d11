//! The gateway's own counters, served as Prometheus text on `/metrics`.
//!
//! Plain atomics: every counter is incremented on the hot path, and a
//! scrape reads them all without locking the pipeline.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

mod auth;
mod exposition;
pub mod gate;
pub mod gb26875;
pub mod http;

pub use auth::{AuthMetrics, LOGIN_OUTCOMES};

/// Why a message was dropped. Each is a label value of
/// `gateway_messages_dropped_total{reason=…}`.
pub const DROP_REASONS: &[&str] = &[
    "bad_topic",
    "unknown_node",
    "too_large",
    "bad_json",
    "bad_schema",
    "bad_id",
    "unknown_quantity",
    "unknown_name",
    "out_of_range",
    "too_many_channels",
    "duplicate",
    // Readings on a new channel past the node's cap, or of another quantity
    // on a channel where an alarm stands (see `node_limits`): those readings
    // are refused, the message's others kept; counted once per message.
    "channel_limit",
    "quantity_changed",
];

/// Why lines of the metrics sink never reached the time-series DB. Each is
/// a label value of `gateway_sink_lines_dropped_total{reason=…}`.
pub const SINK_DROP_REASONS: &[&str] = &[
    // The spool reached `spool_max_bytes`: its oldest segment was dropped.
    "spool_full",
    // The file system is full (ENOSPC, quota): oldest segments dropped to
    // make room, then new lines that still could not be written.
    "disk_full",
    // A spool write or fsync failed otherwise (EIO…), or no spool could be
    // opened at all.
    "io_error",
    // The TSDB refused the batch (400/413/422).
    "refused",
    // Durable data that no longer reads back.
    "corrupt",
];

/// Counters and gauges.
#[derive(Default)]
pub struct Metrics {
    pub messages_received: AtomicU64,
    pub readings_accepted: AtomicU64,
    pub readings_late: AtomicU64,
    pub clock_ahead: AtomicU64,
    pub seq_gaps: AtomicU64,
    /// Node sequences the de-duplication window could not follow, accepted
    /// as a restart (`dedup::Verdict::Restarted`).
    pub seq_restarts: AtomicU64,
    /// Messages outside a node's window, not (yet) confirmed: stored, not judged.
    pub seq_unconfirmed: AtomicU64,
    pub alarms_raised: AtomicU64,
    pub alarms_cleared: AtomicU64,
    pub faults_raised: AtomicU64,
    pub nodes_offline_events: AtomicU64,
    pub tickets_opened: AtomicU64,
    pub tickets_attached: AtomicU64,
    pub tickets_reopened: AtomicU64,
    pub tickets_overdue: AtomicU64,
    /// Cluster: whether this replica runs the once-only jobs (1) or not.
    pub leader: AtomicI64,
    /// Cluster: ingest partitions this replica holds now.
    pub partitions_held: AtomicI64,
    /// Cluster: console commands forwarded to the replica holding their
    /// site, those run here for another replica, and those refused
    /// (not from the replicas' user, stale, unreadable).
    pub cluster_commands_forwarded: AtomicU64,
    pub cluster_commands_run: AtomicU64,
    pub cluster_commands_refused: AtomicU64,
    /// Cluster: pipelines that found their partition taken by another
    /// replica when they came to commit (the batch thrown away, the
    /// pipeline stopped).
    pub cluster_batches_fenced: AtomicU64,
    pub store_errors: AtomicU64,
    pub mqtt_connections: AtomicU64,
    pub mqtt_connection_errors: AtomicU64,
    /// Why the gateway's MQTT client is not connected (the broker's
    /// certificate refused, the broker unreachable…), until it connects
    /// again; shown on `/healthz`.
    pub mqtt_last_error: std::sync::Mutex<Option<String>>,
    /// Acknowledgements that could not be queued to the MQTT client.
    pub mqtt_ack_failures: AtomicU64,
    /// Refused by the embedded broker's gate: logins (credentials, Last
    /// Will topic), publishes and subscriptions outside a node's topics.
    pub mqtt_acl_denied_connect: AtomicU64,
    pub mqtt_acl_denied_publish: AtomicU64,
    pub mqtt_acl_denied_subscribe: AtomicU64,
    /// Connections the gate closed for bytes that are not MQTT 3.1.1.
    pub mqtt_gate_malformed: AtomicU64,
    /// The gate's caps and closed connections by reason.
    pub gate: gate::GateMetrics,
    pub sink_lines_written: AtomicU64,
    /// Every line dropped, whatever the reason (the sum of the labelled
    /// series; count through [`Metrics::drop_sink_lines`]).
    pub sink_lines_dropped: AtomicU64,
    sink_dropped: Mutex<BTreeMap<&'static str, u64>>,
    /// 1 while the sink drops new lines because the spool cannot write
    /// (acknowledgements go on; alarms never wait for the sink).
    pub sink_degraded: AtomicI64,
    sink_degraded_reason: Mutex<Option<String>>,
    pub sink_write_errors: AtomicU64,
    pub sink_backlog: AtomicI64,
    /// Disk spool in front of the sink.
    pub spool_lines_appended: AtomicU64,
    pub spool_torn_records: AtomicU64,
    pub spool_errors: AtomicU64,
    /// Spool directories that could not be opened at start-up and were
    /// renamed `{dir}.broken-{unix_ms}`.
    pub spool_set_aside: AtomicU64,
    pub spool_bytes: AtomicI64,
    pub spool_segments: AtomicI64,
    /// Duration of each spool write + fdatasync (group commit).
    pub spool_fsync: Latency,
    /// From a message handled to its broker acknowledgement (waiting for the spool).
    pub ack_delay: Latency,
    pub nodes_online: AtomicI64,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    /// Whether the alarm path can commit to the database.
    pub store_health: StoreHealth,
    /// Batches of messages committed by the alarm path, and their messages.
    pub batches: AtomicU64,
    pub batch_messages: AtomicU64,
    /// Batch commits that failed (the batch is retried with backoff).
    pub batch_commit_failures: AtomicU64,
    /// Messages acknowledged to the broker after their batch committed.
    pub messages_acked: AtomicU64,
    /// Modbus polling, by device.
    pub modbus: ModbusMetrics,
    /// HTTP connection, head and body limits, evidence quotas.
    pub http_limits: http::Counters,
    /// Logins, lockouts, event streams closed by their session's end.
    pub auth: AuthMetrics,
    /// GB/T 26875.3 northbound links.
    pub gb26875: gb26875::Gb26875Metrics,
}

/// Whether the alarm path's last commit succeeded, since when it has been
/// failing and why, and how long it has failed in all.
#[derive(Default)]
pub struct StoreHealth {
    inner: Mutex<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    /// Since when commits fail (ms since the epoch), with the last reason.
    down: Option<(u64, String)>,
    /// Failed time of outages that ended, ms.
    past_ms: u64,
}

impl StoreHealth {
    /// A commit failed at `now` with `reason`.
    pub fn failed(&self, now: u64, reason: String) {
        if let Ok(mut h) = self.inner.lock() {
            let since = h.down.as_ref().map(|(s, _)| *s).unwrap_or(now);
            h.down = Some((since, reason));
        }
    }

    /// A commit succeeded at `now`: an outage, if any, ends.
    pub fn ok(&self, now: u64) {
        if let Ok(mut h) = self.inner.lock() {
            if let Some((since, _)) = h.down.take() {
                h.past_ms += now.saturating_sub(since);
            }
        }
    }

    /// `None` while commits succeed; else since when they fail and why.
    pub fn outage(&self) -> Option<(u64, String)> {
        self.inner.lock().ok().and_then(|h| h.down.clone())
    }

    /// Seconds the alarm path could not commit, up to `now`.
    pub fn unavailable_secs(&self, now: u64) -> f64 {
        let Ok(h) = self.inner.lock() else { return 0.0 };
        let ongoing = h
            .down
            .as_ref()
            .map(|(s, _)| now.saturating_sub(*s))
            .unwrap_or(0);
        (h.past_ms + ongoing) as f64 / 1000.0
    }
}

/// A latency distribution: log-linear buckets of microseconds (16 per
/// power of two, so a quantile is within 6 % of the true value), lock-free.
pub struct Latency {
    buckets: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

const SUB_BUCKETS: u64 = 16;
const LATENCY_BUCKETS: usize = 64 * SUB_BUCKETS as usize;

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// The bucket of a value in microseconds.
fn latency_bucket(us: u64) -> usize {
    if us < SUB_BUCKETS {
        return us as usize;
    }
    let e = 63 - u64::from(us.leading_zeros()); // ≥ 4
    let sub = (us >> (e - 4)) & (SUB_BUCKETS - 1);
    ((e - 3) * SUB_BUCKETS + sub) as usize
}

/// The largest value of a bucket, in microseconds.
fn latency_upper(bucket: usize) -> u64 {
    let b = bucket as u64;
    if b < SUB_BUCKETS {
        return b;
    }
    let e = b / SUB_BUCKETS + 3;
    let sub = b % SUB_BUCKETS;
    ((SUB_BUCKETS + sub + 1) << (e - 4)) - 1
}

impl Latency {
    pub fn record(&self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[latency_bucket(us).min(LATENCY_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile (0..=1), in microseconds; 0 with no samples.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return latency_upper(i);
            }
        }
        latency_upper(LATENCY_BUCKETS - 1)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
        for q in ["0.5", "0.9", "0.99"] {
            let v = self.quantile_us(q.parse().unwrap_or(0.5)) as f64 / 1e6;
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            self.count()
        );
    }
}

/// Why a Modbus request failed. Each is a label value of
/// `gateway_modbus_errors_total{kind=…}`.
pub const MODBUS_ERROR_KINDS: &[&str] = &[
    // No answer within the connection's timeout (a silent device, a short frame).
    "timeout",
    // The device answered with an exception code (also counted by code).
    "exception",
    // Bytes that are not a valid answer: bad CRC, bad framing, a header or
    // function code that does not match the request.
    "frame",
    // A valid frame with fewer registers or bits than asked for.
    "short_response",
    // Connection refused, reset or closed; serial port not there.
    "io",
];

#[derive(Default, Clone)]
struct DeviceCounters {
    polls: u64,
    errors: BTreeMap<&'static str, u64>,
    exceptions: BTreeMap<u8, u64>,
    state: i64,
}

/// Modbus counters and the device state gauge, keyed by `(site, node)`.
#[derive(Default)]
pub struct ModbusMetrics {
    devices: Mutex<BTreeMap<(String, String), DeviceCounters>>,
}

impl ModbusMetrics {
    fn with(&self, site: &str, node: &str, f: impl FnOnce(&mut DeviceCounters)) {
        if let Ok(mut d) = self.devices.lock() {
            f(d.entry((site.to_string(), node.to_string())).or_default());
        }
    }

    fn read<T: Default>(&self, site: &str, node: &str, f: impl FnOnce(&DeviceCounters) -> T) -> T {
        self.devices
            .lock()
            .ok()
            .and_then(|d| d.get(&(site.to_string(), node.to_string())).map(f))
            .unwrap_or_default()
    }

    /// Registers a device, so its series exist (at zero) before anything happens.
    pub fn register(&self, site: &str, node: &str) {
        self.with(site, node, |_| {});
    }

    /// A poll that read every register.
    pub fn poll_ok(&self, site: &str, node: &str) {
        self.with(site, node, |d| d.polls += 1);
    }

    /// A failed request, `kind` one of [`MODBUS_ERROR_KINDS`].
    pub fn error(&self, site: &str, node: &str, kind: &'static str) {
        self.with(site, node, |d| *d.errors.entry(kind).or_default() += 1);
    }

    /// An exception response, counted by code and as an `exception` error.
    pub fn exception(&self, site: &str, node: &str, code: u8) {
        self.with(site, node, |d| {
            *d.errors.entry("exception").or_default() += 1;
            *d.exceptions.entry(code).or_default() += 1;
        });
    }

    /// The device's state: 0 ok, 1 degraded, 2 offline.
    pub fn set_state(&self, site: &str, node: &str, state: i64) {
        self.with(site, node, |d| d.state = state);
    }

    pub fn polls(&self, site: &str, node: &str) -> u64 {
        self.read(site, node, |d| d.polls)
    }

    pub fn errors(&self, site: &str, node: &str, kind: &str) -> u64 {
        self.read(site, node, |d| d.errors.get(kind).copied().unwrap_or(0))
    }

    pub fn exceptions(&self, site: &str, node: &str, code: u8) -> u64 {
        self.read(site, node, |d| {
            d.exceptions.get(&code).copied().unwrap_or(0)
        })
    }

    pub fn state(&self, site: &str, node: &str) -> i64 {
        self.read(site, node, |d| d.state)
    }

    fn render(&self, out: &mut String) {
        let devices = self.devices.lock().map(|d| d.clone()).unwrap_or_default();
        if devices.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP gateway_modbus_polls_total Modbus polls that read every register, by device.\n# TYPE gateway_modbus_polls_total counter");
        for ((site, node), d) in &devices {
            let _ = writeln!(
                out,
                "gateway_modbus_polls_total{{site=\"{site}\",node=\"{node}\"}} {}",
                d.polls
            );
        }
        let _ = writeln!(out, "# HELP gateway_modbus_errors_total Failed Modbus requests, by device and kind.\n# TYPE gateway_modbus_errors_total counter");
        for ((site, node), d) in &devices {
            for kind in MODBUS_ERROR_KINDS {
                let _ = writeln!(
                    out,
                    "gateway_modbus_errors_total{{site=\"{site}\",node=\"{node}\",kind=\"{kind}\"}} {}",
                    d.errors.get(kind).copied().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(out, "# HELP gateway_modbus_exceptions_total Modbus exception responses, by device and exception code.\n# TYPE gateway_modbus_exceptions_total counter");
        for ((site, node), d) in &devices {
            for (code, n) in &d.exceptions {
                let _ = writeln!(out, "gateway_modbus_exceptions_total{{site=\"{site}\",node=\"{node}\",code=\"{code}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP gateway_modbus_device_state Modbus device state: 0 ok, 1 degraded, 2 offline.\n# TYPE gateway_modbus_device_state gauge");
        for ((site, node), d) in &devices {
            let _ = writeln!(
                out,
                "gateway_modbus_device_state{{site=\"{site}\",node=\"{node}\"}} {}",
                d.state
            );
        }
    }
}

impl Metrics {
    /// Counts a refusal by the embedded broker's gate: `connect`, `publish`
    /// or `subscribe` (anything else counts as `connect`).
    pub fn acl_denied(&self, action: &str) {
        let c = match action {
            "publish" => &self.mqtt_acl_denied_publish,
            "subscribe" => &self.mqtt_acl_denied_subscribe,
            _ => &self.mqtt_acl_denied_connect,
        };
        inc(c);
    }

    /// Counts a dropped message under `reason` (one of [`DROP_REASONS`]).
    pub fn drop_message(&self, reason: &'static str) {
        if let Ok(mut d) = self.dropped.lock() {
            *d.entry(reason).or_default() += 1;
        }
    }

    /// Messages dropped for `reason` so far.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped
            .lock()
            .ok()
            .and_then(|d| d.get(reason).copied())
            .unwrap_or(0)
    }

    /// Counts `n` lines of the metrics sink dropped for `reason` (one of
    /// [`SINK_DROP_REASONS`]).
    pub fn drop_sink_lines(&self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        self.sink_lines_dropped.fetch_add(n, Ordering::Relaxed);
        if let Ok(mut d) = self.sink_dropped.lock() {
            *d.entry(reason).or_default() += n;
        }
    }

    /// Sink lines dropped for `reason` so far.
    pub fn sink_dropped(&self, reason: &str) -> u64 {
        self.sink_dropped
            .lock()
            .ok()
            .and_then(|d| d.get(reason).copied())
            .unwrap_or(0)
    }

    /// Marks the metrics sink degraded (`Some(reason)`) or working
    /// (`None`); `true` if that changed whether it is degraded.
    pub fn set_sink_degraded(&self, reason: Option<String>) -> bool {
        let now = i64::from(reason.is_some());
        if now == 0 && self.sink_degraded.load(Ordering::Relaxed) == 0 {
            return false; // the hot path: nothing to clear
        }
        let mut r = self
            .sink_degraded_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *r = reason;
        self.sink_degraded.swap(now, Ordering::Relaxed) != now
    }

    /// Why the metrics sink is degraded; `None` while it works.
    pub fn sink_degraded(&self) -> Option<String> {
        if self.sink_degraded.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.sink_degraded_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Shorthand for a relaxed increment.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_every_drop_reason() {
        let m = Metrics::default();
        inc(&m.messages_received);
        m.drop_message("bad_json");
        m.drop_message("bad_json");
        let text = m.render();
        assert!(
            text.contains("\ngateway_messages_received_total 1\n"),
            "{text}"
        );
        assert!(text.contains("gateway_messages_dropped_total{reason=\"bad_json\"} 2\n"));
        assert!(text.contains("gateway_messages_dropped_total{reason=\"unknown_node\"} 0\n"));
        assert_eq!(m.dropped("bad_json"), 2);
        assert!(
            !text.contains("gateway_modbus"),
            "no Modbus series without devices"
        );
    }

    #[test]
    fn sink_drops_by_reason_and_the_degraded_gauge() {
        let m = Metrics::default();
        m.drop_sink_lines("disk_full", 3);
        m.drop_sink_lines("io_error", 2);
        m.drop_sink_lines("disk_full", 1);
        assert_eq!(m.sink_lines_dropped.load(Ordering::Relaxed), 6);
        assert_eq!(m.sink_dropped("disk_full"), 4);
        let text = m.render();
        for line in [
            "gateway_sink_lines_dropped_total{reason=\"disk_full\"} 4\n",
            "gateway_sink_lines_dropped_total{reason=\"io_error\"} 2\n",
            "gateway_sink_lines_dropped_total{reason=\"spool_full\"} 0\n",
            "\ngateway_sink_degraded 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!m.set_sink_degraded(None));
        assert!(m.set_sink_degraded(Some("disk_full: no space".into())));
        assert!(!m.set_sink_degraded(Some("io_error: EIO".into())));
        assert_eq!(m.sink_degraded().as_deref(), Some("io_error: EIO"));
        assert!(m.render().contains("\ngateway_sink_degraded 1\n"));
        assert!(m.set_sink_degraded(None));
        assert_eq!(m.sink_degraded(), None);
    }

    #[test]
    fn latency_buckets_bound_the_value() {
        for us in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            33,
            1000,
            1234,
            999_999,
            1 << 40,
        ] {
            let b = latency_bucket(us);
            assert!(latency_upper(b) >= us, "{us}");
            assert!(b == 0 || latency_upper(b - 1) < us, "{us}");
            assert!(latency_upper(b) as f64 <= us as f64 * 1.07 + 1.0, "{us}");
        }
        let l = Latency::default();
        for ms in 1..=100u64 {
            l.record(std::time::Duration::from_millis(ms));
        }
        let p50 = l.quantile_us(0.5);
        assert!((50_000..=53_500).contains(&p50), "{p50}");
        let p99 = l.quantile_us(0.99);
        assert!((99_000..=106_000).contains(&p99), "{p99}");
        assert_eq!(l.count(), 100);
        let text = {
            let mut s = String::new();
            l.render(&mut s, "x_seconds", "h");
            s
        };
        assert!(text.contains("x_seconds_count 100\n"), "{text}");
    }

    #[test]
    fn renders_modbus_series_per_device() {
        let m = Metrics::default();
        m.modbus.register("home_a", "m02");
        m.modbus.poll_ok("home_a", "m01");
        m.modbus.error("home_a", "m01", "timeout");
        m.modbus.exception("home_a", "m01", 2);
        m.modbus.set_state("home_a", "m01", 1);
        let text = m.render();
        for line in [
            "gateway_modbus_polls_total{site=\"home_a\",node=\"m01\"} 1\n",
            "gateway_modbus_polls_total{site=\"home_a\",node=\"m02\"} 0\n",
            "gateway_modbus_errors_total{site=\"home_a\",node=\"m01\",kind=\"timeout\"} 1\n",
            "gateway_modbus_errors_total{site=\"home_a\",node=\"m01\",kind=\"exception\"} 1\n",
            "gateway_modbus_errors_total{site=\"home_a\",node=\"m02\",kind=\"frame\"} 0\n",
            "gateway_modbus_exceptions_total{site=\"home_a\",node=\"m01\",code=\"2\"} 1\n",
            "gateway_modbus_device_state{site=\"home_a\",node=\"m01\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(m.modbus.exceptions("home_a", "m01", 2), 1);
        assert_eq!(m.modbus.errors("home_a", "m01", "exception"), 1);
    }
}
