//! The event stream (SSE) of alarms and tickets within the caller's
//! jurisdiction, closed when the session ends.

use super::session;
use super::{AppState, Caller};
use crate::alarms::events::GatewayEvent;
use crate::auth::User;
use crate::metrics::Metrics;
use crate::store::Store;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// Sent instead of the events a slow client missed; reload the lists.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum StreamNotice {
    Lagged {
        /// How many events were missed.
        missed: u64,
    },
    /// The session ended (expired, logged out, revoked, or the user was
    /// disabled); the stream closes after this. Log in again.
    SessionEnded,
}

/// One `data:` line of the event stream; the SSE event name is its `type`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Event)]
pub(super) enum StreamItem {
    Event(Box<GatewayEvent>),
    Notice(StreamNotice),
}

/// What an event stream holds between items.
struct StreamState {
    rx: broadcast::Receiver<GatewayEvent>,
    user: User,
    token: String,
    store: Store,
    metrics: Arc<Metrics>,
    recheck: tokio::time::Interval,
    ended: bool,
}

/// Server-sent events: alarm_raised, alarm_updated, ticket_updated (and lagged when a slow client missed some).
///
/// Only what happens within the caller's jurisdiction. A comment line is
/// sent every 15 s to keep the connection open. The session is checked
/// again every `http.session_recheck_secs` (at most a minute): once it has
/// expired, been logged out or revoked, or its user disabled, a
/// `session_ended` event is sent and the stream closes.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    responses(
        (status = OK, description = "An event stream; each data line is an Event", content(
            (StreamItem = "text/event-stream"),
        )),
    )
)]
pub(super) async fn events(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    axum::Extension(session::SessionToken(token)): axum::Extension<session::SessionToken>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let every = Duration::from_secs(s.config.http.session_recheck_secs.clamp(1, 60));
    let state = StreamState {
        rx: s.stream.subscribe(),
        user,
        token,
        store: s.store.clone(),
        metrics: s.metrics.clone(),
        recheck: tokio::time::interval_at(tokio::time::Instant::now() + every, every),
        ended: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.ended {
            return None;
        }
        let event = loop {
            tokio::select! {
                ev = st.rx.recv() => match ev {
                    // Only what happens within the caller's jurisdiction.
                    Ok(ev) if !st.user.covers(ev.site()) => continue,
                    other => break other.map_err(Some),
                },
                _ = st.recheck.tick() => {
                    match st.store.user_by_token(&st.token, crate::domain::time::now_ms()).await {
                        // Role and sites may have changed: follow them.
                        Ok(Some(user)) => st.user = user,
                        Ok(None) => break Err(None),
                        // The database is away: keep the stream; the next
                        // check decides.
                        Err(_) => {}
                    }
                }
            }
        };
        let (name, item) = match event {
            Ok(ev) => {
                let name = match &ev {
                    GatewayEvent::AlarmRaised { .. } => "alarm_raised",
                    GatewayEvent::AlarmUpdated { .. } => "alarm_updated",
                    GatewayEvent::TicketUpdated { .. } => "ticket_updated",
                };
                (name, StreamItem::Event(Box::new(ev)))
            }
            // A slow client missed events; tell it to reload the lists.
            Err(Some(broadcast::error::RecvError::Lagged(n))) => (
                "lagged",
                StreamItem::Notice(StreamNotice::Lagged { missed: n }),
            ),
            Err(Some(broadcast::error::RecvError::Closed)) => return None,
            Err(None) => {
                st.ended = true;
                st.metrics
                    .auth
                    .streams_closed
                    .fetch_add(1, Ordering::Relaxed);
                (
                    "session_ended",
                    StreamItem::Notice(StreamNotice::SessionEnded),
                )
            }
        };
        let event = SseEvent::default()
            .event(name)
            .data(serde_json::to_string(&item).unwrap_or_default());
        Some((Ok(event), st))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
