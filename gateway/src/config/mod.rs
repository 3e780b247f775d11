//! Gateway configuration (网关配置): one TOML file, typed, validated up front.
//!
//! Validation reports *every* problem at once, each with its path in the file
//! (`sites[1].nodes[0].id: must match [a-z0-9_-]{1,32}`), so an installer
//! fixes a file in one pass. Unknown keys are errors too: they are collected
//! with `serde_ignored` rather than `#[serde(deny_unknown_fields)]`, which
//! would stop at the first one.
//!
//! One file per section: `http` (`[http]`, `[http.tls]`), `storage`,
//! `mqtt` (the broker, `[mqtt.limits]`, `[mqtt.tls]`), `sink`, `overrides`
//! (`[rules.<quantity>]` and the overrides at each level), `sites` (sites, nodes, channels),
//! `tickets` and `commissioning`; `validate` checks the whole file. The
//! sections with code of their own are typed beside it: `[modbus]` in
//! `crate::ingest::modbus::config`, `[notify]` in `crate::notify::config`, `[tls]`
//! in `crate::tls`, `[[northbound.gb26875]]` in `crate::northbound`.

pub mod cluster;
pub mod commissioning;
mod http;
pub mod modbus;
mod mqtt;
pub mod northbound;
pub mod notify;
mod overrides;
mod sink;
mod sites;
mod storage;
mod tickets;
mod validate;

pub use commissioning::CommissioningConfig;
pub use http::HttpConfig;
pub use mqtt::{BrokerMode, GateLimits, GateTls, MqttConfig};
pub use overrides::RuleOverride;
pub use sink::SinkConfig;
pub use sites::{ChannelConfig, NodeConfig, SiteConfig};
pub use storage::StorageConfig;
pub use tickets::TicketsConfig;

use rules::ChannelRule;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use wire::Quantity;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub mqtt: MqttConfig,
    /// Metrics sink to a time-series DB; off when absent.
    pub sink: Option<SinkConfig>,
    /// Rule overrides per quantity, keyed by the wire name (`residual_current`, …).
    pub rules: BTreeMap<String, RuleOverride>,
    /// Accept telemetry from nodes not listed under `sites` (default: drop and count).
    pub accept_unknown_nodes: bool,
    /// A node that sends nothing for this long is offline (dead-man); nodes may override.
    pub offline_after_secs: u32,
    /// The hazard closed loop's figures.
    pub tickets: TicketsConfig,
    pub sites: Vec<SiteConfig>,
    /// Modbus devices polled by the gateway; each is a node declared under `sites`.
    pub modbus: crate::config::modbus::ModbusConfig,
    /// Alarm delivery (报警推送): channels, routes, escalation; off when absent.
    pub notify: Option<crate::config::notify::NotifyConfig>,
    /// Installer commissioning (安装调试).
    pub commissioning: CommissioningConfig,
    /// What outgoing TLS connections trust (notification channels, the
    /// sink, PostgreSQL): the system store plus an optional extra CA file.
    pub tls: crate::tls::TlsConfig,
    /// Northbound links (`[[northbound.gb26875]]`: 消防远程监控中心).
    pub northbound: northbound::NorthboundConfig,
    /// One replica of a cluster (`[cluster]`, issue 16); absent: alone.
    pub cluster: Option<cluster::ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            mqtt: MqttConfig::default(),
            sink: None,
            rules: BTreeMap::new(),
            accept_unknown_nodes: false,
            offline_after_secs: DEFAULT_OFFLINE_AFTER_SECS,
            tickets: TicketsConfig::default(),
            sites: Vec::new(),
            modbus: Default::default(),
            notify: None,
            commissioning: CommissioningConfig::default(),
            tls: Default::default(),
            northbound: Default::default(),
            cluster: None,
        }
    }
}

/// Default dead-man time: three missed reports of a node reporting every minute.
pub const DEFAULT_OFFLINE_AFTER_SECS: u32 = 180;

