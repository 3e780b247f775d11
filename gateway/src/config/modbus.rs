//! The `[modbus]` section of the gateway configuration: connections (Modbus
//! TCP, RTU on a serial port, RTU over TCP through a serial server), the
//! devices on each, and where extra register maps live.
//!
//! Every Modbus device is a node of the wire contract: it names a node
//! already declared under `[[sites]]` (its location, rules and channel
//! overrides live there, as for any MQTT node), so the pipeline knows it
//! and the dead-man timer covers it from start-up. Validation reports every
//! problem at once, each with its path, like the rest of the file.

use crate::config::{Config, ConfigIssue};
use crate::domain::modbus::map::{parse_map, RegisterMap, SHIPPED};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wire::{ChannelId, NodeId, SiteId};

/// Register maps by model name.
pub type Catalog = BTreeMap<String, Arc<RegisterMap>>;

/// `[modbus]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ModbusConfig {
    /// A directory of extra register maps (`*.toml`); a map there with the
    /// model of a shipped one replaces it.
    pub maps_dir: Option<PathBuf>,
    pub connections: Vec<ConnectionConfig>,
    /// The maps in force: shipped, then `maps_dir`. Filled by
    /// [`Config::from_toml`](crate::config::Config::from_toml).
    #[serde(skip)]
    pub catalog: Catalog,
}

/// `[[modbus.connections]]`: one TCP connection or one serial port, polled
/// one request at a time (a bus is half-duplex).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ConnectionConfig {
    /// `tcp`, `rtu` (serial port) or `rtu_over_tcp` (an RS-485 serial server).
    pub kind: String,
    /// `host:port`, for `tcp` and `rtu_over_tcp`.
    pub address: String,
    /// Serial device, for `rtu`, e.g. `/dev/ttyUSB0`.
    pub path: String,
    pub baud: u32,
    /// `none`, `even` or `odd`.
    pub parity: String,
    pub data_bits: u8,
    pub stop_bits: u8,
    /// Longest wait for one answer (connect, request).
    pub timeout_ms: u64,
    /// Retries of a failed request within one poll…
    pub retries: u32,
    /// …after this wait, doubling each time.
    pub backoff_ms: u64,
    /// A device is offline after this many failed polls in a row (one
    /// `offline` alarm for the node); degraded after the first.
    pub offline_after_failures: u32,
    pub devices: Vec<DeviceConfig>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            kind: String::new(),
            address: String::new(),
            path: String::new(),
            baud: 9600,
            parity: "none".into(),
            data_bits: 8,
            stop_bits: 1,
            timeout_ms: 1000,
            retries: 1,
            backoff_ms: 200,
            offline_after_failures: 3,
            devices: Vec::new(),
        }
    }
}

/// `[[modbus.connections.devices]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DeviceConfig {
    /// Unit id (slave address).
    pub unit: i64,
    /// Register map model, e.g. `aim_r100`.
    pub map: String,
    /// The node this device is: declared under `[[sites]]`.
    pub site: String,
    pub node: String,
    /// Poll period.
    pub interval_ms: u64,
    /// Wire channel ids by the map's channel id, where they differ
    /// (`channels = { rc1 = "kitchen" }`).
    pub channels: BTreeMap<String, String>,
    /// Map channels not polled (loops without a sensor fitted).
    pub skip: Vec<String>,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            unit: 1,
            map: String::new(),
            site: String::new(),
            node: String::new(),
            interval_ms: 5000,
            channels: BTreeMap::new(),
            skip: Vec::new(),
        }
    }
}

