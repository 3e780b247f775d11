//! MQTT ingest (数据接入): the gateway's own client of the broker.
//!
//! QoS 1, a persistent session (`clean_session = false`) and a fixed client
//! id, so the broker queues messages for us while we are away and redelivers
//! the ones we had not acknowledged. Acknowledgements are manual: the
//! pipeline acks a message only after it has handled it (and, with a
//! metrics sink, after its lines are durable in the spool).

use crate::config::MqttConfig;
use crate::ingest::Inbound;
use crate::metrics::{inc, Metrics};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Subscriptions: every contract topic, so that malformed topics under the
/// prefix are seen and counted rather than silently ignored.
pub const SUBSCRIPTION: &str = "fire/v1/#";

/// Largest packet accepted from the broker: over the contract's 64 KiB, so
/// oversized payloads reach the pipeline and are counted, not a disconnect.
const MAX_PACKET: usize = 1024 * 1024;

/// Builds the client options from configuration.
pub fn options(cfg: &MqttConfig) -> MqttOptions {
    let (host, port) = cfg.connect_addr();
    let mut o = MqttOptions::new(cfg.client_id.clone(), host, port);
    o.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(cfg.keep_alive_secs))
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_inflight(100);
    if let Some(user) = &cfg.username {
        o.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
    }
    o
}

/// The gateway's MQTT client: the handle (also used to send commands to
/// nodes) and the event loop that [`run`] drives.
pub fn client(cfg: &MqttConfig) -> (AsyncClient, EventLoop) {
    client_with_tls(cfg, None)
}

