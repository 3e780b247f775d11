//! A minimal MQTT 3.1.1 client for the node: a pure packet [`codec`] and a
//! [`session`] state machine over any `embedded-io` byte stream (a UART
//! bridged to TCP, a socket). Why our own and not a crate: see
//! ARCHITECTURE.md, "Firmware: MQTT client".

pub mod codec;
pub mod session;

pub use session::{Event, Session, SessionConfig, SessionError};
