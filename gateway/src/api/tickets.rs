//! Hazard tickets (隐患工单): the list, one ticket with its trail, and the
//! steps of the closed loop.

use super::{bad_request, limit, path_id, query, ApiError, AppState, Caller, ErrorBody};
use crate::alarms::events::{AlarmView, GatewayEvent, TicketEventView, TicketView};
use crate::api::openapi::{BadRequest, NotFound};
use crate::auth::User;
use crate::domain::labels::TICKET_STATUSES;
use crate::store::TicketFilter;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TicketQuery {
    /// open, closed, all (default), or one status code.
    #[param(schema_with = crate::api::openapi::ticket_filter)]
    status: Option<String>,
    /// At most this many, newest first.
    #[param(minimum = 1, maximum = 10000, default = 500)]
    limit: Option<i64>,
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
pub(super) async fn ticket_in_jurisdiction(
    s: &AppState,
    user: &User,
    id: i64,
) -> Result<(), ApiError> {
    match s.store.ticket(id).await? {
        Some((t, _, _)) if user.covers(&t.site) => Ok(()),
        _ => Err(ticket_not_found(id)),
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
pub(super) async fn tickets(
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
pub(super) struct TicketDetail {
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
pub(super) async fn ticket(
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
            let actions = crate::tickets::offered(
                &t.machine(),
                user.role,
                &s.config.tickets.policy(),
                crate::domain::time::now_ms(),
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
pub(super) struct TransitionBody {
    /// Why (说明), recorded with the step.
    #[serde(default)]
    #[schema(max_length = 2000)]
    note: String,
    /// The step; `action` says which. Times are ms since the epoch.
    step: crate::tickets::Action,
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
pub(super) async fn transition_ticket(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<Json<TicketView>, ApiError> {
    use crate::store::{Actor, TransitionError};
    use crate::tickets::Refusal;
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
    if let Err(too_long) = crate::tickets::limits::check(&body.step) {
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
            crate::domain::time::now_ms(),
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
