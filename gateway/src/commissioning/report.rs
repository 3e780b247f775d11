//! The commissioning report (调试验收报告) of a site: every node and
//! channel with its location, wiring check, self-test result and path
//! latency, learned baseline and the setpoints in force, who installed and
//! when — and the site manager's sign-off, which fixes the report's
//! SHA-256 in the audit trail so the signed version can be shown later.
//! JSON for programs, CSV for spreadsheets, a printable HTML page for the
//! file (no PDF: browsers print the page). Pure: rows in, report out.

use crate::alarms::baseline::{Baseline, Recommendation};
use crate::alarms::selftest::ChannelResult;
use crate::domain::time::minute_cst;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// One channel's line.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ChannelLine {
    pub channel: String,
    pub quantity: String,
    /// CT ratio or sensor type, as registered.
    pub sensor: Option<String>,
    /// 正常 / 开路 / 短路 / … from the latest reading, or 无数据.
    pub wiring: String,
    /// The latest self-test's result for this channel.
    pub selftest: Option<ChannelResult>,
    /// When that self-test ran (ms).
    pub selftest_at: Option<i64>,
    pub baseline: Option<Baseline>,
    pub recommendation: Option<Recommendation>,
    /// Setpoints in force: from a run-time change, or the configured rule.
    pub pre_alarm: Option<i64>,
    pub alarm: Option<i64>,
    /// `applied` (a recorded change: who and when below) or `configured`.
    pub setpoints_from: String,
    pub setpoints_by: Option<String>,
    pub setpoints_at: Option<i64>,
}

/// One node's block.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct NodeBlock {
    pub node: String,
    pub location: String,
    /// The label text (QR-code alphanumeric).
    pub label: String,
    /// Who registered it and when (registered nodes).
    pub installed_by: Option<String>,
    pub installed_at: Option<i64>,
    pub channels: Vec<ChannelLine>,
}

/// The site manager's sign-off (验收签字): a row of the store.
pub use crate::store::SignOff;

/// A site's commissioning report.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Report {
    pub site: String,
    pub site_name: String,
    pub nodes: Vec<NodeBlock>,
    /// Channels, and how many passed their latest self-test.
    pub channels: usize,
    pub selftest_passed: usize,
    /// Every channel tested and passed, and no wiring fault.
    pub ready: bool,
}

impl Report {
    /// Fills the totals from the nodes.
    pub fn totals(mut self) -> Report {
        let lines = self.nodes.iter().flat_map(|n| n.channels.iter());
        self.channels = lines.clone().count();
        self.selftest_passed = lines
            .clone()
            .filter(|c| c.selftest.as_ref().is_some_and(|t| t.passed))
            .count();
        self.ready = self.channels > 0
            && self.selftest_passed == self.channels
            && lines.clone().all(|c| c.wiring == "正常");
        self
    }

    /// The report as the store keeps it when it is signed.
    pub fn signed(&self) -> crate::store::SignedReport {
        crate::store::SignedReport {
            sha256: self.sha256(),
            json: serde_json::to_string(self).unwrap_or_default(),
            channels: self.channels,
            selftest_passed: self.selftest_passed,
        }
    }

