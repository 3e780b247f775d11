//! The ingest pipeline (数据处理流水线): one task that takes every MQTT
//! message in arrival order through topic check → node check → decode →
//! de-duplication → rules → store → metrics sink → event stream, and only
//! then acknowledges it to the broker (QoS 1, manual acks), so a message is
//! never acknowledged before it is handled. With a metrics sink, "handled"
//! includes "durable in the disk spool": the ack waits until the spool's
//! durable watermark passes everything appended up to the message (group
//! commit); messages without lines ride the same watermark, so acks keep
//! arrival order.
//!
//! Anything that does not fit the contract is counted by reason in
//! `/metrics`, logged once per source per minute, and dropped; it never stops
//! the ingest of other messages.

use crate::config::Config;
use crate::dedup::Verdict;
use crate::labels;
use crate::metrics::{inc, Metrics};
use crate::runtime::{
    alarm_kind, Change, ChannelRef, ResetRefused, Runtime, CAUSE_DEVICE_ALARM, CAUSE_INSULATION,
    CAUSE_OFFLINE, CAUSE_SUPPLY, SUPPLY_CHANNEL,
};
use crate::selftest::{SelfTest, Trigger};
use crate::sink::{encode_line_into, Sink};
use crate::store::{
    AlarmInput, AlarmKey, AlarmRow, LogEntry, Store, StoreError, TicketOutcome, TicketSpec,
};
use crate::views::{AlarmView, GatewayEvent};
use rules::{Disposition, FaultKind, Level, NodeTransition, SiteTransition, Transition};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use wire::{
    ChannelId, ChannelStatus, CmdAck, DecodeError, Event, EventLevel, NodeId, SiteId, Status,
    Telemetry, Topic, TopicKind,
};

/// One message from the broker.
pub struct Inbound {
    pub topic: String,
    pub payload: bytes::Bytes,
    /// Wall-clock arrival, ms since the epoch.
    pub arrived_ms: u64,
    /// Acknowledges the message to the broker once handled.
    pub ack: Option<Ack>,
}

/// Acknowledges a message to the broker.
pub type Ack = Box<dyn FnOnce() + Send + Sync>;

/// An acknowledgement waiting for the spool to make `ticket` durable.
struct PendingAck {
    ticket: u64,
    handled: Instant,
    ack: Ack,
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

/// Requests to the pipeline from the API: the pipeline owns the rule state.
pub enum Command {
    /// An authorised reset (复位) of a latched alarm.
    Reset {
        alarm_id: i64,
        by: String,
        /// The role code of who resets, for the audit trail.
        role: &'static str,
        reply: oneshot::Sender<Result<AlarmRow, ResetError>>,
    },
    /// Applies setpoints to a channel (an authorised, audited change),
    /// pushed to the node with `config`.
    ApplySetpoints {
        site: String,
        node: String,
        channel: String,
        pre_alarm: Option<i64>,
        alarm: i64,
        /// `recommendation` or `manual`.
        source: &'static str,
        by: String,
        role: &'static str,
        reply: oneshot::Sender<Result<crate::store::SetpointRow, SetpointError>>,
    },
    /// Starts an end-to-end self-test (自检) of a node; answers its id.
    SelfTest {
        site: String,
        node: String,
        by: String,
        role: &'static str,
        reply: oneshot::Sender<Result<i64, SelfTestError>>,
    },
}

/// Why setpoints were not applied.
#[derive(Debug, thiserror::Error)]
pub enum SetpointError {
    #[error("no such channel")]
    NotFound,
    /// Outside the bounds (简体中文 reason).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a self-test did not start.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    #[error("no such node")]
    NotFound,
    #[error("a self-test of this node is already running")]
    Running,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a reset did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("no such alarm")]
    NotFound,
    #[error("only a latched channel alarm can be reset")]
    NotLatched,
    #[error("the value is still past the setpoint, or the sensor is faulted")]
    StillActive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The next durable watermark; never resolves without a sink.
async fn durable_changed(rx: &mut Option<watch::Receiver<u64>>) -> u64 {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The spool is gone (shutdown): nothing more becomes durable.
                std::future::pending::<()>().await;
            }
            *rx.borrow_and_update()
        }
        None => std::future::pending().await,
    }
}

/// The next configuration in force; pending forever without one.
async fn live_changed(live: &mut Option<watch::Receiver<Arc<Config>>>) -> Arc<Config> {
    match live {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The live configuration is gone (shutdown): keep the last.
                *live = None;
                return std::future::pending().await;
            }
            rx.borrow_and_update().clone()
        }
        None => std::future::pending().await,
    }
}

/// Publishes commands to nodes (`fire/v1/{site}/{node}/cmd`).
pub type Commander = rumqttc::AsyncClient;

/// How often the dead-man timers are checked.
pub const TICK_MS: u64 = 1000;

/// How often offline tickets and overdue deadlines are checked.
pub const HOUSEKEEPING_MS: u64 = 60_000;

