//! The pure evaluation step of the alarm path:
//! `(committed state, batch, now) → (new state, effects)`.
//!
//! [`Core`] is all the state the alarm path keeps in memory — rule state per
//! channel, node and site, sequence numbers for de-duplication, self-tests
//! in progress, which readings were linked to tickets — and [`Core::step`]
//! takes a batch of messages through topic check → node check → decode →
//! de-duplication → rules → self-test → suppression, and answers what must
//! happen as data ([`Effects`]). It performs no I/O and reads no clock:
//! time comes with the messages (arrival) or as an argument.
//!
//! The pipeline keeps the last committed `Core`; it evaluates a batch on a
//! copy and keeps the copy only once the batch's effects are committed, so
//! a database fault throws the batch's new state away and the retried batch
//! raises the same transitions again.

use super::effects::{Effect, Effects, Lines, LinkRow, LogRow, Note, RollupAdd, SeqRow, StateRow};
use super::{specs, Inbound, MAX_CLOCK_AHEAD_MS};
use crate::alarms::runtime::{
    alarm_kind, Change, ChannelRef, Runtime, CAUSE_DEVICE_ALARM, SUPPLY_CHANNEL,
};
use crate::alarms::selftest::SelfTest;
use crate::config::Config;
use crate::domain::labels;
use crate::ingest::dedup::Verdict;
use crate::sink::encode_line_into;
use crate::store::{AlarmInput, AlarmKey, TicketSpec};
use rules::{Disposition, Level, Transition};
use std::collections::HashMap;
use std::sync::Arc;
use wire::{
    ChannelId, ChannelStatus, CmdAck, Event, EventLevel, NodeId, SiteId, Status, Telemetry, Topic,
    TopicKind,
};

mod admission;
mod transitions;

/// The alarm path's in-memory state (see the module docs).
#[derive(Clone)]
pub struct Core {
    pub(super) config: Arc<Config>,
    pub(super) runtime: Runtime,
    /// Which readings to keep with open tickets.
    linker: crate::alarms::linker::Linker,
    /// Self-tests in progress, by `(site, node)`.
    pub(super) selftests: HashMap<(String, String), SelfTest>,
    /// Whether readings go to a metrics sink (lines are encoded).
    sink: bool,
    /// Channels whose rule state moved in this evaluation, with the time
    /// of their last output: their state is saved once, at the end.
    dirty: HashMap<(SiteId, NodeId, ChannelId), u64>,
    /// Nodes whose de-duplication window moved in this evaluation.
    dirty_nodes: std::collections::BTreeSet<(SiteId, NodeId)>,
    /// Counts since start that `/metrics` shows once committed.
    pub(super) counts: SeqCounts,
    fx: Effects,
}

/// What the de-duplicator saw of sequences it could not follow, since
/// start (the pipeline copies them to `/metrics` after each commit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqCounts {
    /// Sequences accepted as a restart (`gateway_seq_restarts_total`).
    pub restarts: u64,
    /// Messages outside the window, not (yet) confirmed
    /// (`gateway_seq_unconfirmed_total`).
    pub unconfirmed: u64,
}

fn level_code(l: Level) -> &'static str {
    if l == Level::Alarm {
        "alarm"
    } else {
        "pre_alarm"
    }
}

fn disposition_code(d: Disposition) -> &'static str {
    match d {
        Disposition::Notify => "notify",
        Disposition::Suppressed => "suppressed",
        Disposition::Flapping => "flapping",
    }
}

impl Core {
    pub fn new(config: Arc<Config>, sink: bool) -> Core {
        Core {
            runtime: Runtime::new(config.clone()),
            config,
            linker: Default::default(),
            selftests: HashMap::new(),
            sink,
            dirty: HashMap::new(),
            dirty_nodes: Default::default(),
            counts: SeqCounts::default(),
            fx: Effects::default(),
        }
    }

    /// The rule state (read-only).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Evaluates a batch of messages, in order.
    pub fn step(&mut self, batch: &[Inbound]) -> Effects {
        for msg in batch {
            self.message(msg);
        }
        self.finish()
    }

    /// Checks the dead-man timers and self-test windows at `now`.
    pub fn tick(&mut self, now: u64) -> Effects {
        let changes = self.runtime.tick(now);
        if !changes.is_empty() {
            self.apply(changes, now);
        }
        self.finish_selftests(now);
        self.finish()
    }

