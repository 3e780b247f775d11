//! Trends for the bureau and the duty desk: latest readings, weekly
//! counts, site risk grades and daily maxima per channel.

use super::{bad_request, query, within, ApiError, AppState, Caller};
use crate::api::openapi::{BadRequest, Forbidden};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TrendQuery {
    /// The site (机构).
    site: String,
    /// A wire quantity; default residual_current.
    #[param(schema_with = crate::api::openapi::quantity)]
    quantity: Option<String>,
    /// How many days back from today (China time), today included.
    #[param(minimum = 1, maximum = 366, default = 30)]
    days: Option<u32>,
}

/// Each channel's daily maximum at a site (e.g. residual current per loop
/// over 30/90/365 days), from the hourly rollups the gateway keeps itself.
#[derive(Serialize, ToSchema)]
pub(super) struct DailyMaxTrend {
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
pub(super) async fn latest_readings(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
) -> Result<Json<Vec<crate::store::LatestRow>>, ApiError> {
    Ok(Json(s.store.latest_in(user.sites.as_deref()).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WeeklyQuery {
    /// One site only (else every site in the jurisdiction).
    site: Option<String>,
    /// How many weeks, the current one included.
    #[param(minimum = 1, maximum = 104, default = 12)]
    weeks: Option<u32>,
}

/// Weekly counts: alarms by kind and tickets opened, closed and overdue.
#[derive(Serialize, ToSchema)]
pub(super) struct WeeklyCounts {
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
pub(super) async fn weekly(
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
    use crate::domain::time::{week_start_cst, WEEK_MS};
    let this_week = week_start_cst(crate::domain::time::now_ms() as i64);
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
    let labels = weeks
        .iter()
        .map(|w| crate::domain::time::day_cst(*w))
        .collect();
    Ok(Json(WeeklyCounts {
        weeks,
        labels,
        alarms,
        tickets,
    }))
}

/// A site's risk grade (风险分级) and the figures behind it.
#[derive(Serialize, ToSchema)]
pub(super) struct SiteRisk {
    site: String,
    name: String,
    /// red, orange, yellow or blue.
    grade: &'static str,
    /// 红 · 重大风险, 橙 · 较大风险, 黄 · 一般风险, 蓝 · 低风险.
    grade_label: &'static str,
    #[serde(flatten)]
    figures: crate::tickets::risk::Figures,
}

/// Every site in the caller's jurisdiction graded 红/橙/黄/蓝 from its open
/// hazards, overdue tickets and fire alarms of the last 30 days.
#[utoipa::path(
    get,
    path = "/api/v1/sites/risk",
    tag = "sites",
    responses((status = OK, description = "Risk per site", body = Vec<SiteRisk>)),
)]
pub(super) async fn site_risk(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
) -> Result<Json<Vec<SiteRisk>>, ApiError> {
    let since = crate::domain::time::now_ms() as i64 - 30 * crate::domain::time::DAY_MS;
    let mut figures = s.store.risk_figures(since).await?;
    Ok(Json(
        s.live
            .config()
            .sites
            .iter()
            .filter(|site| user.covers(&site.id))
            .map(|site| {
                let f = figures.remove(&site.id).unwrap_or_default();
                let grade = crate::tickets::risk::grade(&f);
                SiteRisk {
                    site: site.id.clone(),
                    name: site.name.clone(),
                    grade,
                    grade_label: crate::tickets::risk::label(grade),
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
pub(super) async fn daily_max(
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
    use crate::domain::time::{day_cst, day_start_cst, DAY_MS};
    let tomorrow = day_start_cst(crate::domain::time::now_ms() as i64) + DAY_MS;
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
