//! HTTP API v1 (axum): health, alarms, tickets, sites, the event stream and
//! `/metrics`. Paths are fixed by DESIGN.md; bodies are JSON with codes for
//! programs and Chinese labels for people.
//!
//! Each handler documents itself with `#[utoipa::path]`, and routes are
//! registered only with `utoipa_axum::routes!`, so a route cannot be served
//! without appearing in the OpenAPI document (`crate::openapi`).

use crate::auth::User;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::openapi::{BadRequest, Binary, Forbidden, NotFound};
use crate::store::{AlarmFilter, Store, TicketFilter, TICKET_STATUSES};
use crate::ticket::Role;
use crate::views::{AlarmView, GatewayEvent, TicketEventView, TicketView};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

mod accounts;
mod evidence;
pub mod limits;
mod login_throttle;
mod registration;
mod session;
pub mod tls;

pub use session::LoginGuard;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub events: broadcast::Sender<GatewayEvent>,
    /// Requests to the pipeline, which owns the rule state.
    pub commands: tokio::sync::mpsc::Sender<crate::pipeline::Command>,
    /// The configuration in force (file + registry); `config` is the file's.
    pub live: crate::live::Live,
}

/// Routes open to everyone: the web console's page and files, health,
/// metrics, the API document and login.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(crate::console::index))
        .routes(routes!(crate::console::file))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
        .routes(routes!(session::login))
}

/// Routes behind the bearer token; each handler then keeps to the caller's
/// jurisdiction. The document marks every one of them as needing the token.
fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(alarms))
        .routes(routes!(ack_alarm))
        .routes(routes!(reset_alarm))
        .routes(routes!(tickets))
        .routes(routes!(ticket))
        .routes(routes!(transition_ticket))
        .routes(
            routes!(evidence::add_evidence).layer(axum::extract::DefaultBodyLimit::max(
                crate::evidence::MAX_BYTES + 1,
            )),
        )
        .routes(routes!(evidence_file))
        .routes(routes!(sites, registration::add_site))
        .routes(routes!(registration::list_nodes, registration::add_node))
        .routes(routes!(registration::rotate_credentials))
        .routes(routes!(registration::revoke_node))
        .routes(routes!(notifications))
        .routes(routes!(daily_max))
        .routes(routes!(latest_readings))
        .routes(routes!(site_risk))
        .routes(routes!(weekly))
        .routes(routes!(shift_notes, add_shift_note))
        .routes(routes!(start_selftest))
        .routes(routes!(selftests))
        .routes(routes!(selftest))
        .routes(routes!(baselines))
        .routes(routes!(commissioning_report))
        .routes(routes!(commissioning_csv))
        .routes(routes!(commissioning_html))
        .routes(routes!(sign_commissioning))
        .routes(routes!(apply_setpoints))
        .routes(routes!(ledger))
        .routes(routes!(monthly_report))
        .routes(routes!(events))
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
    let doc = crate::openapi::document(
        public_routes().into_openapi(),
        protected_routes().into_openapi(),
    );
    doc.to_pretty_json()
        .expect("an OpenAPI document always serialises")
});

/// Resolves `Authorization: Bearer <token>` to a user, or answers 401.
async fn authenticate(
    State(s): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let Some(token) = token else {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "请先登录".into(),
        )
        .into_response();
    };
    match s.store.user_by_token(&token, crate::time::now_ms()).await {
        Ok(Some(user)) => {
            let token = session::SessionToken(token);
            req.extensions_mut().insert(user);
            req.extensions_mut().insert(token);
            next.run(req).await
        }
        Ok(None) => ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "登录已失效，请重新登录".into(),
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

type Caller = axum::Extension<User>;

fn forbidden_site(site: &str) -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("机构 {site} 不在您的管辖范围内"),
    )
}

fn within(user: &User, site: &str) -> Result<(), ApiError> {
    if user.covers(site) {
        Ok(())
    } else {
        Err(forbidden_site(site))
    }
}

fn act_on_alarms(user: &User) -> Result<(), ApiError> {
    match user.role {
        Role::Duty | Role::SiteManager => Ok(()),
        _ => Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            "只有值班员或机构负责人可以确认或复位报警".into(),
        )),
    }
}

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

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "system",
    responses((status = OK, description = "OpenAPI 3.1", body = Object)),
)]
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI.as_str(),
    )
        .into_response()
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum HealthStatus {
    Ok,
    /// The database does not answer (HTTP 503), or the metrics sink is
    /// degraded (HTTP 200: alarms still work).
    Degraded,
}

/// The metrics sink's health.
#[derive(Serialize, ToSchema)]
struct SinkHealth {
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
struct Health {
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
async fn healthz(State(s): State<AppState>) -> Response {
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
async fn metrics(
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
async fn own_listener_metrics(State(m): State<Arc<Metrics>>) -> Response {
    metrics_text(&m)
}

/// Values of the alarm list's `state` filter.
pub const ALARM_FILTERS: &[&str] = &["standing", "active", "latched", "cleared", "all"];

fn alarm_filter(state: &str) -> Option<AlarmFilter> {
    match state {
        "standing" => Some(AlarmFilter::Standing),
        "active" => Some(AlarmFilter::Active),
        "latched" => Some(AlarmFilter::Latched),
        "cleared" => Some(AlarmFilter::Cleared),
        "all" => Some(AlarmFilter::All),
        _ => None,
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AlarmQuery {
    #[param(schema_with = crate::openapi::alarm_filter)]
    state: Option<String>,
    /// At most this many, newest first.
    #[param(minimum = 1, maximum = 10000, default = 500)]
    limit: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TicketQuery {
    /// open, closed, all (default), or one status code.
    #[param(schema_with = crate::openapi::ticket_filter)]
    status: Option<String>,
    /// At most this many, newest first.
    #[param(minimum = 1, maximum = 10000, default = 500)]
    limit: Option<i64>,
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
    command: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> crate::pipeline::Command,
) -> Result<T, ApiError> {
    let unavailable = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "pipeline_unavailable",
            "网关正在停止，请稍后重试".into(),
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

/// Alarms (报警), newest first, within the caller's jurisdiction.
#[utoipa::path(
    get,
    path = "/api/v1/alarms",
    tag = "alarms",
    params(AlarmQuery),
    responses(
        (status = OK, description = "Alarms", body = Vec<AlarmView>),
        (status = BAD_REQUEST, response = BadRequest),
    )
)]
async fn alarms(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<AlarmQuery>, QueryRejection>,
) -> Result<Json<Vec<AlarmView>>, ApiError> {
    let q = query(q)?;
    let state = q.state.as_deref().unwrap_or("standing");
    let filter = alarm_filter(state).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "bad_state",
            format!("未知的状态 {state:?}；可选 {}", ALARM_FILTERS.join("、")),
        )
    })?;
    // The jurisdiction is applied in the query, before the limit.
    let rows = s
        .store
        .alarms_in(filter, user.sites.as_deref(), limit(q.limit)?)
        .await?;
    Ok(Json(rows.into_iter().map(AlarmView::from).collect()))
}

fn alarm_not_found(id: i64) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("报警 {id} 不存在"),
    )
}

fn ticket_not_found(id: i64) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("工单 {id} 不存在"),
    )
}

