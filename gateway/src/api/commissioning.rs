//! Commissioning (安装调试): baselines and recommended setpoints, setpoint
//! changes, the commissioning report (JSON, CSV, printable page) and its
//! sign-off.

use super::{ask_pipeline, bad_request, path_of, within, ApiError, AppState, Caller, ErrorBody};
use crate::api::openapi::{BadRequest, Forbidden};
use crate::auth::User;
use crate::store::AlarmFilter;
use crate::tickets::Role;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One loop's baseline learning (基线学习) and recommended setpoints.
#[derive(Serialize, ToSchema)]
#[schema(as = ChannelBaseline)]
pub(super) struct BaselineView {
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
    baseline: Option<crate::alarms::baseline::Baseline>,
    recommendation: Option<crate::alarms::baseline::Recommendation>,
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
pub(super) async fn baselines(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<BaselineView>>, ApiError> {
    let site = path_of(site)?;
    within(&user, &site)?;
    let window_ms = i64::from(s.config.commissioning.baseline_hours) * 3_600_000;
    let now = crate::domain::time::now_ms() as i64;
    let applied = s.store.setpoints_in_force().await?;
    let applied_to = |node: &str, ch: &str| {
        applied
            .iter()
            .find(|a| a.site == site && a.node == node && a.channel == ch)
            .cloned()
    };
    let mut out = Vec::new();
    for b in s.store.baselines(&site).await? {
        let baseline: Option<crate::alarms::baseline::Baseline> =
            serde_json::from_str(&b.baseline).ok();
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
pub(super) struct SetpointBody {
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
        (status = SERVICE_UNAVAILABLE, description = "The gateway is stopping, or on a cluster the replica holding the site did not answer within 10 s (`pipeline_unavailable`)", body = ErrorBody),
    )
)]
pub(super) async fn apply_setpoints(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
    body: Result<Json<SetpointBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::store::SetpointRow>, ApiError> {
    use crate::alarms::pipeline::{Command, SetpointError};
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
pub(super) async fn assemble_commissioning(
    s: &AppState,
    site: &str,
) -> Result<crate::commissioning::report::Report, ApiError> {
    use crate::commissioning::report::{ChannelLine, NodeBlock, Report};
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
        .filter(|a| a.cause == crate::alarms::runtime::CAUSE_FAULT)
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
        let test_results: Vec<crate::alarms::selftest::ChannelResult> = test
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
            label: crate::commissioning::artefact::label(site, &n.id).unwrap_or_default(),
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
pub(super) struct CommissioningView {
    report: crate::commissioning::report::Report,
    /// SHA-256 of `report` as it is now.
    report_sha256: String,
    signoffs: Vec<crate::commissioning::report::SignOff>,
}

/// A site's report as it is now and its sign-offs, within the caller's jurisdiction.
pub(super) async fn report_of(
    s: &AppState,
    user: &User,
    site: Result<Path<String>, PathRejection>,
) -> Result<
    (
        String,
        crate::commissioning::report::Report,
        Vec<crate::commissioning::report::SignOff>,
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
pub(super) async fn commissioning_report(
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
pub(super) async fn commissioning_csv(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (site, report, signoffs) = report_of(&s, &user, site).await?;
    let body = crate::commissioning::report::csv(&report, &signoffs);
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
pub(super) async fn commissioning_html(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (_, report, signoffs) = report_of(&s, &user, site).await?;
    let body = crate::commissioning::report::html(
        &report,
        &signoffs,
        crate::domain::time::now_ms() as i64,
    );
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

/// The sign-off body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SignOffBody {
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
        (status = OK, description = "Signed", body = crate::commissioning::report::SignOff),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, description = "No such site (`not_found`)", body = ErrorBody),
        (status = CONFLICT, description = "Not every channel passed (`not_ready`)", body = ErrorBody),
    )
)]
pub(super) async fn sign_commissioning(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
    body: Result<Json<SignOffBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::commissioning::report::SignOff>, ApiError> {
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
                &report.signed(),
                crate::domain::time::now_ms(),
            )
            .await?,
    ))
}
