//! Console commands for a site another replica holds (issue 16). A reset,
//! a setpoint change or a self-test must run in the pipeline that owns the
//! site's rule state, and people reach whichever replica haproxy picks.
//! The replica that takes the request and does not hold the site's
//! partition forwards it into that partition's queue — where only the
//! active consumer, the holder, reads it, in order with the site's
//! messages — and waits for the answer on RabbitMQ's direct reply-to
//! (`amq.rabbitmq.reply-to`). No address book of replicas, no second
//! protocol: the same broker, the same ownership rule as the telemetry.
//!
//! A forwarded command is recognised by where it came from, which the
//! broker vouches for: the default exchange (nodes may write to
//! `amq.topic` only) with a `user_id` property RabbitMQ has checked
//! against the sender's login, which must be the replicas' own user. It
//! carries the time it was sent; one older than [`ANSWER_WITHIN`] is
//! dropped unanswered (its caller has been told to try again, so running
//! it late would surprise them), and the queue drops it too (`expiration`).

use crate::alarms::pipeline::{Command, ResetError, SelfTestError, SetpointError};
use crate::store::{AlarmRow, SetpointRow, StoreError};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The AMQP `type` of a forwarded command.
pub use crate::ingest::partitions::COMMAND_TYPE;
/// RabbitMQ's direct reply-to pseudo-queue.
const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// How long the forwarding replica waits for the holder's answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A command as it travels to the holder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Reset {
        alarm_id: i64,
        by: String,
        role: String,
    },
    ApplySetpoints {
        site: String,
        node: String,
        channel: String,
        pre_alarm: Option<i64>,
        alarm: i64,
        source: String,
        by: String,
        role: String,
    },
    SelfTest {
        site: String,
        node: String,
        by: String,
        role: String,
    },
}

/// What travels: the request and when it was sent (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub sent_ms: u64,
    pub request: Request,
}

/// The holder's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reply {
    Alarm {
        row: AlarmRow,
    },
    Setpoint {
        row: SetpointRow,
    },
    SelfTest {
        id: i64,
    },
    NotFound,
    NotLatched,
    StillActive,
    Running,
    Refused {
        reason: String,
    },
    /// The holder's database did not answer.
    Store {
        detail: String,
    },
    /// The holder's pipeline stopped before it answered (the partition
    /// moved on): the caller is told to try again.
    Unavailable,
}

/// Who waits for the answer of a forwarded command: the API's reply
/// channel, by command.
pub enum Responder {
    Reset(oneshot::Sender<Result<AlarmRow, ResetError>>),
    Setpoints(oneshot::Sender<Result<SetpointRow, SetpointError>>),
    SelfTest(oneshot::Sender<Result<i64, SelfTestError>>),
}

/// A command split into what travels and who waits for its answer.
pub fn split(c: Command) -> (Request, Responder) {
    match c {
        Command::Reset {
            alarm_id,
            by,
            role,
            reply,
        } => (
            Request::Reset {
                alarm_id,
                by,
                role: role.into(),
            },
            Responder::Reset(reply),
        ),
        Command::ApplySetpoints {
            site,
            node,
            channel,
            pre_alarm,
            alarm,
            source,
            by,
            role,
            reply,
        } => (
            Request::ApplySetpoints {
                site,
                node,
                channel,
                pre_alarm,
                alarm,
                source: source.into(),
                by,
                role: role.into(),
            },
            Responder::Setpoints(reply),
        ),
        Command::SelfTest {
            site,
            node,
            by,
            role,
            reply,
        } => (
            Request::SelfTest {
                site,
                node,
                by,
                role: role.into(),
            },
            Responder::SelfTest(reply),
        ),
    }
}

/// A store error on the holder, as this replica reports it.
fn remote_store(detail: String) -> StoreError {
    StoreError::Writer(format!("on the replica holding the site: {detail}"))
}

impl Responder {
    /// Hands the holder's answer to the API. An answer that does not fit
    /// the command, or [`Reply::Unavailable`], drops the reply channel:
    /// the API answers 503, try again.
    pub fn answer(self, r: Reply) {
        match (self, r) {
            (Responder::Reset(tx), r) => {
                let v = match r {
                    Reply::Alarm { row } => Ok(row),
                    Reply::NotFound => Err(ResetError::NotFound),
                    Reply::NotLatched => Err(ResetError::NotLatched),
                    Reply::StillActive => Err(ResetError::StillActive),
                    Reply::Store { detail } => Err(ResetError::Store(remote_store(detail))),
                    _ => return,
                };
                let _ = tx.send(v);
            }
            (Responder::Setpoints(tx), r) => {
                let v = match r {
                    Reply::Setpoint { row } => Ok(row),
                    Reply::NotFound => Err(SetpointError::NotFound),
                    Reply::Refused { reason } => Err(SetpointError::Refused(reason)),
                    Reply::Store { detail } => Err(SetpointError::Store(remote_store(detail))),
                    _ => return,
                };
                let _ = tx.send(v);
            }
            (Responder::SelfTest(tx), r) => {
                let v = match r {
                    Reply::SelfTest { id } => Ok(id),
                    Reply::NotFound => Err(SelfTestError::NotFound),
                    Reply::Running => Err(SelfTestError::Running),
                    Reply::Store { detail } => Err(SelfTestError::Store(remote_store(detail))),
                    _ => return,
                };
                let _ = tx.send(v);
            }
        }
    }
}