/// How a connection reaches its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP (MBAP header, transaction ids).
    Tcp { address: String },
    /// Modbus RTU on a serial port.
    Rtu {
        path: String,
        baud: u32,
        parity: Parity,
        data_bits: u8,
        stop_bits: u8,
    },
    /// RTU frames (with CRC) over a TCP connection to a serial server.
    RtuOverTcp { address: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// A connection ready to poll (validated).
#[derive(Debug, Clone)]
pub struct Connection {
    /// `modbus.connections[i]`, for logs.
    pub name: String,
    pub transport: Transport,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub offline_after_failures: u32,
    pub devices: Vec<Device>,
}

/// A device ready to poll.
#[derive(Debug, Clone)]
pub struct Device {
    pub site: SiteId,
    pub node: NodeId,
    pub unit: u8,
    pub map: Arc<RegisterMap>,
    pub interval: Duration,
    pub skip: Vec<ChannelId>,
    /// Wire channel id by map channel id, where they differ.
    pub rename: HashMap<ChannelId, ChannelId>,
}

impl Device {
    /// `site/node`, for logs and metrics.
    pub fn label(&self) -> String {
        format!("{}/{}", self.site, self.node)
    }
}

fn issue(path: String, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        path,
        message: message.into(),
    }
}

/// The shipped maps, then those in `dir` (which replace shipped ones of the
/// same model); every problem in a file is reported with the file's name.
pub fn load_catalog(dir: Option<&Path>) -> (Catalog, Vec<ConfigIssue>) {
    let mut catalog = Catalog::new();
    let mut issues = Vec::new();
    for (file, text) in SHIPPED {
        match parse_map(text) {
            Ok(m) => {
                catalog.insert(m.model.clone(), Arc::new(m));
            }
            Err(errs) => {
                for e in errs {
                    issues.push(issue(format!("(shipped map {file}) {}", e.path), e.message));
                }
            }
        }
    }
    let Some(dir) = dir else {
        return (catalog, issues);
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            issues.push(issue(
                "modbus.maps_dir".into(),
                format!("cannot read {}: {e}", dir.display()),
            ));
            return (catalog, issues);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let at = |p: &str| {
            if p.is_empty() {
                format!("{}", file.display())
            } else {
                format!("{}: {p}", file.display())
            }
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                issues.push(issue(at(""), format!("cannot read: {e}")));
                continue;
            }
        };
        match parse_map(&text) {
            Ok(m) => {
                if let Some(other) = seen.insert(m.model.clone(), file.clone()) {
                    issues.push(issue(
                        at("model"),
                        format!("model {:?} is also defined in {}", m.model, other.display()),
                    ));
                }
                catalog.insert(m.model.clone(), Arc::new(m));
            }
            Err(errs) => {
                for e in errs {
                    issues.push(issue(at(&e.path), e.message));
                }
            }
        }
    }
    (catalog, issues)
}

/// `host:port` with a port.
fn valid_address(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
}

impl ConnectionConfig {
    fn transport(&self) -> Option<Transport> {
        let parity = match self.parity.as_str() {
            "none" => Parity::None,
            "even" => Parity::Even,
            "odd" => Parity::Odd,
            _ => return None,
        };
        Some(match self.kind.as_str() {
            "tcp" => Transport::Tcp {
                address: self.address.clone(),
            },
            "rtu_over_tcp" => Transport::RtuOverTcp {
                address: self.address.clone(),
            },
            "rtu" => Transport::Rtu {
                path: self.path.clone(),
                baud: self.baud,
                parity,
                data_bits: self.data_bits,
                stop_bits: self.stop_bits,
            },
            _ => return None,
        })
    }
}

/// Lowest poll period accepted from a file.
pub const MIN_INTERVAL_MS: u64 = 100;

