//! Alarms (报警): the list, acknowledgement and authorised reset, and the
//! notification delivery attempts (推送记录).

use super::{ask_pipeline, limit, path_id, query, ApiError, AppState, Caller, ErrorBody};
use crate::alarms::events::{AlarmView, GatewayEvent};
use crate::api::openapi::{BadRequest, Forbidden, NotFound};
use crate::auth::User;
use crate::store::AlarmFilter;
use crate::tickets::Role;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

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
pub(super) struct AlarmQuery {
    #[param(schema_with = crate::api::openapi::alarm_filter)]
    state: Option<String>,
    /// At most this many, newest first.
    #[param(minimum = 1, maximum = 10000, default = 500)]
    limit: Option<i64>,
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
pub(super) async fn alarms(
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

/// The alarm `id`, if it exists and lies within the caller's jurisdiction.
pub(super) async fn alarm_in_jurisdiction(
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
pub(super) async fn ack_alarm(
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
        .ack_as(id, &user.name, role, crate::domain::time::now_ms())
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
            description = "The gateway is stopping, or on a cluster the replica holding the site did not answer within 10 s (`pipeline_unavailable`), or the database is unavailable (`store_unavailable`)",
            body = ErrorBody
        ),
    )
)]
pub(super) async fn reset_alarm(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<AlarmView>, ApiError> {
    use crate::alarms::pipeline::{Command, ResetError};
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct NotificationQuery {
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
pub(super) async fn notifications(
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
