//! The node's provisioning artefact (节点配置文件), written when a node is
//! registered or its credentials rotated — the only moments the gateway
//! holds the password in the clear. The format is `wire::provision` (one
//! definition with the firmware, which reads it at boot); this module maps a
//! registration onto it. Pure.
//!
//! Sensors: a CT ratio becomes `ct`; `ntc` (or `ntc_b3950`) a 10 kΩ B3950
//! NTC; a 4–20 mA transmitter is named with its range in the wire unit,
//! `4-20ma-LO-HI` (e.g. `4-20ma-0-1600` for a 0–1.6 MPa pressure
//! transmitter), since a reading cannot be scaled without it. Sensors the
//! node's firmware has no input for (e.g. `pt100`) are refused here, not
//! discovered on site.

use crate::commissioning::registry::ChannelSpec;
use rules::ChannelRule;
use wire::provision::{self, Broker, Provision, Sensor, Setpoints};
use wire::{ChannelId, NodeId, Quantity, SiteId};

/// The node's sensor for a registered channel, or why it has none.
pub fn sensor(c: &ChannelSpec) -> Result<Sensor, String> {
    if let Some(ratio) = c.ct_ratio {
        return u16::try_from(ratio)
            .map(|ratio| Sensor::Ct { ratio })
            .map_err(|_| format!("通道 {}：变比 {ratio} 超出节点支持的范围", c.id));
    }
    let s = c.sensor.as_deref().unwrap_or_default();
    match s {
        "ntc" | "ntc_b3950" => Ok(Sensor::NtcB3950),
        _ => {
            let range = s
                .strip_prefix("4-20ma-")
                .and_then(|r| r.split_once('-'))
                .and_then(|(lo, hi)| Some((lo.parse::<i32>().ok()?, hi.parse::<i32>().ok()?)))
                .filter(|(lo, hi)| lo < hi);
            match range {
                Some((lo, hi)) => Ok(Sensor::Loop { lo, hi }),
                None if s.starts_with("4-20ma") => Err(format!(
                    "通道 {}：4–20 mA 变送器须写明量程，如 4-20ma-0-1600（单位同测量量）",
                    c.id
                )),
                None => Err(format!(
                    "通道 {}：节点固件没有 {s} 传感器输入（支持 ct=变比、ntc、4-20ma-下限-上限）",
                    c.id
                )),
            }
        }
    }
}

/// The setpoints of a rule, for the artefact.
pub fn setpoints(rule: &ChannelRule) -> Setpoints {
    match rule.threshold {
        Some(t) => Setpoints {
            pre_alarm: t.pre_alarm,
            alarm: t.alarm,
            hysteresis: Some(t.hysteresis),
        },
        None => Setpoints::default(),
    }
}

/// What goes into one node's artefact.
pub struct NodeArtefact<'a> {
    pub site: &'a str,
    pub node: &'a str,
    pub broker_host: &'a str,
    pub broker_port: u16,
    pub username: &'a str,
    pub password: &'a str,
    /// Each channel with the rule it is judged by.
    pub channels: Vec<(&'a ChannelSpec, ChannelRule)>,
}

/// The artefact's bytes, or why it cannot be made (简体中文).
pub fn build(a: &NodeArtefact<'_>) -> Result<Vec<u8>, String> {
    let field = |what: &str, v: &str| -> Result<provision::Field, String> {
        v.try_into()
            .map_err(|_| format!("{what}过长（最多 {} 字节）", provision::MAX_FIELD))
    };
    let mut channels = heapless::Vec::new();
    for (c, rule) in &a.channels {
        let q = Quantity::from_wire(&c.quantity)
            .ok_or_else(|| format!("通道 {}：未知测量量 {}", c.id, c.quantity))?;
        let spec = provision::ChannelSpec {
            id: ChannelId::new(&c.id).map_err(|e| format!("通道 {}：{e}", c.id))?,
            q,
            sensor: sensor(c)?,
            set: setpoints(rule),
        };
        rules::defaults::provisioned(q, &spec.set)
            .map_err(|e| format!("通道 {}：定值不合规：{e}", c.id))?;
        channels
            .push(spec)
            .map_err(|_| format!("节点最多 {} 个通道", provision::MAX_CHANNELS))?;
    }
    let p = Provision {
        site: SiteId::new(a.site).map_err(|e| e.to_string())?,
        node: NodeId::new(a.node).map_err(|e| e.to_string())?,
        broker: Broker {
            host: field("服务器地址", a.broker_host)?,
            port: a.broker_port,
        },
        client_id: field("客户端 ID", a.username)?,
        username: field("用户名", a.username)?,
        password: field("密码", a.password)?,
        channels,
    };
    provision::encode(&p).map_err(|e| format!("无法生成节点配置文件：{e}"))
}