/// The answer the holder's pipeline will give, as a [`Reply`].
pub enum Pending {
    Reset(oneshot::Receiver<Result<AlarmRow, ResetError>>),
    Setpoints(oneshot::Receiver<Result<SetpointRow, SetpointError>>),
    SelfTest(oneshot::Receiver<Result<i64, SelfTestError>>),
}

impl Pending {
    pub async fn reply(self) -> Reply {
        let store = |e: StoreError| Reply::Store {
            detail: e.to_string(),
        };
        match self {
            Pending::Reset(rx) => match rx.await {
                Ok(Ok(row)) => Reply::Alarm { row },
                Ok(Err(ResetError::NotFound)) => Reply::NotFound,
                Ok(Err(ResetError::NotLatched)) => Reply::NotLatched,
                Ok(Err(ResetError::StillActive)) => Reply::StillActive,
                Ok(Err(ResetError::Store(e))) => store(e),
                Err(_) => Reply::Unavailable,
            },
            Pending::Setpoints(rx) => match rx.await {
                Ok(Ok(row)) => Reply::Setpoint { row },
                Ok(Err(SetpointError::NotFound)) => Reply::NotFound,
                Ok(Err(SetpointError::Refused(reason))) => Reply::Refused { reason },
                Ok(Err(SetpointError::Store(e))) => store(e),
                Err(_) => Reply::Unavailable,
            },
            Pending::SelfTest(rx) => match rx.await {
                Ok(Ok(id)) => Reply::SelfTest { id },
                Ok(Err(SelfTestError::NotFound)) => Reply::NotFound,
                Ok(Err(SelfTestError::Running)) => Reply::Running,
                Ok(Err(SelfTestError::Store(e))) => store(e),
                Err(_) => Reply::Unavailable,
            },
        }
    }
}

/// Why a forwarded command is not run.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not sent by the replicas' user (user_id {0:?})")]
    Sender(Option<String>),
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("sent {age_ms} ms ago; its caller has given up")]
    Stale { age_ms: u64 },
    #[error("unknown role {0:?}")]
    Role(String),
    #[error("unknown setpoint source {0:?}")]
    Source(String),
}

/// A forwarded command as this replica's pipeline takes it: checked
/// (sender, age, role and source codes), with the answer to wait for.
pub fn accept(
    body: &[u8],
    user_id: Option<&str>,
    replicas_user: &str,
    now_ms: u64,
) -> Result<(Command, Pending), Refusal> {
    if user_id != Some(replicas_user) {
        return Err(Refusal::Sender(user_id.map(str::to_string)));
    }
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| Refusal::Unreadable(e.to_string()))?;
    let age_ms = now_ms.saturating_sub(env.sent_ms);
    if age_ms > ANSWER_WITHIN.as_millis() as u64 {
        return Err(Refusal::Stale { age_ms });
    }
    let role = |r: &str| {
        crate::auth::parse_role(r)
            .map(crate::auth::role_code)
            .ok_or_else(|| Refusal::Role(r.to_string()))
    };
    Ok(match env.request {
        Request::Reset {
            alarm_id,
            by,
            role: r,
        } => {
            let (reply, rx) = oneshot::channel();
            let role = role(&r)?;
            (
                Command::Reset {
                    alarm_id,
                    by,
                    role,
                    reply,
                },
                Pending::Reset(rx),
            )
        }
        Request::ApplySetpoints {
            site,
            node,
            channel,
            pre_alarm,
            alarm,
            source,
            by,
            role: r,
        } => {
            let source = match source.as_str() {
                "recommendation" => "recommendation",
                "manual" => "manual",
                _ => return Err(Refusal::Source(source)),
            };
            let role = role(&r)?;
            let (reply, rx) = oneshot::channel();
            (
                Command::ApplySetpoints {
                    site,
                    node,
                    channel,
                    pre_alarm,
                    alarm,
                    source,
                    by,
                    role,
                    reply,
                },
                Pending::Setpoints(rx),
            )
        }
        Request::SelfTest {
            site,
            node,
            by,
            role: r,
        } => {
            let role = role(&r)?;
            let (reply, rx) = oneshot::channel();
            (
                Command::SelfTest {
                    site,
                    node,
                    by,
                    role,
                    reply,
                },
                Pending::SelfTest(rx),
            )
        }
    })
}

