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
//! Anonymous logins (no username, or the username `{site}.{node}` of a node
//! that has no credentials, as the firmware sends) keep the behaviour from
//! before registration for nodes of the configuration file that have no
//! credentials, while `mqtt.anonymous_config_nodes` is on (the default, for
//! the demo and existing installations): they may publish and subscribe as
//! such nodes only. A node that has credentials — registered, or a node of
//! the file given some with `gateway node rotate` — must use them.
//!
//! The pure parts — framing, the CONNECT check, the ACL — are functions of
//! their inputs, tested without sockets; the relay is the thin shell.

use crate::config::Config;
use crate::metrics::{inc, Metrics};
use crate::registry::Registry;
use bytes::{Buf, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Login, PubAck, PubComp, PubRec, Publish, SubAck,
    Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{FixedHeader, Protocol, QoS};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wire::{Topic, TopicKind};

/// Largest packet relayed: the embedded broker's 256 KiB payload limit plus
/// room for the topic and headers. Larger ones close the connection.
pub const MAX_PACKET: usize = 256 * 1024 + 1024;
/// How long a new connection has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A refused publish or subscription is logged at most once per this
/// interval per login (every one is counted).
const LOG_INTERVAL: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- framing

/// A complete frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The fixed header's first byte (type and flags).
    pub byte1: u8,
    /// Bytes of the fixed header (1 + the remaining length's 1–4 bytes).
    pub header_len: usize,
    /// Bytes after the fixed header.
    pub remaining: usize,
}

impl FrameHeader {
    /// The whole frame's length.
    pub fn len(&self) -> usize {
        self.header_len + self.remaining
    }

    /// Always false: a frame has at least its fixed header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The packet type (1 = CONNECT … 14 = DISCONNECT).
    pub fn kind(&self) -> u8 {
        self.byte1 >> 4
    }

    fn fixed(&self) -> FixedHeader {
        FixedHeader::new(self.byte1, self.header_len - 1, self.remaining)
    }
}

/// Why the bytes cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("remaining length longer than 4 bytes")]
    BadLength,
    #[error("packet of {0} bytes over the limit")]
    TooLarge(usize),
    #[error("bytes after the last whole packet")]
    Truncated,
}

/// Frames the packet at the start of `buf` by its fixed header: `Ok(None)`
/// until the whole packet is there. Never reads past `buf`, never panics.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<FrameHeader>, FrameError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    let mut i = 1;
    loop {
        if i > 4 {
            return Err(FrameError::BadLength);
        }
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let header = FrameHeader {
        byte1,
        header_len: i,
        remaining,
    };
    if header.len() > max {
        return Err(FrameError::TooLarge(header.len()));
    }
    Ok((buf.len() >= header.len()).then_some(header))
}

// ------------------------------------------------------------ who may what

/// Who a connection is, once its CONNECT is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The configured `mqtt.username`/`mqtt.password`: everything.
    Gateway,
    /// A node with its own credentials, and the hash it logged in with.
    Node {
        site: String,
        node: String,
        hash: String,
    },
    /// No username: nodes of the file without credentials, if allowed.
    Anonymous,
}

impl Principal {
    fn label(&self) -> String {
        match self {
            Principal::Gateway => "gateway".into(),
            Principal::Node { site, node, .. } => crate::mosquitto::node_username(site, node),
            Principal::Anonymous => "anonymous".into(),
        }
    }
}

/// Everything the gate needs to decide: built from the configuration in
/// force and the registry, replaced whenever either changes.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The gateway's own login (username, password), if configured.
    pub gateway: Option<(String, String)>,
    /// Node credentials by username: (site, node, `$7$` hash); revoked ones absent.
    pub nodes: HashMap<String, (String, String, String)>,
    /// Usernames that exist but are revoked (refused with "not authorised").
    pub revoked: HashSet<String>,
    /// Nodes an anonymous login may speak for.
    pub anonymous: HashSet<(String, String)>,
    /// Nodes that have credentials (even revoked): never anonymous.
    pub anonymous_blocked: HashSet<(String, String)>,
    /// Anonymous logins may speak for any node without credentials
    /// (`accept_unknown_nodes` with anonymous logins on).
    pub anonymous_any: bool,
}

