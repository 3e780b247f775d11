//! `gateway`: run the monitoring gateway, run the demo, or check a configuration file.

use clap::{Parser, Subcommand};
use gateway::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// mimalloc, not glibc's malloc: the alarm path allocates and frees small
/// rows and strings across threads, where glibc's arenas spent a fifth of
/// an alarm storm's CPU (see ARCHITECTURE.md, "Alarm-path benchmark").
#[global_allocator]
static HEAP: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Electrical-fire and fire-facility monitoring gateway (智慧用电/消防设施监测网关)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run on embedded defaults with simulated nodes in two care homes.
    Demo {
        /// HTTP API address (falls back to a free port if taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// Where the demo keeps its SQLite database.
        #[arg(long, default_value = "./data/demo")]
        data_dir: PathBuf,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration_secs: Option<u64>,
    },
    /// Validate a configuration file and print every problem in it.
    CheckConfig { file: PathBuf },
    /// Manage users (用户): their role and the sites they cover.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Check the hash chain of the audit trail (留痕) in the configured database.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Register sites (机构) beside those of the configuration file.
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Register nodes (节点) and manage their MQTT credentials.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// The node CA (节点证书): client certificates for MQTT over TLS.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Write `passwd` and `acl` for an external Mosquitto into a directory:
    /// every node with active credentials, each limited to its own topics;
    /// and the node CA's certificate as `ca.pem`, when there is one.
    MosquittoExport {
        #[arg(long, short)]
        config: PathBuf,
        /// Directory to write `passwd` and `acl` into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Bring a RabbitMQ cluster's users in line with the registry through
    /// its management API (issue 16): a user per node with active
    /// credentials, limited to its own topics; the gateway's own user;
    /// revoked nodes' users deleted and their connections closed. The
    /// administrator's password comes from FIRE_RABBITMQ_ADMIN_PASSWORD.
    RabbitmqSync {
        #[arg(long, short)]
        config: PathBuf,
        /// Management API, e.g. http://10.0.0.11:15672; repeat for each
        /// broker: the first that answers is used.
        #[arg(long, required = true)]
        url: Vec<String>,
        #[arg(long, default_value = "admin")]
        admin_user: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Write the same users as a RabbitMQ definitions file (for
    /// `rabbitmqctl import_definitions`). Importing never deletes users:
    /// use rabbitmq-sync for revocations.
    RabbitmqExport {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Print the Mosquitto ACL for a configuration: each node may publish
    /// only under its own fire/v1/{site}/{node}/.
    MosquittoAcl {
        #[arg(long, short)]
        config: PathBuf,
        /// The gateway's own MQTT username (default: mqtt.username, else fire-gateway).
        #[arg(long)]
        gateway_user: Option<String>,
    },
    /// GB/T 26875.3 (消防远程监控中心) tools for installers.
    Gb26875 {
        #[command(subcommand)]
        command: Gb26875Command,
    },
}

#[derive(Subcommand)]
enum Gb26875Command {
    /// Print the frames in hex bytes (e.g. from a packet capture) in words.
    Decode {
        /// Hex bytes; spaces, colons and 0x prefixes are allowed.
        #[arg(required = true)]
        hex: Vec<String>,
    },
}

/// Loads and validates a configuration file, printing every problem (exit 2).
fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprint!("{}: {e}", path.display());
        ExitCode::from(2)
    })
}

/// Opens the configured database (running its migrations).
async fn open_store(config: &Config) -> Result<gateway::store::Store, ExitCode> {
    gateway::store::Store::open(&config.database_url())
        .await
        .map_err(|e| {
            eprintln!("cannot open the database: {e}");
            ExitCode::FAILURE
        })
}

