//! Gateway configuration (网关配置): one TOML file, typed, validated up front.
//!
//! Validation reports *every* problem at once, each with its path in the file
//! (`sites[1].nodes[0].id: must match [a-z0-9_-]{1,32}`), so an installer
//! fixes a file in one pass. Unknown keys are errors too: they are collected
//! with `serde_ignored` rather than `#[serde(deny_unknown_fields)]`, which
//! would stop at the first one.

use rules::{Direction, ThresholdRule};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use wire::{ChannelId, NodeId, Quantity, SiteId};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
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
    pub sites: Vec<SiteConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Address of the HTTP API and `/metrics`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// Directory for the SQLite file and other state.
    pub data_dir: PathBuf,
    /// Database URL; default `sqlite://{data_dir}/gateway.db`.
    pub database_url: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            database_url: None,
        }
    }
}

impl StorageConfig {
    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("gateway.db").display()))
    }
}

/// Which broker the gateway ingests from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BrokerMode {
    /// An in-process rumqttd broker (demo and small sites).
    #[default]
    Embedded,
    /// An external broker (Mosquitto, EMQX).
    External,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MqttConfig {
    pub broker: BrokerMode,
    /// Embedded: the address the in-process broker listens on.
    /// External: ignored.
    pub embedded_listen: SocketAddr,
    /// External: broker host and port.
    pub host: String,
    pub port: u16,
    /// Fixed client id: with a persistent session the broker keeps our
    /// subscriptions and queues QoS 1 messages while we are away.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive_secs: u64,
    /// Subscription prefix; replicas behind EMQX use `$share/gateways/`.
    pub subscription_prefix: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: BrokerMode::Embedded,
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "fire-gateway".into(),
            username: None,
            password: None,
            keep_alive_secs: 30,
            subscription_prefix: String::new(),
        }
    }
}

impl MqttConfig {
    /// Host and port the gateway's own MQTT client connects to.
    pub fn connect_addr(&self) -> (String, u16) {
        match self.broker {
            BrokerMode::Embedded => (
                self.embedded_listen.ip().to_string(),
                self.embedded_listen.port(),
            ),
            BrokerMode::External => (self.host.clone(), self.port),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SinkConfig {
    /// Base URL of an InfluxDB v2 compatible server (InfluxDB 2, VictoriaMetrics).
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: Option<String>,
    /// Flush when this many lines are waiting…
    pub batch_size: usize,
    /// …or when the oldest has waited this long.
    pub flush_interval_ms: u64,
    /// Lines held in memory while the TSDB is unreachable; past this the
    /// oldest are dropped and counted.
    pub max_backlog: usize,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Longest wait between retries of a failed write (backoff doubles from 500 ms).
    pub retry_max_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            url: String::new(),
            org: "fire".into(),
            bucket: "fire".into(),
            token: None,
            batch_size: 5000,
            flush_interval_ms: 1000,
            max_backlog: 1_000_000,
            timeout_ms: 10_000,
            retry_max_ms: 30_000,
        }
    }
}

/// Overrides of a threshold rule; unset fields keep the quantity's default.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct RuleOverride {
    pub pre_alarm: Option<i32>,
    pub alarm: Option<i32>,
    pub hysteresis: Option<i32>,
    pub on_delay_ms: Option<u32>,
    pub off_delay_ms: Option<u32>,
    pub latch_alarm: Option<bool>,
    pub latch_pre_alarm: Option<bool>,
}

impl RuleOverride {
    /// Applies these overrides to `rule`.
    pub fn apply(&self, mut rule: ThresholdRule) -> ThresholdRule {
        if self.pre_alarm.is_some() {
            rule.pre_alarm = self.pre_alarm;
        }
        if self.alarm.is_some() {
            rule.alarm = self.alarm;
        }
        rule.hysteresis = self.hysteresis.unwrap_or(rule.hysteresis);
        rule.on_delay_ms = self.on_delay_ms.unwrap_or(rule.on_delay_ms);
        rule.off_delay_ms = self.off_delay_ms.unwrap_or(rule.off_delay_ms);
        rule.latch_alarm = self.latch_alarm.unwrap_or(rule.latch_alarm);
        rule.latch_pre_alarm = self.latch_pre_alarm.unwrap_or(rule.latch_pre_alarm);
        rule
    }
}

