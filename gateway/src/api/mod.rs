//! HTTP API v1 (axum): health, alarms, tickets, sites, the event stream and
//! `/metrics`. Paths are fixed by DESIGN.md; bodies are JSON with codes for
//! programs and Chinese labels for people.
//!
//! Each handler documents itself with `#[utoipa::path]`, and routes are
//! registered only with `utoipa_axum::routes!`, so a route cannot be served
//! without appearing in the OpenAPI document (`openapi`).
//!
//! One file per resource (alarms, tickets, sites and nodes, users, trends,
//! reports, commissioning, self-tests, events, evidence); this file holds
//! the shared state, the router, the error answer and the request helpers;
//! `auth` the bearer-token middleware; `limits` and `tls` the listener.

use crate::alarms::events::GatewayEvent;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use std::sync::{Arc, LazyLock};
use tokio::sync::broadcast;
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

mod accounts;
mod alarms;
mod auth;
mod commissioning;
pub mod console;
mod events;
mod evidence;
pub mod limits;
mod login_throttle;
pub mod openapi;
mod reports;
mod selftests;
mod session;
mod shift_log;
mod sites;
mod system;
mod tickets;
pub mod tls;
mod trends;

pub use alarms::ALARM_FILTERS;
use auth::{authenticate, within, Caller};
pub use session::LoginGuard;
pub use system::{metrics_router, metrics_visible};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Announced here (alarm delivery and the northbound links follow it).
    pub events: broadcast::Sender<GatewayEvent>,
    /// What the event stream (`/api/v1/events`) shows: `events`, and on a
    /// cluster the other replicas' events too (`replica::fanout`).
    pub stream: broadcast::Sender<GatewayEvent>,
    /// Requests to the pipeline, which owns the rule state.
    pub commands: tokio::sync::mpsc::Sender<crate::alarms::pipeline::Command>,
    /// The configuration in force (file + registry); `config` is the file's.
    pub live: crate::live::Live,
}

/// Routes open to everyone: the web console's page and files, health,
/// metrics, the API document and login.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(console::index))
        .routes(routes!(console::file))
        .routes(routes!(system::healthz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi))
        .routes(routes!(session::login))
}

/// Routes behind the bearer token; each handler then keeps to the caller's
/// jurisdiction. The document marks every one of them as needing the token.
fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(alarms::alarms))
        .routes(routes!(alarms::ack_alarm))
        .routes(routes!(alarms::reset_alarm))
        .routes(routes!(tickets::tickets))
        .routes(routes!(tickets::ticket))
        .routes(routes!(tickets::transition_ticket))
        .routes(
            routes!(evidence::add_evidence).layer(axum::extract::DefaultBodyLimit::max(
                crate::tickets::evidence::MAX_BYTES + 1,
            )),
        )
        .routes(routes!(evidence::evidence_file))
        .routes(routes!(sites::sites, sites::add_site))
        .routes(routes!(sites::list_nodes, sites::add_node))
        .routes(routes!(sites::rotate_credentials))
        .routes(routes!(sites::revoke_node))
        .routes(routes!(alarms::notifications))
        .routes(routes!(trends::daily_max))
        .routes(routes!(trends::latest_readings))
        .routes(routes!(trends::site_risk))
        .routes(routes!(trends::weekly))
        .routes(routes!(shift_log::shift_notes, shift_log::add_shift_note))
        .routes(routes!(selftests::start_selftest))
        .routes(routes!(selftests::selftests))
        .routes(routes!(selftests::selftest))
        .routes(routes!(commissioning::baselines))
        .routes(routes!(commissioning::commissioning_report))
        .routes(routes!(commissioning::commissioning_csv))
        .routes(routes!(commissioning::commissioning_html))
        .routes(routes!(commissioning::sign_commissioning))
        .routes(routes!(commissioning::apply_setpoints))
        .routes(routes!(reports::ledger))
        .routes(routes!(reports::monthly_report))
        .routes(routes!(events::events))
        .routes(routes!(session::logout))
        .routes(routes!(accounts::users))
        .routes(routes!(accounts::disable_user))
        .routes(routes!(accounts::enable_user))
        .routes(routes!(accounts::set_password))
        .routes(routes!(accounts::revoke_sessions))
        .routes(routes!(crate::northbound::gb26875::api::status))
        .routes(routes!(crate::northbound::gb26875::api::answer))
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let protected = protected_routes().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        authenticate,
    ));
    let metrics = state.metrics.clone();
    Router::from(public_routes().merge(protected))
        .layer(axum::Extension(Arc::new(LoginGuard::default())))
        .with_state(state)
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            limits::limit_body,
        ))
}

/// The OpenAPI document of this API, generated from the routes above once,
/// on first use.
pub static OPENAPI: LazyLock<String> = LazyLock::new(|| {
    let doc = openapi::document(
        public_routes().into_openapi(),
        protected_routes().into_openapi(),
    );
    doc.to_pretty_json()
        .expect("an OpenAPI document always serialises")
});

/// An API error: status plus a message in Chinese and a stable code.
pub struct ApiError(StatusCode, &'static str, String);

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// Stable code for programs, e.g. `not_found`, `forbidden`, `bad_request`.
    error: &'static str,
    /// Message in Chinese, for people.
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.1,
            message: self.2,
        };
        (self.0, Json(body)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %crate::redact::text(&e.to_string()), "store error in an API call");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "数据库暂不可用，请稍后重试".into(),
        )
    }
}

fn limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(500) {
        n @ 1..=10_000 => Ok(n),
        n => Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit 须在 1 到 10000 之间，收到 {n}"),
        )),
    }
}

fn bad_request(what: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("{what}无效：{detail}"),
    )
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| bad_request("查询参数", e.body_text()))
}

/// A request's path parameters, or a 400 saying what is wrong with them.
fn path_of<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(x)| x)
        .map_err(|e| bad_request("路径", e.body_text()))
}

/// Sends `command` (built around its reply channel) to the pipeline, which
/// owns the rule state, and waits for the answer; 503 while it is stopping.
async fn ask_pipeline<T>(
    s: &AppState,
    command: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> crate::alarms::pipeline::Command,
) -> Result<T, ApiError> {
    let unavailable = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "pipeline_unavailable",
            "告警处理暂不可用：网关正在停止，或集群中处理该站点的网关未及时应答，请稍后重试".into(),
        )
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    s.commands
        .send(command(reply))
        .await
        .map_err(|_| unavailable())?;
    answer.await.map_err(|_| unavailable())
}

fn path_id(p: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| bad_request("编号", e.body_text()))
}
