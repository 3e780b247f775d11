//! The gate (接入网关) in front of the in-process broker: MQTT 3.1.1
//! credentials and a topic ACL, which rumqttd does not have.
//!
//! Nodes connect to the gate on the public broker port; the gate checks the
//! CONNECT (username `{site}.{node}`, password against the `$7$` hash in the
//! registry, client id = username, the Last Will's topic), then opens a
//! connection to rumqttd on a loopback port — rumqttd there accepts only the
//! gate's own per-process secret — and relays packets both ways, whole
//! frames at a time. On the way in it looks at every PUBLISH and SUBSCRIBE:
//! a node may publish only under its own `fire/v1/{site}/{node}/` (telemetry,
//! status, event, cmd/ack) and subscribe only to its own `…/cmd`. A refused
//! PUBLISH is dropped and counted (`gateway_mqtt_acl_denied_total`), and
//! acknowledged as MQTT 3.1.1 has no negative acknowledgement (as Mosquitto
//! does), so the node does not resend it forever; a refused SUBSCRIBE gets
//! SUBACK 0x80 for every filter. When a node's credential is revoked or
//! rotated its live connection is closed.
//!
//! Anonymous logins, while `mqtt.anonymous_config_nodes` is on (off by
//! default; the demo turns it on), may log in only as a node of the file
//! without credentials, under that node's client id `{site}.{node}`, and
//! publish and subscribe as that node only. The gateway's own client id is
//! reserved ([`access`]).
//!
//! An unauthenticated peer gets little: connections are capped globally and
//! per address, half-open ones (no CONNECT yet) more tightly, the CONNECT
//! must come first and within `connect_timeout_secs` and be at most
//! [`MAX_CONNECT`] bytes, a silent connection is closed after 1.5 × its
//! (capped) keep-alive, refusals are logged in bounded memory with the
//! peer's strings truncated ([`limits`]). Every connection the gate closes
//! is counted by reason (`gateway_mqtt_gate_closed_total`).
//!
//! The pure parts — framing and string checks ([`frame`]), the CONNECT
//! check and the ACL ([`access`]), the caps and the refusal log
//! ([`limits`]) — are functions of their inputs, tested without sockets;
//! the relay here is the thin shell.

pub mod access;
pub mod frame;
pub mod limits;
pub mod tls;

pub use access::{Access, Principal};
pub use frame::{frame, without_pubacks, FrameError, FrameHeader, MAX_CONNECT, MAX_PACKET};
pub use limits::{Closed, GateLimits, GateMetrics};
pub use tls::{GateTls, TlsRefused};

use crate::metrics::{inc, Metrics};
use crate::tls::server::Reloadable;
use bytes::BytesMut;
use frame::{connect_fault, protocol_level, publish_topic_fault, pubrel_pkid};
use limits::{effective_keep_alive, for_log, idle_timeout, Limiter, RefusalLog};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Login, PubAck, PubComp, PubRec, Publish, SubAck,
    Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::QoS;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A refused login, publish or subscription is logged at most once per
/// this interval per login (every one is counted).
const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Logins the refusal log remembers.
const LOG_ENTRIES: usize = 1024;
/// Refusal lines per [`LOG_INTERVAL`] over all logins.
const LOG_LINES: u32 = 60;
/// Refused QoS 2 publishes a connection may leave without PUBREL.
const MAX_UNRELEASED_QOS2: usize = 64;

/// Where the gate relays to, and how it logs in there.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
    /// The pipeline's queue: a node's QoS 0 and QoS 1 publishes, once
    /// checked, go straight to it instead of through the broker and back
    /// over loopback to the gateway's own client, and a QoS 1 publish is
    /// acknowledged to the node (PUBACK, by the gate) only once the
    /// pipeline has committed it — so a gateway killed mid-batch loses
    /// nothing: the node still holds what was not acknowledged and sends it
    /// again. `None`: everything is relayed to the broker.
    pub ingest: Option<tokio::sync::mpsc::Sender<crate::ingest::Inbound>>,
}

/// The gate's shared state.
struct Shared {
    access: watch::Receiver<Arc<Access>>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    limiter: Arc<Limiter>,
    refusals: Mutex<RefusalLog>,
}

impl Shared {
    /// Whether to log a refusal for `key` now: `Some(n)` with the refusals
    /// left unlogged before it.
    fn should_log(&self, key: &str) -> Option<u64> {
        let mut log = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let r = log.should_log(key, Instant::now());
        if r.is_none() {
            inc(&self.metrics.gate.log_suppressed);
        }
        r
    }
}