/// The built-in rule for a quantity (DOMAIN.md §2), or `None` when the
/// gateway does not evaluate that quantity by default.
///
/// - Residual current: 预警 300 mA, 报警 500 mA (GB 50116 §9.2.3 asks for a
///   setpoint of 300–500 mA, at least twice a healthy loop's 100–200 mA).
/// - Temperature: 预警 60 °C, 报警 80 °C (GB 14287.3 allows 55–140 °C).
/// - Both with a return difference, and latching alarms.
pub fn default_rule(q: Quantity) -> Option<ThresholdRule> {
    let (pre, alarm, hysteresis) = match q {
        Quantity::ResidualCurrent => (300, 500, 30),
        Quantity::Temperature => (600, 800, 20),
        _ => return None,
    };
    let mut rule = ThresholdRule::high(Some(pre), Some(alarm));
    rule.direction = Direction::High;
    rule.hysteresis = hysteresis;
    Some(rule)
}

/// Domain limits a configured setpoint must respect (DOMAIN.md §2).
fn setpoint_limits(q: Quantity) -> Option<(i32, i32)> {
    match q {
        // ≤ 1000 mA; below 100 mA a healthy loop's leakage would trip it.
        Quantity::ResidualCurrent => Some((100, 1000)),
        // 55–140 °C for the alarm setpoint; pre-alarms may sit lower.
        Quantity::Temperature => Some((300, 1400)),
        _ => None,
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct SiteConfig {
    pub id: String,
    /// Display name, e.g. 阳光养老院.
    pub name: String,
    pub nodes: Vec<NodeConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct NodeConfig {
    pub id: String,
    /// 楼栋/楼层/房间/配电箱.
    pub location: String,
    pub channels: Vec<ChannelConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ChannelConfig {
    pub id: String,
    /// e.g. 2层东侧照明回路.
    pub location: String,
    /// What the channel measures (wire name); required with rule overrides.
    pub quantity: Option<String>,
    /// Per-loop 预警 setpoint override.
    pub pre_alarm: Option<i32>,
    /// Per-loop 报警 setpoint override.
    pub alarm: Option<i32>,
    /// Per-loop return difference override.
    pub hysteresis: Option<i32>,
}

impl ChannelConfig {
    /// The per-loop overrides, over the quantity's rule.
    pub fn rule(&self) -> RuleOverride {
        RuleOverride {
            pre_alarm: self.pre_alarm,
            alarm: self.alarm,
            hysteresis: self.hysteresis,
            ..Default::default()
        }
    }
}

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

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let p = ignored_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

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
        let config: Config = serde_ignored::deserialize(de, |path| {
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

    /// Every semantic problem, each with its path.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut out = Vec::new();
        let mut issue = |path: String, message: String| out.push(ConfigIssue { path, message });

        if self.mqtt.client_id.is_empty() || self.mqtt.client_id.len() > 64 {
            issue("mqtt.client_id".into(), "must be 1–64 characters".into());
        }
        if self.mqtt.broker == BrokerMode::External && self.mqtt.host.is_empty() {
            issue(
                "mqtt.host".into(),
                "is required for an external broker".into(),
            );
        }
        if self.mqtt.keep_alive_secs < 5 {
            issue("mqtt.keep_alive_secs".into(), "must be at least 5".into());
        }
        if let Some(sink) = &self.sink {
            if !(sink.url.starts_with("http://") || sink.url.starts_with("https://")) {
                issue(
                    "sink.url".into(),
                    "must be an http:// or https:// URL".into(),
                );
            }
            if sink.url.starts_with("https://") {
                issue(
                    "sink.url".into(),
                    "https is not supported by this build yet; put a TLS proxy in front".into(),
                );
            }
            if sink.bucket.is_empty() {
                issue("sink.bucket".into(), "must not be empty".into());
            }
            if sink.batch_size == 0 {
                issue("sink.batch_size".into(), "must be at least 1".into());
            }
            if sink.retry_max_ms < 500 {
                issue("sink.retry_max_ms".into(), "must be at least 500".into());
            }
            if sink.max_backlog < sink.batch_size {
                issue(
                    "sink.max_backlog".into(),
                    "must be at least batch_size".into(),
                );
            }
        }
        for (name, ov) in &self.rules {
            let path = format!("rules.{name}");
            match Quantity::from_wire(name) {
                None => issue(path, "unknown quantity".into()),
                Some(q) => match default_rule(q) {
                    None => issue(path, format!("no threshold rule is built in for {q}")),
                    Some(rule) => check_rule(q, &ov.apply(rule), &path, &mut issue),
                },
            }
        }
        let mut site_ids = std::collections::HashSet::new();
        for (si, site) in self.sites.iter().enumerate() {
            let sp = format!("sites[{si}]");
            if SiteId::new(&site.id).is_err() {
                issue(
                    format!("{sp}.id"),
                    format!("must match {}", SiteId::PATTERN),
                );
            } else if !site_ids.insert(site.id.as_str()) {
                issue(
                    format!("{sp}.id"),
                    format!("duplicate site id {:?}", site.id),
                );
            }
            let mut node_ids = std::collections::HashSet::new();
            for (ni, node) in site.nodes.iter().enumerate() {
                let np = format!("{sp}.nodes[{ni}]");
                if NodeId::new(&node.id).is_err() {
                    issue(
                        format!("{np}.id"),
                        format!("must match {}", NodeId::PATTERN),
                    );
                } else if !node_ids.insert(node.id.as_str()) {
                    issue(
                        format!("{np}.id"),
                        format!("duplicate node id {:?}", node.id),
                    );
                }
                let mut ch_ids = std::collections::HashSet::new();
                for (ci, ch) in node.channels.iter().enumerate() {
                    let cp = format!("{np}.channels[{ci}]");
                    if ChannelId::new(&ch.id).is_err() {
                        issue(
                            format!("{cp}.id"),
                            format!("must match {}", ChannelId::PATTERN),
                        );
                    } else if !ch_ids.insert(ch.id.as_str()) {
                        issue(
                            format!("{cp}.id"),
                            format!("duplicate channel id {:?}", ch.id),
                        );
                    }
                    match (
                        ch.quantity.as_deref().map(Quantity::from_wire),
                        ch.rule() != RuleOverride::default(),
                    ) {
                        (Some(None), _) => {
                            issue(format!("{cp}.quantity"), "unknown quantity".into())
                        }
                        (Some(Some(q)), true) => match self.rule_for(q, Some(&ch.rule())) {
                            Some(rule) => check_rule(q, &rule, &cp, &mut issue),
                            None => {
                                issue(cp.clone(), format!("no threshold rule is built in for {q}"))
                            }
                        },
                        (None, true) => issue(
                            format!("{cp}.quantity"),
                            "is required when the channel overrides its rule".into(),
                        ),
                        (_, false) => {}
                    }
                }
            }
        }
        out
    }

    /// The rule in force for a quantity, with the file's overrides and an
    /// optional per-channel override on top.
    pub fn rule_for(&self, q: Quantity, channel: Option<&RuleOverride>) -> Option<ThresholdRule> {
        let mut rule = default_rule(q)?;
        if let Some(ov) = self.rules.get(q.as_str()) {
            rule = ov.apply(rule);
        }
        if let Some(ov) = channel {
            rule = ov.apply(rule);
        }
        Some(rule)
    }

    /// Looks up a node's configuration.
    pub fn node(&self, site: &str, node: &str) -> Option<(&SiteConfig, &NodeConfig)> {
        let s = self.sites.iter().find(|s| s.id == site)?;
        let n = s.nodes.iter().find(|n| n.id == node)?;
        Some((s, n))
    }
}

fn check_rule(
    q: Quantity,
    rule: &ThresholdRule,
    path: &str,
    issue: &mut dyn FnMut(String, String),
) {
    if let Err(e) = rule.validate() {
        issue(path.to_string(), e.to_string());
    }
    if let Some((lo, hi)) = setpoint_limits(q) {
        for (field, value) in [("pre_alarm", rule.pre_alarm), ("alarm", rule.alarm)] {
            if let Some(v) = value {
                if v < lo || v > hi {
                    issue(
                        format!("{path}.{field}"),
                        format!("{v} {} is outside the allowed {lo}–{hi} for {q}", q.unit()),
                    );
                }
            }
        }
    }
}
