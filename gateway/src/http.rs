//! HTTP API v1 (axum): health, alarms, tickets, sites, the event stream and
//! `/metrics`. Paths are fixed by DESIGN.md; bodies are JSON with codes for
//! programs and Chinese labels for people.

use crate::auth::User;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{AlarmFilter, Store, TicketFilter, TICKET_STATUSES};
use crate::ticket::Role;
use crate::views::{AlarmView, GatewayEvent, TicketEventView, TicketView};
use axum::extract::rejection::{PathRejection, QueryRejection};
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
    /// Requests to the pipeline, which owns the rule state.
    pub commands: tokio::sync::mpsc::Sender<crate::pipeline::Command>,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    // Everything but health, metrics, the API document and login needs a
    // bearer token; each handler then keeps to the caller's jurisdiction.
    let protected = Router::new()
        .route("/api/v1/alarms", get(alarms))
        .route("/api/v1/alarms/{id}/ack", post(ack_alarm))
        .route("/api/v1/alarms/{id}/reset", post(reset_alarm))
        .route("/api/v1/tickets", get(tickets))
        .route("/api/v1/tickets/{id}", get(ticket))
        .route("/api/v1/tickets/{id}/transitions", post(transition_ticket))
        .route(
            "/api/v1/tickets/{id}/evidence",
            post(add_evidence).layer(axum::extract::DefaultBodyLimit::max(
                crate::evidence::MAX_BYTES + 1,
            )),
        )
        .route("/api/v1/evidence/{hash}", get(evidence_file))
        .route("/api/v1/sites", get(sites))
        .route("/api/v1/ledger.csv", get(ledger))
        .route("/api/v1/reports/monthly", get(monthly_report))
        .route("/api/v1/events", get(events))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/login", post(login))
        .merge(protected)
        .with_state(state)
}

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
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "请先登录".into(),
        )
        .into_response();
    };
    match s.store.user_by_token(token, crate::time::now_ms()).await {
        Ok(Some(user)) => {
            req.extensions_mut().insert(user);
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    login: String,
    password: String,
}

/// Logs in: a bearer token for the session (12 h).
async fn login(State(s): State<AppState>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let body: LoginBody = serde_json::from_slice(&body).map_err(|e| bad_request("请求体", e))?;
    let now = crate::time::now_ms();
    match s.store.login(&body.login, &body.password, now).await? {
        Some((token, user)) => Ok(Json(json!({
            "token": token,
            "expires_at": now + crate::auth::SESSION_MS,
            "user": user,
        }))
        .into_response()),
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "用户名或密码错误".into(),
        )),
    }
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

fn limit(q: &ListQuery) -> Result<i64, ApiError> {
    match q.limit.unwrap_or(500) {
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

fn query(q: Result<Query<ListQuery>, QueryRejection>) -> Result<ListQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| bad_request("查询参数", e.body_text()))
}

fn path_id(p: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| bad_request("编号", e.body_text()))
}

