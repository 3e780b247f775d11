//! The threshold rule: setpoints with hysteresis (回差), on/off delays, latching and faults.
//!
//! A [`ThresholdRule`] is the configuration of one channel (pre-alarm 预警 and alarm 报警
//! setpoints, direction, return difference, minimum durations, which levels latch). A
//! [`ThresholdState`] is the small `Copy` state kept per channel. [`evaluate`] feeds one sample
//! and returns the [`Transitions`] it caused; [`reset`] is an authorised person's reset of a
//! latched level.
//!
//! Most callers use the channel engine ([`crate::channel`]), which runs this rule together with
//! the rate-of-rise, valid-range and flapping rules; the functions here are the threshold part on
//! its own (`rules::threshold::evaluate`).
//!
//! # How a sample is evaluated
//! 1. **Faults.** A faulted sample emits `FaultRaised` on entry (`FaultCleared` + `FaultRaised`
//!    when the kind changes) and holds everything else: the level and the latch are kept, any
//!    pending delay is cancelled. The first valid sample emits `FaultCleared` and is then
//!    evaluated normally (so a delay starts afresh from it).
//! 2. **Target.** The raw target is the highest level whose setpoint the value reaches (high rule:
//!    `value >= setpoint`; low rule: `value <= setpoint`). Going up, the target is the raw target.
//!    Going down, a level `L` is only left once the value is past its hysteresis (high:
//!    `value < setpoint(L) - hysteresis`; low: `value > setpoint(L) + hysteresis`), so the target is
//!    the highest level between the raw target and the current one that is still held.
//! 3. **Delays.** A target different from the current level becomes the pending candidate and
//!    is confirmed once every sample since `since` has justified it for `on_delay_ms` (up) or
//!    `off_delay_ms` (down); a sample that does not justify it restarts the wait. When the target
//!    moves while pending: a target that goes *less far* than the candidate (alarm pending, the
//!    value falls back to the pre-alarm band) keeps the start time, because every sample since
//!    then has also justified the nearer level; a target that goes *further* (pre-alarm pending,
//!    the value reaches the alarm setpoint) starts its wait from this sample. Keep-it-simple
//!    consequence: an intermediate level is not confirmed on the way to a further one.
//! 4. **Latching.** When a confirmed drop would leave a latching level, the level is held and
//!    `Latched` is emitted once. If the value reaches the held level's setpoint again the latch
//!    is dropped silently (the alarm is live again). [`reset`] releases a latched level to
//!    `Normal`; it is refused while the alarm is live.
//!
//! # Time
//! `now` is monotonic milliseconds. If it goes backwards, a pending wait restarts from the new
//! `now` (elapsed time is never negative and never wraps); nothing panics.

use crate::stamp::Stamp;
use crate::{FaultKind, Level, Millis, RuleError, Sample, SampleStatus, Transition, Transitions};

/// Which side of the setpoint is dangerous.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Direction {
    /// Alarm when `value >= setpoint` (residual current, temperature, arcs, overload).
    #[default]
    High,
    /// Alarm when `value <= setpoint` (fire-water pressure, tank level).
    Low,
}

/// The configuration of a threshold rule for one channel.
///
/// With the `serde` feature every field has a default, so a TOML table only needs the fields it
/// overrides (e.g. `alarm = 300`); unknown fields are refused. Call [`ThresholdRule::validate`]
/// after loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
pub struct ThresholdRule {
    /// Which side of the setpoints is dangerous.
    pub direction: Direction,
    /// Pre-alarm (预警) setpoint, if any.
    pub pre_alarm: Option<i32>,
    /// Alarm (报警) setpoint, if any.
    pub alarm: Option<i32>,
    /// Return difference (回差), `>= 0`: to leave a level the value must come back past
    /// `setpoint - hysteresis` (high) or `setpoint + hysteresis` (low).
    pub hysteresis: i32,
    /// How long the value must stay at or past a setpoint before the level is raised (0: at once).
    pub on_delay_ms: u32,
    /// How long the value must stay back inside the band before the level is lowered (0: at once).
    pub off_delay_ms: u32,
    /// The alarm level latches until [`reset`] (default `true`: alarms latch).
    pub latch_alarm: bool,
    /// The pre-alarm level latches until [`reset`] (default `false`: pre-alarms auto-clear).
    pub latch_pre_alarm: bool,
}