impl Access {
    /// From the configuration in force (file + registry) and the registry.
    pub fn build(
        config: &Config,
        reg: &Registry,
        gateway: Option<(String, String)>,
        anonymous_config_nodes: bool,
    ) -> Access {
        let mut a = Access {
            gateway,
            anonymous_any: anonymous_config_nodes && config.accept_unknown_nodes,
            ..Default::default()
        };
        let mut with_credentials = HashSet::new();
        for c in &reg.credentials {
            with_credentials.insert((c.site.clone(), c.node.clone()));
            if c.revoked_at.is_some() || c.password_hash.is_empty() {
                a.revoked.insert(c.username.clone());
            } else {
                a.nodes.insert(
                    c.username.clone(),
                    (c.site.clone(), c.node.clone(), c.password_hash.clone()),
                );
            }
        }
        if anonymous_config_nodes {
            for s in &config.sites {
                for n in &s.nodes {
                    let key = (s.id.clone(), n.id.clone());
                    if !with_credentials.contains(&key) {
                        a.anonymous.insert(key);
                    }
                }
            }
        }
        // Nodes with credentials, even revoked, are never anonymous.
        a.anonymous_blocked = with_credentials;
        a
    }

    /// Checks a CONNECT: who it is, or the CONNACK code refusing it
    /// (4 bad username or password, 5 not authorised).
    pub fn authenticate(&self, c: &Connect) -> Result<Principal, ConnectReturnCode> {
        let Some(login) = c.login.as_ref().filter(|l| !l.username.is_empty()) else {
            if c.login.is_some() {
                // A password without a username.
                return Err(ConnectReturnCode::BadUserNamePassword);
            }
            return if self.anonymous.is_empty() && !self.anonymous_any {
                Err(ConnectReturnCode::NotAuthorized)
            } else {
                Ok(Principal::Anonymous)
            };
        };
        if let Some((user, password)) = &self.gateway {
            if &login.username == user {
                return if crate::credentials::constant_time_eq(
                    login.password.as_bytes(),
                    password.as_bytes(),
                ) {
                    Ok(Principal::Gateway)
                } else {
                    Err(ConnectReturnCode::BadUserNamePassword)
                };
            }
        }
        if self.revoked.contains(&login.username) {
            return Err(ConnectReturnCode::NotAuthorized);
        }
        let Some((site, node, hash)) = self.nodes.get(&login.username) else {
            // A node of the file without credentials that sends its
            // username anyway (the firmware always does): as anonymous, it
            // may speak for itself while anonymous logins are allowed.
            if let Some((site, node)) = login.username.split_once('.') {
                if self
                    .anonymous
                    .contains(&(site.to_string(), node.to_string()))
                    && c.client_id == login.username
                {
                    return Ok(Principal::Node {
                        site: site.to_string(),
                        node: node.to_string(),
                        hash: String::new(),
                    });
                }
            }
            // An unknown username costs what a wrong password does, so the
            // time to CONNACK does not tell which usernames exist.
            crate::credentials::spend_verify(&login.password);
            return Err(ConnectReturnCode::BadUserNamePassword);
        };
        if !crate::credentials::verify(&login.password, hash) {
            return Err(ConnectReturnCode::BadUserNamePassword);
        }
        if c.client_id != login.username {
            return Err(ConnectReturnCode::NotAuthorized);
        }
        Ok(Principal::Node {
            site: site.clone(),
            node: node.clone(),
            hash: hash.clone(),
        })
    }

    /// Whether a logged-in connection may stay: a node's credential must
    /// still be the one it logged in with.
    pub fn still_valid(&self, p: &Principal) -> bool {
        match p {
            // Logged in without credentials: valid until it is given some.
            Principal::Node { site, node, hash } if hash.is_empty() => {
                self.anonymous.contains(&(site.clone(), node.clone()))
            }
            Principal::Node { site, node, hash } => self
                .nodes
                .get(&crate::mosquitto::node_username(site, node))
                .is_some_and(|(_, _, h)| h == hash),
            Principal::Gateway | Principal::Anonymous => true,
        }
    }