async fn alarms(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<AlarmView>>, ApiError> {
    let q = query(q)?;
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
    // The jurisdiction is applied in the query, before the limit.
    let rows = s
        .store
        .alarms_in(filter, user.sites.as_deref(), limit(&q)?)
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
async fn ticket_in_jurisdiction(s: &AppState, user: &User, id: i64) -> Result<(), ApiError> {
    match s.store.ticket(id).await? {
        Some((t, _, _)) => within(user, &t.site),
        None => Err(ticket_not_found(id)),
    }
}

/// The alarm `id`, if it exists and lies within the caller's jurisdiction.
async fn alarm_in_jurisdiction(
    s: &AppState,
    user: &User,
    id: i64,
) -> Result<crate::store::AlarmRow, ApiError> {
    let row = s
        .store
        .alarm(id)
        .await?
        .ok_or_else(|| alarm_not_found(id))?;
    within(user, &row.site)?;
    Ok(row)
}

/// The duty officer's acknowledgement (确认); the first one counts and the
/// time to acknowledge is kept.
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

/// An authorised reset (复位) of a latched alarm: the value is back in band
/// and a person releases the alarm. Refused while the value is still past
/// the setpoint. Logged and audited with who did it.
async fn reset_alarm(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<AlarmView>, ApiError> {
    use crate::pipeline::{Command, ResetError};
    let id = path_id(id)?;
    alarm_in_jurisdiction(&s, &user, id).await?;
    act_on_alarms(&user)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let unavailable = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "pipeline_unavailable",
            "网关正在停止，请稍后重试".into(),
        )
    };
    let cmd = Command::Reset {
        alarm_id: id,
        by: user.name.clone(),
        role: crate::auth::role_code(user.role),
        reply,
    };
    s.commands.send(cmd).await.map_err(|_| unavailable())?;
    match answer.await.map_err(|_| unavailable())? {
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

async fn tickets(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
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
        .tickets_in(&filter, user.sites.as_deref(), limit(&q)?)
        .await?;
    Ok(Json(rows.into_iter().map(TicketView::from).collect()))
}

async fn ticket(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    match s.store.ticket(id).await? {
        Some((t, _, _)) if !user.covers(&t.site) => Err(forbidden_site(&t.site)),
        Some((t, events, alarms)) => {
            let evidence = s.store.evidence(id).await?;
            Ok(Json(json!({
                "ticket": TicketView::from(t),
                "events": events.into_iter().map(TicketEventView::from).collect::<Vec<_>>(),
                "alarms": alarms.into_iter().map(AlarmView::from).collect::<Vec<_>>(),
                "evidence": evidence,
            }))
            .into_response())
        }
        None => Err(ticket_not_found(id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    /// Why (说明), recorded with the step.
    #[serde(default)]
    note: String,
    step: crate::ticket::Action,
}

/// One step of the closed loop (登记, 挂牌, 整改, 复查, 验收, 销号, 延期, 重新打开),
/// by the logged-in user in their role, within their jurisdiction.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerParams {
    site: Option<String>,
    /// First day, `YYYY-MM-DD` (China time), inclusive.
    from: Option<String>,
    /// Last day, inclusive.
    to: Option<String>,
    status: Option<String>,
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

/// The hazard ledger (隐患台账) as CSV for Excel.
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
        from,
        to,
        status,
        grade: q.grade,
        limit: 1_000_000,
    };
    let mut rows = s.store.ledger(&query).await?;
    rows.retain(|r| user.covers(&r.site));
    let names = |id: &str| site_name(&s.config, id);
    let body = crate::ledger::csv(&rows, names);
    Ok(csv_download(
        format!(
            "ledger-{}.csv",
            crate::time::date_cst(crate::time::now_ms())
        ),
        body,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    /// `YYYY-MM`.
    month: String,
    site: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The monthly report (月报): per site, alarms by kind, tickets opened /
/// closed / overdue / still open, mean time to rectify, 重大 hazards.
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
    let names = |id: &str| site_name(&s.config, id);
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceParams {
    /// A caption for a file.
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceNote {
    note: String,
}

/// Attaches evidence (整改佐证) to a ticket: a JSON note `{"note": …}`, or a
/// photo or document as the request body (image/jpeg, image/png,
/// image/webp, application/pdf; at most 10 MiB), stored by content hash.
async fn add_evidence(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<EvidenceParams>, QueryRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<crate::store::EvidenceRow>, ApiError> {
    let id = path_id(id)?;
    let Query(q) = q.map_err(|e| bad_request("查询参数", e.body_text()))?;
    ticket_in_jurisdiction(&s, &user, id).await?;
    let role = crate::auth::role_code(user.role);
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let now = crate::time::now_ms();
    let row = if media.starts_with("application/json") {
        let n: EvidenceNote =
            serde_json::from_slice(&body).map_err(|e| bad_request("请求体", e))?;
        let note = n.note.trim();
        if note.is_empty() || note.chars().count() > 2000 {
            return Err(bad_request("说明", "须为 1–2000 个字符"));
        }
        s.store
            .add_evidence(id, &user.name, role, None, note, now)
            .await?
    } else {
        if body.len() > crate::evidence::MAX_BYTES {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "文件不能超过 10 MiB".into(),
            ));
        }
        let Some(actual) = crate::evidence::sniff(media, &body) else {
            return Err(ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_media_type",
                "只接受 JPEG、PNG、WebP 照片或 PDF 文件，且内容须与声明的类型一致".into(),
            ));
        };
        let note = q.note.unwrap_or_default();
        if note.chars().count() > 2000 {
            return Err(bad_request("说明", "最多 2000 个字符"));
        }
        let hash = crate::evidence::store(&s.config.storage.data_dir, &body)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot store an evidence file");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "文件暂时无法保存，请稍后重试".into(),
                )
            })?;
        s.store
            .add_evidence(
                id,
                &user.name,
                role,
                Some((actual, body.len() as i64, &hash)),
                note.trim(),
                now,
            )
            .await?
    };
    Ok(Json(row))
}

/// An evidence file, by its SHA-256, for a caller who covers a ticket it belongs to.
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
    if !sites.iter().any(|site| user.covers(site)) {
        return Err(forbidden_site(
            sites.first().map(String::as_str).unwrap_or(""),
        ));
    }
    let bytes = tokio::fs::read(crate::evidence::path(&s.config.storage.data_dir, &hash))
        .await
        .map_err(|_| not_found())?;
    Ok(([(header::CONTENT_TYPE, media)], bytes).into_response())
}

async fn sites(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
) -> Json<serde_json::Value> {
    Json(json!(s
        .config
        .sites
        .iter()
        .filter(|site| user.covers(&site.id))
        .map(|site| json!({
            "id": site.id,
            "name": site.name,
            "nodes": site.nodes.iter().map(|n| json!({"id": n.id, "location": n.location})).collect::<Vec<_>>(),
        }))
        .collect::<Vec<_>>()))
}

async fn events(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let rx = s.events.subscribe();
    let stream = futures_util::stream::unfold((rx, user), |(mut rx, user)| async move {
        let event = loop {
            match rx.recv().await {
                // Only what happens within the caller's jurisdiction.
                Ok(ev) if !user.covers(ev.site()) => continue,
                other => break other,
            }
        };
        let event = match event {
            Ok(ev) => {
                let name = match &ev {
                    GatewayEvent::AlarmRaised { .. } => "alarm_raised",
                    GatewayEvent::AlarmUpdated { .. } => "alarm_updated",
                    GatewayEvent::TicketUpdated { .. } => "ticket_updated",
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
        Some((Ok(event), (rx, user)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