impl Default for ThresholdRule {
    /// A high rule with no setpoints (it does not validate until one is set), no hysteresis, no
    /// delays, a latching alarm and an auto-clearing pre-alarm.
    fn default() -> Self {
        Self::high(None, None)
    }
}

impl ThresholdRule {
    /// A high rule (alarm when `value >= setpoint`): hysteresis 0, no delays, the alarm latches,
    /// the pre-alarm auto-clears.
    pub const fn high(pre_alarm: Option<i32>, alarm: Option<i32>) -> Self {
        ThresholdRule {
            direction: Direction::High,
            pre_alarm,
            alarm,
            hysteresis: 0,
            on_delay_ms: 0,
            off_delay_ms: 0,
            latch_alarm: true,
            latch_pre_alarm: false,
        }
    }

    /// A low rule (alarm when `value <= setpoint`), otherwise as [`ThresholdRule::high`].
    pub const fn low(pre_alarm: Option<i32>, alarm: Option<i32>) -> Self {
        let mut rule = Self::high(pre_alarm, alarm);
        rule.direction = Direction::Low;
        rule
    }

    /// The same rule with another hysteresis (return difference).
    pub const fn with_hysteresis(mut self, hysteresis: i32) -> Self {
        self.hysteresis = hysteresis;
        self
    }

    /// The same rule with other on and off delays.
    pub const fn with_delays(mut self, on_delay_ms: u32, off_delay_ms: u32) -> Self {
        self.on_delay_ms = on_delay_ms;
        self.off_delay_ms = off_delay_ms;
        self
    }

    /// The same rule with other latching choices.
    pub const fn with_latching(mut self, latch_alarm: bool, latch_pre_alarm: bool) -> Self {
        self.latch_alarm = latch_alarm;
        self.latch_pre_alarm = latch_pre_alarm;
        self
    }

    /// Checks that the rule makes sense: at least one setpoint; the pre-alarm setpoint is reached
    /// before the alarm setpoint (high: `pre_alarm < alarm`; low: `pre_alarm > alarm`); the
    /// hysteresis is not negative and, when both setpoints are set, smaller than the distance
    /// between them (otherwise an alarm could only be left below the pre-alarm setpoint, and
    /// the pre-alarm band would mean nothing on the way down). The first problem found is
    /// returned.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.pre_alarm.is_none() && self.alarm.is_none() {
            return Err(RuleError::NoSetpoint);
        }
        if let (Some(pre), Some(alarm)) = (self.pre_alarm, self.alarm) {
            let in_order = match self.direction {
                Direction::High => pre < alarm,
                Direction::Low => pre > alarm,
            };
            if !in_order {
                return Err(RuleError::PreAlarmNotBeforeAlarm);
            }
        }
        if self.hysteresis < 0 {
            return Err(RuleError::NegativeHysteresis);
        }
        if let (Some(pre), Some(alarm)) = (self.pre_alarm, self.alarm) {
            let gap = (i64::from(alarm) - i64::from(pre)).unsigned_abs();
            if u64::from(self.hysteresis.unsigned_abs()) >= gap {
                return Err(RuleError::HysteresisTooWide {
                    hysteresis: self.hysteresis,
                    gap: i32::try_from(gap).unwrap_or(i32::MAX),
                });
            }
        }
        Ok(())
    }

    /// The setpoint of `level` (`None` for [`Level::Normal`] and for a level not configured).
    pub fn setpoint(&self, level: Level) -> Option<i32> {
        match level {
            Level::Normal => None,
            Level::PreAlarm => self.pre_alarm,
            Level::Alarm => self.alarm,
        }
    }

    /// Whether `level` latches until a reset.
    pub fn latches(&self, level: Level) -> bool {
        match level {
            Level::Normal => false,
            Level::PreAlarm => self.latch_pre_alarm,
            Level::Alarm => self.latch_alarm,
        }
    }

    /// The highest level whose setpoint `value` reaches, ignoring hysteresis and delays.
    pub fn target_level(&self, value: i32) -> Level {
        if self.reaches(value, Level::Alarm) {
            Level::Alarm
        } else if self.reaches(value, Level::PreAlarm) {
            Level::PreAlarm
        } else {
            Level::Normal
        }
    }

    /// Whether `value` is at or past the setpoint of `level`.
    fn reaches(&self, value: i32, level: Level) -> bool {
        match (self.setpoint(level), self.direction) {
            (None, _) => false,
            (Some(sp), Direction::High) => value >= sp,
            (Some(sp), Direction::Low) => value <= sp,
        }
    }

    /// Whether `value` is far enough back (past the hysteresis) to leave `level`. A level without
    /// a setpoint (e.g. removed from the configuration) can always be left.
    fn releases(&self, value: i32, level: Level) -> bool {
        // Design: i64 so that `setpoint ± hysteresis` cannot overflow for any i32 inputs; a
        // negative hysteresis (an unvalidated rule) counts as 0.
        let hysteresis = i64::from(self.hysteresis.max(0));
        match (self.setpoint(level), self.direction) {
            (None, _) => true,
            (Some(sp), Direction::High) => i64::from(value) < i64::from(sp) - hysteresis,
            (Some(sp), Direction::Low) => i64::from(value) > i64::from(sp) + hysteresis,
        }
    }

    /// The level `value` justifies for a channel now at `current`, with hysteresis applied to
    /// the way down.
    fn desired_level(&self, value: i32, current: Level) -> Level {
        let raw = self.target_level(value);
        if raw >= current {
            return raw;
        }
        [Level::Alarm, Level::PreAlarm]
            .into_iter()
            .find(|&l| l <= current && l > raw && !self.releases(value, l))
            .unwrap_or(raw)
    }
}