    fn anonymous_may(&self, site: &str, node: &str) -> bool {
        let key = (site.to_string(), node.to_string());
        self.anonymous.contains(&key)
            || (self.anonymous_any && !self.anonymous_blocked.contains(&key))
    }

    /// Whether `p` may publish to `topic`.
    pub fn may_publish(&self, p: &Principal, topic: &str) -> bool {
        if *p == Principal::Gateway {
            return true;
        }
        let Ok(t) = Topic::parse(topic) else {
            return false;
        };
        if t.kind == TopicKind::Cmd {
            return false;
        }
        match p {
            Principal::Node { site, node, .. } => {
                t.site.as_str() == site && t.node.as_str() == node
            }
            Principal::Anonymous => self.anonymous_may(&t.site, &t.node),
            Principal::Gateway => true,
        }
    }

    /// Whether `p` may subscribe to `filter`: a node only to its own `cmd`.
    pub fn may_subscribe(&self, p: &Principal, filter: &str) -> bool {
        if *p == Principal::Gateway {
            return true;
        }
        let Ok(t) = Topic::parse(filter) else {
            return false;
        };
        if t.kind != TopicKind::Cmd {
            return false;
        }
        match p {
            Principal::Node { site, node, .. } => {
                t.site.as_str() == site && t.node.as_str() == node
            }
            Principal::Anonymous => self.anonymous_may(&t.site, &t.node),
            Principal::Gateway => true,
        }
    }
}

// ------------------------------------------------------------------ relay

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
    pub ingest: Option<tokio::sync::mpsc::Sender<crate::pipeline::Inbound>>,
}

/// The gate's shared state.
struct Shared {
    access: watch::Receiver<Arc<Access>>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    last_logged: Mutex<HashMap<String, Instant>>,
}

impl Shared {
    /// Whether to log a refusal for `who` now (once per [`LOG_INTERVAL`]).
    fn should_log(&self, who: &str) -> bool {
        let Ok(mut last) = self.last_logged.lock() else {
            return false;
        };
        let now = Instant::now();
        match last.get(who) {
            Some(t) if now.duration_since(*t) < LOG_INTERVAL => false,
            _ => {
                last.insert(who.to_string(), now);
                true
            }
        }
    }
}

/// Accepts connections on `listener` until `shutdown`, each relayed to
/// `upstream` under the rules of the latest [`Access`].
pub async fn run(
    listener: TcpListener,
    access: watch::Receiver<Arc<Access>>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        access,
        upstream,
        metrics,
        last_logged: Mutex::new(HashMap::new()),
    });
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &shared, shutdown).await {
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
    #[error("refused: {0:?}")]
    Refused(ConnectReturnCode),
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error("credential revoked or rotated")]
    Revoked,
}