/// The pipeline's state.
pub struct Pipeline {
    config: Arc<Config>,
    /// The configuration in force, when it can change while running (registration).
    live: Option<watch::Receiver<Arc<Config>>>,
    commander: Option<Commander>,
    last_housekeeping: u64,
    runtime: Runtime,
    store: Store,
    sink: Option<Sink>,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<GatewayEvent>,
    drops: DropLog,
    /// Which readings to keep with open tickets.
    linker: crate::linker::Linker,
    /// Hourly rollups not yet merged into the store.
    rollups: crate::rollup::Rollups,
    /// Acknowledgements waiting for the spool, in arrival order.
    pending_acks: VecDeque<PendingAck>,
    /// Reused for each message's lines.
    line_buf: String,
    /// Self-tests in progress, by `(site, node)`.
    selftests: HashMap<(String, String), SelfTest>,
    /// How long a self-test waits for every channel.
    selftest_window_ms: u64,
    /// Baseline observation window, hours.
    baseline_hours: u32,
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
            live: None,
            commander: None,
            last_housekeeping: 0,
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
            linker: Default::default(),
            rollups: Default::default(),
            pending_acks: VecDeque::new(),
            line_buf: String::new(),
            selftests: HashMap::new(),
            selftest_window_ms: crate::selftest::DEFAULT_WINDOW_MS,
            baseline_hours: crate::baseline::DEFAULT_WINDOW_HOURS,
        }
    }

    /// How long a self-test waits for every channel (tests shorten it).
    pub fn with_selftest_window(mut self, window_ms: u64) -> Self {
        self.selftest_window_ms = window_ms;
        self
    }

    /// How long baselines are learned for (tests shorten it).
    pub fn with_baseline_window(mut self, hours: u32) -> Self {
        self.baseline_hours = hours;
        self
    }

    /// Marks messages found in the spool at start-up as seen, so that the
    /// broker's redelivery of one whose acknowledgement a crash cut off is
    /// a counted duplicate, not a second copy in the TSDB.
    pub fn mark_spooled(&mut self, spooled: crate::sink::Spooled) {
        for (source, ids) in spooled {
            let Some((site, node)) = source.split_once('/') else {
                continue;
            };
            let (Ok(site), Ok(node)) = (SiteId::new(site), NodeId::new(node)) else {
                continue;
            };
            if !self.runtime.knows(&site, &node) {
                continue;
            }
            for (boot, seq) in ids {
                let _ = self.runtime.observe_seq(&site, &node, boot, seq);
            }
        }
    }

    /// Follows the configuration in force: nodes registered while running
    /// are accepted (and watched by the dead-man timer) from the moment they
    /// appear, revoked ones are forgotten.
    pub fn with_live(mut self, mut live: watch::Receiver<Arc<Config>>) -> Self {
        // Registered nodes are in force from the start, not only once the
        // registry next changes.
        let current = live.borrow_and_update().clone();
        if !Arc::ptr_eq(&current, &self.config) {
            self.reconfigure(current, crate::time::now_ms());
        }
        self.live = Some(live);
        self
    }

    /// Takes a new configuration in force (see [`Pipeline::with_live`]).
    pub fn reconfigure(&mut self, config: Arc<Config>, now: u64) {
        self.runtime.reconfigure(config.clone(), now);
        self.config = config;
    }

    /// Lets the pipeline send commands (reset) to nodes.
    pub fn with_commander(mut self, commander: Commander) -> Self {
        self.commander = Some(commander);
        self
    }

    /// Prepares the rule state at start-up (`now`): starts every configured
    /// node's dead-man timer, marks nodes whose offline alarm still stands as
    /// offline (so their return clears it), and records rule settings that
    /// changed since the last start as audited changes.
    pub async fn start(&mut self, now: u64, config_source: &str) -> Result<(), StoreError> {
        self.runtime.start(now);
        for row in self.store.standing_with_cause(None, CAUSE_OFFLINE).await? {
            if let (Ok(s), Ok(n)) = (SiteId::new(&row.site), NodeId::new(&row.node)) {
                self.runtime.restore_offline(&s, &n, now);
            }
        }
        // Setpoints applied at run time, before the channels are restored
        // (the restored state is judged by them).
        for sp in self.store.setpoints_in_force().await? {
            self.use_setpoint(&sp);
        }
        // Channel rule state saved before a restart: levels, latches and
        // flapping carry on, so an alarm that ends now can clear.
        for (site, node, channel, quantity, state) in self.store.channel_states().await? {
            let parsed = (
                SiteId::new(&site),
                NodeId::new(&node),
                ChannelId::new(&channel),
                wire::Quantity::from_wire(&quantity),
            );
            let (Ok(s), Ok(n), Ok(c), Some(q)) = parsed else {
                continue;
            };
            match serde_json::from_str::<rules::ChannelState>(&state) {
                Ok(st) => self.runtime.restore_channel(&s, &n, &c, q, st),
                Err(e) => {
                    tracing::warn!(site, node, channel, error = %e, "saved channel state unreadable; starting afresh")
                }
            }
        }
        let changes = self
            .store
            .sync_rule_settings(&self.config.rule_settings(), config_source, now)
            .await?;
        for c in &changes {
            tracing::info!(scope = %c.scope, old = ?c.old, new = ?c.new, "rule settings changed (audited)");
        }
        Ok(())
    }

    /// Handles messages and commands until the message channel closes,
    /// acknowledging each message after it is handled; checks the dead-man
    /// timers every [`TICK_MS`].
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut durable = self.sink.as_ref().map(|s| s.durable());
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(mut msg) => {
                        self.handle(&msg).await;
                        if let Some(ack) = msg.ack.take() {
                            self.ack_when_durable(ack, durable.as_ref());
                        }
                    }
                    None => break,
                },
                Some(cmd) = commands.recv() => self.command(cmd).await,
                _ = tick.tick() => self.tick(crate::time::now_ms()).await,
                config = live_changed(&mut self.live) => {
                    self.reconfigure(config, crate::time::now_ms());
                }
                upto = durable_changed(&mut durable), if !self.pending_acks.is_empty() => {
                    self.release_acks(upto);
                }
            }
        }
        // Ingest has stopped (and said goodbye to the broker): acks still
        // pending are moot; the broker redelivers those messages next time
        // and the spooled ones are recognised as duplicates.
        if !self.pending_acks.is_empty() {
            tracing::info!(
                messages = self.pending_acks.len(),
                "stopped with acknowledgements pending; the broker will redeliver"
            );
        }
        self.flush_rollups().await;
        tracing::info!("pipeline drained");
    }

    /// Acknowledges now without a sink; with one, once the spool has made
    /// durable everything appended so far (this message's lines included).
    fn ack_when_durable(&mut self, ack: Ack, durable: Option<&watch::Receiver<u64>>) {
        let (Some(sink), Some(durable)) = (&self.sink, durable) else {
            ack();
            return;
        };
        let ticket = sink.appended();
        if self.pending_acks.is_empty() && *durable.borrow() >= ticket {
            ack();
            self.metrics.ack_delay.record(std::time::Duration::ZERO);
            return;
        }
        self.pending_acks.push_back(PendingAck {
            ticket,
            handled: Instant::now(),
            ack,
        });
    }

    /// Fires, in order, the acknowledgements whose ticket is durable.
    fn release_acks(&mut self, durable: u64) {
        while self
            .pending_acks
            .front()
            .is_some_and(|p| p.ticket <= durable)
        {
            if let Some(p) = self.pending_acks.pop_front() {
                (p.ack)();
                self.metrics.ack_delay.record(p.handled.elapsed());
            }
        }
    }

    /// Checks every node's dead-man timer at `now`.
    pub async fn tick(&mut self, now: u64) {
        let changes = self.runtime.tick(now);
        if !changes.is_empty() {
            self.apply(changes, now).await;
        }
        self.finish_selftests(now).await;
        if now.saturating_sub(self.last_housekeeping) >= HOUSEKEEPING_MS {
            self.last_housekeeping = now;
            self.housekeeping(now).await;
        }
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Reset {
                alarm_id,
                by,
                role,
                reply,
            } => {
                let result = self
                    .reset_as(alarm_id, &by, role, crate::time::now_ms())
                    .await;
                let _ = reply.send(result);
            }
            Command::ApplySetpoints {
                site,
                node,
                channel,
                pre_alarm,
                alarm,
                source,
                by,
                role,
                reply,
            } => {
                let now = crate::time::now_ms();
                let result = self
                    .apply_setpoints(
                        &site, &node, &channel, pre_alarm, alarm, source, &by, role, now,
                    )
                    .await;
                let _ = reply.send(result);
            }
            Command::SelfTest {
                site,
                node,
                by,
                role,
                reply,
            } => {
                let now = crate::time::now_ms();
                let result = self.start_selftest(&site, &node, &by, role, now).await;
                let _ = reply.send(result);
                self.finish_selftests(now).await;
            }
        }
    }

    /// Puts a recorded setpoint change into the rules (at start-up, and
    /// when applied). A row the rules refuse (a limit tightened since) is
    /// logged and left out.
    fn use_setpoint(&mut self, sp: &crate::store::SetpointRow) -> bool {
        let parsed = (
            SiteId::new(&sp.site),
            NodeId::new(&sp.node),
            ChannelId::new(&sp.channel),
            wire::Quantity::from_wire(&sp.quantity),
        );
        let (Ok(s), Ok(n), Ok(c), Some(q)) = parsed else {
            return false;
        };
        let base = self.config.rule_for(q, &s, &n, &c);
        match crate::baseline::check(q, &base, sp.pre_alarm, sp.alarm, None) {
            Ok(rule) => {
                self.runtime.set_rule(q, &s, &n, &c, rule);
                true
            }
            Err(e) => {
                tracing::warn!(site = %sp.site, node = %sp.node, ch = %sp.channel, reason = %e, "recorded setpoint no longer valid; the configured rule applies");
                false
            }
        }
    }

    /// Applies setpoints to a channel at `now`: checked against the rules'
    /// limits and the channel's learned baseline, recorded with its audit
    /// record, judged by from the next reading, and pushed to the node.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_setpoints(
        &mut self,
        site: &str,
        node: &str,
        channel: &str,
        pre_alarm: Option<i64>,
        alarm: i64,
        source: &str,
        by: &str,
        role: &str,
        now: u64,
    ) -> Result<crate::store::SetpointRow, SetpointError> {
        let (Ok(s), Ok(n), Ok(c)) = (
            SiteId::new(site),
            NodeId::new(node),
            ChannelId::new(channel),
        ) else {
            return Err(SetpointError::NotFound);
        };
        // The quantity: as the rules know the channel, or as it is
        // registered or configured (after a restart, before its first reading).
        let q = match self.runtime.channel_rule(&s, &n, &c) {
            Some((q, _)) => q,
            None => self
                .config
                .node(site, node)
                .and_then(|(_, nc)| nc.channels.iter().find(|x| x.id == channel))
                .and_then(|x| x.quantity.as_deref())
                .and_then(wire::Quantity::from_wire)
                .ok_or(SetpointError::NotFound)?,
        };
        let baseline = self
            .store
            .baselines(site)
            .await?
            .into_iter()
            .find(|b| b.node == node && b.channel == channel && b.quantity == q.as_str())
            .and_then(|b| serde_json::from_str::<crate::baseline::Baseline>(&b.baseline).ok());
        let base = self.config.rule_for(q, &s, &n, &c);
        crate::baseline::check(q, &base, pre_alarm, alarm, baseline.as_ref())
            .map_err(SetpointError::Refused)?;
        let row = self
            .store
            .apply_setpoint(
                site,
                node,
                channel,
                q.as_str(),
                pre_alarm,
                alarm,
                source,
                by,
                role,
                now,
            )
            .await?;
        self.use_setpoint(&row);
        tracing::info!(
            site,
            node,
            ch = channel,
            ?pre_alarm,
            alarm,
            by,
            "setpoints applied (audited)"
        );
        self.push_setpoint(&row);
        Ok(row)
    }

    /// Sends a channel's setpoints to its node (`config`). The node keeps
    /// them in RAM; they are sent again whenever it comes back online.
    fn push_setpoint(&self, sp: &crate::store::SetpointRow) {
        let (Some(commander), Ok(s), Ok(n)) = (
            &self.commander,
            SiteId::new(&sp.site),
            NodeId::new(&sp.node),
        ) else {
            return;
        };
        let topic = Topic::new(s, n, TopicKind::Cmd).to_string();
        let cmd = serde_json::json!({
            "id": format!("cfg-{}", sp.id),
            "op": "config",
            "ch": sp.channel,
            "pre_alarm": sp.pre_alarm,
            "alarm": sp.alarm,
        })
        .to_string();
        if let Err(e) = commander.try_publish(topic, rumqttc::QoS::AtLeastOnce, false, cmd) {
            tracing::warn!(error = %e, "config command to the node not queued; sent again when it comes online");
        }
    }

    /// A node came (back) online: its setpoints applied at run time are
    /// sent again (the node keeps them in RAM only).
    async fn push_node_setpoints(&mut self, site: &SiteId, node: &NodeId) {
        match self.store.setpoints_in_force().await {
            Ok(rows) => {
                for sp in rows
                    .iter()
                    .filter(|r| r.site == site.as_str() && r.node == node.as_str())
                {
                    self.push_setpoint(sp);
                }
            }
            Err(e) => {
                inc(&self.metrics.store_errors);
                tracing::error!(error = %e, "store: cannot read the setpoints in force");
            }
        }
    }

    /// Learns the baseline of every residual-current and temperature
    /// channel whose observation window has ended, once, and records it
    /// with its recommended setpoints. A loop whose natural leakage is
    /// itself a hazard gets a 一般隐患 ticket (线路绝缘老化嫌疑).
    pub async fn learn_baselines(&mut self, now: u64) -> Result<(), StoreError> {
        let window_ms = i64::from(self.baseline_hours) * 3_600_000;
        for ch in self.store.channels_to_learn().await? {
            if ch.first_hour + window_ms > now as i64 {
                continue;
            }
            let (Ok(s), Ok(n), Ok(c), Some(q)) = (
                SiteId::new(&ch.site),
                NodeId::new(&ch.node),
                ChannelId::new(&ch.channel),
                wire::Quantity::from_wire(&ch.quantity),
            ) else {
                continue;
            };
            let hours = self
                .store
                .channel_hours(
                    &ch.site,
                    &ch.node,
                    &ch.channel,
                    ch.first_hour,
                    ch.first_hour + window_ms,
                )
                .await?;
            let (b, learned) = match crate::baseline::learn(
                q,
                &hours,
                ch.first_hour,
                self.baseline_hours,
                now as i64,
            ) {
                Ok(b) => (b, true),
                Err(crate::baseline::NotLearned::Learning { .. }) => continue,
                Err(crate::baseline::NotLearned::Insufficient { baseline, needed }) => {
                    // Recorded as it is, so the installer sees why: a loop
                    // silent for most of the window has no baseline.
                    tracing::warn!(site = %ch.site, node = %ch.node, ch = %ch.channel, hours = baseline.hours, needed, "too few hours of readings for a baseline");
                    (baseline, false)
                }
            };
            let rule = self.runtime.rule(q, &s, &n, &c);
            let rec = if learned {
                crate::baseline::recommend(q, &b, &rule)
            } else {
                None
            };
            let row = crate::store::BaselineRow {
                site: ch.site.clone(),
                node: ch.node.clone(),
                channel: ch.channel.clone(),
                quantity: ch.quantity.clone(),
                learned_at: now as i64,
                baseline: serde_json::to_string(&b).unwrap_or_default(),
                recommendation: rec.as_ref().and_then(|r| serde_json::to_string(r).ok()),
            };
            self.store.save_baseline(&row).await?;
            tracing::info!(site = %ch.site, node = %ch.node, ch = %ch.channel, p50 = b.p50, p95 = b.p95, hours = b.hours, "baseline learned");
            if let Some(hazard) = rec.and_then(|r| r.hazard) {
                self.insulation_hazard(&ch.site, &ch.node, &ch.channel, q, b.p95, hazard, now)
                    .await?;
            }
        }
        Ok(())
    }

    /// A loop whose natural leakage is itself a hazard: one finding in the
    /// alarm record (raised and settled at once: nothing to reset) and a
    /// 一般隐患 ticket 线路绝缘老化嫌疑 for the closed loop.
    #[allow(clippy::too_many_arguments)]
    async fn insulation_hazard(
        &mut self,
        site: &str,
        node: &str,
        channel: &str,
        q: wire::Quantity,
        natural: i64,
        what: String,
        now: u64,
    ) -> Result<(), StoreError> {
        let key = AlarmKey {
            site: site.to_string(),
            node: node.to_string(),
            channel: channel.to_string(),
            cause: CAUSE_INSULATION.to_string(),
        };
        let (site_name, loc) = self.place(&key);
        let spec = TicketSpec {
            source: "baseline",
            category: alarm_kind(q),
            grade: "general",
            prefix: "YH",
            reopen_window_ms: self.config.tickets.policy().reopen_window_ms,
            title: format!("{site_name} {node} {channel} 线路绝缘老化嫌疑"),
            location: loc,
        };
        self.log(
            &key,
            "baseline_hazard",
            Some("pre_alarm"),
            i32::try_from(natural).ok(),
            Disposition::Notify,
            now,
            "baseline",
        )
        .await;
        tracing::warn!(site, node, ch = channel, natural, "{what}");
        let input = self.input(
            key.clone(),
            alarm_kind(q),
            "pre_alarm",
            Some(q),
            i32::try_from(natural).ok(),
            None,
            now,
            false,
        );
        self.raise(input, Some(spec)).await?;
        self.settle(&key, "cleared", None, now).await
    }

    /// Starts a self-test of `site/node` at `now`: records it, puts the
    /// node's readings on scratch rule state, and sends `selftest` on its
    /// `cmd` topic — or, for a Modbus device (no command path), opens the
    /// window for the installer to press the detector's test key.
    pub async fn start_selftest(
        &mut self,
        site: &str,
        node: &str,
        by: &str,
        role: &str,
        now: u64,
    ) -> Result<i64, SelfTestError> {
        let (Ok(s), Ok(n)) = (SiteId::new(site), NodeId::new(node)) else {
            return Err(SelfTestError::NotFound);
        };
        if self.config.node(site, node).is_none() {
            return Err(SelfTestError::NotFound);
        }
        let key = (site.to_string(), node.to_string());
        if self.selftests.contains_key(&key) {
            return Err(SelfTestError::Running);
        }
        let modbus = self
            .config
            .modbus
            .connections
            .iter()
            .flat_map(|c| c.devices.iter())
            .any(|d| d.site == site && d.node == node);
        let trigger = if modbus {
            Trigger::TestKey
        } else {
            Trigger::Command
        };
        let mode = match trigger {
            Trigger::Command => "command",
            Trigger::TestKey => "test_key",
        };
        let id = self
            .store
            .start_selftest(site, node, mode, by, role, now)
            .await?;
        let online = self.runtime.is_online(&s, &n);
        let channels = self
            .runtime
            .node_channels(&s, &n)
            .into_iter()
            .map(|(c, q, st)| (c.as_str().to_string(), q, st))
            .collect();
        let test = SelfTest::new(
            id,
            site,
            node,
            trigger,
            channels,
            online,
            now,
            self.selftest_window_ms,
        );
        tracing::info!(site, node, id, mode, online, by, "self-test started");
        if online {
            self.runtime.begin_test(&s, &n);
            if let (Trigger::Command, Some(commander)) = (trigger, &self.commander) {
                let topic = Topic::new(s, n, TopicKind::Cmd).to_string();
                let cmd = format!(r#"{{"id":"{}","op":"selftest"}}"#, test.cmd_id);
                if let Err(e) = commander.try_publish(topic, rumqttc::QoS::AtLeastOnce, false, cmd)
                {
                    // The node will not answer; the test fails at the deadline saying so.
                    tracing::warn!(error = %e, "self-test command to the node not queued");
                }
            }
        }
        self.selftests.insert(key, test);
        Ok(id)
    }

    /// Ends the self-tests that are over at `now`: records each channel's
    /// result and puts the node back on its real rules.
    async fn finish_selftests(&mut self, now: u64) {
        let done: Vec<(String, String)> = self
            .selftests
            .iter()
            .filter(|(_, t)| t.done(now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            let Some(test) = self.selftests.remove(&key) else {
                continue;
            };
            let Ok(s) = SiteId::new(&key.0) else { continue };
            let Ok(n) = NodeId::new(&key.1) else { continue };
            self.runtime.end_test(&s, &n);
            // A device alarm still standing when the window closes is no
            // longer a test: it is raised as the alarm it is.
            let topic = Topic::new(s, n, TopicKind::Event);
            for (ch, level, v) in test.device_still_raised() {
                let Ok(ch) = ChannelId::new(&ch) else {
                    continue;
                };
                tracing::warn!(site = %key.0, node = %key.1, ch = %ch, "device alarm still on after the self-test: raised as a real alarm");
                let e = Event {
                    boot: 0,
                    seq: 0,
                    ts: now,
                    ch,
                    level,
                    v,
                };
                if let Err(err) = Box::pin(self.device_event(&topic, &e, now)).await {
                    inc(&self.metrics.store_errors);
                    tracing::error!(error = %err, "store: cannot record a device alarm");
                }
            }
            let results = test.results();
            let passed = crate::selftest::all_passed(&results);
            if test.signal_may_be_on() {
                tracing::warn!(site = %key.0, node = %key.1, "self-test window ended with a test signal still on: the real rules judge it from now");
            }
            let json = serde_json::to_string(&results).unwrap_or_else(|_| "[]".into());
            tracing::info!(site = %key.0, node = %key.1, id = test.id, passed, channels = results.len(), "self-test finished");
            let reason = test.reason();
            if let Err(e) = self
                .store
                .finish_selftest(test.id, now, passed, &json, reason.as_deref())
                .await
            {
                inc(&self.metrics.store_errors);
                tracing::error!(error = %e, "store: cannot record a self-test result");
            }
        }
    }

    /// A rule output on a node under self-test, arrived at `now`.
    fn selftest_change(&mut self, ch: &ChannelRef, t: &Transition, now: u64) {
        let Some(test) = self.selftests.get_mut(&(ch.site.clone(), ch.node.clone())) else {
            return;
        };
        match *t {
            Transition::Raised {
                level: Level::Alarm,
                value,
                ..
            }
            | Transition::Escalated {
                to: Level::Alarm,
                value,
                ..
            } => test.alarm(&ch.channel, Some(ch.quantity), Some(value), now, "gateway"),
            Transition::Cleared { .. } | Transition::Latched { .. } => test.normal(&ch.channel),
            _ => {}
        }
    }

    /// An authorised reset of a latched channel alarm (复位): released in
    /// the rules, cleared in the store, logged with who did it, and sent to
    /// the node so its local sounder stops too.
    pub async fn reset(
        &mut self,
        alarm_id: i64,
        by: &str,
        now: u64,
    ) -> Result<AlarmRow, ResetError> {
        self.reset_as(alarm_id, by, "duty", now).await
    }

    /// [`Pipeline::reset`] by someone in `role` (a role code), for the audit trail.
    pub async fn reset_as(
        &mut self,
        alarm_id: i64,
        by: &str,
        role: &str,
        now: u64,
    ) -> Result<AlarmRow, ResetError> {
        let row = self
            .store
            .alarm(alarm_id)
            .await?
            .ok_or(ResetError::NotFound)?;
        if row.state != "latched" || row.channel.is_empty() {
            return Err(ResetError::NotLatched);
        }
        let (Ok(s), Ok(n), Ok(c)) = (
            SiteId::new(&row.site),
            NodeId::new(&row.node),
            ChannelId::new(&row.channel),
        ) else {
            return Err(ResetError::NotLatched);
        };
        let change = self.runtime.reset(&s, &n, &c, now).map_err(|e| match e {
            // After a gateway restart the rule state is new: the store's
            // latched record is what stands, and the operator releases it.
            ResetRefused::UnknownChannel => ResetError::NotLatched,
            ResetRefused::NotReleasable => ResetError::StillActive,
        });
        match change {
            Ok(change) => {
                let changes = vec![change];
                self.save_states(&changes, now).await;
                self.apply_as(changes, now, by).await
            }
            Err(ResetError::NotLatched) => {
                let key = AlarmKey {
                    site: row.site.clone(),
                    node: row.node.clone(),
                    channel: row.channel.clone(),
                    cause: row.cause.clone(),
                };
                self.log(&key, "reset", None, None, Disposition::Notify, now, by)
                    .await;
                self.settle(&key, "cleared", None, now).await?;
            }
            Err(e) => return Err(e),
        }
        let entry = crate::store::AuditEntry {
            at: now,
            actor: by,
            role,
            action: "alarm.reset",
            subject: format!("alarm:{alarm_id}"),
            details: serde_json::json!({ "site": row.site, "node": row.node, "channel": row.channel, "cause": row.cause }).to_string(),
        };
        self.store.audit(&entry).await?;
        if let Some(commander) = &self.commander {
            let topic = Topic::new(s, n, TopicKind::Cmd).to_string();
            let cmd = format!(r#"{{"id":"reset-{alarm_id}","op":"reset"}}"#);
            match commander.try_publish(
                topic.clone(),
                rumqttc::QoS::AtLeastOnce,
                false,
                cmd.clone(),
            ) {
                Ok(()) => {
                    let entry = crate::store::AuditEntry {
                        at: now,
                        actor: by,
                        role,
                        action: "node.cmd",
                        subject: format!("node:{}/{}", row.site, row.node),
                        details: serde_json::json!({ "topic": topic, "payload": cmd }).to_string(),
                    };
                    self.store.audit(&entry).await?;
                }
                Err(e) => tracing::warn!(error = %e, "reset command to the node not queued"),
            }
        }
        tracing::info!(alarm = alarm_id, by, "alarm reset");
        self.store
            .alarm(alarm_id)
            .await?
            .ok_or(ResetError::NotFound)
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
                let changes = self.runtime.status(&topic.site, &topic.node, &s, now);
                self.apply(changes, now).await;
                if s.state == wire::NodeState::Online {
                    self.push_node_setpoints(&topic.site, &topic.node).await;
                }
            }
            TopicKind::Event => {
                let e = decode!(Event);
                if self.dedup(&topic, e.boot, e.seq).is_some() {
                    self.seen(&topic, now).await;
                    tracing::info!(node = %source, ch = %e.ch, level = %e.level, v = e.v, "node-side event");
                    if e.ch.as_str() == SUPPLY_CHANNEL {
                        // The node's own power supply (主电): a fault level means it runs on battery or is failing.
                        let ok = e.level != EventLevel::Fault;
                        let changes = self.runtime.supply(&topic.site, &topic.node, ok, now);
                        self.apply(changes, now).await;
                    } else if let Err(err) = self.device_event(&topic, &e, now).await {
                        inc(&self.metrics.store_errors);
                        tracing::error!(error = %err, "store: cannot record a device alarm");
                    }
                }
            }
            TopicKind::CmdAck => {
                let a = decode!(CmdAck);
                self.seen(&topic, now).await;
                if let Some(test) = self
                    .selftests
                    .get_mut(&(topic.site.to_string(), topic.node.to_string()))
                    .filter(|t| t.cmd_id == a.id.as_str())
                {
                    test.ack(a.ok);
                    self.finish_selftests(now).await;
                }
                tracing::info!(node = %source, id = %a.id, ok = a.ok, "command acknowledged");
            }
            TopicKind::Cmd => {}
        }
    }

    /// A detector's own alarm judgement (探测器自身报警), from an `event`: a
    /// node's local rule, or a Modbus device's alarm bit. The duty desk must
    /// see it even when the gateway's setpoint is not crossed — a certified
    /// detector may be set lower, or see what a poll missed. While the
    /// gateway's own rule already stands on the channel at that level or
    /// higher, the event is that alarm's record (logged, not a second
    /// alarm); otherwise it is an alarm of cause `device_alarm`, with a
    /// hazard ticket at 报警, cleared when the device reports normal again.
    /// Channel faults come with the telemetry's status and are only logged.
    async fn device_event(&mut self, topic: &Topic, e: &Event, now: u64) -> Result<(), StoreError> {
        let key = AlarmKey {
            site: topic.site.as_str().to_string(),
            node: topic.node.as_str().to_string(),
            channel: e.ch.as_str().to_string(),
            cause: CAUSE_DEVICE_ALARM.to_string(),
        };
        if let Some(test) = self
            .selftests
            .get_mut(&(topic.site.to_string(), topic.node.to_string()))
        {
            // Under self-test: the node's (or detector's) own test alarm is
            // a result, never an alarm.
            let q = self
                .runtime
                .channel_state(&topic.site, &topic.node, &e.ch)
                .map(|(q, _)| q);
            test.device_level(&key.channel, e.level, e.v);
            match e.level {
                EventLevel::Alarm => test.alarm(&key.channel, q, Some(e.v), now, "device"),
                EventLevel::Normal => test.normal(&key.channel),
                EventLevel::PreAlarm | EventLevel::Fault => {}
            }
            self.log(
                &key,
                "selftest_event",
                None,
                Some(e.v),
                Disposition::Notify,
                now,
                "selftest",
            )
            .await;
            self.finish_selftests(now).await;
            return Ok(());
        }
        let known = self.runtime.channel_state(&topic.site, &topic.node, &e.ch);
        let level = match e.level {
            EventLevel::Alarm => Level::Alarm,
            EventLevel::PreAlarm => Level::PreAlarm,
            EventLevel::Normal => {
                self.log(
                    &key,
                    "device_cleared",
                    None,
                    Some(e.v),
                    Disposition::Notify,
                    now,
                    "device",
                )
                .await;
                return self.settle(&key, "cleared", Some(e.v), now).await;
            }
            EventLevel::Fault => return Ok(()),
        };
        let code = if level == Level::Alarm {
            "alarm"
        } else {
            "pre_alarm"
        };
        let suppressed = self.runtime.is_suppressed(&topic.site, &topic.node);
        let disposition = if suppressed {
            Disposition::Suppressed
        } else {
            Disposition::Notify
        };
        self.log(
            &key,
            "device_raised",
            Some(code),
            Some(e.v),
            disposition,
            now,
            "device",
        )
        .await;
        let Some((q, state)) = known else {
            // No telemetry from this channel yet: nothing says what it
            // measures. Counted; the value will come with the telemetry.
            self.metrics.drop_message("unknown_channel");
            tracing::warn!(site = %key.site, node = %key.node, ch = %key.channel, "device alarm on a channel with no telemetry yet");
            return Ok(());
        };
        if state.level() >= level {
            return Ok(()); // the gateway's own alarm on this channel stands
        }
        let ticket = (level == Level::Alarm && !suppressed).then(|| {
            self.hazard_ticket(
                &key,
                q,
                format!(
                    "探测器自身报警（{}）",
                    labels::value(q.as_str(), e.v.into())
                ),
            )
        });
        let input = self.input(
            key,
            alarm_kind(q),
            code,
            Some(q),
            Some(e.v),
            None,
            now,
            suppressed,
        );
        self.raise(input, ticket).await
    }

    /// Any accepted message proves the node alive.
    async fn seen(&mut self, topic: &Topic, now: u64) {
        let changes = self.runtime.seen(&topic.site, &topic.node, now);
        if !changes.is_empty() {
            self.apply(changes, now).await;
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
        self.seen(topic, now).await;
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
        let testing = self.runtime.under_test(&topic.site, &topic.node);
        if testing {
            // An injected test signal is not a measurement of the building:
            // kept out of the trend rollups and the tickets' readings.
            if let Some(test) = self
                .selftests
                .get_mut(&(topic.site.to_string(), topic.node.to_string()))
            {
                for r in t.ch.iter() {
                    test.status(&r.id, r.s);
                }
            }
        } else {
            for r in t.ch.iter().filter(|r| r.s == ChannelStatus::Ok) {
                self.rollups
                    .add(&topic.site, &topic.node, &r.id, r.q.as_str(), r.v, at);
            }
        }
        if let Some(sink) = &self.sink {
            // A faulted channel's value is not a measurement: it is shown as a
            // fault, not written as a data point.
            let mut text = std::mem::take(&mut self.line_buf);
            text.clear();
            let mut lines = 0u32;
            for r in t.ch.iter().filter(|r| r.s == ChannelStatus::Ok) {
                if lines > 0 {
                    text.push('\n');
                }
                encode_line_into(
                    &mut text,
                    r.q.as_str(),
                    &topic.site,
                    &topic.node,
                    &r.id,
                    r.v,
                    at,
                );
                lines += 1;
            }
            if lines > 0 {
                let source = format!("{}/{}", topic.site, topic.node);
                sink.push(&source, t.boot, t.seq, lines, &text);
            }
            self.line_buf = text;
        }
        if in_order {
            let changes = self.runtime.readings(&topic.site, &topic.node, &t.ch, at);
            if testing {
                for c in &changes {
                    if let Change::Test { ch, transition } = c {
                        self.selftest_change(ch, transition, now);
                    }
                }
                self.finish_selftests(now).await;
            } else {
                self.apply(changes, at).await;
                self.link_readings(topic, &t, at).await;
            }
        }
    }

    /// Keeps readings with the open tickets of their channels (关联读数),
    /// as [`crate::linker`] decides. Only in-order readings: they are the
    /// ones the rules judged, so their level is known.
    async fn link_readings(&mut self, topic: &Topic, t: &Telemetry, at: u64) {
        for r in t.ch.iter() {
            let Some((_, state)) = self.runtime.channel_state(&topic.site, &topic.node, &r.id)
            else {
                continue;
            };
            let condition = crate::linker::Condition {
                status: r.s.as_str(),
                level: state.level().as_str(),
                rising: state.is_rate_raised(),
            };
            if !self
                .linker
                .due(&topic.site, &topic.node, &r.id, condition, at)
            {
                continue;
            }
            let reading = crate::store::LinkedReading {
                site: &topic.site,
                node: &topic.node,
                channel: &r.id,
                quantity: r.q.as_str(),
                value: r.v,
                status: condition.status,
                level: condition.level,
                abnormal: condition.abnormal(),
                at,
            };
            if let Err(e) = self.store.link_reading(&reading).await {
                inc(&self.metrics.store_errors);
                tracing::error!(error = %e, site = %topic.site, node = %topic.node, channel = %r.id, "reading not linked to its ticket");
            }
        }
    }

    fn place(&self, key: &AlarmKey) -> (String, String) {
        self.config.place(&key.site, &key.node, &key.channel)
    }

    async fn apply(&mut self, changes: Vec<Change>, at: u64) {
        self.save_states(&changes, at).await;
        self.apply_as(changes, at, "system").await;
    }

    /// Saves the rule state of every channel that produced an output.
    async fn save_states(&mut self, changes: &[Change], at: u64) {
        let mut saved: Vec<&ChannelRef> = Vec::new();
        for c in changes {
            let Change::Channel { ch, .. } = c else {
                continue;
            };
            if saved
                .iter()
                .any(|s| s.site == ch.site && s.node == ch.node && s.channel == ch.channel)
            {
                continue;
            }
            saved.push(ch);
            let (Ok(s), Ok(n), Ok(id)) = (
                SiteId::new(&ch.site),
                NodeId::new(&ch.node),
                ChannelId::new(&ch.channel),
            ) else {
                continue;
            };
            let Some((q, state)) = self.runtime.channel_state(&s, &n, &id) else {
                continue;
            };
            let json = serde_json::to_string(&state).unwrap_or_default();
            if let Err(e) = self
                .store
                .save_channel_state(&ch.site, &ch.node, &ch.channel, q.as_str(), &json, at)
                .await
            {
                inc(&self.metrics.store_errors);
                tracing::error!(error = %e, "store: cannot save a channel's rule state");
            }
        }
    }

    async fn apply_as(&mut self, changes: Vec<Change>, at: u64, actor: &str) {
        for change in changes {
            let result = match change {
                Change::Channel {
                    ch,
                    transition,
                    disposition,
                    level,
                } => {
                    self.apply_channel(&ch, transition, disposition, level, at, actor)
                        .await
                }
                Change::Node {
                    key,
                    transition,
                    suppressed,
                } => self.apply_node(&key, transition, suppressed, at).await,
                Change::Site { key, transition } => self.apply_site(&key, transition, at).await,
                // Only produced for a node under self-test, handled where the readings are.
                Change::Test { .. } => Ok(()),
            };
            if let Err(e) = result {
                inc(&self.metrics.store_errors);
                tracing::error!(error = %e, "store: cannot record an alarm change");
            }
        }
        self.metrics
            .nodes_online
            .store(self.runtime.online_count() as i64, Ordering::Relaxed);
    }

    #[allow(clippy::too_many_arguments)]
    async fn log(
        &mut self,
        key: &AlarmKey,
        transition: &'static str,
        level: Option<&'static str>,
        value: Option<i32>,
        disposition: Disposition,
        at: u64,
        actor: &str,
    ) {
        let disposition = match disposition {
            Disposition::Notify => "notify",
            Disposition::Suppressed => "suppressed",
            Disposition::Flapping => "flapping",
        };
        let entry = LogEntry {
            at,
            key,
            transition,
            level,
            value,
            disposition,
            actor,
        };
        if let Err(e) = self.store.log_transition(&entry).await {
            inc(&self.metrics.store_errors);
            tracing::error!(error = %e, "store: cannot log a transition");
        }
    }

    fn hazard_ticket(&self, key: &AlarmKey, q: wire::Quantity, what: String) -> TicketSpec {
        let (site, loc) = self.place(key);
        TicketSpec {
            source: "sensor_alarm",
            category: alarm_kind(q),
            // The grade comes from configuration (e.g. a bedroom circuit in a
            // care home → 重大); 一般 otherwise.
            grade: self
                .config
                .channel_grade(&key.site, &key.node, &key.channel),
            prefix: "YH",
            reopen_window_ms: self.config.tickets.policy().reopen_window_ms,
            title: format!(
                "{site} {} {} {}{what}",
                key.node,
                key.channel,
                labels::quantity(q.as_str())
            ),
            location: loc,
        }
    }

    fn fault_ticket(&self, key: &AlarmKey, what: String) -> TicketSpec {
        let (site, loc) = self.place(key);
        let target = if key.channel.is_empty() {
            key.node.clone()
        } else {
            format!("{} {}", key.node, key.channel)
        };
        TicketSpec {
            source: "sensor_fault",
            category: "device_fault",
            grade: "general",
            prefix: "GZ",
            title: format!("{site} {target} {what}"),
            location: loc,
            reopen_window_ms: self.config.tickets.policy().reopen_window_ms,
        }
    }

    fn offline_ticket(&self, key: &AlarmKey) -> TicketSpec {
        let (site, loc) = self.place(key);
        let (what, target) = if key.node.is_empty() {
            ("机构网络中断，全部节点离线", String::new())
        } else {
            ("节点离线", key.node.clone())
        };
        TicketSpec {
            source: "offline",
            category: "offline",
            grade: "general",
            prefix: "LX",
            title: format!("{site} {target} {what}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            location: loc,
            reopen_window_ms: self.config.tickets.policy().reopen_window_ms,
        }
    }

    /// Merges the pending hourly rollups into the store; kept for the next
    /// try when the store fails.
    pub async fn flush_rollups(&mut self) {
        if self.rollups.is_empty() {
            return;
        }
        let rows = self.rollups.take();
        if let Err(e) = self.store.merge_rollups(&rows).await {
            inc(&self.metrics.store_errors);
            tracing::error!(error = %e, "store: hourly rollups not merged; kept for the next try");
            self.rollups.restore(rows);
        }
        let latest = self.rollups.take_last();
        if let Err(e) = self.store.save_latest(&latest).await {
            inc(&self.metrics.store_errors);
            tracing::error!(error = %e, "store: latest readings not saved");
        }
    }

    /// The slower duties of the tick: hourly rollups merged, the SQLite WAL
    /// checkpointed, 离线 tickets
    /// for nodes (and sites) offline past the configured time, and the
    /// overdue check of deadlines.
    pub async fn housekeeping(&mut self, now: u64) {
        self.flush_rollups().await;
        if let Err(e) = self.learn_baselines(now).await {
            inc(&self.metrics.store_errors);
            tracing::error!(error = %e, "store: cannot learn baselines");
        }
        if let Err(e) = self.store.checkpoint().await {
            tracing::warn!(error = %e, "store: WAL checkpoint failed; retried next minute");
        }
        let after = u64::from(self.config.tickets.offline_ticket_after_mins) * 60_000;
        let due = match self
            .store
            .offline_due_ticket(now.saturating_sub(after))
            .await
        {
            Ok(d) => d,
            Err(e) => {
                inc(&self.metrics.store_errors);
                tracing::error!(error = %e, "store: cannot list offline alarms");
                return;
            }
        };
        for row in due {
            let key = AlarmKey {
                site: row.site.clone(),
                node: row.node.clone(),
                channel: row.channel.clone(),
                cause: row.cause.clone(),
            };
            let spec = self.offline_ticket(&key);
            match self
                .store
                .link_ticket(row.id, Some(&spec), false, now)
                .await
            {
                Ok((row, outcome)) => {
                    self.count_ticket(&outcome, row.id);
                    let _ = self.events.send(GatewayEvent::AlarmUpdated {
                        alarm: AlarmView::from(row),
                    });
                }
                Err(e) => {
                    inc(&self.metrics.store_errors);
                    tracing::error!(error = %e, "store: cannot open an offline ticket");
                }
            }
        }
        match self.store.mark_overdue(now).await {
            Ok(tickets) => {
                for t in tickets {
                    inc(&self.metrics.tickets_overdue);
                    tracing::warn!(ticket = %t.number, escalated_to = ?t.escalated_to, "ticket overdue; escalated");
                    let _ = self.events.send(GatewayEvent::TicketUpdated {
                        ticket: crate::views::TicketView::from(t),
                    });
                }
            }
            Err(e) => {
                inc(&self.metrics.store_errors);
                tracing::error!(error = %e, "store: cannot mark overdue tickets");
            }
        }
    }

    async fn apply_channel(
        &mut self,
        ch: &ChannelRef,
        t: Transition,
        disposition: Disposition,
        level: Level,
        at: u64,
        actor: &str,
    ) -> Result<(), StoreError> {
        let key = ch.key_for(&t);
        let q = ch.quantity;
        let level_code = |l: Level| {
            if l == Level::Alarm {
                "alarm"
            } else {
                "pre_alarm"
            }
        };
        let (name, log_level, value) = match t {
            Transition::Raised { level, value, .. } => {
                ("raised", Some(level_code(level)), Some(value))
            }
            Transition::Escalated { to, value, .. } => {
                ("escalated", Some(level_code(to)), Some(value))
            }
            Transition::Deescalated { to, value, .. } => {
                ("deescalated", Some(level_code(to)), Some(value))
            }
            Transition::Cleared { value, .. } => ("cleared", None, Some(value)),
            Transition::Latched { level, value } => {
                ("latched", Some(level_code(level)), Some(value))
            }
            Transition::Reset { .. } => ("reset", None, None),
            Transition::FaultRaised { .. } => ("fault_raised", Some("fault"), None),
            Transition::FaultCleared { .. } => ("fault_cleared", None, None),
            Transition::RateRaised { value, .. } => ("rate_raised", Some("pre_alarm"), Some(value)),
            Transition::RateCleared { value } => ("rate_cleared", None, Some(value)),
            Transition::FlappingStarted { .. } => ("flapping_started", None, None),
            Transition::FlappingEnded { .. } => ("flapping_ended", None, None),
        };
        self.log(&key, name, log_level, value, disposition, at, actor)
            .await;
        let suppressed = disposition == Disposition::Suppressed;
        // While flapping, raise/clear/level changes are recorded only; the
        // one FlappingStarted notification stands for them.
        let swallowed = disposition == Disposition::Flapping;
        match t {
            Transition::Raised {
                level,
                value,
                setpoint,
            }
            | Transition::Escalated {
                to: level,
                value,
                setpoint,
                ..
            } => {
                // A fire alarm is never swallowed: only pre-alarm swings are.
                if swallowed && level != Level::Alarm {
                    return Ok(());
                }
                let ticket = (level == Level::Alarm && !suppressed).then(|| {
                    let what = format!(
                        "超限（{} {} 报警值 {}）",
                        labels::value(q.as_str(), value.into()),
                        if ch.direction == rules::Direction::Low {
                            "≤"
                        } else {
                            "≥"
                        },
                        labels::value(q.as_str(), setpoint.into())
                    );
                    self.hazard_ticket(&key, q, what)
                });
                let input = self.input(
                    key,
                    alarm_kind(q),
                    level_code(level),
                    Some(q),
                    Some(value),
                    Some(setpoint),
                    at,
                    suppressed,
                );
                self.raise(input, ticket).await
            }
            Transition::RateRaised { value, rise } => {
                if swallowed {
                    return Ok(());
                }
                let ticket = (!suppressed).then(|| {
                    let what = format!(
                        "温升过快（{} 内上升 {}）",
                        "1 分钟",
                        labels::value(q.as_str(), rise.into())
                    );
                    self.hazard_ticket(&key, q, what)
                });
                let input = self.input(
                    key,
                    alarm_kind(q),
                    "pre_alarm",
                    Some(q),
                    Some(value),
                    Some(rise),
                    at,
                    suppressed,
                );
                self.raise(input, ticket).await
            }
            Transition::Deescalated { to, value, .. } if !swallowed => {
                self.store.set_level(&key, level_code(to), value, at).await
            }
            Transition::Latched { value, .. } if !swallowed => {
                self.settle(&key, "latched", Some(value), at).await
            }
            Transition::Cleared { value, .. } if !swallowed => {
                inc(&self.metrics.alarms_cleared);
                self.settle(&key, "cleared", Some(value), at).await
            }
            Transition::RateCleared { value } if !swallowed => {
                self.settle(&key, "cleared", Some(value), at).await
            }
            Transition::Reset { .. } => self.settle(&key, "cleared", None, at).await,
            Transition::FaultRaised { kind } => {
                // Faults are never swallowed by flapping: a broken sensor must be seen.
                let what = match kind {
                    FaultKind::Open => "开路",
                    FaultKind::Short => "短路",
                    FaultKind::Range => "超量程",
                    FaultKind::Fault => "故障",
                };
                let ticket = (!suppressed).then(|| {
                    self.fault_ticket(
                        &key,
                        format!("{}传感器{what}", labels::quantity(q.as_str())),
                    )
                });
                inc(&self.metrics.faults_raised);
                let input = self.input(key, "fault", "fault", Some(q), None, None, at, suppressed);
                self.raise(input, ticket).await
            }
            Transition::FaultCleared { .. } => self.settle(&key, "cleared", None, at).await,
            Transition::FlappingStarted { transitions } => {
                tracing::warn!(site = %key.site, node = %key.node, ch = %key.channel, transitions, "channel is flapping");
                match self.store.set_flapping(&key, true, at).await? {
                    Some(row) => {
                        let _ = self.events.send(GatewayEvent::AlarmUpdated {
                            alarm: AlarmView::from(row),
                        });
                        Ok(())
                    }
                    None => {
                        // Nothing stands (the last swing cleared it): one
                        // record for the flapping channel, without a ticket.
                        let l = if level == Level::Normal {
                            Level::PreAlarm
                        } else {
                            level
                        };
                        let input = self.input(
                            key.clone(),
                            alarm_kind(q),
                            level_code(l),
                            Some(q),
                            None,
                            None,
                            at,
                            suppressed,
                        );
                        self.raise(input, None).await?;
                        if let Some(row) = self.store.set_flapping(&key, true, at).await? {
                            let _ = self.events.send(GatewayEvent::AlarmUpdated {
                                alarm: AlarmView::from(row),
                            });
                        }
                        Ok(())
                    }
                }
            }
            Transition::FlappingEnded { level } => {
                self.store.set_flapping(&key, false, at).await?;
                // Back to plain behaviour: the record shows where the channel settled.
                match level {
                    Level::Normal => self.settle(&key, "cleared", None, at).await,
                    l => {
                        let ticket = (l == Level::Alarm && !suppressed)
                            .then(|| self.hazard_ticket(&key, q, "抖动后持续报警".into()));
                        let input = self.input(
                            key,
                            alarm_kind(q),
                            level_code(l),
                            Some(q),
                            None,
                            None,
                            at,
                            suppressed,
                        );
                        self.raise(input, ticket).await
                    }
                }
            }
            _ => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn input(
        &self,
        key: AlarmKey,
        kind: &'static str,
        level: &'static str,
        q: Option<wire::Quantity>,
        value: Option<i32>,
        setpoint: Option<i32>,
        at: u64,
        suppressed: bool,
    ) -> AlarmInput {
        AlarmInput {
            key,
            kind,
            level,
            quantity: q.map(|q| q.as_str()),
            value,
            setpoint,
            at,
            suppressed,
        }
    }

    /// A node's or a site's offline alarm.
    fn offline_input(&self, key: AlarmKey, at: u64, suppressed: bool) -> AlarmInput {
        self.input(key, "offline", "offline", None, None, None, at, suppressed)
    }

    async fn apply_node(
        &mut self,
        key: &AlarmKey,
        t: NodeTransition,
        suppressed: bool,
        at: u64,
    ) -> Result<(), StoreError> {
        let disposition = if suppressed {
            Disposition::Suppressed
        } else {
            Disposition::Notify
        };
        match t {
            NodeTransition::Offline { cause } => {
                inc(&self.metrics.nodes_offline_events);
                let how = match cause {
                    rules::OfflineCause::Timeout => "offline_timeout",
                    rules::OfflineCause::LastWill => "offline_last_will",
                };
                self.log(key, how, Some("offline"), None, disposition, at, "system")
                    .await;
                let input = self.offline_input(key.clone(), at, suppressed);
                self.raise(input, None).await
            }
            NodeTransition::SupplyFailed => {
                self.log(
                    key,
                    "supply_failed",
                    Some("fault"),
                    None,
                    disposition,
                    at,
                    "system",
                )
                .await;
                let ticket = (!suppressed).then(|| self.fault_ticket(key, "主电故障".into()));
                let input = self.input(
                    key.clone(),
                    "fault",
                    "fault",
                    None,
                    None,
                    None,
                    at,
                    suppressed,
                );
                self.raise(input, ticket).await
            }
            NodeTransition::Online | NodeTransition::SupplyRestored => {
                let name = if t == NodeTransition::Online {
                    "online"
                } else {
                    "supply_restored"
                };
                self.log(key, name, None, None, Disposition::Notify, at, "system")
                    .await;
                self.settle(key, "cleared", None, at).await?;
                self.release_suppressed(&key.site, Some(&key.node), at)
                    .await
            }
        }
    }

    async fn apply_site(
        &mut self,
        key: &AlarmKey,
        t: SiteTransition,
        at: u64,
    ) -> Result<(), StoreError> {
        match t {
            SiteTransition::UplinkLost => {
                self.log(
                    key,
                    "uplink_lost",
                    Some("offline"),
                    None,
                    Disposition::Notify,
                    at,
                    "system",
                )
                .await;
                // The site's one alarm stands for its nodes' offline alarms.
                self.store
                    .suppress_standing(&key.site, CAUSE_OFFLINE, at)
                    .await?;
                let input = self.offline_input(key.clone(), at, false);
                self.raise(input, None).await
            }
            SiteTransition::UplinkRestored => {
                self.log(
                    key,
                    "uplink_restored",
                    None,
                    None,
                    Disposition::Notify,
                    at,
                    "system",
                )
                .await;
                self.settle(key, "cleared", None, at).await
            }
        }
    }

    /// Once a root cause is gone, the alarms it suppressed that still stand
    /// are shown again, and get the ticket they would have had.
    async fn release_suppressed(
        &mut self,
        site: &str,
        node: Option<&str>,
        at: u64,
    ) -> Result<(), StoreError> {
        let (Ok(s), Some(Ok(n))) = (SiteId::new(site), node.map(NodeId::new)) else {
            return Ok(());
        };
        if self.runtime_suppressed(&s, &n) {
            return Ok(());
        }
        for row in self.store.suppressed_standing(site, node).await? {
            let key = AlarmKey {
                site: row.site.clone(),
                node: row.node.clone(),
                channel: row.channel.clone(),
                cause: row.cause.clone(),
            };
            let q = row.quantity.as_deref().and_then(wire::Quantity::from_wire);
            let ticket = match (row.kind.as_str(), row.level.as_str(), q) {
                ("fault", _, _) if key.cause == CAUSE_SUPPLY => {
                    Some(self.fault_ticket(&key, "主电故障".into()))
                }
                ("fault", _, Some(q)) => Some(
                    self.fault_ticket(&key, format!("{}传感器故障", labels::quantity(q.as_str()))),
                ),
                (_, "alarm", Some(q)) => {
                    Some(self.hazard_ticket(&key, q, "超限（根因恢复后仍在报警）".into()))
                }
                _ => None,
            };
            let (row, outcome) = self.store.unsuppress(row.id, ticket.as_ref(), at).await?;
            self.count_ticket(&outcome, row.id);
            let _ = self.events.send(GatewayEvent::AlarmRaised {
                alarm: AlarmView::from(row),
                ticket: outcome,
            });
        }
        Ok(())
    }

    fn runtime_suppressed(&self, site: &SiteId, node: &NodeId) -> bool {
        self.runtime.is_suppressed(site, node)
    }

    fn count_ticket(&self, outcome: &Option<TicketOutcome>, alarm: i64) {
        match outcome {
            Some(TicketOutcome::Opened { number, .. }) => {
                inc(&self.metrics.tickets_opened);
                tracing::info!(ticket = %number, alarm, "hazard ticket opened");
            }
            Some(TicketOutcome::Reopened { number, .. }) => {
                inc(&self.metrics.tickets_reopened);
                tracing::warn!(ticket = %number, alarm, "hazard recurred: closed ticket reopened");
            }
            Some(TicketOutcome::Attached { number, .. }) => {
                inc(&self.metrics.tickets_attached);
                tracing::info!(ticket = %number, alarm, "alarm attached to the open ticket");
            }
            _ => {}
        }
    }

    async fn raise(
        &mut self,
        input: AlarmInput,
        ticket: Option<TicketSpec>,
    ) -> Result<(), StoreError> {
        let (row, outcome) = self.store.raise(&input, ticket.as_ref()).await?;
        if matches!(input.kind, "electrical_fire" | "fire_facility") && !input.suppressed {
            inc(&self.metrics.alarms_raised);
        }
        self.count_ticket(&outcome, row.id);
        tracing::info!(
            site = %row.site, node = %row.node, ch = %row.channel, cause = %row.cause,
            level = %row.level, value = ?row.value, suppressed = row.suppressed, "alarm raised"
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
    ) -> Result<(), StoreError> {
        if let Some(row) = self.store.settle(key, state, value, at).await? {
            tracing::info!(site = %row.site, node = %row.node, ch = %row.channel, cause = %row.cause, state, "alarm settled");
            let _ = self.events.send(GatewayEvent::AlarmUpdated {
                alarm: AlarmView::from(row),
            });
        }
        Ok(())
    }
}
