//! The events a rule emits when a channel changes state.
//!
//! Transitions are what the node sends as `event` messages and what the gateway turns into
//! alarms, tickets and notifications. A rule returns them in a small fixed-capacity
//! [`Transitions`] list, in the order they happened; most samples emit none.

use crate::{FaultKind, Level};

/// A change in a channel's alarm or fault state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Transition {
    /// Normal → pre-alarm or alarm.
    Raised {
        /// The level now in force.
        level: Level,
        /// The value that confirmed it.
        value: i32,
        /// The setpoint of `level`.
        setpoint: i32,
    },
    /// Pre-alarm → alarm.
    Escalated {
        /// The level before.
        from: Level,
        /// The level now in force.
        to: Level,
        /// The value that confirmed it.
        value: i32,
        /// The setpoint of `to`.
        setpoint: i32,
    },
    /// Alarm → pre-alarm (only when the alarm does not latch).
    Deescalated {
        /// The level before.
        from: Level,
        /// The level now in force.
        to: Level,
        /// The value that confirmed it.
        value: i32,
    },
    /// Back to normal.
    Cleared {
        /// The level before.
        from: Level,
        /// The value that confirmed it.
        value: i32,
    },
    /// The value is back inside the band, but `level` latches: it is held until an authorised
    /// reset. Emitted once each time the value comes back.
    Latched {
        /// The level held.
        level: Level,
        /// The value that came back inside the band.
        value: i32,
    },
    /// An authorised reset released a latched level; the channel is normal again.
    Reset {
        /// The level that was held.
        from: Level,
    },
    /// The channel became faulted (设备故障), or its fault changed kind.
    FaultRaised {
        /// What is wrong.
        kind: FaultKind,
    },
    /// The fault of `kind` is gone (a valid reading arrived, or the fault changed kind).
    FaultCleared {
        /// What was wrong.
        kind: FaultKind,
    },
}

/// The transitions of one evaluation, in order. Four is enough for any single sample (at most
/// `FaultCleared`, `Deescalated`, `Latched`); the capacity leaves room for later rules.
pub type Transitions = heapless::Vec<Transition, 4>;