/// Reads until a whole frame is at the start of `buf`; `None` at a clean EOF.
async fn read_frame(
    r: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
) -> Result<Option<FrameHeader>, ConnError> {
    loop {
        if let Some(h) = frame(buf, MAX_PACKET)? {
            return Ok(Some(h));
        }
        if r.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn refuse(client: &mut TcpStream, code: ConnectReturnCode) -> Result<(), ConnError> {
    let mut out = BytesMut::new();
    let _ = ConnAck::new(code, false).write(&mut out);
    client.write_all(&out).await?;
    let _ = client.shutdown().await;
    Err(ConnError::Refused(code))
}

async fn serve(
    mut client: TcpStream,
    shared: &Shared,
    shutdown: CancellationToken,
) -> Result<(), ConnError> {
    client.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(4096);
    let header =
        match tokio::time::timeout(CONNECT_TIMEOUT, read_frame(&mut client, &mut buf)).await {
            Err(_) => return Err(ConnError::Timeout(CONNECT_TIMEOUT)),
            Ok(r) => match r? {
                Some(h) => h,
                None => return Ok(()),
            },
        };
    if header.kind() != 1 {
        inc(&shared.metrics.mqtt_gate_malformed);
        return Err(ConnError::Protocol("first packet is not CONNECT"));
    }
    let bytes = buf.split_to(header.len()).freeze();
    let mut connect = match Connect::read(header.fixed(), bytes) {
        Ok(c) => c,
        Err(_) => {
            inc(&shared.metrics.mqtt_gate_malformed);
            return Err(ConnError::Malformed("CONNECT"));
        }
    };
    if connect.protocol != Protocol::V4 {
        return refuse(&mut client, ConnectReturnCode::RefusedProtocolVersion).await;
    }
    let access = shared.access.borrow().clone();
    let principal = match access.authenticate(&connect) {
        Ok(p) => p,
        Err(code) => {
            shared.metrics.acl_denied("connect");
            let who = connect
                .login
                .as_ref()
                .map_or("anonymous".to_string(), |l| l.username.clone());
            if shared.should_log(&format!("connect:{who}")) {
                tracing::warn!(user = %who, client_id = %connect.client_id, ?code, "MQTT login refused");
            }
            return refuse(&mut client, code).await;
        }
    };
    if let Some(will) = &connect.last_will {
        if !access.may_publish(&principal, &will.topic) {
            shared.metrics.acl_denied("connect");
            if shared.should_log(&format!("will:{}", principal.label())) {
                tracing::warn!(user = %principal.label(), topic = %will.topic, "MQTT login refused: Last Will topic not allowed");
            }
            return refuse(&mut client, ConnectReturnCode::NotAuthorized).await;
        }
    }
    drop(access);

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

    let (mut client_r, client_w) = client.into_split();
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
                        let p = Publish::read(h.fixed(), bytes.clone()).map_err(|_| {
                            inc(&shared.metrics.mqtt_gate_malformed);
                            ConnError::Malformed("PUBLISH")
                        })?;
                        if !shared.access.borrow().may_publish(&principal, &p.topic) {
                            refused_publish(shared, &who, &p, &mut reply, &mut refused_qos2);
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
                                }) as crate::pipeline::Ack
                            });
                            let msg = crate::pipeline::Inbound {
                                topic: p.topic,
                                payload: p.payload,
                                arrived_ms: crate::time::now_ms(),
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
                        let s = Subscribe::read(h.fixed(), bytes.clone()).map_err(|_| {
                            inc(&shared.metrics.mqtt_gate_malformed);
                            ConnError::Malformed("SUBSCRIBE")
                        })?;
                        let access = shared.access.borrow().clone();
                        if s.filters
                            .iter()
                            .all(|f| access.may_subscribe(&principal, &f.path))
                        {
                            forward.extend_from_slice(&bytes);
                        } else {
                            shared.metrics.acl_denied("subscribe");
                            if shared.should_log(&format!("subscribe:{who}")) {
                                let filters: Vec<&str> =
                                    s.filters.iter().map(|f| f.path.as_str()).collect();
                                tracing::warn!(user = %who, ?filters, "MQTT subscription refused by the topic ACL");
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
            if client_r.read_buf(&mut buf).await? == 0 {
                return Ok(());
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
                .send(crate::pipeline::Inbound {
                    topic,
                    payload,
                    arrived_ms: crate::time::now_ms(),
                    ack: None,
                })
                .await;
        }
    }
    result
}

/// Whole frames less every PUBACK, in order; an error for bytes that are
/// not whole frames. Pure.
pub fn without_pubacks(frames: &[u8]) -> Result<BytesMut, FrameError> {
    let mut keep = BytesMut::with_capacity(frames.len());
    let mut rest = frames;
    while !rest.is_empty() {
        let Some(h) = frame(rest, usize::MAX)? else {
            return Err(FrameError::Truncated);
        };
        if h.kind() != 4 {
            keep.extend_from_slice(&rest[..h.len()]);
        }
        rest = &rest[h.len()..];
    }
    Ok(keep)
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
    if shared.should_log(&format!("publish:{who}")) {
        tracing::warn!(user = %who, topic = %p.topic, "MQTT publish refused by the topic ACL (dropped, counted; further ones logged once a minute)");
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

/// The packet id of a PUBREL frame (0 if it is too short).
fn pubrel_pkid(bytes: &bytes::Bytes, h: FrameHeader) -> u16 {
    let mut b = bytes.slice(h.header_len.min(bytes.len())..);
    if b.remaining() >= 2 {
        b.get_u16()
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Credential, Registry};
    use rumqttc::mqttbytes::v4::PubRel;

    fn connect(client_id: &str, login: Option<(&str, &str)>) -> Connect {
        let mut c = Connect::new(client_id);
        c.login = login.map(|(u, p)| Login::new(u, p));
        c
    }

    fn access(anonymous: bool) -> Access {
        let config = Config::from_toml(
            "[[sites]]\nid = \"home_a\"\nname = \"甲\"\n\
             [[sites.nodes]]\nid = \"n01\"\n[[sites.nodes]]\nid = \"n02\"\n[[sites.nodes]]\nid = \"n03\"\n",
        )
        .unwrap();
        let cred = |node: &str, pw: &str, revoked: bool| Credential {
            username: format!("home_a.{node}"),
            site: "home_a".into(),
            node: node.into(),
            password_hash: crate::credentials::hash_with(pw, b"saltsaltsalt", 101),
            created_at: 1,
            rotated_at: 1,
            revoked_at: revoked.then_some(2),
        };
        let reg = Registry {
            version: 1,
            credentials: vec![cred("n02", "pw-n02", false), cred("n03", "pw-n03", true)],
            ..Default::default()
        };
        Access::build(
            &config,
            &reg,
            Some(("gw".into(), "gw-secret".into())),
            anonymous,
        )
    }

    #[test]
    fn connect_checks() {
        let a = access(true);
        let n02 = a
            .authenticate(&connect("home_a.n02", Some(("home_a.n02", "pw-n02"))))
            .unwrap();
        assert!(matches!(&n02, Principal::Node { node, .. } if node == "n02"));
        use ConnectReturnCode::*;
        for (c, code) in [
            (
                connect("home_a.n02", Some(("home_a.n02", "wrong"))),
                BadUserNamePassword,
            ),
            (
                connect("other", Some(("home_a.n02", "pw-n02"))),
                NotAuthorized,
            ),
            (
                connect("home_a.n03", Some(("home_a.n03", "pw-n03"))),
                NotAuthorized,
            ),
            (connect("x", Some(("nobody", "pw"))), BadUserNamePassword),
            (connect("gw", Some(("gw", "nope"))), BadUserNamePassword),
            (
                connect("x", Some(("", "only-a-password"))),
                BadUserNamePassword,
            ),
        ] {
            assert_eq!(a.authenticate(&c), Err(code), "{c:?}");
        }
        assert_eq!(
            a.authenticate(&connect("gw-client", Some(("gw", "gw-secret")))),
            Ok(Principal::Gateway)
        );
        assert_eq!(
            a.authenticate(&connect("anything", None)),
            Ok(Principal::Anonymous)
        );
        assert_eq!(
            access(false).authenticate(&connect("anything", None)),
            Err(NotAuthorized)
        );
        // A node of the file without credentials, sending its username as
        // the firmware does: itself only, while anonymous logins are allowed.
        let n01 = a
            .authenticate(&connect("home_a.n01", Some(("home_a.n01", "whatever"))))
            .unwrap();
        assert!(a.may_publish(&n01, "fire/v1/home_a/n01/telemetry"));
        assert!(!a.may_publish(&n01, "fire/v1/home_a/n02/telemetry"));
        assert!(a.still_valid(&n01));
        let mut given_credentials = a.clone();
        given_credentials
            .anonymous
            .remove(&("home_a".to_string(), "n01".to_string()));
        assert!(!given_credentials.still_valid(&n01));
        assert_eq!(
            access(false).authenticate(&connect("home_a.n01", Some(("home_a.n01", "x")))),
            Err(BadUserNamePassword)
        );
    }

    #[test]
    fn a_node_publishes_only_under_its_own_prefix() {
        let a = access(true);
        let n02 = Principal::Node {
            site: "home_a".into(),
            node: "n02".into(),
            hash: String::new(),
        };
        for ok in [
            "fire/v1/home_a/n02/telemetry",
            "fire/v1/home_a/n02/status",
            "fire/v1/home_a/n02/event",
            "fire/v1/home_a/n02/cmd/ack",
        ] {
            assert!(a.may_publish(&n02, ok), "{ok}");
        }
        for no in [
            "fire/v1/home_a/n01/telemetry",
            "fire/v1/home_b/n02/telemetry",
            "fire/v1/home_a/n02/cmd",
            "fire/v1/home_a/n02/telemetry/x",
            "fire/v1/home_a/+/telemetry",
            "fire/v1/home_a/n02",
            "other/topic",
            "",
        ] {
            assert!(!a.may_publish(&n02, no), "{no}");
        }
        assert!(a.may_subscribe(&n02, "fire/v1/home_a/n02/cmd"));
        for no in [
            "fire/v1/home_a/n01/cmd",
            "fire/v1/home_a/+/cmd",
            "fire/v1/#",
            "#",
            "fire/v1/home_a/n02/telemetry",
        ] {
            assert!(!a.may_subscribe(&n02, no), "{no}");
        }
        // Anonymous: only file nodes without credentials (n01), never n02
        // (has credentials) nor n03 (revoked ones).
        let anon = Principal::Anonymous;
        assert!(a.may_publish(&anon, "fire/v1/home_a/n01/telemetry"));
        assert!(a.may_subscribe(&anon, "fire/v1/home_a/n01/cmd"));
        assert!(!a.may_publish(&anon, "fire/v1/home_a/n02/telemetry"));
        assert!(!a.may_publish(&anon, "fire/v1/home_a/n03/telemetry"));
        assert!(!a.may_publish(&anon, "fire/v1/home_a/n09/telemetry"));
        assert!(a.may_publish(&Principal::Gateway, "fire/v1/home_a/n01/cmd"));
        assert!(a.may_subscribe(&Principal::Gateway, "fire/v1/#"));
    }

    #[test]
    fn a_rotated_or_revoked_credential_invalidates_its_connection() {
        let a = access(true);
        let p = a
            .authenticate(&connect("home_a.n02", Some(("home_a.n02", "pw-n02"))))
            .unwrap();
        assert!(a.still_valid(&p));
        let mut rotated = a.clone();
        rotated.nodes.get_mut("home_a.n02").unwrap().2 =
            crate::credentials::hash_with("new", b"saltsaltsalt", 101);
        assert!(!rotated.still_valid(&p));
        let mut revoked = a.clone();
        revoked.nodes.remove("home_a.n02");
        assert!(!revoked.still_valid(&p));
    }

    #[test]
    fn framing() {
        assert_eq!(frame(&[], 100), Ok(None));
        assert_eq!(frame(&[0x30], 100), Ok(None));
        assert_eq!(
            frame(&[0xc0, 0x00], 100),
            Ok(Some(FrameHeader {
                byte1: 0xc0,
                header_len: 2,
                remaining: 0
            }))
        );
        assert_eq!(frame(&[0x30, 0x03, 1, 2], 100), Ok(None));
        assert_eq!(
            frame(&[0x30, 0x03, 1, 2, 3, 9], 100)
                .unwrap()
                .unwrap()
                .len(),
            5
        );
        // 321 = 0xC1 0x02.
        let h = frame(&[0x30, 0xc1, 0x02], 1000).unwrap();
        assert_eq!(h, None);
        assert_eq!(
            frame(&[0x30, 0xc1, 0x02], 100),
            Err(FrameError::TooLarge(324))
        );
        assert_eq!(
            frame(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX),
            Err(FrameError::BadLength)
        );
    }

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
                        if let Ok(c) = Connect::read(h.fixed(), b) {
                            let _ = a.authenticate(&c);
                        }
                    }
                    3 => {
                        if let Ok(p) = Publish::read(h.fixed(), b) {
                            let _ = a.may_publish(&Principal::Anonymous, &p.topic);
                        }
                    }
                    8 => {
                        if let Ok(s) = Subscribe::read(h.fixed(), b) {
                            for f in &s.filters {
                                let _ = a.may_subscribe(&Principal::Anonymous, &f.path);
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
