//! `gateway site add` and `gateway node add|rotate|revoke|list`: sites and
//! nodes registered beside the configuration file, node credentials, the
//! provisioning artefact and the node's client certificate; also opens the
//! configuration and the database for `mosquitto-export`,
//! `rabbitmq-sync` and `rabbitmq-export` (`super::brokers`).

use super::brokers::{mosquitto_export, rabbitmq_command};
use super::{cli_actor_name, load_config, open_store};
use crate::Command;
use clap::Subcommand;
use gateway::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum SiteCommand {
    /// Add a site, e.g. `gateway site add -c gateway.toml --id home_c --name 康宁养老院`.
    Add {
        #[arg(long, short)]
        config: PathBuf,
        /// Site id: lower-case letters, digits, _ and -, at most 32.
        #[arg(long)]
        id: String,
        /// Display name, e.g. 康宁养老院.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum NodeCommand {
    /// Register a node and print its MQTT credentials (shown only once).
    Add {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        site: String,
        /// Node id: lower-case letters, digits, _ and -, at most 32.
        #[arg(long)]
        id: String,
        /// 楼栋, e.g. 1号楼.
        #[arg(long)]
        building: String,
        /// 楼层, e.g. 2层.
        #[arg(long)]
        floor: String,
        /// 房间, e.g. 201.
        #[arg(long)]
        room: String,
        /// 配电箱, e.g. AL-2.
        #[arg(long)]
        panel: String,
        /// A channel, repeated: ID:QUANTITY:ct=RATIO for residual_current and
        /// current (e.g. rc1:residual_current:ct=1000), ID:QUANTITY:SENSOR for
        /// the others (e.g. t1:temperature:ntc).
        #[arg(long = "channel", required = true)]
        channels: Vec<String>,
        /// Write the node's provisioning artefact (节点配置文件: broker,
        /// credentials, channels, setpoints) to this file, for the node to
        /// read at boot.
        #[arg(long)]
        artefact: Option<PathBuf>,
        /// The broker address the node connects to, HOST:PORT (default: the
        /// configured broker).
        #[arg(long)]
        broker: Option<String>,
        /// Also issue a client certificate (CN {site}.{node}) from the node
        /// CA, for MQTT over TLS without a password: writes
        /// {site}.{node}.crt, {site}.{node}.key and ca.pem into this
        /// directory, for the node's cellular module.
        #[arg(long = "cert", value_name = "DIR")]
        cert: Option<PathBuf>,
        /// Validity of that certificate, in days.
        #[arg(long, default_value_t = gateway::commissioning::ca::NODE_DAYS)]
        cert_days: u32,
    },
    /// Issue new credentials to a node; the old password stops working.
    Rotate {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        site: String,
        #[arg(long)]
        id: String,
        /// Write a new provisioning artefact with the new credentials.
        #[arg(long)]
        artefact: Option<PathBuf>,
        /// The broker address the node connects to, HOST:PORT.
        #[arg(long)]
        broker: Option<String>,
        /// Also issue a client certificate (CN {site}.{node}) from the node
        /// CA, for MQTT over TLS without a password: writes
        /// {site}.{node}.crt, {site}.{node}.key and ca.pem into this
        /// directory, for the node's cellular module.
        #[arg(long = "cert", value_name = "DIR")]
        cert: Option<PathBuf>,
        /// Validity of that certificate, in days.
        #[arg(long, default_value_t = gateway::commissioning::ca::NODE_DAYS)]
        cert_days: u32,
    },
    /// Revoke a node: its credentials stop working, a registered node leaves service.
    Revoke {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        site: String,
        #[arg(long)]
        id: String,
    },
    /// List nodes (of the file and registered) with their credential state.
    List {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        site: Option<String>,
    },
}

/// Prints a node's credentials, once.
fn print_credentials(issued: &gateway::commissioning::registry::Issued) {
    println!("MQTT 接入凭据（只显示这一次，请立即记录并写入节点）：");
    println!("  用户名 / 客户端 ID: {}", issued.username);
    println!("  密码: {}", issued.password);
}

/// Writes a node's provisioning artefact with its fresh credentials, and
/// prints its label text. `broker`: HOST:PORT, else the configured broker.
async fn write_artefact(
    config: &Config,
    store: &gateway::store::Store,
    node: &gateway::commissioning::registry::RegisteredNode,
    issued: &gateway::commissioning::registry::Issued,
    broker: Option<&str>,
    out: &std::path::Path,
) -> Result<(), String> {
    let (host, port) = gateway::commissioning::artefact::broker_addr(config, broker)?;
    let applied = store
        .setpoints_in_force()
        .await
        .map_err(|e| format!("无法读取定值：{e}"))?;
    let bytes =
        gateway::commissioning::artefact::for_node(config, &applied, node, issued, (&host, port))?;
    // It holds the node's password: owner-only (0600).
    gateway::commissioning::artefact::write_private(out, &bytes)
        .map_err(|e| format!("无法写入 {}：{e}", out.display()))?;
    println!(
        "节点配置文件已写入 {}（{} 字节，连接 {host}:{port}）；烧录到节点后即可上电",
        out.display(),
        bytes.len()
    );
    if let Some(label) = gateway::commissioning::artefact::label(&node.site, &node.id) {
        println!("节点标签（可制作二维码）：{label}");
    }
    Ok(())
}

/// Issues a node its client certificate and writes the module's files.
async fn issue_cert(
    store: &gateway::store::Store,
    config: &Config,
    site: &str,
    node: &str,
    days: u32,
    dir: &std::path::Path,
    actor: gateway::commissioning::registry::Actor<'_>,
) -> ExitCode {
    let now = gateway::domain::time::now_ms();
    match gateway::commissioning::ca::cli_issue(store, config, site, node, days, dir, actor, now)
        .await
    {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `site add`, `node add|rotate|revoke|list`, `mosquitto-export`,
/// `rabbitmq-sync` and `rabbitmq-export`: opens the configuration and the
/// database, acts, and closes the database.
pub(crate) async fn registry_command(command: Command) -> ExitCode {
    let path = match &command {
        Command::Site {
            command: SiteCommand::Add { config, .. },
        } => config.clone(),
        Command::Node { command } => match command {
            NodeCommand::Add { config, .. }
            | NodeCommand::Rotate { config, .. }
            | NodeCommand::Revoke { config, .. }
            | NodeCommand::List { config, .. } => config.clone(),
        },
        Command::MosquittoExport { config, .. } => config.clone(),
        Command::RabbitmqSync { config, .. } | Command::RabbitmqExport { config, .. } => {
            config.clone()
        }
        _ => return ExitCode::FAILURE,
    };
    let config = match load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let name = cli_actor_name();
    let actor = gateway::commissioning::registry::Actor {
        name: &name,
        role: "admin",
    };
    let now = gateway::domain::time::now_ms();
    // `--cert` needs the node CA and a valid validity: checked before any
    // credential changes.
    if let Command::Node {
        command:
            NodeCommand::Add {
                cert: Some(_),
                cert_days,
                ..
            }
            | NodeCommand::Rotate {
                cert: Some(_),
                cert_days,
                ..
            },
    } = &command
    {
        if let Err(e) = gateway::commissioning::ca::precheck(&config.storage.data_dir, *cert_days) {
            eprintln!("失败：{e}");
            store.close().await;
            return ExitCode::from(2);
        }
    }
    let refused = |e: gateway::commissioning::registry::RegError| {
        eprintln!("失败：{e}");
        ExitCode::from(2)
    };
    let code = match command {
        Command::Site {
            command: SiteCommand::Add { id, name, .. },
        } => match gateway::commissioning::registry::add_site(
            &store, &config, &id, &name, actor, now,
        )
        .await
        {
            Ok(s) => {
                println!("机构 {} {} 已添加", s.id, s.name);
                ExitCode::SUCCESS
            }
            Err(e) => refused(e),
        },
        Command::Node {
            command:
                NodeCommand::Add {
                    site,
                    id,
                    building,
                    floor,
                    room,
                    panel,
                    channels,
                    artefact,
                    broker,
                    cert,
                    cert_days,
                    ..
                },
        } => {
            let channels: Result<Vec<_>, _> = channels
                .iter()
                .map(|c| gateway::commissioning::registry::ChannelSpec::parse(c))
                .collect();
            let channels = match channels {
                Ok(c) => c,
                Err(e) => return refused(e),
            };
            let node = gateway::commissioning::registry::NewNode {
                site,
                id,
                location: gateway::commissioning::registry::Location {
                    building,
                    floor,
                    room,
                    panel,
                },
                channels,
            };
            match gateway::commissioning::registry::add_node(&store, &config, &node, actor, now)
                .await
            {
                Ok((n, issued)) => {
                    println!(
                        "节点 {}/{} 已登记（{}，{} 个通道）",
                        n.site,
                        n.id,
                        n.location.display(),
                        n.channels.len()
                    );
                    print_credentials(&issued);
                    if let Some(dir) = &cert {
                        let code =
                            issue_cert(&store, &config, &n.site, &n.id, cert_days, dir, actor)
                                .await;
                        if code != ExitCode::SUCCESS {
                            return code;
                        }
                    }
                    match artefact {
                        Some(out) => match write_artefact(
                            &config,
                            &store,
                            &n,
                            &issued,
                            broker.as_deref(),
                            &out,
                        )
                        .await
                        {
                            Ok(()) => ExitCode::SUCCESS,
                            Err(e) => {
                                eprintln!("节点已登记，但配置文件未生成：{e}（修正后可用 node rotate --artefact 重新生成）");
                                ExitCode::from(2)
                            }
                        },
                        None => ExitCode::SUCCESS,
                    }
                }
                Err(e) => refused(e),
            }
        }
        Command::Node {
            command:
                NodeCommand::Rotate {
                    site,
                    id,
                    artefact,
                    broker,
                    cert,
                    cert_days,
                    ..
                },
        } => {
            match gateway::commissioning::registry::rotate(&store, &config, &site, &id, actor, now)
                .await
            {
                Ok(issued) => {
                    println!("节点 {site}/{id} 的新凭据已生效，旧密码立即作废");
                    print_credentials(&issued);
                    if let Some(dir) = &cert {
                        let code =
                            issue_cert(&store, &config, &site, &id, cert_days, dir, actor).await;
                        if code != ExitCode::SUCCESS {
                            return code;
                        }
                    }
                    let Some(out) = artefact else {
                        return ExitCode::SUCCESS;
                    };
                    let registered = match store.registry().await {
                        Ok(r) => r.nodes.into_iter().find(|n| n.site == site && n.id == id),
                        Err(e) => {
                            eprintln!("无法读取节点登记：{e}");
                            return ExitCode::from(2);
                        }
                    };
                    let Some(node) = registered else {
                        eprintln!("节点 {site}/{id} 写在配置文件中，没有登记的传感器信息，无法生成配置文件；请用 node add 登记");
                        return ExitCode::from(2);
                    };
                    match write_artefact(&config, &store, &node, &issued, broker.as_deref(), &out)
                        .await
                    {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e) => {
                            eprintln!("配置文件未生成：{e}");
                            ExitCode::from(2)
                        }
                    }
                }
                Err(e) => refused(e),
            }
        }
        Command::Node {
            command: NodeCommand::Revoke { site, id, .. },
        } => {
            match gateway::commissioning::registry::revoke(&store, &config, &site, &id, actor, now)
                .await
            {
                Ok(()) => {
                    println!("节点 {site}/{id} 已注销，其凭据已作废");
                    ExitCode::SUCCESS
                }
                Err(e) => refused(e),
            }
        }
        Command::Node {
            command: NodeCommand::List { site, .. },
        } => match gateway::commissioning::registry::list(&store, &config, site.as_deref()).await {
            Ok(nodes) => {
                println!("机构\t节点\t来源\t凭据\t位置");
                for n in nodes {
                    let origin = if n.origin == "config" {
                        "配置文件"
                    } else {
                        "登记"
                    };
                    let credential = match n.credential {
                        "active" => "有效",
                        "revoked" => "已注销",
                        _ => "无",
                    };
                    println!(
                        "{}\t{}\t{origin}\t{credential}\t{}",
                        n.site, n.id, n.location
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => refused(e),
        },
        Command::MosquittoExport { out, .. } => mosquitto_export(&store, &config, &out).await,
        c @ (Command::RabbitmqSync { .. } | Command::RabbitmqExport { .. }) => {
            rabbitmq_command(&store, &config, c).await
        }
        _ => ExitCode::FAILURE,
    };
    store.close().await;
    code
}
