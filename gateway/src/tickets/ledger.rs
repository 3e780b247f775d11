//! The hazard ledger (隐患台账) as CSV: one row per ticket with the closed
//! loop's fields, in Chinese, UTF-8 with a byte-order mark so that Excel
//! opens it as UTF-8. Pure: rows in, text out.

use crate::domain::labels;
use crate::domain::time::rfc3339_cst;
use crate::store::TicketRow;

/// The column headings, in order.
pub const HEADINGS: [&str; 24] = [
    "编号",
    "机构",
    "位置",
    "节点",
    "回路",
    "隐患类别",
    "等级",
    "来源",
    "隐患描述",
    "状态",
    "发现时间",
    "整改期限",
    "责任单位",
    "责任人",
    "整改措施",
    "资金",
    "预案",
    "督办单位",
    "文号",
    "挂牌时间",
    "摘牌时间",
    "整改完成时间",
    "销号时间",
    "报警次数",
];

/// A field as CSV: quoted when it holds a comma, quote or line break, and
/// defused when it starts like a spreadsheet formula (`=`, `+`, `-`, `@`),
/// so an exported note can never run as a formula in Excel.
pub fn field(out: &mut String, value: &str) {
    let defuse = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = defuse || value.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if defuse {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

fn minute(ms: Option<i64>) -> String {
    // "2026-11-24T08:05:09.123+08:00" → "2026-11-24 08:05"
    ms.map(|m| {
        let t = rfc3339_cst(m.max(0) as u64);
        format!("{} {}", &t[..10], &t[11..16])
    })
    .unwrap_or_default()
}

/// The ledger for `rows`; `site_name` maps a site id to its display name.
pub fn csv(rows: &[TicketRow], site_name: impl Fn(&str) -> String) -> String {
    let mut out = String::from("\u{feff}");
    for (i, h) in HEADINGS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(h);
    }
    out.push_str("\r\n");
    for t in rows {
        let cells: [String; 24] = [
            t.number.clone(),
            site_name(&t.site),
            t.location.clone(),
            t.node.clone(),
            t.channel.clone(),
            labels::category(&t.category).to_string(),
            labels::grade(&t.grade).to_string(),
            labels::ticket_source(&t.source).to_string(),
            t.title.clone(),
            labels::ticket_status(&t.status).to_string(),
            minute(Some(t.opened_at)),
            minute(t.deadline),
            t.responsible_unit.clone().unwrap_or_default(),
            t.responsible_person.clone().unwrap_or_default(),
            t.measures.clone().unwrap_or_default(),
            t.funds.clone().unwrap_or_default(),
            t.contingency_plan.clone().unwrap_or_default(),
            t.supervisor.clone().unwrap_or_default(),
            t.document_no.clone().unwrap_or_default(),
            minute(t.listed_at),
            minute(t.delisted_at),
            minute(t.rectified_at),
            minute(t.closed_at),
            t.alarm_count.to_string(),
        ];
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, c);
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> TicketRow {
        TicketRow {
            id: 1,
            number: "YH20251125-00001".into(),
            site: "home_a".into(),
            node: "n01".into(),
            channel: "rc1".into(),
            cause: "residual_current_high".into(),
            source: "sensor_alarm".into(),
            category: "electrical_fire".into(),
            grade: "major".into(),
            status: "listed".into(),
            title: "厨房回路, \"剩余电流\"超限\n第二行".into(),
            location: "2号楼厨房配电箱".into(),
            opened_at: 1_764_000_000_000,
            updated_at: 1_764_000_000_000,
            closed_at: None,
            alarm_count: 2,
            last_alarm_at: 1_764_000_000_000,
            sensor_sourced: true,
            deadline: Some(1_764_086_400_000),
            responsible_unit: Some("=HYPERLINK(\"http://x\")".into()),
            responsible_person: Some("王主任".into()),
            measures: None,
            funds: Some("-3000".into()),
            contingency_plan: None,
            supervisor: Some("区民政局".into()),
            document_no: Some("民安督〔2026〕7号".into()),
            listed_at: Some(1_764_000_060_000),
            delisted_at: None,
            rectified_at: None,
            reviewed: false,
            extension_requested: None,
            overdue_at: None,
            escalated_to: None,
        }
    }

    #[test]
    fn ledger_is_excel_ready_utf8_with_escaping_and_no_formulas() {
        let text = csv(&[row()], |s| {
            if s == "home_a" {
                "阳光养老院".into()
            } else {
                s.into()
            }
        });
        assert!(text.starts_with("\u{feff}编号,机构,位置,"));
        let line = text.split("\r\n").nth(1).unwrap();
        assert!(line.starts_with("YH20251125-00001,阳光养老院,2号楼厨房配电箱,n01,rc1,电气火灾隐患,重大隐患,监测报警,"), "{line}");
        assert!(
            text.contains("\"厨房回路, \"\"剩余电流\"\"超限\n第二行\""),
            "quoted, quotes doubled, newline kept"
        );
        assert!(
            text.contains(",已挂牌,2025-11-25 00:00,2025-11-26 00:00,"),
            "{text}"
        );
        assert!(
            text.contains("\"'=HYPERLINK(\"\"http://x\"\")\""),
            "formula defused: {text}"
        );
        assert!(text.contains(",\"'-3000\","), "{text}");
        assert!(text.ends_with(",2\r\n"));
        assert_eq!(text.matches("\r\n").count(), 2);
    }
}
