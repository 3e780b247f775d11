//! Local alarm evaluation on the node: the shared `rules` engine run per
//! channel, so the node can drive its local sounder without the gateway.
//!
//! [`LocalAlarm`] keeps, for up to [`MAX_LOCAL_CHANNELS`] channels, the
//! channel's [`ThresholdRule`] and [`ChannelState`]. Each reading is fed to
//! [`rules::evaluate`]; the rule's transitions come back as the contract's
//! `event` triples `(channel, level entered, value)`, ready for
//! [`crate::node::Publisher::event`]. A channel status other than `ok` is a
//! sensor fault (设备故障), reported as `fault` and never as a fire alarm.
//!
//! [`LocalAlarm::sounding`] says whether any channel is at alarm level (报警);
//! it drives a local sounder only. The node never switches power off.

use core::fmt;
use rules::{ChannelState, FaultKind, Level, Millis, RuleError, Sample, ThresholdRule, Transition};
use wire::{ChannelId, ChannelStatus, EventLevel, Reading};

/// Most channels one node evaluates locally.
pub const MAX_LOCAL_CHANNELS: usize = 16;

/// Events caused by one reading: `(channel, level entered, value)`. One
/// evaluation yields at most four rule transitions, so four always suffice.
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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Full => write!(f, "more than {MAX_LOCAL_CHANNELS} local channels"),
            ConfigError::Duplicate => f.write_str("channel already configured"),
            ConfigError::Rule(e) => write!(f, "invalid rule: {e}"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// The node's local alarm engine: one threshold rule and its state per channel.
#[derive(Clone, Debug, Default)]
pub struct LocalAlarm {
    channels: heapless::Vec<(ChannelId, ThresholdRule, ChannelState), MAX_LOCAL_CHANNELS>,
}

impl LocalAlarm {
    /// No channels yet.
    pub const fn new() -> Self {
        LocalAlarm {
            channels: heapless::Vec::new(),
        }
    }

    /// Adds channel `id` under `rule`, starting normal and unfaulted. The rule
    /// must validate.
    pub fn add_channel(&mut self, id: ChannelId, rule: ThresholdRule) -> Result<(), ConfigError> {
        rule.validate().map_err(ConfigError::Rule)?;
        if self.channels.iter().any(|(c, _, _)| *c == id) {
            return Err(ConfigError::Duplicate);
        }
        self.channels
            .push((id, rule, ChannelState::default()))
            .map_err(|_| ConfigError::Full)
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
    /// Mapping: `Raised`/`Escalated`/`Deescalated` → the level entered
    /// (`pre_alarm` or `alarm`); `Cleared` → `normal`; `FaultRaised` →
    /// `fault`; `FaultCleared` → the level the channel is back at (held
    /// through the fault, so `normal` unless an alarm was in force before the
    /// fault); `Latched` → nothing. A fault that only changes kind
    /// (`FaultCleared` + `FaultRaised`) yields a single `fault`.
    pub fn on_sample(&mut self, reading: &Reading, now_ms: Millis) -> LocalEvents {
        let mut out = LocalEvents::new();
        let Some((id, rule, state)) = self.channels.iter_mut().find(|(c, _, _)| *c == reading.id)
        else {
            return out;
        };
        let held = state.level();
        let transitions = rules::evaluate(rule, state, sample(reading), now_ms);
        let fault_raised = transitions
            .iter()
            .any(|t| matches!(t, Transition::FaultRaised { .. }));
        for t in &transitions {
            let level = match *t {
                Transition::Raised { level, .. } => event_level(level),
                Transition::Escalated { to, .. } | Transition::Deescalated { to, .. } => {
                    event_level(to)
                }
                Transition::Cleared { .. } | Transition::Reset { .. } => EventLevel::Normal,
                Transition::FaultRaised { .. } => EventLevel::Fault,
                Transition::FaultCleared { .. } if fault_raised => continue,
                Transition::FaultCleared { .. } => event_level(held),
                Transition::Latched { .. } => continue,
            };
            // At most four transitions per evaluation: never full.
            let _ = out.push((id.clone(), level, reading.v));
        }
        out
    }

    /// An authorised reset (复位), e.g. from a `reset` command: releases every
    /// latched channel whose value is back inside its band, and returns a
    /// `normal` event (with the last valid value) for each. A live alarm or a
    /// faulted channel is not released.
    pub fn reset(&mut self, now_ms: Millis) -> ResetEvents {
        let mut out = ResetEvents::new();
        for (id, rule, state) in self.channels.iter_mut() {
            if let Some(Transition::Reset { .. }) = rules::reset(rule, state, now_ms) {
                let v = state.last_value().unwrap_or(0);
                // At most one per channel: never full.
                let _ = out.push((id.clone(), EventLevel::Normal, v));
            }
        }
        out
    }

    /// Whether any channel is at alarm level (live or latched): the local
    /// sounder should sound.
    pub fn sounding(&self) -> bool {
        self.channels
            .iter()
            .any(|(_, _, s)| s.level() == Level::Alarm)
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

fn event_level(level: Level) -> EventLevel {
    match level {
        Level::Normal => EventLevel::Normal,
        Level::PreAlarm => EventLevel::PreAlarm,
        Level::Alarm => EventLevel::Alarm,
    }
}
