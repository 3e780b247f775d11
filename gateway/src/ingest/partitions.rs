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
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeBindOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
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
    /// The connection to RabbitMQ is gone, and every partition with it.
    Lost,
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

/// Consumes partition `p` on its own channel until the channel or the
/// connection ends (or `tx` is closed).
async fn consume(
    conn: &Connection,
    s: &Settings,
    p: u32,
    tx: mpsc::Sender<Delivery>,
) -> lapin::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(s.prefetch, BasicQosOptions::default()).await?;
    let tag = format!("{}.p{p:02}", s.replica);
    let mut consumer = ch
        .basic_consume(
            partition_queue(p).as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(async move {
        let _ch = ch;
        let mut active = false;
        while let Some(Ok(d)) = consumer.next().await {
            if !active {
                active = true;
                if tx.send(Delivery::Activated(p)).await.is_err() {
                    return;
                }
            }
            let acker = d.acker.clone();
            let msg = Inbound {
                topic: topic_of(d.routing_key.as_str()),
                payload: bytes::Bytes::from(d.data),
                arrived_ms: crate::domain::time::now_ms(),
                ack: Some(Box::new(move || {
                    tokio::spawn(async move {
                        // A failed ack means the channel is gone: the
                        // message is redelivered to the next active
                        // consumer, which finds it committed.
                        let _ = acker.ack(BasicAckOptions::default()).await;
                    });
                })),
            };
            if tx.send(Delivery::Message(p, msg)).await.is_err() {
                return;
            }
        }
    })
}

/// One connection's life: declare, consume every partition, and answer
/// when the connection (or any partition's channel) ends.
async fn session(
    s: &Settings,
    sites: &[String],
    tx: &mpsc::Sender<Delivery>,
    shutdown: &CancellationToken,
) -> lapin::Result<()> {
    let conn = Connection::connect(&s.url, ConnectionProperties::default()).await?;
    let setup = conn.create_channel().await?;
    declare(&setup, s.partitions, sites).await?;
    let mut tasks = JoinSet::new();
    for p in 0..s.partitions {
        tasks.spawn(consume(&conn, s, p, tx.clone()).await?);
    }
    tracing::info!(replica = %s.replica, partitions = s.partitions, "consuming the ingest partitions");
    tokio::select! {
        _ = tasks.join_next() => {}
        _ = shutdown.cancelled() => {}
    }
    tasks.abort_all();
    let _ = conn.close(200, "bye".into()).await;
    Ok(())
}

/// Consumes the partitions until `shutdown`, reconnecting (1 s doubling to
/// 10 s) whenever the connection is lost; each loss is a [`Delivery::Lost`].
pub async fn run(
    s: Settings,
    sites: Vec<String>,
    tx: mpsc::Sender<Delivery>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    while !shutdown.is_cancelled() {
        match session(&s, &sites, &tx, &shutdown).await {
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
