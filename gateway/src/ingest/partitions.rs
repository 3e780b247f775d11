//! The ingest partitions on RabbitMQ (issue 16): every replica consumes
//! every partition queue over AMQP 0-9-1 (`lapin`), and RabbitMQ makes one
//! consumer per queue active (`x-single-active-consumer`), moving it to
//! another replica's consumer when the active one's connection dies. All
//! messages of a site go to one partition queue ([`super::rabbitmq`]'s
//! bindings), so one replica at a time handles a site, in order.
//!
//! AMQP does not tell a consumer that it became active: the first delivery
//! on a partition's consumer since it subscribed is the sign
//! ([`Delivery::Activated`], sent before that message). A lost connection
//! loses every partition at once ([`Delivery::Lost`]): the deliveries not
//! acknowledged on it go back to their queues, for whichever consumer is
//! active next, and acknowledgements of them can no longer be sent.
//!
//! The topology (exchanges, partition queues, the site bindings) is
//! declared here too, with the same arguments as `gateway rabbitmq-sync`
//! and the shipped definitions: declaring it again changes nothing.

use super::rabbitmq::{
    partition_of, partition_queue, INGEST_EXCHANGE, MQTT_EXCHANGE, UNKNOWN_EXCHANGE,
};
use super::Inbound;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What the partition consumers hand the replica.
pub enum Delivery {
    /// This replica's consumer on the partition is now the active one:
    /// take the partition (fence) and load its state before its messages.
    Activated(u32),
    /// A message of the partition, acknowledged through its `ack`.
    Message(u32, Inbound),
    /// A console command another replica forwarded to the partition's
    /// holder ([`crate::replica::forward`]).
    Command(u32, Incoming),
    /// Subscribed to every partition (on a new connection): this replica
    /// is one of those a partition can go to.
    Connected,
    /// The connection to RabbitMQ is gone, and every partition with it.
    Lost,
}

/// The AMQP `type` of a console command another replica forwarded
/// (`crate::replica::forward`).
pub const COMMAND_TYPE: &str = "fire.command.v1";

/// A forwarded command as the holder's partition consumer received it.
pub struct Incoming {
    pub body: Vec<u8>,
    pub user_id: Option<String>,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    /// The partition's channel: the answer goes out on it, then the ack.
    pub channel: Channel,
    pub acker: lapin::Acker,
}

impl Incoming {
    /// Whether a delivery is a forwarded command (`crate::replica::forward`).
    pub fn is_command(d: &lapin::message::Delivery) -> bool {
        d.exchange.as_str().is_empty()
            && d.properties.kind().as_ref().map(ShortString::as_str) == Some(COMMAND_TYPE)
    }

    pub fn of(d: lapin::message::Delivery, channel: Channel) -> Incoming {
        let s = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_string());
        Incoming {
            user_id: s(d.properties.user_id()),
            reply_to: s(d.properties.reply_to()),
            correlation_id: s(d.properties.correlation_id()),
            body: d.data,
            channel,
            acker: d.acker,
        }
    }

    /// Sends the answer to the forwarding replica, then acknowledges the
    /// command (a holder that dies before this leaves it to the next one).
    pub async fn answer(self, reply: Option<Vec<u8>>) {
        if let (Some(body), Some(to)) = (reply, self.reply_to.as_deref()) {
            let mut props = BasicProperties::default().with_content_type("application/json".into());
            if let Some(id) = &self.correlation_id {
                props = props.with_correlation_id(id.as_str().into());
            }
            if let Err(e) = self
                .channel
                .basic_publish(
                    "".into(),
                    to.into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
            {
                tracing::warn!(error = %e, "cannot answer a forwarded command");
            }
        }
        let _ = self.acker.ack(BasicAckOptions::default()).await;
    }
}

/// How the replica reaches RabbitMQ.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `amqp://user:password@host:5672/%2f`
    pub url: String,
    /// This replica's name: the consumers' tags (`{replica}.p07`).
    pub replica: String,
    /// Unacknowledged deliveries per partition (about one batch).
    pub prefetch: u16,
    pub partitions: u32,
}

