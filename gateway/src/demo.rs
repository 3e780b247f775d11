//! `gateway demo`: the whole system on embedded defaults — in-process broker,
//! SQLite under `./data/demo`, and simulated sensor nodes in two care homes
//! speaking the real wire contract over real MQTT. Within a minute one
//! kitchen circuit's leakage current rises past its setpoint; the terminal
//! shows the alarm and the hazard ticket it opened. Beside the MQTT nodes, a
//! simulated Modbus TCP 12-loop monitor is polled like an installed
//! detector; one of its probes shorts after about 20 s (a 设备故障).

use crate::alarms::events::GatewayEvent;
use crate::config::{Config, MqttConfig, NodeConfig, SiteConfig};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wire::{
    ChannelId, ChannelStatus, NodeId, NodeState, Quantity, Reading, SiteId, Status, Telemetry,
    Topic, TopicKind,
};

/// How a simulated channel's value evolves, in wire units.
#[derive(Debug, Clone, Copy)]
pub enum Profile {
    /// `base ± noise`.
    Steady { base: i32, noise: i32 },
    /// `base` until `after_s`, then rising `per_s` a second up to `max`.
    Rise {
        base: i32,
        after_s: u32,
        per_s: i32,
        max: i32,
    },
}

impl Profile {
    fn value(&self, t_s: u32, rnd: u32) -> i32 {
        match *self {
            Profile::Steady { base, noise } => {
                let span = (2 * noise + 1).max(1) as u32;
                base - noise + (rnd % span) as i32
            }
            Profile::Rise {
                base,
                after_s,
                per_s,
                max,
            } => {
                let rise = t_s.saturating_sub(after_s) as i32 * per_s;
                (base + rise).min(max) + (rnd % 7) as i32 - 3
            }
        }
    }
}

/// A simulated channel.
#[derive(Debug, Clone)]
pub struct SimChannel {
    pub id: &'static str,
    pub quantity: Quantity,
    pub profile: Profile,
}

/// A simulated sensor node: an MQTT client with the node's own persistent
/// session, retained birth message and Last Will, publishing telemetry.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub site: SiteId,
    pub node: NodeId,
    pub boot: u32,
    pub channels: Vec<SimChannel>,
    pub period: Duration,
}

impl SimNode {
    /// Runs until `stop`, publishing to the broker at `broker`.
    pub async fn run(self, broker: SocketAddr, stop: CancellationToken) {
        // A node's client id is `{site}.{node}`: the gate admits an
        // anonymous login under no other.
        let client_id = format!("{}.{}", self.site, self.node);
        let status_topic =
            Topic::new(self.site.clone(), self.node.clone(), TopicKind::Status).to_string();
        let telemetry_topic =
            Topic::new(self.site.clone(), self.node.clone(), TopicKind::Telemetry).to_string();
        let will = wire::encode_vec(&Status::offline()).unwrap_or_default();
        let mut o = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
        o.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(15))
            .set_last_will(LastWill::new(
                status_topic.clone(),
                will,
                QoS::AtLeastOnce,
                true,
            ));
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let driver_stop = stop.clone();
        let driver = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = driver_stop.cancelled() => break,
                    ev = eventloop.poll() => match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {}
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "simulated node: connection error");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
        let birth = Status {
            state: NodeState::Online,
            fw: heapless::String::try_from("sim-0.1.0").ok(),
            boot: Some(self.boot),
            dropped: None,
        };
        if let Ok(b) = wire::encode_vec(&birth) {
            let _ = client
                .publish(status_topic, QoS::AtLeastOnce, true, b)
                .await;
        }
        let mut seq = 0u32;
        let mut rnd = 0x9E37_79B9u32 ^ (self.node.len() as u32 * 7919);
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(self.period);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let t_s = start.elapsed().as_secs() as u32;
            let mut msg = Telemetry {
                boot: self.boot,
                seq,
                ts: crate::domain::time::now_ms(),
                ch: Default::default(),
            };
            for ch in &self.channels {
                rnd ^= rnd << 13;
                rnd ^= rnd >> 17;
                rnd ^= rnd << 5;
                let Ok(id) = ChannelId::new(ch.id) else {
                    continue;
                };
                let _ = msg.ch.push(Reading {
                    id,
                    q: ch.quantity,
                    v: ch.profile.value(t_s, rnd),
                    s: ChannelStatus::Ok,
                });
            }
            seq = seq.wrapping_add(1);
            if let Ok(b) = wire::encode_vec(&msg) {
                let _ = client
                    .publish(telemetry_topic.clone(), QoS::AtLeastOnce, false, b)
                    .await;
            }
        }
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
    }
}

