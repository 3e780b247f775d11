//! The channel engine: every rule of one channel, evaluated together on each sample.
//!
//! A [`ChannelRule`] bundles what can be configured for a channel: a threshold rule (setpoints,
//! hysteresis, delays, latching), a rate-of-rise rule, a valid range (e.g. NAMUR NE43 for a
//! 4–20 mA loop) and flapping detection; each part is optional. A [`ChannelState`] (64 bytes,
//! `Copy`) is what the caller keeps per channel. [`evaluate`] feeds one sample and returns the
//! [`Outputs`]; [`reset`] is an authorised reset of a latched level.
//!
//! # How a sample is evaluated
//! 1. **Flapping ends?** If the channel is flapping and no transition happened for `quiet_ms`,
//!    `FlappingEnded { level }` is returned first (see [`crate::flap`]).
//! 2. **Valid range.** A valid reading outside `valid_range` (inclusive) becomes a `Range` fault:
//!    a fault, never an alarm.
//! 3. **Threshold** ([`crate::threshold`]): faults, levels, delays, latching. Without a threshold
//!    rule the channel is still watched for faults (it never raises a level).
//! 4. **Rate of rise** ([`crate::rate`]), only for valid readings: a faulted channel's rate rule
//!    is held (its state is kept, nothing is emitted), like its threshold rule.
//! 5. **Dispositions.** Each transition becomes an [`Output`]. With a flapping rule each
//!    raise/clear transition is counted; the one that reaches the count is preceded by
//!    `FlappingStarted`. Then: [`Disposition::Suppressed`] if `ctx.suppressed`, else
//!    [`Disposition::Flapping`] if the channel is flapping, else [`Disposition::Notify`].
//!    `FlappingStarted`/`FlappingEnded` are `Notify` (or `Suppressed`).
//!
//! The [`Context`] changes dispositions only, never the state: a suppressed channel goes through
//! exactly the same transitions (including flapping) as an unsuppressed one, so nothing is
//! dropped and nothing needs replaying when the root cause clears.
//!
//! Outputs come in this order: `FlappingEnded`, threshold transitions (fault first), the rate
//! transition, with `FlappingStarted` inserted before the transition that started it. At most
//! six outputs per sample; [`Outputs`] holds eight.

use crate::rate::{self, RateRule, RateState};
use crate::threshold::{self, ThresholdRule, ThresholdState};
use crate::{
    flap, FaultKind, FlapRule, FlapState, Level, Millis, RuleError, Sample, SampleStatus,
    Transition,
};
use wire::Quantity;

/// The threshold rule used when a channel has none: no setpoints, so it never raises a level,
/// but faults are still reported.
const NO_THRESHOLD: ThresholdRule = ThresholdRule::high(None, None);

/// Everything configured for one channel. Each part is optional; `ChannelRule::default()` has
/// none and only watches for faults.
///
/// With the `serde` feature every field defaults to `None` and unknown fields are refused;
/// `valid_range` is a two-element array `[low, high]`. Note that serde's default is this empty
/// rule, not the quantity's defaults ([`crate::defaults::channel_rule`]): merging a partial
/// table into the defaults is the caller's business.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
pub struct ChannelRule {
    /// Setpoints with hysteresis, delays and latching.
    pub threshold: Option<ThresholdRule>,
    /// Rate of rise.
    pub rate: Option<RateRule>,
    /// Valid readings, inclusive `(low, high)`; a valid reading outside is a `Range` fault.
    pub valid_range: Option<(i32, i32)>,
    /// Flapping detection.
    pub flap: Option<FlapRule>,
}

impl From<ThresholdRule> for ChannelRule {
    fn from(rule: ThresholdRule) -> Self {
        ChannelRule::new().with_threshold(rule)
    }
}

impl ChannelRule {
    /// No rules: faults only.
    pub const fn new() -> Self {
        ChannelRule {
            threshold: None,
            rate: None,
            valid_range: None,
            flap: None,
        }
    }

    /// The same with a threshold rule.
    pub const fn with_threshold(mut self, rule: ThresholdRule) -> Self {
        self.threshold = Some(rule);
        self
    }

