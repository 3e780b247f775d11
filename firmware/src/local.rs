//! Local alarm evaluation on the node: the shared `rules` channel engine run
//! per channel, so the node can drive its local sounder without the gateway.
//!
//! [`LocalAlarm`] keeps, for up to [`MAX_LOCAL_CHANNELS`] channels, the
//! channel's [`ChannelRule`] and [`ChannelState`]. Each reading is fed to
//! [`rules::evaluate`]; the outputs come back as the contract's `event`
//! triples `(channel, level entered, value)`, ready for
//! [`crate::node::Publisher::event`]. A channel status other than `ok`, or a
//! value outside the rule's valid range (e.g. NAMUR NE43 on a 4–20 mA loop),
//! is a sensor fault (设备故障), reported as `fault` and never as a fire alarm.
//!
//! The wire level of a channel is `fault` while it is faulted, otherwise the
//! higher of its threshold level and, while a rate-of-rise is raised,
//! `pre_alarm`: a rate of rise is an early warning (预警), never an alarm, and
//! it never sounds. An event is sent when that wire level changes (plus one
//! `fault` per fault kind change). The node has no root-cause context of its
//! own (it is never "offline" to itself), so it evaluates with
//! [`Context::default`]; it sends every transition whatever its disposition
//! (flapping is reported by the gateway, which sees the events), and
//! `FlappingStarted`/`FlappingEnded` send nothing on the wire for now.
//!
//! [`LocalAlarm::sounding`] says whether any channel is at alarm level (报警);
//! it drives a local sounder only. The node never switches power off.

use core::fmt;
use rules::{
    defaults, ChannelRule, ChannelState, Context, FaultKind, Level, Millis, RuleError, Sample,
    Transition,
};
use wire::{ChannelId, ChannelStatus, EventLevel, Quantity, Reading};

/// Most channels one node evaluates locally.
pub const MAX_LOCAL_CHANNELS: usize = 16;

/// Events caused by one reading: `(channel, level entered, value)`. One
/// evaluation changes the wire level at most three times (fault cleared,
/// threshold change, rate change), so four always suffice.
pub type LocalEvents = heapless::Vec<(ChannelId, EventLevel, i32), 4>;

/// Events caused by a reset: at most one per channel.
pub type ResetEvents = heapless::Vec<(ChannelId, EventLevel, i32), MAX_LOCAL_CHANNELS>;

