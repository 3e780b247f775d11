//! HTTP API v1 (axum): health, alarms, tickets, sites, the event stream and
//! `/metrics`. Paths are fixed by DESIGN.md; bodies are JSON with codes for
//! programs and Chinese labels for people.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{AlarmFilter, Store, TicketFilter, TICKET_STATUSES};
use crate::views::{AlarmView, GatewayEvent, TicketEventView, TicketView};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub events: broadcast::Sender<GatewayEvent>,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/alarms", get(alarms))
        .route("/api/v1/alarms/{id}/ack", post(ack_alarm))
        .route("/api/v1/tickets", get(tickets))
        .route("/api/v1/tickets/{id}", get(ticket))
        .route("/api/v1/sites", get(sites))
        .route("/api/v1/events", get(events))
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(state)
}

/// An API error: status plus a message in Chinese and a stable code.
pub struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1, "message": self.2 }))).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store error in an API call");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "数据库暂不可用，请稍后重试".into(),
        )
    }
}

/// The OpenAPI document of this API, embedded at build time.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn healthz(State(s): State<AppState>) -> Response {
    let db_ok = s.store.ping().await.is_ok();
    let mqtt_up = s.metrics.mqtt_connections.load(Ordering::Relaxed) > 0;
    let body = json!({
        "status": if db_ok { "ok" } else { "degraded" },
        "database": db_ok,
        "mqtt_connected_once": mqtt_up,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
}

fn limit(q: &ListQuery) -> i64 {
    q.limit.unwrap_or(500).clamp(1, 10_000)
}

async fn alarms(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<AlarmView>>, ApiError> {
    let filter = match q.state.as_deref().unwrap_or("standing") {
        "standing" => AlarmFilter::Standing,
        "active" => AlarmFilter::Active,
        "latched" => AlarmFilter::Latched,
        "cleared" => AlarmFilter::Cleared,
        "all" => AlarmFilter::All,
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "bad_state",
                format!("未知的状态 {other:?}；可选 standing、active、latched、cleared、all"),
            ))
        }
    };
    let rows = s.store.alarms(filter, limit(&q)).await?;
    Ok(Json(rows.into_iter().map(AlarmView::from).collect()))
}

#[derive(Deserialize, Default)]
struct AckBody {
    /// Who acknowledges (值班人员); the login of the console issue replaces this.
    by: Option<String>,
}

async fn ack_alarm(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    body: Option<Json<AckBody>>,
) -> Result<Json<AlarmView>, ApiError> {
    let by = body
        .and_then(|b| b.0.by)
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "值班人员".into());
    if by.chars().count() > 64 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_actor",
            "确认人名称过长（最多 64 个字符）".into(),
        ));
    }
    match s.store.ack(id, &by, crate::time::now_ms()).await? {
        Some(row) => {
            let view = AlarmView::from(row);
            let _ = s.events.send(GatewayEvent::AlarmUpdated {
                alarm: view.clone(),
            });
            Ok(Json(view))
        }
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("报警 {id} 不存在"),
        )),
    }
}

async fn tickets(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<TicketView>>, ApiError> {
    let filter = match q.status.as_deref().unwrap_or("all") {
        "open" => TicketFilter::Open,
        "closed" => TicketFilter::Closed,
        "all" => TicketFilter::All,
        code if TICKET_STATUSES.iter().any(|(c, _)| *c == code) => {
            TicketFilter::Status(code.to_string())
        }
        other => {
            let codes: Vec<&str> = TICKET_STATUSES.iter().map(|(c, _)| *c).collect();
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "bad_status",
                format!(
                    "未知的工单状态 {other:?}；可选 open、closed、all、{}",
                    codes.join("、")
                ),
            ));
        }
    };
    let rows = s.store.tickets(&filter, limit(&q)).await?;
    Ok(Json(rows.into_iter().map(TicketView::from).collect()))
}

async fn ticket(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    match s.store.ticket(id).await? {
        Some((t, events, alarms)) => Ok(Json(json!({
            "ticket": TicketView::from(t),
            "events": events.into_iter().map(TicketEventView::from).collect::<Vec<_>>(),
            "alarms": alarms.into_iter().map(AlarmView::from).collect::<Vec<_>>(),
        }))
        .into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("工单 {id} 不存在"),
        )),
    }
}

async fn sites(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!(s
        .config
        .sites
        .iter()
        .map(|site| json!({
            "id": site.id,
            "name": site.name,
            "nodes": site.nodes.iter().map(|n| json!({"id": n.id, "location": n.location})).collect::<Vec<_>>(),
        }))
        .collect::<Vec<_>>()))
}

async fn events(
    State(s): State<AppState>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let rx = s.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(ev) => {
                let name = match &ev {
                    GatewayEvent::AlarmRaised { .. } => "alarm_raised",
                    GatewayEvent::AlarmUpdated { .. } => "alarm_updated",
                };
                SseEvent::default()
                    .event(name)
                    .data(serde_json::to_string(&ev).unwrap_or_default())
            }
            // A slow client missed events; tell it to reload the lists.
            Err(broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(json!({ "type": "lagged", "missed": n }).to_string()),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