/// Logs go to stderr (stdout is the demo's duty-desk view). The embedded
/// broker's own logs are off by default: it reports ordinary client
/// disconnects as errors. `RUST_LOG` overrides.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. The password is read from the environment variable
    /// GATEWAY_NEW_PASSWORD, or else from the first line of standard input.
    Add {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
        /// Display name, e.g. 张三.
        #[arg(long)]
        name: String,
        /// duty (值班员), site_manager (机构负责人), inspector (民政局监管),
        /// installer (安装人员), admin (管理员).
        #[arg(long)]
        role: String,
        /// Comma-separated site ids the user covers, or * for every site.
        #[arg(long)]
        sites: String,
    },
    /// List users: role, active or disabled, live sessions, sites.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Disable a user: no more logins, every session closed now.
    Disable {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
    },
    /// Enable a disabled user.
    Enable {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
    },
    /// Set a user's password (from GATEWAY_NEW_PASSWORD or the first line
    /// of standard input); every session of the user is closed.
    Passwd {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
    },
    /// A user's sessions.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// Close every session of a user: its tokens get 401 from now on.
    Revoke {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
    },
}

/// The new password: GATEWAY_NEW_PASSWORD, or the first line of standard input.
fn new_password() -> Result<String, ExitCode> {
    match std::env::var("GATEWAY_NEW_PASSWORD") {
        Ok(p) => Ok(p),
        Err(_) => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("no password: set GATEWAY_NEW_PASSWORD or pipe it on standard input");
                return Err(ExitCode::from(2));
            }
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        }
    }
}

