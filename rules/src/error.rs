//! The crate's error type: why a rule's configuration cannot be used.
//!
//! Configuration is checked up front ([`crate::ThresholdRule::validate`]); evaluation itself never
//! fails and never panics, even on a rule that did not validate.

use core::fmt;

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
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleError::NoSetpoint => "the rule has neither a pre-alarm nor an alarm setpoint",
            RuleError::PreAlarmNotBeforeAlarm => {
                "the pre-alarm setpoint must be reached before the alarm setpoint \
                 (below it for a high rule, above it for a low rule)"
            }
            RuleError::NegativeHysteresis => {
                "the hysteresis (return difference) must not be negative"
            }
        })
    }
}

impl core::error::Error for RuleError {}