/// Checks that ticket `id` exists and lies within the caller's jurisdiction.
/// A record outside it answers exactly as one that does not exist (404):
/// a 403 would tell that the id exists at another site.
async fn ticket_in_jurisdiction(s: &AppState, user: &User, id: i64) -> Result<(), ApiError> {
    match s.store.ticket(id).await? {
        Some((t, _, _)) if user.covers(&t.site) => Ok(()),
        _ => Err(ticket_not_found(id)),
    }
}

/// The alarm `id`, if it exists and lies within the caller's jurisdiction.
async fn alarm_in_jurisdiction(
    s: &AppState,
    user: &User,
    id: i64,
) -> Result<crate::store::AlarmRow, ApiError> {
    // Outside the jurisdiction = not found (a 403 would reveal the id).
    s.store
        .alarm(id)
        .await?
        .filter(|row| user.covers(&row.site))
        .ok_or_else(|| alarm_not_found(id))
}

/// Acknowledge (确认) an alarm; the first acknowledgement counts.
///
/// The duty officer's acknowledgement: the first one counts and the time to
/// acknowledge is kept. Only duty officers and site managers may acknowledge.
#[utoipa::path(
    post,
    path = "/api/v1/alarms/{id}/ack",
    tag = "alarms",
    params(("id" = i64, Path, description = "The alarm's id")),
    responses(
        (status = OK, description = "The alarm, acknowledged", body = AlarmView),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, response = NotFound),
    )
)]
async fn ack_alarm(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<AlarmView>, ApiError> {
    let id = path_id(id)?;
    alarm_in_jurisdiction(&s, &user, id).await?;
    act_on_alarms(&user)?;
    let role = crate::auth::role_code(user.role);
    match s
        .store
        .ack_as(id, &user.name, role, crate::time::now_ms())
        .await?
    {
        Some(row) => {
            let view = AlarmView::from(row);
            let _ = s.events.send(GatewayEvent::AlarmUpdated {
                alarm: view.clone(),
            });
            Ok(Json(view))
        }
        None => Err(alarm_not_found(id)),
    }
}

/// Reset (复位) a latched alarm whose value is back in band; refused while the alarm is live.
///
/// An authorised reset of a latched alarm: the value is back in band and a
/// person releases the alarm. Refused while the value is still past the
/// setpoint — except on a channel whose node now reports another quantity
/// (its readings are refused until this reset, which releases the alarm,
/// latched or not). Logged and audited with who did it, and sent to the
/// node as a `reset` command. Only duty officers and site managers may reset.
#[utoipa::path(
    post,
    path = "/api/v1/alarms/{id}/reset",
    tag = "alarms",
    params(("id" = i64, Path, description = "The alarm's id")),
    responses(
        (status = OK, description = "The alarm, cleared", body = AlarmView),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, response = NotFound),
        (
            status = CONFLICT,
            description = "Not latched (`not_latched`), or still live (`still_active`)",
            body = ErrorBody
        ),
        (
            status = SERVICE_UNAVAILABLE,
            description = "The gateway is stopping (`pipeline_unavailable`), or the database is unavailable (`store_unavailable`)",
            body = ErrorBody
        ),
    )
)]
async fn reset_alarm(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<AlarmView>, ApiError> {
    use crate::pipeline::{Command, ResetError};
    let id = path_id(id)?;
    alarm_in_jurisdiction(&s, &user, id).await?;
    act_on_alarms(&user)?;
    let answer = ask_pipeline(&s, |reply| Command::Reset {
        alarm_id: id,
        by: user.name.clone(),
        role: crate::auth::role_code(user.role),
        reply,
    })
    .await?;
    match answer {
        Ok(row) => Ok(Json(AlarmView::from(row))),
        Err(ResetError::NotFound) => Err(alarm_not_found(id)),
        Err(ResetError::NotLatched) => Err(ApiError(
            StatusCode::CONFLICT,
            "not_latched",
            "只有已恢复、待复位的回路报警可以复位".into(),
        )),
        Err(ResetError::StillActive) => Err(ApiError(
            StatusCode::CONFLICT,
            "still_active",
            "报警仍在持续（数值未回到正常范围或传感器故障），不能复位".into(),
        )),
        Err(ResetError::Store(e)) => Err(e.into()),
    }
}

/// Hazard tickets (隐患工单), newest first, within the caller's jurisdiction.
#[utoipa::path(
    get,
    path = "/api/v1/tickets",
    tag = "tickets",
    params(TicketQuery),
    responses(
        (status = OK, description = "Tickets", body = Vec<TicketView>),
        (status = BAD_REQUEST, response = BadRequest),
    )
)]
async fn tickets(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<TicketQuery>, QueryRejection>,
) -> Result<Json<Vec<TicketView>>, ApiError> {
    let q = query(q)?;
    let filter = TicketFilter::parse(q.status.as_deref().unwrap_or("all")).ok_or_else(|| {
        let codes: Vec<&str> = TICKET_STATUSES.iter().map(|(c, _)| *c).collect();
        let other = q.status.clone().unwrap_or_default();
        ApiError(
            StatusCode::BAD_REQUEST,
            "bad_status",
            format!(
                "未知的工单状态 {other:?}；可选 open、closed、all、{}",
                codes.join("、")
            ),
        )
    })?;
    let rows = s
        .store
        .tickets_in(&filter, user.sites.as_deref(), limit(q.limit)?)
        .await?;
    Ok(Json(rows.into_iter().map(TicketView::from).collect()))
}

/// A ticket with its audit trail (留痕), linked alarms and evidence.
#[derive(Serialize, ToSchema)]
struct TicketDetail {
    ticket: TicketView,
    /// Every recorded step, oldest first.
    events: Vec<TicketEventView>,
    /// The alarms that opened or recurred on this ticket.
    alarms: Vec<AlarmView>,
    /// Notes and files attached as evidence (整改佐证).
    evidence: Vec<crate::store::EvidenceRow>,
    /// The channel's readings kept while the ticket was open (关联读数):
    /// every abnormal one (at most one a minute), a normal one every 15
    /// minutes, and each change of condition; the newest 2,000, oldest first.
    readings: Vec<crate::store::TicketReadingRow>,
    /// The steps the caller may take now (action codes of
    /// `TransitionRequest.step`), by status, grade and role; a step offered
    /// may still be refused for its details, with the reason.
    actions: Vec<&'static str>,
}