pub use crate::ingest::partitions::Incoming;

/// The answer to send back for a forwarded command, as it travels.
pub fn reply_body(reply: &Reply) -> Vec<u8> {
    serde_json::to_vec(reply).unwrap_or_default()
}

/// A command for partition `.0` this replica does not hold.
pub type Outgoing = (u32, Command);

/// Forwards commands to their partitions' holders until `shutdown`, on a
/// connection of its own opened when the first one comes (and again after
/// a failure). Each caller waits at most [`ANSWER_WITHIN`]; one whose
/// command cannot be sent, or is not answered in time, has its reply
/// channel dropped: the API answers 503, try again.
pub async fn run(
    url: String,
    replica: String,
    mut rx: mpsc::Receiver<Outgoing>,
    shutdown: CancellationToken,
) {
    let user = url
        .parse::<lapin::uri::AMQPUri>()
        .map(|u| u.authority.userinfo.username)
        .unwrap_or_default();
    let mut next_id: u64 = 0;
    loop {
        // Idle until there is something to forward.
        let first = tokio::select! {
            c = rx.recv() => match c { Some(c) => c, None => return },
            _ = shutdown.cancelled() => return,
        };
        let link = tokio::time::timeout(ANSWER_WITHIN, open(&url, &replica)).await;
        let (conn, ch, mut replies) = match link {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, url = %crate::redact::url(&url), "RabbitMQ: cannot forward a command to the replica holding its site");
                continue;
            }
            Err(_) => {
                tracing::warn!(url = %crate::redact::url(&url), "RabbitMQ: no connection within {ANSWER_WITHIN:?} to forward a command");
                continue;
            }
        };
        let mut waiting: HashMap<String, (Responder, tokio::time::Instant)> = HashMap::new();
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        let mut next = Some(first);
        loop {
            if let Some((p, command)) = next.take() {
                next_id += 1;
                let id = next_id.to_string();
                let (request, responder) = split(command);
                let env = Envelope {
                    sent_ms: crate::domain::time::now_ms(),
                    request,
                };
                let body = serde_json::to_vec(&env).unwrap_or_default();
                let props = BasicProperties::default()
                    .with_type(COMMAND_TYPE.into())
                    .with_user_id(user.as_str().into())
                    .with_reply_to(REPLY_TO.into())
                    .with_correlation_id(id.as_str().into())
                    .with_content_type("application/json".into())
                    .with_expiration(ANSWER_WITHIN.as_millis().to_string().as_str().into());
                let queue = crate::ingest::rabbitmq::partition_queue(p);
                let sent = ch
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        props,
                    )
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, partition = p, "cannot forward a command; reconnecting");
                    break;
                }
                tracing::info!(
                    partition = p,
                    "command forwarded to the replica holding its site"
                );
                waiting.insert(id, (responder, tokio::time::Instant::now() + ANSWER_WITHIN));
            }
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => next = Some(c),
                    None => return,
                },
                d = replies.next() => match d {
                    Some(Ok(d)) => {
                        let id = d.properties.correlation_id().as_ref().map(|s| s.as_str().to_string());
                        let Some((responder, _)) = id.and_then(|id| waiting.remove(&id)) else {
                            continue;
                        };
                        match serde_json::from_slice::<Reply>(&d.data) {
                            Ok(r) => responder.answer(r),
                            Err(e) => tracing::warn!(error = %e, "an unreadable answer to a forwarded command"),
                        }
                    }
                    _ => break,
                },
                _ = sweep.tick() => {
                    let now = tokio::time::Instant::now();
                    let before = waiting.len();
                    waiting.retain(|_, (_, until)| *until > now);
                    if waiting.len() < before {
                        tracing::warn!(
                            unanswered = before - waiting.len(),
                            "forwarded commands not answered within {ANSWER_WITHIN:?}"
                        );
                    }
                }
                _ = shutdown.cancelled() => {
                    let _ = conn.close(200, "bye".into()).await;
                    return;
                }
            }
        }
        // What waits on the lost connection is not answered there.
        drop(waiting);
        let _ = conn.close(200, "bye".into()).await;
    }
}