/// The state of one channel under a [`ThresholdRule`]. Small (28 bytes), `Copy`, fixed size;
/// start from `ThresholdState::default()` (normal, no fault).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ThresholdState {
    /// The confirmed level.
    level: Level,
    /// The value came back inside the band but `level` is held for a reset (`Latched` emitted).
    latched: bool,
    /// A level the value justifies that is waiting out its on/off delay.
    pending: Option<Level>,
    /// Since when every sample has justified `pending`.
    since: Stamp,
    /// When `level` was last changed (raised, lowered or reset).
    changed_at: Stamp,
    /// The current sensor fault, if any.
    fault: Option<FaultKind>,
    /// The last valid value, if any.
    last_value: Option<i32>,
}

impl ThresholdState {
    /// The confirmed level (held while faulted and while latched).
    pub fn level(&self) -> Level {
        self.level
    }

    /// The current sensor fault, if any.
    pub fn fault(&self) -> Option<FaultKind> {
        self.fault
    }

    /// Whether the level is held only by its latch, awaiting an authorised reset.
    pub fn is_latched(&self) -> bool {
        self.latched
    }

    /// The level waiting out its on/off delay, if any.
    pub fn pending(&self) -> Option<Level> {
        self.pending
    }

    /// When the level was last changed (`0` if never).
    pub fn changed_at(&self) -> Millis {
        self.changed_at.get()
    }

    /// The last valid value evaluated, if any.
    pub fn last_value(&self) -> Option<i32> {
        self.last_value
    }
}

/// Feeds one sample taken at `now` to `rule`, updating `state`; returns the transitions caused,
/// in order (usually none). Never panics, whatever the rule, value or time.
pub fn evaluate(
    rule: &ThresholdRule,
    state: &mut ThresholdState,
    sample: Sample,
    now: Millis,
) -> Transitions {
    let mut out = Transitions::new();
    match sample.status {
        SampleStatus::Fault(kind) => {
            match state.fault {
                Some(old) if old == kind => {}
                Some(old) => {
                    push(&mut out, Transition::FaultCleared { kind: old });
                    push(&mut out, Transition::FaultRaised { kind });
                }
                None => push(&mut out, Transition::FaultRaised { kind }),
            }
            state.fault = Some(kind);
            state.pending = None;
            return out;
        }
        SampleStatus::Ok => {
            if let Some(old) = state.fault.take() {
                push(&mut out, Transition::FaultCleared { kind: old });
            }
        }
    }

    let value = sample.value;
    state.last_value = Some(value);
    let current = state.level;

    if state.latched {
        if rule.target_level(value) < current {
            // Held for a reset: nothing to wait for, nothing to emit.
            state.pending = None;
            return out;
        }
        // The value reached the held level again: the alarm is live, no longer just latched.
        state.latched = false;
    }

    let desired = rule.desired_level(value, current);
    if desired == current {
        state.pending = None;
        return out;
    }

    let going_up = desired > current;
    let keep_since = match state.pending {
        Some(p) if (p > current) == going_up => {
            // Same direction: keep the start time if the new target goes no further than the
            // candidate did (every sample since then also justified the nearer level).
            let no_further = if going_up { desired <= p } else { desired >= p };
            no_further && now >= state.since.get()
        }
        _ => false,
    };
    if !keep_since {
        state.since = Stamp::new(now);
    }
    state.pending = Some(desired);

    let delay = if going_up {
        rule.on_delay_ms
    } else {
        rule.off_delay_ms
    };
    if now.saturating_sub(state.since.get()) < u64::from(delay) {
        return out;
    }

    state.pending = None;
    if going_up {
        raise(rule, state, current, desired, value, now, &mut out);
    } else {
        lower(rule, state, current, desired, value, now, &mut out);
    }
    out
}

