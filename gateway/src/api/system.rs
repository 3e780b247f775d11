//! The system routes open to everyone: health, `/metrics` (on the API
//! listener for loopback peers, or on a listener of its own) and the API
//! document.

use super::{ApiError, AppState, ErrorBody};
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "system",
    responses((status = OK, description = "OpenAPI 3.1", body = Object)),
)]
pub(super) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::OPENAPI.as_str(),
    )
        .into_response()
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum HealthStatus {
    Ok,
    /// The database does not answer (HTTP 503), or the metrics sink is
    /// degraded (HTTP 200: alarms still work).
    Degraded,
}

/// The metrics sink's health.
#[derive(Serialize, ToSchema)]
pub(super) struct SinkHealth {
    /// Whether the sink drops new lines because its disk spool cannot
    /// write (disk full, I/O errors) or could not be opened. Messages are
    /// acknowledged and alarms handled all the same.
    degraded: bool,
    /// Why, while degraded: `disk_full: …` or `io_error: …`.
    reason: Option<String>,
}

/// The gateway's health.
#[derive(Serialize, ToSchema)]
#[schema(as = Health)]
pub(super) struct Health {
    status: HealthStatus,
    /// Whether the database answers and the alarm path's last commit
    /// succeeded.
    database: bool,
    /// Why not, while it does not (the alarm path retries its batch,
    /// unacknowledged, until the database answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    database_error: Option<String>,
    /// Since when the alarm path cannot commit, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    database_unavailable_since: Option<u64>,
    /// Whether the MQTT client has been connected since the start.
    mqtt_connected_once: bool,
    /// Why the MQTT client is not connected now (e.g. the broker's
    /// certificate is not accepted), until it connects again.
    #[serde(skip_serializing_if = "Option::is_none")]
    mqtt_error: Option<String>,
    /// The metrics sink (never degraded without one).
    metrics_sink: SinkHealth,
    /// The gateway's version.
    version: &'static str,
}

/// Liveness and database health.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    responses(
        (status = OK, description = "Healthy, or degraded by the metrics sink only", body = Health),
        (status = SERVICE_UNAVAILABLE, description = "Database unavailable", body = Health),
    )
)]
pub(super) async fn healthz(State(s): State<AppState>) -> Response {
    let ping = tokio::time::timeout(std::time::Duration::from_secs(5), s.store.ping())
        .await
        .map_err(|_| "no answer within 5 s".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let outage = s.metrics.store_health.outage();
    let db_ok = ping.is_ok() && outage.is_none();
    let database_error = match (&outage, ping) {
        (Some((_, reason)), _) => Some(reason.clone()),
        (None, Err(e)) => Some(e),
        (None, Ok(())) => None,
    }
    .map(|e| crate::redact::text(&e).into_owned());
    let mqtt_up = s.metrics.mqtt_connections.load(Ordering::Relaxed) > 0;
    let sink_reason = s.metrics.sink_degraded();
    let body = Health {
        status: if db_ok && sink_reason.is_none() {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        },
        database: db_ok,
        database_error,
        database_unavailable_since: outage.map(|(since, _)| since),
        mqtt_connected_once: mqtt_up,
        mqtt_error: s
            .metrics
            .mqtt_last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        metrics_sink: SinkHealth {
            degraded: sink_reason.is_some(),
            reason: sink_reason,
        },
        version: env!("CARGO_PKG_VERSION"),
    };
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// The gateway's own counters, Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses(
        (
            status = OK,
            description = "Prometheus exposition (text format 0.0.4): messages received, dropped by reason, duplicates, sequence gaps, alarms, tickets, sink backlog",
            body = String, content_type = "text/plain"
        ),
        (
            status = NOT_FOUND,
            description = "Served on `http.metrics_listen` instead, or asked from an address that is not loopback (`not_found`)",
            body = ErrorBody
        ),
    )
)]
pub(super) async fn metrics(
    State(s): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> Response {
    let peer = peer.map(|axum::Extension(axum::extract::ConnectInfo(a))| a.ip());
    if !metrics_visible(s.config.http.metrics_listen.is_some(), peer) {
        return ApiError(StatusCode::NOT_FOUND, "not_found", "不存在".into()).into_response();
    }
    metrics_text(&s.metrics)
}

fn metrics_text(m: &Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

/// Whether `/metrics` on the API listener answers a peer: not when it has
/// a listener of its own (`http.metrics_listen`), else only loopback
/// peers — its labels name sites and nodes. A router served without peer
/// addresses (in-process tests) answers.
pub fn metrics_visible(separate_listener: bool, peer: Option<std::net::IpAddr>) -> bool {
    !separate_listener && peer.is_none_or(|p| p.to_canonical().is_loopback())
}

/// The router of the separate `/metrics` listener (`http.metrics_listen`):
/// `/metrics` for every peer, nothing else.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::from(OpenApiRouter::default().routes(routes!(own_listener_metrics))).with_state(metrics)
}

/// The gateway's own counters on the listener of their own (`http.metrics_listen`).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses((status = OK, description = "Prometheus exposition (text format 0.0.4)", body = String, content_type = "text/plain")),
)]
pub(super) async fn own_listener_metrics(State(m): State<Arc<Metrics>>) -> Response {
    metrics_text(&m)
}
