//! The crate's error type: why a rule's configuration cannot be used.
//!
//! Configuration is checked up front: [`crate::ThresholdRule::validate`] and
//! [`crate::ChannelRule::validate`] check that a rule makes sense on its own;
//! [`crate::ChannelRule::validate_for`] also refuses settings that are dangerous for the quantity
//! measured (DOMAIN §2: residual-current setpoints, GB 50166 response times). Evaluation itself
//! never fails and never panics, even on a rule that did not validate.
//!
//! Every variant has an English [`Display`](core::fmt::Display) message meant for the person who
//! wrote the configuration; numbers are in the quantity's wire unit.

use core::fmt;
use wire::Quantity;

/// Why a rule's configuration was refused. The caller (whoever wrote the configuration) must act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleError {
    /// Neither a pre-alarm nor an alarm setpoint is set: the rule could never fire.
    NoSetpoint,
    /// The pre-alarm setpoint is not reached before the alarm setpoint (for a high rule it must
    /// be below the alarm setpoint, for a low rule above it).
    PreAlarmNotBeforeAlarm,
    /// The hysteresis (return difference, 回差) is negative.
    NegativeHysteresis,
    /// The hysteresis is not smaller than the distance between the pre-alarm and alarm
    /// setpoints: an alarm could then only be left below the pre-alarm setpoint, and the
    /// pre-alarm band would be meaningless.
    HysteresisTooWide {
        /// The configured hysteresis.
        hysteresis: i32,
        /// `|alarm - pre_alarm|`: the hysteresis must be smaller.
        gap: i32,
    },
    /// With this hysteresis a level could only be left past `release`, which no valid reading
    /// reaches (`bound` is the lowest valid value for a high rule, the highest for a low rule):
    /// the level, and so a latched alarm's reset, would be stuck for ever.
    LevelCannotClear {
        /// The setpoint of the level.
        setpoint: i32,
        /// The configured hysteresis.
        hysteresis: i32,
        /// The bound of valid readings (valid range, or the quantity's physical limit).
        bound: i32,
    },
    /// A rate-of-rise rule's `rise` is zero or negative: it would always be raised.
    NonPositiveRise {
        /// The configured rise.
        rise: i32,
    },
    /// A rate-of-rise rule's `window_ms` is zero.
    ZeroRateWindow,
    /// A flapping rule needs at least two transitions within its window.
    FlapTooFewTransitions {
        /// The configured number.
        transitions: u8,
    },
    /// A flapping rule's `window_ms` is zero.
    ZeroFlapWindow,
    /// The valid range is empty (`low > high`).
    EmptyValidRange {
        /// The lower end.
        low: i32,
        /// The upper end.
        high: i32,
    },
    /// A setpoint lies outside the valid range: a value reaching it would be a range fault, so
    /// the level could never be raised.
    SetpointOutsideValidRange {
        /// The setpoint.
        setpoint: i32,
        /// The lower end of the valid range.
        low: i32,
        /// The upper end of the valid range.
        high: i32,
    },
    /// A setpoint is above what the standards allow for the quantity (e.g. residual current
    /// above 1000 mA, GB 50116 §9.2.3): the alarm would come too late.
    SetpointTooHigh {
        /// What the channel measures.
        quantity: Quantity,
        /// The setpoint.
        setpoint: i32,
        /// The highest allowed.
        max: i32,
    },
    /// A setpoint is below what makes sense for the quantity (e.g. residual current below
    /// 100 mA, when a healthy loop leaks 100–200 mA): it would alarm on a healthy installation.
    SetpointTooLow {
        /// What the channel measures.
        quantity: Quantity,
        /// The setpoint.
        setpoint: i32,
        /// The lowest allowed.
        min: i32,
    },
    /// The quantity must have an alarm (报警) setpoint (residual current, temperature, arc), and
    /// the rule has none.
    MissingAlarm {
        /// What the channel measures.
        quantity: Quantity,
    },
    /// A low rule on a quantity whose danger is a high value (residual current, arc).
    WrongDirection {
        /// What the channel measures.
        quantity: Quantity,
    },
    /// The on-delay is so long that the detector response time of GB 50166-2019 §4.8.5 (or
    /// GB 14287.4 for arcs) can no longer be met with the pipeline's budget.
    OnDelayTooLong {
        /// What the channel measures.
        quantity: Quantity,
        /// The configured on-delay.
        on_delay_ms: u32,
        /// The longest allowed: the response limit less the pipeline budget.
        max_ms: u32,
    },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RuleError::NoSetpoint => {
                f.write_str("the rule has neither a pre-alarm nor an alarm setpoint")
            }
            RuleError::PreAlarmNotBeforeAlarm => f.write_str(
                "the pre-alarm setpoint must be reached before the alarm setpoint \
                 (below it for a high rule, above it for a low rule)",
            ),
            RuleError::NegativeHysteresis => {
                f.write_str("the hysteresis (return difference) must not be negative")
            }
            RuleError::HysteresisTooWide { hysteresis, gap } => write!(
                f,
                "the hysteresis (return difference) {hysteresis} must be smaller than the \
                 distance {gap} between the pre-alarm and alarm setpoints"
            ),
            RuleError::LevelCannotClear {
                setpoint,
                hysteresis,
                bound,
            } => write!(
                f,
                "with a hysteresis of {hysteresis} the level at setpoint {setpoint} could never \
                 clear: valid readings stop at {bound}"
            ),
            RuleError::NonPositiveRise { rise } => write!(
                f,
                "the rate-of-rise rule's rise must be positive, not {rise}"
            ),
            RuleError::ZeroRateWindow => {
                f.write_str("the rate-of-rise rule's window must be longer than 0 ms")
            }
            RuleError::FlapTooFewTransitions { transitions } => write!(
                f,
                "the flapping rule needs at least 2 transitions within its window, not \
                 {transitions}"
            ),
            RuleError::ZeroFlapWindow => {
                f.write_str("the flapping rule's window must be longer than 0 ms")
            }
            RuleError::EmptyValidRange { low, high } => {
                write!(f, "the valid range {low}..={high} is empty")
            }
            RuleError::SetpointOutsideValidRange {
                setpoint,
                low,
                high,
            } => write!(
                f,
                "the setpoint {setpoint} lies outside the valid range {low}..={high}, so it \
                 could never be reached"
            ),
            RuleError::SetpointTooHigh {
                quantity,
                setpoint,
                max,
            } => write!(
                f,
                "the {quantity} setpoint {setpoint} {unit} is above the allowed maximum of \
                 {max} {unit}: the alarm would come too late",
                unit = quantity.unit()
            ),
            RuleError::SetpointTooLow {
                quantity,
                setpoint,
                min,
            } => write!(
                f,
                "the {quantity} setpoint {setpoint} {unit} is below the allowed minimum of \
                 {min} {unit}: it would alarm on a healthy installation",
                unit = quantity.unit()
            ),
            RuleError::MissingAlarm { quantity } => {
                write!(f, "{quantity} channels must have an alarm setpoint")
            }
            RuleError::WrongDirection { quantity } => write!(
                f,
                "{quantity} rules must be high rules: the danger is a high value"
            ),
            RuleError::OnDelayTooLong {
                quantity,
                on_delay_ms,
                max_ms,
            } => write!(
                f,
                "the on-delay of {on_delay_ms} ms is too long for {quantity}: at most \
                 {max_ms} ms keeps the standard's response time"
            ),
        }
    }
}

impl core::error::Error for RuleError {}