    /// The same with a rate-of-rise rule.
    pub const fn with_rate(mut self, rule: RateRule) -> Self {
        self.rate = Some(rule);
        self
    }

    /// The same with a valid range (inclusive).
    pub const fn with_valid_range(mut self, low: i32, high: i32) -> Self {
        self.valid_range = Some((low, high));
        self
    }

    /// The same with flapping detection.
    pub const fn with_flap(mut self, rule: FlapRule) -> Self {
        self.flap = Some(rule);
        self
    }

    /// Checks that the rule makes sense on its own: each part validates
    /// ([`ThresholdRule::validate`], [`RateRule::validate`], [`FlapRule::validate`]); the valid
    /// range is not empty; every setpoint lies inside it; and each level can still be left by a
    /// valid reading (high: `setpoint - hysteresis > low`; low: `setpoint + hysteresis < high`).
    /// The first problem found is returned. A rule with no part at all is valid (faults only).
    pub fn validate(&self) -> Result<(), RuleError> {
        if let Some(t) = &self.threshold {
            t.validate()?;
        }
        if let Some(r) = &self.rate {
            r.validate()?;
        }
        if let Some(f) = &self.flap {
            f.validate()?;
        }
        if let Some((low, high)) = self.valid_range {
            if low > high {
                return Err(RuleError::EmptyValidRange { low, high });
            }
            if let Some(t) = &self.threshold {
                for setpoint in [t.pre_alarm, t.alarm].into_iter().flatten() {
                    if setpoint < low || setpoint > high {
                        return Err(RuleError::SetpointOutsideValidRange {
                            setpoint,
                            low,
                            high,
                        });
                    }
                }
                let bound = match t.direction {
                    threshold::Direction::High => low,
                    threshold::Direction::Low => high,
                };
                check_can_clear(t, bound)?;
            }
        }
        Ok(())
    }

    /// [`ChannelRule::validate`], then refuses settings that are dangerous for quantity `q`
    /// (DOMAIN §2):
    /// - residual current, temperature and arc must have an alarm setpoint
    ///   ([`RuleError::MissingAlarm`]); residual current and arc must be high rules;
    /// - residual current: every setpoint within 100..=1000 mA (GB 50116 §9.2.3 caps it at
    ///   1000 mA; a healthy loop leaks 100–200 mA, and the setpoint should be at least twice
    ///   that, so anything below 100 mA is refused outright);
    /// - temperature (high rule): alarm setpoint at most 140 °C (GB 14287.3's upper end);
    /// - arc: alarm setpoint within 10..=14 arcs/s (GB 14287.4: ≤ 9 must not alarm, ≥ 14 must);
    /// - a level must be able to clear with a physically possible reading (readings of every
    ///   quantity but temperature are ≥ 0; temperature ≥ −273.1 °C), see
    ///   [`RuleError::LevelCannotClear`];
    /// - the on-delay must leave the standard's response time reachable: `on_delay_ms <=
    ///   response_limit_ms(q) - PIPELINE_BUDGET_MS` ([`crate::defaults`]).
    pub fn validate_for(&self, q: Quantity) -> Result<(), RuleError> {
        self.validate()?;
        let needs_alarm = matches!(
            q,
            Quantity::ResidualCurrent | Quantity::Temperature | Quantity::Arc
        );
        let Some(t) = &self.threshold else {
            return if needs_alarm {
                Err(RuleError::MissingAlarm { quantity: q })
            } else {
                Ok(())
            };
        };
        if needs_alarm && t.alarm.is_none() {
            return Err(RuleError::MissingAlarm { quantity: q });
        }
        let high = t.direction == threshold::Direction::High;
        if matches!(q, Quantity::ResidualCurrent | Quantity::Arc) && !high {
            return Err(RuleError::WrongDirection { quantity: q });
        }
        let too_high = |setpoint: i32, max: i32| {
            if setpoint > max {
                Err(RuleError::SetpointTooHigh {
                    quantity: q,
                    setpoint,
                    max,
                })
            } else {
                Ok(())
            }
        };
        let too_low = |setpoint: i32, min: i32| {
            if setpoint < min {
                Err(RuleError::SetpointTooLow {
                    quantity: q,
                    setpoint,
                    min,
                })
            } else {
                Ok(())
            }
        };
        match q {
            Quantity::ResidualCurrent => {
                for sp in [t.pre_alarm, t.alarm].into_iter().flatten() {
                    too_high(sp, crate::defaults::RESIDUAL_CURRENT_MAX_MA)?;
                    too_low(sp, crate::defaults::RESIDUAL_CURRENT_MIN_MA)?;
                }
            }
            Quantity::Temperature if high => {
                if let Some(sp) = t.alarm {
                    too_high(sp, crate::defaults::TEMPERATURE_MAX_ALARM)?;
                }
            }
            Quantity::Arc => {
                if let Some(sp) = t.alarm {
                    too_high(sp, crate::defaults::ARC_ALARM_MAX)?;
                    too_low(sp, crate::defaults::ARC_ALARM_MIN)?;
                }
            }
            _ => {}
        }
        if high {
            check_can_clear(t, crate::defaults::physical_min(q))?;
        }
        if let Some(max_ms) = crate::defaults::max_on_delay_ms(q) {
            if t.on_delay_ms > max_ms {
                return Err(RuleError::OnDelayTooLong {
                    quantity: q,
                    on_delay_ms: t.on_delay_ms,
                    max_ms,
                });
            }
        }
        Ok(())
    }

