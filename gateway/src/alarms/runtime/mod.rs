//! Rules runtime (规则运行时): per-channel, per-node and per-site rule state,
//! fed with decoded messages and clock ticks, producing [`Change`]s. Pure:
//! time is an argument, no I/O; the pipeline applies the changes to the
//! store and the notifiers.
//!
//! Root cause first (DOMAIN.md §3): while a node is offline or reports a
//! supply failure, or its whole site is unreachable, its channels' outputs
//! are marked suppressed; the node (or site) raises the one alarm.

use crate::config::Config;
use crate::ingest::dedup::{SeqTracker, Verdict};
use crate::ingest::node_limits::Admission;
use crate::store::AlarmKey;
use causes::fault_kind;
use rules::{
    ChannelRule, ChannelState, Context, Direction, Disposition, FaultKind, Level, Millis, NodeRule,
    NodeState, NodeTransition, Sample, SiteState, SiteTransition, Transition,
};
use std::collections::HashMap;
use std::sync::Arc;
use wire::NodeState as WireNodeState;
use wire::{ChannelId, ChannelStatus, NodeId, Quantity, Reading, SiteId, Status};

mod causes;

pub use causes::{
    alarm_kind, rate_cause, threshold_cause, CAUSE_DEVICE_ALARM, CAUSE_FAULT, CAUSE_INSULATION,
    CAUSE_OFFLINE, CAUSE_QUANTITY_CHANGED, CAUSE_SEQ_RESTART, CAUSE_SUPPLY, CAUSE_UPLINK,
    SUPPLY_CHANNEL,
};

#[cfg(test)]
mod tests;

/// A channel an output is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRef {
    pub site: String,
    pub node: String,
    pub channel: String,
    pub quantity: Quantity,
    pub direction: Direction,
}

impl ChannelRef {
    /// The alarm key of a transition on this channel.
    pub fn key_for(&self, t: &Transition) -> AlarmKey {
        let cause = match t {
            Transition::FaultRaised { .. } | Transition::FaultCleared { .. } => {
                CAUSE_FAULT.to_string()
            }
            Transition::RateRaised { .. } | Transition::RateCleared { .. } => {
                rate_cause(self.quantity)
            }
            _ => threshold_cause(self.quantity, self.direction),
        };
        AlarmKey {
            site: self.site.clone(),
            node: self.node.clone(),
            channel: self.channel.clone(),
            cause,
        }
    }
}

/// What the pipeline must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A channel's rule output, with its disposition and the level the
    /// channel is at afterwards.
    Channel {
        ch: ChannelRef,
        transition: Transition,
        disposition: Disposition,
        level: Level,
    },
    /// A node went offline, came back, or its supply changed. `suppressed`:
    /// its site's uplink is lost, which is the root cause.
    Node {
        key: AlarmKey,
        transition: NodeTransition,
        suppressed: bool,
    },
    /// A site's uplink was lost or restored.
    Site {
        key: AlarmKey,
        transition: SiteTransition,
    },
    /// A rule output on a node under self-test, judged on scratch state:
    /// a test result, never an alarm.
    Test {
        ch: ChannelRef,
        transition: Transition,
    },
}

/// Why a reset was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetRefused {
    /// No such channel is known.
    UnknownChannel,
    /// Nothing is latched, the value is still past the setpoint, or the sensor is faulted.
    NotReleasable,
}

#[derive(Clone)]
struct ChannelRt {
    quantity: Quantity,
    rule: ChannelRule,
    state: ChannelState,
    /// The node reported another quantity here while an alarm stood
    /// (refused; an authorised reset releases the channel).
    other_quantity: bool,
}

impl ChannelRt {
    fn fresh(quantity: Quantity, rule: ChannelRule) -> ChannelRt {
        ChannelRt {
            quantity,
            rule,
            state: ChannelState::default(),
            other_quantity: false,
        }
    }

    /// Judges one reading of this channel.
    fn judge(&mut self, r: &Reading, at: Millis, ctx: Context) -> rules::Outputs {
        let sample = match fault_kind(r.s) {
            Some(k) => Sample::fault(k),
            None => Sample::ok(r.v),
        };
        rules::evaluate(&self.rule, &mut self.state, sample, at, ctx)
    }

