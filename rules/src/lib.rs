//! Alarm rule engine shared by the sensor node and the gateway.
//!
//! The crate is `no_std`, allocation-free and uses no floating point, so the same code runs on a
//! Cortex-M sensor node (local sounder) and in the gateway (rules runtime). Every rule is a pure
//! function of its configuration, its small fixed-size state and the sample being evaluated; time
//! is passed in as [`Millis`] from a monotonic clock, never read here.
//!
//! Modules:
//! - [`sample`]: what a rule is fed — a reading with its channel status (ok or a sensor fault).
//! - [`level`]: the alarm levels of a channel (normal, pre-alarm 预警, alarm 报警).
//! - [`threshold`]: the setpoint rule with hysteresis (回差), on/off delays, latching and faults.
//! - [`transition`]: the events a rule emits when a channel changes state.
//! - [`error`]: the crate's one error type, for rules that do not make sense.
//!
//! Everything is re-exported at the top level, so callers write `rules::evaluate`,
//! `rules::ThresholdRule`, and so on.
//!
//! ```
//! use rules::{evaluate, reset, ChannelState, Level, Sample, ThresholdRule, Transition};
//!
//! // Residual current 剩余电流: pre-alarm at 200 mA, alarm at 300 mA, 10 mA return difference.
//! let rule = ThresholdRule::high(Some(200), Some(300)).with_hysteresis(10);
//! rule.validate().unwrap();
//! let mut state = ChannelState::default();
//!
//! let out = evaluate(&rule, &mut state, Sample::ok(312), 1_000);
//! assert_eq!(out[0], Transition::Raised { level: Level::Alarm, value: 312, setpoint: 300 });
//! assert_eq!(reset(&rule, &mut state, 1_500), None); // a live alarm cannot be reset
//!
//! let out = evaluate(&rule, &mut state, Sample::ok(150), 2_000);
//! assert_eq!(out[0], Transition::Latched { level: Level::Alarm, value: 150 });
//! assert_eq!(reset(&rule, &mut state, 3_000), Some(Transition::Reset { from: Level::Alarm }));
//! assert_eq!(state.level(), Level::Normal);
//! ```
//!
//! Features: `serde` derives `Serialize`/`Deserialize` for the configuration and event types
//! (a TOML table may override individual fields of a [`ThresholdRule`]); `std` is reserved.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod level;
pub mod sample;
pub mod threshold;
pub mod transition;

pub use error::RuleError;
pub use level::Level;
pub use sample::{FaultKind, Millis, Sample, SampleStatus};
pub use threshold::{evaluate, reset, ChannelState, Direction, ThresholdRule};
pub use transition::{Transition, Transitions};
