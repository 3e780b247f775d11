//! Alarm levels of a channel: normal, pre-alarm (预警) and alarm (报警).
//!
//! Levels are ordered, `Normal < PreAlarm < Alarm`, so "the highest level reached" and
//! "raised or lowered" are plain comparisons. A sensor fault is not a level: faults are kept
//! apart (see [`crate::FaultKind`]) because a fault is never shown as a fire.

/// How alarming a channel currently is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Level {
    /// Nothing to report.
    #[default]
    Normal,
    /// Pre-alarm 预警: an early warning below the alarm setpoint.
    PreAlarm,
    /// Alarm 报警: the alarm setpoint was reached.
    Alarm,
}

impl Level {
    /// The level's name as used on the wire and in configuration: `normal`, `pre_alarm`, `alarm`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::PreAlarm => "pre_alarm",
            Level::Alarm => "alarm",
        }
    }
}

impl core::fmt::Display for Level {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}
