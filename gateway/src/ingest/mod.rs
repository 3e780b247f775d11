//! Ingest (接入): where messages come from, before any rule judges them —
//! the gateway's MQTT client (`mqtt`), the in-process broker (`broker`)
//! behind its gate (`gate`), Modbus polling (`modbus`), the (boot, seq)
//! de-duplication (`dedup`) and what a node may make the gateway keep
//! (`node_limits`), and the brokers' own configuration exported from the
//! registry (`mosquitto`, `rabbitmq`). Everything here hands the pipeline
//! an [`Inbound`].

pub mod broker;
pub mod dedup;
pub mod gate;
pub mod modbus;
pub mod mosquitto;
pub mod mqtt;
pub mod node_limits;
pub mod partitions;
pub mod rabbitmq;

/// One message from the broker.
pub struct Inbound {
    pub topic: String,
    pub payload: bytes::Bytes,
    /// Wall-clock arrival, ms since the epoch.
    pub arrived_ms: u64,
    /// Acknowledges the message to the broker once handled.
    pub ack: Option<Ack>,
}

/// Acknowledges a message to the broker.
pub type Ack = Box<dyn FnOnce() + Send + Sync>;
