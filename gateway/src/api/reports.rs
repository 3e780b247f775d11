//! Reports: the hazard ledger (隐患台账) as CSV and the monthly report (月报).

use super::{bad_request, within, ApiError, AppState, Caller};
use crate::api::openapi::{BadRequest, Forbidden};
use crate::config::Config;
use crate::store::TicketFilter;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct LedgerParams {
    /// One site only (within the caller's jurisdiction).
    site: Option<String>,
    /// First day opened, `YYYY-MM-DD` (China time), inclusive.
    #[param(format = Date)]
    from: Option<String>,
    /// Last day opened, inclusive.
    #[param(format = Date)]
    to: Option<String>,
    /// open, closed, all (default), or one status code.
    #[param(schema_with = crate::api::openapi::ticket_filter)]
    status: Option<String>,
    #[param(value_type = Option<crate::tickets::Grade>)]
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
pub(super) async fn ledger(
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
                crate::domain::time::parse_date_cst(d)
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
    let body = crate::tickets::ledger::csv(&rows, names);
    Ok(csv_download(
        format!(
            "ledger-{}.csv",
            crate::domain::time::date_cst(crate::domain::time::now_ms())
        ),
        body,
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ReportParams {
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
            (crate::tickets::report::MonthlyReport = "application/json"),
            (String = "text/csv"),
        )),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
    )
)]
pub(super) async fn monthly_report(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    q: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| bad_request("查询参数", e.body_text()))?;
    if let Some(site) = &q.site {
        within(&user, site)?;
    }
    let (from, to) = crate::tickets::report::month_range(&q.month)
        .ok_or_else(|| bad_request("月份", format!("{:?} 不是 YYYY-MM", q.month)))?;
    let figures = s.store.report_figures(q.site.as_deref(), from, to).await?;
    let names = |id: &str| site_name(&s.live.config(), id);
    let mut report = crate::tickets::report::monthly(&q.month, &figures, names);
    report.sites.retain(|r| user.covers(&r.site));
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(report).into_response()),
        "csv" => Ok(csv_download(
            format!("report-{}.csv", q.month),
            crate::tickets::report::csv(&report),
        )),
        other => Err(bad_request("格式", format!("{other:?} 应为 json 或 csv"))),
    }
}