/// Every problem in `[modbus]`, each with its path.
pub fn validate(config: &Config) -> Vec<ConfigIssue> {
    let m = &config.modbus;
    let mut out = Vec::new();
    let mut nodes: HashMap<(String, String), String> = HashMap::new();
    for (ci, c) in m.connections.iter().enumerate() {
        let cp = format!("modbus.connections[{ci}]");
        let kind = c.kind.as_str();
        match kind {
            "tcp" | "rtu_over_tcp" => {
                if !valid_address(&c.address) {
                    out.push(issue(
                        format!("{cp}.address"),
                        format!("{:?} must be host:port", c.address),
                    ));
                }
            }
            "rtu" => {
                if c.path.is_empty() {
                    out.push(issue(
                        format!("{cp}.path"),
                        "is required for a serial port (e.g. /dev/ttyUSB0)",
                    ));
                }
                if !matches!(c.parity.as_str(), "none" | "even" | "odd") {
                    out.push(issue(
                        format!("{cp}.parity"),
                        format!("{:?} must be none, even or odd", c.parity),
                    ));
                }
                if c.baud == 0 {
                    out.push(issue(format!("{cp}.baud"), "must be above 0"));
                }
                if !(5..=8).contains(&c.data_bits) {
                    out.push(issue(format!("{cp}.data_bits"), "must be 5–8"));
                }
                if !matches!(c.stop_bits, 1 | 2) {
                    out.push(issue(format!("{cp}.stop_bits"), "must be 1 or 2"));
                }
            }
            _ => out.push(issue(
                format!("{cp}.kind"),
                format!("{:?} must be tcp, rtu or rtu_over_tcp", c.kind),
            )),
        }
        if !(10..=60_000).contains(&c.timeout_ms) {
            out.push(issue(format!("{cp}.timeout_ms"), "must be 10–60000"));
        }
        if c.retries > 5 {
            out.push(issue(format!("{cp}.retries"), "must be 0–5"));
        }
        if c.backoff_ms > 60_000 {
            out.push(issue(format!("{cp}.backoff_ms"), "must be at most 60000"));
        }
        if !(1..=100).contains(&c.offline_after_failures) {
            out.push(issue(
                format!("{cp}.offline_after_failures"),
                "must be 1–100",
            ));
        }
        if c.devices.is_empty() {
            out.push(issue(
                format!("{cp}.devices"),
                "a connection needs a device",
            ));
        }
        let mut units = HashSet::new();
        for (di, d) in c.devices.iter().enumerate() {
            let dp = format!("{cp}.devices[{di}]");
            // Modbus TCP devices answer on unit 0 or 255 when addressed
            // directly; on a serial bus 0 is broadcast (no answer) and
            // 248–255 are reserved.
            let units_ok = if kind == "tcp" { 0..=255 } else { 1..=247 };
            if !units_ok.contains(&d.unit) {
                out.push(issue(
                    format!("{dp}.unit"),
                    format!(
                        "{} is outside {}–{} for {kind}",
                        d.unit,
                        units_ok.start(),
                        units_ok.end()
                    ),
                ));
            } else if !units.insert(d.unit) {
                out.push(issue(
                    format!("{dp}.unit"),
                    format!("unit {} is polled twice on this connection", d.unit),
                ));
            }
            let map = m.catalog.get(&d.map);
            if map.is_none() {
                out.push(issue(
                    format!("{dp}.map"),
                    format!(
                        "unknown map {:?} (known: {})",
                        d.map,
                        m.catalog.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            match config.node(&d.site, &d.node) {
                None => out.push(issue(
                    format!("{dp}.node"),
                    format!(
                        "{}/{} is not declared under [[sites]]: declare the node there (location, rules), then poll it here",
                        d.site, d.node
                    ),
                )),
                Some(_) => {
                    if let Some(other) =
                        nodes.insert((d.site.clone(), d.node.clone()), dp.clone())
                    {
                        out.push(issue(
                            format!("{dp}.node"),
                            format!("{}/{} is already polled by {other}", d.site, d.node),
                        ));
                    }
                    let dead_man = u64::from(config.offline_after_ms(&d.site, &d.node));
                    if d.interval_ms >= dead_man {
                        out.push(issue(
                            format!("{dp}.interval_ms"),
                            format!(
                                "{} ms is not shorter than the node's offline_after_secs ({} ms): it would be reported offline between polls",
                                d.interval_ms, dead_man
                            ),
                        ));
                    }
                }
            }
            if d.interval_ms < MIN_INTERVAL_MS {
                out.push(issue(
                    format!("{dp}.interval_ms"),
                    format!("must be at least {MIN_INTERVAL_MS}"),
                ));
            }
            if let Some(map) = map {
                let has = |id: &str| map.channels.iter().any(|c| c.id.as_str() == id);
                for s in &d.skip {
                    if !has(s) {
                        out.push(issue(
                            format!("{dp}.skip"),
                            format!("no channel {s:?} in map {}", map.model),
                        ));
                    }
                }
                if map
                    .channels
                    .iter()
                    .all(|c| d.skip.iter().any(|s| s == c.id.as_str()))
                {
                    out.push(issue(
                        format!("{dp}.skip"),
                        "skips every channel of the map",
                    ));
                }
                let mut wire_ids = HashSet::new();
                for c in &map.channels {
                    if d.skip.iter().any(|s| s == c.id.as_str()) {
                        continue;
                    }
                    let id = d.channels.get(c.id.as_str()).map_or(c.id.as_str(), |s| s);
                    if !wire_ids.insert(id.to_string()) {
                        out.push(issue(
                            format!("{dp}.channels"),
                            format!("two channels of the device would both be {id:?}"),
                        ));
                    }
                }
                for (from, to) in &d.channels {
                    if !has(from) {
                        out.push(issue(
                            format!("{dp}.channels.{from}"),
                            format!("no channel {from:?} in map {}", map.model),
                        ));
                    }
                    if ChannelId::new(to).is_err() {
                        out.push(issue(
                            format!("{dp}.channels.{from}"),
                            format!("{to:?} must match {}", ChannelId::PATTERN),
                        ));
                    }
                }
            }
        }
    }
    out
}

impl ModbusConfig {
    /// The connections to poll. Call on a validated configuration: entries
    /// that do not validate are left out.
    pub fn resolve(&self) -> Vec<Connection> {
        let mut out = Vec::new();
        for (ci, c) in self.connections.iter().enumerate() {
            let Some(transport) = c.transport() else {
                continue;
            };
            let devices = c
                .devices
                .iter()
                .filter_map(|d| {
                    let map = self.catalog.get(&d.map)?.clone();
                    Some(Device {
                        site: SiteId::new(&d.site).ok()?,
                        node: NodeId::new(&d.node).ok()?,
                        unit: u8::try_from(d.unit).ok()?,
                        map,
                        interval: Duration::from_millis(d.interval_ms),
                        skip: d
                            .skip
                            .iter()
                            .filter_map(|s| ChannelId::new(s).ok())
                            .collect(),
                        rename: d
                            .channels
                            .iter()
                            .filter_map(|(a, b)| {
                                Some((ChannelId::new(a).ok()?, ChannelId::new(b).ok()?))
                            })
                            .collect(),
                    })
                })
                .collect();
            out.push(Connection {
                name: format!("modbus.connections[{ci}]"),
                transport,
                timeout: Duration::from_millis(c.timeout_ms),
                retries: c.retries,
                backoff: Duration::from_millis(c.backoff_ms),
                offline_after_failures: c.offline_after_failures.max(1),
                devices,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const SITES: &str = r#"
[[sites]]
id = "home_a"
[[sites.nodes]]
id = "m01"
[[sites.nodes]]
id = "m02"
[[sites.nodes]]
id = "m03"
offline_after_secs = 10
"#;

    #[test]
    fn a_good_section_resolves() {
        let text = format!(
            r#"
[[modbus.connections]]
kind = "tcp"
address = "127.0.0.1:502"
[[modbus.connections.devices]]
unit = 1
map = "aim_r100"
site = "home_a"
node = "m01"
interval_ms = 2000
channels = {{ rc1 = "kitchen" }}
skip = ["rc12"]
[[modbus.connections]]
kind = "rtu"
path = "/dev/ttyUSB0"
baud = 19200
parity = "even"
[[modbus.connections.devices]]
unit = 7
map = "acrel_asj"
site = "home_a"
node = "m02"
{SITES}"#
        );
        let c = Config::from_toml(&text).unwrap();
        let conns = c.modbus.resolve();
        assert_eq!(conns.len(), 2);
        assert_eq!(conns[0].devices[0].skip.len(), 1);
        assert_eq!(conns[0].devices[0].rename.len(), 1);
        assert_eq!(conns[1].devices[0].unit, 7);
        assert_eq!(conns[1].devices[0].interval.as_millis(), 5000);
        assert!(matches!(
            conns[1].transport,
            super::Transport::Rtu {
                baud: 19200,
                parity: super::Parity::Even,
                ..
            }
        ));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = format!(
            r#"
[[modbus.connections]]
kind = "udp"
timeout_ms = 0
offline_after_failures = 0
[[modbus.connections.devices]]
unit = 300
map = "nope"
site = "home_a"
node = "ghost"
interval_ms = 50
colour = "red"
[[modbus.connections]]
kind = "rtu"
parity = "mark"
stop_bits = 3
[[modbus.connections.devices]]
unit = 0
map = "aim_r100"
site = "home_a"
node = "m01"
channels = {{ rc1 = "rc2", zz = "Bad-Id" }}
skip = ["rc99"]
[[modbus.connections.devices]]
unit = 2
map = "acrel_asj"
site = "home_a"
node = "m01"
[[modbus.connections.devices]]
unit = 3
map = "acrel_asj"
site = "home_a"
node = "m03"
interval_ms = 10000
[[modbus.connections]]
kind = "rtu_over_tcp"
address = "serial-server"
{SITES}"#
        );
        let errs = Config::from_toml(&text).unwrap_err();
        let got: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        let want = [
            "modbus.connections[0].devices[0].colour: unknown key",
            "modbus.connections[0].kind: \"udp\" must be tcp, rtu or rtu_over_tcp",
            "modbus.connections[0].timeout_ms: must be 10–60000",
            "modbus.connections[0].offline_after_failures: must be 1–100",
            "modbus.connections[0].devices[0].map: unknown map \"nope\" (known: acrel_asj, aim_r100, temp_module, transmitter_4_20)",
            "modbus.connections[0].devices[0].node: home_a/ghost is not declared under [[sites]]: declare the node there (location, rules), then poll it here",
            "modbus.connections[0].devices[0].interval_ms: must be at least 100",
            "modbus.connections[1].path: is required for a serial port (e.g. /dev/ttyUSB0)",
            "modbus.connections[1].parity: \"mark\" must be none, even or odd",
            "modbus.connections[1].stop_bits: must be 1 or 2",
            "modbus.connections[1].devices[0].unit: 0 is outside 1–247 for rtu",
            "modbus.connections[1].devices[0].skip: no channel \"rc99\" in map aim_r100",
            "modbus.connections[1].devices[0].channels: two channels of the device would both be \"rc2\"",
            "modbus.connections[1].devices[0].channels.zz: no channel \"zz\" in map aim_r100",
            "modbus.connections[1].devices[0].channels.zz: \"Bad-Id\" must match [a-z0-9_]{1,16}",
            "modbus.connections[1].devices[1].node: home_a/m01 is already polled by modbus.connections[1].devices[0]",
            "modbus.connections[1].devices[2].interval_ms: 10000 ms is not shorter than the node's offline_after_secs (10000 ms): it would be reported offline between polls",
            "modbus.connections[2].address: \"serial-server\" must be host:port",
            "modbus.connections[2].devices: a connection needs a device",
        ];
        for w in want {
            assert!(got.iter().any(|g| g == w), "missing {w:?} in {got:#?}");
        }
        assert!(
            got.iter()
                .any(|g| g == "modbus.connections[0].devices[0].unit: 300 is outside 1–247 for udp"),
            "{got:#?}"
        );
    }

    #[test]
    fn maps_from_a_directory_join_and_replace_the_shipped_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("acrel_asj.toml"),
            "model = \"acrel_asj\"\n[[channels]]\nid = \"rc1\"\nquantity = \"residual_current\"\naddress = 5\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("broken.toml"),
            "model = \"broken\"\n[[channels]]\nid = \"x\"\nquantity = \"arc\"\naddress = 0\nscale = 0.0\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a map").unwrap();
        let (catalog, issues) = super::load_catalog(Some(dir.path()));
        assert_eq!(catalog["acrel_asj"].channels[0].address, 5);
        assert!(catalog.contains_key("aim_r100"));
        assert!(!catalog.contains_key("broken"));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0].to_string().ends_with(
                "broken.toml: channels[0].scale: must be a finite number other than zero"
            ),
            "{}",
            issues[0]
        );
        let (_, issues) = super::load_catalog(Some(&dir.path().join("missing")));
        assert!(issues[0]
            .to_string()
            .starts_with("modbus.maps_dir: cannot read"));
    }
}
