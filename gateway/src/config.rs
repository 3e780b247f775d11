//! Gateway configuration (网关配置): one TOML file, typed, validated up front.
//!
//! Validation reports *every* problem at once, each with its path in the file
//! (`sites[1].nodes[0].id: must match [a-z0-9_-]{1,32}`), so an installer
//! fixes a file in one pass. Unknown keys are errors too: they are collected
//! with `serde_ignored` rather than `#[serde(deny_unknown_fields)]`, which
//! would stop at the first one.

use rules::{ChannelRule, Direction, FlapRule, RateRule, ThresholdRule};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use wire::{ChannelId, NodeId, Quantity, SiteId};

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
    pub modbus: crate::modbus::config::ModbusConfig,
    /// Alarm delivery (报警推送): channels, routes, escalation; off when absent.
    pub notify: Option<crate::notify::config::NotifyConfig>,
    /// Installer commissioning (安装调试).
    pub commissioning: CommissioningConfig,
    /// What outgoing TLS connections trust (notification channels, the
    /// sink, PostgreSQL): the system store plus an optional extra CA file.
    pub tls: crate::tls::TlsConfig,
    /// Northbound links (`[[northbound.gb26875]]`: 消防远程监控中心).
    pub northbound: crate::northbound::NorthboundConfig,
}

/// Installer commissioning (安装调试).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct CommissioningConfig {
    /// How long a self-test (自检) waits for every channel's test alarm.
    pub selftest_window_secs: u32,
    /// How long each loop's natural leakage and temperature are learned
    /// after its first reading (基线学习), hours; default 168 (7 days).
    pub baseline_hours: u32,
}

impl Default for CommissioningConfig {
    fn default() -> Self {
        CommissioningConfig {
            selftest_window_secs: (crate::selftest::DEFAULT_WINDOW_MS / 1000) as u32,
            baseline_hours: crate::baseline::DEFAULT_WINDOW_HOURS,
        }
    }
}

/// The hazard closed loop's figures (隐患闭环).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct TicketsConfig {
    /// Hours the telemetry must stay normal after the rectification report
    /// before a sensor-sourced ticket can be closed.
    pub proof_hours: u32,
    /// Days before the deadline by which an extension must be requested.
    pub extension_notice_days: u32,
    /// Days after closing within which a recurrence reopens the ticket.
    pub reopen_window_days: u32,
    /// Minutes a node (or a whole site) may stay offline before a 离线 ticket opens.
    pub offline_ticket_after_mins: u32,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        let p = crate::ticket::Policy::default();
        TicketsConfig {
            proof_hours: (p.proof_period_ms / 3_600_000) as u32,
            extension_notice_days: (p.extension_notice_ms / 86_400_000) as u32,
            reopen_window_days: (p.reopen_window_ms / 86_400_000) as u32,
            offline_ticket_after_mins: 30,
        }
    }
}

impl TicketsConfig {
    /// As the state machine's policy.
    pub fn policy(&self) -> crate::ticket::Policy {
        crate::ticket::Policy {
            proof_period_ms: u64::from(self.proof_hours) * 3_600_000,
            extension_notice_ms: u64::from(self.extension_notice_days) * 86_400_000,
            reopen_window_ms: u64::from(self.reopen_window_days) * 86_400_000,
        }
    }
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
        }
    }
}

/// Default dead-man time: three missed reports of a node reporting every minute.
pub const DEFAULT_OFFLINE_AFTER_SECS: u32 = 180;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Address of the HTTP API (and of `/metrics` unless `metrics_listen` is set).
    pub listen: SocketAddr,
    /// HTTP connections open at once; more are closed at once (see
    /// `api::limits`; `deploy/systemd` sizes `LimitNOFILE` with it).
    pub max_connections: usize,
    /// HTTP connections open at once from one address.
    pub max_connections_per_peer: usize,
    /// A request head (or the next one on an idle connection) must arrive
    /// in full within this many seconds.
    pub header_read_timeout_secs: u64,
    /// Evidence files kept in all, MiB (each file counted once).
    pub evidence_quota_mib: u64,
    /// How often an open event stream checks that its session still holds
    /// (not expired, logged out, revoked, or its user disabled), seconds,
    /// 1–60; the stream closes when it does not.
    pub session_recheck_secs: u64,
    /// Where `/metrics` is served instead, e.g. `127.0.0.1:9464` beside an
    /// API listening on `0.0.0.0:8080` (its labels name sites and nodes).
    /// Unset: `/metrics` stays on the API listener and answers only
    /// loopback peers (others get 404).
    pub metrics_listen: Option<SocketAddr>,
    /// `[http.tls]`: serve the console and API over HTTPS with this
    /// certificate and key (PEM files, reloaded when they change or on
    /// `SIGHUP`). Unset: plain http. `metrics_listen` stays plain.
    pub tls: Option<crate::tls::server::ServerFiles>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 512,
            max_connections_per_peer: 64,
            header_read_timeout_secs: 10,
            evidence_quota_mib: 4096,
            session_recheck_secs: 60,
            metrics_listen: None,
            tls: None,
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
    /// The alarm path commits messages in batches, one transaction each: at
    /// most this many messages a batch…
    pub batch_max_messages: usize,
    /// …gathered for at most this long while more keep arriving (a lone
    /// message is handled at once; 0 = only what is already queued).
    pub batch_max_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            batch_max_messages: 1000,
            batch_max_ms: 5,
        }
    }
}