/// One ticket with its audit trail (留痕), linked alarms, evidence and readings.
#[utoipa::path(
    get,
    path = "/api/v1/tickets/{id}",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id")),
    responses(
        (status = OK, description = "The ticket", body = TicketDetail),
        (status = BAD_REQUEST, response = BadRequest),
        (status = NOT_FOUND, description = "No such ticket within your jurisdiction (`not_found`)", body = ErrorBody),
    )
)]
async fn ticket(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<TicketDetail>, ApiError> {
    let id = path_id(id)?;
    match s.store.ticket(id).await? {
        // Outside the jurisdiction = not found (a 403 would reveal the id).
        Some((t, events, alarms)) if user.covers(&t.site) => {
            let evidence = s.store.evidence(id).await?;
            let readings = s.store.ticket_readings(id, 2_000).await?;
            let actions = crate::ticket::offered(
                &t.machine(),
                user.role,
                &s.config.tickets.policy(),
                crate::time::now_ms(),
            );
            Ok(Json(TicketDetail {
                ticket: TicketView::from(t),
                events: events.into_iter().map(TicketEventView::from).collect(),
                alarms: alarms.into_iter().map(AlarmView::from).collect(),
                evidence,
                readings,
                actions,
            }))
        }
        _ => Err(ticket_not_found(id)),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TransitionRequest)]
struct TransitionBody {
    /// Why (说明), recorded with the step.
    #[serde(default)]
    #[schema(max_length = 2000)]
    note: String,
    /// The step; `action` says which. Times are ms since the epoch.
    step: crate::ticket::Action,
}

/// One step of the closed loop: 登记, 挂牌督办, 落实整改 (五落实), 整改完成, 复查, 验收, 销号, 申请/审批延期, 重新打开.
///
/// Every step is checked against the ticket's status, the actor's role and,
/// for closing a sensor-sourced ticket, the telemetry: the channel must have
/// been normal (no alarm, pre-alarm or fault, node online) for the configured
/// period after the rectification report. Every accepted step is recorded
/// with who, role, when, why and what. The step is taken by the logged-in
/// user, in their role, within their jurisdiction.
#[utoipa::path(
    post,
    path = "/api/v1/tickets/{id}/transitions",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id")),
    request_body = TransitionBody,
    responses(
        (status = OK, description = "The ticket after the step", body = TicketView),
        (status = BAD_REQUEST, response = BadRequest),
        (
            status = FORBIDDEN,
            description = "The role may not take this step (`forbidden`)",
            body = ErrorBody
        ),
        (status = NOT_FOUND, response = NotFound),
        (
            status = CONFLICT,
            description = "Refused (`refused`): wrong status, incomplete 五落实, late extension, or the data does not yet prove the fix",
            body = ErrorBody
        ),
    )
)]
async fn transition_ticket(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<Json<TicketView>, ApiError> {
    use crate::store::{Actor, TransitionError};
    use crate::ticket::Refusal;
    let id = path_id(id)?;
    let body: TransitionBody =
        serde_json::from_slice(&body).map_err(|e| bad_request("请求体", e))?;
    if body.note.chars().count() > 2000 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bad_note",
            "说明最多 2000 个字符".into(),
        ));
    }
    if let Err(too_long) = crate::ticket::limits::check(&body.step) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "too_long",
            too_long.to_string(),
        ));
    }
    ticket_in_jurisdiction(&s, &user, id).await?;
    let actor = Actor {
        name: &user.name,
        role: user.role,
        note: &body.note,
    };
    match s
        .store
        .transition_ticket(
            id,
            &body.step,
            &actor,
            &s.config.tickets.policy(),
            crate::time::now_ms(),
        )
        .await
    {
        Ok(row) => {
            let view = TicketView::from(row);
            let _ = s.events.send(GatewayEvent::TicketUpdated {
                ticket: view.clone(),
            });
            Ok(Json(view))
        }
        Err(TransitionError::NotFound) => Err(ticket_not_found(id)),
        Err(TransitionError::Refused(r @ Refusal::Role { .. })) => {
            Err(ApiError(StatusCode::FORBIDDEN, "forbidden", r.to_string()))
        }
        Err(TransitionError::Refused(r)) => {
            Err(ApiError(StatusCode::CONFLICT, "refused", r.to_string()))
        }
        Err(TransitionError::Store(e)) => Err(e.into()),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LedgerParams {
    /// One site only (within the caller's jurisdiction).
    site: Option<String>,
    /// First day opened, `YYYY-MM-DD` (China time), inclusive.
    #[param(format = Date)]
    from: Option<String>,
    /// Last day opened, inclusive.
    #[param(format = Date)]
    to: Option<String>,
    /// open, closed, all (default), or one status code.
    #[param(schema_with = crate::openapi::ticket_filter)]
    status: Option<String>,
    #[param(value_type = Option<crate::ticket::Grade>)]
    grade: Option<String>,
}

/// A site's display name, or its id when it has none.
fn site_name(config: &Config, id: &str) -> String {
    config
        .sites
        .iter()
        .find(|x| x.id == id)
        .map(|x| x.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.to_string())
}

/// A CSV download named `filename`.
fn csv_download(filename: String, body: String) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// The hazard ledger (隐患台账) as CSV: UTF-8 with a byte-order mark for Excel, one row per ticket with the closed loop's fields.
#[utoipa::path(
    get,
    path = "/api/v1/ledger.csv",
    tag = "reports",
    params(LedgerParams),
    responses(
        (
            status = OK,
            description = "CSV",
            body = String,
            content_type = "text/csv",
            headers((
                "content-disposition" = String,
                description = "attachment; filename=\"ledger-YYYY-MM-DD.csv\""
            ))
        ),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
    )
)]
async fn ledger(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<LedgerParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| bad_request("查询参数", e.body_text()))?;
    if let Some(site) = &q.site {
        within(&user, site)?;
    }
    let day = |d: &Option<String>, what: &str| -> Result<Option<i64>, ApiError> {
        d.as_deref()
            .map(|d| {
                crate::time::parse_date_cst(d)
                    .ok_or_else(|| bad_request(what, format!("{d:?} 不是 YYYY-MM-DD 日期")))
            })
            .transpose()
    };
    let from = day(&q.from, "起始日期")?;
    let to = day(&q.to, "截止日期")?.map(|t| t + 86_400_000);
    let status = TicketFilter::parse(q.status.as_deref().unwrap_or("all")).ok_or_else(|| {
        bad_request(
            "状态",
            format!("未知的工单状态 {:?}", q.status.clone().unwrap_or_default()),
        )
    })?;
    if let Some(g) = q
        .grade
        .as_deref()
        .filter(|g| !matches!(*g, "general" | "major"))
    {
        return Err(bad_request("等级", format!("{g:?} 应为 general 或 major")));
    }
    let query = crate::store::LedgerQuery {
        site: q.site,
        sites: user.sites.clone(),
        from,
        to,
        status,
        grade: q.grade,
        limit: 1_000_000,
    };
    let rows = s.store.ledger(&query).await?;
    let names = |id: &str| site_name(&s.live.config(), id);
    let body = crate::ledger::csv(&rows, names);
    Ok(csv_download(
        format!(
            "ledger-{}.csv",
            crate::time::date_cst(crate::time::now_ms())
        ),
        body,
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReportParams {
    /// `YYYY-MM`, China time.
    #[param(pattern = "^[0-9]{4}-[0-9]{2}$")]
    month: String,
    /// One site only (within the caller's jurisdiction).
    site: Option<String>,
    /// `json` (default) or `csv`.
    #[param(schema_with = report_format)]
    format: Option<String>,
}

fn report_format() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["json", "csv"]))
        .default(Some("json".into()))
        .build()
}

