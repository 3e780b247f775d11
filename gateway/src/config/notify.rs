//! `[notify]`: the delivery channels, routing per site with on-call shifts,
//! and the escalation figures.

use crate::config::ConfigIssue;
use serde::Deserialize;

/// Which API a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 企业微信群机器人.
    Wecom,
    /// 钉钉群机器人 (signed: 加签).
    Dingtalk,
    /// 飞书群机器人 (signed: 签名校验).
    Feishu,
    /// A JSON POST signed with HMAC-SHA256 (`X-Fire-Signature`).
    Webhook,
    /// An SMS provider's HTTP API, by template.
    Sms,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    /// The console's address, for the link in each message.
    pub base_url: String,
    /// Not acknowledged this long: the site manager (机构负责人) is told too.
    pub manager_after_secs: u64,
    /// Not acknowledged this long: the bureau (民政局) is told too.
    pub bureau_after_secs: u64,
    /// While unacknowledged, the duty desk is reminded this often (0 = never).
    pub remind_every_secs: u64,
    /// Per-request timeout.
    pub timeout_ms: u64,
    pub channels: Vec<ChannelConfig>,
    pub routes: Vec<RouteConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            base_url: "http://127.0.0.1:8080".into(),
            manager_after_secs: 180,
            bureau_after_secs: 600,
            remind_every_secs: 300,
            timeout_ms: 5_000,
            channels: Vec::new(),
            routes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: Kind,
    /// The bot's webhook address (with its key/token), or the SMS API.
    pub url: String,
    /// 钉钉/飞书 signing secret; the generic webhook's HMAC key.
    pub secret: Option<String>,
    /// Mobiles to @ (企业微信/钉钉), or the phones an SMS goes to.
    pub phones: Vec<String>,
    /// SMS: the request body with `{phone}` and `{text}`.
    pub template: Option<String>,
    /// SMS: the body's media type.
    pub content_type: String,
    /// Overrides the vendor's documented rate limit (messages a minute).
    pub rate_per_min: Option<u32>,
    /// Where messages go when this channel cannot deliver them.
    pub failover: Option<String>,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            name: String::new(),
            kind: Kind::Webhook,
            url: String::new(),
            secret: None,
            phones: Vec::new(),
            template: None,
            content_type: "application/json".into(),
            rate_per_min: None,
            failover: None,
        }
    }
}

/// Who is told for some sites: channel names per tier.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RouteConfig {
    /// Site ids, or `["*"]` for every site.
    pub sites: Vec<String>,
    pub duty: Vec<String>,
    pub manager: Vec<String>,
    pub bureau: Vec<String>,
    /// The on-call roster (排班): in a shift, its duty channels replace `duty`.
    pub shifts: Vec<ShiftConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ShiftConfig {
    /// `HH:MM`, China time; a shift may run past midnight (20:00–08:00).
    pub from: String,
    pub to: String,
    pub duty: Vec<String>,
}

/// Minutes since midnight of `HH:MM`.
pub fn minutes(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && hhmm.len() == 5).then_some(h * 60 + m)
}

impl ShiftConfig {
    /// Whether China time `minute_of_day` falls in this shift.
    pub fn covers(&self, minute_of_day: u32) -> bool {
        let (Some(from), Some(to)) = (minutes(&self.from), minutes(&self.to)) else {
            return false;
        };
        if from <= to {
            (from..to).contains(&minute_of_day)
        } else {
            minute_of_day >= from || minute_of_day < to
        }
    }
}

impl NotifyConfig {
    /// The route for a site: the first that names it, else the first `*`.
    pub fn route(&self, site: &str) -> Option<&RouteConfig> {
        self.routes
            .iter()
            .find(|r| r.sites.iter().any(|s| s == site))
            .or_else(|| {
                self.routes
                    .iter()
                    .find(|r| r.sites.iter().any(|s| s == "*"))
            })
    }

    pub fn validate(&self, out: &mut Vec<ConfigIssue>) {
        let mut issue = |path: String, message: &str| {
            out.push(ConfigIssue {
                path,
                message: message.to_string(),
            })
        };
        let names: Vec<&str> = self.channels.iter().map(|c| c.name.as_str()).collect();
        for (i, c) in self.channels.iter().enumerate() {
            let p = format!("notify.channels[{i}]");
            if c.name.is_empty() {
                issue(format!("{p}.name"), "must not be empty");
            }
            if names.iter().filter(|n| **n == c.name).count() > 1 {
                issue(format!("{p}.name"), "is used by another channel");
            }
            if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                issue(format!("{p}.url"), "must be an http:// or https:// URL");
            }
            if matches!(c.kind, Kind::Sms) && c.phones.is_empty() {
                issue(
                    format!("{p}.phones"),
                    "an SMS channel needs at least one phone",
                );
            }
            if c.rate_per_min == Some(0) {
                issue(format!("{p}.rate_per_min"), "must be at least 1");
            }
            if let Some(f) = &c.failover {
                if !names.contains(&f.as_str()) || *f == c.name {
                    issue(format!("{p}.failover"), "must name another channel");
                }
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let p = format!("notify.routes[{i}]");
            if r.sites.is_empty() {
                issue(format!("{p}.sites"), "must list site ids or \"*\"");
            }
            let tiers = [
                ("duty", &r.duty),
                ("manager", &r.manager),
                ("bureau", &r.bureau),
            ];
            for (tier, list) in tiers {
                for (j, n) in list.iter().enumerate() {
                    if !names.contains(&n.as_str()) {
                        issue(format!("{p}.{tier}[{j}]"), "names no channel");
                    }
                }
            }
            for (k, s) in r.shifts.iter().enumerate() {
                for (field, v) in [("from", &s.from), ("to", &s.to)] {
                    if minutes(v).is_none() {
                        issue(format!("{p}.shifts[{k}].{field}"), "must be HH:MM");
                    }
                }
                for (j, n) in s.duty.iter().enumerate() {
                    if !names.contains(&n.as_str()) {
                        issue(format!("{p}.shifts[{k}].duty[{j}]"), "names no channel");
                    }
                }
            }
        }
        if self.manager_after_secs >= self.bureau_after_secs {
            issue(
                "notify.bureau_after_secs".into(),
                "must be later than manager_after_secs",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_run_past_midnight() {
        let night = ShiftConfig {
            from: "20:00".into(),
            to: "08:00".into(),
            duty: vec![],
        };
        assert!(night.covers(23 * 60) && night.covers(7 * 60 + 59));
        assert!(!night.covers(8 * 60) && !night.covers(12 * 60));
        assert_eq!(minutes("24:00"), None);
        assert_eq!(minutes("8:00"), None);
    }
}