/// The routing key of a message from the MQTT plugin back into its MQTT
/// topic (`fire.v1.home_a.n01.cmd.ack` → `fire/v1/home_a/n01/cmd/ack`):
/// ids never contain a dot, so the mapping is exact.
pub fn topic_of(routing_key: &str) -> String {
    routing_key.replace('.', "/")
}

fn durable() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        internal: true,
        ..Default::default()
    }
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// Declares the ingest topology (see [`super::rabbitmq::topology_definitions`],
/// which is the same as definitions) with a binding per site in `sites`.
pub async fn declare(ch: &Channel, partitions: u32, sites: &[String]) -> lapin::Result<()> {
    ch.exchange_declare(
        UNKNOWN_EXCHANGE.into(),
        ExchangeKind::Fanout,
        durable(),
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        INGEST_EXCHANGE.into(),
        ExchangeKind::Topic,
        durable(),
        args(&[(
            "alternate-exchange",
            AMQPValue::LongString(UNKNOWN_EXCHANGE.into()),
        )]),
    )
    .await?;
    let quorum = || AMQPValue::LongString("quorum".into());
    let queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(
        UNKNOWN_EXCHANGE.into(),
        queue,
        args(&[("x-queue-type", quorum())]),
    )
    .await?;
    ch.queue_bind(
        UNKNOWN_EXCHANGE.into(),
        UNKNOWN_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    for kind in ["telemetry", "status", "event", "cmd.ack"] {
        ch.exchange_bind(
            INGEST_EXCHANGE.into(),
            MQTT_EXCHANGE.into(),
            format!("fire.v1.*.*.{kind}").as_str().into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    for p in 0..partitions {
        ch.queue_declare(
            partition_queue(p).as_str().into(),
            queue,
            args(&[
                ("x-queue-type", quorum()),
                ("x-single-active-consumer", AMQPValue::Boolean(true)),
            ]),
        )
        .await?;
    }
    bind_sites(ch, partitions, sites).await
}

/// Binds each site's messages to its partition (idempotent).
pub async fn bind_sites(ch: &Channel, partitions: u32, sites: &[String]) -> lapin::Result<()> {
    for site in sites {
        ch.queue_bind(
            partition_queue(partition_of(site, partitions))
                .as_str()
                .into(),
            INGEST_EXCHANGE.into(),
            format!("fire.v1.{site}.#").as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

/// Subscribes to partition `p` on a channel of its own.
async fn subscribe(
    conn: &Arc<Connection>,
    s: &Settings,
    p: u32,
) -> lapin::Result<(Channel, lapin::Consumer)> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(s.prefetch, BasicQosOptions::default()).await?;
    let tag = format!("{}.p{p:02}", s.replica);
    let consumer = ch
        .basic_consume(
            partition_queue(p).as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((ch, consumer))
}

/// Consumes partition `p` until the connection ends (or `tx` is closed).
/// On a request in `release` (the replica has stopped the partition's
/// pipeline to give it up), the channel is closed — what was delivered and
/// not acknowledged goes back to the queue — and the partition subscribed
/// to again, behind the other replicas' consumers: one of them is active
/// now.
async fn consume(
    conn: Arc<Connection>,
    s: Settings,
    p: u32,
    tx: mpsc::Sender<Delivery>,
    mut release: mpsc::Receiver<()>,
) {
    loop {
        let Ok((ch, mut consumer)) = subscribe(&conn, &s, p).await else {
            return;
        };
        let mut active = false;
        loop {
            tokio::select! {
                d = consumer.next() => {
                    let Some(Ok(d)) = d else { return };
                    if !active {
                        active = true;
                        if tx.send(Delivery::Activated(p)).await.is_err() {
                            return;
                        }
                    }
                    let d = if Incoming::is_command(&d) {
                        Delivery::Command(p, Incoming::of(d, ch.clone()))
                    } else {
                        Delivery::Message(p, inbound(d))
                    };
                    if tx.send(d).await.is_err() {
                        return;
                    }
                }
                r = release.recv() => {
                    if r.is_none() {
                        return;
                    }
                    break;
                }
            }
        }
        let _ = ch.close(200, "partition released".into()).await;
        tracing::info!(
            partition = p,
            "partition released to another replica; subscribed again behind it"
        );
    }
}

/// A delivery as the pipeline takes it, acknowledged through its channel.
fn inbound(d: lapin::message::Delivery) -> Inbound {
    let acker = d.acker.clone();
    Inbound {
        topic: topic_of(d.routing_key.as_str()),
        payload: bytes::Bytes::from(d.data),
        arrived_ms: crate::domain::time::now_ms(),
        ack: Some(Box::new(move || {
            tokio::spawn(async move {
                // A failed ack means the channel is gone: the message is
                // redelivered to the next active consumer, which finds it
                // committed.
                let _ = acker.ack(BasicAckOptions::default()).await;
            });
        })),
    }
}

/// Connection properties naming the connection `{replica} {purpose}`, as
/// the management UI and API show it (`client_properties.connection_name`):
/// an operator sees which replica a connection is, and can close it.
pub fn named(replica: &str, purpose: &str) -> ConnectionProperties {
    ConnectionProperties::default().with_connection_name(format!("{replica} {purpose}").into())
}

/// One connection's life: declare, consume every partition, pass releases
/// on, and answer when the connection (or any partition's task) ends.
async fn session(
    s: &Settings,
    sites: &[String],
    tx: &mpsc::Sender<Delivery>,
    releases: &mut mpsc::Receiver<u32>,
    shutdown: &CancellationToken,
) -> lapin::Result<()> {
    let conn = Arc::new(Connection::connect(&s.url, named(&s.replica, "partitions")).await?);
    let setup = conn.create_channel().await?;
    declare(&setup, s.partitions, sites).await?;
    let mut tasks = JoinSet::new();
    let mut release = Vec::new();
    for p in 0..s.partitions {
        let (rel_tx, rel_rx) = mpsc::channel(1);
        release.push(rel_tx);
        tasks.spawn(consume(conn.clone(), s.clone(), p, tx.clone(), rel_rx));
    }
    tracing::info!(replica = %s.replica, partitions = s.partitions, "consuming the ingest partitions");
    if tx.send(Delivery::Connected).await.is_err() {
        return Ok(());
    }
    loop {
        tokio::select! {
            _ = tasks.join_next() => break,
            _ = shutdown.cancelled() => break,
            Some(p) = releases.recv() => {
                if let Some(r) = release.get(p as usize) {
                    let _ = r.try_send(());
                }
            }
        }
    }
    tasks.abort_all();
    let _ = conn.close(200, "bye".into()).await;
    Ok(())
}

/// Consumes the partitions until `shutdown`, reconnecting (1 s doubling to
/// 10 s) whenever the connection is lost; each loss is a [`Delivery::Lost`].
/// A partition number in `releases` gives that partition up (see
/// [`consume`]).
pub async fn run(
    s: Settings,
    sites: Vec<String>,
    tx: mpsc::Sender<Delivery>,
    mut releases: mpsc::Receiver<u32>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    while !shutdown.is_cancelled() {
        match session(&s, &sites, &tx, &mut releases, &shutdown).await {
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = %e, url = %crate::redact::url(&s.url), "RabbitMQ: cannot consume the ingest partitions")
            }
        }
        if tx.send(Delivery::Lost).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_map_back_to_their_topics() {
        assert_eq!(
            topic_of("fire.v1.home_a.n01.cmd.ack"),
            "fire/v1/home_a/n01/cmd/ack"
        );
        assert_eq!(
            topic_of("fire.v1.home-b.n_2.telemetry"),
            "fire/v1/home-b/n_2/telemetry"
        );
    }
}