/// [`client`], over TLS with `tls` when given (`mqtt.external_tls`): the
/// broker's certificate is checked by that rustls configuration, its name
/// against `mqtt.host`.
pub fn client_with_tls(
    cfg: &MqttConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> (AsyncClient, EventLoop) {
    let mut options = options(cfg);
    if let Some(tls) = tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    // Design: acks leave in bursts (every message covered by one spool
    // fsync at once); with Nagle's algorithm on, all but the first of a
    // burst waited for the broker's delayed TCP ACK (~40 ms), which capped
    // ingest at a few hundred messages a second.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    (client, eventloop)
}

/// Drives the client until `shutdown`; forwards every publish to the
/// pipeline. Reconnects with backoff (1 s doubling to 30 s) on any
/// connection error. `subscribe` false: the client only sends commands
/// (the embedded broker's gate hands the nodes' messages to the pipeline).
pub async fn run(
    cfg: MqttConfig,
    subscribe: bool,
    (client, mut eventloop): (AsyncClient, EventLoop),
    tx: mpsc::Sender<Inbound>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let filter = format!("{}{SUBSCRIPTION}", cfg.subscription_prefix);
    let mut failures = 0u32;
    // Design: acks (packet ids of QoS 1 publishes) come back from the
    // pipeline through an unbounded queue that never blocks it, bounded in
    // practice by the messages the broker has in flight. This loop writes
    // every ack queued at the moment into the connection's buffer and
    // flushes once: a batch of a thousand messages is one write and one TCP
    // segment, not a thousand (each `AsyncClient::ack` was its own trip
    // through the event loop and its own flush, and the broker paid for
    // every segment).
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<u16>();
    // Design: the event loop never waits for the pipeline. While a storm
    // or a database outage keeps the pipeline's queue full, `tx.send` in
    // this loop stopped it reading the socket, so the broker's PINGRESP went
    // unread, the client dropped the connection every keep-alive and the
    // broker redelivered everything in flight (546,013 duplicates for
    // 200,000 messages in one benchmark). Publishes go through an unbounded
    // queue to a forwarder task that awaits room instead; the queue is
    // bounded in practice by the broker's in-flight window for our session
    // (Mosquitto's max_inflight_messages: nothing more is sent to us until
    // we acknowledge, and we acknowledge only after the pipeline commits).
    let (fwd_tx, mut fwd_rx) = mpsc::unbounded_channel::<Inbound>();
    let forwarder = tokio::spawn(async move {
        while let Some(msg) = fwd_rx.recv().await {
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    loop {
        let connected = eventloop.network.is_some();
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(first) = ack_rx.recv(), if connected => {
                if let Err(e) = write_acks(&mut eventloop, first, &mut ack_rx).await {
                    inc(&metrics.mqtt_ack_failures);
                    tracing::debug!(error = %e, "acks not written; the broker will redeliver");
                }
                continue;
            }
            ev = eventloop.poll() => ev,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                failures = 0;
                inc(&metrics.mqtt_connections);
                *metrics
                    .mqtt_last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                if subscribe && !ack.session_present {
                    // New session: (re)subscribe. With a resumed session the
                    // broker kept our subscription and queued messages.
                    if let Err(e) = client.subscribe(filter.clone(), QoS::AtLeastOnce).await {
                        tracing::error!(error = %e, "cannot subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let acks = ack_tx.clone();
                let pkid = (p.qos != QoS::AtMostOnce).then_some(p.pkid);
                let ack_metrics = metrics.clone();
                let msg = Inbound {
                    topic: p.topic.clone(),
                    payload: p.payload.clone(),
                    arrived_ms: crate::domain::time::now_ms(),
                    ack: Some(Box::new(move || {
                        // Never blocks the pipeline; this loop writes it.
                        if let Some(pkid) = pkid {
                            if acks.send(pkid).is_err() {
                                inc(&ack_metrics.mqtt_ack_failures);
                            }
                        }
                    })),
                };
                if fwd_tx.send(msg).is_err() {
                    break; // the pipeline has stopped
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                tracing::info!(filter = %filter, "subscribed")
            }
            Ok(_) => {}
            Err(e) => {
                inc(&metrics.mqtt_connection_errors);
                let wait = Duration::from_millis((1000u64 << failures.min(5)).min(30_000));
                failures = failures.saturating_add(1);
                let reason = match crate::tls::certificate_error(&e) {
                    Some(c) => format!(
                        "TLS: the broker's certificate is not accepted: {c} \
                         (trusted: the system store and tls.extra_ca_file)"
                    ),
                    None => e.to_string(),
                };
                tracing::warn!(error = %reason, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost");
                *metrics
                    .mqtt_last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(reason);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    drop(fwd_tx);
    forwarder.abort();
    // Orderly goodbye: let the broker keep our session for the next start.
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
    tracing::info!("MQTT ingest stopped");
}

/// Most acks written in one go (a pipeline batch's worth).
const ACKS_PER_WRITE: usize = 4096;

/// Writes `first` and every other ack queued now (up to
/// [`ACKS_PER_WRITE`]) into the connection's buffer, through the client's
/// own state (as `AsyncClient::ack` would), then flushes once.
async fn write_acks(
    eventloop: &mut EventLoop,
    first: u16,
    queued: &mut mpsc::UnboundedReceiver<u16>,
) -> Result<(), rumqttc::StateError> {
    let Some(network) = eventloop.network.as_mut() else {
        return Err(rumqttc::StateError::ConnectionAborted);
    };
    let mut next = Some(first);
    let mut written = 0;
    while let Some(pkid) = next {
        let ack = rumqttc::Request::PubAck(rumqttc::PubAck::new(pkid));
        if let Some(packet) = eventloop.state.handle_outgoing_packet(ack)? {
            network.write(packet).await?;
        }
        written += 1;
        next = if written < ACKS_PER_WRITE {
            queued.try_recv().ok()
        } else {
            None
        };
    }
    let timeout = Duration::from_secs(eventloop.network_options.connection_timeout());
    match tokio::time::timeout(timeout, network.flush()).await {
        Ok(r) => r,
        Err(_) => Err(rumqttc::StateError::ConnectionAborted),
    }
}
