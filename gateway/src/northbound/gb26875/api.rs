//! The duty desk's API for the GB/T 26875.3 links: which links are down
//! (链路故障) and the centre's duty checks (查岗), and the duty officer's
//! answer. The [`DutyDesk`] reaches the handlers as an axum extension
//! (`app.rs`), within the caller's jurisdiction.

use super::duty::{AnswerError, DutyCheck, DutyDesk, LinkState};
use crate::auth::User;
use crate::tickets::Role;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use std::sync::Arc;

/// Links and duty checks of the caller's sites.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NorthboundStatus {
    pub links: Vec<LinkState>,
    /// Newest first, at most 20.
    pub duty_checks: Vec<DutyCheck>,
}

fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// The 消防远程监控中心 links and 查岗 of the caller's sites.
#[utoipa::path(
    get,
    path = "/api/v1/northbound/gb26875",
    tag = "alarms",
    responses((status = OK, description = "Links (a 链路故障 note while down) and duty checks", body = NorthboundStatus))
)]
pub async fn status(
    Extension(user): Extension<User>,
    Extension(desk): Extension<Arc<DutyDesk>>,
) -> Json<NorthboundStatus> {
    let links = desk
        .links()
        .into_iter()
        .filter(|l| user.covers(&l.site))
        .collect();
    let duty_checks = desk
        .checks(user.sites.as_deref(), crate::domain::time::now_ms())
        .into_iter()
        .take(20)
        .collect();
    Json(NorthboundStatus { links, duty_checks })
}

/// Answer a duty check (查岗应答): the centre gets a type-24 record with the
/// 查岗应答 bit; who and how fast go into the audit trail. Duty officers and
/// site managers only.
#[utoipa::path(
    post,
    path = "/api/v1/northbound/gb26875/duty-checks/{id}/answer",
    tag = "alarms",
    params(("id" = u64, Path, description = "The duty check's id")),
    responses(
        (status = OK, description = "Answered", body = DutyCheck),
        (status = FORBIDDEN, description = "Not a duty officer or site manager of the site"),
        (status = NOT_FOUND, description = "No such duty check"),
        (status = CONFLICT, description = "Already answered (`answered`) or past the centre's window (`missed`)"),
    )
)]
pub async fn answer(
    Extension(user): Extension<User>,
    Extension(desk): Extension<Arc<DutyDesk>>,
    Path(id): Path<u64>,
) -> Response {
    if !matches!(user.role, Role::Duty | Role::SiteManager) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "只有值班员或机构负责人可以应答查岗",
        );
    }
    let now = crate::domain::time::now_ms();
    let Some(check) = desk.checks(None, now).into_iter().find(|c| c.id == id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "查岗记录不存在");
    };
    if !user.covers(&check.site) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("机构 {} 不在您的管辖范围内", check.site),
        );
    }
    match desk.answer(id, &user.name, now).await {
        Ok(c) => Json(c).into_response(),
        Err(AnswerError::Unknown) => error(StatusCode::NOT_FOUND, "not_found", "查岗记录不存在"),
        Err(AnswerError::Answered) => error(StatusCode::CONFLICT, "answered", "该查岗已应答"),
        Err(AnswerError::Missed) => error(
            StatusCode::CONFLICT,
            "missed",
            "已超过监控中心规定的应答时限",
        ),
    }
}