/// A connection, a channel and its direct reply-to consumer.
async fn open(url: &str, replica: &str) -> lapin::Result<(Connection, Channel, lapin::Consumer)> {
    let conn =
        Connection::connect(url, crate::ingest::partitions::named(replica, "commands")).await?;
    let ch = conn.create_channel().await?;
    let replies = ch
        .basic_consume(
            REPLY_TO.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((conn, ch, replies))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(request: Request, sent_ms: u64) -> Vec<u8> {
        serde_json::to_vec(&Envelope { sent_ms, request }).unwrap()
    }

    #[tokio::test]
    async fn a_forwarded_self_test_runs_as_the_callers_own() {
        let (reply, answer) = oneshot::channel();
        let (request, responder) = split(Command::SelfTest {
            site: "home_a".into(),
            node: "n01".into(),
            by: "duty1".into(),
            role: "duty",
            reply,
        });
        let body = envelope(request, 1_000);
        // On the holder.
        let (command, pending) =
            accept(&body, Some("fire-gateway"), "fire-gateway", 2_000).unwrap();
        let Command::SelfTest {
            site,
            node,
            by,
            role,
            reply,
        } = command
        else {
            panic!("not a self-test");
        };
        assert_eq!(
            (site.as_str(), node.as_str(), by.as_str(), role),
            ("home_a", "n01", "duty1", "duty")
        );
        reply.send(Ok(42)).unwrap();
        let wire = serde_json::to_vec(&pending.reply().await).unwrap();
        // Back on the forwarding replica.
        responder.answer(serde_json::from_slice(&wire).unwrap());
        assert_eq!(answer.await.unwrap().unwrap(), 42);
    }

    #[tokio::test]
    async fn refusals_and_errors_travel_back() {
        let (reply, answer) = oneshot::channel();
        let (request, responder) = split(Command::Reset {
            alarm_id: 9,
            by: "duty1".into(),
            role: "duty",
            reply,
        });
        let (command, pending) = accept(&envelope(request, 0), Some("gw"), "gw", 5).unwrap();
        let Command::Reset { reply, .. } = command else {
            panic!("not a reset");
        };
        reply.send(Err(ResetError::StillActive)).unwrap();
        responder.answer(pending.reply().await);
        assert!(matches!(
            answer.await.unwrap(),
            Err(ResetError::StillActive)
        ));

        // The holder's pipeline went away: the caller is told to try again.
        let (reply, answer) = oneshot::channel::<Result<i64, SelfTestError>>();
        let (request, responder) = split(Command::SelfTest {
            site: "s".into(),
            node: "n".into(),
            by: "b".into(),
            role: "admin",
            reply,
        });
        let (command, pending) = accept(&envelope(request, 0), Some("gw"), "gw", 0).unwrap();
        drop(command);
        responder.answer(pending.reply().await);
        assert!(answer.await.is_err());
    }

    #[test]
    fn only_the_replicas_fresh_well_formed_commands_are_run() {
        let request = Request::SelfTest {
            site: "s".into(),
            node: "n".into(),
            by: "b".into(),
            role: "duty".into(),
        };
        let body = envelope(request.clone(), 1_000);
        let refused = |r: Result<(Command, Pending), Refusal>| r.err().expect("refused");
        assert_eq!(
            refused(accept(&body, None, "gw", 1_000)),
            Refusal::Sender(None)
        );
        assert_eq!(
            refused(accept(&body, Some("home_a.n01"), "gw", 1_000)),
            Refusal::Sender(Some("home_a.n01".into()))
        );
        assert_eq!(
            refused(accept(&body, Some("gw"), "gw", 11_001)),
            Refusal::Stale { age_ms: 10_001 }
        );
        assert!(accept(&body, Some("gw"), "gw", 11_000).is_ok());
        assert!(matches!(
            refused(accept(b"{\"sent_ms\":1}", Some("gw"), "gw", 1)),
            Refusal::Unreadable(_)
        ));
        assert!(matches!(
            refused(accept(&[0xff, 0x00], Some("gw"), "gw", 1)),
            Refusal::Unreadable(_)
        ));
        let forged = envelope(
            Request::SelfTest {
                site: "s".into(),
                node: "n".into(),
                by: "b".into(),
                role: "root".into(),
            },
            1,
        );
        assert_eq!(
            refused(accept(&forged, Some("gw"), "gw", 1)),
            Refusal::Role("root".into())
        );
        let odd = envelope(
            Request::ApplySetpoints {
                site: "s".into(),
                node: "n".into(),
                channel: "rc1".into(),
                pre_alarm: None,
                alarm: 300,
                source: "guess".into(),
                by: "b".into(),
                role: "admin".into(),
            },
            1,
        );
        assert_eq!(
            refused(accept(&odd, Some("gw"), "gw", 1)),
            Refusal::Source("guess".into())
        );
    }
}