/// The broker address a node should use: `HOST:PORT` if given, else the
/// configured broker (refused when the gateway listens on every address:
/// the node needs one it can reach).
pub fn broker_addr(
    config: &crate::config::Config,
    given: Option<&str>,
) -> Result<(String, u16), String> {
    match given {
        Some(b) => {
            let (h, p) = b
                .rsplit_once(':')
                .ok_or_else(|| format!("服务器地址 {b:?} 应为 主机:端口"))?;
            let p = p
                .parse::<u16>()
                .map_err(|_| format!("服务器端口 {p:?} 无效"))?;
            Ok((h.to_string(), p))
        }
        None => {
            // Nodes over TLS only (`mqtt.plain = false`): the TLS port.
            let (h, p) = match &config.mqtt.tls {
                Some(t) if !config.mqtt.plain => (t.listen.ip().to_string(), t.listen.port()),
                _ => config.mqtt.connect_addr(),
            };
            if h == "0.0.0.0" || h == "::" {
                return Err(
                    "网关监听所有地址，请给出节点应连接的地址（CLI：--broker 主机:端口）".into(),
                );
            }
            Ok((h, p))
        }
    }
}

/// A registered node's artefact with its fresh credentials: its channels
/// with the configured rules, over which the setpoints applied at run time
/// (`applied`, the newest per channel) take precedence.
pub fn for_node(
    config: &crate::config::Config,
    applied: &[crate::store::SetpointRow],
    node: &crate::commissioning::registry::RegisteredNode,
    issued: &crate::commissioning::registry::Issued,
    broker: (&str, u16),
) -> Result<Vec<u8>, String> {
    let mut channels = Vec::new();
    for c in &node.channels {
        let q =
            Quantity::from_wire(&c.quantity).ok_or_else(|| format!("通道 {}：未知测量量", c.id))?;
        let mut rule = config.rule_for(q, &node.site, &node.id, &c.id);
        if let Some(sp) = applied
            .iter()
            .find(|a| a.site == node.site && a.node == node.id && a.channel == c.id)
        {
            if let Ok(r) = crate::alarms::baseline::check(q, &rule, sp.pre_alarm, sp.alarm, None) {
                rule = r;
            }
        }
        channels.push((c, rule));
    }
    build(&NodeArtefact {
        site: &node.site,
        node: &node.id,
        broker_host: broker.0,
        broker_port: broker.1,
        username: &issued.username,
        password: &issued.password,
        channels,
    })
}

/// The label text for the node (QR-code alphanumeric), e.g. `FN1:HOME.A/N01:7K`.
pub fn label(site: &str, node: &str) -> Option<String> {
    Some(provision::label(&SiteId::new(site).ok()?, &NodeId::new(node).ok()?).to_string())
}

/// Writes an artefact (it holds the node's MQTT password) readable by its
/// owner only: a new file created 0600 beside `path`, then renamed over it,
/// so neither a half-written file nor an older file's wider permissions
/// ever show the password to another local user.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artefact".into());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match result.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(id: &str, q: &str, ct: Option<u32>, sensor: Option<&str>) -> ChannelSpec {
        ChannelSpec {
            id: id.into(),
            quantity: q.into(),
            ct_ratio: ct,
            sensor: sensor.map(str::to_string),
        }
    }

    #[test]
    fn a_registration_becomes_an_artefact_the_node_reads_back() {
        let rc = ch("rc1", "residual_current", Some(1000), None);
        let t = ch("t1", "temperature", None, Some("ntc"));
        let p = ch("p1", "water_pressure", None, Some("4-20ma-0-1600"));
        let mut rc_rule = rules::defaults::channel_rule(Quantity::ResidualCurrent);
        if let Some(th) = rc_rule.threshold.as_mut() {
            th.alarm = Some(400);
        }
        let a = NodeArtefact {
            site: "home_a",
            node: "n07",
            broker_host: "10.0.0.5",
            broker_port: 1883,
            username: "home_a.n07",
            password: "s3cret-Pa55word",
            channels: vec![
                (&rc, rc_rule),
                (&t, rules::defaults::channel_rule(Quantity::Temperature)),
                (&p, rules::defaults::channel_rule(Quantity::WaterPressure)),
            ],
        };
        let bytes = build(&a).unwrap();
        let back = provision::decode(&bytes).unwrap();
        assert_eq!(back.username.as_str(), "home_a.n07");
        assert_eq!(back.password.as_str(), "s3cret-Pa55word");
        assert_eq!(back.broker.port, 1883);
        assert_eq!(back.channels[0].sensor, Sensor::Ct { ratio: 1000 });
        assert_eq!(back.channels[0].set.alarm, Some(400));
        assert_eq!(back.channels[1].sensor, Sensor::NtcB3950);
        assert_eq!(back.channels[2].sensor, Sensor::Loop { lo: 0, hi: 1600 });
        assert_eq!(
            label("home_a", "n07").unwrap().split(':').nth(1),
            Some("HOME.A/N07")
        );
    }

    #[test]
    fn sensors_the_node_cannot_read_are_refused_with_the_reason() {
        let e = sensor(&ch("t2", "temperature", None, Some("pt100"))).unwrap_err();
        assert!(e.contains("pt100"), "{e}");
        let e = sensor(&ch("p1", "water_pressure", None, Some("4-20ma"))).unwrap_err();
        assert!(e.contains("量程"), "{e}");
        assert!(sensor(&ch("p1", "water_pressure", None, Some("4-20ma-9-1"))).is_err());
        assert!(sensor(&ch("rc1", "residual_current", Some(70_000), None)).is_err());
    }
}