/// `gateway user add`.
async fn user_add(
    config: PathBuf,
    login: String,
    name: String,
    role: String,
    sites: String,
) -> ExitCode {
    let config = match load_config(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(role) = gateway::auth::parse_role(&role) else {
        eprintln!("unknown role {role:?}: duty, site_manager, inspector, installer or admin");
        return ExitCode::from(2);
    };
    let sites = gateway::auth::parse_sites(&sites);
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Sites of the file and registered ones; an installer may also
    // be given a site that is yet to be registered.
    let registered = match store.registry().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot read the registry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let known = gateway::registry::effective(&config, &registered);
    if let Some(unknown) = sites
        .iter()
        .flatten()
        .find(|s| known.sites.iter().all(|c| &c.id != *s))
        .filter(|_| role != gateway::ticket::Role::Installer)
    {
        eprintln!("site {unknown:?} is not in the configuration");
        return ExitCode::from(2);
    }
    let password = match new_password() {
        Ok(p) => p,
        Err(code) => return code,
    };
    match store
        .add_user(
            &login,
            &name,
            role,
            sites.as_deref(),
            &password,
            gateway::time::now_ms(),
        )
        .await
    {
        Ok(id) => {
            println!("user {login} created (id {id})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot create user {login}: {e}");
            ExitCode::from(2)
        }
    }
}

/// `gateway user list|disable|enable|passwd|sessions revoke`.
async fn user_admin(config: &std::path::Path, op: gateway::user_admin::UserOp) -> ExitCode {
    let config = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    match gateway::user_admin::run(&store, op, gateway::time::now_ms()).await {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err((message, code)) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
    }
}

#[derive(Subcommand)]
enum SiteCommand {
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
enum CaCommand {
    /// Make the node CA under {storage.data_dir}/ca/ (ca.pem, ca.key);
    /// refused if one exists.
    Init {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
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
        #[arg(long, default_value_t = gateway::ca::NODE_DAYS)]
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
        #[arg(long, default_value_t = gateway::ca::NODE_DAYS)]
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

/// Who acts from the command line, for the audit trail.
fn cli_actor_name() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// Prints a node's credentials, once.
fn print_credentials(issued: &gateway::registry::Issued) {
    println!("MQTT 接入凭据（只显示这一次，请立即记录并写入节点）：");
    println!("  用户名 / 客户端 ID: {}", issued.username);
    println!("  密码: {}", issued.password);
}

/// Writes a node's provisioning artefact with its fresh credentials, and
/// prints its label text. `broker`: HOST:PORT, else the configured broker.
async fn write_artefact(
    config: &Config,
    store: &gateway::store::Store,
    node: &gateway::registry::RegisteredNode,
    issued: &gateway::registry::Issued,
    broker: Option<&str>,
    out: &std::path::Path,
) -> Result<(), String> {
    let (host, port) = gateway::artefact::broker_addr(config, broker)?;
    let applied = store
        .setpoints_in_force()
        .await
        .map_err(|e| format!("无法读取定值：{e}"))?;
    let bytes = gateway::artefact::for_node(config, &applied, node, issued, (&host, port))?;
    // It holds the node's password: owner-only (0600).
    gateway::artefact::write_private(out, &bytes)
        .map_err(|e| format!("无法写入 {}：{e}", out.display()))?;
    println!(
        "节点配置文件已写入 {}（{} 字节，连接 {host}:{port}）；烧录到节点后即可上电",
        out.display(),
        bytes.len()
    );
    if let Some(label) = gateway::artefact::label(&node.site, &node.id) {
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
    actor: gateway::registry::Actor<'_>,
) -> ExitCode {
    let now = gateway::time::now_ms();
    match gateway::ca::cli_issue(store, config, site, node, days, dir, actor, now).await {
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

/// `gateway ca init`.
fn ca_command(command: CaCommand) -> ExitCode {
    let CaCommand::Init { config } = command;
    match gateway::ca::cli_init(&config, gateway::time::now_ms() / 1000) {
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

async fn registry_command(command: Command) -> ExitCode {
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
    let actor = gateway::registry::Actor {
        name: &name,
        role: "admin",
    };
    let now = gateway::time::now_ms();
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
        if let Err(e) = gateway::ca::precheck(&config.storage.data_dir, *cert_days) {
            eprintln!("失败：{e}");
            store.close().await;
            return ExitCode::from(2);
        }
    }
    let refused = |e: gateway::registry::RegError| {
        eprintln!("失败：{e}");
        ExitCode::from(2)
    };
    let code = match command {
        Command::Site {
            command: SiteCommand::Add { id, name, .. },
        } => match gateway::registry::add_site(&store, &config, &id, &name, actor, now).await {
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
                .map(|c| gateway::registry::ChannelSpec::parse(c))
                .collect();
            let channels = match channels {
                Ok(c) => c,
                Err(e) => return refused(e),
            };
            let node = gateway::registry::NewNode {
                site,
                id,
                location: gateway::registry::Location {
                    building,
                    floor,
                    room,
                    panel,
                },
                channels,
            };
            match gateway::registry::add_node(&store, &config, &node, actor, now).await {
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
        } => match gateway::registry::rotate(&store, &config, &site, &id, actor, now).await {
            Ok(issued) => {
                println!("节点 {site}/{id} 的新凭据已生效，旧密码立即作废");
                print_credentials(&issued);
                if let Some(dir) = &cert {
                    let code = issue_cert(&store, &config, &site, &id, cert_days, dir, actor).await;
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
                match write_artefact(&config, &store, &node, &issued, broker.as_deref(), &out).await
                {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("配置文件未生成：{e}");
                        ExitCode::from(2)
                    }
                }
            }
            Err(e) => refused(e),
        },
        Command::Node {
            command: NodeCommand::Revoke { site, id, .. },
        } => match gateway::registry::revoke(&store, &config, &site, &id, actor, now).await {
            Ok(()) => {
                println!("节点 {site}/{id} 已注销，其凭据已作废");
                ExitCode::SUCCESS
            }
            Err(e) => refused(e),
        },
        Command::Node {
            command: NodeCommand::List { site, .. },
        } => match gateway::registry::list(&store, &config, site.as_deref()).await {
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

/// `rabbitmq-sync` and `rabbitmq-export` (gateway/src/rabbitmq.rs).
async fn rabbitmq_command(
    store: &gateway::store::Store,
    config: &Config,
    command: Command,
) -> ExitCode {
    let plan = match gateway::rabbitmq::plan_from_store(store, config).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if config.mqtt.password.is_none() {
        eprintln!("注意：配置中没有 mqtt.password，网关自身的用户未写入 RabbitMQ");
    }
    if !plan.without_hash.is_empty() {
        eprintln!(
            "注意：以下节点的凭据签发于支持 RabbitMQ 之前，没有 RabbitMQ 密码散列，未写入；请用 node rotate 重新签发：{}",
            plan.without_hash.join(", ")
        );
    }
    match command {
        Command::RabbitmqExport { out, vhost, .. } => {
            let text = gateway::rabbitmq::definitions(&plan, &vhost).to_string();
            if let Err(e) = std::fs::write(&out, text) {
                eprintln!("无法写入 {}：{e}", out.display());
                return ExitCode::FAILURE;
            }
            println!(
                "已写入 {}（{} 个用户）；用 rabbitmqctl import_definitions 导入。导入不会删除已注销节点的用户：注销后请用 rabbitmq-sync",
                out.display(),
                plan.users.len()
            );
            ExitCode::SUCCESS
        }
        Command::RabbitmqSync {
            url,
            admin_user,
            vhost,
            ..
        } => {
            let Ok(password) = std::env::var("FIRE_RABBITMQ_ADMIN_PASSWORD") else {
                eprintln!("请在环境变量 FIRE_RABBITMQ_ADMIN_PASSWORD 中给出 RabbitMQ 管理员 {admin_user} 的密码");
                return ExitCode::from(2);
            };
            let client = gateway::tls::HttpClient::new_or_system(
                &config.tls,
                std::time::Duration::from_secs(15),
                "rabbitmq-sync",
            );
            let mut last = String::new();
            for base in &url {
                match gateway::rabbitmq::sync(
                    &client,
                    base,
                    (&admin_user, &password),
                    &vhost,
                    &plan,
                )
                .await
                {
                    Ok(r) => {
                        println!(
                            "RabbitMQ（{base}）已同步：{} 个用户；删除已注销节点的用户 {} 个，断开其连接 {} 个",
                            r.users,
                            r.deleted.len(),
                            r.connections_closed
                        );
                        return ExitCode::SUCCESS;
                    }
                    Err(e) => {
                        eprintln!("{base}：{e}");
                        last = e;
                    }
                }
            }
            eprintln!("RabbitMQ 未同步：{last}");
            ExitCode::FAILURE
        }
        _ => ExitCode::FAILURE,
    }
}

/// Writes `passwd`, `acl` and the node CA (`ca.pem`) for an external
/// Mosquitto into `out`.
async fn mosquitto_export(
    store: &gateway::store::Store,
    config: &Config,
    out: &std::path::Path,
) -> ExitCode {
    let reg = match store.registry().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("无法读取节点登记：{e}");
            return ExitCode::FAILURE;
        }
    };
    let effective = gateway::registry::effective(config, &reg);
    let user = config
        .mqtt
        .username
        .clone()
        .unwrap_or_else(|| "fire-gateway".into());
    let gateway_login = config.mqtt.password.as_deref().map(|p| (user.as_str(), p));
    if gateway_login.is_none() {
        eprintln!(
            "注意：配置中没有 mqtt.password，网关自身的用户 {user} 未写入 passwd；请用 mosquitto_passwd 另行添加"
        );
    }
    let passwd = match gateway::mosquitto::passwd(&reg, gateway_login) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let acl = gateway::mosquitto::acl(&effective, &user);
    let write = |name: &str, text: &str| -> std::io::Result<()> {
        std::fs::create_dir_all(out)?;
        let path = out.join(name);
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640))?;
        }
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write("passwd", &passwd).and_then(|_| write("acl", &acl)) {
        eprintln!("无法写入 {}：{e}", out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "已写入 {0}/passwd（{1} 个用户）和 {0}/acl；在 mosquitto.conf 中设置 password_file 与 acl_file 后重新加载 Mosquitto（kill -HUP）",
        out.display(),
        passwd.lines().count()
    );
    // The node CA, for Mosquitto's certificate listener (tls.conf: cafile).
    match gateway::mosquitto::export_node_ca(&config.storage.data_dir, out) {
        Ok(Some(path)) => println!(
            "已写入节点 CA 证书 {}（tls.conf 中 8883 监听的 cafile）",
            path.display()
        ),
        Ok(None) => println!("no node CA: run `gateway ca init`（尚无节点 CA，未写入 ca.pem）"),
        Err(e) => {
            eprintln!("无法写入 {}/ca.pem：{e}", out.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify every record's hash and link; name the first broken record.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        c @ (Command::Site { .. }
        | Command::Node { .. }
        | Command::MosquittoExport { .. }
        | Command::RabbitmqSync { .. }
        | Command::RabbitmqExport { .. }) => registry_command(c).await,
        Command::Ca { command } => ca_command(command),
        Command::Gb26875 {
            command: Gb26875Command::Decode { hex },
        } => {
            use gateway::northbound::gb26875::describe;
            match describe::parse_hex(&hex.join(" ")) {
                Ok(bytes) => {
                    print!("{}", describe::stream(&bytes));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("not hex bytes: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                let nodes: usize = c.sites.iter().map(|s| s.nodes.len()).sum();
                for (path, warning) in c.warnings() {
                    eprintln!("warning: {path}: {warning}");
                }
                println!(
                    "{}: OK ({} sites, {nodes} nodes)",
                    file.display(),
                    c.sites.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{}: {e}", file.display());
                ExitCode::from(2)
            }
        },
        Command::MosquittoAcl {
            config,
            gateway_user,
        } => match Config::load(&config) {
            Ok(c) => {
                let user = gateway_user
                    .or(c.mqtt.username.clone())
                    .unwrap_or_else(|| "fire-gateway".into());
                print!("{}", gateway::mosquitto::acl(&c, &user));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::User { command } => {
            use gateway::user_admin::UserOp;
            let (config, op) = match command {
                UserCommand::Add {
                    config,
                    login,
                    name,
                    role,
                    sites,
                } => return user_add(config, login, name, role, sites).await,
                UserCommand::List { config } => (config, UserOp::List),
                UserCommand::Disable { config, login } => (config, UserOp::Disable(login)),
                UserCommand::Enable { config, login } => (config, UserOp::Enable(login)),
                UserCommand::Passwd { config, login } => match new_password() {
                    Ok(p) => (config, UserOp::Passwd(login, p)),
                    Err(code) => return code,
                },
                UserCommand::Sessions {
                    command: SessionsCommand::Revoke { config, login },
                } => (config, UserOp::RevokeSessions(login)),
            };
            user_admin(&config, op).await
        }
        Command::Audit {
            command: AuditCommand::Verify { config },
        } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let store = match open_store(&config).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            match store.verify_audit().await {
                Ok(Ok((n, head))) => {
                    println!("audit trail intact: {n} records; head {head}");
                    ExitCode::SUCCESS
                }
                Ok(Err(broken)) => {
                    eprintln!("audit trail BROKEN at {broken}");
                    ExitCode::from(3)
                }
                Err(e) => {
                    eprintln!("cannot read the audit trail: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            init_logs();
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            for (path, warning) in config.warnings() {
                tracing::warn!(%path, "{warning}");
            }
            let listener = match tokio::net::TcpListener::bind(config.http.listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("cannot listen on {}: {e}", config.http.listen);
                    return ExitCode::FAILURE;
                }
            };
            let running = match gateway::app::start(config, listener).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            gateway::app::shutdown_signal().await;
            tracing::info!("shutting down");
            running.shutdown().await;
            ExitCode::SUCCESS
        }
        Command::Demo {
            http,
            data_dir,
            duration_secs,
        } => {
            init_logs();
            demo(http, data_dir, duration_secs).await
        }
    }
}

async fn demo(http: SocketAddr, data_dir: PathBuf, duration: Option<u64>) -> ExitCode {
    // Never a real installation's database: the demo would add its
    // accounts (published passwords) and simulated alarms to it.
    if let Err(e) = gateway::demo::claim_data_dir(&data_dir) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let listener = match tokio::net::TcpListener::bind(http).await {
        Ok(l) => l,
        Err(_) => match tokio::net::TcpListener::bind((http.ip(), 0)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot open an HTTP port: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mqtt_port = match gateway::demo::free_port() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot find a free port for the embedded broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mqtt = SocketAddr::from(([127, 0, 0, 1], mqtt_port));
    let mut config = gateway::demo::demo_config(mqtt, http, data_dir);
    // The simulated Modbus device is served before the gateway polls it,
    // and stops after the gateway (so the demo never ends on it offline).
    let sim_stop = CancellationToken::new();
    let modbus_sim = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => {
            if let Ok(addr) = l.local_addr() {
                gateway::demo::add_demo_modbus(&mut config, addr);
            }
            Some(tokio::spawn(gateway::demo::run_modbus_simulator(
                l,
                sim_stop.clone(),
            )))
        }
        Err(e) => {
            eprintln!("no simulated Modbus device (cannot open a port: {e})");
            None
        }
    };
    let printer_config = config.clone();
    let running = match gateway::app::start(config, listener).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let base = format!("http://{}", running.http_addr);
    let accounts = gateway::demo::ensure_demo_users(&running.store).await;
    println!("智慧用电监测网关 演示模式 / gateway demo");
    println!(
        "  内置 MQTT: {mqtt}    数据库: {}",
        printer_config.storage.database_url()
    );
    println!("  Web 控制台 console: {base}/    （值班台、隐患工单、监管端；用下面的演示账号登录）");
    println!("  报警列表 alarms:  {base}/api/v1/alarms");
    println!("  隐患工单 tickets: {base}/api/v1/tickets");
    println!("  实时事件 events:  {base}/api/v1/events    指标 metrics: {base}/metrics");
    println!("  模拟：阳光养老院、福星敬老院共 3 个 MQTT 节点和 1 台 Modbus 多回路监测仪（3号楼配电室）；");
    println!("        约 20 秒后监测仪第 9 回路探头短路（设备故障），约 35 秒后 2号楼厨房配电箱 漏电流超过 500 mA。按 Ctrl-C 退出。");
    match accounts {
        Ok(accounts) => {
            println!("  演示账号 demo users (login / password / role):");
            for (login, password, role) in &accounts.users {
                println!("    {login} / {password} / {role}");
            }
            println!(
                "  值班员令牌 duty token: export TOKEN={}",
                accounts.duty_token
            );
            println!("  例如: curl -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/tickets");
        }
        Err(e) => eprintln!("cannot create the demo users: {e}"),
    }

    let mut events = running.events.subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            println!("{}", gateway::demo::describe(&ev, &printer_config));
        }
    });
    let stop = CancellationToken::new();
    let nodes: Vec<_> = gateway::demo::demo_nodes()
        .into_iter()
        .map(|n| tokio::spawn(n.run(mqtt, stop.clone())))
        .collect();
    match duration {
        Some(s) => {
            tokio::select! {
                _ = gateway::app::shutdown_signal() => {}
                _ = tokio::time::sleep(Duration::from_secs(s)) => {}
            }
        }
        None => gateway::app::shutdown_signal().await,
    }
    stop.cancel();
    for n in nodes {
        let _ = n.await;
    }
    running.shutdown().await;
    sim_stop.cancel();
    if let Some(sim) = modbus_sim {
        let _ = sim.await;
    }
    printer.abort();
    ExitCode::SUCCESS
}
