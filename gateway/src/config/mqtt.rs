//! `[mqtt]`: the broker the gateway ingests from, the embedded broker's
//! gate (`[mqtt.limits]`, `[mqtt.tls]`) and the gateway's own client.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    pub limits: GateLimits,
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
    pub tls: Option<GateTls>,
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
/// `[mqtt.limits]`: the gate's caps (embedded broker only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateLimits {
    /// Connections at once, over all peers.
    pub max_connections: usize,
    /// Connections at once from one address (IPv6: one /64).
    pub max_connections_per_address: usize,
    /// Connections that have not sent their CONNECT yet, over all peers.
    pub max_half_open: usize,
    /// …and from one address.
    pub max_half_open_per_address: usize,
    /// How long a new connection has to send its CONNECT.
    pub connect_timeout_secs: u64,
    /// The longest keep-alive a client may ask for; 0 ("no keep-alive")
    /// counts as this. A connection silent for 1.5 × its keep-alive is closed.
    pub max_keep_alive_secs: u16,
}

impl Default for GateLimits {
    fn default() -> Self {
        GateLimits {
            max_connections: 4096,
            max_connections_per_address: 256,
            max_half_open: 512,
            max_half_open_per_address: 32,
            connect_timeout_secs: 10,
            max_keep_alive_secs: 300,
        }
    }
}

impl GateLimits {
    /// Problems, as (field, message).
    pub fn issues(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (field, v) in [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
            ("max_half_open", self.max_half_open),
            ("max_half_open_per_address", self.max_half_open_per_address),
            ("connect_timeout_secs", self.connect_timeout_secs as usize),
            ("max_keep_alive_secs", usize::from(self.max_keep_alive_secs)),
        ] {
            if v == 0 {
                out.push((field, "must be at least 1".to_string()));
            }
        }
        if self.max_connections_per_address > self.max_connections {
            out.push((
                "max_connections_per_address",
                "must not exceed max_connections".into(),
            ));
        }
        if self.max_half_open_per_address > self.max_half_open {
            out.push((
                "max_half_open_per_address",
                "must not exceed max_half_open".into(),
            ));
        }
        out
    }
}

/// `[mqtt.tls]`: the gate's TLS listener (embedded broker only).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GateTls {
    /// Where the TLS listener listens (default `0.0.0.0:8883`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM: the gateway's server certificate, then its intermediates. Its
    /// name (SAN) is the host name the nodes' modems connect to.
    pub cert_file: PathBuf,
    /// PEM: its private key.
    pub key_file: PathBuf,
    /// PEM: the CA of node certificates (`{storage.data_dir}/ca/ca.pem`
    /// after `gateway ca init`). Unset: no client certificates, every node
    /// logs in with its password.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8883))
}

impl GateTls {
    /// The files, as the reloading server side reads them.
    pub fn files(&self) -> crate::tls::server::ServerFiles {
        crate::tls::server::ServerFiles {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            client_ca_file: self.client_ca_file.clone(),
        }
    }

    /// Problems `check-config` reports: the files must read and build a
    /// configuration (the certificate and key belonging together).
    pub fn issues(&self) -> Vec<String> {
        match self
            .files()
            .read()
            .and_then(|m| crate::tls::server::gate_server_config(&m))
        {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string()],
        }
    }
}
