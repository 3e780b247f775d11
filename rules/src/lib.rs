//! Alarm rule engine shared by the sensor node and the gateway.
//!
//! The crate is `no_std`, allocation-free and uses no floating point, so the same code runs on a
//! Cortex-M sensor node (local sounder) and in the gateway (rules runtime). Every rule is a pure
//! function of its configuration, its small fixed-size state and the sample being evaluated; time
//! is passed in as [`Millis`] from a monotonic clock, never read here.
//!
//! Modules:
//! - [`channel`]: the engine — a [`ChannelRule`] (threshold, rate of rise, valid range,
//!   flapping) and its 64-byte [`ChannelState`]; [`evaluate`] returns [`Outputs`], each a
//!   transition with its [`Disposition`] (notify, suppressed by a root cause, flapping).
//! - [`threshold`]: setpoints with hysteresis (回差), on/off delays, latching and faults.
//! - [`rate`]: rate of rise within a window (a loose terminal heats before the setpoint).
//! - [`flap`]: flapping detection.
//! - [`node`]: node-level dead-man timer, Last Will and supply failure; [`site`]: a site's
//!   uplink, inferred from its nodes. They give the [`Context`] of root-cause suppression.
//! - [`defaults`]: per-quantity default rules and the limits of the Chinese standards.
//! - [`sample`]: what a rule is fed — a reading with its channel status (ok or a sensor fault).
//! - [`level`]: the alarm levels of a channel (normal, pre-alarm 预警, alarm 报警).
//! - [`transition`]: the events a rule emits when a channel changes state.
//! - [`error`]: the crate's one error type, for rules that do not make sense or are dangerous.
//!
//! The main types are re-exported at the top level, so callers write `rules::evaluate`,
//! `rules::ChannelRule`, and so on; the parts' own functions are `rules::threshold::evaluate`,
//! `rules::node::tick`, ...
//!
//! ```
//! use rules::{
//!     defaults, evaluate, reset, ChannelState, Context, Disposition, Level, Output, Sample,
//!     Transition,
//! };
//! use wire::Quantity;
//!
//! // Residual current 剩余电流 with the standard defaults: pre-alarm 300 mA, alarm 500 mA.
//! let rule = defaults::channel_rule(Quantity::ResidualCurrent);
//! rule.validate_for(Quantity::ResidualCurrent).unwrap();
//! let mut state = ChannelState::default();
//! let ctx = Context::default();
//!
//! let out = evaluate(&rule, &mut state, Sample::ok(512), 1_000, ctx);
//! assert_eq!(
//!     out[0],
//!     Output {
//!         transition: Transition::Raised { level: Level::Alarm, value: 512, setpoint: 500 },
//!         disposition: Disposition::Notify,
//!     }
//! );
//! assert_eq!(reset(&rule, &mut state, 1_500), None); // a live alarm cannot be reset
//!
//! let out = evaluate(&rule, &mut state, Sample::ok(150), 2_000, ctx);
//! assert_eq!(out[0].transition, Transition::Latched { level: Level::Alarm, value: 150 });
//! assert_eq!(reset(&rule, &mut state, 3_000), Some(Transition::Reset { from: Level::Alarm }));
//! assert_eq!(state.level(), Level::Normal);
//! ```
//!
//! Features: `serde` derives `Serialize`/`Deserialize` for the configuration, state and event
//! types (a TOML table may override individual fields of a [`ThresholdRule`], [`FlapRule`],
//! [`NodeRule`]; unknown fields are refused); `std` is reserved.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod channel;
pub mod defaults;
pub mod error;
pub mod flap;
pub mod level;
pub mod node;
pub mod rate;
pub mod sample;
pub mod site;
mod stamp;
pub mod threshold;
pub mod transition;

pub use channel::{
    evaluate, reset, ChannelRule, ChannelState, Context, Disposition, Output, Outputs,
};
pub use error::RuleError;
pub use flap::{FlapRule, FlapState};
pub use level::Level;
pub use node::{NodeRule, NodeState, NodeTransition, OfflineCause};
pub use rate::{RateRule, RateState};
pub use sample::{FaultKind, Millis, Sample, SampleStatus};
pub use site::{SiteState, SiteTransition};
pub use threshold::{Direction, ThresholdRule, ThresholdState};
pub use transition::{Transition, Transitions};
