//! `[mqtt]`: the broker the gateway ingests from, the embedded broker's
//! gate (`[mqtt.limits]`, `[mqtt.tls]`) and the gateway's own client.

use serde::Deserialize;
use std::net::SocketAddr;

/// Which broker the gateway ingests from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BrokerMode {
    /// An in-process rumqttd broker (demo and small sites).
    #[default]
    Embedded,
    /// An external broker (Mosquitto, EMQX).
    External,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MqttConfig {
    pub broker: BrokerMode,
    /// Embedded: the address the in-process broker listens on.
    /// External: ignored.
    pub embedded_listen: SocketAddr,
    /// External: broker host and port.
    pub host: String,
    pub port: u16,
    /// Fixed client id: with a persistent session the broker keeps our
    /// subscriptions and queues QoS 1 messages while we are away.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive_secs: u64,
    /// Subscription prefix; replicas behind EMQX use `$share/gateways/`.
    pub subscription_prefix: String,
    /// Embedded broker: a node of this file that has no credentials may
    /// log in without a password (or without a username) under its client
    /// id `{site}.{node}`, and publish and subscribe as that node only, as
    /// before registration existed. Off by default (`check-config` warns
    /// while it is on); the demo turns it on for its simulated nodes. Give
    /// nodes of the file credentials with `gateway node rotate`. Nodes
    /// with credentials must always use them.
    pub anonymous_config_nodes: bool,
    /// `[mqtt.limits]`: the embedded broker gate's connection caps,
    /// CONNECT timeout and keep-alive cap.
    pub limits: crate::ingest::gate::GateLimits,
    /// External broker: connect over TLS (Mosquitto's TLS listener, port
    /// 8884 in `deploy/mosquitto/tls.conf`), verifying the broker's
    /// certificate and its name (`mqtt.host`) against the system store plus
    /// `[tls] extra_ca_file`. Refused with the embedded broker.
    pub external_tls: bool,
    /// Embedded broker: whether the gate listens for plain MQTT on
    /// `embedded_listen` (default on). Off: nodes connect over TLS only
    /// (`[mqtt.tls]`); the gateway's own client does not use this port.
    pub plain: bool,
    /// `[mqtt.tls]`: MQTT over TLS on the gate (port 8883), with node
    /// client certificates optional beside passwords. Unset: no TLS.
    pub tls: Option<crate::ingest::gate::GateTls>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: BrokerMode::Embedded,
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "fire-gateway".into(),
            username: None,
            password: None,
            keep_alive_secs: 30,
            subscription_prefix: String::new(),
            anonymous_config_nodes: false,
            limits: Default::default(),
            external_tls: false,
            plain: true,
            tls: None,
        }
    }
}

impl MqttConfig {
    /// Host and port the gateway's own MQTT client connects to.
    pub fn connect_addr(&self) -> (String, u16) {
        match self.broker {
            BrokerMode::Embedded => (
                self.embedded_listen.ip().to_string(),
                self.embedded_listen.port(),
            ),
            BrokerMode::External => (self.host.clone(), self.port),
        }
    }
}
