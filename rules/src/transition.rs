//! The events a rule emits when a channel changes state.
//!
//! Transitions are what the node sends as `event` messages and what the gateway turns into
//! alarms, tickets and notifications. The threshold rule returns them in a small fixed-capacity
//! [`Transitions`] list, in the order they happened; most samples emit none. The channel engine
//! ([`crate::channel`]) adds the rate-of-rise and flapping transitions and wraps each in an
//! [`crate::Output`] with its disposition.

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
    /// Rate of rise: the value rose by at least the rule's `rise` within its window (e.g. a
    /// loose terminal heating up before it reaches the absolute setpoint). An early warning
    /// that auto-clears; it never latches.
    RateRaised {
        /// The value that confirmed it.
        value: i32,
        /// How much the value rose within the window.
        rise: i32,
    },
    /// The rise over the window fell below half the rule's `rise`.
    RateCleared {
        /// The value that confirmed it.
        value: i32,
    },
    /// The channel started flapping: `transitions` raise/clear transitions within the flapping
    /// window. Until [`Transition::FlappingEnded`] the channel's transitions are still returned,
    /// with [`crate::Disposition::Flapping`].
    FlappingStarted {
        /// How many transitions were counted within the window.
        transitions: u8,
    },
    /// The channel has been quiet (no transition) for the rule's `quiet_ms`: normal behaviour
    /// again. `level` is the channel's level now, which the caller should take as the truth
    /// (it may differ from the last transition notified before the flapping).
    FlappingEnded {
        /// The channel's level now.
        level: Level,
    },
}

impl Transition {
    /// Whether this is a raise/clear transition of a channel, i.e. one the flapping rule counts:
    /// every variant except [`Transition::Reset`] (an operator action) and the flapping
    /// transitions themselves. Fault transitions count: a loose connector flapping between
    /// `ok` and `open` storms the duty desk just as much.
    pub const fn counts_for_flapping(&self) -> bool {
        !matches!(
            self,
            Transition::Reset { .. }
                | Transition::FlappingStarted { .. }
                | Transition::FlappingEnded { .. }
        )
    }
}

/// The transitions of one evaluation, in order. Four is enough for any single sample (at most
/// `FaultCleared`, `Deescalated`, `Latched`); the capacity leaves room for later rules.
pub type Transitions = heapless::Vec<Transition, 4>;