/// The monthly report (月报) per site: alarms by kind, tickets opened / closed / overdue / open at the end, mean hours to 销号, and the 重大 hazards with their 督办 status.
#[utoipa::path(
    get,
    path = "/api/v1/reports/monthly",
    tag = "reports",
    params(ReportParams),
    responses(
        (status = OK, description = "The report", content(
            (crate::report::MonthlyReport = "application/json"),
            (String = "text/csv"),
        )),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
    )
)]
async fn monthly_report(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| bad_request("查询参数", e.body_text()))?;
    if let Some(site) = &q.site {
        within(&user, site)?;
    }
    let (from, to) = crate::report::month_range(&q.month)
        .ok_or_else(|| bad_request("月份", format!("{:?} 不是 YYYY-MM", q.month)))?;
    let figures = s.store.report_figures(q.site.as_deref(), from, to).await?;
    let names = |id: &str| site_name(&s.live.config(), id);
    let mut report = crate::report::monthly(&q.month, &figures, names);
    report.sites.retain(|r| user.covers(&r.site));
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(report).into_response()),
        "csv" => Ok(csv_download(
            format!("report-{}.csv", q.month),
            crate::report::csv(&report),
        )),
        other => Err(bad_request("格式", format!("{other:?} 应为 json 或 csv"))),
    }
}

/// An evidence file by its SHA-256, for callers covering a ticket it belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/evidence/{hash}",
    tag = "tickets",
    params((
        "hash" = String,
        Path,
        pattern = "^[0-9a-f]{64}$",
        description = "The file's SHA-256, lower-case hex"
    )),
    responses(
        (status = OK, description = "The file", content(
            (inline(Binary) = "image/jpeg"),
            (inline(Binary) = "image/png"),
            (inline(Binary) = "image/webp"),
            (inline(Binary) = "application/pdf"),
        )),
        (status = NOT_FOUND, description = "No such file on a ticket within your jurisdiction (`not_found`)", body = ErrorBody),
    )
)]
async fn evidence_file(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, "not_found", "文件不存在".into());
    if !crate::evidence::is_hash(&hash) {
        return Err(not_found());
    }
    let (media, sites) = s.store.evidence_file(&hash).await?.ok_or_else(not_found)?;
    // Outside the jurisdiction = not found: a 403 would tell that the file
    // exists (and name its site).
    if !sites.iter().any(|site| user.covers(site)) {
        return Err(not_found());
    }
    // Re-hashed before it is served: a damaged file is not evidence.
    let bytes = crate::evidence::read_verified(&s.config.storage.data_dir, &hash)
        .await
        .ok()
        .flatten()
        .ok_or_else(not_found)?;
    Ok(([(header::CONTENT_TYPE, media)], bytes).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct NotificationQuery {
    /// At most this many, newest first.
    #[param(minimum = 1, maximum = 10000, default = 500)]
    limit: Option<i64>,
}

/// Notification delivery attempts (推送记录), newest first, within the
/// caller's jurisdiction: every message, channel and vendor answer.
#[utoipa::path(
    get,
    path = "/api/v1/notifications",
    tag = "alarms",
    params(NotificationQuery),
    responses(
        (status = OK, description = "Delivery attempts", body = Vec<crate::store::NotificationRow>),
        (status = BAD_REQUEST, response = BadRequest),
    )
)]
async fn notifications(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<NotificationQuery>, QueryRejection>,
) -> Result<Json<Vec<crate::store::NotificationRow>>, ApiError> {
    let q = query(q)?;
    let mut rows = s
        .store
        .notifications_in(user.sites.as_deref(), limit(q.limit)?)
        .await?;
    // Rows written before redaction existed may still quote a robot URL.
    for r in &mut rows {
        if let std::borrow::Cow::Owned(d) = crate::redact::text(&r.log.detail) {
            r.log.detail = d;
        }
    }
    Ok(Json(rows))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TrendQuery {
    /// The site (机构).
    site: String,
    /// A wire quantity; default residual_current.
    #[param(schema_with = crate::openapi::quantity)]
    quantity: Option<String>,
    /// How many days back from today (China time), today included.
    #[param(minimum = 1, maximum = 366, default = 30)]
    days: Option<u32>,
}

/// Each channel's daily maximum at a site (e.g. residual current per loop
/// over 30/90/365 days), from the hourly rollups the gateway keeps itself.
#[derive(Serialize, ToSchema)]
struct DailyMaxTrend {
    site: String,
    quantity: String,
    /// From this day (China time, `YYYY-MM-DD`)…
    from: String,
    /// …through this day.
    to: String,
    points: Vec<crate::store::DailyMaxRow>,
}

/// Each channel's latest measured reading (最近读数), within the caller's
/// jurisdiction; saved every minute with the hourly rollups.
#[utoipa::path(
    get,
    path = "/api/v1/readings/latest",
    tag = "sites",
    responses((status = OK, description = "Latest readings", body = Vec<crate::store::LatestRow>)),
)]
async fn latest_readings(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
) -> Result<Json<Vec<crate::store::LatestRow>>, ApiError> {
    Ok(Json(s.store.latest_in(user.sites.as_deref()).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct WeeklyQuery {
    /// One site only (else every site in the jurisdiction).
    site: Option<String>,
    /// How many weeks, the current one included.
    #[param(minimum = 1, maximum = 104, default = 12)]
    weeks: Option<u32>,
}

/// Weekly counts: alarms by kind and tickets opened, closed and overdue.
#[derive(Serialize, ToSchema)]
struct WeeklyCounts {
    /// Week starts (Monday 00:00 China time, ms), oldest first.
    weeks: Vec<i64>,
    /// `YYYY-MM-DD` of each week start.
    labels: Vec<String>,
    /// Per alarm kind (electrical_fire, fire_facility, fault, offline), a count per week.
    alarms: std::collections::BTreeMap<String, Vec<i64>>,
    /// opened, closed, overdue: a count per week.
    tickets: std::collections::BTreeMap<String, Vec<i64>>,
}

/// Alarms per week by kind and tickets opened/closed/overdue per week (趋势),
/// counted in the store over all the data, within the caller's jurisdiction.
#[utoipa::path(
    get,
    path = "/api/v1/trends/weekly",
    tag = "sites",
    params(WeeklyQuery),
    responses(
        (status = OK, description = "Weekly counts", body = WeeklyCounts),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
    )
)]
async fn weekly(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<WeeklyQuery>, QueryRejection>,
) -> Result<Json<WeeklyCounts>, ApiError> {
    let q = query(q)?;
    let n = q.weeks.unwrap_or(12);
    if !(1..=104).contains(&n) {
        return Err(bad_request(
            "weeks",
            format!("须在 1 到 104 之间，收到 {n}"),
        ));
    }
    let only;
    let sites = match &q.site {
        Some(site) => {
            within(&user, site)?;
            only = vec![site.clone()];
            Some(only.as_slice())
        }
        None => user.sites.as_deref(),
    };
    use crate::time::{week_start_cst, WEEK_MS};
    let this_week = week_start_cst(crate::time::now_ms() as i64);
    let weeks: Vec<i64> = (0..i64::from(n))
        .rev()
        .map(|i| this_week - i * WEEK_MS)
        .collect();
    let rows = s.store.weekly_counts(sites, weeks[0]).await?;
    let mut alarms: std::collections::BTreeMap<String, Vec<i64>> =
        ["electrical_fire", "fire_facility", "fault", "offline"]
            .iter()
            .map(|k| (k.to_string(), vec![0; weeks.len()]))
            .collect();
    let mut tickets: std::collections::BTreeMap<String, Vec<i64>> = ["opened", "closed", "overdue"]
        .iter()
        .map(|k| (k.to_string(), vec![0; weeks.len()]))
        .collect();
    for (w, what, count) in rows {
        let Some(i) = weeks.iter().position(|x| *x == w) else {
            continue;
        };
        let table = if tickets.contains_key(&what) {
            &mut tickets
        } else {
            &mut alarms
        };
        table.entry(what).or_insert_with(|| vec![0; weeks.len()])[i] += count;
    }
    let labels = weeks.iter().map(|w| crate::time::day_cst(*w)).collect();
    Ok(Json(WeeklyCounts {
        weeks,
        labels,
        alarms,
        tickets,
    }))
}

/// A site's risk grade (风险分级) and the figures behind it.
#[derive(Serialize, ToSchema)]
struct SiteRisk {
    site: String,
    name: String,
    /// red, orange, yellow or blue.
    grade: &'static str,
    /// 红 · 重大风险, 橙 · 较大风险, 黄 · 一般风险, 蓝 · 低风险.
    grade_label: &'static str,
    #[serde(flatten)]
    figures: crate::risk::Figures,
}

/// Every site in the caller's jurisdiction graded 红/橙/黄/蓝 from its open
/// hazards, overdue tickets and fire alarms of the last 30 days.
#[utoipa::path(
    get,
    path = "/api/v1/sites/risk",
    tag = "sites",
    responses((status = OK, description = "Risk per site", body = Vec<SiteRisk>)),
)]
async fn site_risk(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
) -> Result<Json<Vec<SiteRisk>>, ApiError> {
    let since = crate::time::now_ms() as i64 - 30 * crate::time::DAY_MS;
    let mut figures = s.store.risk_figures(since).await?;
    Ok(Json(
        s.live
            .config()
            .sites
            .iter()
            .filter(|site| user.covers(&site.id))
            .map(|site| {
                let f = figures.remove(&site.id).unwrap_or_default();
                let grade = crate::risk::grade(&f);
                SiteRisk {
                    site: site.id.clone(),
                    name: site.name.clone(),
                    grade,
                    grade_label: crate::risk::label(grade),
                    figures: f,
                }
            })
            .collect(),
    ))
}