    /// The effects gathered so far, with the last rule state of every
    /// channel that moved.
    pub fn finish(&mut self) -> Effects {
        for ((s, n, c), at) in std::mem::take(&mut self.dirty) {
            let Some((q, state)) = self.runtime.channel_state(&s, &n, &c) else {
                continue;
            };
            self.fx.states.push(StateRow {
                site: s.to_string(),
                node: n.to_string(),
                channel: c.to_string(),
                quantity: q.as_str(),
                state: serde_json::to_string(&state).unwrap_or_default(),
                at,
            });
        }
        for (s, n) in std::mem::take(&mut self.dirty_nodes) {
            if let Some(state) = self.runtime.seq_state(&s, &n) {
                self.fx.seqs.push(SeqRow {
                    site: s.to_string(),
                    node: n.to_string(),
                    state,
                });
            }
        }
        // Deterministic order (the map's is not): by channel.
        self.fx
            .states
            .sort_by(|a, b| (&a.site, &a.node, &a.channel).cmp(&(&b.site, &b.node, &b.channel)));
        std::mem::take(&mut self.fx)
    }

    pub(super) fn push(&mut self, e: Effect) {
        self.fx.writes.push(e);
    }

    fn note(&mut self, n: Note) {
        self.fx.notes.push(n);
    }

    fn drop_msg(&mut self, source: &str, reason: &'static str, detail: String) {
        self.note(Note::Drop {
            source: source.to_string(),
            reason,
            detail,
        });
    }

    /// One message.
    fn message(&mut self, msg: &Inbound) {
        self.note(Note::Received);
        let now = msg.arrived_ms;
        let topic = match Topic::parse(&msg.topic) {
            Ok(t) => t,
            Err(e) => {
                let src: String = msg.topic.chars().take(80).collect();
                self.drop_msg(&src, "bad_topic", e.to_string());
                return;
            }
        };
        let source = format!("{}/{}", topic.site, topic.node);
        if topic.kind == TopicKind::Cmd {
            return; // our own commands to nodes, echoed by a wildcard subscription
        }
        if !self.runtime.knows(&topic.site, &topic.node) {
            self.drop_msg(&source, "unknown_node", "node is not configured".into());
            return;
        }
        let bytes = &msg.payload[..];
        macro_rules! decode {
            ($t:ty) => {
                match wire::decode::<$t>(bytes) {
                    Ok(v) => v,
                    Err(e) => {
                        self.drop_msg(&source, e.reason(), e.to_string());
                        return;
                    }
                }
            };
        }
        match topic.kind {
            TopicKind::Telemetry => {
                let t = decode!(Telemetry);
                self.telemetry(&topic, t, now);
            }
            TopicKind::Status => {
                let s: Status = decode!(Status);
                if let Some(dropped) = s.dropped.filter(|d| *d > 0) {
                    tracing::warn!(node = %source, dropped, "node reports readings dropped from its offline buffer");
                    self.note(Note::SeqGaps(u64::from(dropped)));
                }
                let changes = self.runtime.status(&topic.site, &topic.node, &s, now);
                self.apply(changes, now);
                if s.state == wire::NodeState::Online {
                    self.fx
                        .push_setpoints
                        .push((topic.site.to_string(), topic.node.to_string()));
                }
            }
            TopicKind::Event => {
                let e: Event = decode!(Event);
                if self.dedup(&topic, e.boot, e.seq, now).is_some() {
                    self.seen(&topic, now);
                    tracing::info!(node = %source, ch = %e.ch, level = %e.level, v = e.v, "node-side event");
                    if e.ch.as_str() == SUPPLY_CHANNEL {
                        // The node's own power supply (主电): a fault level means it runs on battery or is failing.
                        let ok = e.level != EventLevel::Fault;
                        let changes = self.runtime.supply(&topic.site, &topic.node, ok, now);
                        self.apply(changes, now);
                    } else {
                        self.device_event(&topic, &e, now);
                    }
                }
            }
            TopicKind::CmdAck => {
                let a: CmdAck = decode!(CmdAck);
                self.seen(&topic, now);
                if let Some(test) = self
                    .selftests
                    .get_mut(&(topic.site.to_string(), topic.node.to_string()))
                    .filter(|t| t.cmd_id == a.id.as_str())
                {
                    test.ack(a.ok);
                    self.finish_selftests(now);
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
    pub(super) fn device_event(&mut self, topic: &Topic, e: &Event, now: u64) {
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
            );
            self.finish_selftests(now);
            return;
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
                );
                self.settle(&key, "cleared", Some(e.v), now);
                return;
            }
            EventLevel::Fault => return,
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
            Some(level_code(level)),
            Some(e.v),
            disposition,
            now,
            "device",
        );
        let Some((q, state)) = known else {
            // No telemetry from this channel yet: nothing says what it
            // measures. Counted; the value will come with the telemetry.
            self.drop_msg(
                &format!("{}/{}", key.site, key.node),
                "unknown_channel",
                "device alarm on a channel with no telemetry yet".into(),
            );
            return;
        };
        if state.level() >= level {
            return; // the gateway's own alarm on this channel stands
        }
        let ticket = (level == Level::Alarm && !suppressed).then(|| {
            specs::hazard(
                &self.config,
                &key,
                q,
                format!(
                    "探测器自身报警（{}）",
                    labels::value(q.as_str(), e.v.into())
                ),
            )
        });
        let input = input(
            key,
            alarm_kind(q),
            level_code(level),
            Some(q),
            Some(e.v),
            None,
            now,
            suppressed,
        );
        self.raise(input, ticket);
    }

