//! The gateway's own counters, served as Prometheus text on `/metrics`.
//!
//! Plain atomics: every counter is incremented on the hot path, and a
//! scrape reads them all without locking the pipeline.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

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
];

/// Counters and gauges.
#[derive(Default)]
pub struct Metrics {
    pub messages_received: AtomicU64,
    pub readings_accepted: AtomicU64,
    pub readings_late: AtomicU64,
    pub clock_ahead: AtomicU64,
    pub seq_gaps: AtomicU64,
    pub alarms_raised: AtomicU64,
    pub alarms_cleared: AtomicU64,
    pub faults_raised: AtomicU64,
    pub nodes_offline_events: AtomicU64,
    pub tickets_opened: AtomicU64,
    pub tickets_attached: AtomicU64,
    pub tickets_reopened: AtomicU64,
    pub tickets_overdue: AtomicU64,
    pub store_errors: AtomicU64,
    pub mqtt_connections: AtomicU64,
    pub mqtt_connection_errors: AtomicU64,
    pub sink_lines_written: AtomicU64,
    pub sink_lines_dropped: AtomicU64,
    pub sink_write_errors: AtomicU64,
    pub sink_backlog: AtomicI64,
    pub nodes_online: AtomicI64,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
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

    /// Renders every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        counter(
            "gateway_messages_received_total",
            "MQTT messages received.",
            &self.messages_received,
        );
        counter(
            "gateway_readings_accepted_total",
            "Channel readings accepted (de-duplicated).",
            &self.readings_accepted,
        );
        counter("gateway_readings_late_total", "Readings accepted out of order (backfill, redelivery); stored but not fed to the rules.", &self.readings_late);
        counter(
            "gateway_seq_gaps_total",
            "Sequence numbers skipped by nodes: messages presumed lost.",
            &self.seq_gaps,
        );
        counter(
            "gateway_alarms_raised_total",
            "Alarms raised (pre-alarm and alarm).",
            &self.alarms_raised,
        );
        counter(
            "gateway_alarms_cleared_total",
            "Alarms cleared.",
            &self.alarms_cleared,
        );
        counter(
            "gateway_faults_raised_total",
            "Channel faults raised.",
            &self.faults_raised,
        );
        counter(
            "gateway_node_offline_total",
            "Nodes that went offline.",
            &self.nodes_offline_events,
        );
        counter(
            "gateway_tickets_opened_total",
            "Hazard tickets opened automatically.",
            &self.tickets_opened,
        );
        counter(
            "gateway_tickets_attached_total",
            "Alarms attached to an already open ticket.",
            &self.tickets_attached,
        );
        counter(
            "gateway_store_errors_total",
            "Database errors.",
            &self.store_errors,
        );
        counter(
            "gateway_mqtt_connections_total",
            "Successful MQTT connections.",
            &self.mqtt_connections,
        );
        counter(
            "gateway_mqtt_connection_errors_total",
            "MQTT connection errors.",
            &self.mqtt_connection_errors,
        );
        counter(
            "gateway_sink_lines_written_total",
            "Lines written to the time-series DB.",
            &self.sink_lines_written,
        );
        counter(
            "gateway_sink_lines_dropped_total",
            "Lines dropped by the sink (backlog full or refused by the TSDB).",
            &self.sink_lines_dropped,
        );
        counter(
            "gateway_sink_write_errors_total",
            "Failed write requests to the time-series DB.",
            &self.sink_write_errors,
        );
        let _ = writeln!(
            out,
            "# HELP gateway_messages_dropped_total Messages dropped, by reason.\n# TYPE gateway_messages_dropped_total counter"
        );
        let dropped = self.dropped.lock().map(|d| d.clone()).unwrap_or_default();
        for reason in DROP_REASONS {
            let _ = writeln!(
                out,
                "gateway_messages_dropped_total{{reason=\"{reason}\"}} {}",
                dropped.get(reason).copied().unwrap_or(0)
            );
        }
        let mut gauge = |name: &str, help: &str, v: &AtomicI64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        gauge(
            "gateway_sink_backlog_lines",
            "Lines waiting for the time-series DB.",
            &self.sink_backlog,
        );
        gauge(
            "gateway_nodes_online",
            "Nodes currently online.",
            &self.nodes_online,
        );
        out
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
    }
}