fn steady_node(site: &str, node: &str, boot: u32) -> SimNode {
    SimNode {
        site: SiteId::new(site).unwrap_or_else(|_| unreachable!()),
        node: NodeId::new(node).unwrap_or_else(|_| unreachable!()),
        boot,
        channels: vec![
            SimChannel {
                id: "rc1",
                quantity: Quantity::ResidualCurrent,
                profile: Profile::Steady {
                    base: 150,
                    noise: 30,
                },
            },
            SimChannel {
                id: "t1",
                quantity: Quantity::Temperature,
                profile: Profile::Steady {
                    base: 300,
                    noise: 20,
                },
            },
        ],
        period: Duration::from_secs(2),
    }
}

/// The demo's simulated nodes: two care homes; one kitchen circuit whose
/// leakage rises from 150 mA past the 500 mA setpoint about 35 s in, and
/// one loop whose leakage hovers around the 300 mA pre-alarm setpoint
/// (288–312 mA): the return difference makes that one 预警, not a storm.
pub fn demo_nodes() -> Vec<SimNode> {
    let mut hovering = steady_node("fuxing", "n01", 12);
    hovering.channels[0].profile = Profile::Steady {
        base: 300,
        noise: 12,
    };
    let mut kitchen = steady_node("yangguang", "n02", 7);
    kitchen.channels[0].profile = Profile::Rise {
        base: 150,
        after_s: 10,
        per_s: 15,
        max: 640,
    };
    vec![steady_node("yangguang", "n01", 3), kitchen, hovering]
}

/// The file that marks a data directory as the demo's own.
pub const DEMO_MARKER: &str = "DEMO";

/// What the demo may do with a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// No database yet: the demo creates one and marks the directory.
    Fresh,
    /// A database the demo made before.
    Demo,
    /// A database the demo did not make (a real installation's): the demo
    /// must not touch it — it would add its accounts with published
    /// passwords, its sites and its simulated alarms.
    Foreign,
}

/// Judges a data directory from whether it holds the gateway's database
/// and the demo's marker (pure).
pub fn judge_data_dir(database_exists: bool, marker_exists: bool) -> DataDir {
    match (database_exists, marker_exists) {
        (false, _) => DataDir::Fresh,
        (true, true) => DataDir::Demo,
        (true, false) => DataDir::Foreign,
    }
}

/// Takes `dir` for the demo: refused (with the reason, in Chinese) when it
/// holds a database the demo did not make; otherwise created if needed and
/// marked as the demo's.
pub fn claim_data_dir(dir: &std::path::Path) -> Result<(), String> {
    let database = dir.join("gateway.db");
    let marker = dir.join(DEMO_MARKER);
    match judge_data_dir(database.exists(), marker.exists()) {
        DataDir::Demo => Ok(()),
        DataDir::Foreign => Err(format!(
            "目录 {} 中已有不是演示模式创建的数据库（{}）；演示模式不会使用它，以免把演示账号和模拟报警写入真实数据。请用 --data-dir 指定另一个目录。",
            dir.display(),
            database.display()
        )),
        DataDir::Fresh => {
            std::fs::create_dir_all(dir)
                .and_then(|()| {
                    std::fs::write(
                        &marker,
                        "This data directory belongs to `gateway demo`: simulated data and demo accounts with published passwords.\n",
                    )
                })
                .map_err(|e| format!("无法使用目录 {}：{e}", dir.display()))
        }
    }
}