    /// Any accepted message proves the node alive.
    fn seen(&mut self, topic: &Topic, now: u64) {
        let changes = self.runtime.seen(&topic.site, &topic.node, now);
        if !changes.is_empty() {
            self.apply(changes, now);
        }
    }

    /// De-duplicates on `(boot, seq)`: `None` for a duplicate (counted),
    /// else whether the message is in order (gaps counted). A sequence the
    /// window could not follow, accepted as a restart, is in order and
    /// told to the duty desk.
    fn dedup(&mut self, topic: &Topic, boot: u32, seq: u32, now: u64) -> Option<bool> {
        self.dirty_nodes
            .insert((topic.site.clone(), topic.node.clone()));
        match self
            .runtime
            .observe_seq(&topic.site, &topic.node, boot, seq)
        {
            Verdict::Duplicate => {
                self.fx.notes.push(Note::Drop {
                    source: String::new(),
                    reason: "duplicate",
                    detail: String::new(),
                });
                None
            }
            Verdict::InOrder { gap } => {
                if gap > 0 {
                    self.note(Note::SeqGaps(u64::from(gap)));
                }
                Some(true)
            }
            Verdict::Late => Some(false),
            Verdict::Unconfirmed => {
                // Stored, not judged; counted (a flood of them would flood a log).
                self.counts.unconfirmed += 1;
                tracing::debug!(site = %topic.site, node = %topic.node, boot, seq, "message outside the de-duplication window: stored, not judged until its sequence is confirmed");
                Some(false)
            }
            Verdict::Restarted { from } => {
                self.counts.restarts += 1;
                self.seq_restarted(topic, from, (boot, seq), now);
                Some(true)
            }
        }
    }