/// Daily maximum per channel (趋势: 每回路日最大值).
#[utoipa::path(
    get,
    path = "/api/v1/trends/daily-max",
    tag = "sites",
    params(TrendQuery),
    responses(
        (status = OK, description = "Daily maxima", body = DailyMaxTrend),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
    )
)]
async fn daily_max(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<TrendQuery>, QueryRejection>,
) -> Result<Json<DailyMaxTrend>, ApiError> {
    let q = query(q)?;
    within(&user, &q.site)?;
    let quantity = q.quantity.unwrap_or_else(|| "residual_current".into());
    if wire::Quantity::from_wire(&quantity).is_none() {
        return Err(bad_request("quantity", &quantity));
    }
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(bad_request(
            "days",
            format!("须在 1 到 366 之间，收到 {days}"),
        ));
    }
    use crate::time::{day_cst, day_start_cst, DAY_MS};
    let tomorrow = day_start_cst(crate::time::now_ms() as i64) + DAY_MS;
    let from = tomorrow - i64::from(days) * DAY_MS;
    let points = s
        .store
        .daily_max(&q.site, &quantity, from, tomorrow)
        .await?;
    Ok(Json(DailyMaxTrend {
        site: q.site,
        quantity,
        from: day_cst(from),
        to: day_cst(tomorrow - 1),
        points,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ShiftLogQuery {
    /// One site only.
    site: Option<String>,
    /// At most this many, newest first.
    #[param(minimum = 1, maximum = 10000, default = 500)]
    limit: Option<i64>,
}

/// A handover note to write.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ShiftNoteRequest)]
struct ShiftNoteBody {
    /// The site it concerns.
    site: String,
    /// What the next shift must know (1–2000 characters).
    text: String,
}

/// Handover notes (交接班记录), newest first, within the caller's jurisdiction.
#[utoipa::path(
    get,
    path = "/api/v1/shift-log",
    tag = "alarms",
    params(ShiftLogQuery),
    responses(
        (status = OK, description = "Handover notes", body = Vec<crate::store::ShiftNoteRow>),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
    )
)]
async fn shift_notes(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<ShiftLogQuery>, QueryRejection>,
) -> Result<Json<Vec<crate::store::ShiftNoteRow>>, ApiError> {
    let q = query(q)?;
    if let Some(site) = &q.site {
        within(&user, site)?;
    }
    Ok(Json(
        s.store
            .shift_notes_in(user.sites.as_deref(), q.site.as_deref(), limit(q.limit)?)
            .await?,
    ))
}

/// Write a handover note (交接班记录) for a site; duty officers and site
/// managers only. Append-only and audited.
#[utoipa::path(
    post,
    path = "/api/v1/shift-log",
    tag = "alarms",
    request_body = ShiftNoteBody,
    responses(
        (status = OK, description = "The note, recorded", body = crate::store::ShiftNoteRow),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
    )
)]
async fn add_shift_note(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    body: Result<Json<ShiftNoteBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::store::ShiftNoteRow>, ApiError> {
    let Json(b) = body.map_err(|e| bad_request("请求内容", e.body_text()))?;
    within(&user, &b.site)?;
    if s.live.config().sites.iter().all(|x| x.id != b.site) {
        return Err(bad_request("site", format!("未知的机构 {}", b.site)));
    }
    if !matches!(user.role, Role::Duty | Role::SiteManager) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            "只有值班员或机构负责人可以填写交接班记录".into(),
        ));
    }
    let text = b.text.trim();
    if text.is_empty() || text.chars().count() > 2000 {
        return Err(bad_request("text", "须为 1 到 2000 个字"));
    }
    let role = crate::auth::role_code(user.role);
    Ok(Json(
        s.store
            .add_shift_note(&b.site, &user.name, role, text, crate::time::now_ms())
            .await?,
    ))
}

/// A node self-test (自检) and its per-channel results.
#[derive(Serialize, ToSchema)]
#[schema(as = SelfTest)]
pub struct SelfTestView {
    pub id: i64,
    pub site: String,
    pub node: String,
    /// `command` (sent on the node's `cmd` topic) or `test_key` (a Modbus
    /// detector: the installer presses its test key within the window).
    pub mode: String,
    pub requested_by: String,
    /// ms since the epoch.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `passed` or `failed`.
    pub result: String,
    /// 进行中 / 通过 / 未通过.
    pub result_label: &'static str,
    pub channels: Vec<crate::selftest::ChannelResult>,
    /// Why the whole test failed (node offline, no channel known yet).
    pub reason: Option<String>,
}

impl From<crate::store::SelfTestRow> for SelfTestView {
    fn from(r: crate::store::SelfTestRow) -> Self {
        SelfTestView {
            result_label: match r.result.as_str() {
                "passed" => "通过",
                "failed" => "未通过",
                _ => "进行中",
            },
            channels: serde_json::from_str(&r.channels).unwrap_or_default(),
            id: r.id,
            site: r.site,
            node: r.node,
            mode: r.mode,
            requested_by: r.requested_by,
            started_at: r.started_at,
            finished_at: r.finished_at,
            result: r.result,
            reason: r.reason,
        }
    }
}

