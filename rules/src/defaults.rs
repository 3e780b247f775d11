//! Default rules per quantity, and the limits that follow the Chinese standards (DOMAIN §2).
//!
//! Values are in each quantity's wire unit ([`Quantity::unit`]): mA, 0.1 °C, arcs/s, kPa, mm,
//! µA. [`channel_rule`] is what a channel gets when nothing is configured; every default
//! validates with [`ChannelRule::validate_for`] for its quantity.
//!
//! | quantity | default |
//! |---|---|
//! | residual current | high, 预警 300 mA, 报警 500 mA, hysteresis 30 mA, alarm latches (GB 50116 §9.2.3: 300–500 mA) |
//! | temperature | high, 预警 60 °C, 报警 80 °C, hysteresis 2 °C, alarm latches; rate of rise +10 °C within 60 s |
//! | arc | high, 预警 10 arcs/s, 报警 14 arcs/s, hysteresis 2 (GB 14287.4: ≤ 9 no alarm, ≥ 14 alarm) |
//! | water pressure | low, 预警 below 150 kPa, 报警 below 100 kPa (0.10 MPa, GB 50974), hysteresis 10 kPa |
//! | water level | no setpoint (site-specific): faults only |
//! | loop current | valid range 3600..=21000 µA (NAMUR NE43): outside is a `Range` fault; no setpoint |
//! | current, voltage | no setpoint (depends on the loop's rating): faults only |
//!
//! Every default also has flapping detection, [`flap_rule`] (6 transitions within 10 min, quiet
//! 10 min), and no on/off delay (hysteresis alone keeps a hovering value quiet; an on-delay is a
//! per-site choice, bounded by [`max_on_delay_ms`]).
//!
//! High fire-water pressure (above the 0.50 MPa working maximum) cannot be expressed in the same
//! [`ThresholdRule`] as the low side (a rule has one direction); it is left to configuration
//! (e.g. a second channel rule on the same reading).

use crate::{ChannelRule, Direction, FlapRule, RateRule, RuleError, ThresholdRule};
use wire::provision::Setpoints;
use wire::Quantity;

/// What the node → broker → gateway → duty-desk chain may add to a detector's response, in ms
/// (DOMAIN §2: "well under 1 s"). An on-delay may use the rest of the standard's response time.
pub const PIPELINE_BUDGET_MS: u32 = 1_000;

/// Highest residual-current setpoint, mA (GB 50116 §9.2.3).
pub const RESIDUAL_CURRENT_MAX_MA: i32 = 1_000;
/// Lowest residual-current setpoint accepted, mA. A healthy loop leaks 100–200 mA and the
/// setpoint should be at least twice that; below 200 mA is suspicious, below 100 mA is refused.
pub const RESIDUAL_CURRENT_MIN_MA: i32 = 100;
/// Highest temperature alarm setpoint of a high rule, 0.1 °C (140 °C, GB 14287.3's upper end).
pub const TEMPERATURE_MAX_ALARM: i32 = 1_400;
/// Highest arc alarm setpoint, arcs/s (GB 14287.4: ≥ 14 arcs within 1 s must alarm).
pub const ARC_ALARM_MAX: i32 = 14;
/// Lowest arc alarm setpoint, arcs/s (GB 14287.4: ≤ 9 arcs within 1 s must not alarm).
pub const ARC_ALARM_MIN: i32 = 10;
/// NAMUR NE43 valid range of a 4–20 mA loop, µA: below 3.6 mA or above 21.0 mA is a fault.
pub const NE43_RANGE: (i32, i32) = (3_600, 21_000);

/// The detector response time the standards require for quantity `q`, in ms, if any:
/// residual current ≤ 30 s and temperature ≤ 40 s (GB 50166-2019 §4.8.5); arc ≤ 30 s
/// (GB 14287.4).
pub const fn response_limit_ms(q: Quantity) -> Option<u32> {
    match q {
        Quantity::ResidualCurrent => Some(30_000),
        Quantity::Temperature => Some(40_000),
        Quantity::Arc => Some(30_000),
        _ => None,
    }
}

/// The longest on-delay that still meets [`response_limit_ms`]: the limit less
/// [`PIPELINE_BUDGET_MS`]. `None` when the quantity has no response limit.
pub const fn max_on_delay_ms(q: Quantity) -> Option<u32> {
    match response_limit_ms(q) {
        Some(limit) => Some(limit.saturating_sub(PIPELINE_BUDGET_MS)),
        None => None,
    }
}

/// The lowest physically possible reading of `q`: 0 for every quantity but temperature, which
/// may be negative (−273.1 °C, absolute zero in the wire unit, rounded up).
pub const fn physical_min(q: Quantity) -> i32 {
    match q {
        Quantity::Temperature => -2_731,
        _ => 0,
    }
}

