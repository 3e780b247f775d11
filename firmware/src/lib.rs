//! Sensor-node logic, `no_std` and host-tested: drivers, sampling, local
//! alarms, payload encoding, the MQTT session and the offline buffer.
//!
//! Modules:
//! - [`node`]: the node's identity and the [`node::Publisher`], which turns
//!   readings, events, birth/will, acks and incoming commands into contract v1
//!   topics and payloads, written into caller-owned buffers (no heap).
//! - [`local`]: [`local::LocalAlarm`], the `rules` engine run on the node so a
//!   local sounder works without the gateway.
//! - [`drivers`]: ADS1115 over `embedded-hal` I²C; CT, NTC and 4–20 mA
//!   conversions with channel status.
//! - [`board`]: the analogue front end as built (which input is which channel).
//! - [`sampling`]: the sampling schedule.
//! - [`buffer`]: the offline ring of unsent messages.
//! - [`mqtt`]: MQTT 3.1.1 codec and session over `embedded-io`.
//! - [`app`]: the node application tying them together, and the self-test.
//! - [`provision`]: the node set up from its provisioning artefact.
//! - [`boot`]: the boot counter, persisted in NOR flash.
//! - [`sim`]: simulated sensors behind the same traits (QEMU, tests).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod board;
pub mod boot;
pub mod buffer;
pub mod drivers;
pub mod local;
pub mod mqtt;
pub mod node;
pub mod provision;
pub mod sampling;
pub mod sim;