    /// The sample as the rules see it: a valid reading outside `valid_range` is a `Range` fault.
    #[inline]
    pub fn screen(&self, sample: Sample) -> Sample {
        match (sample.status, self.valid_range) {
            (SampleStatus::Ok, Some((low, high))) if sample.value < low || sample.value > high => {
                Sample {
                    value: sample.value,
                    status: SampleStatus::Fault(FaultKind::Range),
                }
            }
            _ => sample,
        }
    }
}

/// Refuses a threshold rule one of whose levels could only be left past `bound` (the lowest
/// valid reading for a high rule, the highest for a low rule).
fn check_can_clear(t: &ThresholdRule, bound: i32) -> Result<(), RuleError> {
    let h = i64::from(t.hysteresis.max(0));
    for setpoint in [t.pre_alarm, t.alarm].into_iter().flatten() {
        let stuck = match t.direction {
            // Leaving needs value < setpoint - h, and value >= bound.
            threshold::Direction::High => i64::from(setpoint) - h <= i64::from(bound),
            // Leaving needs value > setpoint + h, and value <= bound.
            threshold::Direction::Low => i64::from(setpoint) + h >= i64::from(bound),
        };
        if stuck {
            return Err(RuleError::LevelCannotClear {
                setpoint,
                hysteresis: t.hysteresis,
                bound,
            });
        }
    }
    Ok(())
}

/// The state of one channel: threshold, rate-of-rise and flapping state. `Copy`, 64 bytes, no
/// pointers; start from `ChannelState::default()` (normal, no fault, not flapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ChannelState {
    threshold: ThresholdState,
    rate: RateState,
    flap: FlapState,
}

impl ChannelState {
    /// The confirmed threshold level (held while faulted and while latched).
    pub fn level(&self) -> Level {
        self.threshold.level()
    }

    /// The current sensor fault, if any (including `Range` from the valid range).
    pub fn fault(&self) -> Option<FaultKind> {
        self.threshold.fault()
    }

    /// Whether the level is held only by its latch, awaiting an authorised reset.
    pub fn is_latched(&self) -> bool {
        self.threshold.is_latched()
    }

    /// The last valid value evaluated, if any (a value outside the valid range is not valid).
    pub fn last_value(&self) -> Option<i32> {
        self.threshold.last_value()
    }

    /// When the threshold level was last changed (`0` if never).
    pub fn changed_at(&self) -> Millis {
        self.threshold.changed_at()
    }

    /// Whether the rate of rise is raised.
    pub fn is_rate_raised(&self) -> bool {
        self.rate.is_raised()
    }

    /// Whether the channel is flapping.
    pub fn is_flapping(&self) -> bool {
        self.flap.is_flapping()
    }