    fn telemetry(&mut self, topic: &Topic, mut t: Telemetry, now: u64) {
        let Some(in_order) = self.dedup(topic, t.boot, t.seq, now) else {
            if self.sink
                && self
                    .runtime
                    .take_unspooled(&topic.site, &topic.node, t.boot, t.seq)
            {
                // Committed before a restart, its lines never reached the
                // spool: judged and stored already, so only the lines.
                let at = self.reading_time(topic, &t, now);
                self.sink_lines(topic, &t, at);
            }
            return;
        };
        self.seen(topic, now);
        self.admit(topic, &mut t, in_order, now);
        if !in_order {
            self.note(Note::ReadingsLate(t.ch.len() as u64));
        }
        let at = self.reading_time(topic, &t, now);
        self.note(Note::ReadingsAccepted(t.ch.len() as u64));
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
                self.fx.rollups.push(RollupAdd {
                    site: topic.site.to_string(),
                    node: topic.node.to_string(),
                    channel: r.id.to_string(),
                    quantity: r.q.as_str(),
                    value: r.v,
                    at,
                });
            }
        }
        self.sink_lines(topic, &t, at);
        if in_order {
            let changes = self.runtime.readings(&topic.site, &topic.node, &t.ch, at);
            if testing {
                for c in &changes {
                    if let Change::Test { ch, transition } = c {
                        self.selftest_change(ch, transition, now);
                    }
                }
                self.finish_selftests(now);
            } else {
                // Every judged channel's state is kept as the batch leaves
                // it (a pending on-delay, the rate window), so a restart
                // carries on exactly where the last commit stood.
                for r in t.ch.iter() {
                    self.dirty
                        .insert((topic.site.clone(), topic.node.clone(), r.id.clone()), at);
                }
                self.apply(changes, at);
                self.link_readings(topic, &t, at);
            }
        }
    }

    /// When a reading was taken. No wall clock on the node (ts 0), or a
    /// clock running ahead: arrival time. Old timestamps are legitimate
    /// (backfill after an outage).
    fn reading_time(&mut self, topic: &Topic, t: &Telemetry, now: u64) -> u64 {
        if t.ts == 0 {
            now
        } else if t.ts > now.saturating_add(MAX_CLOCK_AHEAD_MS) {
            self.note(Note::ClockAhead {
                source: format!("{}/{}", topic.site, topic.node),
            });
            now
        } else {
            t.ts
        }
    }

    /// The message's line-protocol lines for the metrics sink.
    fn sink_lines(&mut self, topic: &Topic, t: &Telemetry, at: u64) {
        if self.sink {
            // A faulted channel's value is not a measurement: it is shown as a
            // fault, not written as a data point.
            let mut text = String::new();
            let mut count = 0u32;
            for r in t.ch.iter().filter(|r| r.s == ChannelStatus::Ok) {
                if count > 0 {
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
                count += 1;
            }
            if count > 0 {
                self.fx.lines.push(Lines {
                    source: format!("{}/{}", topic.site, topic.node),
                    boot: t.boot,
                    seq: t.seq,
                    count,
                    text,
                });
            }
        }
    }

    /// Keeps readings with the open tickets of their channels (关联读数),
    /// as [`crate::alarms::linker`] decides. Only in-order readings: they are the
    /// ones the rules judged, so their level is known.
    fn link_readings(&mut self, topic: &Topic, t: &Telemetry, at: u64) {
        for r in t.ch.iter() {
            let Some((_, state)) = self.runtime.channel_state(&topic.site, &topic.node, &r.id)
            else {
                continue;
            };
            let condition = crate::alarms::linker::Condition {
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
            self.push(Effect::LinkReading(LinkRow {
                site: topic.site.to_string(),
                node: topic.node.to_string(),
                channel: r.id.to_string(),
                quantity: r.q.as_str(),
                value: r.v,
                status: condition.status,
                level: condition.level,
                abnormal: condition.abnormal(),
                at,
            }));
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

    /// Ends the self-tests that are over at `now`: records each channel's
    /// result and puts the node back on its real rules.
    pub(super) fn finish_selftests(&mut self, now: u64) {
        let mut done: Vec<(String, String)> = self
            .selftests
            .iter()
            .filter(|(_, t)| t.done(now))
            .map(|(k, _)| k.clone())
            .collect();
        done.sort();
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
                self.device_event(&topic, &e, now);
            }
            let results = test.results();
            let passed = crate::alarms::selftest::all_passed(&results);
            if test.signal_may_be_on() {
                tracing::warn!(site = %key.0, node = %key.1, "self-test window ended with a test signal still on: the real rules judge it from now");
            }
            tracing::info!(site = %key.0, node = %key.1, id = test.id, passed, channels = results.len(), "self-test finished");
            self.push(Effect::FinishSelfTest {
                id: test.id,
                at: now,
                passed,
                channels: serde_json::to_string(&results).unwrap_or_else(|_| "[]".into()),
                reason: test.reason(),
            });
        }
    }

    /// Takes the rule outputs of one evaluation: their channels' state is
    /// saved at the end of the batch, and each becomes alarm records.
    pub(super) fn apply(&mut self, changes: Vec<Change>, at: u64) {
        self.mark_dirty(&changes, at);
        self.apply_as(changes, at, "system");
    }

    pub(super) fn mark_dirty(&mut self, changes: &[Change], at: u64) {
        for c in changes {
            if let Change::Channel { ch, .. } = c {
                if let (Ok(s), Ok(n), Ok(id)) = (
                    SiteId::new(&ch.site),
                    NodeId::new(&ch.node),
                    ChannelId::new(&ch.channel),
                ) {
                    self.dirty.insert((s, n, id), at);
                }
            }
        }
    }

    pub(super) fn apply_as(&mut self, changes: Vec<Change>, at: u64, actor: &str) {
        for change in changes {
            match change {
                Change::Channel {
                    ch,
                    transition,
                    disposition,
                    level,
                } => self.apply_channel(&ch, transition, disposition, level, at, actor),
                Change::Node {
                    key,
                    transition,
                    suppressed,
                } => self.apply_node(&key, transition, suppressed, at),
                Change::Site { key, transition } => self.apply_site(&key, transition, at),
                // Only produced for a node under self-test, handled where the readings are.
                Change::Test { .. } => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn log(
        &mut self,
        key: &AlarmKey,
        transition: &'static str,
        level: Option<&'static str>,
        value: Option<i32>,
        disposition: Disposition,
        at: u64,
        actor: &str,
    ) {
        self.push(Effect::Log(LogRow {
            at,
            key: key.clone(),
            transition,
            level,
            value,
            disposition: disposition_code(disposition),
            actor: actor.to_string(),
        }));
    }

    pub(super) fn raise(&mut self, input: AlarmInput, ticket: Option<TicketSpec>) {
        self.push(Effect::Raise { input, ticket });
    }

    pub(super) fn settle(
        &mut self,
        key: &AlarmKey,
        state: &'static str,
        value: Option<i32>,
        at: u64,
    ) {
        self.push(Effect::Settle {
            key: key.clone(),
            state,
            value,
            at,
        });
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn input(
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