/// The demo's configuration: embedded broker on `mqtt`, data under `data_dir`.
pub fn demo_config(mqtt: SocketAddr, http: SocketAddr, data_dir: PathBuf) -> Config {
    let node = |id: &str, location: &str| NodeConfig {
        id: id.into(),
        location: location.into(),
        ..Default::default()
    };
    let mut c = Config::default();
    c.http.listen = http;
    c.storage.data_dir = data_dir;
    c.mqtt = MqttConfig {
        embedded_listen: mqtt,
        client_id: "fire-gateway-demo".into(),
        // The simulated nodes have no credentials: they log in as
        // themselves, without a password (client id `{site}.{node}`).
        anonymous_config_nodes: true,
        ..Default::default()
    };
    c.sites = vec![
        SiteConfig {
            id: "yangguang".into(),
            name: "阳光养老院".into(),
            rules: Default::default(),
            nodes: vec![
                node("n01", "1号楼1层配电箱"),
                node("n02", "2号楼厨房配电箱"),
            ],
        },
        SiteConfig {
            id: "fuxing".into(),
            name: "福星敬老院".into(),
            rules: Default::default(),
            nodes: vec![node("n01", "主楼配电室")],
        },
    ];
    c
}

/// The demo's Modbus device: an AIM-R100-style 12-loop monitor (unit 1)
/// in 阳光养老院's 3号楼配电室, loops 11 and 12 without probes (skipped).
pub const DEMO_MODBUS_NODE: &str = "m01";

/// Adds the demo's Modbus device, served by [`run_modbus_simulator`] at
/// `addr`, to the demo configuration: a node of its site and a connection.
pub fn add_demo_modbus(config: &mut Config, addr: SocketAddr) {
    use crate::ingest::modbus::config::{load_catalog, ConnectionConfig, DeviceConfig};
    if let Some(site) = config.sites.iter_mut().find(|s| s.id == "yangguang") {
        site.nodes.push(NodeConfig {
            id: DEMO_MODBUS_NODE.into(),
            location: "3号楼配电室 多回路监测仪（Modbus）".into(),
            ..Default::default()
        });
    }
    config.modbus.connections.push(ConnectionConfig {
        kind: "tcp".into(),
        address: addr.to_string(),
        devices: vec![DeviceConfig {
            unit: 1,
            map: "aim_r100".into(),
            site: "yangguang".into(),
            node: DEMO_MODBUS_NODE.into(),
            interval_ms: 2000,
            skip: vec!["rc11".into(), "rc12".into()],
            ..Default::default()
        }],
        ..Default::default()
    });
    config.modbus.catalog = load_catalog(None).0;
}

/// Serves the demo's Modbus device on `listener` until `stop`: ten loops
/// with a healthy 80–220 mA of leakage that wanders, and loop 9's probe
/// shorting (0xE5E5) from about 20 s in.
pub async fn run_modbus_simulator(listener: tokio::net::TcpListener, stop: CancellationToken) {
    use crate::ingest::modbus::sim::Simulator;
    let Some(map) = crate::ingest::modbus::map::shipped("aim_r100") else {
        return;
    };
    let sim = Simulator::new();
    sim.add(1, std::sync::Arc::new(map));
    sim.set_raw(1, "rc11", 0xFAFA);
    sim.set_raw(1, "rc12", 0xFAFA);
    let server = tokio::spawn(crate::ingest::modbus::sim::serve_tcp(
        listener,
        sim.clone(),
        stop.clone(),
    ));
    let start = tokio::time::Instant::now();
    let mut rnd = 0x2545_F491u32;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        for i in 1..=10 {
            rnd ^= rnd << 13;
            rnd ^= rnd >> 17;
            rnd ^= rnd << 5;
            let base = 80 + 14 * i;
            sim.set(1, &format!("rc{i}"), base + (rnd % 21) as i32 - 10);
        }
        if start.elapsed() >= Duration::from_secs(20) {
            sim.set_raw(1, "rc9", 0xE5E5);
        }
    }
    let _ = server.await;
}

