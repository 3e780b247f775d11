//! Events across replicas (issue 16): every replica serves the console,
//! and a duty desk connected to replica B must see the alarm replica A
//! raised. Each replica publishes what it announces (after the commit) to
//! the fanout exchange `fire.events`, and takes every other replica's from
//! an exclusive queue of its own bound there, into its event stream
//! (`/api/v1/events`). Only the stream: alarm delivery (the notifier) and
//! the northbound links follow the replica's own events, so an alarm is
//! notified once, by the replica that raised it.
//!
//! What travels are the stored rows; each replica makes the views (labels,
//! times) itself. While the connection is down, other replicas' events are
//! missed by this replica's stream (its clients see the lists on reload).

use crate::alarms::events::{AlarmView, GatewayEvent, TicketView};
use crate::store::{AlarmRow, TicketOutcome, TicketRow};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ExchangeKind};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The fanout exchange replicas share their events on.
pub const EVENTS_EXCHANGE: &str = "fire.events";

/// An event as it travels between replicas.
#[derive(Debug, Serialize, Deserialize)]
pub struct Shared {
    /// The replica that announced it.
    pub origin: String,
    pub event: SharedEvent,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SharedEvent {
    AlarmRaised {
        alarm: AlarmRow,
        ticket: Option<TicketOutcome>,
    },
    AlarmUpdated {
        alarm: AlarmRow,
    },
    TicketUpdated {
        ticket: Box<TicketRow>,
    },
}

impl From<&GatewayEvent> for SharedEvent {
    fn from(e: &GatewayEvent) -> Self {
        match e {
            GatewayEvent::AlarmRaised { alarm, ticket } => SharedEvent::AlarmRaised {
                alarm: alarm.row.clone(),
                ticket: ticket.clone(),
            },
            GatewayEvent::AlarmUpdated { alarm } => SharedEvent::AlarmUpdated {
                alarm: alarm.row.clone(),
            },
            GatewayEvent::TicketUpdated { ticket } => SharedEvent::TicketUpdated {
                ticket: Box::new(ticket.row.clone()),
            },
        }
    }
}

impl From<SharedEvent> for GatewayEvent {
    fn from(e: SharedEvent) -> Self {
        match e {
            SharedEvent::AlarmRaised { alarm, ticket } => GatewayEvent::AlarmRaised {
                alarm: AlarmView::from(alarm),
                ticket,
            },
            SharedEvent::AlarmUpdated { alarm } => GatewayEvent::AlarmUpdated {
                alarm: AlarmView::from(alarm),
            },
            SharedEvent::TicketUpdated { ticket } => GatewayEvent::TicketUpdated {
                ticket: TicketView::from(*ticket),
            },
        }
    }
}

/// Carries this replica's `local` events to the other replicas and to its
/// own `stream`, and the other replicas' events to `stream`, until
/// `shutdown`; reconnects (1 s doubling to 10 s) when the connection goes.
/// Local events reach `stream` whatever the broker does.
pub async fn run(
    url: String,
    replica: String,
    local: broadcast::Sender<GatewayEvent>,
    stream: broadcast::Sender<GatewayEvent>,
    shutdown: CancellationToken,
) {
    let mut rx = local.subscribe();
    let mut backoff = Duration::from_secs(1);
    loop {
        let connected = async {
            let conn =
                Connection::connect(&url, crate::ingest::partitions::named(&replica, "events"))
                    .await?;
            let ch = conn.create_channel().await?;
            ch.exchange_declare(
                EVENTS_EXCHANGE.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
            let q = ch
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            ch.queue_bind(
                q.name().clone(),
                EVENTS_EXCHANGE.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
            let consumer = ch
                .basic_consume(
                    q.name().clone(),
                    format!("{replica}.events").as_str().into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((conn, ch, consumer))
        };
        let (conn, ch, mut consumer) = tokio::select! {
            c = connected => match c {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "RabbitMQ: events of other replicas not followed; retrying");
                    if !pass_local_until(&mut rx, &stream, backoff, &shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        backoff = Duration::from_secs(1);
        tracing::info!(%replica, "sharing events with the other replicas");
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        let _ = stream.send(ev.clone());
                        let shared = Shared { origin: replica.clone(), event: SharedEvent::from(&ev) };
                        let body = serde_json::to_vec(&shared).unwrap_or_default();
                        if ch
                            .basic_publish(
                                EVENTS_EXCHANGE.into(),
                                "".into(),
                                BasicPublishOptions::default(),
                                &body,
                                BasicProperties::default(),
                            )
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "events not shared with the other replicas (lagged)");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                d = consumer.next() => match d {
                    Some(Ok(d)) => match serde_json::from_slice::<Shared>(&d.data) {
                        Ok(s) if s.origin != replica => {
                            let _ = stream.send(GatewayEvent::from(s.event));
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "an unreadable event from another replica; dropped"),
                    },
                    _ => break,
                },
                _ = shutdown.cancelled() => {
                    let _ = conn.close(200, "bye".into()).await;
                    return;
                }
            }
        }
        tracing::warn!("RabbitMQ: the events connection is gone; reconnecting");
        let _ = conn.close(200, "bye".into()).await;
    }
}

/// Passes local events to the stream for `wait`; false on shutdown.
async fn pass_local_until(
    rx: &mut broadcast::Receiver<GatewayEvent>,
    stream: &broadcast::Sender<GatewayEvent>,
    wait: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let until = tokio::time::sleep(wait);
    tokio::pin!(until);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => { let _ = stream.send(ev); }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return false,
            },
            _ = &mut until => return true,
            _ = shutdown.cancelled() => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_arrives_at_another_replica_as_it_was_announced() {
        let row = AlarmRow {
            id: 7,
            site: "home_a".into(),
            node: "n01".into(),
            channel: "rc1".into(),
            cause: "residual_current_high".into(),
            kind: "electrical_fire".into(),
            level: "alarm".into(),
            state: "active".into(),
            quantity: Some("residual_current".into()),
            value: Some(700),
            setpoint: Some(500),
            peak: Some(700),
            raised_at: 1_796_352_520_293,
            updated_at: 1_796_352_520_293,
            cleared_at: None,
            acked_at: None,
            acked_by: None,
            ticket_id: Some(3),
            suppressed: false,
            flapping: false,
        };
        let ev = GatewayEvent::AlarmRaised {
            alarm: AlarmView::from(row),
            ticket: Some(TicketOutcome::Opened {
                id: 3,
                number: "YH20261204-00003".into(),
            }),
        };
        let wire = serde_json::to_vec(&Shared {
            origin: "replica-a".into(),
            event: SharedEvent::from(&ev),
        })
        .unwrap();
        let back: Shared = serde_json::from_slice(&wire).unwrap();
        assert_eq!(back.origin, "replica-a");
        // What the duty desk's stream shows is the same on both replicas.
        assert_eq!(
            serde_json::to_value(GatewayEvent::from(back.event)).unwrap(),
            serde_json::to_value(&ev).unwrap()
        );
        assert!(serde_json::from_slice::<Shared>(b"{\"origin\":1}").is_err());
    }
}