/// One problem in a configuration file, with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for issue in &self.0 {
            writeln!(f, "  {issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub(crate) use crate::domain::text::ignored_path;

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        let mut issues = Vec::new();
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigErrors(vec![ConfigIssue {
                path: String::new(),
                message: e.to_string().trim().to_string(),
            }])
        })?;
        let mut config: Config = serde_ignored::deserialize(de, |path| {
            issues.push(ConfigIssue {
                path: ignored_path(&path),
                message: "unknown key".into(),
            });
        })
        .map_err(|e| {
            ConfigErrors(vec![ConfigIssue {
                path: String::new(),
                message: e.to_string().trim().to_string(),
            }])
        })?;
        let (catalog, map_issues) =
            crate::config::modbus::load_catalog(config.modbus.maps_dir.as_deref());
        config.modbus.catalog = catalog;
        issues.extend(map_issues);
        issues.extend(config.validate());
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(issues))
        }
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigIssue {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Config::from_toml(&text)
    }

    /// What is allowed but weakens the installation, as (path, warning):
    /// `check-config` prints them and `run` logs them.
    pub fn warnings(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.mqtt.anonymous_config_nodes && self.mqtt.broker == BrokerMode::Embedded {
            out.push((
                "mqtt.anonymous_config_nodes".to_string(),
                "on: nodes of this file without credentials log in without a password, \
                 and anyone on the network can log in as them; give them credentials \
                 (gateway node rotate) and switch it off"
                    .to_string(),
            ));
        }
        if self.mqtt.broker == BrokerMode::Embedded
            && self.mqtt.plain
            && !self.mqtt.embedded_listen.ip().is_loopback()
        {
            out.push((
                "mqtt.embedded_listen".to_string(),
                format!(
                    "plain MQTT (no TLS) on {}, a non-loopback address: passwords and \
                     readings cross the network in the clear; configure [mqtt.tls] \
                     (port 8883) for the nodes and set mqtt.plain = false, or listen on 127.0.0.1",
                    self.mqtt.embedded_listen
                ),
            ));
        }
        out
    }

    /// The database URL the gateway connects with: `storage.database_url`
    /// (or the SQLite default) with what TLS needs ([`crate::tls::postgres_url`]:
    /// `sslmode=disable` when no mode is given, `[tls] extra_ca_file` as the
    /// `sslrootcert` of `sslmode=verify-full`).
    pub fn database_url(&self) -> String {
        let url = self.storage.database_url();
        if url.starts_with("sqlite://") {
            return url;
        }
        crate::tls::postgres_url(&url, self.tls.extra_ca_file.as_deref()).unwrap_or(url)
    }

    /// The rule in force for a channel: the quantity's defaults (DOMAIN.md
    /// §2, `rules::defaults`), then the global, site, node and channel
    /// overrides, each over the one before.
    pub fn rule_for(&self, q: Quantity, site: &str, node: &str, channel: &str) -> ChannelRule {
        let mut rule = rules::defaults::channel_rule(q);
        if let Some(o) = self.rules.get(q.as_str()) {
            rule = o.apply(rule);
        }
        let Some(s) = self.sites.iter().find(|s| s.id == site) else {
            return rule;
        };
        if let Some(o) = s.rules.get(q.as_str()) {
            rule = o.apply(rule);
        }
        let Some(n) = s.nodes.iter().find(|n| n.id == node) else {
            return rule;
        };
        if let Some(o) = n.rules.get(q.as_str()) {
            rule = o.apply(rule);
        }
        let own = n
            .channels
            .iter()
            .find(|c| c.id == channel && c.quantity.as_deref().is_none_or(|cq| cq == q.as_str()));
        if let Some(c) = own {
            rule = c.rule.apply(rule);
        }
        rule
    }

    /// The grade of a hazard ticket opened for a channel.
    pub fn channel_grade(&self, site: &str, node: &str, channel: &str) -> &'static str {
        let major = self
            .node(site, node)
            .and_then(|(_, n)| n.channels.iter().find(|c| c.id == channel))
            .is_some_and(|c| c.grade.as_deref() == Some("major"));
        if major {
            "major"
        } else {
            "general"
        }
    }

    /// The dead-man time of a node, in ms.
    pub fn offline_after_ms(&self, site: &str, node: &str) -> u32 {
        let secs = self
            .node(site, node)
            .and_then(|(_, n)| n.offline_after_secs)
            .unwrap_or(self.offline_after_secs);
        secs.saturating_mul(1000)
    }

    /// Every rule setting in force, by scope, as canonical JSON: what the
    /// gateway records and compares at start-up, so that a changed setpoint
    /// is an audited event. The built-in defaults are scopes too, so a
    /// software update that changes them is recorded as well.
    pub fn rule_settings(&self) -> BTreeMap<String, String> {
        fn canonical<T: Serialize>(v: &T) -> String {
            serde_json::to_string(v).unwrap_or_default()
        }
        let mut out = BTreeMap::new();
        for q in Quantity::ALL {
            out.insert(
                format!("defaults.{q}"),
                canonical(&rules::defaults::channel_rule(*q)),
            );
        }
        for (q, o) in &self.rules {
            out.insert(format!("rules.{q}"), canonical(o));
        }
        for s in &self.sites {
            for (q, o) in &s.rules {
                out.insert(format!("sites.{}.rules.{q}", s.id), canonical(o));
            }
            for n in &s.nodes {
                for (q, o) in &n.rules {
                    out.insert(
                        format!("sites.{}.nodes.{}.rules.{q}", s.id, n.id),
                        canonical(o),
                    );
                }
                for c in n
                    .channels
                    .iter()
                    .filter(|c| c.rule != RuleOverride::default())
                {
                    let q = c.quantity.as_deref().unwrap_or("");
                    out.insert(
                        format!("sites.{}.nodes.{}.channels.{}.{q}", s.id, n.id, c.id),
                        canonical(&c.rule),
                    );
                }
            }
        }
        out
    }

    /// Looks up a node's configuration.
    /// The site's display name and the location of a node's channel
    /// (楼栋/楼层/房间/配电箱 and the circuit), for people to read.
    pub fn place(&self, site: &str, node: &str, channel: &str) -> (String, String) {
        match self.node(site, node) {
            Some((s, n)) => {
                let name = if s.name.is_empty() {
                    s.id.clone()
                } else {
                    s.name.clone()
                };
                let ch = n
                    .channels
                    .iter()
                    .find(|c| c.id == channel)
                    .map(|c| c.location.as_str())
                    .unwrap_or_default();
                let loc = [n.location.as_str(), ch]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ");
                (name, loc)
            }
            None => (site.to_string(), String::new()),
        }
    }

    pub fn node(&self, site: &str, node: &str) -> Option<(&SiteConfig, &NodeConfig)> {
        let s = self.sites.iter().find(|s| s.id == site)?;
        let n = s.nodes.iter().find(|n| n.id == node)?;
        Some((s, n))
    }
}
