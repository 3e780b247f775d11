//! The ingest pipeline (数据处理流水线): one task that takes every MQTT
//! message in arrival order through topic check → node check → decode →
//! de-duplication → rules → store → metrics sink → event stream, and only
//! then acknowledges it to the broker (QoS 1, manual acks), so a message is
//! never acknowledged before it is handled.
//!
//! Anything that does not fit the contract is counted by reason in
//! `/metrics`, logged once per source per minute, and dropped; it never stops
//! the ingest of other messages.

use crate::config::Config;
use crate::dedup::Verdict;
use crate::labels;
use crate::metrics::{inc, Metrics};
use crate::runtime::{alarm_kind, Change, Runtime};
use crate::sink::{encode_line, Sink};
use crate::store::{AlarmInput, AlarmKey, Store, TicketOutcome, TicketSpec};
use crate::views::{AlarmView, GatewayEvent};
use rules::Level;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use wire::{ChannelStatus, CmdAck, DecodeError, Event, Status, Telemetry, Topic, TopicKind};

/// One message from the broker.
pub struct Inbound {
    pub topic: String,
    pub payload: bytes::Bytes,
    /// Wall-clock arrival, ms since the epoch.
    pub arrived_ms: u64,
    /// Acknowledges the message to the broker once handled.
    pub ack: Option<Box<dyn FnOnce() + Send + Sync>>,
}

/// Logs a dropped message at most once per source per interval.
struct DropLog {
    last: HashMap<String, u64>,
    suppressed: HashMap<String, u64>,
}

const DROP_LOG_INTERVAL_MS: u64 = 60_000;

/// A sample stamped further ahead of the gateway's clock than this comes
/// from a node whose clock is wrong: its arrival time is used instead.
pub const MAX_CLOCK_AHEAD_MS: u64 = 5 * 60 * 1000;

impl DropLog {
    fn log(&mut self, source: &str, reason: &str, detail: &str, now: u64) {
        if self.last.len() > 10_000 {
            // A flood from ever-new topics must not grow this without bound.
            self.last.clear();
            self.suppressed.clear();
        }
        match self.last.get(source) {
            Some(&t) if now.saturating_sub(t) < DROP_LOG_INTERVAL_MS => {
                *self.suppressed.entry(source.to_string()).or_default() += 1;
            }
            _ => {
                let suppressed = self.suppressed.remove(source).unwrap_or(0);
                tracing::warn!(source, reason, detail, suppressed, "dropped message");
                self.last.insert(source.to_string(), now);
            }
        }
    }
}

/// The pipeline's state.
pub struct Pipeline {
    config: Arc<Config>,
    runtime: Runtime,
    store: Store,
    sink: Option<Sink>,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<GatewayEvent>,
    drops: DropLog,
}

