//! `[[northbound.gb26875]]`: one monitoring centre (消防远程监控中心) per
//! entry, and the sites the gateway speaks for towards it.

use crate::config::ConfigIssue;
use serde::Deserialize;
use std::collections::BTreeMap;

/// 系统类型 1, 火灾报警系统: the standard's system table has no entry of
/// its own for electrical-fire monitoring; its detectors (部件类型 16–18)
/// report under the fire alarm system unless a centre asks otherwise
/// (`system_type` in the centre's configuration).
pub const SYSTEM_FIRE_ALARM: u8 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CentreConfig {
    /// A name for logs, metrics and the outbox.
    pub name: String,
    /// The centre's TCP address, `host:port` (the standard fixes no port).
    pub address: String,
    /// Per site id: its 6-byte 用户信息传输装置 address, 12 hex digits in
    /// wire order (as a packet capture shows them).
    pub sites: BTreeMap<String, String>,
    /// The centre's address, 12 hex digits in wire order.
    pub destination_address: String,
    /// Empty command-2 frames this often while idle (0 = none).
    pub heartbeat_secs: u64,
    /// No confirmation this long: send again.
    pub resend_after_secs: u64,
    /// Sent again this many times without an answer: the link is down,
    /// reconnect (the data unit stays first in the outbox).
    pub resend_times: u32,
    /// Wait before reconnecting.
    pub reconnect_secs: u64,
    /// Latest readings as analog values (type 3) this often (0 = never).
    pub readings_every_secs: u64,
    /// 系统类型 reported for the sites' components (1 火灾报警系统).
    pub system_type: u8,
    /// 协议版本号 [main, user].
    pub version: [u8; 2],
    /// Unconfirmed data units kept per site; past it the oldest that are
    /// not fire alarms are dropped (and counted).
    pub outbox_max: u32,
}

impl Default for CentreConfig {
    fn default() -> Self {
        CentreConfig {
            name: String::new(),
            address: String::new(),
            sites: BTreeMap::new(),
            destination_address: "000000000000".into(),
            heartbeat_secs: 30,
            resend_after_secs: 10,
            resend_times: 3,
            reconnect_secs: 5,
            readings_every_secs: 300,
            system_type: SYSTEM_FIRE_ALARM,
            version: [1, 1],
            outbox_max: 10_000,
        }
    }
}

/// `[northbound]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NorthboundConfig {
    pub gb26875: Vec<CentreConfig>,
}

/// 12 hex digits to 6 bytes, in the order written.
pub fn parse_address(text: &str) -> Option<[u8; 6]> {
    let b = crate::domain::text::parse_hex(text).ok()?;
    b.try_into().ok()
}

impl NorthboundConfig {
    /// Every problem, each with its path; `known_site` says which site ids exist.
    pub fn validate(&self, known_site: &dyn Fn(&str) -> bool, out: &mut Vec<ConfigIssue>) {
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in self.gb26875.iter().enumerate() {
            let p = format!("northbound.gb26875[{i}]");
            let mut issue = |path: String, message: String| out.push(ConfigIssue { path, message });
            if c.name.is_empty() {
                issue(format!("{p}.name"), "must be given".into());
            } else if !names.insert(c.name.clone()) {
                issue(format!("{p}.name"), format!("{:?} is used twice", c.name));
            }
            if c.address
                .rsplit_once(':')
                .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
            {
                issue(
                    format!("{p}.address"),
                    format!("{:?} is not host:port", c.address),
                );
            }
            if parse_address(&c.destination_address).is_none() {
                issue(
                    format!("{p}.destination_address"),
                    "must be 12 hex digits (6 bytes)".into(),
                );
            }
            if c.sites.is_empty() {
                issue(format!("{p}.sites"), "no site to speak for".into());
            }
            for (site, addr) in &c.sites {
                if !known_site(site) {
                    issue(format!("{p}.sites.{site}"), "no such site".into());
                }
                if parse_address(addr).is_none() {
                    issue(
                        format!("{p}.sites.{site}"),
                        "must be 12 hex digits (6 bytes)".into(),
                    );
                }
            }
            if c.resend_after_secs == 0 || c.resend_after_secs > 600 {
                issue(format!("{p}.resend_after_secs"), "must be 1–600".into());
            }
            if c.resend_times > 100 {
                issue(format!("{p}.resend_times"), "must be 0–100".into());
            }
            if c.outbox_max < 100 {
                issue(format!("{p}.outbox_max"), "must be at least 100".into());
            }
            if c.reconnect_secs == 0 {
                issue(format!("{p}.reconnect_secs"), "must be at least 1".into());
            }
        }
    }
}