    /// The channel a reading's outputs are about (built only when there
    /// are outputs: most readings have none).
    fn about(&self, site: &SiteId, node: &NodeId, r: &Reading) -> ChannelRef {
        ChannelRef {
            site: site.to_string(),
            node: node.to_string(),
            channel: r.id.to_string(),
            quantity: r.q,
            direction: self.rule.threshold.map(|t| t.direction).unwrap_or_default(),
        }
    }
}

#[derive(Clone)]
struct NodeRt {
    seq: SeqTracker,
    rule: NodeRule,
    live: NodeState,
    /// A message from the node arrived since the gateway started (the
    /// dead-man timer of a configured node runs from start-up without one).
    heard: bool,
    /// Channels of this node in `Runtime::channels` (capped, see
    /// [`crate::ingest::node_limits`]).
    channels: usize,
    /// Messages committed before the gateway restarted whose lines the
    /// spool does not hold (a kill between the commit and the spool
    /// append): marked in the restored window, so their redelivery is a
    /// duplicate for the rules, but their readings must still reach the
    /// TSDB once. `None` once there are none.
    unspooled: Option<Box<SeqTracker>>,
}

/// All rule state of one gateway.
#[derive(Clone)]
pub struct Runtime {
    config: Arc<Config>,
    channels: HashMap<(SiteId, NodeId, ChannelId), ChannelRt>,
    nodes: HashMap<(SiteId, NodeId), NodeRt>,
    sites: HashMap<SiteId, SiteState>,
    /// Nodes under self-test (自检), with the scratch rule state their
    /// readings are judged on meanwhile ([`Runtime::begin_test`]).
    testing: HashMap<(SiteId, NodeId), HashMap<ChannelId, ChannelRt>>,
    /// Setpoints applied at run time (推荐定值 applied by an installer),
    /// over the configuration's rule for the channel.
    overrides: HashMap<(SiteId, NodeId, ChannelId), (Quantity, ChannelRule)>,
}

fn node_key(site: &str, node: &str, cause: &str) -> AlarmKey {
    AlarmKey {
        site: site.to_string(),
        node: node.to_string(),
        channel: String::new(),
        cause: cause.to_string(),
    }
}

impl Runtime {
    pub fn new(config: Arc<Config>) -> Self {
        Runtime {
            config,
            channels: HashMap::new(),
            nodes: HashMap::new(),
            sites: HashMap::new(),
            testing: HashMap::new(),
            overrides: HashMap::new(),
        }
    }

    /// The rule a channel is judged by: a setpoint applied at run time, or
    /// the configuration's.
    pub fn rule(
        &self,
        q: Quantity,
        site: &SiteId,
        node: &NodeId,
        channel: &ChannelId,
    ) -> ChannelRule {
        match self
            .overrides
            .get(&(site.clone(), node.clone(), channel.clone()))
        {
            Some((oq, rule)) if *oq == q => *rule,
            _ => self.config.rule_for(q, site, node, channel),
        }
    }

    /// Applies setpoints to a channel from now on, keeping its state (a
    /// standing alarm is judged against the new setpoints by the next
    /// reading).
    pub fn set_rule(
        &mut self,
        q: Quantity,
        site: &SiteId,
        node: &NodeId,
        channel: &ChannelId,
        rule: ChannelRule,
    ) {
        let key = (site.clone(), node.clone(), channel.clone());
        if let Some(ch) = self.channels.get_mut(&key) {
            if ch.quantity == q {
                ch.rule = rule;
            }
        }
        self.overrides.insert(key, (q, rule));
    }

    /// Puts a node under self-test: until [`Runtime::end_test`], its
    /// readings are judged on fresh scratch rule state and come out as
    /// [`Change::Test`], and its channels' real rule state is left as it
    /// was (the injected test signal is not a measurement).
    pub fn begin_test(&mut self, site: &SiteId, node: &NodeId) {
        self.testing
            .insert((site.clone(), node.clone()), HashMap::new());
    }

    /// Ends a node's self-test: its readings are judged by the real rules again.
    pub fn end_test(&mut self, site: &SiteId, node: &NodeId) {
        self.testing.remove(&(site.clone(), node.clone()));
    }

    /// The quantity and rule of a channel the rules know.
    pub fn channel_rule(
        &self,
        site: &SiteId,
        node: &NodeId,
        channel: &ChannelId,
    ) -> Option<(Quantity, ChannelRule)> {
        self.channels
            .get(&(site.clone(), node.clone(), channel.clone()))
            .map(|c| (c.quantity, c.rule))
    }

