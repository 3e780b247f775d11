//! The shift log (交接班记录): handover notes per site.

use super::{bad_request, limit, query, within, ApiError, AppState, Caller};
use crate::api::openapi::{BadRequest, Forbidden};
use crate::tickets::Role;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ShiftLogQuery {
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
pub(super) struct ShiftNoteBody {
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
pub(super) async fn shift_notes(
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
pub(super) async fn add_shift_note(
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
            .add_shift_note(
                &b.site,
                &user.name,
                role,
                text,
                crate::domain::time::now_ms(),
            )
            .await?,
    ))
}
