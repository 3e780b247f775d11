//! The in-process MQTT broker (内置 MQTT 服务器, rumqttd) that makes the
//! gateway run with no external service. Deployments with many nodes, or
//! that need persistence across broker restarts, use Mosquitto or EMQX
//! (`deploy/mosquitto/`).

use std::collections::HashMap;
use std::net::SocketAddr;

/// Starts rumqttd on `listen` in its own threads (it runs its own runtimes)
/// and returns once it accepts connections. It lives as long as the
/// process. With `login`, it accepts only that username and password: the
/// gateway puts it on a loopback port behind the gate
/// (`crate::ingest::gate`), which alone knows the per-process secret.
pub async fn start(listen: SocketAddr, login: Option<(String, String)>) -> std::io::Result<()> {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        // Above the contract's 64 KiB so the gateway, not the broker, counts oversized payloads.
        max_payload_size: 256 * 1024,
        max_inflight_count: 500,
        auth: login.map(|(u, p)| HashMap::from([(u, p)])),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "v4-embedded".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    // Fail early with a clear error if the address is taken: rumqttd would
    // only log it from its own thread.
    drop(std::net::TcpListener::bind(listen)?);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })?;
    accepting(listen).await
}

/// Waits until rumqttd, which binds from its own thread a little after
/// [`start`] spawns it, accepts a connection. Until then the gate would
/// close every node connection it forwards, and the gateway's own client
/// would wait a reconnect delay.
async fn accepting(listen: SocketAddr) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(listen).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("not accepting connections after 10 s: {e}"),
                ))
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
}