impl StorageConfig {
    /// The database URL in force, as written (see [`Config::database_url`]
    /// for the one the gateway connects with).
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
    /// Embedded broker: a node of this file that has no credentials may
    /// log in without a password (or without a username) under its client
    /// id `{site}.{node}`, and publish and subscribe as that node only, as
    /// before registration existed. Off by default (`check-config` warns
    /// while it is on); the demo turns it on for its simulated nodes. Give
    /// nodes of the file credentials with `gateway node rotate`. Nodes
    /// with credentials must always use them.
    pub anonymous_config_nodes: bool,
    /// `[mqtt.limits]`: the embedded broker gate's connection caps,
    /// CONNECT timeout and keep-alive cap.
    pub limits: crate::gate::GateLimits,
    /// External broker: connect over TLS (Mosquitto's TLS listener, port
    /// 8884 in `deploy/mosquitto/tls.conf`), verifying the broker's
    /// certificate and its name (`mqtt.host`) against the system store plus
    /// `[tls] extra_ca_file`. Refused with the embedded broker.
    pub external_tls: bool,
    /// Embedded broker: whether the gate listens for plain MQTT on
    /// `embedded_listen` (default on). Off: nodes connect over TLS only
    /// (`[mqtt.tls]`); the gateway's own client does not use this port.
    pub plain: bool,
    /// `[mqtt.tls]`: MQTT over TLS on the gate (port 8883), with node
    /// client certificates optional beside passwords. Unset: no TLS.
    pub tls: Option<crate::gate::GateTls>,
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
            anonymous_config_nodes: false,
            limits: Default::default(),
            external_tls: false,
            plain: true,
            tls: None,
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
    /// Bound on the disk spool (`{data_dir}/spool/`) holding lines until the
    /// TSDB has them; when full, the oldest segment is dropped and its lines
    /// counted (`gateway_sink_lines_dropped_total`).
    pub spool_max_bytes: u64,
    /// Size at which a spool segment file is closed and the next begun;
    /// the unit in which a full spool drops its oldest data.
    pub spool_segment_bytes: u64,
    /// Compress write requests with gzip (`Content-Encoding: gzip`).
    pub gzip: bool,
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
            spool_max_bytes: 1 << 30,
            spool_segment_bytes: 64 << 20,
            gzip: true,
            timeout_ms: 10_000,
            retry_max_ms: 30_000,
        }
    }
}

/// Overrides of a channel's rule at one level of the configuration
/// (全局 → 机构 → 节点 → 回路: defaults, then `[rules.<quantity>]`, then the
/// site's, the node's and the channel's). Unset fields keep what the level
/// above gave. `rate_rise = 0` and `flap_transitions = 0` switch those rules off.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct RuleOverride {
    /// `high` (alarm at or above the setpoint) or `low` (at or below: water pressure, level).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// 预警 setpoint, in the quantity's wire unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_alarm: Option<i32>,
    /// 报警 setpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm: Option<i32>,
    /// Return difference (回差).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_delay_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_delay_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latch_alarm: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latch_pre_alarm: Option<bool>,
    /// Rate of rise: alarm when the value rises by this much within `rate_window_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_rise: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_window_ms: Option<u32>,
    /// Flapping: this many raise/clear transitions within `flap_window_ms`…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flap_transitions: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flap_window_ms: Option<u32>,
    /// …and it ends after this long without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flap_quiet_ms: Option<u32>,
    /// Valid readings (inclusive); outside is a sensor fault (e.g. NE43 3600–21000 µA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_min: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_max: Option<i32>,
}

