//! The monthly report (月报) the seeds ask institutions and bureaus to
//! submit: per site, alarms by kind, tickets opened / closed / overdue /
//! still open, mean time to rectify, and the 重大 hazards with their 督办
//! status. Pure: figures in, report (JSON or CSV) out.

use crate::domain::labels;
use crate::domain::time::rfc3339_cst;
use crate::store::ReportFigures;
use serde::Serialize;
use std::collections::BTreeMap;

/// One site's month.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SiteReport {
    pub site: String,
    pub site_name: String,
    /// Alarm kind → count (electrical_fire, fire_facility, fault, offline).
    pub alarms: BTreeMap<String, i64>,
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub tickets_overdue: i64,
    pub tickets_open_at_end: i64,
    /// Mean hours from opening to 销号 of the tickets closed in the month.
    pub mean_hours_to_close: Option<f64>,
    pub major_hazards: Vec<MajorHazard>,
}

/// A 重大 hazard open at some point in the month, with its 督办 status.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct MajorHazard {
    pub number: String,
    pub title: String,
    #[schema(value_type = crate::tickets::Status)]
    pub status: String,
    pub status_label: &'static str,
    /// 督办单位 and 文号 once listed (挂牌).
    pub supervisor: Option<String>,
    pub document_no: Option<String>,
    pub deadline: Option<String>,
    pub overdue: bool,
}

/// The monthly report (月报), per site.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct MonthlyReport {
    /// `YYYY-MM`.
    pub month: String,
    pub sites: Vec<SiteReport>,
}

/// Assembles the report; `site_name` maps ids to display names.
pub fn monthly(
    month: &str,
    f: &ReportFigures,
    site_name: impl Fn(&str) -> String,
) -> MonthlyReport {
    let mut sites: BTreeMap<String, SiteReport> = BTreeMap::new();
    fn entry<'a>(
        sites: &'a mut BTreeMap<String, SiteReport>,
        id: &str,
        name: &dyn Fn(&str) -> String,
    ) -> &'a mut SiteReport {
        sites.entry(id.to_string()).or_insert_with(|| SiteReport {
            site: id.to_string(),
            site_name: name(id),
            ..Default::default()
        })
    }
    for (site, kind, n) in &f.alarms {
        *entry(&mut sites, site, &site_name)
            .alarms
            .entry(kind.clone())
            .or_default() += n;
    }
    for (site, opened, closed, overdue, open_at_end, mean) in &f.tickets {
        let r = entry(&mut sites, site, &site_name);
        r.tickets_opened = *opened;
        r.tickets_closed = *closed;
        r.tickets_overdue = *overdue;
        r.tickets_open_at_end = *open_at_end;
        r.mean_hours_to_close = mean.map(|h| (h * 10.0).round() / 10.0);
    }
    for t in &f.major {
        entry(&mut sites, &t.site, &site_name)
            .major_hazards
            .push(MajorHazard {
                number: t.number.clone(),
                title: t.title.clone(),
                status: t.status.clone(),
                status_label: labels::ticket_status(&t.status),
                supervisor: t.supervisor.clone(),
                document_no: t.document_no.clone(),
                deadline: t
                    .deadline
                    .map(|d| rfc3339_cst(d.max(0) as u64)[..10].to_string()),
                overdue: t.overdue_at.is_some(),
            });
    }
    MonthlyReport {
        month: month.to_string(),
        sites: sites.into_values().collect(),
    }
}

/// The report as CSV (UTF-8 with BOM for Excel), one row per site.
pub fn csv(r: &MonthlyReport) -> String {
    let mut out = String::from("\u{feff}月份,机构,电气火灾报警,消防设施报警,设备故障,设备离线,新增隐患,销号隐患,逾期隐患,期末未销号,平均整改时长(小时),重大隐患(督办情况)\r\n");
    for s in &r.sites {
        let n = |k: &str| s.alarms.get(k).copied().unwrap_or(0).to_string();
        let major: Vec<String> = s
            .major_hazards
            .iter()
            .map(|m| {
                let listed = match (&m.supervisor, &m.document_no) {
                    (Some(sup), Some(doc)) => format!("{sup}挂牌督办 {doc}"),
                    _ => "未挂牌".to_string(),
                };
                format!(
                    "{} {} {}{}",
                    m.number,
                    m.status_label,
                    listed,
                    if m.overdue { " 已逾期" } else { "" }
                )
            })
            .collect();
        let cells = [
            r.month.clone(),
            s.site_name.clone(),
            n("electrical_fire"),
            n("fire_facility"),
            n("fault"),
            n("offline"),
            s.tickets_opened.to_string(),
            s.tickets_closed.to_string(),
            s.tickets_overdue.to_string(),
            s.tickets_open_at_end.to_string(),
            s.mean_hours_to_close
                .map(|h| format!("{h:.1}"))
                .unwrap_or_default(),
            major.join("；"),
        ];
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::tickets::ledger::field(&mut out, c);
        }
        out.push_str("\r\n");
    }
    out
}

/// The `[from, to)` of a `YYYY-MM` month in China time, in ms.
pub fn month_range(month: &str) -> Option<(i64, i64)> {
    let (y, m) = month.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    if !(1..=12).contains(&m) {
        return None;
    }
    let from = crate::domain::time::parse_date_cst(&format!("{y:04}-{m:02}-01"))?;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let to = crate::domain::time::parse_date_cst(&format!("{ny:04}-{nm:02}-01"))?;
    Some((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_china_time_and_bad_ones_refused() {
        let (from, to) = month_range("2025-11").unwrap();
        assert_eq!(rfc3339_cst(from as u64), "2025-11-01T00:00:00.000+08:00");
        assert_eq!(rfc3339_cst(to as u64), "2025-12-01T00:00:00.000+08:00");
        let (_, to) = month_range("2025-12").unwrap();
        assert_eq!(rfc3339_cst(to as u64), "2026-01-01T00:00:00.000+08:00");
        for bad in ["2025-13", "2025-1", "25-11", "2025/11", ""] {
            assert_eq!(month_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn figures_become_one_row_per_site() {
        let f = ReportFigures {
            alarms: vec![
                ("home_a".into(), "electrical_fire".into(), 3),
                ("home_a".into(), "fault".into(), 1),
                ("home_b".into(), "offline".into(), 2),
            ],
            tickets: vec![
                ("home_a".into(), 4, 2, 1, 2, Some(50.04)),
                ("home_b".into(), 0, 0, 0, 0, None),
            ],
            major: vec![],
        };
        let r = monthly("2025-11", &f, |s| {
            if s == "home_a" {
                "阳光养老院".into()
            } else {
                s.into()
            }
        });
        assert_eq!(r.sites.len(), 2);
        assert_eq!(r.sites[0].site_name, "阳光养老院");
        assert_eq!(r.sites[0].mean_hours_to_close, Some(50.0));
        let text = csv(&r);
        assert!(
            text.contains("\r\n2025-11,阳光养老院,3,0,1,0,4,2,1,2,50.0,\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\n2025-11,home_b,0,0,0,2,0,0,0,0,,\r\n"),
            "{text}"
        );
    }
}