impl Pipeline {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        sink: Option<Sink>,
        metrics: Arc<Metrics>,
        events: broadcast::Sender<GatewayEvent>,
    ) -> Self {
        Pipeline {
            runtime: Runtime::new(config.clone()),
            config,
            store,
            sink,
            metrics,
            events,
            drops: DropLog {
                last: HashMap::new(),
                suppressed: HashMap::new(),
            },
        }
    }

    /// Handles messages until the channel closes, acknowledging each after it is handled.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Inbound>) {
        while let Some(mut msg) = rx.recv().await {
            self.handle(&msg).await;
            if let Some(ack) = msg.ack.take() {
                ack();
            }
        }
        tracing::info!("pipeline drained");
    }

    fn drop_msg(&mut self, source: &str, reason: &'static str, detail: &str, now: u64) {
        self.metrics.drop_message(reason);
        self.drops.log(source, reason, detail, now);
    }

    /// Handles one message.
    pub async fn handle(&mut self, msg: &Inbound) {
        inc(&self.metrics.messages_received);
        let now = msg.arrived_ms;
        let topic = match Topic::parse(&msg.topic) {
            Ok(t) => t,
            Err(e) => {
                let src: String = msg.topic.chars().take(80).collect();
                self.drop_msg(&src, "bad_topic", &e.to_string(), now);
                return;
            }
        };
        let source = format!("{}/{}", topic.site, topic.node);
        if topic.kind == TopicKind::Cmd {
            return; // our own commands to nodes, echoed by a wildcard subscription
        }
        if !self.runtime.knows(&topic.site, &topic.node) {
            self.drop_msg(&source, "unknown_node", "node is not configured", now);
            return;
        }
        let bytes = &msg.payload[..];
        macro_rules! decode {
            ($t:ty) => {
                match wire::decode::<$t>(bytes) {
                    Ok(v) => v,
                    Err(e) => {
                        self.drop_decode(&source, e, now);
                        return;
                    }
                }
            };
        }
        match topic.kind {
            TopicKind::Telemetry => {
                let t = decode!(Telemetry);
                self.telemetry(&topic, t, now).await;
            }
            TopicKind::Status => {
                let s = decode!(Status);
                if let Some(dropped) = s.dropped.filter(|d| *d > 0) {
                    tracing::warn!(node = %source, dropped, "node reports readings dropped from its offline buffer");
                    self.metrics
                        .seq_gaps
                        .fetch_add(u64::from(dropped), Ordering::Relaxed);
                }
                let changes = self.runtime.status(&topic.site, &topic.node, &s);
                self.metrics
                    .nodes_online
                    .store(self.runtime.online_count() as i64, Ordering::Relaxed);
                self.apply(changes, now).await;
            }
            TopicKind::Event => {
                let e = decode!(Event);
                if self.dedup(&topic, e.boot, e.seq).is_some() {
                    tracing::info!(node = %source, ch = %e.ch, level = %e.level, v = e.v, "node-side event");
                }
            }
            TopicKind::CmdAck => {
                let a = decode!(CmdAck);
                tracing::info!(node = %source, id = %a.id, ok = a.ok, "command acknowledged");
            }
            TopicKind::Cmd => {}
        }
    }

    fn drop_decode(&mut self, source: &str, e: DecodeError, now: u64) {
        self.drop_msg(source, e.reason(), &e.to_string(), now);
    }

    /// De-duplicates on `(boot, seq)`: `None` for a duplicate (counted),
    /// else whether the message is in order (gaps counted).
    fn dedup(&mut self, topic: &Topic, boot: u32, seq: u32) -> Option<bool> {
        match self
            .runtime
            .observe_seq(&topic.site, &topic.node, boot, seq)
        {
            Verdict::Duplicate => {
                self.metrics.drop_message("duplicate");
                None
            }
            Verdict::InOrder { gap } => {
                self.metrics
                    .seq_gaps
                    .fetch_add(u64::from(gap), Ordering::Relaxed);
                Some(true)
            }
            Verdict::Late => Some(false),
        }
    }

    async fn telemetry(&mut self, topic: &Topic, t: Telemetry, now: u64) {
        let Some(in_order) = self.dedup(topic, t.boot, t.seq) else {
            return;
        };
        if !in_order {
            self.metrics
                .readings_late
                .fetch_add(t.ch.len() as u64, Ordering::Relaxed);
        }
        // No wall clock on the node (ts 0), or a clock running ahead: stamp
        // arrival time. Old timestamps are legitimate (backfill after an outage).
        let at = if t.ts == 0 {
            now
        } else if t.ts > now.saturating_add(MAX_CLOCK_AHEAD_MS) {
            inc(&self.metrics.clock_ahead);
            self.drops.log(
                &format!("{}/{}", topic.site, topic.node),
                "clock_ahead",
                "timestamp in the future; arrival time used",
                now,
            );
            now
        } else {
            t.ts
        };
        self.metrics
            .readings_accepted
            .fetch_add(t.ch.len() as u64, Ordering::Relaxed);
        if let Some(sink) = &self.sink {
            // A faulted channel's value is not a measurement: it is shown as a
            // fault, not written as a data point.
            sink.push(
                t.ch.iter()
                    .filter(|r| r.s == ChannelStatus::Ok)
                    .map(|r| encode_line(r.q.as_str(), &topic.site, &topic.node, &r.id, r.v, at)),
            );
        }
        if in_order {
            let changes = self.runtime.readings(&topic.site, &topic.node, &t.ch, at);
            self.apply(changes, at).await;
        }
    }

    fn place(&self, key: &AlarmKey) -> (String, String) {
        match self.config.node(&key.site, &key.node) {
            Some((s, n)) => {
                let site = if s.name.is_empty() {
                    s.id.clone()
                } else {
                    s.name.clone()
                };
                let ch = n
                    .channels
                    .iter()
                    .find(|c| c.id == key.channel)
                    .map(|c| c.location.clone())
                    .unwrap_or_default();
                let loc = [n.location.as_str(), ch.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ");
                (site, loc)
            }
            None => (key.site.clone(), String::new()),
        }
    }

    async fn apply(&mut self, changes: Vec<Change>, at: u64) {
        for change in changes {
            if let Err(e) = self.apply_one(change, at).await {
                inc(&self.metrics.store_errors);
                tracing::error!(error = %e, "store: cannot record an alarm change");
            }
        }
    }

    async fn apply_one(&mut self, change: Change, at: u64) -> Result<(), crate::store::StoreError> {
        let (input, ticket) = match change {
            Change::Raise {
                key,
                quantity,
                level,
                value,
                setpoint,
            } => {
                let level_code = match level {
                    Level::Alarm => "alarm",
                    _ => "pre_alarm",
                };
                // 报警 opens a hazard ticket; 预警 is an early warning on the desk only.
                let ticket = (level == Level::Alarm).then(|| {
                    let (site, loc) = self.place(&key);
                    let kind = alarm_kind(quantity);
                    TicketSpec {
                        source: "sensor_alarm",
                        category: kind,
                        grade: "general",
                        prefix: "YH",
                        title: format!(
                            "{site} {} {} {}超限（{} ≥ 报警值 {}）",
                            key.node,
                            key.channel,
                            labels::quantity(quantity.as_str()),
                            labels::value(quantity.as_str(), value.into()),
                            labels::value(quantity.as_str(), setpoint.into())
                        ),
                        location: loc,
                    }
                });
                let input = AlarmInput {
                    kind: alarm_kind(quantity),
                    level: level_code,
                    quantity: Some(quantity.as_str()),
                    value: Some(value),
                    setpoint: Some(setpoint),
                    at,
                    key,
                    suppressed: false,
                };
                (input, ticket)
            }
            Change::FaultRaise {
                key,
                quantity,
                fault,
            } => {
                let (site, loc) = self.place(&key);
                let what = match fault {
                    rules::FaultKind::Open => "开路",
                    rules::FaultKind::Short => "短路",
                    rules::FaultKind::Range => "超量程",
                    rules::FaultKind::Fault => "故障",
                };
                let ticket = TicketSpec {
                    source: "sensor_fault",
                    category: "device_fault",
                    grade: "general",
                    prefix: "GZ",
                    title: format!(
                        "{site} {} {} {}传感器{what}",
                        key.node,
                        key.channel,
                        labels::quantity(quantity.as_str())
                    ),
                    location: loc,
                };
                let input = AlarmInput {
                    kind: "fault",
                    level: "fault",
                    quantity: Some(quantity.as_str()),
                    value: None,
                    setpoint: None,
                    at,
                    key,
                    suppressed: false,
                };
                inc(&self.metrics.faults_raised);
                (input, Some(ticket))
            }
            Change::NodeOffline { key } => {
                inc(&self.metrics.nodes_offline_events);
                let input = AlarmInput {
                    kind: "offline",
                    level: "offline",
                    quantity: None,
                    value: None,
                    setpoint: None,
                    at,
                    key,
                    suppressed: false,
                };
                (input, None)
            }
            Change::Relevel { key, level, value } => {
                let code = if level == Level::Alarm {
                    "alarm"
                } else {
                    "pre_alarm"
                };
                self.store.set_level(&key, code, value, at).await?;
                return Ok(());
            }
            Change::Latch { key, value } => {
                return self.settle(&key, "latched", Some(value), at).await
            }
            Change::Clear { key, value } => {
                inc(&self.metrics.alarms_cleared);
                return self.settle(&key, "cleared", value, at).await;
            }
            Change::FaultClear { key } | Change::NodeOnline { key, .. } => {
                return self.settle(&key, "cleared", None, at).await;
            }
        };
        let (row, outcome) = self.store.raise(&input, ticket.as_ref()).await?;
        if input.kind != "fault" && input.kind != "offline" {
            inc(&self.metrics.alarms_raised);
        }
        match &outcome {
            Some(TicketOutcome::Opened { number, .. }) => {
                inc(&self.metrics.tickets_opened);
                tracing::info!(ticket = %number, alarm = row.id, "hazard ticket opened");
            }
            Some(TicketOutcome::Attached { number, .. }) => {
                inc(&self.metrics.tickets_attached);
                tracing::info!(ticket = %number, alarm = row.id, "alarm attached to the open ticket");
            }
            _ => {}
        }
        tracing::info!(
            site = %row.site, node = %row.node, ch = %row.channel, cause = %row.cause,
            level = %row.level, value = ?row.value, "alarm raised"
        );
        let _ = self.events.send(GatewayEvent::AlarmRaised {
            alarm: AlarmView::from(row),
            ticket: outcome,
        });
        Ok(())
    }

    async fn settle(
        &mut self,
        key: &AlarmKey,
        state: &'static str,
        value: Option<i32>,
        at: u64,
    ) -> Result<(), crate::store::StoreError> {
        if let Some(row) = self.store.settle(key, state, value, at).await? {
            tracing::info!(site = %row.site, node = %row.node, ch = %row.channel, cause = %row.cause, state, "alarm settled");
            let _ = self.events.send(GatewayEvent::AlarmUpdated {
                alarm: AlarmView::from(row),
            });
        }
        Ok(())
    }
}
