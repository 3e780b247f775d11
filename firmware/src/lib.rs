//! Sensor-node logic, `no_std` and host-tested: message encoding for the wire
//! contract v1 and the node's local alarm evaluation.
//!
//! Modules:
//! - [`node`]: the node's identity and the [`node::Publisher`], which turns
//!   readings, events, birth/will, acks and incoming commands into contract v1
//!   topics and payloads, written into caller-owned buffers (no heap).
//! - [`local`]: [`local::LocalAlarm`], the `rules` engine run on the node so a
//!   local sounder works without the gateway.
//!
//! Later slices add drivers over `embedded-hal`, the MQTT client, the offline
//! ring buffer and the Cortex-M binary; they build on these two modules.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod local;
pub mod node;