/// Default window of a rate-of-rise rule switched on by configuration alone.
const DEFAULT_RATE_WINDOW_MS: u32 = 60_000;

impl RuleOverride {
    /// Applies these overrides to `rule`.
    pub fn apply(&self, mut rule: ChannelRule) -> ChannelRule {
        let touches_threshold = self.direction.is_some()
            || self.pre_alarm.is_some()
            || self.alarm.is_some()
            || self.hysteresis.is_some()
            || self.on_delay_ms.is_some()
            || self.off_delay_ms.is_some()
            || self.latch_alarm.is_some()
            || self.latch_pre_alarm.is_some();
        if touches_threshold {
            let mut t = rule.threshold.unwrap_or(ThresholdRule::high(None, None));
            if let Some(d) = self.direction {
                t.direction = d;
            }
            if self.pre_alarm.is_some() {
                t.pre_alarm = self.pre_alarm;
            }
            if self.alarm.is_some() {
                t.alarm = self.alarm;
            }
            t.hysteresis = self.hysteresis.unwrap_or(t.hysteresis);
            t.on_delay_ms = self.on_delay_ms.unwrap_or(t.on_delay_ms);
            t.off_delay_ms = self.off_delay_ms.unwrap_or(t.off_delay_ms);
            t.latch_alarm = self.latch_alarm.unwrap_or(t.latch_alarm);
            t.latch_pre_alarm = self.latch_pre_alarm.unwrap_or(t.latch_pre_alarm);
            rule.threshold = Some(t);
        }
        match (self.rate_rise, rule.rate) {
            (Some(0), _) => rule.rate = None,
            (Some(rise), r) => {
                let window = self
                    .rate_window_ms
                    .or(r.map(|r| r.window_ms))
                    .unwrap_or(DEFAULT_RATE_WINDOW_MS);
                rule.rate = Some(RateRule::new(rise, window));
            }
            (None, Some(r)) => {
                rule.rate = Some(RateRule::new(
                    r.rise,
                    self.rate_window_ms.unwrap_or(r.window_ms),
                ))
            }
            (None, None) => {}
        }
        let flap = rule.flap.unwrap_or(rules::defaults::flap_rule());
        match self.flap_transitions {
            Some(0) => rule.flap = None,
            n if n.is_some() || rule.flap.is_some() => {
                rule.flap = Some(FlapRule::new(
                    n.unwrap_or(flap.transitions),
                    self.flap_window_ms.unwrap_or(flap.window_ms),
                    self.flap_quiet_ms.unwrap_or(flap.quiet_ms),
                ))
            }
            _ => {}
        }
        if self.valid_min.is_some() || self.valid_max.is_some() {
            let (lo, hi) = rule.valid_range.unwrap_or((i32::MIN, i32::MAX));
            rule.valid_range = Some((self.valid_min.unwrap_or(lo), self.valid_max.unwrap_or(hi)));
        }
        rule
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct SiteConfig {
    pub id: String,
    /// Display name, e.g. 阳光养老院.
    pub name: String,
    /// Rule overrides for every node of this site, per quantity.
    pub rules: BTreeMap<String, RuleOverride>,
    pub nodes: Vec<NodeConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct NodeConfig {
    pub id: String,
    /// 楼栋/楼层/房间/配电箱.
    pub location: String,
    /// This node's dead-man time, over the global `offline_after_secs`.
    pub offline_after_secs: Option<u32>,
    /// Rule overrides for this node's channels, per quantity.
    pub rules: BTreeMap<String, RuleOverride>,
    pub channels: Vec<ChannelConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ChannelConfig {
    pub id: String,
    /// e.g. 2层东侧照明回路.
    pub location: String,
    /// What the channel measures (wire name); required with a rule override.
    pub quantity: Option<String>,
    /// This loop's own rule override, e.g. `rule = { alarm = 400 }`.
    pub rule: RuleOverride,
    /// The grade of hazards found on this loop: `general` (一般, default) or
    /// `major` (重大, e.g. a bedroom circuit in a care home).
    pub grade: Option<String>,
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

/// `a[0].b` for a key `serde_ignored` reports as unknown.
pub(crate) fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
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
            crate::modbus::config::load_catalog(config.modbus.maps_dir.as_deref());
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

    /// Every semantic problem, each with its path.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut out = Vec::new();
        let mut issue = |path: String, message: String| out.push(ConfigIssue { path, message });

        if self.mqtt.client_id.is_empty() || self.mqtt.client_id.len() > 64 {
            issue("mqtt.client_id".into(), "must be 1–64 characters".into());
        }
        if self.mqtt.external_tls && self.mqtt.broker != BrokerMode::External {
            issue(
                "mqtt.external_tls".into(),
                "applies to an external broker only (mqtt.broker = \"external\"); \
                 the embedded broker's TLS listener is configured under [mqtt.tls]"
                    .into(),
            );
        }
        if self.mqtt.broker == BrokerMode::External && self.mqtt.host.is_empty() {
            issue(
                "mqtt.host".into(),
                "is required for an external broker".into(),
            );
        }
        for (field, message) in self.mqtt.limits.issues() {
            issue(format!("mqtt.limits.{field}"), message);
        }
        if let Some(tls) = &self.mqtt.tls {
            if self.mqtt.broker != BrokerMode::Embedded {
                issue(
                    "mqtt.tls".into(),
                    "is for the embedded broker's gate; an external broker has its own TLS".into(),
                );
            }
            for message in tls.issues() {
                issue("mqtt.tls".into(), message);
            }
        } else if !self.mqtt.plain && self.mqtt.broker == BrokerMode::Embedded {
            issue(
                "mqtt.plain".into(),
                "is off and [mqtt.tls] is not configured: nodes would have no port to connect to"
                    .into(),
            );
        }
        if self.mqtt.keep_alive_secs < 5 {
            issue("mqtt.keep_alive_secs".into(), "must be at least 5".into());
        }
        if !(1..=60).contains(&self.http.session_recheck_secs) {
            issue(
                "http.session_recheck_secs".into(),
                "must be 1–60: a revoked session's event stream must close within a minute".into(),
            );
        }
        if !(1..=100_000).contains(&self.storage.batch_max_messages) {
            issue(
                "storage.batch_max_messages".into(),
                "must be between 1 and 100000".into(),
            );
        }
        if self.storage.batch_max_ms > 1000 {
            issue(
                "storage.batch_max_ms".into(),
                "must be at most 1000 (ms)".into(),
            );
        }
        if !(24..=24 * 90).contains(&self.commissioning.baseline_hours) {
            issue(
                "commissioning.baseline_hours".into(),
                "must be 24–2160: at least a day of the building's rhythm, at most a season".into(),
            );
        }
        if self.http.max_connections == 0 || self.http.max_connections > 65_536 {
            issue(
                "http.max_connections".into(),
                "must be 1–65536 (and within the process's LimitNOFILE)".into(),
            );
        }
        if self.http.max_connections_per_peer == 0 {
            issue(
                "http.max_connections_per_peer".into(),
                "must be at least 1".into(),
            );
        }
        if !(1..=300).contains(&self.http.header_read_timeout_secs) {
            issue(
                "http.header_read_timeout_secs".into(),
                "must be 1–300".into(),
            );
        }
        if self.http.evidence_quota_mib == 0 {
            issue(
                "http.evidence_quota_mib".into(),
                "must be at least 1".into(),
            );
        }
        if !(5..=600).contains(&self.commissioning.selftest_window_secs) {
            issue(
                "commissioning.selftest_window_secs".into(),
                "must be 5–600: long enough for a node to answer, short enough that a real alarm is not judged as a test for long".into(),
            );
        }
        if let Some(url) = &self.storage.database_url {
            let known = ["sqlite://", "postgres://", "postgresql://"];
            if !known.iter().any(|k| url.starts_with(k)) {
                issue(
                    "storage.database_url".into(),
                    "must start with sqlite:// or postgres://".into(),
                );
            } else if !url.starts_with("sqlite://") {
                if let Err(e) = crate::tls::postgres_url(url, None) {
                    issue("storage.database_url".into(), e);
                }
                if let Some(ca) = crate::tls::postgres_root_cert(url) {
                    if let Err(e) = crate::tls::read_ca_file(&ca) {
                        issue("storage.database_url".into(), format!("sslrootcert: {e}"));
                    }
                }
            }
        }
        if let Some(files) = &self.http.tls {
            if files.client_ca_file.is_some() {
                issue(
                    "http.tls.client_ca_file".into(),
                    "the console and API ask for no client certificates; remove it".into(),
                );
            }
            if let Err(e) = files
                .read()
                .and_then(|m| crate::api::tls::server_config(&m))
            {
                issue("http.tls".into(), e.to_string());
            }
        }
        if let Some(ca) = &self.tls.extra_ca_file {
            if let Err(e) = crate::tls::read_ca_file(ca) {
                issue("tls.extra_ca_file".into(), e.to_string());
            }
        } else if self.uses_tls() {
            // Only the system store to trust: it had better hold something
            // (slim images come without `ca-certificates`).
            if crate::tls::roots(&self.tls).is_ok_and(|r| r.store.is_empty()) {
                issue(
                    "tls".into(),
                    "https/TLS is configured but no CA is trusted: the system store is empty \
                     (apt-get install -y ca-certificates) and tls.extra_ca_file is not set"
                        .into(),
                );
            }
        }
        if let Some(sink) = &self.sink {
            if !(sink.url.starts_with("http://") || sink.url.starts_with("https://")) {
                issue(
                    "sink.url".into(),
                    "must be an http:// or https:// URL".into(),
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
            if sink.spool_segment_bytes < 4096 {
                issue(
                    "sink.spool_segment_bytes".into(),
                    "must be at least 4096".into(),
                );
            }
            if sink.spool_max_bytes < sink.spool_segment_bytes.saturating_mul(2) {
                issue(
                    "sink.spool_max_bytes".into(),
                    "must be at least twice spool_segment_bytes (a full spool drops whole segments)"
                        .into(),
                );
            }
        }
        if self.tickets.proof_hours == 0 {
            issue(
                "tickets.proof_hours".into(),
                "must be at least 1: closing a sensor ticket needs the data to prove the fix"
                    .into(),
            );
        }
        if self.offline_after_secs < 10 {
            issue("offline_after_secs".into(), "must be at least 10".into());
        }
        // Each level's overrides, merged over the levels above, must make a
        // rule that is safe for its quantity.
        let mut check_level =
            |path: &str, overrides: &BTreeMap<String, RuleOverride>, site: &str, node: &str| {
                for name in overrides.keys() {
                    let path = format!("{path}rules.{name}");
                    match Quantity::from_wire(name) {
                        None => issue(path, "unknown quantity".into()),
                        Some(q) => {
                            if let Err(e) = self.rule_for(q, site, node, "").validate_for(q) {
                                issue(path, e.to_string());
                            }
                        }
                    }
                }
            };
        check_level("", &self.rules, "", "");
        for (si, site) in self.sites.iter().enumerate() {
            check_level(&format!("sites[{si}]."), &site.rules, &site.id, "");
            for (ni, node) in site.nodes.iter().enumerate() {
                check_level(
                    &format!("sites[{si}].nodes[{ni}]."),
                    &node.rules,
                    &site.id,
                    &node.id,
                );
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
                        ch.rule != RuleOverride::default(),
                    ) {
                        (Some(None), _) => {
                            issue(format!("{cp}.quantity"), "unknown quantity".into())
                        }
                        (Some(Some(q)), true) => {
                            if let Err(e) =
                                self.rule_for(q, &site.id, &node.id, &ch.id).validate_for(q)
                            {
                                issue(format!("{cp}.rule"), e.to_string());
                            }
                        }
                        (None, true) => issue(
                            format!("{cp}.quantity"),
                            "is required when the channel overrides its rule".into(),
                        ),
                        (_, false) => {}
                    }
                }
                for (ci, ch) in node.channels.iter().enumerate() {
                    if let Some(g) = ch
                        .grade
                        .as_deref()
                        .filter(|g| !matches!(*g, "general" | "major"))
                    {
                        issue(
                            format!("{np}.channels[{ci}].grade"),
                            format!("{g:?} must be general or major"),
                        );
                    }
                }
                if let Some(secs) = node.offline_after_secs.filter(|s| *s < 10) {
                    issue(
                        format!("{np}.offline_after_secs"),
                        format!("{secs} s is shorter than the 10 s minimum"),
                    );
                }
            }
        }
        out.extend(crate::modbus::config::validate(self));
        if let Some(n) = &self.notify {
            n.validate(&mut out);
        }
        self.northbound
            .validate(&|s| self.sites.iter().any(|c| c.id == s), &mut out);
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

    /// Whether any outgoing connection is configured with TLS.
    fn uses_tls(&self) -> bool {
        let sink = self
            .sink
            .as_ref()
            .is_some_and(|s| s.url.starts_with("https://"));
        let notify = self
            .notify
            .as_ref()
            .is_some_and(|n| n.channels.iter().any(|c| c.url.starts_with("https://")));
        let db = self
            .storage
            .database_url
            .as_deref()
            .is_some_and(|u| u.contains("sslmode=verify-full"));
        let mqtt = self.mqtt.broker == BrokerMode::External && self.mqtt.external_tls;
        sink || notify || db || mqtt
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