/// The answer to starting a self-test.
#[derive(Serialize, ToSchema)]
#[schema(as = SelfTestStarted)]
struct SelfTestStarted {
    /// Poll `GET /api/v1/selftests/{id}` until `result` is not `running`.
    id: i64,
}

/// Start an end-to-end self-test (自检) of a node: the gateway sends
/// `selftest` on the node's `cmd` topic, the node injects a test signal on
/// every channel, and the gateway records per channel whether its test
/// alarm came back and how long the path took. Test alarms are never
/// alarms, tickets or notifications. For a Modbus detector the window
/// opens for the installer to press its test key. Not for bureau staff.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/nodes/{node}/selftest",
    tag = "sites",
    params(
        ("site" = String, Path, description = "Site id"),
        ("node" = String, Path, description = "Node id"),
    ),
    responses(
        (status = ACCEPTED, description = "Started", body = SelfTestStarted),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, description = "No such node (`not_found`)", body = ErrorBody),
        (status = CONFLICT, description = "A self-test of this node is running (`selftest_running`)", body = ErrorBody),
        (status = SERVICE_UNAVAILABLE, description = "The gateway is stopping (`pipeline_unavailable`)", body = ErrorBody),
    )
)]
async fn start_selftest(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(StatusCode, Json<SelfTestStarted>), ApiError> {
    use crate::pipeline::{Command, SelfTestError};
    let (site, node) = path_of(path)?;
    within(&user, &site)?;
    if user.role == Role::Inspector {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            "监管人员不能发起节点自检".into(),
        ));
    }
    let answer = ask_pipeline(&s, |reply| Command::SelfTest {
        site: site.clone(),
        node: node.clone(),
        by: user.name.clone(),
        role: crate::auth::role_code(user.role),
        reply,
    })
    .await?;
    match answer {
        Ok(id) => Ok((StatusCode::ACCEPTED, Json(SelfTestStarted { id }))),
        Err(SelfTestError::NotFound) => Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("节点 {site}/{node} 不存在"),
        )),
        Err(SelfTestError::Running) => Err(ApiError(
            StatusCode::CONFLICT,
            "selftest_running",
            format!("节点 {site}/{node} 正在自检，请等待本次结果"),
        )),
        Err(SelfTestError::Store(e)) => Err(e.into()),
    }
}

/// Filter for the self-test list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SelfTestQuery {
    /// Site id.
    site: Option<String>,
    /// Node id (with `site`).
    node: Option<String>,
    /// At most this many (default 500, at most 10000).
    limit: Option<i64>,
}

/// Self-tests (自检记录), newest first, within the caller's jurisdiction.
#[utoipa::path(
    get,
    path = "/api/v1/selftests",
    tag = "sites",
    params(SelfTestQuery),
    responses(
        (status = OK, description = "Self-tests", body = Vec<SelfTestView>),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
    )
)]
async fn selftests(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<SelfTestQuery>, QueryRejection>,
) -> Result<Json<Vec<SelfTestView>>, ApiError> {
    let q = query(q)?;
    if let Some(site) = &q.site {
        within(&user, site)?;
    }
    let rows = s
        .store
        .selftests_in(
            user.sites.as_deref(),
            q.site.as_deref(),
            q.node.as_deref(),
            limit(q.limit)?,
        )
        .await?;
    Ok(Json(rows.into_iter().map(SelfTestView::from).collect()))
}

/// One self-test and its per-channel results.
#[utoipa::path(
    get,
    path = "/api/v1/selftests/{id}",
    tag = "sites",
    params(("id" = i64, Path, description = "Self-test id")),
    responses(
        (status = OK, description = "The self-test", body = SelfTestView),
        (status = NOT_FOUND, description = "No such self-test within your jurisdiction (`not_found`)", body = ErrorBody),
        (status = BAD_REQUEST, response = BadRequest),
    )
)]
async fn selftest(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<SelfTestView>, ApiError> {
    let id = path_id(id)?;
    match s.store.selftest(id).await? {
        Some(row) if user.covers(&row.site) => Ok(Json(SelfTestView::from(row))),
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("自检记录 {id} 不存在"),
        )),
    }
}

/// One loop's baseline learning (基线学习) and recommended setpoints.
#[derive(Serialize, ToSchema)]
#[schema(as = ChannelBaseline)]
struct BaselineView {
    node: String,
    channel: String,
    quantity: String,
    /// `learning`, `learned`, or `insufficient` (too few hours of readings).
    status: &'static str,
    /// 学习中 / 已完成 / 数据不足.
    status_label: &'static str,
    /// How much of the window has passed (learning).
    percent: Option<u32>,
    /// When the window ends, ms since the epoch (learning).
    ends_at: Option<i64>,
    baseline: Option<crate::baseline::Baseline>,
    recommendation: Option<crate::baseline::Recommendation>,
    /// The setpoints applied at run time, if any (newest change).
    applied: Option<crate::store::SetpointRow>,
}

/// Baseline learning and recommended setpoints for every residual-current
/// and temperature loop of a site.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/baselines",
    tag = "sites",
    params(("site" = String, Path, description = "Site id")),
    responses(
        (status = OK, description = "Per loop", body = Vec<BaselineView>),
        (status = FORBIDDEN, response = Forbidden),
        (status = BAD_REQUEST, response = BadRequest),
    )
)]
async fn baselines(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<BaselineView>>, ApiError> {
    let site = path_of(site)?;
    within(&user, &site)?;
    let window_ms = i64::from(s.config.commissioning.baseline_hours) * 3_600_000;
    let now = crate::time::now_ms() as i64;
    let applied = s.store.setpoints_in_force().await?;
    let applied_to = |node: &str, ch: &str| {
        applied
            .iter()
            .find(|a| a.site == site && a.node == node && a.channel == ch)
            .cloned()
    };
    let mut out = Vec::new();
    for b in s.store.baselines(&site).await? {
        let baseline: Option<crate::baseline::Baseline> = serde_json::from_str(&b.baseline).ok();
        let recommendation = b
            .recommendation
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok());
        let insufficient = baseline.as_ref().is_some_and(|x| !x.covered());
        out.push(BaselineView {
            applied: applied_to(&b.node, &b.channel),
            node: b.node,
            channel: b.channel,
            quantity: b.quantity,
            status: if insufficient {
                "insufficient"
            } else {
                "learned"
            },
            status_label: if insufficient {
                "数据不足"
            } else {
                "已完成"
            },
            percent: None,
            ends_at: None,
            baseline,
            recommendation,
        });
    }
    for c in s.store.channels_to_learn().await? {
        if c.site != site {
            continue;
        }
        let ends_at = c.first_hour + window_ms;
        out.push(BaselineView {
            applied: applied_to(&c.node, &c.channel),
            percent: Some((((now - c.first_hour).max(0) * 100) / window_ms.max(1)).min(99) as u32),
            ends_at: Some(ends_at),
            node: c.node,
            channel: c.channel,
            quantity: c.quantity,
            status: "learning",
            status_label: "学习中",
            baseline: None,
            recommendation: None,
        });
    }
    out.sort_by(|a, b| (&a.node, &a.channel).cmp(&(&b.node, &b.channel)));
    Ok(Json(out))
}