/// Accepts connections on `listener` until `shutdown`, each relayed to
/// `upstream` under the rules of the latest [`Access`] and within `limits`.
pub async fn run(
    listener: TcpListener,
    access: watch::Receiver<Arc<Access>>,
    upstream: Upstream,
    limits: GateLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    Gate::new(access, upstream, limits, metrics)
        .run(listener, None, shutdown)
        .await
}

/// The gate: its listeners (plain MQTT, MQTT over TLS) share one
/// [`Access`], one set of connection caps and one refusal log.
#[derive(Clone)]
pub struct Gate(Arc<Shared>);

impl Gate {
    pub fn new(
        access: watch::Receiver<Arc<Access>>,
        upstream: Upstream,
        limits: GateLimits,
        metrics: Arc<Metrics>,
    ) -> Gate {
        Gate(Arc::new(Shared {
            access,
            upstream,
            limiter: Arc::new(Limiter::new(limits, Some(metrics.clone()))),
            metrics,
            refusals: Mutex::new(RefusalLog::new(LOG_ENTRIES, LOG_INTERVAL, LOG_LINES)),
        }))
    }

    /// Accepts connections on `listener` until `shutdown`: plain MQTT, or
    /// MQTT over TLS on the configuration `tls` holds at each handshake.
    pub async fn run(
        &self,
        listener: TcpListener,
        tls: Option<Arc<Reloadable>>,
        shutdown: CancellationToken,
    ) {
        let shared = &self.0;
        if let Some(t) = &tls {
            let _ = shared.metrics.gate.tls.config.set(t.clone());
        }
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // Over a cap: closed at once (dropped), before a byte is read.
                    let slot = match shared.limiter.admit(peer.ip()) {
                        Ok(slot) => slot,
                        Err(why) => {
                            shared.metrics.gate.closed(why);
                            if let Some(n) = shared.should_log(&format!("cap:{}", peer.ip())) {
                                tracing::warn!(%peer, cap = why.label(), suppressed = n, "MQTT connection refused: over the gate's connection cap");
                            }
                            drop(stream);
                            continue;
                        }
                    };
                    let shared = shared.clone();
                    let shutdown = shutdown.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let r = match tls {
                            None => serve_plain(stream, slot, &shared, shutdown).await,
                            Some(tls) => serve_tls(stream, &tls, slot, &shared, shutdown).await,
                        };
                        if let Err(e) = r {
                            if let Some(why) = e.closed() {
                                shared.metrics.gate.closed(why);
                                if why == Closed::Malformed {
                                    inc(&shared.metrics.mqtt_gate_malformed);
                                }
                            }
                            tracing::debug!(%peer, error = %e, "MQTT gate connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT gate: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn serve_plain(
    client: TcpStream,
    slot: limits::Slot,
    shared: &Shared,
    shutdown: CancellationToken,
) -> Result<(), ConnError> {
    client.set_nodelay(true)?;
    serve(client, None, slot, shared, shutdown).await
}

/// The TLS handshake (within the CONNECT timeout), then the relay. A
/// failed handshake is counted by its reason.
async fn serve_tls(
    client: TcpStream,
    tls: &Reloadable,
    slot: limits::Slot,
    shared: &Shared,
    shutdown: CancellationToken,
) -> Result<(), ConnError> {
    client.set_nodelay(true)?;
    let timeout = Duration::from_secs(shared.limiter.limits().connect_timeout_secs);
    let stream = match tokio::time::timeout(timeout, tls.acceptor().accept(client)).await {
        Err(_) => return Err(ConnError::Timeout(timeout)),
        Ok(Err(e)) => {
            let why = TlsRefused::of_handshake(&e);
            shared.metrics.gate.tls.refused(why);
            if why != TlsRefused::Handshake {
                if let Some(n) = shared.should_log(&format!("tls:{}", why.label())) {
                    tracing::warn!(reason = why.label(), error = %e, suppressed = n, "MQTT over TLS refused: client certificate");
                }
            }
            return Err(ConnError::Tls(e));
        }
        Ok(Ok(s)) => s,
    };
    inc(&shared.metrics.gate.tls.handshakes);
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| tls::fingerprint(c));
    if cert.is_some() {
        inc(&shared.metrics.gate.tls.client_certificates);
    }
    serve(stream, cert, slot, shared, shutdown).await
}

/// Why a relayed connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    #[error("malformed {0} packet")]
    Malformed(&'static str),
    #[error("no CONNECT within {0:?}")]
    Timeout(Duration),
    #[error("silent for {0:?} (1.5 × keep-alive)")]
    Idle(Duration),
    #[error("refused: {0:?}")]
    Refused(ConnectReturnCode),
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error("more than {MAX_UNRELEASED_QOS2} refused QoS 2 publishes without PUBREL")]
    Qos2Unreleased,
    #[error("credential revoked or rotated")]
    Revoked,
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
}

impl ConnError {
    /// How `/metrics` counts it; `None` when the peer ended it (I/O).
    fn closed(&self) -> Option<Closed> {
        Some(match self {
            ConnError::Io(_) => return None,
            ConnError::Frame(_) | ConnError::Malformed(_) | ConnError::Protocol(_) => {
                Closed::Malformed
            }
            ConnError::Timeout(_) => Closed::ConnectTimeout,
            ConnError::Idle(_) => Closed::Idle,
            ConnError::Refused(ConnectReturnCode::RefusedProtocolVersion) => {
                Closed::ProtocolVersion
            }
            ConnError::Refused(_) => Closed::Refused,
            ConnError::Qos2Unreleased => Closed::Qos2Unreleased,
            ConnError::Revoked => Closed::Revoked,
            ConnError::Tls(_) => Closed::Tls,
        })
    }
}

/// Reads until the CONNECT is whole at the start of `buf`; `None` at a
/// clean EOF. The first byte must announce a CONNECT, and its length fit
/// [`MAX_CONNECT`]: anything else is refused as soon as it is seen.
async fn read_connect(
    r: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
) -> Result<Option<FrameHeader>, ConnError> {
    loop {
        if buf.first().is_some_and(|b| b >> 4 != 1) {
            return Err(ConnError::Protocol("first packet is not CONNECT"));
        }
        if let Some(h) = frame(buf, MAX_CONNECT)? {
            return Ok(Some(h));
        }
        if r.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn refuse(
    client: &mut (impl AsyncWrite + Unpin),
    code: ConnectReturnCode,
) -> Result<(), ConnError> {
    let mut out = BytesMut::new();
    let _ = ConnAck::new(code, false).write(&mut out);
    client.write_all(&out).await?;
    let _ = client.shutdown().await;
    Err(ConnError::Refused(code))
}

/// Relays one connection; `cert`: the fingerprint of the client
/// certificate presented over TLS, if any.
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut client: S,
    cert: Option<String>,
    mut slot: limits::Slot,
    shared: &Shared,
    shutdown: CancellationToken,
) -> Result<(), ConnError> {
    let limits = shared.limiter.limits().clone();
    let mut buf = BytesMut::with_capacity(1024);
    let connect_timeout = Duration::from_secs(limits.connect_timeout_secs);
    let header =
        match tokio::time::timeout(connect_timeout, read_connect(&mut client, &mut buf)).await {
            Err(_) => return Err(ConnError::Timeout(connect_timeout)),
            Ok(r) => match r? {
                Some(h) => h,
                None => return Ok(()),
            },
        };
    match protocol_level(&buf, header) {
        Some(4) => {}
        // MQTT 5 (or 3.1): answered before its properties are read.
        Some(_) => return refuse(&mut client, ConnectReturnCode::RefusedProtocolVersion).await,
        None => return Err(ConnError::Malformed("CONNECT")),
    }
    let bytes = buf.split_to(header.len()).freeze();
    let mut connect =
        Connect::read(header.fixed(), bytes).map_err(|_| ConnError::Malformed("CONNECT"))?;
    if let Some(fault) = connect_fault(&connect) {
        return Err(ConnError::Protocol(fault));
    }
    // The CONNECT is in: the connection is no longer half-open, and its
    // read buffer need not stay CONNECT-sized.
    slot.connected();
    let access = shared.access.borrow().clone();
    let authenticated = match &cert {
        // A node certificate: that node, no password (TLS only).
        Some(fp) => access.authenticate_cert(&connect, fp).map_err(|(code, why)| {
            shared.metrics.gate.tls.refused(why);
            if let Some(n) = shared.should_log(&format!("tls:{}", why.label())) {
                tracing::warn!(reason = why.label(), client_id = %for_log(&connect.client_id), suppressed = n, "MQTT over TLS refused: node certificate");
            }
            code
        }),
        None => access.authenticate(&connect),
    };
    let principal = match authenticated {
        Ok(p) => p,
        Err(code) => {
            shared.metrics.acl_denied("connect");
            let who = connect
                .login
                .as_ref()
                .map_or("anonymous".to_string(), |l| for_log(&l.username));
            if let Some(n) = shared.should_log(&format!("connect:{who}")) {
                tracing::warn!(user = %who, client_id = %for_log(&connect.client_id), ?code, suppressed = n, "MQTT login refused");
            }
            return refuse(&mut client, code).await;
        }
    };
    if let Some(will) = &connect.last_will {
        if !access.may_publish(&principal, &will.topic) {
            shared.metrics.acl_denied("connect");
            if let Some(n) = shared.should_log(&format!("will:{}", principal.label())) {
                tracing::warn!(user = %principal.label(), topic = %for_log(&will.topic), suppressed = n, "MQTT login refused: Last Will topic not allowed");
            }
            return refuse(&mut client, ConnectReturnCode::NotAuthorized).await;
        }
    }
    drop(access);
    // A client is held to its keep-alive, capped; "none" (0) is the cap.
    // The broker behind is given twice as long, so that the gate, which
    // counts why it closes, is the one that closes a silent client.
    let keep_alive = effective_keep_alive(connect.keep_alive, limits.max_keep_alive_secs);
    let idle = idle_timeout(keep_alive);
    connect.keep_alive = keep_alive.saturating_mul(2);
    buf = BytesMut::from(&buf[..]);

    // The Last Will, for the pipeline when the gate hands it messages.
    let will = connect
        .last_will
        .as_ref()
        .map(|w| (w.topic.clone(), w.message.clone()));
    let mut broker = TcpStream::connect(shared.upstream.addr).await?;
    broker.set_nodelay(true)?;
    connect.login = Some(Login::new(
        shared.upstream.username.clone(),
        shared.upstream.password.clone(),
    ));
    let mut out = BytesMut::new();
    connect
        .write(&mut out)
        .map_err(|_| ConnError::Malformed("CONNECT"))?;
    broker.write_all(&out).await?;

    let (mut client_r, client_w) = tokio::io::split(client);
    let (mut broker_r, mut broker_w) = broker.into_split();
    let client_w = tokio::sync::Mutex::new(client_w);
    let who = principal.label();

    let ingest = shared.upstream.ingest.clone();
    let will = will.filter(|_| ingest.is_some());
    let disconnected = std::sync::atomic::AtomicBool::new(false);

    // Broker → client: whole frames, so packets the gate writes itself
    // (acks of refused publishes, SUBACKs) never split one.
    let downstream = async {
        let mut buf = BytesMut::with_capacity(8192);
        loop {
            if broker_r.read_buf(&mut buf).await? == 0 {
                return Ok::<(), ConnError>(());
            }
            let mut complete = 0;
            let mut pubacks = false;
            while let Some(h) = frame(&buf[complete..], usize::MAX)? {
                pubacks |= ingest.is_some() && h.kind() == 4;
                complete += h.len();
            }
            if complete == 0 {
                continue;
            }
            let frames = buf.split_to(complete);
            if !pubacks {
                client_w.lock().await.write_all(&frames).await?;
                continue;
            }
            // The broker's PUBACKs for the node's QoS 1 publishes are not
            // passed on: the gate acknowledges those itself, once the
            // pipeline has committed them.
            let keep = without_pubacks(&frames)?;
            if !keep.is_empty() {
                client_w.lock().await.write_all(&keep).await?;
            }
        }
    };

    // Publishes handed to the pipeline are acknowledged here, in the order
    // the pipeline commits them (its order of arrival), several at a time.
    let (acks_tx, mut acks_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
    let acker = async {
        let mut out = BytesMut::new();
        while let Some(pkid) = acks_rx.recv().await {
            out.clear();
            let _ = PubAck::new(pkid).write(&mut out);
            while let Ok(pkid) = acks_rx.try_recv() {
                let _ = PubAck::new(pkid).write(&mut out);
            }
            client_w.lock().await.write_all(&out).await?;
        }
        std::future::pending::<Result<(), ConnError>>().await
    };

    // Client → broker: every PUBLISH and SUBSCRIBE checked.
    let upstream = async {
        // QoS 2 publishes the gate refused (and answered PUBREC for): their
        // PUBREL is answered here too, not sent to a broker that never saw them.
        let mut refused_qos2: HashSet<u16> = HashSet::new();
        loop {
            let mut forward = BytesMut::new();
            let mut reply = BytesMut::new();
            while let Some(h) = frame(&buf, MAX_PACKET)? {
                let bytes = buf.split_to(h.len()).freeze();
                match h.kind() {
                    1 => return Err(ConnError::Protocol("second CONNECT")),
                    3 => {
                        let p = Publish::read(h.fixed(), bytes.clone())
                            .map_err(|_| ConnError::Malformed("PUBLISH"))?;
                        if let Some(fault) = publish_topic_fault(&p.topic) {
                            return Err(ConnError::Protocol(fault));
                        }
                        // QoS 2 is not the contract's: a node's is refused
                        // like a publish outside its topics.
                        let node_qos2 =
                            p.qos == QoS::ExactlyOnce && principal != Principal::Gateway;
                        if node_qos2 || !shared.access.borrow().may_publish(&principal, &p.topic) {
                            refused_publish(shared, &who, &p, &mut reply, &mut refused_qos2);
                            if refused_qos2.len() > MAX_UNRELEASED_QOS2 {
                                return Err(ConnError::Qos2Unreleased);
                            }
                        } else if let Some(ingest) = &shared.upstream.ingest {
                            // QoS 2 (not the contract's) is handed over at
                            // once; the broker completes its handshake.
                            // The broker still routes it to any other
                            // subscriber (its PUBACK is dropped above).
                            forward.extend_from_slice(&bytes);
                            let ack = (p.qos == QoS::AtLeastOnce).then(|| {
                                let acks = acks_tx.clone();
                                let pkid = p.pkid;
                                Box::new(move || {
                                    // The connection may be gone: the node
                                    // sends it again on its next one.
                                    let _ = acks.send(pkid);
                                }) as crate::ingest::Ack
                            });
                            let msg = crate::ingest::Inbound {
                                topic: p.topic,
                                payload: p.payload,
                                arrived_ms: crate::domain::time::now_ms(),
                                ack,
                            };
                            if ingest.send(msg).await.is_err() {
                                return Ok(()); // the pipeline has stopped
                            }
                        } else {
                            forward.extend_from_slice(&bytes);
                        }
                    }
                    6 if refused_qos2.contains(&pubrel_pkid(&bytes, h)) => {
                        let pkid = pubrel_pkid(&bytes, h);
                        refused_qos2.remove(&pkid);
                        let _ = PubComp::new(pkid).write(&mut reply);
                    }
                    8 => {
                        let s = Subscribe::read(h.fixed(), bytes.clone())
                            .map_err(|_| ConnError::Malformed("SUBSCRIBE"))?;
                        let access = shared.access.borrow().clone();
                        if s.filters
                            .iter()
                            .all(|f| access.may_subscribe(&principal, &f.path))
                        {
                            forward.extend_from_slice(&bytes);
                        } else {
                            shared.metrics.acl_denied("subscribe");
                            if let Some(n) = shared.should_log(&format!("subscribe:{who}")) {
                                let filters: Vec<String> =
                                    s.filters.iter().take(4).map(|f| for_log(&f.path)).collect();
                                tracing::warn!(user = %who, ?filters, suppressed = n, "MQTT subscription refused by the topic ACL");
                            }
                            let codes = vec![SubscribeReasonCode::Failure; s.filters.len()];
                            let _ = SubAck::new(s.pkid, codes).write(&mut reply);
                        }
                    }
                    14 => {
                        disconnected.store(true, std::sync::atomic::Ordering::Relaxed);
                        forward.extend_from_slice(&bytes);
                    }
                    _ => forward.extend_from_slice(&bytes),
                }
            }
            if !forward.is_empty() {
                broker_w.write_all(&forward).await?;
            }
            if !reply.is_empty() {
                client_w.lock().await.write_all(&reply).await?;
            }
            match tokio::time::timeout(idle, client_r.read_buf(&mut buf)).await {
                Err(_) => return Err(ConnError::Idle(idle)),
                Ok(n) => {
                    if n? == 0 {
                        return Ok(());
                    }
                }
            }
        }
    };

    // A revoked or rotated credential closes the connection.
    let mut access_rx = shared.access.clone();
    let revoked = async {
        loop {
            if access_rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if !access_rx.borrow_and_update().still_valid(&principal) {
                return;
            }
        }
    };

    let result = tokio::select! {
        r = downstream => r,
        r = upstream => r,
        r = acker => r,
        _ = revoked => {
            tracing::info!(user = %who, "MQTT connection closed: credential revoked or rotated");
            Err(ConnError::Revoked)
        }
        _ = shutdown.cancelled() => Ok(()),
    };
    let mut w = client_w.lock().await;
    let _ = w.shutdown().await;
    let _ = broker_w.shutdown().await;
    drop(w);
    // A connection that ends without DISCONNECT (dropped, timed out,
    // refused later, revoked) publishes its Last Will, as the broker does
    // for its other subscribers; the gateway's own share goes to the
    // pipeline from here.
    if let (Some(ingest), Some((topic, payload))) = (&ingest, will) {
        if !disconnected.load(std::sync::atomic::Ordering::Relaxed) && !shutdown.is_cancelled() {
            let _ = ingest
                .send(crate::ingest::Inbound {
                    topic,
                    payload,
                    arrived_ms: crate::domain::time::now_ms(),
                    ack: None,
                })
                .await;
        }
    }
    result
}

/// A publish the topic ACL refused: dropped and counted, and answered as
/// MQTT 3.1.1 allows (it has no negative acknowledgement), so the node
/// does not send it again forever.
fn refused_publish(
    shared: &Shared,
    who: &str,
    p: &Publish,
    reply: &mut BytesMut,
    refused_qos2: &mut HashSet<u16>,
) {
    shared.metrics.acl_denied("publish");
    if let Some(n) = shared.should_log(&format!("publish:{who}")) {
        tracing::warn!(user = %who, topic = %for_log(&p.topic), qos = ?p.qos, suppressed = n, "MQTT publish refused by the topic ACL or its QoS (dropped, counted; further ones logged once a minute)");
    }
    match p.qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => {
            let _ = PubAck::new(p.pkid).write(reply);
        }
        QoS::ExactlyOnce => {
            refused_qos2.insert(p.pkid);
            let _ = PubRec::new(p.pkid).write(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::access::tests::{access, connect};
    use super::frame::pubrel_pkid;
    use super::*;
    use rumqttc::mqttbytes::v4::PubRel;

    /// Garbage never panics the framer or the packet parsers the gate uses.
    #[test]
    fn garbage_sweep() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut valid = BytesMut::new();
        let mut c = connect("home_a.n02", Some(("home_a.n02", "pw")));
        c.last_will = Some(rumqttc::mqttbytes::v4::LastWill::new(
            "fire/v1/home_a/n02/status",
            "{}",
            QoS::AtLeastOnce,
            true,
        ));
        c.write(&mut valid).unwrap();
        let mut p = Publish::new("fire/v1/home_a/n02/telemetry", QoS::AtLeastOnce, "{}");
        p.pkid = 1;
        p.write(&mut valid).unwrap();
        let mut s = Subscribe::new("fire/v1/home_a/n02/cmd", QoS::AtLeastOnce);
        s.pkid = 2;
        s.write(&mut valid).unwrap();
        PubRel::new(3).write(&mut valid).unwrap();
        let a = access(true);
        let anon = Principal::Node {
            site: "home_a".into(),
            node: "n01".into(),
            hash: String::new(),
            cert: None,
        };
        for round in 0..9_000 {
            let mut bytes = valid.to_vec();
            match round % 3 {
                0 => {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] ^= 1 << (next() % 8);
                }
                1 => bytes.truncate((next() as usize) % bytes.len()),
                _ => {
                    let n = (next() % 64) as usize;
                    bytes = (0..n).map(|_| next() as u8).collect();
                    if let Some(b) = bytes.first_mut() {
                        *b = (*b & 0x0f) | [0x10, 0x30, 0x32, 0x82][(next() % 4) as usize];
                    }
                }
            }
            let mut rest = &bytes[..];
            while let Ok(Some(h)) = frame(rest, MAX_PACKET) {
                let b = bytes::Bytes::copy_from_slice(&rest[..h.len()]);
                match h.kind() {
                    1 => {
                        let _ = protocol_level(&b, h);
                        if let Ok(c) = Connect::read(h.fixed(), b) {
                            let _ = connect_fault(&c);
                            let _ = a.authenticate(&c);
                        }
                    }
                    3 => {
                        if let Ok(p) = Publish::read(h.fixed(), b) {
                            let _ = publish_topic_fault(&p.topic);
                            let _ = a.may_publish(&anon, &p.topic);
                        }
                    }
                    8 => {
                        if let Ok(s) = Subscribe::read(h.fixed(), b) {
                            for f in &s.filters {
                                let _ = a.may_subscribe(&anon, &f.path);
                            }
                        }
                    }
                    6 => {
                        let _ = pubrel_pkid(&b, h);
                    }
                    _ => {}
                }
                rest = &rest[h.len()..];
            }
        }
    }
}
