//! The `/metrics` exposition: every counter, gauge and histogram of
//! [`Metrics`] as Prometheus text, in a fixed order.

use super::{Metrics, DROP_REASONS, SINK_DROP_REASONS};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

impl Metrics {
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
            "gateway_seq_restarts_total",
            "Node (boot, seq) sequences the de-duplication window could not follow (board swap, boot counter reset, leap), accepted as a restart after consistent messages.",
            &self.seq_restarts,
        );
        counter(
            "gateway_seq_unconfirmed_total",
            "Messages outside a node's (boot, seq) window not (yet) confirmed by the messages after them (a stray or spoofed boot/seq, or the first of a new sequence): stored, not judged.",
            &self.seq_unconfirmed,
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
            "gateway_batches_total",
            "Batches of messages the alarm path committed (one database transaction each).",
            &self.batches,
        );
        counter(
            "gateway_batch_messages_total",
            "Messages in committed batches.",
            &self.batch_messages,
        );
        counter(
            "gateway_batch_commit_failures_total",
            "Batch commits that failed; the batch is evaluated again and retried with backoff, its messages unacknowledged.",
            &self.batch_commit_failures,
        );
        counter(
            "gateway_messages_acked_total",
            "Messages acknowledged to the broker (after their batch committed).",
            &self.messages_acked,
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
            "gateway_mqtt_ack_failures_total",
            "Acknowledgements that could not be queued to the MQTT client (the broker redelivers after a reconnect).",
            &self.mqtt_ack_failures,
        );
        counter(
            "gateway_mqtt_gate_malformed_total",
            "Connections the embedded broker's gate closed for malformed MQTT packets.",
            &self.mqtt_gate_malformed,
        );
        counter(
            "gateway_sink_lines_written_total",
            "Lines written to the time-series DB.",
            &self.sink_lines_written,
        );
        counter(
            "gateway_spool_lines_appended_total",
            "Lines appended to the disk spool.",
            &self.spool_lines_appended,
        );
        counter(
            "gateway_spool_torn_records_total",
            "Torn or corrupt spool tails truncated (after a crash) or corrupt records skipped.",
            &self.spool_torn_records,
        );
        counter(
            "gateway_spool_errors_total",
            "Failed spool writes or fsyncs (their lines are dropped, the messages acknowledged).",
            &self.spool_errors,
        );
        counter(
            "gateway_spool_set_aside_total",
            "Spool directories that could not be opened at start-up, renamed {dir}.broken-{unix_ms}.",
            &self.spool_set_aside,
        );
        counter(
            "gateway_sink_write_errors_total",
            "Failed write requests to the time-series DB.",
            &self.sink_write_errors,
        );
        counter(
            "gateway_cluster_commands_forwarded_total",
            "On a cluster: console commands sent to the replica holding their site.",
            &self.cluster_commands_forwarded,
        );
        counter(
            "gateway_cluster_commands_run_total",
            "On a cluster: commands forwarded by another replica and run here.",
            &self.cluster_commands_run,
        );
        counter(
            "gateway_cluster_commands_refused_total",
            "On a cluster: forwarded commands refused (not from the replicas' user, older than their caller's wait, unreadable).",
            &self.cluster_commands_refused,
        );
        counter(
            "gateway_cluster_batches_fenced_total",
            "On a cluster: batches refused at commit because another replica had taken their partition (the pipeline stops; the messages are the new holder's).",
            &self.cluster_batches_fenced,
        );
        let _ = writeln!(
            out,
            "# HELP gateway_mqtt_acl_denied_total Refused by the embedded broker's gate: logins (bad credentials, revoked, Last Will topic), publishes (dropped) and subscriptions outside a node's own topics.\n# TYPE gateway_mqtt_acl_denied_total counter"
        );
        for (action, n) in [
            ("connect", &self.mqtt_acl_denied_connect),
            ("publish", &self.mqtt_acl_denied_publish),
            ("subscribe", &self.mqtt_acl_denied_subscribe),
        ] {
            let _ = writeln!(
                out,
                "gateway_mqtt_acl_denied_total{{action=\"{action}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        self.gate.render(&mut out);
        self.http_limits.render(&mut out);
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
        let _ = writeln!(
            out,
            "# HELP gateway_sink_lines_dropped_total Lines never delivered to the time-series DB, by reason.\n# TYPE gateway_sink_lines_dropped_total counter"
        );
        let sink_dropped = self
            .sink_dropped
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        for reason in SINK_DROP_REASONS {
            let _ = writeln!(
                out,
                "gateway_sink_lines_dropped_total{{reason=\"{reason}\"}} {}",
                sink_dropped.get(reason).copied().unwrap_or(0)
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
            "Lines accepted and not yet written to the time-series DB (in the spool).",
            &self.sink_backlog,
        );
        gauge(
            "gateway_sink_degraded",
            "1 while the metrics sink drops new lines because its disk spool cannot write or could not be opened.",
            &self.sink_degraded,
        );
        gauge(
            "gateway_spool_bytes",
            "Bytes in the disk spool's segments.",
            &self.spool_bytes,
        );
        gauge(
            "gateway_spool_segments",
            "Segment files in the disk spool.",
            &self.spool_segments,
        );
        gauge(
            "gateway_nodes_online",
            "Nodes currently online.",
            &self.nodes_online,
        );
        gauge(
            "gateway_cluster_leader",
            "On a cluster: whether this replica runs the once-only jobs (1) or not (0).",
            &self.leader,
        );
        gauge(
            "gateway_cluster_partitions_held",
            "On a cluster: ingest partitions this replica's consumers are active on.",
            &self.partitions_held,
        );
        let now = crate::domain::time::now_ms();
        let _ = writeln!(
            out,
            "# HELP gateway_store_available Whether the alarm path's last database commit succeeded (1) or it is retrying (0).\n# TYPE gateway_store_available gauge\ngateway_store_available {}",
            u8::from(self.store_health.outage().is_none())
        );
        let _ = writeln!(
            out,
            "# HELP gateway_store_unavailable_seconds_total Time the alarm path could not commit to the database (alarms held, messages unacknowledged).\n# TYPE gateway_store_unavailable_seconds_total counter\ngateway_store_unavailable_seconds_total {:.3}",
            self.store_health.unavailable_secs(now)
        );
        self.spool_fsync.render(
            &mut out,
            "gateway_spool_fsync_seconds",
            "Spool write + fdatasync, per group commit.",
        );
        self.ack_delay.render(
            &mut out,
            "gateway_ack_delay_seconds",
            "From a message handled to its acknowledgement to the broker (spool durable).",
        );
        self.modbus.render(&mut out);
        self.auth.render(&mut out);
        self.gb26875.render(&mut out);
        out
    }
}