/// New setpoints for a loop (定值修改).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetpointBody {
    /// 预警 setpoint in the wire unit; absent or null: no pre-alarm level.
    pre_alarm: Option<i64>,
    /// 报警 setpoint in the wire unit.
    alarm: i64,
    /// `recommendation` (applying the recommended setpoints) or `manual`.
    source: Option<String>,
}

/// Apply setpoints to a loop: checked against the standard's limits
/// (e.g. residual current ≤ 1000 mA) and the loop's learned baseline (the
/// alarm at least twice its natural leakage), recorded and audited (GB
/// 14287.5 §5.3.6), used by the gateway's rules from the next reading and
/// pushed to the node with `config`. Installers, site managers and
/// administrators.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/nodes/{node}/channels/{channel}/setpoints",
    tag = "sites",
    params(
        ("site" = String, Path, description = "Site id"),
        ("node" = String, Path, description = "Node id"),
        ("channel" = String, Path, description = "Channel id"),
    ),
    request_body = SetpointBody,
    responses(
        (status = OK, description = "Applied", body = crate::store::SetpointRow),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, description = "No such channel (`not_found`)", body = ErrorBody),
        (status = UNPROCESSABLE_ENTITY, description = "Outside the bounds (`setpoint_refused`), with the reason", body = ErrorBody),
        (status = SERVICE_UNAVAILABLE, description = "The gateway is stopping (`pipeline_unavailable`)", body = ErrorBody),
    )
)]
async fn apply_setpoints(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
    body: Result<Json<SetpointBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::store::SetpointRow>, ApiError> {
    use crate::pipeline::{Command, SetpointError};
    let (site, node, channel) = path_of(path)?;
    let Json(b) = body.map_err(|e| bad_request("请求内容", e.body_text()))?;
    within(&user, &site)?;
    if !matches!(user.role, Role::Installer | Role::SiteManager | Role::Admin) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            "只有安装人员、机构负责人或管理员可以修改定值".into(),
        ));
    }
    let source = match b.source.as_deref().unwrap_or("manual") {
        "recommendation" => "recommendation",
        "manual" => "manual",
        other => {
            return Err(bad_request(
                "source",
                format!("{other:?} 须为 recommendation 或 manual"),
            ))
        }
    };
    let answer = ask_pipeline(&s, |reply| Command::ApplySetpoints {
        site: site.clone(),
        node: node.clone(),
        channel: channel.clone(),
        pre_alarm: b.pre_alarm,
        alarm: b.alarm,
        source,
        by: user.name.clone(),
        role: crate::auth::role_code(user.role),
        reply,
    })
    .await?;
    match answer {
        Ok(row) => Ok(Json(row)),
        Err(SetpointError::NotFound) => Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("回路 {site}/{node}/{channel} 不存在或尚无数据"),
        )),
        Err(SetpointError::Refused(why)) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "setpoint_refused",
            why,
        )),
        Err(SetpointError::Store(e)) => Err(e.into()),
    }
}

/// Gathers a site's commissioning report from the configuration in force,
/// the registry, the latest readings, standing faults, self-tests,
/// baselines and setpoints.
async fn assemble_commissioning(
    s: &AppState,
    site: &str,
) -> Result<crate::commissioning::Report, ApiError> {
    use crate::commissioning::{ChannelLine, NodeBlock, Report};
    let config = s.live.config();
    let Some(site_cfg) = config.sites.iter().find(|x| x.id == site) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("机构 {site} 不存在"),
        ));
    };
    let registry = s.store.registry().await?;
    let only = [site.to_string()];
    let latest = s.store.latest_in(Some(&only)).await?;
    let faults: Vec<_> = s
        .store
        .alarms_in(AlarmFilter::Standing, Some(&only), 10_000)
        .await?
        .into_iter()
        .filter(|a| a.cause == crate::runtime::CAUSE_FAULT)
        .collect();
    let selftests = s.store.selftests_in(None, Some(site), None, 1000).await?;
    let baselines = s.store.baselines(site).await?;
    let applied = s.store.setpoints_in_force().await?;
    let mut nodes = Vec::new();
    for n in &site_cfg.nodes {
        let reg = registry
            .nodes
            .iter()
            .find(|r| r.site == site && r.id == n.id && r.revoked_at.is_none());
        // Channels: registered, configured, and any seen in readings.
        let mut ids: Vec<(String, Option<String>)> = Vec::new();
        let mut add = |id: &str, q: Option<&str>| {
            if !ids.iter().any(|(i, _)| i == id) {
                ids.push((id.to_string(), q.map(str::to_string)));
            }
        };
        if let Some(r) = reg {
            for c in &r.channels {
                add(&c.id, Some(&c.quantity));
            }
        }
        for c in &n.channels {
            add(&c.id, c.quantity.as_deref());
        }
        for l in latest.iter().filter(|l| l.node == n.id) {
            add(&l.channel, Some(&l.quantity));
        }
        let test = selftests
            .iter()
            .find(|t| t.node == n.id && t.finished_at.is_some());
        let test_results: Vec<crate::selftest::ChannelResult> = test
            .map(|t| serde_json::from_str(&t.channels).unwrap_or_default())
            .unwrap_or_default();
        let mut channels = Vec::new();
        for (id, q) in ids {
            let q = q
                .or_else(|| {
                    latest
                        .iter()
                        .find(|l| l.node == n.id && l.channel == id)
                        .map(|l| l.quantity.clone())
                })
                .unwrap_or_default();
            let sensor = reg
                .and_then(|r| r.channels.iter().find(|c| c.id == id))
                .map(|c| match c.ct_ratio {
                    Some(r) => format!("ct={r}"),
                    None => c.sensor.clone().unwrap_or_default(),
                });
            let wiring = if faults.iter().any(|f| f.node == n.id && f.channel == id) {
                "传感器故障".to_string()
            } else if latest.iter().any(|l| l.node == n.id && l.channel == id) {
                "正常".to_string()
            } else {
                "无数据".to_string()
            };
            let b = baselines.iter().find(|b| b.node == n.id && b.channel == id);
            let sp = applied
                .iter()
                .find(|a| a.site == site && a.node == n.id && a.channel == id);
            let (pre_alarm, alarm) = match (sp, wire::Quantity::from_wire(&q)) {
                (Some(sp), _) => (sp.pre_alarm, Some(sp.alarm)),
                (None, Some(wq)) => {
                    let t = config.rule_for(wq, site, &n.id, &id).threshold;
                    (
                        t.and_then(|t| t.pre_alarm).map(i64::from),
                        t.and_then(|t| t.alarm).map(i64::from),
                    )
                }
                (None, None) => (None, None),
            };
            channels.push(ChannelLine {
                selftest: test_results.iter().find(|r| r.channel == id).cloned(),
                selftest_at: test.map(|t| t.started_at),
                baseline: b.and_then(|b| serde_json::from_str(&b.baseline).ok()),
                recommendation: b
                    .and_then(|b| b.recommendation.as_deref())
                    .and_then(|r| serde_json::from_str(r).ok()),
                pre_alarm,
                alarm,
                setpoints_from: if sp.is_some() {
                    "applied"
                } else {
                    "configured"
                }
                .into(),
                setpoints_by: sp.map(|sp| sp.applied_by.clone()),
                setpoints_at: sp.map(|sp| sp.applied_at),
                channel: id,
                quantity: q,
                sensor,
                wiring,
            });
        }
        nodes.push(NodeBlock {
            label: crate::artefact::label(site, &n.id).unwrap_or_default(),
            location: match reg {
                Some(r) => r.location.display(),
                None => n.location.clone(),
            },
            installed_by: reg.map(|r| r.created_by.clone()),
            installed_at: reg.map(|r| r.created_at as i64),
            node: n.id.clone(),
            channels,
        });
    }
    Ok(Report {
        site: site.to_string(),
        site_name: site_cfg.name.clone(),
        nodes,
        ..Default::default()
    }
    .totals())
}