/// The default flapping rule: 6 transitions within 10 minutes; 10 quiet minutes end it.
pub const fn flap_rule() -> FlapRule {
    FlapRule::new(6, 600_000, 600_000)
}

/// The rule a channel measuring `q` gets when nothing is configured (see the table above).
pub const fn channel_rule(q: Quantity) -> ChannelRule {
    let rule = ChannelRule::new().with_flap(flap_rule());
    match q {
        Quantity::ResidualCurrent => rule.with_threshold(
            ThresholdRule::high(Some(300), Some(500))
                .with_hysteresis(30)
                .with_latching(true, false),
        ),
        Quantity::Temperature => rule
            .with_threshold(
                ThresholdRule::high(Some(600), Some(800))
                    .with_hysteresis(20)
                    .with_latching(true, false),
            )
            .with_rate(RateRule::new(100, 60_000)),
        Quantity::Arc => rule.with_threshold(
            ThresholdRule::high(Some(10), Some(14))
                .with_hysteresis(2)
                .with_latching(true, false),
        ),
        Quantity::WaterPressure => rule.with_threshold(
            ThresholdRule::low(Some(150), Some(100))
                .with_hysteresis(10)
                .with_latching(true, false),
        ),
        Quantity::LoopCurrent => rule.with_valid_range(NE43_RANGE.0, NE43_RANGE.1),
        Quantity::WaterLevel | Quantity::Current | Quantity::Voltage => rule,
    }
}

/// Which side is dangerous for `q` when its default rule has no threshold to
/// say so: low for water level (an emptying tank) and pressure, high for the
/// rest.
pub const fn direction(q: Quantity) -> Direction {
    if let Some(t) = channel_rule(q).threshold {
        return t.direction;
    }
    match q {
        Quantity::WaterLevel | Quantity::WaterPressure => Direction::Low,
        _ => Direction::High,
    }
}

/// The rule of a channel measuring `q` provisioned with `set` (the node's
/// artefact, [`wire::provision`]): [`channel_rule`] with each setpoint and
/// the hysteresis that `set` gives in place of the default's (what `set`
/// leaves out keeps the default). A quantity without a default
/// threshold gets one in [`direction`]`(q)` with the default's latching
/// (alarm latches, pre-alarm clears). The result must pass
/// [`ChannelRule::validate_for`], so a setpoint the standards refuse (e.g.
/// residual current above 1000 mA) is an error here, on the gateway before
/// writing the artefact and on the node when reading it.
pub fn provisioned(q: Quantity, set: &Setpoints) -> Result<ChannelRule, RuleError> {
    let mut rule = channel_rule(q);
    if set.pre_alarm.is_some() || set.alarm.is_some() || set.hysteresis.is_some() {
        let mut t = rule.threshold.unwrap_or(match direction(q) {
            Direction::High => ThresholdRule::high(None, None),
            Direction::Low => ThresholdRule::low(None, None),
        });
        t.pre_alarm = set.pre_alarm.or(t.pre_alarm);
        t.alarm = set.alarm.or(t.alarm);
        t.hysteresis = set.hysteresis.unwrap_or(t.hysteresis);
        rule.threshold = Some(t);
    }
    rule.validate_for(q)?;
    Ok(rule)
}

/// The rule of a channel measuring `q`, now under `current`, after a `config`
/// command ([`wire::Cmd`]) sets its setpoints: `current` with the threshold's
/// pre-alarm setpoint replaced by `pre_alarm` (`None`: no pre-alarm level),
/// its alarm setpoint by `alarm`, and its hysteresis by `hysteresis` when
/// given (`None` keeps the current one). Everything else — direction, delays,
/// latching, rate of rise, valid range, flapping — is kept; a rule without a
/// threshold gets one in [`direction`]`(q)` with the default latching (alarm
/// latches, pre-alarm clears). The result must pass
/// [`ChannelRule::validate_for`], the check [`provisioned`] runs on the
/// artefact's setpoints, so a setpoint the standards refuse (e.g. residual
/// current above 1000 mA) is refused here too.
pub fn configured(
    q: Quantity,
    current: &ChannelRule,
    pre_alarm: Option<i32>,
    alarm: i32,
    hysteresis: Option<i32>,
) -> Result<ChannelRule, RuleError> {
    let mut rule = *current;
    let mut t = rule.threshold.unwrap_or(match direction(q) {
        Direction::High => ThresholdRule::high(None, None),
        Direction::Low => ThresholdRule::low(None, None),
    });
    t.pre_alarm = pre_alarm;
    t.alarm = Some(alarm);
    t.hysteresis = hysteresis.unwrap_or(t.hysteresis);
    rule.threshold = Some(t);
    rule.validate_for(q)?;
    Ok(rule)
}