    /// SHA-256 of the report's JSON, hex: what a sign-off fixes.
    pub fn sha256(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&json)
            .iter()
            .fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

fn opt(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn when(v: Option<i64>) -> String {
    v.map(minute_cst).unwrap_or_default()
}

fn selftest_text(c: &ChannelLine) -> String {
    match &c.selftest {
        None => "未自检".into(),
        Some(t) if t.passed => format!("通过（{} ms）", opt(t.latency_ms.map(|l| l as i64))),
        Some(t) => format!("未通过：{}", t.reason.clone().unwrap_or_default()),
    }
}

fn baseline_text(c: &ChannelLine) -> String {
    match &c.baseline {
        Some(b) if b.hours > 0 && b.p95 > 0 => {
            format!("P50 {} / P95 {}（{} 小时）", b.p50, b.p95, b.hours)
        }
        Some(_) => "数据不足".into(),
        None => "学习中".into(),
    }
}

const CSV_HEADER: [&str; 15] = [
    "机构",
    "节点",
    "位置",
    "安装人员",
    "安装时间",
    "通道",
    "测量量",
    "互感器/传感器",
    "接线检查",
    "自检结果",
    "自检时间",
    "基线",
    "预警值",
    "报警值",
    "定值来源",
];

/// The report as CSV (UTF-8 with BOM, for Excel).
pub fn csv(r: &Report, signoffs: &[SignOff]) -> String {
    let mut out = String::from("\u{feff}");
    let row = |out: &mut String, fields: &[String]| {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::tickets::ledger::field(out, f);
        }
        out.push_str("\r\n");
    };
    row(&mut out, &CSV_HEADER.map(String::from));
    for n in &r.nodes {
        for c in &n.channels {
            row(
                &mut out,
                &[
                    r.site_name.clone(),
                    n.node.clone(),
                    n.location.clone(),
                    n.installed_by.clone().unwrap_or_default(),
                    when(n.installed_at),
                    c.channel.clone(),
                    crate::domain::labels::quantity(&c.quantity).to_string(),
                    c.sensor.clone().unwrap_or_default(),
                    c.wiring.clone(),
                    selftest_text(c),
                    when(c.selftest_at),
                    baseline_text(c),
                    opt(c.pre_alarm),
                    opt(c.alarm),
                    match (&c.setpoints_by, c.setpoints_at) {
                        (Some(by), at) => format!("{by} {}", when(at)),
                        _ => "配置默认".into(),
                    },
                ],
            );
        }
    }
    for s in signoffs {
        row(
            &mut out,
            &[
                "验收签字".into(),
                s.signed_by.clone(),
                minute_cst(s.signed_at),
                s.note.clone(),
                format!("SHA-256 {}", s.report_sha256),
            ],
        );
    }
    out
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report as a printable page (A4 landscape), 简体中文.
pub fn html(r: &Report, signoffs: &[SignOff], generated_at: i64) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <title>{name} 调试验收报告</title><style>\
         @page{{size:A4 landscape;margin:12mm}}\
         body{{font-family:\"Noto Sans CJK SC\",\"WenQuanYi Micro Hei\",sans-serif;font-size:11px;color:#111}}\
         h1{{font-size:18px;margin:0 0 4px}}table{{border-collapse:collapse;width:100%;margin-top:8px}}\
         th,td{{border:1px solid #888;padding:3px 5px;text-align:left;vertical-align:top}}\
         th{{background:#eee}}.fail{{color:#b00;font-weight:bold}}.ok{{color:#060}}\
         .sign{{margin-top:16px}}</style></head><body>\
         <h1>{name} 电气火灾监控系统 调试验收报告</h1>\
         <div>机构编号 {site} · 生成时间 {gen} · 通道 {ch} 个，自检通过 {ok} 个 · 结论：<b class=\"{cls}\">{verdict}</b></div>\
         <table><thead><tr><th>节点</th><th>位置</th><th>安装</th><th>通道</th><th>测量量</th>\
         <th>互感器/传感器</th><th>接线检查</th><th>自检（通路时延）</th><th>基线</th>\
         <th>推荐定值</th><th>在用定值（预警/报警）</th></tr></thead><tbody>",
        name = esc(&r.site_name),
        site = esc(&r.site),
        gen = minute_cst(generated_at),
        ch = r.channels,
        ok = r.selftest_passed,
        cls = if r.ready { "ok" } else { "fail" },
        verdict = if r.ready { "具备验收条件" } else { "尚不具备验收条件" },
    );
    for n in &r.nodes {
        for (i, c) in n.channels.iter().enumerate() {
            h.push_str("<tr>");
            if i == 0 {
                let span = n.channels.len();
                let _ = write!(
                    h,
                    "<td rowspan=\"{span}\">{}<br><small>{}</small></td><td rowspan=\"{span}\">{}</td>\
                     <td rowspan=\"{span}\">{}<br>{}</td>",
                    esc(&n.node),
                    esc(&n.label),
                    esc(&n.location),
                    esc(n.installed_by.as_deref().unwrap_or("")),
                    when(n.installed_at),
                );
            }
            let passed = c.selftest.as_ref().is_some_and(|t| t.passed);
            let rec = c
                .recommendation
                .as_ref()
                .map(|r| {
                    format!(
                        "{}/{}{}",
                        opt(r.pre_alarm),
                        opt(r.alarm),
                        r.hazard
                            .as_ref()
                            .map(|h| format!("<br><span class=\"fail\">{}</span>", esc(h)))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            let _ = write!(
                h,
                "<td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td>\
                 <td>{}</td><td>{}</td><td>{} / {}<br><small>{}</small></td></tr>",
                esc(&c.channel),
                crate::domain::labels::quantity(&c.quantity),
                esc(c.sensor.as_deref().unwrap_or("")),
                if c.wiring == "正常" { "ok" } else { "fail" },
                esc(&c.wiring),
                if passed { "ok" } else { "fail" },
                esc(&selftest_text(c)),
                esc(&baseline_text(c)),
                rec,
                opt(c.pre_alarm),
                opt(c.alarm),
                esc(&match (&c.setpoints_by, c.setpoints_at) {
                    (Some(by), at) => format!("{by} {}", when(at)),
                    _ => "配置默认".into(),
                }),
            );
        }
    }
    h.push_str("</tbody></table><div class=\"sign\">");
    if signoffs.is_empty() {
        h.push_str("机构负责人验收签字：＿＿＿＿＿＿＿＿　日期：＿＿＿＿＿＿（尚未在系统中签字）");
    }
    for s in signoffs {
        let _ = write!(
            h,
            "<div>机构负责人验收签字：<b>{}</b>　{}　{}<br><small>报告摘要 SHA-256 {}</small></div>",
            esc(&s.signed_by),
            minute_cst(s.signed_at),
            esc(&s.note),
            esc(&s.report_sha256)
        );
    }
    h.push_str("</div></body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            site: "home_a".into(),
            site_name: "阳光<养老院>".into(),
            nodes: vec![NodeBlock {
                node: "n07".into(),
                location: "1号楼 2层 201 AL-2".into(),
                label: "FN1:HOME.A/N07:7K".into(),
                installed_by: Some("王工".into()),
                installed_at: Some(1_790_000_000_000),
                channels: vec![
                    ChannelLine {
                        channel: "rc1".into(),
                        quantity: "residual_current".into(),
                        sensor: Some("ct=1000".into()),
                        wiring: "正常".into(),
                        selftest: Some(ChannelResult {
                            channel: "rc1".into(),
                            quantity: "residual_current".into(),
                            passed: true,
                            latency_ms: Some(80),
                            value: Some(500),
                            judged_by: Some("gateway".into()),
                            reason: None,
                        }),
                        pre_alarm: Some(180),
                        alarm: Some(300),
                        setpoints_from: "applied".into(),
                        setpoints_by: Some("王工".into()),
                        setpoints_at: Some(1_790_600_000_000),
                        ..Default::default()
                    },
                    ChannelLine {
                        channel: "t1".into(),
                        quantity: "temperature".into(),
                        wiring: "开路".into(),
                        setpoints_from: "configured".into(),
                        ..Default::default()
                    },
                ],
            }],
            ..Default::default()
        }
        .totals()
    }

    #[test]
    fn totals_say_whether_the_site_is_ready() {
        let r = report();
        assert_eq!((r.channels, r.selftest_passed, r.ready), (2, 1, false));
        assert_eq!(r.sha256().len(), 64);
        assert_eq!(r.sha256(), report().sha256(), "stable");
    }

    #[test]
    fn csv_and_html_list_every_channel_escaped() {
        let r = report();
        let text = csv(&r, &[]);
        assert!(text.starts_with('\u{feff}'));
        assert_eq!(text.lines().count(), 3);
        assert!(text.contains("通过（80 ms）"), "{text}");
        assert!(text.contains("未自检"));
        let page = html(&r, &[], 1_790_700_000_000);
        assert!(page.contains("阳光&lt;养老院&gt;"));
        assert!(!page.contains("<养老院>"));
        assert!(page.contains("尚不具备验收条件"));
        assert!(page.contains("尚未在系统中签字"));
        let s = SignOff {
            id: 1,
            site: "home_a".into(),
            signed_by: "李院长".into(),
            signed_at: 1_790_700_000_000,
            note: "同意验收".into(),
            report_sha256: r.sha256(),
        };
        assert!(html(&r, std::slice::from_ref(&s), 0).contains("李院长"));
        assert!(csv(&r, &[s]).contains("验收签字"));
    }
}
