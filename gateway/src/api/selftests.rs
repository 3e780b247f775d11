//! End-to-end self-tests (自检) of nodes: starting one and reading the results.

use super::{
    ask_pipeline, limit, path_id, path_of, query, within, ApiError, AppState, Caller, ErrorBody,
};
use crate::api::openapi::{BadRequest, Forbidden};
use crate::tickets::Role;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    pub channels: Vec<crate::alarms::selftest::ChannelResult>,
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
pub(super) struct SelfTestStarted {
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
        (status = SERVICE_UNAVAILABLE, description = "The gateway is stopping, or on a cluster the replica holding the site did not answer within 10 s (`pipeline_unavailable`)", body = ErrorBody),
    )
)]
pub(super) async fn start_selftest(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(StatusCode, Json<SelfTestStarted>), ApiError> {
    use crate::alarms::pipeline::{Command, SelfTestError};
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
pub(super) struct SelfTestQuery {
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
pub(super) async fn selftests(
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
pub(super) async fn selftest(
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