/// Why a channel could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Already [`MAX_LOCAL_CHANNELS`] channels.
    Full,
    /// The channel id is already configured.
    Duplicate,
    /// The rule does not validate.
    Rule(RuleError),
    /// No channel with that id is configured.
    UnknownChannel,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Full => write!(f, "more than {MAX_LOCAL_CHANNELS} local channels"),
            ConfigError::Duplicate => f.write_str("channel already configured"),
            ConfigError::Rule(e) => write!(f, "invalid rule: {e}"),
            ConfigError::UnknownChannel => f.write_str("no such channel"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// The node's local alarm engine: one channel rule and its state per channel.
#[derive(Clone, Debug, Default)]
pub struct LocalAlarm {
    channels: heapless::Vec<(ChannelId, ChannelRule, ChannelState), MAX_LOCAL_CHANNELS>,
}

impl LocalAlarm {
    /// No channels yet.
    pub const fn new() -> Self {
        LocalAlarm {
            channels: heapless::Vec::new(),
        }
    }

    /// Adds channel `id` under `rule` (a [`ChannelRule`], or a bare
    /// [`rules::ThresholdRule`]), starting normal and unfaulted. The rule must
    /// validate ([`ChannelRule::validate`]).
    pub fn add_channel(
        &mut self,
        id: ChannelId,
        rule: impl Into<ChannelRule>,
    ) -> Result<(), ConfigError> {
        let rule = rule.into();
        rule.validate().map_err(ConfigError::Rule)?;
        self.push(id, rule)
    }

    /// Adds channel `id` measuring `q` under `rule`, which must pass the
    /// quantity's checks too ([`ChannelRule::validate_for`]: standard
    /// setpoint limits and response time).
    pub fn add_channel_for(
        &mut self,
        id: ChannelId,
        q: Quantity,
        rule: ChannelRule,
    ) -> Result<(), ConfigError> {
        rule.validate_for(q).map_err(ConfigError::Rule)?;
        self.push(id, rule)
    }

    /// Adds channel `id` measuring `q` under the standard default rule
    /// ([`rules::defaults::channel_rule`]).
    pub fn add_default(&mut self, id: ChannelId, q: Quantity) -> Result<(), ConfigError> {
        self.add_channel_for(id, q, defaults::channel_rule(q))
    }

    fn push(&mut self, id: ChannelId, rule: ChannelRule) -> Result<(), ConfigError> {
        if self.channels.iter().any(|(c, _, _)| *c == id) {
            return Err(ConfigError::Duplicate);
        }
        self.channels
            .push((id, rule, ChannelState::default()))
            .map_err(|_| ConfigError::Full)
    }

    /// Replaces the rule of channel `id`, which measures `q`, by `rule` (a
    /// `config` command): `rule` must pass the quantity's checks
    /// ([`ChannelRule::validate_for`]), otherwise nothing changes. The
    /// channel keeps its state — level, latch, fault, rate history — so the
    /// next reading is judged by the new rule from where the channel stands
    /// (a standing alarm against the new setpoints). The change lives in RAM
    /// only.
    pub fn replace_rule(
        &mut self,
        id: &ChannelId,
        q: Quantity,
        rule: ChannelRule,
    ) -> Result<(), ConfigError> {
        let (_, current, _) = self
            .channels
            .iter_mut()
            .find(|(c, _, _)| c == id)
            .ok_or(ConfigError::UnknownChannel)?;
        rule.validate_for(q).map_err(ConfigError::Rule)?;
        *current = rule;
        Ok(())
    }

    /// The rule of channel `id`, if configured.
    pub fn rule(&self, id: &ChannelId) -> Option<&ChannelRule> {
        self.channels
            .iter()
            .find(|(c, _, _)| c == id)
            .map(|(_, r, _)| r)
    }

    /// The state of channel `id`, if configured.
    pub fn state(&self, id: &ChannelId) -> Option<&ChannelState> {
        self.channels
            .iter()
            .find(|(c, _, _)| c == id)
            .map(|(_, _, s)| s)
    }

    /// Feeds `reading`, taken at monotonic time `now_ms`, to its channel's
    /// rule and returns the events it caused, in order. A reading for a
    /// channel that is not configured is ignored.
    ///
    /// Mapping: each output updates the channel's wire level (see the module
    /// doc) and an event with the new level is sent when it changed:
    /// `Raised`/`Escalated`/`Deescalated` → the level entered; `Cleared` →
    /// `normal` (or `pre_alarm` while a rate of rise is raised); `RateRaised`
    /// → `pre_alarm` unless the channel is already at pre-alarm or alarm;
    /// `RateCleared` → back to the threshold level; `FaultRaised` → `fault`
    /// (always, also when only the kind changes); `FaultCleared` → the level
    /// the channel is back at (held through the fault), and nothing when the
    /// fault only changes kind; `Latched` and the flapping transitions →
    /// nothing.
    pub fn on_sample(&mut self, reading: &Reading, now_ms: Millis) -> LocalEvents {
        let mut out = LocalEvents::new();
        let Some((id, rule, state)) = self.channels.iter_mut().find(|(c, _, _)| *c == reading.id)
        else {
            return out;
        };
        let mut wire = WireLevel::of(state);
        let outputs = rules::evaluate(rule, state, sample(reading), now_ms, Context::default());
        let fault_raised = outputs
            .iter()
            .any(|o| matches!(o.transition, Transition::FaultRaised { .. }));
        for o in &outputs {
            let before = wire.level();
            match o.transition {
                Transition::Raised { level, .. } => wire.threshold = level,
                Transition::Escalated { to, .. } | Transition::Deescalated { to, .. } => {
                    wire.threshold = to
                }
                Transition::Cleared { .. } | Transition::Reset { .. } => {
                    wire.threshold = Level::Normal
                }
                Transition::RateRaised { .. } => wire.rate = true,
                Transition::RateCleared { .. } => wire.rate = false,
                Transition::FaultRaised { .. } => {
                    wire.faulted = true;
                    // Entry or a change of kind: always one `fault` event.
                    let _ = out.push((id.clone(), EventLevel::Fault, reading.v));
                    continue;
                }
                Transition::FaultCleared { .. } if fault_raised => continue,
                Transition::FaultCleared { .. } => wire.faulted = false,
                Transition::Latched { .. }
                | Transition::FlappingStarted { .. }
                | Transition::FlappingEnded { .. } => continue,
            }
            let after = wire.level();
            if after != before {
                // At most four wire-level changes per evaluation: never full.
                let _ = out.push((id.clone(), after, reading.v));
            }
        }
        out
    }

    /// An authorised reset (复位), e.g. from a `reset` command: releases every
    /// latched channel whose value is back inside its band, and returns an
    /// event for each (`normal`, or `pre_alarm` while a rate of rise is
    /// raised), with the last valid value. A live alarm or a faulted channel
    /// is not released.
    pub fn reset(&mut self, now_ms: Millis) -> ResetEvents {
        let mut out = ResetEvents::new();
        for (id, rule, state) in self.channels.iter_mut() {
            if let Some(e) = reset_one(id, rule, state, now_ms) {
                // At most one per channel: never full.
                let _ = out.push(e);
            }
        }
        out
    }

    /// [`LocalAlarm::reset`] for channel `id` only (the node's own reset at
    /// the end of a self-test): its event, if it was released.
    pub fn reset_channel(
        &mut self,
        id: &ChannelId,
        now_ms: Millis,
    ) -> Option<(ChannelId, EventLevel, i32)> {
        let (id, rule, state) = self.channels.iter_mut().find(|(c, _, _)| c == id)?;
        reset_one(id, rule, state, now_ms)
    }

    /// The test signal of channel `id` for a self-test: its alarm setpoint
    /// (or, without one, its pre-alarm setpoint) — a value that raises the
    /// level by the rule's own comparison (`>=` for a high rule, `<=` for a
    /// low one) and lies inside any valid range, since setpoints must.
    /// `None` for a channel without a threshold (nothing to test).
    pub fn test_value(&self, id: &ChannelId) -> Option<i32> {
        let (_, rule, _) = self.channels.iter().find(|(c, _, _)| c == id)?;
        let t = rule.threshold?;
        t.alarm.or(t.pre_alarm)
    }

    /// Whether any channel is at alarm level (live or latched): the local
    /// sounder should sound. A rate of rise alone does not sound.
    pub fn sounding(&self) -> bool {
        self.channels
            .iter()
            .any(|(_, _, s)| s.level() == Level::Alarm)
    }
}

fn reset_one(
    id: &ChannelId,
    rule: &ChannelRule,
    state: &mut ChannelState,
    now_ms: Millis,
) -> Option<(ChannelId, EventLevel, i32)> {
    match rules::reset(rule, state, now_ms) {
        Some(Transition::Reset { .. }) => {
            let v = state.last_value().unwrap_or(0);
            Some((id.clone(), WireLevel::of(state).level(), v))
        }
        _ => None,
    }
}

/// What the wire level of a channel is made of.
#[derive(Clone, Copy)]
struct WireLevel {
    threshold: Level,
    rate: bool,
    faulted: bool,
}

impl WireLevel {
    fn of(state: &ChannelState) -> Self {
        WireLevel {
            threshold: state.level(),
            rate: state.is_rate_raised(),
            faulted: state.fault().is_some(),
        }
    }

    /// `fault` while faulted; else the threshold level, at least
    /// `pre_alarm` while a rate of rise is raised.
    fn level(self) -> EventLevel {
        if self.faulted {
            return EventLevel::Fault;
        }
        let level = if self.rate {
            self.threshold.max(Level::PreAlarm)
        } else {
            self.threshold
        };
        match level {
            Level::Normal => EventLevel::Normal,
            Level::PreAlarm => EventLevel::PreAlarm,
            Level::Alarm => EventLevel::Alarm,
        }
    }
}

/// A wire reading as a rule sample: any status but `ok` is a fault.
fn sample(reading: &Reading) -> Sample {
    match reading.s {
        ChannelStatus::Ok => Sample::ok(reading.v),
        ChannelStatus::Open => Sample::fault(FaultKind::Open),
        ChannelStatus::Short => Sample::fault(FaultKind::Short),
        ChannelStatus::Range => Sample::fault(FaultKind::Range),
        ChannelStatus::Fault => Sample::fault(FaultKind::Fault),
    }
}