/// A free port on 127.0.0.1, for the embedded broker (rumqttd cannot report
/// the port it bound when given port 0).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One line for the duty officer's terminal, in Chinese.
pub fn describe(ev: &GatewayEvent, config: &Config) -> String {
    let site_name = |id: &str| {
        config
            .sites
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let place = |site: &str, node: &str| {
        config
            .node(site, node)
            .map(|(_, n)| n.location.clone())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| node.to_string())
    };
    match ev {
        GatewayEvent::AlarmRaised { alarm, ticket } => {
            let a = &alarm.row;
            let what = match (
                &alarm.quantity_label,
                &alarm.value_display,
                &alarm.setpoint_display,
            ) {
                (Some(q), Some(v), Some(sp)) => format!("{q} {v}（{}值 {sp}）", alarm.level_label),
                (Some(q), _, _) => format!("{q}{}", alarm.kind_label),
                _ => alarm.kind_label.to_string(),
            };
            let ticket = match ticket {
                Some(crate::store::TicketOutcome::Opened { number, .. }) => {
                    format!(" → 已自动开具隐患工单 {number}（待登记）")
                }
                Some(crate::store::TicketOutcome::Reopened { number, .. }) => {
                    format!(" → 隐患复发，已重新打开工单 {number}")
                }
                Some(crate::store::TicketOutcome::Attached { number, .. }) => {
                    format!(" → 并入未销号工单 {number}")
                }
                _ => String::new(),
            };
            format!(
                "{} 【{}】{} {} {}/{} {what}{ticket}",
                crate::domain::time::rfc3339_cst(a.updated_at.max(0) as u64)
                    .get(11..19)
                    .unwrap_or(""),
                alarm.level_label,
                site_name(&a.site),
                place(&a.site, &a.node),
                a.node,
                a.channel,
            )
        }
        GatewayEvent::AlarmUpdated { alarm } => {
            let a = &alarm.row;
            format!(
                "{} 【{}】{} {} {}/{} {}",
                crate::domain::time::rfc3339_cst(a.updated_at.max(0) as u64)
                    .get(11..19)
                    .unwrap_or(""),
                alarm.state_label,
                site_name(&a.site),
                place(&a.site, &a.node),
                a.node,
                a.channel,
                alarm.level_label
            )
        }
        GatewayEvent::TicketUpdated { ticket } => format!(
            "{} 【工单】{} {} → {}",
            crate::domain::time::rfc3339_cst(ticket.row.updated_at.max(0) as u64)
                .get(11..19)
                .unwrap_or(""),
            ticket.row.number,
            ticket.row.title,
            ticket.status_label
        ),
    }
}

/// The demo's accounts and a ready token for the duty officer.
pub struct DemoAccounts {
    /// (login, password, role label).
    pub users: Vec<(&'static str, &'static str, &'static str)>,
    pub duty_token: String,
}

/// Creates the demo's users if they do not exist yet (the demo keeps its
/// database between runs) and logs the duty officer in.
pub async fn ensure_demo_users(store: &crate::store::Store) -> Result<DemoAccounts, String> {
    use crate::tickets::Role;
    /// (login, password, name, role, sites, role label).
    type DemoUser = (
        &'static str,
        &'static str,
        &'static str,
        Role,
        Option<Vec<String>>,
        &'static str,
    );
    let users: [DemoUser; 3] = [
        (
            "zhiban",
            "zhiban-demo",
            "值班员小李",
            Role::Duty,
            None,
            "值班员",
        ),
        (
            "fuzeren",
            "fuzeren-demo",
            "王主任",
            Role::SiteManager,
            Some(vec!["yangguang".into()]),
            "机构负责人（阳光养老院）",
        ),
        (
            "jianguan",
            "jianguan-demo",
            "区民政局",
            Role::Inspector,
            None,
            "民政局监管",
        ),
    ];
    let now = crate::domain::time::now_ms();
    for (login, password, name, role, sites, _) in &users {
        match store
            .add_user(login, name, *role, sites.as_deref(), password, now)
            .await
        {
            Ok(_) | Err(crate::store::UserError::Exists) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let (duty_token, _) = store
        .login("zhiban", "zhiban-demo", now)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            "the demo duty account does not log in (its password was changed?)".to_string()
        })?;
    Ok(DemoAccounts {
        users: users
            .iter()
            .map(|(l, p, _, _, _, label)| (*l, *p, *label))
            .collect(),
        duty_token,
    })
}

#[cfg(test)]
mod data_dir_tests {
    use super::*;

    #[test]
    fn only_a_fresh_directory_or_the_demos_own_is_taken() {
        assert_eq!(judge_data_dir(false, false), DataDir::Fresh);
        assert_eq!(judge_data_dir(false, true), DataDir::Fresh);
        assert_eq!(judge_data_dir(true, true), DataDir::Demo);
        assert_eq!(judge_data_dir(true, false), DataDir::Foreign);
    }
}