    /// The threshold part.
    pub fn threshold(&self) -> &ThresholdState {
        &self.threshold
    }

    /// The rate-of-rise part.
    pub fn rate(&self) -> &RateState {
        &self.rate
    }

    /// The flapping part.
    pub fn flap(&self) -> &FlapState {
        &self.flap
    }
}

/// What the caller knows about the channel's surroundings when it evaluates a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Context {
    /// A root cause is already reported for this channel: its node is offline or reports a
    /// supply failure ([`crate::NodeState::is_down`]), or its site's uplink is lost
    /// ([`crate::SiteState::is_uplink_lost`]). Outputs are still returned, marked
    /// [`Disposition::Suppressed`].
    pub suppressed: bool,
}

/// What the caller should do with an output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Disposition {
    /// Record and notify as usual.
    #[default]
    Notify,
    /// Record, do not notify: a root cause (node offline, supply failure, uplink lost) is
    /// already reported. Takes precedence over `Flapping`.
    Suppressed,
    /// Record, do not notify: the channel is flapping and `FlappingStarted` was notified.
    Flapping,
}

/// One transition of a channel and what to do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Output {
    /// What happened.
    pub transition: Transition,
    /// Whether to notify.
    pub disposition: Disposition,
}

/// The outputs of one evaluation, in order. At most six per sample; capacity eight.
pub type Outputs = heapless::Vec<Output, 8>;

/// Feeds one sample of a channel, taken at monotonic time `now`, to `rule`, updating `state`;
/// returns the outputs caused, in order (usually none). Never panics, whatever the rule (valid
/// or not), value or time; time going backwards is handled by each part as documented there.
#[inline]
pub fn evaluate(
    rule: &ChannelRule,
    state: &mut ChannelState,
    sample: Sample,
    now: Millis,
    ctx: Context,
) -> Outputs {
    let mut out = Outputs::new();
    let plain = if ctx.suppressed {
        Disposition::Suppressed
    } else {
        Disposition::Notify
    };
    if let Some(f) = &rule.flap {
        if flap::quiet(f, &mut state.flap, now) {
            push(
                &mut out,
                Transition::FlappingEnded {
                    level: state.threshold.level(),
                },
                plain,
            );
        }
    }

    let sample = rule.screen(sample);
    let th = rule.threshold.as_ref().unwrap_or(&NO_THRESHOLD);
    let transitions = threshold::evaluate(th, &mut state.threshold, sample, now);
    let rated = match (&rule.rate, sample.status) {
        (Some(r), SampleStatus::Ok) => rate::evaluate(r, &mut state.rate, sample.value, now),
        _ => None,
    };
    if transitions.is_empty() && rated.is_none() {
        return out;
    }
    for t in transitions.into_iter().chain(rated) {
        let mut disposition = plain;
        if let Some(f) = &rule.flap {
            if t.counts_for_flapping() && flap::record(f, &mut state.flap, now) {
                push(
                    &mut out,
                    Transition::FlappingStarted {
                        transitions: state.flap.count(),
                    },
                    plain,
                );
            }
            if !ctx.suppressed && state.flap.is_flapping() {
                disposition = Disposition::Flapping;
            }
        }
        push(&mut out, t, disposition);
    }
    out
}

/// An authorised person's reset (复位) of a latched level at `now`: see
/// [`threshold::reset`]. Returns `Reset { from }`, or `None` and changes nothing when there is
/// nothing to release (not latched, the alarm is still live, or the channel is faulted). The
/// reset is an operator action: it is not counted for flapping, and the caller notifies it (or
/// not) regardless of suppression.
pub fn reset(rule: &ChannelRule, state: &mut ChannelState, now: Millis) -> Option<Transition> {
    let th = rule.threshold.as_ref().unwrap_or(&NO_THRESHOLD);
    threshold::reset(th, &mut state.threshold, now)
}

/// Appends an output. At most six per evaluation, so the capacity of eight is never exceeded;
/// were it ever, the extra output would be dropped rather than panic.
#[inline(always)]
fn push(out: &mut Outputs, transition: Transition, disposition: Disposition) {
    let _ = out.push(Output {
        transition,
        disposition,
    });
}