    /// Whether the node is under self-test.
    pub fn under_test(&self, site: &SiteId, node: &NodeId) -> bool {
        self.testing.contains_key(&(site.clone(), node.clone()))
    }

    /// The node's channels as the rules know them: id, quantity, and the
    /// sensor status last judged (a fault, or fine).
    pub fn node_channels(
        &self,
        site: &SiteId,
        node: &NodeId,
    ) -> Vec<(ChannelId, Quantity, ChannelStatus)> {
        let mut out: Vec<_> = self
            .channels
            .iter()
            .filter(|((s, n, _), _)| s == site && n == node)
            .map(|((_, _, c), rt)| {
                let status = match rt.state.fault() {
                    None => ChannelStatus::Ok,
                    Some(FaultKind::Open) => ChannelStatus::Open,
                    Some(FaultKind::Short) => ChannelStatus::Short,
                    Some(FaultKind::Range) => ChannelStatus::Range,
                    Some(FaultKind::Fault) => ChannelStatus::Fault,
                };
                (c.clone(), rt.quantity, status)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether the node is up: heard from since start-up, not offline.
    pub fn is_online(&self, site: &SiteId, node: &NodeId) -> bool {
        self.nodes
            .get(&(site.clone(), node.clone()))
            .is_some_and(|n| n.heard && !n.live.is_offline())
    }

    /// A node under test: its readings on scratch state, as [`Change::Test`].
    fn test_readings(
        &mut self,
        site: &SiteId,
        node: &NodeId,
        readings: &[Reading],
        at: Millis,
    ) -> Vec<Change> {
        let key = (site.clone(), node.clone());
        let mut out = Vec::new();
        for r in readings {
            let known = self
                .testing
                .get(&key)
                .and_then(|t| t.get(&r.id))
                .is_some_and(|c| c.quantity == r.q);
            if !known {
                let fresh = ChannelRt::fresh(r.q, self.rule(r.q, site, node, &r.id));
                if let Some(scratch) = self.testing.get_mut(&key) {
                    scratch.insert(r.id.clone(), fresh);
                }
            }
            let Some(ch) = self.testing.get_mut(&key).and_then(|t| t.get_mut(&r.id)) else {
                continue;
            };
            let outputs = ch.judge(r, at, Context::default());
            if outputs.is_empty() {
                continue;
            }
            let cref = ch.about(site, node, r);
            out.extend(outputs.into_iter().map(|o| Change::Test {
                ch: cref.clone(),
                transition: o.transition,
            }));
        }
        out
    }

    /// Starts the dead-man timer of every configured node at `now`, so a
    /// node that never reports after a gateway start is reported offline.
    pub fn start(&mut self, now: Millis) {
        let ids: Vec<(SiteId, NodeId)> = self
            .config
            .sites
            .iter()
            .flat_map(|s| s.nodes.iter().map(move |n| (s.id.as_str(), n.id.as_str())))
            .filter_map(|(s, n)| Some((SiteId::new(s).ok()?, NodeId::new(n).ok()?)))
            .collect();
        for (s, n) in ids {
            let rt = self.node_rt(&s, &n);
            rules::node::seen(&rt.rule, &mut rt.live, now);
        }
    }

    /// Takes a new configuration in force at `now`: nodes that appeared
    /// start their dead-man timer, nodes that left (revoked) are forgotten
    /// with their channels' state.
    pub fn reconfigure(&mut self, config: Arc<Config>, now: Millis) {
        let old = std::mem::replace(&mut self.config, config.clone());
        if !config.accept_unknown_nodes {
            self.nodes.retain(|(s, n), _| config.node(s, n).is_some());
            self.channels
                .retain(|(s, n, _), _| config.node(s, n).is_some());
        }
        let added: Vec<(SiteId, NodeId)> = config
            .sites
            .iter()
            .flat_map(|s| s.nodes.iter().map(move |n| (s.id.as_str(), n.id.as_str())))
            .filter(|(s, n)| old.node(s, n).is_none())
            .filter_map(|(s, n)| Some((SiteId::new(s).ok()?, NodeId::new(n).ok()?)))
            .collect();
        for (s, n) in added {
            let rt = self.node_rt(&s, &n);
            rules::node::seen(&rt.rule, &mut rt.live, now);
        }
    }

    /// Marks a node offline without an output: at start-up, for a node whose
    /// offline alarm still stands in the store, so that its return clears it.
    pub fn restore_offline(&mut self, site: &SiteId, node: &NodeId, now: Millis) {
        let rt = self.node_rt(site, node);
        rules::node::last_will(&mut rt.live, now);
    }

    /// Restores a channel's saved rule state (at start-up). The rule comes
    /// from the configuration in force.
    pub fn restore_channel(
        &mut self,
        site: &SiteId,
        node: &NodeId,
        channel: &ChannelId,
        q: Quantity,
        state: ChannelState,
    ) {
        let rule = self.rule(q, site, node, channel);
        self.insert_channel(
            (site.clone(), node.clone(), channel.clone()),
            ChannelRt {
                quantity: q,
                rule,
                state,
                other_quantity: false,
            },
        );
    }

    /// Puts a channel's rule state in place, counting the node's channels.
    fn insert_channel(&mut self, id: (SiteId, NodeId, ChannelId), rt: ChannelRt) {
        let (site, node) = (id.0.clone(), id.1.clone());
        if self.channels.insert(id, rt).is_none() {
            self.node_rt(&site, &node).channels += 1;
        }
    }

    /// Whether reading `r` of this node is taken (the channel cap and
    /// quantity changes, decided by [`crate::ingest::node_limits::admit`]); a new
    /// channel admitted is put in place, so the next reading in the same
    /// message counts it. `judged`: the reading goes to the rules; a late
    /// one never replaces a known channel's state.
    pub fn admit(&mut self, site: &SiteId, node: &NodeId, r: &Reading, judged: bool) -> Admission {
        let id = (site.clone(), node.clone(), r.id.clone());
        let known = self
            .channels
            .get(&id)
            .map(|c| (c.quantity, &c.state, c.other_quantity));
        // Only a channel the rules do not know needs the node's count.
        let count = match known {
            Some(_) => 0,
            None => self
                .nodes
                .get(&(site.clone(), node.clone()))
                .map_or(0, |n| n.channels),
        };
        let a = crate::ingest::node_limits::admit(known, count, r.q);
        match a {
            Admission::Fresh if judged || !self.channels.contains_key(&id) => {
                let fresh = ChannelRt::fresh(r.q, self.rule(r.q, site, node, &r.id));
                self.insert_channel(id, fresh);
            }
            Admission::QuantityChanged { .. } => {
                if let Some(c) = self.channels.get_mut(&id) {
                    c.other_quantity = true;
                }
            }
            Admission::Fresh | Admission::Known | Admission::ChannelLimit => {}
        }
        a
    }

    /// Whether the node reported another quantity on this channel while an
    /// alarm stood on it (its reset releases the channel whatever its value).
    pub fn quantity_changed(&self, site: &SiteId, node: &NodeId, channel: &ChannelId) -> bool {
        self.channels
            .get(&(site.clone(), node.clone(), channel.clone()))
            .is_some_and(|c| c.other_quantity)
    }

    /// A channel's quantity and current rule state, to be saved.
    pub fn channel_state(
        &self,
        site: &SiteId,
        node: &NodeId,
        channel: &ChannelId,
    ) -> Option<(Quantity, ChannelState)> {
        self.channels
            .get(&(site.clone(), node.clone(), channel.clone()))
            .map(|c| (c.quantity, c.state))
    }

    fn node_rt(&mut self, site: &SiteId, node: &NodeId) -> &mut NodeRt {
        let offline_after_ms = self.config.offline_after_ms(site, node);
        self.nodes
            .entry((site.clone(), node.clone()))
            .or_insert_with(|| NodeRt {
                seq: SeqTracker::default(),
                rule: NodeRule { offline_after_ms },
                live: NodeState::default(),
                heard: false,
                channels: 0,
                unspooled: None,
            })
    }

    /// Whether messages from this node are accepted.
    pub fn knows(&self, site: &SiteId, node: &NodeId) -> bool {
        self.config.accept_unknown_nodes || self.config.node(site, node).is_some()
    }

    /// A node's de-duplication window as text (to keep across a restart).
    pub fn seq_state(&self, site: &SiteId, node: &NodeId) -> Option<String> {
        self.nodes
            .get(&(site.clone(), node.clone()))
            .and_then(|n| n.seq.to_text())
    }

    /// Restores a node's de-duplication window saved before a restart.
    pub fn restore_seq(&mut self, site: &SiteId, node: &NodeId, text: &str) -> bool {
        match crate::ingest::dedup::SeqTracker::from_text(text) {
            Some(t) => {
                self.node_rt(site, node).seq = t;
                true
            }
            None => false,
        }
    }

    /// After [`Runtime::restore_seq`]: the messages of the restored window
    /// that are not among `spooled` (those the spool holds) are kept as
    /// committed-but-unspooled (see [`Runtime::take_unspooled`]). Returns
    /// how many the window marks that the spool lacks (an upper bound:
    /// lines already delivered and their segment removed count too; a
    /// redelivery of one of those writes an exact copy, never a loss).
    pub fn keep_unspooled(
        &mut self,
        site: &SiteId,
        node: &NodeId,
        spooled: impl IntoIterator<Item = (u32, u32)>,
    ) -> usize {
        let Some(rt) = self.nodes.get_mut(&(site.clone(), node.clone())) else {
            return 0;
        };
        let mut left = rt.seq.clone();
        for (boot, seq) in spooled {
            left.take(boot, seq);
        }
        if left.is_empty() {
            rt.unspooled = None;
            return 0;
        }
        let n = left.count();
        rt.unspooled = Some(Box::new(left));
        n
    }

    /// Whether a duplicate `(boot, seq)` was committed before the restart
    /// without its lines reaching the spool; true once per message.
    pub fn take_unspooled(&mut self, site: &SiteId, node: &NodeId, boot: u32, seq: u32) -> bool {
        let Some(rt) = self.nodes.get_mut(&(site.clone(), node.clone())) else {
            return false;
        };
        let Some(left) = rt.unspooled.as_mut() else {
            return false;
        };
        let taken = left.take(boot, seq);
        if left.is_empty() {
            rt.unspooled = None;
        }
        taken
    }

    /// De-duplicates a telemetry or event message on `(boot, seq)`.
    pub fn observe_seq(&mut self, site: &SiteId, node: &NodeId, boot: u32, seq: u32) -> Verdict {
        self.node_rt(site, node).seq.observe(boot, seq)
    }

    /// Nodes currently known up (online, supply fine).
    pub fn online_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.live.last_seen().is_some() && !n.live.is_offline())
            .count()
    }

    /// Whether a root cause stands for this node: it is offline or its
    /// supply failed, or its site's uplink is lost.
    pub fn is_suppressed(&self, site: &SiteId, node: &NodeId) -> bool {
        let node_down = self
            .nodes
            .get(&(site.clone(), node.clone()))
            .is_some_and(|n| n.live.is_down());
        node_down || self.sites.get(site).is_some_and(|s| s.is_uplink_lost())
    }

    fn node_change(
        &mut self,
        site: &SiteId,
        node: &NodeId,
        t: Option<NodeTransition>,
    ) -> Vec<Change> {
        let Some(t) = t else { return Vec::new() };
        let cause = match t {
            NodeTransition::SupplyFailed | NodeTransition::SupplyRestored => CAUSE_SUPPLY,
            NodeTransition::Offline { .. } | NodeTransition::Online => CAUSE_OFFLINE,
        };
        let mut out = Vec::new();
        // Site first: when this node was the last one up, the site's uplink
        // is the root cause and this node's offline alarm is suppressed.
        out.extend(self.site_update(site));
        let suppressed = self.sites.get(site).is_some_and(|s| s.is_uplink_lost());
        out.insert(
            0,
            Change::Node {
                key: node_key(site, node, cause),
                transition: t,
                suppressed,
            },
        );
        out
    }

    fn site_update(&mut self, site: &SiteId) -> Option<Change> {
        let (total, down) = self
            .nodes
            .iter()
            .filter(|((s, _), n)| s == site && n.live.last_seen().is_some())
            // Unreachable nodes only: a node reporting a supply failure still talks.
            .fold((0u16, 0u16), |(t, d), (_, n)| {
                (
                    t.saturating_add(1),
                    d.saturating_add(u16::from(n.live.is_offline())),
                )
            });
        let st = self.sites.entry(site.clone()).or_default();
        rules::site::update(st, total, down).map(|transition| Change::Site {
            key: node_key(site, "", CAUSE_UPLINK),
            transition,
        })
    }

    /// A message from the node arrived at `now` (liveness).
    pub fn seen(&mut self, site: &SiteId, node: &NodeId, now: Millis) -> Vec<Change> {
        let rt = self.node_rt(site, node);
        rt.heard = true;
        let t = rules::node::seen(&rt.rule, &mut rt.live, now);
        self.node_change(site, node, t)
    }

    /// The dead-man check of every node at `now`.
    pub fn tick(&mut self, now: Millis) -> Vec<Change> {
        let due: Vec<(SiteId, NodeId)> = self
            .nodes
            .iter_mut()
            .filter_map(|(k, rt)| rules::node::tick(&rt.rule, &mut rt.live, now).map(|_| k.clone()))
            .collect();
        let mut out = Vec::new();
        for (s, n) in due {
            out.extend(self.node_change(
                &s,
                &n,
                Some(NodeTransition::Offline {
                    cause: rules::OfflineCause::Timeout,
                }),
            ));
        }
        out
    }

    /// The node reports its power supply (主电) as failed or restored.
    pub fn supply(&mut self, site: &SiteId, node: &NodeId, ok: bool, now: Millis) -> Vec<Change> {
        let rt = self.node_rt(site, node);
        let t = rules::node::supply(&mut rt.live, ok, now);
        self.node_change(site, node, t)
    }

    /// Applies a `status` message (birth or Last Will) arriving at `now`.
    pub fn status(
        &mut self,
        site: &SiteId,
        node: &NodeId,
        status: &Status,
        now: Millis,
    ) -> Vec<Change> {
        match status.state {
            WireNodeState::Online => self.seen(site, node, now),
            WireNodeState::Offline => {
                let rt = self.node_rt(site, node);
                let t = rules::node::last_will(&mut rt.live, now);
                self.node_change(site, node, t)
            }
        }
    }

    /// Evaluates in-order readings sampled at `at`.
    pub fn readings(
        &mut self,
        site: &SiteId,
        node: &NodeId,
        readings: &[Reading],
        at: Millis,
    ) -> Vec<Change> {
        if self.under_test(site, node) {
            return self.test_readings(site, node, readings, at);
        }
        let ctx = Context {
            suppressed: self.is_suppressed(site, node),
        };
        let mut out = Vec::new();
        for r in readings {
            let id = (site.clone(), node.clone(), r.id.clone());
            if self.channels.get(&id).is_none_or(|c| c.quantity != r.q) {
                // New channel, or the node now reports another quantity on
                // it (the pipeline admits readings first: see `admit`).
                let fresh = ChannelRt::fresh(r.q, self.rule(r.q, site, node, &r.id));
                self.insert_channel(id.clone(), fresh);
            }
            let Some(ch) = self.channels.get_mut(&id) else {
                continue;
            };
            let outputs = ch.judge(r, at, ctx);
            if outputs.is_empty() {
                continue;
            }
            let cref = ch.about(site, node, r);
            let level = ch.state.level();
            for o in outputs {
                out.push(Change::Channel {
                    ch: cref.clone(),
                    transition: o.transition,
                    disposition: o.disposition,
                    level,
                });
            }
        }
        out
    }

    /// An authorised reset (复位) of a latched channel at `now`.
    pub fn reset(
        &mut self,
        site: &SiteId,
        node: &NodeId,
        channel: &ChannelId,
        now: Millis,
    ) -> Result<Change, ResetRefused> {
        let ch = self
            .channels
            .get_mut(&(site.clone(), node.clone(), channel.clone()))
            .ok_or(ResetRefused::UnknownChannel)?;
        let t = if ch.other_quantity {
            // The node measures something else here now: what stood can no
            // longer come back in band, so the authorised reset releases
            // the channel; its next reading starts it under the new quantity.
            let from = ch.state.level();
            ch.state = ChannelState::default();
            ch.other_quantity = false;
            Transition::Reset { from }
        } else {
            rules::reset(&ch.rule, &mut ch.state, now).ok_or(ResetRefused::NotReleasable)?
        };
        Ok(Change::Channel {
            ch: ChannelRef {
                site: site.to_string(),
                node: node.to_string(),
                channel: channel.to_string(),
                quantity: ch.quantity,
                direction: ch.rule.threshold.map(|t| t.direction).unwrap_or_default(),
            },
            transition: t,
            disposition: Disposition::Notify,
            level: ch.state.level(),
        })
    }
}
