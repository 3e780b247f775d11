//! Figures counted in SQL over all the data: weekly counts for the bureau's
//! charts, site risk figures, the ledger (台账) export and the monthly
//! report's figures.

use super::tickets::{TicketFilter, TicketRow, TICKET_COLUMNS};
use super::{query_as, sites_json, Store, StoreError};

/// Raw figures of a monthly report, per site.
#[derive(Debug, Clone)]
pub struct ReportFigures {
    /// (site, alarm kind, count raised in the period).
    pub alarms: Vec<(String, String, i64)>,
    /// (site, opened, closed, overdue, open at the end, mean hours to close).
    pub tickets: Vec<(String, i64, i64, i64, i64, Option<f64>)>,
    /// 重大 hazards open at some point in the period.
    pub major: Vec<TicketRow>,
}

/// Filters of the ledger export.
#[derive(Debug, Clone)]
pub struct LedgerQuery {
    pub site: Option<String>,
    /// The caller's jurisdiction: only these sites (`None` = every site).
    pub sites: Option<Vec<String>>,
    /// Opened at or after (ms).
    pub from: Option<i64>,
    /// Opened before (ms).
    pub to: Option<i64>,
    pub status: TicketFilter,
    pub grade: Option<String>,
    pub limit: i64,
}

impl Store {
    /// Weekly counts since `from` (a week start), for some sites (`None` =
    /// all): (week start, what, count), where `what` is an alarm kind, or
    /// `opened`/`closed`/`overdue` for tickets. Weeks start Monday 00:00
    /// China time.
    pub async fn weekly_counts(
        &self,
        sites: Option<&[String]>,
        from: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        // time::week_start_cst, in SQL (times are never negative here).
        use crate::domain::time::{WEEK_MS as WEEK, WEEK_SQL_SHIFT_MS as SHIFT};
        let bucket = |col: &str| format!("((({col} + {SHIFT}) / {WEEK}) * {WEEK} - {SHIFT})");
        let site_in = self.backend.site_in("?1");
        let mut out = Vec::new();
        let alarms = format!(
            "SELECT {b} AS w, kind, COUNT(*) FROM alarms WHERE raised_at >= ?2 AND (?1 IS NULL OR {site_in}) \
             GROUP BY {b}, kind",
            b = bucket("raised_at")
        );
        out.extend(
            query_as::<(i64, String, i64)>(&alarms)
                .bind(sites_json(sites))
                .bind(from)
                .fetch_all(&self.pool)
                .await?,
        );
        for (what, col) in [
            ("opened", "opened_at"),
            ("closed", "closed_at"),
            ("overdue", "overdue_at"),
        ] {
            let sql = format!(
                "SELECT {b} AS w, COUNT(*) FROM tickets WHERE {col} >= ?2 AND (?1 IS NULL OR {site_in}) GROUP BY {b}",
                b = bucket(col)
            );
            let rows: Vec<(i64, i64)> = query_as(&sql)
                .bind(sites_json(sites))
                .bind(from)
                .fetch_all(&self.pool)
                .await?;
            out.extend(rows.into_iter().map(|(w, n)| (w, what.to_string(), n)));
        }
        Ok(out)
    }

    /// The figures behind each site's risk grade, for sites with any.
    pub async fn risk_figures(
        &self,
        since: i64,
    ) -> Result<std::collections::BTreeMap<String, crate::domain::risk::Figures>, StoreError> {
        let tickets: Vec<(String, i64, i64, i64, i64)> = query_as(
            "SELECT site, COUNT(*), \
             COUNT(CASE WHEN category IN ('electrical_fire', 'fire_facility') THEN 1 END), \
             COUNT(CASE WHEN category IN ('electrical_fire', 'fire_facility') AND grade = 'major' THEN 1 END), \
             COUNT(CASE WHEN overdue_at IS NOT NULL THEN 1 END) \
             FROM tickets WHERE status <> 'closed' GROUP BY site",
        )
        .fetch_all(&self.pool)
        .await?;
        let alarms: Vec<(String, i64)> = query_as(
            "SELECT site, COUNT(*) FROM alarms WHERE raised_at >= ? AND level = 'alarm' \
             AND kind IN ('electrical_fire', 'fire_facility') GROUP BY site",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut out: std::collections::BTreeMap<String, crate::domain::risk::Figures> =
            Default::default();
        for (site, open, hazards, major, overdue) in tickets {
            let f = out.entry(site).or_default();
            (f.open, f.hazards, f.major, f.overdue) = (open, hazards, major, overdue);
        }
        for (site, n) in alarms {
            out.entry(site).or_default().recent_alarms = n;
        }
        Ok(out)
    }

    /// Tickets for the ledger (台账), oldest first, filtered by site, the
    /// caller's jurisdiction, the period they were opened in, status and
    /// grade; the jurisdiction is applied in the query, before the limit.
    pub async fn ledger(&self, q: &LedgerQuery) -> Result<Vec<TicketRow>, StoreError> {
        let (status_cond, status) = q.status.condition("?7");
        let site_in = self.backend.site_in("?6");
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE {status_cond} AND (?1 IS NULL OR site = ?1) \
             AND (?6 IS NULL OR {site_in}) \
             AND (?2 IS NULL OR opened_at >= ?2) AND (?3 IS NULL OR opened_at < ?3) AND (?4 IS NULL OR grade = ?4) \
             ORDER BY opened_at, id LIMIT ?5"
        );
        let query = query_as(&sql)
            .bind(q.site.as_deref())
            .bind(q.from)
            .bind(q.to)
            .bind(q.grade.as_deref())
            .bind(q.limit)
            .bind(sites_json(q.sites.as_deref()));
        let query = match status {
            Some(s) => query.bind(s),
            None => query,
        };
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// Figures of the monthly report for `[from, to)`, per site (one site,
    /// or all when `site` is `None`).
    pub async fn report_figures(
        &self,
        site: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<ReportFigures, StoreError> {
        let alarms: Vec<(String, String, i64)> = query_as(
            "SELECT site, kind, COUNT(*) FROM alarms WHERE raised_at >= ? AND raised_at < ? AND (? IS NULL OR site = ?) \
             GROUP BY site, kind ORDER BY site, kind",
        )
        .bind(from)
        .bind(to)
        .bind(site)
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        let tickets: Vec<(String, i64, i64, i64, i64, Option<f64>)> = query_as(
            "SELECT site, \
               COUNT(CASE WHEN opened_at >= ?1 AND opened_at < ?2 THEN 1 END), \
               COUNT(CASE WHEN closed_at >= ?1 AND closed_at < ?2 THEN 1 END), \
               COUNT(CASE WHEN overdue_at IS NOT NULL AND overdue_at < ?2 AND (closed_at IS NULL OR closed_at >= ?1) THEN 1 END), \
               COUNT(CASE WHEN opened_at < ?2 AND (closed_at IS NULL OR closed_at >= ?2) THEN 1 END), \
               CAST(AVG(CASE WHEN closed_at >= ?1 AND closed_at < ?2 THEN (closed_at - opened_at) / 3600000.0 END) AS DOUBLE PRECISION) \
             FROM tickets WHERE (?3 IS NULL OR site = ?3) GROUP BY site ORDER BY site",
        )
        .bind(from)
        .bind(to)
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        let major = query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE grade = 'major' AND opened_at < ? \
             AND (closed_at IS NULL OR closed_at >= ?) AND (? IS NULL OR site = ?) ORDER BY site, opened_at"
        ))
        .bind(to)
        .bind(from)
        .bind(site)
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        Ok(ReportFigures {
            alarms,
            tickets,
            major,
        })
    }
}