/// An authorised person's reset (复位) of a latched level at `now`.
///
/// Releases a latched level to [`Level::Normal`] and returns `Reset { from }`. If the value still
/// justifies a lower level (e.g. it sits in the pre-alarm band), the next [`evaluate`] raises that
/// level again with its own on-delay, so every level change shows up as a transition.
///
/// Returns `None` and changes nothing when there is nothing to release: the level is not latched,
/// the value is still at or past the held level's setpoint (a live alarm cannot be reset), or the
/// channel is faulted (the value cannot be known to be back inside the band).
pub fn reset(rule: &ThresholdRule, state: &mut ThresholdState, now: Millis) -> Option<Transition> {
    if !state.latched || state.fault.is_some() {
        return None;
    }
    if let Some(value) = state.last_value {
        if rule.target_level(value) >= state.level {
            return None;
        }
    }
    let from = state.level;
    state.level = Level::Normal;
    state.latched = false;
    state.pending = None;
    state.since = Stamp::new(now);
    state.changed_at = Stamp::new(now);
    Some(Transition::Reset { from })
}

/// Confirms a rise from `current` to `desired`.
fn raise(
    rule: &ThresholdRule,
    state: &mut ThresholdState,
    current: Level,
    desired: Level,
    value: i32,
    now: Millis,
    out: &mut Transitions,
) {
    // A level is only ever targeted on the way up because its setpoint was reached, so the
    // fallback is unreachable; it keeps this path free of panics.
    let setpoint = rule.setpoint(desired).unwrap_or(value);
    let transition = if current == Level::Normal {
        Transition::Raised {
            level: desired,
            value,
            setpoint,
        }
    } else {
        Transition::Escalated {
            from: current,
            to: desired,
            value,
            setpoint,
        }
    };
    push(out, transition);
    state.level = desired;
    state.latched = false;
    state.changed_at = Stamp::new(now);
}

/// Confirms a drop from `current` to `desired`, stopping at the highest latching level passed.
fn lower(
    rule: &ThresholdRule,
    state: &mut ThresholdState,
    current: Level,
    desired: Level,
    value: i32,
    now: Millis,
    out: &mut Transitions,
) {
    let hold = [Level::Alarm, Level::PreAlarm]
        .into_iter()
        .find(|&l| l <= current && l > desired && rule.latches(l));
    match hold {
        Some(level) if level == current => {
            push(out, Transition::Latched { level, value });
            state.latched = true;
        }
        Some(level) => {
            // E.g. a non-latching alarm over a latching pre-alarm: step down to the pre-alarm
            // and hold it there.
            push(
                out,
                Transition::Deescalated {
                    from: current,
                    to: level,
                    value,
                },
            );
            push(out, Transition::Latched { level, value });
            state.level = level;
            state.latched = true;
            state.changed_at = Stamp::new(now);
        }
        None => {
            let transition = if desired == Level::Normal {
                Transition::Cleared {
                    from: current,
                    value,
                }
            } else {
                Transition::Deescalated {
                    from: current,
                    to: desired,
                    value,
                }
            };
            push(out, transition);
            state.level = desired;
            state.changed_at = Stamp::new(now);
        }
    }
}

/// Appends to a transition list. One evaluation emits at most three transitions, so the
/// capacity of four is never exceeded; were it ever, the extra transition would be dropped
/// rather than panic.
fn push(out: &mut Transitions, transition: Transition) {
    let _ = out.push(transition);
}