/// A commissioning report and its sign-offs.
#[derive(Serialize, ToSchema)]
#[schema(as = CommissioningReport)]
struct CommissioningView {
    report: crate::commissioning::Report,
    /// SHA-256 of `report` as it is now.
    report_sha256: String,
    signoffs: Vec<crate::commissioning::SignOff>,
}

/// A site's report as it is now and its sign-offs, within the caller's jurisdiction.
async fn report_of(
    s: &AppState,
    user: &User,
    site: Result<Path<String>, PathRejection>,
) -> Result<
    (
        String,
        crate::commissioning::Report,
        Vec<crate::commissioning::SignOff>,
    ),
    ApiError,
> {
    let site = path_of(site)?;
    within(user, &site)?;
    let report = assemble_commissioning(s, &site).await?;
    let signoffs = s.store.commissioning_signoffs(&site).await?;
    Ok((site, report, signoffs))
}

/// The site's commissioning report (调试验收报告): every node and channel
/// with its location, wiring check, latest self-test and path latency,
/// baseline, recommended and applied setpoints, installer and date, and
/// the site manager's sign-offs.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/commissioning",
    tag = "sites",
    params(("site" = String, Path, description = "Site id")),
    responses(
        (status = OK, description = "The report", body = CommissioningView),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, description = "No such site (`not_found`)", body = ErrorBody),
        (status = BAD_REQUEST, response = BadRequest),
    )
)]
async fn commissioning_report(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
) -> Result<Json<CommissioningView>, ApiError> {
    let (_, report, signoffs) = report_of(&s, &user, site).await?;
    Ok(Json(CommissioningView {
        report_sha256: report.sha256(),
        signoffs,
        report,
    }))
}

/// The commissioning report as CSV (UTF-8 with BOM, for Excel).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/commissioning.csv",
    tag = "sites",
    params(("site" = String, Path, description = "Site id")),
    responses(
        (status = OK, description = "CSV", content_type = "text/csv", body = String),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, description = "No such site (`not_found`)", body = ErrorBody),
    )
)]
async fn commissioning_csv(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (site, report, signoffs) = report_of(&s, &user, site).await?;
    let body = crate::commissioning::csv(&report, &signoffs);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"commissioning-{site}.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The commissioning report as a printable page (print it from the browser).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/commissioning.html",
    tag = "sites",
    params(("site" = String, Path, description = "Site id")),
    responses(
        (status = OK, description = "HTML", content_type = "text/html", body = String),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, description = "No such site (`not_found`)", body = ErrorBody),
    )
)]
async fn commissioning_html(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (_, report, signoffs) = report_of(&s, &user, site).await?;
    let body = crate::commissioning::html(&report, &signoffs, crate::time::now_ms() as i64);
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

/// The sign-off body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignOffBody {
    /// e.g. 同意验收.
    note: String,
}

/// The site manager (机构负责人) signs the commissioning report off: the
/// report as it is now is kept with its SHA-256, audited. Refused while a
/// channel has not passed its self-test (`not_ready`).
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/commissioning/sign-off",
    tag = "sites",
    params(("site" = String, Path, description = "Site id")),
    request_body = SignOffBody,
    responses(
        (status = OK, description = "Signed", body = crate::commissioning::SignOff),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, description = "No such site (`not_found`)", body = ErrorBody),
        (status = CONFLICT, description = "Not every channel passed (`not_ready`)", body = ErrorBody),
    )
)]
async fn sign_commissioning(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
    body: Result<Json<SignOffBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::commissioning::SignOff>, ApiError> {
    let site = path_of(site)?;
    let Json(b) = body.map_err(|e| bad_request("请求内容", e.body_text()))?;
    within(&user, &site)?;
    if user.role != Role::SiteManager {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            "调试验收报告由机构负责人签字".into(),
        ));
    }
    let note = b.note.trim();
    if note.is_empty() || note.chars().count() > 500 {
        return Err(bad_request("note", "须为 1 到 500 个字"));
    }
    let report = assemble_commissioning(&s, &site).await?;
    if !report.ready {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "not_ready",
            format!(
                "尚不具备验收条件：{} 个通道中 {} 个自检通过（每个通道须自检通过且接线正常）",
                report.channels, report.selftest_passed
            ),
        ));
    }
    let role = crate::auth::role_code(user.role);
    Ok(Json(
        s.store
            .sign_commissioning(
                &site,
                &user.name,
                role,
                note,
                &report,
                crate::time::now_ms(),
            )
            .await?,
    ))
}

/// A site (institution, 机构) and its nodes.
#[derive(Serialize, ToSchema)]
#[schema(as = Site)]
struct SiteView<'a> {
    id: &'a str,
    name: &'a str,
    nodes: Vec<NodeView<'a>>,
}

/// A sensor node and where it is.
#[derive(Serialize, ToSchema)]
#[schema(as = Node)]
struct NodeView<'a> {
    id: &'a str,
    /// 楼栋/楼层/房间/配电箱.
    location: &'a str,
}

/// Configured sites (institutions) and their nodes.
#[utoipa::path(
    get,
    path = "/api/v1/sites",
    tag = "sites",
    responses((status = OK, description = "Sites", body = Vec<SiteView>)),
)]
async fn sites(State(s): State<AppState>, axum::Extension(user): Caller) -> Response {
    let config = s.live.config();
    let sites: Vec<SiteView> = config
        .sites
        .iter()
        .filter(|site| user.covers(&site.id))
        .map(|site| SiteView {
            id: &site.id,
            name: &site.name,
            nodes: site
                .nodes
                .iter()
                .map(|n| NodeView {
                    id: &n.id,
                    location: &n.location,
                })
                .collect(),
        })
        .collect();
    Json(sites).into_response()
}

/// Sent instead of the events a slow client missed; reload the lists.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamNotice {
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
enum StreamItem {
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
async fn events(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    axum::Extension(session::SessionToken(token)): axum::Extension<session::SessionToken>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let every = Duration::from_secs(s.config.http.session_recheck_secs.clamp(1, 60));
    let state = StreamState {
        rx: s.events.subscribe(),
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
                    match st.store.user_by_token(&st.token, crate::time::now_ms()).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_alarm_filter_parses() {
        for f in ALARM_FILTERS {
            assert!(alarm_filter(f).is_some(), "{f}");
        }
        assert!(alarm_filter("bogus").is_none());
    }
}
